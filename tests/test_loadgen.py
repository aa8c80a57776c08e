"""The load generator: coordinated-omission arithmetic, mixes and scenarios, and runs against a CPU server."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ingest.loadgen import (
    LoadgenConfig,
    MixEntry,
    ScenarioError,
    build_pools,
    build_schedule,
    intended_latencies_ns,
    latency_histogram,
    load_scenario,
    naive_latencies_ns,
    parse_mix,
    run_loadgen,
)
from ingest.loadgen_report import summarize
from tests.server_support import running_server
from zmqrt.kernels.registry import load_registry

SCENARIOS_DIR = Path(__file__).resolve().parent.parent / "examples" / "scenarios"
MS = 1_000_000




# -- coordinated omission -----------------------------------------------------------------------------------------


def _stalled_server_run(rate_hz: int = 1000, seconds: float = 1.0, service_ns: int = 50_000,
                        stall_at_ns: int = 500 * MS, stall_ns: int = 100 * MS):
    """A FIFO server that stalls once, fed by a sender that cannot send while a task is outstanding (the
    closed loop that hides stalls). Returns intended, actual send and completion times."""
    n = int(rate_hz * seconds)
    intended = np.arange(n, dtype=np.int64) * (1_000_000_000 // rate_hz)
    sent = np.empty(n, np.int64)
    done = np.empty(n, np.int64)
    prev_done = 0
    for i in range(n):
        sent[i] = max(int(intended[i]), prev_done)
        start = sent[i]
        if stall_at_ns <= start < stall_at_ns + stall_ns:
            start = stall_at_ns + stall_ns
        done[i] = start + service_ns
        prev_done = int(done[i])
    return intended, sent, done


def test_a_stall_shows_in_the_percentiles_only_from_intended_send_times():
    intended, sent, done = _stalled_server_run()
    honest = latency_histogram(intended_latencies_ns(intended, done))
    naive = latency_histogram(naive_latencies_ns(sent, done))
    assert honest.get_total_count() == naive.get_total_count() == 1000
    # Every task that should have gone during the 100 ms stall waited for it: ~100 of 1000 tasks, so p99 sits
    # near the stall's length and p95 around half of it.
    assert honest.get_value_at_percentile(99) > 85 * MS
    assert honest.get_value_at_percentile(95) > 40 * MS
    assert honest.get_value_at_percentile(50) == pytest.approx(50_000, rel=0.01)
    # The blocked sender sent just one task into the stall: only the max sees it, every percentile looks healthy.
    assert naive.get_value_at_percentile(99) == pytest.approx(50_000, rel=0.01)
    assert naive.get_value_at_percentile(99.9) == pytest.approx(50_000, rel=0.01)
    assert naive.get_max_value() > 90 * MS


def test_lost_tasks_are_left_out_of_the_latencies():
    lat = intended_latencies_ns(np.array([0, 10, 20]), np.array([5, -1, 27]))
    assert lat.tolist() == [5, 7]


# -- mixes, scenarios, schedules -----------------------------------------------------------------------------------


def test_parse_mix_fields_and_params():
    e = parse_mix("kernel=saxpy, size=512, priority=0, deadline_us=50, weight=3, alpha=2.5, name=fast")
    assert e == MixEntry("saxpy", 512, 0, 50.0, None, 3.0, {"alpha": 2.5}, "fast")
    assert parse_mix("kernel=fir,params.x=1").params == {"x": 1}


@pytest.mark.parametrize("text, message", [
    ("size=5", "'kernel' is required"),
    ("kernel=vector_add,size", "is not key=value"),
    ("kernel=vector_add,size=0", "size must be at least 1"),
    ("kernel=vector_add,size=2.5", "size must be an integer"),
    ("kernel=vector_add,weight=0", "weight must be positive"),
    ("kernel=vector_add,priority=-1", "priority must be at least 0"),
    ("kernel=vector_add,deadline_us=abc", "deadline_us must be a number"),
])
def test_parse_mix_errors(text, message):
    with pytest.raises(ScenarioError, match=message):
        parse_mix(text)


def test_example_scenarios_load_and_their_inputs_check(tmp_path):
    registry = load_registry()
    files = sorted(SCENARIOS_DIR.glob("*.toml"))
    assert files
    for path in files:
        sc = load_scenario(path)
        assert sc.mix and sc.name
        build_pools(sc.mix, registry, np.random.default_rng(0), 2)
    sc = load_scenario(SCENARIOS_DIR / "control_loop.toml")
    assert sc.arrival == "poisson" and sc.rate_hz == 5000.0 and sc.seed == 7
    assert sc.mix[0] == MixEntry("saxpy", 64, 0, 100.0, 1000.0, 1.0, {"alpha": 0.5}, "control saxpy")


GOOD = '[[task]]\nkernel = "vector_add"\n'


@pytest.mark.parametrize("text, message", [
    ("rate = 5\n", "needs at least one \\[\\[task\\]\\] table"),
    ("rate = = 5\n" + GOOD, "not valid TOML"),
    ("rates = 5\n" + GOOD, "unknown top-level key\\(s\\) rates"),
    ("rate = -1\n" + GOOD, "rate must be positive"),
    ("count = 2.5\n" + GOOD, "count must be int"),
    ('arrival = "bursty"\n' + GOOD, "arrival must be one of constant, poisson"),
    (GOOD + "sise = 4\n", "\\[\\[task\\]\\] #1: unknown key\\(s\\) sise"),
    (GOOD + "[[task]]\nsize = 4\n", "\\[\\[task\\]\\] #2: 'kernel' is required"),
    (GOOD + "priority = true\n", "priority must be an integer"),
    (GOOD + 'params = "alpha"\n', "params must be a table"),
])
def test_bad_scenarios_say_where_and_why(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ScenarioError, match=message) as info:
        load_scenario(path)
    assert str(path) in str(info.value)


def test_missing_scenario_file(tmp_path):
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "nope.toml")


def test_unknown_kernel_and_bad_param_fail_before_sending():
    registry = load_registry()
    with pytest.raises(ScenarioError, match="unknown kernel 'nope'"):
        build_pools([MixEntry("nope")], registry, np.random.default_rng(0), 1)
    with pytest.raises(ScenarioError, match="BAD_PARAM"):
        build_pools([MixEntry("matmul", params={"alpha": 1.0})], registry, np.random.default_rng(0), 1)


def test_schedules_constant_and_poisson():
    mix = [MixEntry("vector_add", weight=3), MixEntry("saxpy", weight=1)]
    cfg = LoadgenConfig("tcp://x:1", mix, rate_hz=1000, duration_s=2.0, check_fraction=0.25)
    s = build_schedule(cfg, np.random.default_rng(1))
    assert len(s) == 2000 and s.at_ns[1] == 1_000_000 and s.at_ns[-1] == 1999 * 1_000_000
    assert 0.70 < (s.entry == 0).mean() < 0.80
    assert 0.20 < s.check.mean() < 0.30
    cfg.arrival = "poisson"
    p = build_schedule(cfg, np.random.default_rng(1))
    assert 1800 < len(p) < 2200 and p.at_ns[0] == 0 and p.at_ns[-1] < 2 * 10**9
    assert np.all(np.diff(p.at_ns) >= 0)
    gaps = np.diff(p.at_ns) / 1e6
    assert 0.9 < gaps.mean() < 1.1 and 0.9 < gaps.std() < 1.1  # exponential: std == mean
    cfg.count, cfg.duration_s = 10, None
    assert len(build_schedule(cfg, np.random.default_rng(1))) == 10


# -- against a server ------------------------------------------------------------------------------------------


def test_help_works():
    from zmqrt.cli import main

    with pytest.raises(SystemExit) as info:
        main(["loadgen", "--help"])
    assert info.value.code == 0


def test_cli_run_against_cpu_server(ipc_endpoint, tmp_path, capsys):
    from zmqrt.cli import main

    files = {k: tmp_path / f"run.{k}" for k in ("json", "png", "hlog")}
    with running_server(ipc_endpoint()) as server:
        rc = main(["loadgen", "--endpoint", server.receiver.endpoint, "--rate", "500", "--count", "300",
                   "--seed", "3", "--check-fraction", "1.0", "--timeout", "10", "-q",
                   "--mix", "kernel=vector_add,size=256,priority=1,weight=2",
                   "--mix", "kernel=saxpy,size=128,priority=0,alpha=1.5",
                   "--mix", "kernel=fft,size=64", "--kernel", "matmul", "--size", "64",
                   "--json", str(files["json"]), "--plot", str(files["png"]), "--hdr-log", str(files["hlog"])])
    assert rc == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert "overall" in out and "P99.9" in out
    report = json.loads(files["json"].read_text())
    assert set(report) >= {"config", "overall", "entries", "mismatch_messages", "duplicates"}
    assert report["config"]["seed"] == 3 and report["config"]["count"] == 300
    assert [e["label"] for e in report["entries"]] == ["vector_add/256/p1", "saxpy/128/p0", "fft/64", "matmul/64"]
    for group in [report["overall"], *report["entries"]]:
        assert set(group) >= {"counts", "miss_pct", "latency_us", "throughput_hz", "server_us", "hdr"}
        assert set(group["counts"]) >= {"sent", "ok", "error", "error_by_code", "rejected", "rejected_by_code",
                                        "expired", "missed", "lost", "checked", "mismatches"}
        assert set(group["latency_us"]) == {"count", "mean", "p50", "p90", "p95", "p99", "p99.9", "max"}
        assert set(group["server_us"]) == {"queue", "h2d", "kernel", "d2h", "service"}
    c = report["overall"]["counts"]
    assert c["tasks"] == c["sent"] == c["ok"] == c["checked"] == 300
    assert c["lost"] == c["mismatches"] == c["error"] == c["rejected"] == 0
    assert sum(e["counts"]["tasks"] for e in report["entries"]) == 300
    lat = report["overall"]["latency_us"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99.9"] <= lat["max"]
    from hdrh.histogram import HdrHistogram

    assert HdrHistogram.decode(report["overall"]["hdr"]).get_total_count() == 300
    png = files["png"].read_bytes()
    assert len(png) > 1000 and png.startswith(b"\x89PNG\r\n\x1a\n")
    log = files["hlog"].read_text()
    assert "#[StartTime:" in log and log.count("HIST") >= 1


def test_two_producer_processes_merge(tcp_endpoint):
    with running_server(tcp_endpoint()) as server:
        cfg = LoadgenConfig(server.receiver.endpoint, [MixEntry("vector_add", 64), MixEntry("reduce_sum", 256)],
                            rate_hz=500, count=120, seed=11, processes=2, check_fraction=0.5, timeout_s=10)
        res = run_loadgen(cfg)
    assert len(res) == 120
    assert set(res.status.tolist()) == {"ok"}
    assert res.worker.tolist() == [0, 1] * 60  # task k went through producer k % 2
    assert np.all(np.diff(res.intended_ns[::2]) > 0)
    s = summarize(res)
    assert s["overall"]["counts"]["mismatches"] == 0 and s["overall"]["counts"]["checked"] > 30


def test_a_server_that_never_answers_loses_every_task(ipc_endpoint):
    import zmq

    ctx = zmq.Context()
    sink = ctx.socket(zmq.PULL)
    try:
        sink.bind(ipc_endpoint())
        cfg = LoadgenConfig(sink.getsockopt_string(zmq.LAST_ENDPOINT), [MixEntry()], rate_hz=1000, count=20,
                            timeout_s=0.2, seed=1)
        res = run_loadgen(cfg)
    finally:
        sink.close(linger=0)
        ctx.term()
    s = summarize(res)["overall"]
    assert s["counts"]["lost"] == 20 and s["counts"]["sent"] == 20 and s["latency_us"] == {"count": 0}


def test_fast_ok_reads_what_msgpack_reads_and_nothing_else():
    import msgpack

    from ingest.openloop import fast_ok
    from ingest.protocol import OkEncoder, encode_ok_result, encode_result
    from zmqrt.errors import Code

    out = [np.arange(256, dtype=np.float32)]
    for task_id in (0, 7, 2**40, "lg3_0_123456"):
        for missed in (False, True):
            frame = OkEncoder(out).encode(task_id, out, missed, 12.5, 99.25)
            msg = msgpack.unpackb(frame, raw=False)
            assert fast_ok(frame) == (msg["id"], msg["missed_deadline"], msg["latency_us"])
    timed = encode_ok_result(5, out, False, {"queue": 1.0, "h2d": 2.0, "kernel": 3.0, "d2h": 4.0, "service": 9.0})
    assert fast_ok(timed) is None  # other latency stages: the full unpack reads them
    assert fast_ok(encode_result(5, Code.QUEUE_FULL, "full")) is None
    assert fast_ok(b"\x87\xa2id") is None and fast_ok(b"") is None


def test_collector_processes_take_every_result_and_keep_checked_outputs(tcp_endpoint):
    """Producers that only send, each with a collector process for its results: the same answers as one thread."""
    with running_server(tcp_endpoint()) as server:
        cfg = LoadgenConfig(server.receiver.endpoint, [MixEntry("vector_add", 64), MixEntry("reduce_sum", 256)],
                            rate_hz=2000, count=200, seed=5, processes=2, check_fraction=0.5, timeout_s=10,
                            collector=True)
        res = run_loadgen(cfg)
    assert len(res) == 200
    assert set(res.status.tolist()) == {"ok"}
    # Each producer's intended times are shifted by its own start; sent and done are on the one host clock.
    assert np.all(res.done_ns > res.sent_ns) and np.all(res.sent_ns > 0)
    s = summarize(res)
    assert s["overall"]["counts"]["mismatches"] == 0 and s["overall"]["counts"]["checked"] > 50
    service = res.stages_us["service"]
    assert np.all(service[res.status == "ok"] > 0)  # the server's own figure came through the collector


def test_collector_reports_rejections_and_loses_what_never_comes(ipc_endpoint):
    import zmq

    from ingest.openloop import Planned, run_open_loop

    # A task the server rejects (unknown kernel) comes back in full; nothing answers the rest: lost after the timeout.
    with running_server(ipc_endpoint()) as server:
        plan = [Planned(i * 1_000_000, "no_such_kernel", [np.zeros(4, np.float32)]) for i in range(3)]
        recs = run_open_loop(server.receiver.endpoint, plan, timeout_s=5, collector=True)
    assert [r.status for r in recs] == ["rejected"] * 3
    assert all(r.code == "UNKNOWN_KERNEL" and "no_such_kernel" in r.message for r in recs)
    ctx = zmq.Context()
    sink = ctx.socket(zmq.PULL)
    try:
        sink.bind(ipc_endpoint())
        plan = [Planned(i * 100_000, "vector_add", [np.zeros(4, np.float32)] * 2) for i in range(5)]
        recs = run_open_loop(sink.getsockopt_string(zmq.LAST_ENDPOINT), plan, timeout_s=0.2, collector=True)
    finally:
        sink.close(linger=0)
        ctx.term()
    assert [r.status for r in recs] == ["lost"] * 5 and all(r.sent_ns > 0 for r in recs)


def test_open_loop_refuses_taking_no_results_while_behind():
    from ingest.openloop import run_open_loop

    with pytest.raises(ValueError, match="drain_per_send"):
        run_open_loop("ipc:///nonexistent/zmqrt-in", [], drain_per_send=0)


def test_open_loop_sends_with_the_collector_off_and_gives_it_back(tmp_path):
    import gc

    from ingest.openloop import Planned, run_open_loop

    seen = []
    # No server: the tasks queue in the PUSH and come back lost; what matters is the collector's state meanwhile.
    plan = [Planned(i * 2_000_000, "vector_add", [np.ones(8, np.float32), np.ones(8, np.float32)]) for i in range(100)]
    records = run_open_loop(f"ipc://{tmp_path}/nobody", plan, timeout_s=0.05,
                            progress=lambda done, n: seen.append((gc.isenabled(), gc.get_freeze_count())))
    assert len(records) == 100 and all(r.status == "lost" and r.sent_ns > 0 for r in records)
    assert seen and all(not on and frozen > 0 for on, frozen in seen)  # off and frozen while sending
    assert gc.isenabled() and gc.get_freeze_count() == 0  # and given back


def test_open_loop_starts_on_schedule_however_long_the_plan(tmp_path):
    from ingest.openloop import Planned, run_open_loop

    # The start is taken after every frame and record is built: the first send is on time even for a long plan
    # (200k records take tens of ms to build, and the first send used to lag by that).
    a = np.ones(8, np.float32)
    plan = [Planned(0, "vector_add", [a, a]) for _ in range(200_000)]
    records = run_open_loop(f"ipc://{tmp_path}/nobody", plan, timeout_s=0.01)
    first = records[0]
    assert first.sent_ns >= first.intended_ns > 0
    assert first.sent_ns - first.intended_ns < 10_000_000, (first.sent_ns - first.intended_ns) / 1e6


def test_open_loop_takes_its_start_after_ready(tmp_path):
    import time

    from ingest.openloop import Planned, run_open_loop

    calls = []

    def ready():  # several producers wait for each other here: the schedule must start after, not before
        calls.append(time.perf_counter_ns())
        time.sleep(0.1)

    a = np.ones(8, np.float32)
    records = run_open_loop(f"ipc://{tmp_path}/nobody", [Planned(0, "vector_add", [a, a])], timeout_s=0.01,
                            ready=ready)
    assert len(calls) == 1 and records[0].intended_ns >= calls[0] + 100_000_000
    assert records[0].sent_ns - records[0].intended_ns < 10_000_000
