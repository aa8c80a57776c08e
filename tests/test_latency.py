"""LatencyTracker against numpy, snapshots through msgpack, the monitor line, and the Prometheus endpoint."""

from __future__ import annotations

import urllib.request

import msgpack
import numpy as np
import pytest

from zmqrt.errors import Code
from zmqrt.latency import STAGES, LatencyMonitor, LatencyTracker, merge_snapshots, new_histogram, summarize
from zmqrt.latency.metrics import make_registry, start_metrics_server

S = 1_000_000_000


def _rel_close(got: float, want: float, rel: float = 1e-3) -> bool:
    return abs(got - want) <= rel * want + 1


def test_percentiles_match_numpy_within_hdr_precision() -> None:
    rng = np.random.default_rng(7)
    data = rng.lognormal(mean=10.0, sigma=1.0, size=50_000).astype(np.int64) + 1
    t = LatencyTracker()
    for v in data.tolist():
        t.record("fft", 1, "kernel", v)
    s = summarize(t.histogram("fft", 1, "kernel"))
    assert s["count"] == len(data)
    assert _rel_close(s["min_ns"], data.min()) and _rel_close(s["max_ns"], data.max())
    assert _rel_close(s["mean_ns"], data.mean())
    # HDR reports a value equivalent (within 3 significant digits) to the sample at the percentile rank.
    srt = np.sort(data)
    for pct, key in ((50, "p50_ns"), (95, "p95_ns"), (99, "p99_ns"), (99.9, "p99_9_ns")):
        rank = int(np.ceil(pct / 100 * len(srt))) - 1
        assert _rel_close(s[key], srt[rank]), (pct, s[key], srt[rank])


def test_record_clamps_and_stage_check() -> None:
    t = LatencyTracker()
    t.record("k", 0, "e2e", -5)
    t.record("k", 0, "e2e", 10**12)
    h = t.histogram("k", 0, "e2e")
    assert h.get_total_count() == 2 and h.get_min_value() == 0 and h.get_max_value() >= 60 * S * 0.999
    with pytest.raises(ValueError):
        t.record("k", 0, "gpu", 1)
    assert t.histogram("k", 1, "e2e") is None


def test_fast_record_equals_hdrh_record_value() -> None:
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.integers(0, 5000, 2000), rng.integers(0, 60 * S, 2000)]).tolist()
    t = LatencyTracker()
    ref = new_histogram()
    for v in values:
        t.record("k", 0, "queue", v)
        ref.record_value(v)
    h = t.histogram("k", 0, "queue")
    assert h.get_total_count() == ref.get_total_count()
    assert summarize(h) == summarize(ref)
    assert [h.get_count_at_value(v) for v in values[:200]] == [ref.get_count_at_value(v) for v in values[:200]]


def _filled_tracker(offset: int) -> LatencyTracker:
    t = LatencyTracker()
    for i in range(1, 1001):
        t.record("vector_add", 0, "e2e", 10_000 + i + offset)
        t.record("vector_add", 0, "kernel", 5_000 + i)
        t.record("fft", 2, "e2e", 20_000 + i)
        t.count_ok(S + i * 1_000_000, missed=(i % 100 == 0))
    t.count_expired()
    t.count_rejected(Code.QUEUE_FULL)
    t.count_rejected("DEADLINE_INFEASIBLE")
    t.count_error(Code.GPU_FAULT)
    t.count_undecodable()
    return t


def test_merged_views_and_counters() -> None:
    t = _filled_tracker(0)
    assert t.summary(stage="e2e")["count"] == 2000
    assert t.summary(kernel="vector_add")["count"] == 2000
    assert t.summary(stage="e2e", priority=2)["count"] == 1000
    assert list(t.stage_summaries()) == ["kernel", "e2e"]
    assert set(t.kernel_summaries()) == {"fft", "vector_add"}
    c = t.counters()
    assert c == {
        "ok": 1000,
        "missed": 10,
        "on_time": 990,
        "expired": 1,
        "undecodable": 1,
        "rejected": {"QUEUE_FULL": 1, "DEADLINE_INFEASIBLE": 1},
        "errors": {"GPU_FAULT": 1},
    }


def test_goodput_window() -> None:
    t = LatencyTracker(goodput_window_s=4)
    assert t.goodput_per_s(10 * S) == 0.0
    for sec in range(10, 20):
        for i in range(100):
            t.count_ok(sec * S + i * 1_000_000)
    # at 19.5 s: buckets 16..19 hold 400 on-time results over 3.5 s of window
    assert t.goodput_per_s(19 * S + S // 2) == pytest.approx(400 / 3.5)
    t2 = LatencyTracker(goodput_window_s=10)
    for i in range(50):
        t2.count_ok(100 * S + i * 10_000_000)
    # started 0.5 s ago: the denominator is the time since the first result's second, not the full window
    assert t2.goodput_per_s(100 * S + S // 2) == pytest.approx(100.0)


def test_snapshot_is_msgpack_serializable_and_merges() -> None:
    a, b = _filled_tracker(0), _filled_tracker(500)
    snaps = [msgpack.unpackb(msgpack.packb(x.snapshot(now_ns=2 * S)), raw=False) for x in (a, b)]
    assert snaps[0]["counters"]["ok"] == 1000 and len(snaps[0]["histograms"]) == 3
    entry = next(h for h in snaps[0]["histograms"] if h["kernel"] == "fft")
    assert entry["priority"] == 2 and entry["stage"] == "e2e" and entry["count"] == 1000
    m = merge_snapshots(snaps)
    assert m.ok == 2000 and m.missed == 20 and m.rejected == {"QUEUE_FULL": 2, "DEADLINE_INFEASIBLE": 2}
    merged = m.histogram("vector_add", 0, "e2e")
    ref = new_histogram()
    ref.add(a.histogram("vector_add", 0, "e2e"))
    ref.add(b.histogram("vector_add", 0, "e2e"))
    assert summarize(merged) == summarize(ref)
    assert summarize(merged)["max_ns"] == pytest.approx(11_500, rel=1e-3)
    assert m.goodput_per_s(2 * S) == pytest.approx(snaps[0]["goodput_per_s"] + snaps[1]["goodput_per_s"])
    with pytest.raises(ValueError):
        LatencyTracker().merge_snapshot(a.snapshot(encode=False))


def test_monitor_line_interval_and_warning() -> None:
    t = LatencyTracker()
    mon = LatencyMonitor(t, target_p95_us=50.0, interval_s=1.0, now_ns=0)
    assert mon.maybe_tick(S // 2) == []
    assert mon.tick(S) == []  # nothing happened: no line, like the seed
    for i in range(1, 101):
        t.record("vector_add", 0, "e2e", i * 1000)  # 1..100 µs
        t.record("vector_add", 0, "kernel", 7)  # not the interval stage
        t.count_ok(S + i, missed=i > 98)
    t.count_rejected(Code.QUEUE_FULL)
    lines = mon.maybe_tick(2 * S)
    assert lines == [
        "📊 Latency Stats: P50=50.0μs P95=95.0μs P99=99.0μs Max=100.0μs"
        " | ok=100 missed=2 rejected=1 expired=0 goodput=98.0/s",
        "⚠️ WARNING: P95 latency exceeding target! (P95=95.0μs > target 50.0μs)",
    ]
    assert mon.last.count == 100
    t.record("vector_add", 0, "e2e", 10_000)
    t.count_ok(2 * S)
    lines = mon.tick(4 * S)  # a fresh interval: only the new sample, goodput over 2 s
    assert lines == [
        "📊 Latency Stats: P50=10.0μs P95=10.0μs P99=10.0μs Max=10.0μs"
        " | ok=1 missed=0 rejected=0 expired=0 goodput=0.5/s"
    ]
    assert t.summary(stage="e2e")["count"] == 101  # the cumulative histograms are untouched


def test_prometheus_registry_and_endpoint() -> None:
    t = _filled_tracker(0)
    reg = make_registry(t, now_ns=lambda: 2 * S)
    assert reg.get_sample_value("zmqrt_results_total", {"outcome": "missed"}) == 10
    assert reg.get_sample_value("zmqrt_rejected_total", {"code": "QUEUE_FULL"}) == 1
    p99 = reg.get_sample_value("zmqrt_latency_seconds", {"kernel": "fft", "stage": "e2e", "quantile": "0.99"})
    assert p99 == pytest.approx(20_990e-9, rel=1e-3)
    assert reg.get_sample_value("zmqrt_latency_count", {"kernel": "vector_add", "stage": "kernel"}) == 1000
    make_registry(LatencyTracker())  # a second registry does not clash
    with start_metrics_server(0, t, now_ns=lambda: 2 * S) as server:
        assert server.port > 0
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as resp:
            body = resp.read().decode()
        assert resp.status == 200
        assert 'zmqrt_results_total{outcome="ok"} 1000.0' in body
        assert 'zmqrt_errors_total{code="GPU_FAULT"} 1.0' in body
        assert "zmqrt_goodput_per_second" in body
    server.close()  # idempotent


def test_stages_constant() -> None:
    assert STAGES == ("queue", "h2d", "kernel", "d2h", "service", "e2e")


def test_fast_percentiles_and_mean_equal_hdrh() -> None:
    import numpy as np

    from zmqrt.latency.tracker import mean_ns, new_histogram, percentiles_ns

    rng = np.random.default_rng(7)
    for values in (rng.lognormal(10, 1.5, 5000), rng.integers(1, 5, 50), [123456789.0], rng.exponential(2e4, 999)):
        h = new_histogram()
        for v in values:
            h.record_value(max(1, int(v)))
        pcts = [0.0, 1.0, 50.0, 90.0, 95.0, 99.0, 99.9, 100.0]
        assert percentiles_ns(h, pcts) == h.get_percentile_to_value_dict(pcts)
        assert mean_ns(h) == pytest.approx(h.get_mean_value(), rel=1e-9)


def test_reset_matches_hdrh_reset():
    from zmqrt.latency.tracker import new_histogram, percentiles_ns, reset

    a, b = new_histogram(), new_histogram()
    for h in (a, b):
        for v in (1_000, 50_000, 2_000_000):
            h.record_value(v)
    a.reset()
    reset(b)
    assert b.get_total_count() == 0 and not any(b.counts)
    assert (a.min_value, a.max_value, a.total_count) == (b.min_value, b.max_value, b.total_count)
    b.record_value(7_000)  # still usable after the memset
    assert percentiles_ns(b, (50.0,))[50.0] == b.get_value_at_percentile(50.0)


def test_percentiles_over_added_decoded_and_stale_bounds_equal_hdrh() -> None:
    """percentiles_ns scans only the buckets between min and max; histograms filled by ``add`` and decode keep
    those bounds too, and a histogram whose bounds miss a sample falls back to the whole array."""
    import numpy as np
    from hdrh.histogram import HdrHistogram

    from zmqrt.latency.tracker import _record, new_histogram, percentiles_ns

    rng = np.random.default_rng(11)
    pcts = [0.0, 50.0, 95.0, 99.0, 99.9, 100.0]
    a, b = new_histogram(), new_histogram()
    for v in rng.lognormal(11, 1.0, 3000):
        _record(a, int(v))
    for v in rng.lognormal(8, 0.5, 3000):
        _record(b, int(v))
    merged = new_histogram()
    merged.add(a)
    merged.add(b)
    decoded = HdrHistogram.decode(merged.encode())
    for h in (a, b, merged, decoded):
        assert percentiles_ns(h, pcts) == h.get_percentile_to_value_dict(pcts)
    stale = new_histogram()
    for v in (5_000, 6_000, 9_000_000):
        stale.record_value(v)
    stale.max_value = 6_000  # bounds that miss a sample: the full scan answers
    assert percentiles_ns(stale, [50.0, 100.0])[100.0] == stale.get_highest_equivalent_value(9_000_000)
