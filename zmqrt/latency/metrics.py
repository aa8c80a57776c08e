"""Prometheus exposition of a :class:`LatencyTracker`, read at scrape time (no hot-path cost).

Contract
--------
:class:`TrackerCollector` turns the tracker's state into metric families on each scrape, in its own
``CollectorRegistry`` (never the global one, so tests and several servers in one process do not clash):

- ``zmqrt_results_total{outcome="ok|missed|expired"}`` counter (``ok`` includes the late ones, as ``missed``
  is a subset of it), ``zmqrt_rejected_total{code}``, ``zmqrt_errors_total{code}``, ``zmqrt_undecodable_total``.
- ``zmqrt_latency_seconds{kernel,stage,quantile}`` gauge for quantile 0.5, 0.95, 0.99, 0.999 and 1 (max),
  merged over priorities; ``zmqrt_latency_count{kernel,stage}`` and ``zmqrt_latency_sum_seconds``.
- ``zmqrt_goodput_per_second`` gauge.

A scrape runs in the HTTP server's thread while the server loop records; the tracker is not locked, so a
scrape may see a sample counted in one histogram bucket and not yet in the total (off by one, never a crash).
:func:`start_metrics_server` binds 127.0.0.1 by default; port 0 picks a free port (see ``MetricsServer.port``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from zmqrt.latency.tracker import LatencyTracker, summarize

_QUANTILES = (("0.5", "p50_ns"), ("0.95", "p95_ns"), ("0.99", "p99_ns"), ("0.999", "p99_9_ns"), ("1", "max_ns"))


class TrackerCollector(Collector):
    """Reads ``tracker`` at scrape time. ``now_ns`` is the clock for goodput (default ``time.monotonic_ns``)."""

    def __init__(self, tracker: LatencyTracker, now_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self.tracker = tracker
        self.now_ns = now_ns

    def collect(self) -> Iterator[Metric]:
        t = self.tracker
        results = CounterMetricFamily("zmqrt_results", "Results sent, by outcome", labels=["outcome"])
        results.add_metric(["ok"], t.ok)
        results.add_metric(["missed"], t.missed)
        results.add_metric(["expired"], t.expired)
        yield results
        rejected = CounterMetricFamily("zmqrt_rejected", "Tasks rejected before running, by code", labels=["code"])
        for code, n in sorted(t.rejected.items()):
            rejected.add_metric([code], n)
        yield rejected
        errors = CounterMetricFamily("zmqrt_errors", "Tasks failed while running, by code", labels=["code"])
        for code, n in sorted(t.errors.items()):
            errors.add_metric([code], n)
        yield errors
        yield CounterMetricFamily("zmqrt_undecodable", "Frames that could not be decoded", value=t.undecodable)
        yield GaugeMetricFamily(
            "zmqrt_goodput_per_second", "On-time results per second", value=t.goodput_per_s(self.now_ns())
        )
        latency = GaugeMetricFamily(
            "zmqrt_latency_seconds", "Latency quantiles by kernel and stage", labels=["kernel", "stage", "quantile"]
        )
        count = GaugeMetricFamily(
            "zmqrt_latency_count", "Latency samples by kernel and stage", labels=["kernel", "stage"]
        )
        total = GaugeMetricFamily(
            "zmqrt_latency_sum_seconds", "Sum of latency samples by kernel and stage", labels=["kernel", "stage"]
        )
        for kernel, stage in sorted({(k, s) for (k, _, s) in t.keys()}):
            s = summarize(t.merged(stage=stage, kernel=kernel))
            for q, field in _QUANTILES:
                latency.add_metric([kernel, stage, q], s[field] / 1e9)
            count.add_metric([kernel, stage], s["count"])
            total.add_metric([kernel, stage], s["mean_ns"] * s["count"] / 1e9)
        yield latency
        yield count
        yield total


def make_registry(tracker: LatencyTracker, now_ns: Callable[[], int] = time.monotonic_ns) -> CollectorRegistry:
    """A dedicated registry holding one :class:`TrackerCollector`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TrackerCollector(tracker, now_ns))
    return registry


class MetricsServer:
    """Handle on a running exposition server; ``close()`` (alias ``stop()``) is idempotent."""

    def __init__(self, httpd: WSGIServer, thread: threading.Thread, registry: CollectorRegistry) -> None:
        self._httpd = httpd
        self._thread = thread
        self.registry = registry
        self.port: int = httpd.server_port

    def close(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        self._thread.join(timeout=5)

    stop = close

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_metrics_server(
    port: int, tracker: LatencyTracker, addr: str = "127.0.0.1", now_ns: Callable[[], int] = time.monotonic_ns
) -> MetricsServer:
    """Serve ``/metrics`` for ``tracker`` on ``addr:port`` in a daemon thread; returns the stop handle."""
    registry = make_registry(tracker, now_ns)
    httpd, thread = start_http_server(port, addr=addr, registry=registry)
    return MetricsServer(httpd, thread, registry)
