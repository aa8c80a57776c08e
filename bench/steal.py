"""CPU time the hypervisor took from this guest ("steal" in /proc/stat), sampled every 100 ms during a run.

Why: on the GPU host (a Firecracker VM) the producers' round trip has bad 100 ms windows of 4 to 200 ms while the
engines' own receipt-to-sent p99 stays under 1 ms (bench/NOTES.md 32 and 33). A vCPU that the host does not run
stalls whatever runs on it, and the guest sees that time only as steal. Sampling it beside the round trip's
windows says whether those windows are the host's.

``StealSampler`` is a thread of the benchmark process; its clock is ``perf_counter_ns`` (CLOCK_MONOTONIC, the
producers' clock too), so its samples line up with the tasks' send times.
"""

from __future__ import annotations

import threading
import time

import numpy as np


def read_stat(path: str = "/proc/stat") -> dict[str, tuple[int, int]]:
    """Per CPU line (``cpu`` for all, ``cpu0``...): (steal jiffies, all jiffies). Empty where there is no such file."""
    out = {}
    try:
        with open(path) as f:
            for line in f:
                if not line.startswith("cpu"):
                    break
                name, *fields = line.split()
                values = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
                steal = values[7] if len(values) > 7 else 0
                out[name] = (steal, sum(values))
    except OSError:
        return {}
    return out


class StealSampler:
    """Samples /proc/stat every ``interval_s`` in a daemon thread between ``start()`` and ``stop()``."""

    def __init__(self, interval_s: float = 0.1, path: str = "/proc/stat") -> None:
        self.interval_s = interval_s
        self.path = path
        self.samples: list[tuple[int, dict[str, tuple[int, int]]]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> StealSampler:
        self.samples.append((time.perf_counter_ns(), read_stat(self.path)))
        self._thread = threading.Thread(target=self._run, name="steal-sampler", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.samples.append((time.perf_counter_ns(), read_stat(self.path)))

    def stop(self) -> None:
        """Idempotent; takes a last sample."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        self.samples.append((time.perf_counter_ns(), read_stat(self.path)))

    def __enter__(self) -> StealSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def summary(self) -> dict:
        """Steal share of all CPUs over the run, per CPU, and per sample interval (start ns, share)."""
        s = self.samples
        if len(s) < 2 or not s[0][1] or "cpu" not in s[0][1]:
            return {}

        def share(a: dict, b: dict, cpu: str) -> float:
            ds, dt = b[cpu][0] - a[cpu][0], b[cpu][1] - a[cpu][1]
            return ds / dt if dt > 0 else 0.0

        first, last = s[0][1], s[-1][1]
        per_cpu = {c: round(share(first, last, c), 4) for c in first if c != "cpu" and c in last}
        intervals = [(t0, share(a, b, "cpu"), max((share(a, b, c) for c in a if c != "cpu" and c in b), default=0.0))
                     for (t0, a), (_, b) in zip(s, s[1:])]  # noqa: B905 - consecutive pairs
        return {"all_cpus": round(share(first, last, "cpu"), 4), "per_cpu": per_cpu,
                "max_cpu": max(per_cpu.values(), default=0.0),
                "intervals": [(t, round(a, 4), round(m, 4)) for t, a, m in intervals]}


def steal_by_window(summary: dict, window_starts_ns: np.ndarray, window_p99_us: np.ndarray,
                    over_us: float = 1000.0) -> dict:
    """The steal (all CPUs, and the worst CPU) of the sample interval each round-trip window starts in, averaged
    over the windows whose p99 is over ``over_us`` and over the others: are the bad windows the host's?"""
    iv = summary.get("intervals") or []
    if not iv or not len(window_starts_ns):
        return {}
    starts = np.array([t for t, _, _ in iv], np.int64)
    all_share = np.array([a for _, a, _ in iv])
    worst = np.array([m for _, _, m in iv])
    k = np.clip(np.searchsorted(starts, window_starts_ns, side="right") - 1, 0, len(iv) - 1)
    bad = window_p99_us > over_us
    out = {"windows_over": int(bad.sum()), "windows_under": int((~bad).sum())}
    for name, mask in (("over", bad), ("under", ~bad)):
        if mask.any():
            out[f"steal_all_cpus_{name}"] = round(float(all_share[k[mask]].mean()), 4)
            out[f"steal_worst_cpu_{name}"] = round(float(worst[k[mask]].mean()), 4)
    return out
