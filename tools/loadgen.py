#!/usr/bin/env python3
"""``zmqrt loadgen`` from a source checkout: ``python tools/loadgen.py --endpoint EP --rate HZ ...``.

A thin wrapper: the command lives in ``zmqrt.loadgen_cli`` (installed with the package) so ``zmqrt loadgen``
and this script are the same program.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    # Run from a checkout without installing: the repository root holds the zmqrt and ingest packages.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from zmqrt.loadgen_cli import main

    sys.exit(main())
