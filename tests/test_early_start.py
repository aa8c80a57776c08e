"""A templated task on a free lane starts before its Task object is built (``Server._start_matched``).

The server is driven in-process (``_accept`` then ``_poll_lanes``), with real sockets for the results, so each
test can place a frame exactly: a free lane and an empty queue, a duplicate id, an infeasible deadline, a submit
that raises. Every path must answer exactly as the full path does.
"""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
import zmq

from ingest.protocol import encode_task
from zmqrt.backends.cpu import CpuBackend
from zmqrt.config import ServerConfig
from zmqrt.errors import Code, TaskError
from zmqrt.kernels.registry import load_registry
from zmqrt.server import Server
from zmqrt.trace import ADMITTED, DECODED, RECV, SENT, SUBMITTED


class RecordingBackend(CpuBackend):
    """The CPU backend, recording each submit (whether the server had built the lane's record yet), and optionally
    holding its lanes busy (``gate``) or raising (``fail_with``)."""

    def __init__(self, server_ref: list, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.server_ref = server_ref
        self.before_task: list[bool] = []
        self.gate = True
        self.fail_with: TaskError | None = None

    def submit(self, lane, spec, inputs, checked, timed=True):
        server = self.server_ref[0]
        self.before_task.append(server._lane_task[lane] is None and lane not in server._busy_lanes)
        if self.fail_with is not None:
            raise self.fail_with
        super().submit(lane, spec, inputs, checked, timed)

    def poll(self, lane):
        return self.gate


@pytest.fixture
def harness(ipc_endpoint, zmq_ctx, tmp_path):
    made = []

    def make(**overrides):
        ref: list = []
        backend = RecordingBackend(ref, load_registry(), lanes=overrides.pop("lanes", 2))
        cfg = ServerConfig(backend="cpu", ingest=ipc_endpoint(), calibrate=False, linger_ms=0, stage_timing_every=0,
                           **overrides)
        server = Server(cfg, backend=backend)
        ref.append(server)
        made.append(server)
        pull = zmq_ctx.socket(zmq.PULL)
        pull.bind(ipc_endpoint())
        reply_to = pull.getsockopt_string(zmq.LAST_ENDPOINT)
        return server, backend, pull, reply_to

    yield make
    for server in made:
        server.close()


def _run(server: Server) -> None:
    while server._busy_lanes:
        server._poll_lanes()


def _results(pull, n: int) -> list[dict]:
    out = []
    for _ in range(n):
        assert pull.poll(5000), f"only {len(out)} of {n} results"
        out.append(msgpack.unpackb(pull.recv(), raw=False))
    assert not pull.poll(50), "more results than tasks"
    return out


def _pair(rng, n=256):
    return rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)


def test_templated_tasks_start_early_and_match_numpy(harness):
    server, backend, pull, reply_to = harness()
    rng = np.random.default_rng()
    pairs = [_pair(rng) for _ in range(40)]
    for i, (a, b) in enumerate(pairs):
        server._accept(encode_task(i, "vector_add", [a, b], priority=i % 2, deadline_us=1e6, reply_to=reply_to))
        _run(server)
    results = {r["id"]: r for r in _results(pull, len(pairs))}
    for i, (a, b) in enumerate(pairs):
        assert results[i]["code"] == "OK", results[i]
        out = np.frombuffer(results[i]["outputs"][0]["data"], np.float32)
        np.testing.assert_array_equal(out, a + b)
    # The first frames of the form take the full path (no template yet); the rest start from the template,
    # before the server has built their lane records.
    assert server.decoder.templated >= 30
    assert len(backend.before_task) == len(pairs)  # each ran once
    assert not server._inflight_keys and len(server._free_lanes) == 2
    assert server.results_sent == len(pairs)


def test_a_templated_duplicate_on_a_free_lane_is_refused(harness):
    server, backend, pull, reply_to = harness(lanes=2)
    a = np.ones(256, np.float32)
    for i in range(8):  # the form's template
        server._accept(encode_task(f"warm{i}", "vector_add", [a, a], reply_to=reply_to))
        _run(server)
    _results(pull, 8)
    backend.gate = False  # the first copy stays in flight on lane 0; lane 1 is free, nothing queued
    templated = server.decoder.templated
    server._accept(encode_task("same", "vector_add", [a, a], reply_to=reply_to))
    server._accept(encode_task("same", "vector_add", [a, a], reply_to=reply_to))
    assert server.decoder.templated == templated + 2  # both matched the template
    backend.gate = True
    _run(server)
    codes = sorted((r["id"], r["code"]) for r in _results(pull, 2))
    assert codes == [("same", "DUPLICATE"), ("same", "OK")]
    assert server.tracker.rejected.get("DUPLICATE") == 1


def test_a_templated_infeasible_task_is_refused_with_the_full_message(harness):
    server, backend, pull, reply_to = harness()
    a = np.ones(256, np.float32)
    for i in range(8):
        server._accept(encode_task(i, "vector_add", [a, a], deadline_us=1e6, reply_to=reply_to))
        _run(server)
    _results(pull, 8)
    server.predictor.default_ns = 10**9  # nothing learned yet (stage timing off): the default decides
    server.predictor._est.clear()
    submits = len(backend.before_task)
    server._accept(encode_task("late", "vector_add", [a, a], deadline_us=10.0, reply_to=reply_to))
    _run(server)
    (res,) = _results(pull, 1)
    assert res["code"] == "DEADLINE_INFEASIBLE" and "predicted finish" in res["message"]
    assert len(backend.before_task) == submits  # it never ran


def test_a_templated_task_whose_submit_fails_gets_its_error_and_frees_the_lane(harness):
    server, backend, pull, reply_to = harness()
    a = np.ones(256, np.float32)
    for i in range(8):
        server._accept(encode_task(i, "vector_add", [a, a], reply_to=reply_to))
        _run(server)
    _results(pull, 8)
    backend.fail_with = TaskError(Code.TOO_LARGE, "no room on this lane")
    templated = server.decoder.templated
    server._accept(encode_task("bad", "vector_add", [a, a], reply_to=reply_to))
    assert server.decoder.templated == templated + 1
    (res,) = _results(pull, 1)
    assert (res["id"], res["code"], res["message"]) == ("bad", "TOO_LARGE", "no room on this lane")
    assert not server._inflight_keys and len(server._free_lanes) == 2 and not server._busy_lanes
    backend.fail_with = None
    server._accept(encode_task("bad", "vector_add", [a, a], reply_to=reply_to))  # the id is free again
    _run(server)
    assert _results(pull, 1)[0]["code"] == "OK"


def test_templated_tasks_are_traced_in_path_order(harness, tmp_path):
    server, backend, pull, reply_to = harness(trace_path=str(tmp_path / "t.npy"))
    a = np.ones(256, np.float32)
    for i in range(20):
        server._accept(encode_task(i, "vector_add", [a, a], reply_to=reply_to))
        _run(server)
    _results(pull, 20)
    assert server.decoder.templated >= 10
    rows = server.trace.to_numpy()[-20:]  # seq starts at 1: row 0 is never written
    assert np.all(rows[:, RECV] > 0)
    for col_a, col_b in ((RECV, DECODED), (DECODED, ADMITTED), (ADMITTED, SUBMITTED), (SUBMITTED, SENT)):
        assert np.all(rows[:, col_a] <= rows[:, col_b]), (col_a, col_b)
