"""Cache warming (``keep_warm_us``): in idle spin passes the loop runs the last task's decode and its result's encode
again and discards both. It must never send, count, admit or change anything a task can see."""

from __future__ import annotations

import time

import msgpack
import numpy as np
import pytest
import zmq

from ingest.protocol import encode_task
from tests.server_support import running_server
from zmqrt.backends.cpu import CpuBackend
from zmqrt.config import ServerConfig, validate
from zmqrt.kernels.registry import load_registry
from zmqrt.server import Server


class Untimed(CpuBackend):
    """The CPU backend reporting no GPU stage times, as the CUDA backend's untimed tasks: their results take the
    per-form encoder, which is what a warm pass runs. Records each ``warm`` call: (lane, whether any lane was busy,
    a copy of the inputs)."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.server: Server | None = None
        self.warmed: list[tuple] = []
        self.fail_warm = False

    def stage_times(self, lane):
        return None

    def warm(self, lane, spec, inputs, checked):
        if self.fail_warm:
            raise RuntimeError("boom")
        busy = bool(self.server._busy_lanes) if self.server is not None else None
        self.warmed.append((lane, busy, [np.array(a) for a in inputs]))


def _frame(i: int, rng, reply_to: str) -> tuple[bytes, np.ndarray]:
    a, b = rng.standard_normal((2, 256), dtype=np.float32)
    return encode_task(f"t{i}", "vector_add", [a, b], priority=0, deadline_us=50_000.0, reply_to=reply_to), a + b


@pytest.fixture
def in_process(ipc_endpoint, zmq_ctx):
    """A spinning server with warming on, driven in-process (``_accept``, ``_poll_lanes``, ``_warm``), its results
    read from a real PULL socket: (server, backend, pull, reply_to)."""
    pull = zmq_ctx.socket(zmq.PULL)
    pull.bind(ipc_endpoint())
    cfg = ServerConfig(backend="cpu", ingest=ipc_endpoint(), calibrate=False, linger_ms=0, stage_timing_every=0,
                       spin=True, keep_warm_us=10.0)
    backend = Untimed(load_registry(), lanes=2)
    server = Server(cfg, backend=backend)
    backend.server = server
    try:
        yield server, backend, pull, pull.getsockopt_string(zmq.LAST_ENDPOINT)
    finally:
        server.close()


def test_a_warm_pass_sends_counts_and_admits_nothing(in_process):
    server, backend, pull, reply_to = in_process
    rng = np.random.default_rng()
    server._warm()  # nothing seen yet: nothing to run
    assert backend.warmed == []
    for i in range(3):  # the first frames build the template; the later ones match it
        frame, _ = _frame(i, rng, reply_to)
        server._accept(frame)
        while server._busy_lanes:
            server._poll_lanes()
    last_inputs = np.frombuffer(frame, np.uint8)  # the warm pass copies the last matched frame's inputs
    assert len(server._warm_frames) == 1 and len(server._warm_results) == 1
    before = (server.decoder.templated, server.results_sent, set(server._inflight_keys), server._seq,
              len(server._books), server.tracker.snapshot(encode=False)["counters"])
    for _ in range(5):
        server._warm()
    assert server.warm_passes == 6
    # Each pass copied the last task's inputs into the lane an urgent task takes next, with every lane idle.
    assert len(backend.warmed) == 5
    for lane, busy, inputs in backend.warmed:
        assert lane == server._free_lanes[-1] and busy is False
        assert len(inputs) == 2 and all(a.nbytes == 1024 for a in inputs)
        assert inputs[0].tobytes() in last_inputs.tobytes() and inputs[1].tobytes() in last_inputs.tobytes()
    after = (server.decoder.templated, server.results_sent, set(server._inflight_keys), server._seq,
             len(server._books), server.tracker.snapshot(encode=False)["counters"])
    assert after == before
    got = []
    while pull.poll(200):
        got.append(msgpack.unpackb(pull.recv(), raw=False))
    assert [r["id"] for r in got] == ["t0", "t1", "t2"]  # one result per task, none from the warm passes
    # A task after warm passes: its own result, equal to numpy.
    frame, want = _frame(3, rng, reply_to)
    server._accept(frame)
    while server._busy_lanes:
        server._poll_lanes()
    assert pull.poll(2000)
    res = msgpack.unpackb(pull.recv(), raw=False)
    assert res["id"] == "t3" and res["status"] == "ok"
    np.testing.assert_array_equal(np.frombuffer(res["outputs"][0]["data"], np.float32), want)


def test_the_spinning_loop_warms_in_idle_time_and_every_task_gets_its_result(producer):
    rng = np.random.default_rng()
    ingest, push, pull, reply_to = producer
    with running_server(ingest, spin=True, keep_warm_us=20.0, stage_timing_every=0,
                        backend_instance=Untimed(load_registry(), lanes=2)) as server:
        push.connect(ingest)
        wants = {}
        for i in range(20):
            frame, want = _frame(i, rng, reply_to)
            wants[f"t{i}"] = want
            push.send(frame)
            time.sleep(0.005)  # idle between tasks: the loop warms
        got = {}
        for _ in range(20):
            assert pull.poll(5000), f"only {len(got)} results"
            res = msgpack.unpackb(pull.recv(), raw=False)
            got[res["id"]] = res
        assert not pull.poll(100), "more results than tasks"
        assert server.warm_passes > 0
        assert server.decoder.templated <= 20  # warm passes are not counted as templated tasks
    assert server.snapshot()["server"]["warm_passes"] == server.warm_passes  # in the stats answer
    assert set(got) == set(wants)
    for tid, res in got.items():
        assert res["status"] == "ok", res
        np.testing.assert_array_equal(np.frombuffer(res["outputs"][0]["data"], np.float32), wants[tid])


def test_a_failing_warm_pass_turns_warming_off_and_tasks_still_run(producer, caplog):
    rng = np.random.default_rng()
    ingest, push, pull, reply_to = producer
    backend = Untimed(load_registry(), lanes=2)
    with running_server(ingest, spin=True, keep_warm_us=5.0, stage_timing_every=0, backend_instance=backend) as srv:
        backend.server = srv
        backend.fail_warm = True
        push.connect(ingest)
        wants = []
        for i in range(5):
            frame, want = _frame(i, rng, reply_to)
            wants.append(want)
            push.send(frame)
            time.sleep(0.005)
        for want in wants:
            assert pull.poll(5000)
            res = msgpack.unpackb(pull.recv(), raw=False)
            assert res["status"] == "ok"
            np.testing.assert_array_equal(np.frombuffer(res["outputs"][0]["data"], np.float32), want)
        assert srv._warm_ns == 0
    assert "cache warming failed" in caplog.text


def test_keep_warm_defaults_to_on_where_the_loop_polls_idle():
    from zmqrt.config import KEEP_WARM_DEFAULT_US, keep_warm_us

    assert keep_warm_us(ServerConfig(spin=True)) == KEEP_WARM_DEFAULT_US > 0
    assert keep_warm_us(ServerConfig()) == KEEP_WARM_DEFAULT_US  # the default idle poll
    assert keep_warm_us(ServerConfig(idle_poll_us=0.0)) == 0  # sleeps at once: no idle time to warm in
    assert keep_warm_us(ServerConfig(fifo_priority=10)) == 0  # no idle poll by default under SCHED_FIFO
    assert keep_warm_us(ServerConfig(spin=True, keep_warm_us=0.0)) == 0
    assert keep_warm_us(ServerConfig(spin=True, keep_warm_us=7.5)) == 7.5


def test_keep_warm_needs_an_idle_poll_and_a_finite_interval():
    with pytest.raises(ValueError, match="polls when idle"):
        validate(ServerConfig(keep_warm_us=20.0, idle_poll_us=0.0))
    with pytest.raises(ValueError, match="polls when idle"):
        validate(ServerConfig(keep_warm_us=20.0, fifo_priority=10))
    with pytest.raises(ValueError, match="keep_warm_us"):
        validate(ServerConfig(spin=True, keep_warm_us=float("inf")))
    validate(ServerConfig(spin=True, keep_warm_us=20.0))
    validate(ServerConfig(keep_warm_us=20.0))
    validate(ServerConfig(keep_warm_us=20.0, fifo_priority=10, idle_poll_us=50.0))
    assert Server.__dict__["_warm"].__doc__  # documented


def test_a_mix_of_forms_is_warmed_in_turn_and_the_template_order_stays(in_process):
    """Two forms (vector_add of 256 and of 64 elements): warm passes alternate between them, each copying its own
    inputs, and leave the decoder's template order as the last real task left it."""
    server, backend, pull, reply_to = in_process
    rng = np.random.default_rng()
    for i in range(8):
        n = 256 if i % 2 else 64
        a, b = rng.standard_normal((2, n), dtype=np.float32)
        server._accept(encode_task(f"t{i}", "vector_add", [a, b], priority=0, reply_to=reply_to))
        while server._busy_lanes:
            server._poll_lanes()
    assert len(server._warm_frames) == 2 and len(server._warm_results) == 2
    order = list(server.decoder.templates)
    for _ in range(5):  # an odd count: the last pass warms the other form
        server._warm()
    assert list(server.decoder.templates) == order
    sizes = [w[2][0].size for w in backend.warmed]
    assert sizes in ([64, 256, 64, 256, 64], [256, 64, 256, 64, 256])
    n = 0
    while pull.poll(200):
        pull.recv()
        n += 1
    assert n == 8
