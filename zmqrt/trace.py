"""Per-task stage trace of the server loop: where a task's service time goes, stage by stage.

Off by default. With ``trace_path`` set the server stamps ``time.monotonic_ns()`` at each point below into a
preallocated ring (one ``array('q')`` write each, about 50 ns), and writes the ring to ``trace_path`` (``.npy``,
rows = tasks in receipt order, columns = ``STAGES``, 0 = not reached) at shutdown. ``summarize`` turns it into
per-gap percentiles: the first thing to read before optimizing anything on the task path.
"""

from __future__ import annotations

from array import array
from pathlib import Path

import numpy as np

# Points on the task path, in order. A gap is named after the stage it ends.
STAGES = ("recv", "decoded", "admitted", "popped", "submitted", "seen_done", "collected", "encoded", "sent")
RECV, DECODED, ADMITTED, POPPED, SUBMITTED, SEEN_DONE, COLLECTED, ENCODED, SENT = range(len(STAGES))
_N = len(STAGES)


class StageTrace:
    """A ring of ``capacity`` task rows; task ``seq`` owns row ``seq % capacity``."""

    def __init__(self, capacity: int = 200_000) -> None:
        if capacity < 1:
            raise ValueError("trace capacity must be >= 1")
        self.capacity = capacity
        self.buf = array("q", bytes(8 * _N * capacity))
        self.max_seq = -1

    def row(self, seq: int) -> int:
        """Start a task's row (clears what an older task left there); returns the row's base index."""
        base = (seq % self.capacity) * _N
        self.buf[base:base + _N] = array("q", bytes(8 * _N))
        if seq > self.max_seq:
            self.max_seq = seq
        return base

    def to_numpy(self) -> np.ndarray:
        rows = np.frombuffer(self.buf, dtype=np.int64).reshape(self.capacity, _N)
        n = self.max_seq + 1
        if n <= self.capacity:
            return rows[:n].copy()
        start = n % self.capacity  # oldest row first
        return np.concatenate([rows[start:], rows[:start]])

    def dump(self, path: str | Path) -> Path:
        path = Path(path)
        np.save(path, self.to_numpy())
        return path


def summarize(rows: np.ndarray, skip: int = 0) -> dict[str, dict[str, float]]:
    """Percentiles (µs) of each gap between consecutive stages, over tasks that reached both, and of the whole
    receipt-to-sent span. ``skip`` drops the first rows (warm-up)."""
    rows = rows[skip:]
    out: dict[str, dict[str, float]] = {}
    spans = [(STAGES[i], i - 1, i) for i in range(1, _N)] + [("total recv->sent", RECV, SENT)]
    for name, a, b in spans:
        ok = (rows[:, a] > 0) & (rows[:, b] > 0)
        if not ok.any():
            continue
        d = (rows[ok, b] - rows[ok, a]) / 1e3
        out[name] = {"n": int(ok.sum()), "p50": float(np.percentile(d, 50)), "p90": float(np.percentile(d, 90)),
                     "p99": float(np.percentile(d, 99)), "max": float(d.max()), "mean": float(d.mean())}
    return out


def format_summary(summary: dict[str, dict[str, float]]) -> str:
    lines = [f"{'gap ending at':18s} {'n':>7s} {'p50':>8s} {'p90':>8s} {'p99':>8s} {'max':>9s} {'mean':>8s}  µs"]
    for name, s in summary.items():
        lines.append(f"{name:18s} {s['n']:7d} {s['p50']:8.2f} {s['p90']:8.2f} {s['p99']:8.2f} {s['max']:9.1f} "
                     f"{s['mean']:8.2f}")
    return "\n".join(lines)
