"""ingest.results.ResultRouter: each producer gets exactly its own results; bad or slow peers never block it."""

from __future__ import annotations

import time

import msgpack
import pytest
import zmq

from ingest.protocol import decode_result, encode_result
from ingest.results import ResultRouter
from zmqrt.errors import Code


def drain(sock: zmq.Socket, want: int, timeout_s: float = 5.0) -> list[bytes]:
    """Receive up to ``want`` frames, then keep listening briefly so an extra (misrouted) frame would show."""
    frames: list[bytes] = []
    end = time.monotonic() + timeout_s
    while len(frames) < want and time.monotonic() < end:
        if sock.poll(50, zmq.POLLIN):
            frames.append(sock.recv())
    if sock.poll(100, zmq.POLLIN):
        frames.append(sock.recv())
    return frames


def bind_pull(ctx: zmq.Context, endpoint: str) -> tuple[zmq.Socket, str]:
    sock = ctx.socket(zmq.PULL)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(endpoint)
    return sock, sock.getsockopt_string(zmq.LAST_ENDPOINT)


def test_two_producers_each_get_exactly_their_own(zmq_ctx, endpoint):
    pull_a, ep_a = bind_pull(zmq_ctx, endpoint())
    pull_b, ep_b = bind_pull(zmq_ctx, endpoint())
    with ResultRouter(zmq_ctx, None) as router:
        for i in range(200):
            assert router.send(ep_a, encode_result(f"a{i}", Code.OK))
            assert router.send(ep_b, encode_result(f"b{i}", Code.OK))
        got_a = [decode_result(f).id for f in drain(pull_a, 200)]
        got_b = [decode_result(f).id for f in drain(pull_b, 200)]
        assert sorted(got_a) == sorted(f"a{i}" for i in range(200))
        assert sorted(got_b) == sorted(f"b{i}" for i in range(200))
        assert router.sent == 400 and router.undeliverable == 0
        assert router.peers == [ep_a, ep_b]


def test_default_endpoint_gets_results_without_reply_to(zmq_ctx, endpoint):
    with ResultRouter(zmq_ctx, endpoint()) as router:
        assert "*" not in router.default_endpoint
        pull = zmq_ctx.socket(zmq.PULL)
        pull.setsockopt(zmq.LINGER, 0)
        pull.connect(router.default_endpoint)
        deadline = time.monotonic() + 5
        sent = 0
        # Until the connection is made there is no peer, so sends are refused (counted "full"), not queued.
        while sent == 0 and time.monotonic() < deadline:
            sent += router.send(None, encode_result(1, Code.OK))
            time.sleep(0.01)
        assert sent == 1
        assert [decode_result(f).id for f in drain(pull, 1)] == [1]


def test_disallowed_and_unroutable_are_counted(zmq_ctx):
    with ResultRouter(zmq_ctx, None) as router:
        assert router.send("tcp://10.0.0.1:5555", b"x") is False
        assert router.send("tcp://127.0.0.1:1;10.0.0.1:80", b"x") is False
        assert router.send(None, b"x") is False
        assert router.undeliverable == 3
        assert router.undeliverable_by_reason == {"not_allowed": 2, "no_default": 1}
        assert router.peers == []
    with ResultRouter(zmq_ctx, None, allowed_patterns=["*"]) as router:
        assert router.send("nosuch://x", b"x") is False
        assert router.undeliverable_by_reason == {"bad_endpoint": 1}


def test_full_outbox_is_counted_and_never_blocks(zmq_ctx, ipc_endpoint):
    nobody = ipc_endpoint()  # nobody binds it: results queue until SNDHWM, then are refused
    with ResultRouter(zmq_ctx, None, sndhwm=10) as router:
        start = time.monotonic()
        ok = sum(router.send(nobody, b"result") for _ in range(2000))
        elapsed = time.monotonic() - start
        assert elapsed < 1.0
        assert 1 <= ok < 100
        assert router.undeliverable == 2000 - ok
        assert router.undeliverable_by_reason == {"full": 2000 - ok}
        router.close(linger_ms=0)  # a finite linger: close returns at once with results still queued


def test_slow_consumer_does_not_block_other_peers(zmq_ctx, endpoint, ipc_endpoint):
    pull, ep = bind_pull(zmq_ctx, endpoint())
    nobody = ipc_endpoint()
    with ResultRouter(zmq_ctx, None, sndhwm=5) as router:
        for _ in range(100):
            router.send(nobody, b"x")
        assert router.undeliverable_by_reason["full"] > 0
        assert router.send(ep, encode_result(9, Code.OK))
        assert [decode_result(f).id for f in drain(pull, 1)] == [9]


def test_lru_bounds_peers(zmq_ctx, ipc_endpoint):
    eps = [ipc_endpoint() for _ in range(3)]
    with ResultRouter(zmq_ctx, None, max_peers=2) as router:
        router.send(eps[0], b"x")
        router.send(eps[1], b"x")
        router.send(eps[0], b"x")  # eps[0] is now the most recently used
        router.send(eps[2], b"x")
        assert router.peers == [eps[0], eps[2]]
        assert router.evictions == 1


def test_close_is_idempotent_and_send_after_close_is_counted(zmq_ctx, tcp_endpoint):
    router = ResultRouter(zmq_ctx, tcp_endpoint())
    router.close()
    router.close()
    assert router.send(None, msgpack.packb({})) is False
    assert router.undeliverable_by_reason == {"closed": 1}


def test_max_peers_must_be_positive(zmq_ctx):
    with pytest.raises(ValueError):
        ResultRouter(zmq_ctx, None, max_peers=0)
