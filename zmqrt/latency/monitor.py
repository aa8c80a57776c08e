"""The seed's once-a-second latency line, over the last interval, as strings (the caller logs them).

Contract
--------
:meth:`LatencyMonitor.tick` reads and clears the tracker's interval histogram (``interval_stage`` samples
since the previous tick) and the counter deltas, and returns::

    📊 Latency Stats: P50=12.3μs P95=20.1μs P99=25.0μs Max=40.2μs | ok=980 missed=3 rejected=2 expired=1 goodput=977.0/s

plus, when P95 exceeds ``target_p95_us``, ``⚠️ WARNING: P95 latency exceeding target! (P95=…μs > target …μs)``.
An interval with no sample and no outcome returns ``[]`` (the seed prints nothing then). Goodput here is
on-time results over the interval's length. :meth:`LatencyMonitor.maybe_tick` ticks only when
``interval_s`` has passed. The clock is the caller's ``now_ns``; the monitor never prints or sleeps.
"""

from __future__ import annotations

from dataclasses import dataclass

from zmqrt.latency.tracker import LatencyTracker, percentiles_ns


@dataclass(frozen=True)
class IntervalStats:
    """What one tick saw. Latencies in µs; counts are deltas over the interval."""

    count: int
    p50_us: float
    p95_us: float
    p99_us: float
    max_us: float
    ok: int
    missed: int
    rejected: int
    expired: int
    errors: int
    goodput_per_s: float
    interval_s: float


def format_latency_line(s: IntervalStats) -> str:
    """The seed's line plus this interval's outcome counts."""
    return (
        f"📊 Latency Stats: P50={s.p50_us:.1f}μs P95={s.p95_us:.1f}μs P99={s.p99_us:.1f}μs Max={s.max_us:.1f}μs"
        f" | ok={s.ok} missed={s.missed} rejected={s.rejected} expired={s.expired}"
        + (f" errors={s.errors}" if s.errors else "")
        + f" goodput={s.goodput_per_s:.1f}/s"
    )


def format_warning_line(p95_us: float, target_p95_us: float) -> str:
    return f"⚠️ WARNING: P95 latency exceeding target! (P95={p95_us:.1f}μs > target {target_p95_us:.1f}μs)"


class LatencyMonitor:
    """Per-interval latency report over a :class:`LatencyTracker`."""

    def __init__(
        self, tracker: LatencyTracker, target_p95_us: float | None = None, interval_s: float = 1.0, now_ns: int = 0
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.tracker = tracker
        self.target_p95_us = target_p95_us
        self.interval_ns = int(interval_s * 1e9)
        self.last: IntervalStats | None = None
        self._last_tick_ns = now_ns
        self._prev = self._totals()

    def _totals(self) -> tuple[int, int, int, int, int]:
        t = self.tracker
        return t.ok, t.missed, sum(t.rejected.values()), t.expired, sum(t.errors.values())

    def due(self, now_ns: int) -> bool:
        """Whether :meth:`maybe_tick` at ``now_ns`` would close an interval."""
        return now_ns - self._last_tick_ns >= self.interval_ns

    def maybe_tick(self, now_ns: int) -> list[str]:
        """:meth:`tick` if at least ``interval_s`` passed since the last tick, else ``[]``."""
        if now_ns - self._last_tick_ns < self.interval_ns:
            return []
        return self.tick(now_ns)

    def tick(self, now_ns: int) -> list[str]:
        """Close the interval ending at ``now_ns`` and return its report lines (maybe none)."""
        h = self.tracker.take_interval()
        totals = self._totals()
        ok, missed, rejected, expired, errors = (a - b for a, b in zip(totals, self._prev, strict=True))
        self._prev = totals
        elapsed_ns = max(now_ns - self._last_tick_ns, 1)
        self._last_tick_ns = now_ns
        count = h.get_total_count()
        if count:
            q = percentiles_ns(h, (50.0, 95.0, 99.0))
            p50, p95, p99, mx = q[50.0] / 1e3, q[95.0] / 1e3, q[99.0] / 1e3, h.get_max_value() / 1e3
        else:
            p50 = p95 = p99 = mx = 0.0
        stats = IntervalStats(
            count=count,
            p50_us=p50,
            p95_us=p95,
            p99_us=p99,
            max_us=mx,
            ok=ok,
            missed=missed,
            rejected=rejected,
            expired=expired,
            errors=errors,
            goodput_per_s=(ok - missed) * 1e9 / elapsed_ns,
            interval_s=elapsed_ns / 1e9,
        )
        self.last = stats
        if not count and not (ok or rejected or expired or errors):
            return []
        lines = [format_latency_line(stats)]
        if count and self.target_p95_us is not None and p95 > self.target_p95_us:
            lines.append(format_warning_line(p95, self.target_p95_us))
        return lines
