"""ingest.client / ingest.aio / ingest.receiver against a small in-test responder, over ipc and tcp.

The responder is the ingest half of a server in miniature: Receiver -> decode_task -> numpy reference ->
encode_result -> ResultRouter. Every wait is bounded by a poll timeout, so nothing can hang.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import msgpack
import numpy as np
import pytest
import zmq

from ingest.aio import AsyncClient
from ingest.client import Client, ClientClosed
from ingest.protocol import Limits, Rejection, decode_task, encode_result, encode_task
from ingest.receiver import Receiver
from ingest.results import ResultRouter
from zmqrt.errors import Code, Status


class Responder:
    """Answers every task with its numpy reference (or its rejection); ``hold`` pauses answering."""

    def __init__(self, ctx: zmq.Context, endpoint: str, registry: Any, limits: Limits | None = None) -> None:
        self.receiver = Receiver(ctx, endpoint, limits or Limits())
        self.router = ResultRouter(ctx, None)
        self.registry = registry
        self.limits = self.receiver.limits
        self.endpoint = self.receiver.endpoint
        self.hold = threading.Event()
        self.extra_results: list[bytes] = []  # sent once, before the next real result
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        seq = 0
        while not self._stop.is_set():
            frame = self.receiver.recv_frame(block=True, timeout_ms=20)
            if frame is None:
                continue
            while self.hold.is_set() and not self._stop.is_set():  # checked after receipt: no race with hold.set()
                time.sleep(0.005)
            seq += 1
            try:
                task = decode_task(frame, self.registry, self.limits, time.monotonic_ns(), seq)
            except Rejection as rej:
                if rej.task_id is None:
                    self.receiver.log_undecodable(rej.message)
                else:
                    self.router.send(rej.reply_to, encode_result(rej.task_id, rej.code, rej.message))
                continue
            outputs = task.spec.reference(task.inputs, task.checked.params)
            for extra in self.extra_results:
                self.router.send(task.reply_to, extra)
            self.extra_results.clear()
            self.router.send(
                task.reply_to,
                encode_result(task.id, Code.OK, outputs=outputs, latency_us={"service": 1.0}, seq=task.seq),
            )

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.router.close(linger_ms=0)
        self.receiver.close()


@pytest.fixture
def responder(zmq_ctx, endpoint, registry):
    r = Responder(zmq_ctx, endpoint(), registry)
    yield r
    r.close()


def test_call_returns_reference_outputs(zmq_ctx, responder):
    a = np.arange(16, dtype=np.float32)
    b = np.full(16, 2.0, np.float32)
    with Client(responder.endpoint, ctx=zmq_ctx, timeout_s=5) as client:
        res = client.call("vector_add", a, b)
        assert res.status is Status.OK and res.code is Code.OK and res.id == 1
        np.testing.assert_array_equal(res.outputs[0], a + b)
        assert res.latency_us == {"service": 1.0}
        res = client.call("saxpy", a, b, params={"alpha": 3.0}, priority=0, deadline_us=1e6)
        np.testing.assert_allclose(res.outputs[0], 3.0 * a + b)
        assert res.id == 2


def test_many_futures_resolve_by_id(zmq_ctx, responder):
    with Client(responder.endpoint, ctx=zmq_ctx) as client:
        arrays = [np.full(8, i, np.float32) for i in range(300)]
        futs = [client.submit("reduce_sum", a) for a in arrays]
        for i, fut in enumerate(futs):
            res = fut.result(5)
            assert res.id == fut.task_id
            np.testing.assert_allclose(res.outputs[0], [8.0 * i])
        assert client.pending == 0 and client.unknown_results == 0


def test_rejection_comes_back_to_the_client(zmq_ctx, responder):
    with Client(responder.endpoint, ctx=zmq_ctx) as client:
        res = client.call("nope", np.zeros(2, np.float32), task_id="mine")
        assert res.id == "mine" and res.status is Status.REJECTED and res.code is Code.UNKNOWN_KERNEL
        res = client.call("vector_add", np.zeros(2, np.float32), np.zeros(2, np.float32), priority=99)
        assert res.code is Code.BAD_PRIORITY


def test_two_clients_are_isolated(zmq_ctx, responder):
    with Client(responder.endpoint, ctx=zmq_ctx) as c1, Client(responder.endpoint, ctx=zmq_ctx) as c2:
        f1 = [c1.submit("reduce_sum", np.ones(4, np.float32)) for _ in range(50)]
        f2 = [c2.submit("reduce_sum", np.ones(2, np.float32)) for _ in range(50)]
        # Both clients number from 1: only reply_to routing keeps their results apart.
        assert [f.result(5).outputs[0][0] for f in f1] == [4.0] * 50
        assert [f.result(5).outputs[0][0] for f in f2] == [2.0] * 50
        assert c1.unknown_results == 0 and c2.unknown_results == 0


def test_call_timeout_names_the_id(zmq_ctx, responder):
    responder.hold.set()
    with Client(responder.endpoint, ctx=zmq_ctx) as client:
        start = time.monotonic()
        with pytest.raises(TimeoutError, match="task 'slow'"):
            client.call("reduce_sum", np.ones(2, np.float32), task_id="slow", timeout_s=0.2)
        assert time.monotonic() - start < 2
        assert client.pending == 0
        responder.hold.clear()
        # The late result arrives for nobody: counted, not delivered.
        res = client.call("reduce_sum", np.ones(3, np.float32))
        assert res.outputs[0][0] == 3.0
        deadline = time.monotonic() + 5
        while client.unknown_results < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert client.unknown_results == 1


def test_unknown_and_bad_result_frames_are_counted(zmq_ctx, responder):
    with Client(responder.endpoint, ctx=zmq_ctx) as client:
        responder.extra_results.extend([encode_result(999, Code.OK), b"\xc1garbage"])
        assert client.call("reduce_sum", np.ones(1, np.float32)).ok
        deadline = time.monotonic() + 5
        while (client.unknown_results, client.bad_results) != (1, 1) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert (client.unknown_results, client.bad_results) == (1, 1)


def test_send_raw_and_expect(zmq_ctx, responder):
    with Client(responder.endpoint, ctx=zmq_ctx) as client:
        fut = client.expect("raw-1")
        client.send_raw(msgpack.packb({"id": "raw-1", "kernel": 5, "reply_to": client.reply_to}))
        res = fut.result(5)
        assert res.code is Code.MALFORMED and res.status is Status.REJECTED
        client.send_raw(b"\xc1")  # undecodable: no result, counted by the receiver
        deadline = time.monotonic() + 5
        while responder.receiver.undecodable < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert responder.receiver.undecodable == 1


def test_duplicate_pending_id_is_refused(zmq_ctx, responder):
    responder.hold.set()
    with Client(responder.endpoint, ctx=zmq_ctx) as client:
        client.submit("reduce_sum", np.ones(1, np.float32), task_id=5)
        with pytest.raises(ValueError, match="already pending"):
            client.submit("reduce_sum", np.ones(1, np.float32), task_id=5)


def test_close_fails_pending_futures_and_is_idempotent(zmq_ctx, responder):
    responder.hold.set()
    client = Client(responder.endpoint, ctx=zmq_ctx)
    fut = client.submit("reduce_sum", np.ones(1, np.float32))
    client.close()
    client.close()
    with pytest.raises(ClientClosed):
        fut.result(1)
    with pytest.raises(ClientClosed):
        client.submit("reduce_sum", np.ones(1, np.float32))


def test_client_with_own_context_and_ipc_reply(responder, ipc_endpoint):
    with Client(responder.endpoint, ipc_endpoint(), timeout_s=5) as client:
        assert client.reply_to.startswith("ipc://")
        assert client.call("reduce_sum", np.ones(5, np.float32)).outputs[0][0] == 5.0


def test_client_on_server_results_endpoint(zmq_ctx, endpoint, registry):
    # The shared-results mode: no reply_to, the server binds the results endpoint and the client connects.
    receiver = Receiver(zmq_ctx, endpoint(), Limits())
    router = ResultRouter(zmq_ctx, endpoint())
    try:
        with Client(receiver.endpoint, results_endpoint=router.default_endpoint, ctx=zmq_ctx) as client:
            assert client.reply_to is None
            fut = client.submit("reduce_sum", np.ones(2, np.float32))
            frame = receiver.recv_frame(block=True, timeout_ms=5000)
            task = decode_task(frame, registry, Limits(), 0, 0)
            assert task.reply_to is None
            payload = encode_result(task.id, Code.OK, outputs=task.spec.reference(task.inputs, task.checked.params))
            deadline = time.monotonic() + 5
            while not router.send(None, payload) and time.monotonic() < deadline:
                time.sleep(0.01)  # until the client's connection is up there is no peer
            # Taken may mean held: a result sent before the client's connection is up waits in the router's backlog
            # until a flush (the server's loop flushes every pass).
            while not fut.done() and time.monotonic() < deadline:
                router.flush()
                time.sleep(0.01)
            assert fut.result(5).outputs[0][0] == 2.0
    finally:
        router.close(linger_ms=0)
        receiver.close()


# ---- asyncio -------------------------------------------------------------------------------------------------


def test_async_client(responder):
    async def main() -> None:
        async with AsyncClient(responder.endpoint, timeout_s=5) as client:
            a = np.arange(8, dtype=np.float32)
            res = await client.submit("vector_add", a, a)
            np.testing.assert_array_equal(res.outputs[0], 2 * a)
            results = await asyncio.gather(*(client.submit("reduce_sum", np.full(4, i, np.float32)) for i in range(50)))
            assert [r.outputs[0][0] for r in results] == [4.0 * i for i in range(50)]
            res = await client.submit("nope", task_id="x")
            assert res.code is Code.UNKNOWN_KERNEL and res.id == "x"
            fut = await client.send_task("reduce_sum", np.ones(2, np.float32))
            assert (await asyncio.wait_for(fut, 5)).outputs[0][0] == 2.0

            responder.hold.set()
            with pytest.raises(TimeoutError, match="task 'late'"):
                await client.submit("reduce_sum", np.ones(1, np.float32), task_id="late", timeout_s=0.2)
            pending = await client.send_task("reduce_sum", np.ones(1, np.float32))
        assert client.closed
        with pytest.raises(ClientClosed):
            await pending
        await client.close()

    asyncio.run(asyncio.wait_for(main(), 30))


# ---- receiver ------------------------------------------------------------------------------------------------


def test_receiver_resolves_endpoint_and_counts(zmq_ctx, endpoint):
    with Receiver(zmq_ctx, endpoint(), Limits(max_task_bytes=1024)) as rx:
        assert "*" not in rx.endpoint
        assert rx.socket.getsockopt(zmq.MAXMSGSIZE) == 1024 + 65536
        assert rx.socket.getsockopt(zmq.LINGER) == 0
        assert rx.recv_frame(block=False) is None
        assert rx.recv_frame(block=True, timeout_ms=10) is None
        push = zmq_ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 0)
        push.connect(rx.endpoint)
        push.send(encode_task(1, "reduce_sum"))
        assert rx.recv_frame(block=True, timeout_ms=5000) == encode_task(1, "reduce_sum")
        assert rx.frames == 1


def test_receiver_drops_oversized_frames(zmq_ctx, endpoint):
    with Receiver(zmq_ctx, endpoint(), Limits(max_task_bytes=1024)) as rx:
        push = zmq_ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 0)
        push.connect(rx.endpoint)
        push.send(b"x" * (1024 + 65536 + 1))
        assert rx.recv_frame(block=True, timeout_ms=300) is None
        assert rx.frames == 0
        # libzmq disconnected that peer; a fresh producer still gets through.
        push2 = zmq_ctx.socket(zmq.PUSH)
        push2.setsockopt(zmq.LINGER, 0)
        push2.connect(rx.endpoint)
        push2.send(b"ok")
        assert rx.recv_frame(block=True, timeout_ms=5000) == b"ok"


def test_receiver_rate_limits_undecodable_logs(zmq_ctx, tcp_endpoint, caplog):
    with Receiver(zmq_ctx, tcp_endpoint(), log_interval_s=60) as rx, caplog.at_level(logging.WARNING, "ingest"):
        for i in range(100):
            rx.log_undecodable(f"garbage {i}")
        assert rx.undecodable == 100
        assert len(caplog.records) == 1
        rx._last_log -= 120  # as if a minute had passed
        rx.log_undecodable("again")
        assert len(caplog.records) == 2
        assert "99 more" in caplog.records[1].getMessage()


def test_receiver_close_is_idempotent(zmq_ctx, ipc_endpoint):
    rx = Receiver(zmq_ctx, ipc_endpoint())
    rx.close()
    rx.close()
    assert rx.closed
    with pytest.raises(RuntimeError):
        rx.recv_frame(block=False)
    with pytest.raises(ValueError):
        Receiver(zmq_ctx, "inproc://x")
