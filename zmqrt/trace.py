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


class _Ring:
    """``capacity`` rows of ``width`` int64 in one preallocated ``array('q')``; row ``i`` of ``n`` written so far
    lives at ``i % capacity``."""

    def __init__(self, capacity: int, width: int) -> None:
        if capacity < 1:
            raise ValueError("trace capacity must be >= 1")
        self.capacity = capacity
        self.buf = array("q", bytes(8 * width * capacity))
        self._width = width

    def _rows(self, n: int) -> np.ndarray:
        """The last ``min(n, capacity)`` rows of ``n`` written, oldest first (a copy)."""
        rows = np.frombuffer(self.buf, dtype=np.int64).reshape(self.capacity, self._width)
        if n <= self.capacity:
            return rows[:n].copy()
        start = n % self.capacity
        return np.concatenate([rows[start:], rows[:start]])


class StageTrace(_Ring):
    """A ring of ``capacity`` task rows; task ``seq`` owns row ``seq % capacity``."""

    def __init__(self, capacity: int = 200_000) -> None:
        super().__init__(capacity, _N)
        self.max_seq = -1

    def row(self, seq: int) -> int:
        """Start a task's row (clears what an older task left there); returns the row's base index."""
        base = (seq % self.capacity) * _N
        self.buf[base:base + _N] = array("q", bytes(8 * _N))
        if seq > self.max_seq:
            self.max_seq = seq
        return base

    def to_numpy(self) -> np.ndarray:
        return self._rows(self.max_seq + 1)

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


# Points of a bulk batch (``Server._accept_backlog``: frames read together, run as one launch), in order, then its
# row count and lane. The loop is one thread, so the batches' [first_recv, submitted] and [seen_done, sent] spans
# show what it was doing while a batch waited. A batch read while every lane was busy (the pending batch) has no
# "read" and "matched" points (0).
BATCH_STAGES = ("first_recv", "last_recv", "read", "matched", "checked", "submitted", "seen_done", "collected",
                "encoded", "sent")
(B_FIRST, B_LAST, B_READ, B_MATCHED, B_CHECKED, B_SUBMITTED, B_SEEN, B_COLLECTED, B_ENCODED,
 B_SENT) = range(len(BATCH_STAGES))
BATCH_COLUMNS = (*BATCH_STAGES, "n", "lane")
_NB = len(BATCH_COLUMNS)


class BatchTrace(_Ring):
    """A ring of ``capacity`` bulk-batch rows (columns ``BATCH_COLUMNS``), filled at each batch's completion."""

    def __init__(self, capacity: int = 100_000) -> None:
        super().__init__(capacity, _NB)
        self.count = 0

    def add(self, values: tuple) -> None:
        """One batch: a value per ``BATCH_COLUMNS``."""
        base = (self.count % self.capacity) * _NB
        self.buf[base:base + _NB] = array("q", values)
        self.count += 1

    def to_numpy(self) -> np.ndarray:
        return self._rows(self.count)


def batch_trace_path(trace_path: str | Path) -> Path:
    """Where the batch rows of a stage trace at ``trace_path`` go: ``NAME.batches.npy`` beside ``NAME.npy``."""
    p = Path(trace_path)
    stem = p.name[:-4] if p.name.endswith(".npy") else p.name
    return p.with_name(f"{stem}.batches.npy")


def summarize_batches(rows: np.ndarray, skip: int = 0) -> dict:
    """Per-gap percentiles (µs) of bulk batches, weighted by their tasks (a batch of 100 counts 100 times, as its
    tasks' service does), plus batch sizes and the loop's share of wall time spent on batches. A pending batch's
    recv-to-submit span includes its wait for a lane, so that share is an upper bound. ``skip`` drops the first
    rows."""
    rows = rows[skip:]
    out: dict = {"batches": int(len(rows))}
    if not len(rows):
        return out
    n = rows[:, len(BATCH_STAGES)]
    out["tasks"] = int(n.sum())
    out["batch_size"] = {"p50": float(np.percentile(n, 50)), "mean": float(n.mean()), "max": int(n.max())}
    gaps = [("recv", B_FIRST, B_LAST), ("read", B_LAST, B_READ), ("match", B_READ, B_MATCHED),
            ("check", B_MATCHED, B_CHECKED), ("submit", B_CHECKED, B_SUBMITTED), ("gpu+wait", B_SUBMITTED, B_SEEN),
            ("collect", B_SEEN, B_COLLECTED), ("encode", B_COLLECTED, B_ENCODED), ("send", B_ENCODED, B_SENT),
            ("first_recv->sent", B_FIRST, B_SENT)]
    for name, a, b in gaps:
        has = (rows[:, a] > 0) & (rows[:, b] > 0)
        if not has.any():
            continue
        d = (rows[has, b] - rows[has, a]) / 1e3
        w = n[has].astype(np.float64)
        order = np.argsort(d)
        cum = np.cumsum(w[order]) / w.sum()
        pick = {q: float(d[order][min(len(d) - 1, int(np.searchsorted(cum, q / 100)))]) for q in (50, 90, 99)}
        out[name] = {**{f"p{q}": v for q, v in pick.items()}, "max": float(d.max()), "mean": float(d.mean())}
    span = (int(rows[:, B_SENT].max()) - int(rows[:, B_FIRST].min())) or 1
    busy = {"recv+match+submit": float((rows[:, B_SUBMITTED] - rows[:, B_FIRST]).sum() / span),
            "collect+encode+send": float((rows[:, B_SENT] - rows[:, B_SEEN]).sum() / span)}
    out["loop_share"] = busy
    out["span_s"] = span / 1e9
    return out
