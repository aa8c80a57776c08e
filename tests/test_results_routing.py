"""ingest.results.ResultRouter: each producer gets exactly its own results, in order, exactly once; bad or slow peers
never block it; a slow peer's results wait in a bounded backlog instead of being dropped."""

from __future__ import annotations

import threading
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
        # Sent before any consumer is connected: there is no peer, so the result is held, not dropped...
        assert router.send(None, encode_result(1, Code.OK))
        assert router.backlog_by_peer == {None: 1} and router.undeliverable == 0
        pull.connect(router.default_endpoint)
        # ...and flush() hands it over once the consumer's connection is up.
        deadline = time.monotonic() + 5
        while router.backlog and time.monotonic() < deadline:
            router.flush()
            time.sleep(0.01)
        assert router.backlog == 0 and router.sent == 1
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


def assert_ledger(router: ResultRouter, calls: int) -> None:
    """Every send() is counted exactly once: handed to ZeroMQ, dropped (by reason), or still held."""
    assert router.sent + router.undeliverable + router.backlog == calls
    assert router.undeliverable == sum(router.undeliverable_by_reason.values())
    assert router.backlog == sum(router.backlog_by_peer.values())


def test_full_outbox_holds_and_never_blocks(zmq_ctx, ipc_endpoint):
    nobody = ipc_endpoint()  # nobody binds it: results queue in ZeroMQ until SNDHWM, then in the backlog
    with ResultRouter(zmq_ctx, None, sndhwm=10) as router:
        start = time.monotonic()
        taken = sum(router.send(nobody, b"result") for _ in range(2000))
        elapsed = time.monotonic() - start
        assert elapsed < 1.0
        assert taken == 2000 and router.undeliverable == 0
        assert 1 <= router.sent < 100
        assert router.backlog == router.deferred == 2000 - router.sent == router.backlog_peak
        assert router.backlog_bytes == router.backlog * len(b"result")
        assert router.backlog_by_peer == {nobody: router.backlog}
        assert router.flush() == 0  # still nobody there
        assert_ledger(router, 2000)
        held = router.backlog
        start = time.monotonic()
        router.close(linger_ms=50)  # a finite linger: close gives up on what nobody takes, and counts it
        assert time.monotonic() - start < 1.0
        assert router.undeliverable_by_reason == {"close_timeout": held}
        assert router.backlog == 0
        assert_ledger(router, 2000)


def test_slow_consumer_does_not_block_other_peers(zmq_ctx, endpoint, ipc_endpoint):
    pull, ep = bind_pull(zmq_ctx, endpoint())
    nobody = ipc_endpoint()
    with ResultRouter(zmq_ctx, None, sndhwm=5) as router:
        for _ in range(100):
            router.send(nobody, b"x")
        assert router.backlog_by_peer[nobody] > 0
        assert router.send(ep, encode_result(9, Code.OK))
        assert router.backlog_by_peer == {nobody: router.backlog}
        assert [decode_result(f).id for f in drain(pull, 1)] == [9]
        assert router.undeliverable == 0
        router.close(linger_ms=0)


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


def test_fast_path_endpoint_evicted_then_closed(zmq_ctx, ipc_endpoint):
    """An endpoint that took a result goes by send's fast path; eviction and close still apply to it."""
    pulls = [bind_pull(zmq_ctx, ipc_endpoint()) for _ in range(2)]
    (pa, ea), (pb, eb) = pulls
    router = ResultRouter(zmq_ctx, None, max_peers=1)
    try:
        assert router.send(ea, b"a1") and router.send(ea, b"a2")  # the second by the fast path
        assert router.send(eb, b"b1")  # evicts ea
        assert router.peers == [eb] and router.evictions == 1
        assert router.send(ea, b"a3")  # reconnects (and evicts eb) instead of using the closed socket
        assert sorted(drain(pa, 3)) == [b"a1", b"a2", b"a3"]  # two sockets in turn: no order between them
        assert drain(pb, 1) == [b"b1"]
    finally:
        router.close()
    assert router.send(ea, b"a4") is False
    assert router.undeliverable_by_reason == {"closed": 1}
    for sock, _ in pulls:
        sock.close()


def test_max_peers_must_be_positive(zmq_ctx):
    with pytest.raises(ValueError):
        ResultRouter(zmq_ctx, None, max_peers=0)


# ---- backlog ------------------------------------------------------------------------------------------------------


def slow_consumer(ctx: zmq.Context, endpoint: str, rcvhwm: int = 5) -> tuple[zmq.Socket, str]:
    """A bound PULL that takes little before its owner reads it (small RCVHWM)."""
    sock = ctx.socket(zmq.PULL)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, rcvhwm)
    sock.setsockopt(zmq.RCVBUF, 4096)  # a small kernel buffer too, so tcp fills as quickly as ipc
    sock.bind(endpoint)
    return sock, sock.getsockopt_string(zmq.LAST_ENDPOINT)


def send_until_held(router: ResultRouter, ep: str, held: int, start: int = 0, size: int = 512) -> int:
    """Send results with ids start, start+1, ... until ``held`` of them wait in the backlog; return the next id."""
    i = start
    pad = "x" * size  # a few hundred bytes each, so transport buffers fill after a bounded number of frames
    while router.backlog_by_peer.get(ep, 0) < held:
        assert router.send(ep, encode_result(i, Code.OK, pad))
        i += 1
        assert i - start < 200_000, "the outbox never filled"
    return i


def read_all(sock: zmq.Socket, want: int, router: ResultRouter | None = None, timeout_s: float = 10.0) -> list:
    """Read result ids until ``want`` came (calling ``router.flush()`` between reads), then listen for extras."""
    ids: list = []
    end = time.monotonic() + timeout_s
    while len(ids) < want and time.monotonic() < end:
        if router is not None:
            router.flush()
        while sock.poll(1, zmq.POLLIN):
            ids.append(decode_result(sock.recv()).id)
    if router is not None:
        router.flush()
    while sock.poll(100, zmq.POLLIN):
        ids.append(decode_result(sock.recv()).id)
    return ids


def test_slow_consumer_results_are_held_then_flushed_in_order_exactly_once(zmq_ctx, endpoint):
    pull, ep = slow_consumer(zmq_ctx, endpoint())
    with ResultRouter(zmq_ctx, None, sndhwm=5) as router:
        n = send_until_held(router, ep, 200)
        assert router.undeliverable == 0 and router.backlog >= 200
        assert_ledger(router, n)
        ids = read_all(pull, n, router)
        assert ids == list(range(n))  # in order, each exactly once
        assert router.backlog == 0 and router.backlog_bytes == 0 and router.backlog_by_peer == {}
        assert router.sent == n and router.undeliverable == 0
        assert router.flush() == 0


def test_results_sent_while_a_backlog_exists_queue_behind_it(zmq_ctx, endpoint):
    pull, ep = slow_consumer(zmq_ctx, endpoint())
    with ResultRouter(zmq_ctx, None, sndhwm=5) as router:
        n = send_until_held(router, ep, 50)
        # Make room without flushing: the next send must still go behind the backlog, not jump it.
        received = []
        end = time.monotonic() + 5
        while len(received) < 5 and time.monotonic() < end:
            if pull.poll(20, zmq.POLLIN):
                received.append(decode_result(pull.recv()).id)
        for i in range(n, n + 20):
            assert router.send(ep, encode_result(i, Code.OK))
        received += read_all(pull, n + 20 - len(received), router)
        assert received == list(range(n + 20))
        assert_ledger(router, n + 20)
        assert router.undeliverable == 0


def test_flush_limit_caps_the_frames_moved(zmq_ctx, ipc_endpoint):
    pull, ep = slow_consumer(zmq_ctx, ipc_endpoint())
    with ResultRouter(zmq_ctx, None, sndhwm=5) as router:
        n = send_until_held(router, ep, 100)
        got = []
        while pull.poll(50, zmq.POLLIN):  # empty the pipe: now the socket takes frames again
            got.append(decode_result(pull.recv()).id)
        assert router.flush(limit=3) == 3
        got += read_all(pull, n - len(got), router)
        assert got == list(range(n))


def test_backlog_full_flips_at_max_backlog_and_drops_only_past_the_reserve(zmq_ctx, ipc_endpoint):
    nobody = ipc_endpoint()
    with ResultRouter(zmq_ctx, None, sndhwm=1, max_backlog=50, reserve=10) as router:
        calls = 0
        while router.backlog < 50:
            assert not router.backlog_full
            assert router.send(nobody, b"r")
            calls += 1
        assert router.backlog == 50 and router.backlog_full
        for _ in range(10):  # the reserve: still held
            assert router.send(nobody, b"r")
        calls += 10
        assert router.backlog == 60 and router.undeliverable == 0
        assert router.send(nobody, b"r") is False  # the hard cap: dropped, counted
        calls += 1
        assert router.undeliverable_by_reason == {"backlog_full": 1}
        assert router.backlog_peak == 60
        assert_ledger(router, calls)
        router.close(linger_ms=0)


def test_backlog_full_counts_bytes_too(zmq_ctx, ipc_endpoint):
    nobody = ipc_endpoint()
    with ResultRouter(zmq_ctx, None, sndhwm=1, max_backlog_bytes=10_000) as router:
        while router.backlog == 0:
            router.send(nobody, b"r" * 1000)
        while not router.backlog_full:
            router.send(nobody, b"r" * 1000)
        assert router.backlog == 10 and router.backlog_bytes == 10_000
        router.close(linger_ms=0)


def test_close_hands_the_backlog_to_a_reading_consumer(zmq_ctx, tcp_endpoint):
    # tcp only: libzmq 4.3.5 over ipc loses frames still in flight when the sender closes while the receiver is at
    # RCVHWM, with any linger (zeromq/libzmq#4660; reproduced with a plain PUSH/PULL pair, no router involved).
    pull, ep = slow_consumer(zmq_ctx, tcp_endpoint())
    router = ResultRouter(zmq_ctx, None, sndhwm=5)
    n = send_until_held(router, ep, 300)
    got: list = []

    def consume() -> None:  # the PULL is used by this thread only from here on
        end = time.monotonic() + 10
        while len(got) < n and time.monotonic() < end:
            if pull.poll(20, zmq.POLLIN):
                got.append(decode_result(pull.recv()).id)

    reader = threading.Thread(target=consume)
    reader.start()
    start = time.monotonic()
    router.close(linger_ms=5000)  # returns once the backlog is handed over, well before the linger
    assert time.monotonic() - start < 4
    reader.join(10)
    assert not reader.is_alive()
    assert router.undeliverable == 0 and router.backlog == 0 and router.sent == n
    assert got == list(range(n))


def test_stalled_peer_backlog_is_dropped_and_counted(zmq_ctx, ipc_endpoint, endpoint):
    nobody = ipc_endpoint()
    pull, ep = bind_pull(zmq_ctx, endpoint())
    with ResultRouter(zmq_ctx, None, sndhwm=5, stall_timeout_s=0.2) as router:
        for _ in range(100):
            router.send(nobody, b"x")
        held = router.backlog
        assert held > 0
        router.flush()
        assert router.backlog == held  # not yet stalled
        time.sleep(0.25)
        assert router.send(ep, encode_result(1, Code.OK))
        router.flush()
        assert router.backlog == 0
        assert router.undeliverable_by_reason == {"stalled": held}
        assert_ledger(router, 101)
        assert [decode_result(f).id for f in drain(pull, 1)] == [1]
        router.close(linger_ms=0)


def test_eviction_prefers_peers_without_backlog(zmq_ctx, ipc_endpoint):
    slow, idle, new = (ipc_endpoint() for _ in range(3))
    with ResultRouter(zmq_ctx, None, sndhwm=5, max_peers=2) as router:
        for _ in range(50):
            router.send(slow, b"x")
        router.send(idle, b"x")  # the most recently used, but it holds nothing
        held = router.backlog
        assert router.backlog_by_peer == {slow: held}
        router.send(new, b"x")
        assert router.peers == [slow, new] and router.evictions == 1
        assert router.backlog == held and router.undeliverable == 0
        router.close(linger_ms=0)


def test_evicting_a_peer_with_backlog_counts_what_it_held(zmq_ctx, ipc_endpoint):
    slow, new = ipc_endpoint(), ipc_endpoint()
    with ResultRouter(zmq_ctx, None, sndhwm=5, max_peers=1) as router:
        for _ in range(50):
            router.send(slow, b"x")
        held = router.backlog
        router.send(new, b"x")
        assert router.peers == [new] and router.evictions == 1
        assert router.backlog == 0 and router.undeliverable_by_reason == {"evicted": held}
        assert_ledger(router, 51)
        router.close(linger_ms=0)


def test_backlog_parameters_are_checked(zmq_ctx):
    with pytest.raises(ValueError):
        ResultRouter(zmq_ctx, None, max_backlog=-1)
    with pytest.raises(ValueError):
        ResultRouter(zmq_ctx, None, stall_timeout_s=0)
