"""Where one engine's loop spends its time at a throughput load: ``cProfile`` around ``serve_forever``.

One server in this process (its loop in a thread, CUDA backend unless ``--backend cpu``), ``--batch-max`` on, driven
by ``ingest.loadgen`` (producer processes, open loop, 1 KiB vector_add) above what it can do. Prints the ok rate and
the loop's top functions by own time. cProfile slows Python code (C calls less), so read shares, not rates.

Usage: python3 bench/bulk_profile.py [--rate 120000] [--processes 4] [--seconds 4] [--batch-max 64] [--top 30]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=120_000.0)
    ap.add_argument("--processes", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--batch-max", type=int, default=64)
    ap.add_argument("--backend", default="cuda")
    ap.add_argument("--top", type=int, default=30)
    args = ap.parse_args()
    from ingest.loadgen import LoadgenConfig, MixEntry, run_loadgen
    from zmqrt.config import ServerConfig
    from zmqrt.server import Server

    cfg = ServerConfig(backend=args.backend, ingest=f"ipc://{tempfile.mkdtemp(prefix='zrt')}/in",
                       batch_max=args.batch_max)
    server = Server(cfg)
    prof = cProfile.Profile()
    thread = threading.Thread(target=prof.runcall, args=(server.serve_forever,), daemon=True)
    thread.start()
    lg = LoadgenConfig(endpoint=cfg.ingest, mix=[MixEntry(kernel="vector_add", size=256)], rate_hz=args.rate,
                       duration_s=args.seconds, timeout_s=10.0, check_fraction=0.001, processes=args.processes)
    t0 = time.perf_counter()
    res = run_loadgen(lg)
    wall = time.perf_counter() - t0
    server.stop()
    thread.join(30)
    ok = int((res.status == "ok").sum()) if hasattr(res, "status") else server.tracker.ok
    print(f"ok {ok} in {wall:.1f} s; bulk tasks {server.bulk_tasks}, batches {server.batches}, "
          f"frames {server.receiver.frames}")
    pstats.Stats(prof).sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
