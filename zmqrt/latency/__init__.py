"""Latency tracking: HDR histograms per kernel x priority x stage, counters, the per-second monitor line and
Prometheus exposition. Pure Python; every time-dependent call takes ``now_ns``.
"""

from zmqrt.latency.monitor import IntervalStats, LatencyMonitor, format_latency_line, format_warning_line
from zmqrt.latency.tracker import STAGES, LatencyTracker, merge_snapshots, new_histogram, summarize

__all__ = [
    "STAGES",
    "IntervalStats",
    "LatencyMonitor",
    "LatencyTracker",
    "format_latency_line",
    "format_warning_line",
    "merge_snapshots",
    "new_histogram",
    "summarize",
]
