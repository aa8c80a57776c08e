"""Relays (``zmqrt.relay``, ``zmqrt serve --ingest-workers N``): their message packing, and supervised CPU engines
behind relays through real sockets: every task answered once, to its own producer, with numpy's result; rejections
keep their codes; a stop answers everything read."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import msgpack
import numpy as np
import pytest
from test_supervisor import supervised, wait_for

from ingest.bulk import FrameBlock
from ingest.client import Client
from ingest.protocol import encode_task
from zmqrt.relay import pack_frames, pack_rows, unpack_frames, unpack_rows
from zmqrt.statsview import fetch_stats


def test_frames_round_trip():
    frames = [b"a" * 5, b"", b"xyz" * 100, b"q"]
    stamps = [10, 20, 30, 2**62]
    index, lengths, at, blob = unpack_frames(pack_frames(7, frames, stamps))
    block = FrameBlock(blob, lengths)
    assert index == 7 and [block[i] for i in range(len(block))] == frames and at.tolist() == stamps


def test_rows_round_trip():
    rows = np.arange(3 * 6, dtype=np.uint8).tobytes()
    replies, reply_of, got, step = unpack_rows(pack_rows(["ipc:///a", "tcp://127.0.0.1:5"], np.array([1, 0, 1]),
                                                         rows, 6))
    assert replies == ["ipc:///a", "tcp://127.0.0.1:5"] and reply_of == [1, 0, 1] and step == 6
    assert bytes(got) == rows


def _tasks_msg(n: int, lengths, stamps, blob: bytes, kind: bytes = b"T") -> bytes:
    return (kind + b"\x00\x00" + n.to_bytes(4, "little") + np.asarray(lengths, np.int32).tobytes()
            + np.asarray(stamps, np.int64).tobytes() + blob)


@pytest.mark.parametrize("msg", [
    _tasks_msg(1, [2], [1], b"ab", kind=b"X"),  # wrong kind
    _tasks_msg(5, [2], [1], b"ab"),  # count beyond the message
    b"T\x00",  # truncated header
])
def test_malformed_frames_message_is_refused(msg):
    with pytest.raises(ValueError):
        unpack_frames(msg)


@pytest.mark.parametrize("msg", [
    _tasks_msg(1, [3], [1], b"ab"),  # short blob
    _tasks_msg(1, [1], [1], b"ab"),  # bytes left over
    _tasks_msg(2, [-1, 3], [0, 0], b"ab"),  # negative length
])
def test_frames_whose_lengths_disagree_with_the_bytes_are_refused_where_read(msg):
    _, lengths, _, blob = unpack_frames(msg)
    with pytest.raises(ValueError):
        FrameBlock(blob, lengths)


def _rows_msg(step: int, reply_of, rows: bytes, replies=("a",), kind: bytes = b"R") -> bytes:
    head = msgpack.packb(list(replies))
    return (kind + step.to_bytes(4, "little") + len(reply_of).to_bytes(4, "little") + len(head).to_bytes(4, "little")
            + head + np.asarray(reply_of, np.int32).tobytes() + rows)


@pytest.mark.parametrize("parts", [
    _rows_msg(6, [1], b"x" * 6),  # index 1 of 1 endpoint
    _rows_msg(6, [0], b"x" * 5),  # short row
    _rows_msg(0, [], b""),  # zero step
    _rows_msg(6, [0], b"x" * 6, kind=b"T"),  # wrong kind
    b"R\x06\x00",  # truncated header
])
def test_malformed_rows_message_is_refused(parts):
    with pytest.raises(ValueError):
        unpack_rows(parts)


def _stats(ep: str) -> dict:
    snap = fetch_stats(ep, timeout_s=10)
    assert snap is not None
    return snap


def test_relays_answer_each_producer_its_own_tasks(ipc_endpoint):
    stats = ipc_endpoint()
    with supervised(ipc_endpoint(), ingest_workers=2, batch_max=64, stats=stats, lanes=4) as (sup, _), \
            Client(sup.ingest_endpoint, timeout_s=30) as a, Client(sup.ingest_endpoint, timeout_s=30) as b:
        rng = np.random.default_rng()
        wait_for(lambda: a.call("vector_add", np.ones(4, np.float32), np.ones(4, np.float32)).ok, what="a first task")
        jobs = []
        for i in range(600):  # a burst from both producers: the relays hand the engine backlogs, read as batches
            client = a if i % 2 else b
            x, y = rng.standard_normal((2, 256), dtype=np.float32)
            jobs.append((client, x, y, client.submit("vector_add", x, y, priority=i % 3)))
        for _client, x, y, fut in jobs:  # a result sent to the other producer would resolve its future of that id
            res = fut.result(30)
            assert res.ok, (res.code, res.message)
            np.testing.assert_array_equal(res.outputs[0], x + y)
        # A rejection keeps its code behind relays (the engine answers it itself), and a bad frame is counted.
        bad = a.call("vector_add", np.ones(4, np.float32), np.ones(5, np.float32))
        assert bad.code.value == "BAD_SHAPE", (bad.code, bad.message)
        assert a.call("no_such_kernel", np.ones(4, np.float32)).code.value == "UNKNOWN_KERNEL"
        a.send_raw(b"\xc1 not msgpack")
        wait_for(lambda: _stats(stats)["server"]["undecodable"] == 1, what="the bad frame to be counted")
        server = _stats(stats)["server"]
        assert a.unknown_results == 0 and b.unknown_results == 0  # nobody got another's result, or one twice
        assert server["relayed_results"] > 0 and server["bulk_tasks"] > 0, server
        assert server["relay_fallbacks"] == 0


def test_stop_answers_every_task_read(ipc_endpoint):
    """Tasks read when the service stops are all answered (run, or SHUTDOWN after the drain timeout): bulk results
    finishing during the engine's drain still go out through the relays, which exit only after the engine."""
    ingest, stats = ipc_endpoint(), ipc_endpoint()
    with Client(ingest, timeout_s=30) as c:
        with supervised(ingest, ingest_workers=2, batch_max=32, lanes=1, stats=stats, queue_capacity=10_000,
                        drain_timeout_s=1.0) as (sup, _):
            wait_for(lambda: c.call("vector_add", np.ones(4, np.float32), np.ones(4, np.float32)).ok,
                     what="a first task")
            before = _stats(stats)["server"]["frames"]
            big, x = np.ones((200, 200), np.float32), np.ones(256, np.float32)
            futs = []
            for i in range(600):  # slow matmuls queue up; vector_adds between them go as bulk batches
                futs.append(c.submit("matmul", big, big) if i % 3 == 0 else c.submit("vector_add", x, x))
            # Stop once the engine has read them all: a frame still in a producer's queue was never received,
            # and no server can answer it (PROTOCOL.md, shutdown).
            wait_for(lambda: _stats(stats)["server"]["frames"] - before >= 600, what="the engine to read the tasks")
        codes = [f.result(30).code.value for f in futs]  # the supervisor stopped on leaving the block
    assert set(codes) <= {"OK", "SHUTDOWN"}, set(codes)
    assert codes.count("OK") > 0


def test_frame_packing_keeps_a_real_task_intact():
    frame = encode_task(5, "vector_add", [np.ones(4, np.float32)] * 2, reply_to="ipc:///tmp/x")
    _, lengths, _, blob = unpack_frames(pack_frames(0, [frame, frame], [1, 2]))
    assert bytes(blob) == frame + frame and lengths.tolist() == [len(frame)] * 2


def test_frame_block_matrix_is_a_view_when_rows_lie_back_to_back_else_a_gather():
    rng = np.random.default_rng()
    frames = [rng.integers(0, 256, 6, np.uint8).tobytes() for _ in range(5)]
    frames.insert(2, b"odd")
    block = FrameBlock(b"".join(frames), np.array([len(f) for f in frames]))
    assert [block[i] for i in range(len(block))] == frames
    for rows in ([0, 1], [3, 4, 5], [0, 1, 3, 5], [1, 4], [5, 3]):
        mat = block.matrix(np.array(rows), 6)
        assert mat.tobytes() == b"".join(frames[i] for i in rows), rows
    assert np.shares_memory(block.matrix(np.array([3, 4, 5]), 6), block.buf)
    with pytest.raises(ValueError):
        FrameBlock(b"abc", np.array([2]))


def test_a_relay_that_dies_is_restarted_and_tasks_go_on(ipc_endpoint):
    with supervised(ipc_endpoint(), ingest_workers=2, batch_max=16) as (sup, _), \
            Client(sup.ingest_endpoint, timeout_s=30) as c:
        one = np.ones(8, np.float32)
        wait_for(lambda: c.call("vector_add", one, one).ok, what="a first task")
        victim = sup.relay_pids()[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: sup.relay_restarts == 1 and sup.relay_pids()[0] != victim, what="the relay's restart")
        xs = [np.full(8, i, np.float32) for i in range(100)]
        futs = [c.submit("vector_add", x, one) for x in xs]
        for x, f in zip(xs, futs, strict=True):
            res = f.result(30)
            assert res.ok, (res.code, res.message)
            np.testing.assert_array_equal(res.outputs[0], x + 1)


def test_serve_cli_refuses_ingest_workers_without_supervision():
    proc = subprocess.run([sys.executable, "-m", "zmqrt.cli", "serve", "--backend", "cpu", "--no-supervise",
                           "--ingest-workers", "2"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--ingest-workers" in proc.stderr, proc.stderr


def test_engine_counts_malformed_relay_messages_and_goes_on(ipc_endpoint):
    import time

    import zmq

    from zmqrt.config import ServerConfig
    from zmqrt.server import Server

    cfg = ServerConfig(backend="cpu", ingest=ipc_endpoint(), relay_results=(ipc_endpoint(),), batch_max=8,
                       calibrate=False, linger_ms=0)
    with Server(cfg) as server:
        ctx = zmq.Context.instance()
        push = ctx.socket(zmq.PUSH)
        push.connect(server.receiver.endpoint)
        push.send(b"T\x00")  # a truncated header
        push.send(_tasks_msg(1, [3], [1], b"ab"))  # lengths that disagree with the bytes
        deadline = time.monotonic() + 10
        while server.receiver.undecodable < 2:
            assert time.monotonic() < deadline, "the engine did not read the messages"
            if server.receiver.socket.poll(100):
                server._read_relay()
        assert server.receiver.frames == 0
        push.close(linger=0)
