"""Where the slowest tasks' time went, from the raw dumps of ``roundtrip.py --trace --dump DIR`` and
``stream.py --dump DIR`` (the server's loop trace, one row per task, and the producer's records).

For each dump it prints:
- the slow tasks (round trip above its p99; for the stream, the late ones) and their stages against all tasks';
- the "roots": slow tasks whose predecessor was not slow (a slow task delays the next one or two at 10 kHz), and how
  far apart they are: a fixed spacing points at something periodic in the server (bench/NOTES.md 30 found a
  GPU-event-timed task every 256 this way);
- the service time of tasks whose receipt-to-sent span covers a given offset after each 1 ms boundary of the
  monotonic clock, against the others, at the offset where the difference is largest: a periodic host event (the
  scheduler tick) shows as a clear step there.

Usage: python3 bench/tail_analysis.py DIR   (the .npy files the benchmarks wrote there)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zmqrt.trace import RECV, SENT, STAGES  # noqa: E402


def stages_p50(rows: np.ndarray, sel: np.ndarray) -> str:
    gaps = np.diff(rows[sel], axis=1) / 1e3
    return ", ".join(f"{STAGES[i + 1]} {np.median(gaps[:, i]):.1f}" for i in range(gaps.shape[1])
                     if STAGES[i + 1] != "popped")


def tick_step(rows: np.ndarray, ok: np.ndarray) -> str:
    """The offset (µs after each ms boundary) where covering it costs the most service time, and by how much."""
    a, b = rows[ok, RECV].astype(np.int64), rows[ok, SENT].astype(np.int64)
    service = (b - a) / 1e3
    best = None
    for offset_us in range(0, 1000, 20):
        off = offset_us * 1000
        covers = ((a - off) // 1_000_000 + 1) * 1_000_000 + off <= b
        if not 0.01 <= covers.mean() <= 0.99:
            continue
        step = np.median(service[covers]) - np.median(service[~covers])
        if best is None or step > best[0]:
            best = (step, offset_us, covers.mean())
    if best is None:
        return "no offset covered by 1% to 99% of the tasks"
    return f"+{best[0]:.1f} µs p50 for tasks covering {best[1]} µs after a ms boundary ({100 * best[2]:.1f}% of tasks)"


def report(name: str, rows: np.ndarray, slow: np.ndarray, ok: np.ndarray, intended_ns: np.ndarray) -> None:
    print(f"== {name}: {len(rows)} tasks, {int(slow.sum())} slow")
    print(f"  stages p50 µs, all : {stages_p50(rows, ok)}")
    print(f"  stages p50 µs, slow: {stages_p50(rows, slow & ok)}")
    idx = np.flatnonzero(slow)
    if len(idx):
        roots = idx[np.r_[True, np.diff(idx) != 1]]
        spacing_ms = np.diff(intended_ns[roots]) / 1e6
        print(f"  roots {len(roots)}; spacing ms p50 {np.median(spacing_ms) if len(spacing_ms) else float('nan'):.2f}; "
              f"roots' stages p50 µs: {stages_p50(rows, np.isin(np.arange(len(rows)), roots) & ok)}")
    print(f"  1 ms step: {tick_step(rows, ok)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", type=Path)
    args = ap.parse_args()
    found = False
    for trace in sorted(args.dir.glob("trace-*.npy")):
        found = True
        producer = np.load(trace.with_name(trace.name.replace("trace-", "producer-", 1)))
        rows = np.load(trace)
        rows = rows[len(rows) - len(producer):]  # the producer's records are the measured tasks, the last rows
        intended, _sent, done, ok, _service = producer.T
        ok = (ok > 0) & (rows[:, RECV] > 0) & (rows[:, SENT] > 0)
        rtt = done - intended
        slow = ok & (rtt > np.percentile(rtt[ok], 99))
        report(f"round trip {trace.stem}", rows, slow, ok, intended)
    stream = args.dir / "stream-trace.npy"
    if stream.exists():
        found = True
        producer = np.load(args.dir / "stream-producer.npy")
        rows = np.load(stream)[1:len(producer) + 1]  # row i + 1 holds task i (sequence numbers start at 1)
        _kind, intended, _sent, _done, ok, late, _service = producer.T
        ok = (ok > 0) & (rows[:, RECV] > 0) & (rows[:, SENT] > 0)
        report("stream (slow = late)", rows, ok & (late > 0), ok, intended)
    if not found:
        print(f"no dumps in {args.dir}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
