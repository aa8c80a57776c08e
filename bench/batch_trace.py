"""Read bulk-batch traces (``zmqrt serve --trace FILE.npy`` writes ``FILE.batches.npy``; ``bench/scaleout.py --trace
DIR`` one per engine): where a batch's time went, and when the slow ones happened.

For each file: the gaps between a batch's points (``zmqrt.trace.BATCH_STAGES``) as task-weighted p50 / p99, the
batch sizes, the loop's busy share; then the batches whose first task's receipt-to-sent span is in the slowest 1%
(weighted by tasks), counted per second of the run, and the p50 / p99 / p99.9 of that span after the first
``--warmup`` seconds. A warm-up that holds most of the slow batches (cold launches of new batch sizes) shows here
(bench/NOTES.md 31).

Usage: python3 bench/batch_trace.py FILE.batches.npy... [--warmup 1.0]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zmqrt.trace import B_FIRST, B_SENT, BATCH_STAGES, summarize_batches  # noqa: E402

_N = len(BATCH_STAGES)


def by_second(rows: np.ndarray, warmup_s: float) -> dict:
    """Slow batches (task-weighted p99 of first receipt to sent) per second of the run, and the span's percentiles
    after ``warmup_s``."""
    n = rows[:, _N]
    span_us = (rows[:, B_SENT] - rows[:, B_FIRST]) / 1e3
    t_s = (rows[:, B_FIRST] - rows[0, B_FIRST]) / 1e9
    per_task = np.repeat(span_us, n)
    p99 = float(np.percentile(per_task, 99))
    slow = span_us >= p99
    sec = np.floor(t_s).astype(np.int64)
    out = {"p99_us": p99, "slow_per_second": np.bincount(sec[slow], minlength=int(sec.max()) + 1).tolist(),
           "tasks_per_second": np.bincount(sec, weights=n).astype(np.int64).tolist()}
    keep = t_s >= warmup_s
    if keep.any():
        after = np.repeat(span_us[keep], n[keep])
        out["after_warmup_us"] = {q: float(np.percentile(after, float(q[1:].replace("_", ".")))) for q in
                                  ("p50", "p99", "p99_9")}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", help="batch traces (NAME.batches.npy)")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds left out of the after-warm-up percentiles")
    args = ap.parse_args()
    for path in args.files:
        rows = np.load(path)
        if len(rows) < 2:
            print(f"{path}: {len(rows)} batch(es), nothing to read")
            continue
        s = summarize_batches(rows)
        gaps = "; ".join(f"{k} {v['p50']:.0f}/{v['p99']:.0f}" for k, v in s.items()
                         if isinstance(v, dict) and "p99" in v)
        print(f"{path}: {s['batches']} batches, {s['tasks']} tasks, size p50 {s['batch_size']['p50']:.0f} "
              f"mean {s['batch_size']['mean']:.1f}")
        print(f"  µs p50/p99 by task: {gaps}")
        print("  loop busy: " + ", ".join(f"{k} {v:.0%}" for k, v in s["loop_share"].items()))
        b = by_second(rows, args.warmup)
        print(f"  slowest 1% (>= {b['p99_us']:.0f} µs) per second: {b['slow_per_second']}; tasks per second: "
              f"{b['tasks_per_second']}")
        if "after_warmup_us" in b:
            a = b["after_warmup_us"]
            print(f"  after {args.warmup:g} s: p50 {a['p50']:.0f} p99 {a['p99']:.0f} p99.9 {a['p99_9']:.0f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
