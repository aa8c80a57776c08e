"""The server end to end on the CPU backend, through real ZeroMQ sockets on loopback (ipc and tcp)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import msgpack
import numpy as np
import pytest
import zmq

from ingest.client import Client
from ingest.protocol import encode_task
from tests.server_support import running_server
from zmqrt.backends.cpu import CpuBackend
from zmqrt.kernels.registry import load_registry
from zmqrt.statsview import fetch_stats


@pytest.fixture
def ingest_ep(endpoint):
    return endpoint()


def test_every_kernel_matches_numpy(ingest_ep):
    registry = load_registry()
    rng = np.random.default_rng()
    with running_server(ingest_ep) as server, Client(server.receiver.endpoint, timeout_s=10) as client:
        for spec in registry:
            inputs, params = spec.sample_inputs(rng, 200)
            res = client.call(spec.name, *inputs, params=params)
            assert res.status.value == "ok", (spec.name, res.code, res.message)
            want = spec.reference(inputs, spec.check(inputs, params).params)
            for got, ref in zip(res.outputs, want, strict=True):
                np.testing.assert_array_equal(got, ref)
            assert set(res.latency_us) >= {"queue", "h2d", "kernel", "d2h", "service"}
            assert res.latency_us["service"] > 0



class _UntimedCpu(CpuBackend):
    """The CPU backend answering stage_times as an untimed CUDA lane does (None): the server's per-form encoder."""

    def stage_times(self, lane):
        return None


def test_untimed_results_use_the_form_encoder_and_match_numpy(ingest_ep):
    registry = load_registry()
    rng = np.random.default_rng()
    backend = _UntimedCpu(registry, lanes=2)
    with running_server(ingest_ep, backend_instance=backend) as server, \
            Client(server.receiver.endpoint, timeout_s=10) as client:
        for spec in registry:
            for size in (200, 200, 64):  # the second task of a form reuses its encoder; a new size gets another
                inputs, params = spec.sample_inputs(rng, size)
                res = client.call(spec.name, *inputs, params=params, deadline_us=10_000_000)
                assert res.status.value == "ok", (spec.name, res.code, res.message)
                want = spec.reference(inputs, spec.check(inputs, params).params)
                for got, ref in zip(res.outputs, want, strict=True):
                    np.testing.assert_array_equal(got, ref)
                assert set(res.latency_us) == {"queue", "service"} and res.latency_us["service"] > 0
                assert res.missed_deadline is False
        assert len(server._encoders) >= len(registry)

BAD_TASKS = [
    ("unknown kernel", dict(kernel="nope", inputs=[np.ones(4, np.float32)]), "UNKNOWN_KERNEL"),
    ("wrong arity", dict(kernel="vector_add", inputs=[np.ones(4, np.float32)]), "BAD_ARITY"),
    ("wrong dtype", dict(kernel="vector_add", inputs=[np.ones(4, np.float64), np.ones(4, np.float64)]), "BAD_DTYPE"),
    ("shape mismatch", dict(kernel="vector_add", inputs=[np.ones(4, np.float32), np.ones(5, np.float32)]),
     "BAD_SHAPE"),
    ("fft not power of two", dict(kernel="fft", inputs=[np.ones(6, np.complex64)]), "BAD_SHAPE"),
    ("bad param", dict(kernel="saxpy", inputs=[np.ones(4, np.float32)] * 2, params={"alpha": "x"}), "BAD_PARAM"),
    ("priority out of range", dict(kernel="reduce_sum", inputs=[np.ones(4, np.float32)], priority=99),
     "BAD_PRIORITY"),
    ("negative deadline", dict(kernel="reduce_sum", inputs=[np.ones(4, np.float32)], deadline_us=-5),
     "BAD_DEADLINE"),
    ("too large", dict(kernel="reduce_sum", inputs=[np.ones(40_000, np.float32)]), "TOO_LARGE"),
]


def test_bad_inputs_each_get_their_code(ingest_ep):
    with running_server(ingest_ep, max_task_bytes=128 << 10) as server, \
            Client(server.receiver.endpoint, timeout_s=10) as client:
        for i, (what, task, code) in enumerate(BAD_TASKS):
            fut = client.expect(f"bad-{i}")
            client.send_raw(encode_task(f"bad-{i}", reply_to=client.reply_to, **task))
            res = fut.result(10)
            assert res.code.value == code, (what, res.code, res.message)
            assert res.status.value == "rejected" and res.message
        # and the server still serves
        res = client.call("vector_add", np.ones(3, np.float32), np.ones(3, np.float32))
        assert res.ok


def test_garbage_truncated_and_oversized_frames_leave_server_serving(ingest_ep):
    with running_server(ingest_ep, max_task_bytes=64 << 10) as server, \
            Client(server.receiver.endpoint, timeout_s=10) as client:
        good = encode_task("g", "vector_add", [np.ones(8, np.float32)] * 2, reply_to=client.reply_to)
        client.send_raw(b"\xc1\xc1garbage")
        client.send_raw(good[: len(good) // 2])
        client.send_raw(msgpack.packb([1, 2, 3]))
        client.send_raw(msgpack.packb({"kernel": "vector_add"}))  # no id: undecodable, no result
        # Over ZMQ_MAXMSGSIZE: the server's socket drops the peer's connection, the server keeps serving.
        with Client(server.receiver.endpoint, timeout_s=2) as rogue:
            rogue.send_raw(b"\x00" * (256 << 10))
            time.sleep(0.2)
        for i in range(20):
            res = client.call("vector_add", np.full(8, i, np.float32), np.ones(8, np.float32))
            assert res.ok and res.outputs[0][0] == i + 1
        deadline = time.monotonic() + 5
        while server.receiver.undecodable < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.receiver.undecodable == 4
        assert server.tracker.undecodable == 4


def test_two_producers_are_isolated(ingest_ep):
    with running_server(ingest_ep) as server, Client(server.receiver.endpoint, timeout_s=10) as a, \
            Client(server.receiver.endpoint, timeout_s=10) as b:
        futs_a = [a.submit("vector_add", np.full(4, i, np.float32), np.zeros(4, np.float32)) for i in range(100)]
        futs_b = [b.submit("vector_add", np.full(4, -i, np.float32), np.zeros(4, np.float32)) for i in range(100)]
        for i, f in enumerate(futs_a):
            assert f.result(10).outputs[0][0] == i
        for i, f in enumerate(futs_b):
            assert f.result(10).outputs[0][0] == -i
        assert a.unknown_results == 0 and b.unknown_results == 0


def test_infeasible_deadline_rejected_before_running(ingest_ep):
    with running_server(ingest_ep, calibrate=True) as server, Client(server.receiver.endpoint, timeout_s=10) as c:
        a = np.ones((128, 128), np.float32)
        res = c.call("matmul", a, a, deadline_us=0.001)
        assert res.status.value == "rejected" and res.code.value == "DEADLINE_INFEASIBLE"
        assert "predicted finish" in res.message
        assert server.tracker.ok == 0  # it never ran
        assert c.call("matmul", a, a, deadline_us=10_000_000).ok


def test_expired_task_is_not_run(ingest_ep):
    # admission only flags, and a long task ahead makes the short-deadline task late by dispatch time.
    with running_server(ingest_ep, admission="flag", expire="late", lanes=1, policy="fp") as server, \
            Client(server.receiver.endpoint, timeout_s=20) as c:
        big = np.ones((300, 300), np.float32)
        slow = [c.submit("matmul", big, big, priority=0) for _ in range(3)]
        late = c.submit("vector_add", np.ones(4, np.float32), np.ones(4, np.float32), priority=7, deadline_us=50)
        res = late.result(20)
        assert res.status.value == "expired" and res.code.value == "EXPIRED", res.message
        assert not res.outputs
        assert all(f.result(20).ok for f in slow)
        deadline = time.monotonic() + 5  # the server counts just after sending
        while server.tracker.expired == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.tracker.expired == 1


class GatedCpuBackend(CpuBackend):
    """A CPU backend whose lanes stay busy until the test opens the gate: a deterministic backlog."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.gate = threading.Event()

    def poll(self, lane: int) -> bool:
        return self.gate.is_set()


def test_queue_full_answers_and_nothing_is_lost(ingest_ep):
    backend = GatedCpuBackend(load_registry(), lanes=1)
    with running_server(ingest_ep, queue_capacity=2, lanes=1, backend_instance=backend) as server, \
            Client(server.receiver.endpoint, timeout_s=20) as c:
        small = np.ones(16, np.float32)
        futs = [c.submit("vector_add", small, small, priority=3) for _ in range(10)]
        deadline = time.monotonic() + 10
        while server.receiver.frames < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        backend.gate.set()  # one ran, two queued, seven refused
        codes = [f.result(20).code.value for f in futs]
        assert codes.count("OK") == 3 and codes.count("QUEUE_FULL") == 7
        assert server.tracker.rejected.get("QUEUE_FULL", 0) == 7


def test_duplicate_id_while_in_flight(ingest_ep, zmq_ctx):
    backend = GatedCpuBackend(load_registry(), lanes=1)
    with running_server(ingest_ep, lanes=1, backend_instance=backend) as server:
        pull = zmq_ctx.socket(zmq.PULL)
        pull.bind("tcp://127.0.0.1:*")
        reply_to = pull.getsockopt_string(zmq.LAST_ENDPOINT)
        push = zmq_ctx.socket(zmq.PUSH)
        push.connect(server.receiver.endpoint)
        big = np.ones((256, 256), np.float32)
        small = [np.ones(2, np.float32)] * 2
        # The blocker keeps the single (gated) lane busy, so both copies of "same" are read while the first
        # is queued.
        push.send(encode_task("blocker", "matmul", [big, big], reply_to=reply_to))
        push.send(encode_task("same", "vector_add", small, reply_to=reply_to))
        push.send(encode_task("same", "vector_add", small, reply_to=reply_to))
        deadline = time.monotonic() + 10
        while server.receiver.frames < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        backend.gate.set()  # the gated lane held the blocker until all three were read
        results = []
        for _ in range(3):
            assert pull.poll(20_000)
            results.append(msgpack.unpackb(pull.recv(), raw=False))
        assert sorted((r["id"], r["code"]) for r in results) == [
            ("blocker", "OK"), ("same", "DUPLICATE"), ("same", "OK")]
        assert not pull.poll(200)  # exactly one result each
        # once the first has finished, the id may be used again
        push.send(encode_task("same", "vector_add", [np.ones(2, np.float32)] * 2, reply_to=reply_to))
        assert pull.poll(10_000)
        assert msgpack.unpackb(pull.recv(), raw=False)["code"] == "OK"
        assert server.tracker.rejected.get("DUPLICATE", 0) == 1


def test_stats_and_metrics_endpoints_answer(ingest_ep, ipc_endpoint):
    stats_ep = ipc_endpoint()
    with running_server(ingest_ep, stats=stats_ep, metrics_port=0) as server, \
            Client(server.receiver.endpoint, timeout_s=10) as c:
        for _ in range(10):
            assert c.call("reduce_sum", np.ones(16, np.float32)).ok
        ctx = zmq.Context()
        req = ctx.socket(zmq.REQ)
        req.setsockopt(zmq.LINGER, 0)
        req.connect(stats_ep)
        req.send(b"stats")
        assert req.poll(5000)
        snap = msgpack.unpackb(req.recv(), raw=False)
        req.close()
        ctx.term()
        assert snap["counters"]["ok"] == 10
        assert snap["stages"]["service"]["count"] == 10
        assert snap["server"]["results_sent"] == 10
        body = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics.port}/metrics", timeout=5).read().decode()
        assert "zmqrt_results_total" in body


def _stats(endpoint: str) -> dict:
    snap = fetch_stats(endpoint, timeout_s=10)
    assert snap is not None, "no stats answer"
    return snap


def test_serve_cli_sigterm_answers_every_queued_task():
    tmp = tempfile.mkdtemp(prefix="zq")
    ingest = f"ipc://{tmp}/in"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    stats_ep = f"ipc://{tmp}/stats"
    proc = subprocess.Popen([sys.executable, "-m", "zmqrt.cli", "serve", "--backend", "cpu", "--ingest", ingest,
                             "--lanes", "1", "--queue-capacity", "10000", "--stats", stats_ep],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        c = Client(ingest, timeout_s=30)
        # wait for the server to answer
        t0 = time.monotonic()
        while True:
            try:
                if c.call("vector_add", np.ones(2, np.float32), np.ones(2, np.float32), timeout_s=1).ok:
                    break
            except TimeoutError:
                pass
            assert time.monotonic() - t0 < 60, "server did not start"
        frames_before = _stats(stats_ep)["server"]["frames"]
        big = np.ones((200, 200), np.float32)
        futs = [c.submit("matmul", big, big) for _ in range(200)]
        # SIGTERM once the server has read them all: a frame still in transit when the ingest socket closes was
        # never received, and no server can answer it (PROTOCOL.md, shutdown).
        t0 = time.monotonic()
        while _stats(stats_ep)["server"]["frames"] - frames_before < 200:
            assert time.monotonic() - t0 < 30, "server did not receive the tasks"
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        codes = [f.result(30).code.value for f in futs]
        assert set(codes) <= {"OK", "SHUTDOWN"}
        assert len(codes) == 200
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
        assert "shutdown:" in out
        c.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_admission_recovers_from_a_pessimistic_prediction(ingest_ep):
    # Uncalibrated: the predictor assumes 1 ms for a kernel it never saw, so an 800 µs deadline looks
    # infeasible. After a streak of 16 rejections one task is admitted as a probe; its measured time teaches the
    # predictor, and later tasks are admitted.
    with running_server(ingest_ep, calibrate=False) as server, Client(server.receiver.endpoint, timeout_s=10) as c:
        x = np.ones(64, np.float32)
        codes = [c.call("vector_add", x, x, deadline_us=800).code.value for _ in range(100)]
        first_ok = codes.index("OK")
        assert set(codes[:first_ok]) == {"DEADLINE_INFEASIBLE"} and first_ok == 15  # the 16th is the probe
        assert codes[-10:] == ["OK"] * 10
        assert server.probes == 1


def test_watchdog_fails_a_hung_task_and_stops_the_engine(ingest_ep):
    backend = GatedCpuBackend(load_registry(), lanes=1)  # the gate never opens: a kernel that never finishes
    with running_server(ingest_ep, lanes=1, watchdog_ms=50, backend_instance=backend) as server, \
            Client(server.receiver.endpoint, timeout_s=10) as c:
        res = c.call("vector_add", np.ones(4, np.float32), np.ones(4, np.float32))
        assert res.code.value == "GPU_FAULT" and "watchdog" in res.message
        deadline = time.monotonic() + 5
        while server.fault is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.fault is not None and "watchdog" in server.fault  # run_server then exits EXIT_GPU_FAULT


def test_stage_trace_is_written_and_summarized(ingest_ep, tmp_path):
    from zmqrt.trace import STAGES, summarize

    path = tmp_path / "trace.npy"
    with running_server(ingest_ep, trace_path=str(path)) as server, \
            Client(server.receiver.endpoint, timeout_s=10) as c:
        for i in range(20):
            assert c.call("vector_add", np.full(8, i, np.float32), np.ones(8, np.float32)).ok
    server.close()  # the trace is written at close
    rows = np.load(path)
    assert rows.shape[1] == len(STAGES) and (rows[:, 0] > 0).sum() == 20
    done = rows[rows[:, -1] > 0]
    assert len(done) == 20 and np.all(np.diff(done, axis=1) >= 0)  # stamps in path order
    summary = summarize(rows)
    assert summary["total recv->sent"]["n"] == 20 and summary["total recv->sent"]["p50"] > 0


def _backlog(server, client, arrays, frames: int, **kw):
    """Submit one task per entry of ``arrays`` (pairs), wait until the server has read ``frames`` frames."""
    futs = [client.submit("vector_add", a, b, **kw) for a, b in arrays]
    deadline = time.monotonic() + 10
    while server.receiver.frames < frames and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.receiver.frames == frames
    return futs


def test_batching_runs_queued_tasks_of_one_form_as_one_launch(ingest_ep):
    backend = GatedCpuBackend(load_registry(), lanes=1)
    rng = np.random.default_rng()
    pairs = [(rng.standard_normal(16).astype(np.float32), rng.standard_normal(16).astype(np.float32))
             for _ in range(11)]
    with running_server(ingest_ep, lanes=1, batch_max=32, bulk=False, backend_instance=backend) as server, \
            Client(server.receiver.endpoint, timeout_s=20) as c:
        futs = _backlog(server, c, pairs, 11)  # the first holds the lane, ten queue behind it
        backend.gate.set()
        results = [f.result(20) for f in futs]
        for (a, b), res in zip(pairs, results, strict=True):
            assert res.ok and not res.missed_deadline
            np.testing.assert_array_equal(res.outputs[0], a + b)
        assert server.batches == 1 and server.batched_tasks == 10
        assert server.snapshot()["server"]["batched_tasks"] == 10


def test_a_batch_ends_where_the_form_changes_and_keeps_the_policy_order(ingest_ep):
    backend = GatedCpuBackend(load_registry(), lanes=1)
    rng = np.random.default_rng()
    sizes = [16, 16, 16, 16, 32, 16, 16]  # running: 1; queued: 3 of one form, 1 of another, 2 of the first
    pairs = [(rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)) for n in sizes]
    with running_server(ingest_ep, lanes=1, policy="fp", batch_max=32, bulk=False,
                        backend_instance=backend) as server, \
            Client(server.receiver.endpoint, timeout_s=20) as c:
        futs = _backlog(server, c, pairs, len(pairs))
        backend.gate.set()
        for (a, b), f in zip(pairs, futs, strict=True):
            res = f.result(20)
            assert res.ok
            np.testing.assert_array_equal(res.outputs[0], a + b)
        assert server.batches == 2 and server.batched_tasks == 5


@pytest.mark.parametrize("deadline_us", [None, 5e6])
def test_a_batch_grows_only_while_its_earliest_deadline_holds(ingest_ep, deadline_us):
    backend = GatedCpuBackend(load_registry(), lanes=1)
    x = np.ones(16, np.float32)
    with running_server(ingest_ep, lanes=1, batch_max=32, bulk=False, backend_instance=backend) as server, \
            Client(server.receiver.endpoint, timeout_s=20) as c:
        # One task (2 x 64 B in: size class 8) is predicted at about 25 µs, two at about 25 s: a batch of two can
        # meet no deadline of 5 s, and tasks without a deadline batch regardless.
        server.predictor.seed("vector_add", 8, 10_000)
        server.predictor.seed("vector_add", 9, 10_000_000_000)
        futs = _backlog(server, c, [(x, x)] * 4, 4, deadline_us=deadline_us)
        backend.gate.set()
        assert all(f.result(20).ok for f in futs)
        assert server.batched_tasks == (3 if deadline_us is None else 0)


def test_batching_is_off_by_default(ingest_ep):
    backend = GatedCpuBackend(load_registry(), lanes=1)
    x = np.ones(16, np.float32)
    with running_server(ingest_ep, lanes=1, backend_instance=backend) as server, \
            Client(server.receiver.endpoint, timeout_s=20) as c:
        futs = _backlog(server, c, [(x, x)] * 5, 5)
        backend.gate.set()
        assert all(f.result(20).ok for f in futs)
        assert server.batches == 0


def test_deferred_bookkeeping_is_applied_when_the_loop_idles(ingest_ep):
    # Histograms and counters of sent tasks are applied in idle passes (one entry per pass), so they trail the
    # results by microseconds and never by a task: an idle loop catches up at once.
    with running_server(ingest_ep) as server, Client(server.receiver.endpoint, timeout_s=10) as c:
        futs = [c.submit("vector_add", np.ones(8, np.float32), np.ones(8, np.float32)) for _ in range(50)]
        assert all(f.result(10).ok for f in futs)
        deadline = time.monotonic() + 5
        while server.tracker.ok < 50 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert server.tracker.ok == 50 and not server._books
        assert server.tracker.stage_summaries()["service"]["count"] == 50


def test_resident_flag_is_ignored_with_a_warning_on_the_cpu_backend(ingest_ep, caplog):
    with caplog.at_level("WARNING"), running_server(ingest_ep, resident=True) as server, \
            Client(server.receiver.endpoint, timeout_s=10) as client:
        a = np.arange(8, dtype=np.float32)
        res = client.call("vector_add", a, a)
        assert res.status.value == "ok"
        np.testing.assert_array_equal(res.outputs[0], a + a)
    assert "resident lanes need the CUDA backend" in caplog.text


def test_serve_help_explains_resident():
    out = subprocess.run([sys.executable, "-m", "zmqrt.cli", "serve", "--help"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "--resident" in out.stdout and "mapped host memory" in out.stdout


def test_sampled_timed_tasks_do_not_teach_the_predictor(ingest_ep):
    # With stage_timing_every=4 (and no time gap), tasks 1, 5 and 9 are timed: events around each stage make them
    # slower (and with --resident they take the launched path), so only the first of them, which the predictor has
    # nothing better than, is a sample.
    seen = []
    with running_server(ingest_ep, stage_timing_every=4, stage_timing_gap_ms=0, lanes=1) as server, \
            Client(server.receiver.endpoint, timeout_s=10) as c:
        observe = server.predictor.observe
        server.predictor.observe = lambda kernel, sc, ns, bound_only=False: (seen.append(kernel),
                                                                              observe(kernel, sc, ns, bound_only))
        x = np.ones(64, np.float32)
        for _ in range(12):
            assert c.call("vector_add", x, x).ok
    assert seen.count("vector_add") == 10


@pytest.mark.parametrize(("gap_ms", "want"), [(None, [True] + [False] * 7), (0, [True, False] * 4)])
def test_timed_tasks_are_at_most_one_per_gap(ingest_ep, gap_ms, want):
    # The default gap (100 ms) lets only the first of a quick run of tasks be timed, however small stage_timing_every
    # is; with no gap, every second one is.
    flags = []
    extra = {} if gap_ms is None else {"stage_timing_gap_ms": gap_ms}
    with running_server(ingest_ep, stage_timing_every=2, lanes=1, **extra) as server, \
            Client(server.receiver.endpoint, timeout_s=10) as c:
        submit = server.backend.submit

        def recording(lane, spec, inputs, checked, timed=True):
            flags.append(timed)
            submit(lane, spec, inputs, checked, timed)

        server.backend.submit = recording
        x = np.ones(64, np.float32)
        t0 = time.monotonic()
        for _ in range(8):
            assert c.call("vector_add", x, x).ok
        quick = time.monotonic() - t0 < 0.09
    if gap_ms == 0 or quick:  # a very slow machine may pass the 100 ms gap within the run
        assert flags == want



def test_repeated_forms_decode_from_byte_templates_with_fresh_data(ingest_ep):
    # Two producers' worth of one form (a Client each: different reply endpoints, so two templates), fresh random
    # data every task: every output matches numpy, and most tasks were decoded from a byte template.
    rng = np.random.default_rng()
    with running_server(ingest_ep) as server, Client(server.receiver.endpoint, timeout_s=10) as c1, \
            Client(server.receiver.endpoint, timeout_s=10) as c2:
        for i in range(40):
            a, b = rng.standard_normal(300).astype(np.float32), rng.standard_normal(300).astype(np.float32)
            res = (c1, c2)[i % 2].call("saxpy", a, b, params={"alpha": 1.5}, priority=i % 3, deadline_us=50_000)
            assert res.ok, (res.code, res.message)
            np.testing.assert_allclose(res.outputs[0], 1.5 * a + b, rtol=1e-6)
        assert server.decoder.templated >= 30 and len(server.decoder._templates) == 2


def test_stage_timing_gap_is_checked():
    from zmqrt.config import build_config

    assert build_config().stage_timing_gap_ms == 100.0
    assert build_config(stage_timing_gap_ms=0).stage_timing_gap_ms == 0
    for bad in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="stage_timing_gap_ms"):
            build_config(stage_timing_gap_ms=bad)
