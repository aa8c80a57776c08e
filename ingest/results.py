"""Result delivery: each result goes to its own task's ``reply_to``, or to the server's bound results endpoint.

Why per-endpoint sockets: one PUSH connected to several producers round-robins among them, so results would reach
the wrong producer. :class:`ResultRouter` therefore keeps one connected PUSH per reply endpoint (an LRU of at most
``max_peers``), and one bound PUSH for tasks without ``reply_to``. That bound PUSH round-robins too: it is meant for
a single consumer (or a collector that demultiplexes by id).

Contract of :meth:`ResultRouter.send`: it never blocks and never raises for a bad or slow peer. It returns True
when the result was taken: handed to ZeroMQ, or held in the peer's backlog (below) to be handed over later. It
returns False when the result was dropped, and counts the reason in ``undeliverable_by_reason``:

* ``"not_allowed"``: ``reply_to`` fails the endpoint policy (:func:`ingest.protocol.endpoint_allowed`);
* ``"no_default"``: no ``reply_to`` and no default endpoint;
* ``"bad_endpoint"``: ZeroMQ refused to connect to the endpoint;
* ``"backlog_full"``: the total backlog is at its hard cap, ``max_backlog + reserve`` frames (logged, at most once a
  second). A server that stops reading tasks while :attr:`ResultRouter.backlog_full` never reaches it, provided
  ``reserve`` covers the results it can still produce without reading (queued, running and read-ahead tasks);
* ``"closed"``: sent after :meth:`ResultRouter.close`;
* ``"error"``: any other ZeroMQ error on send (logged).

Backlog: when a peer's outbox is at ``SNDHWM`` (a slow consumer), or no consumer is connected to the default
endpoint, the frame goes to that peer's overflow deque instead of being dropped. Once a peer has a backlog, every
new result for it goes to the back of it, so each peer gets its results in the order they were sent.
:meth:`ResultRouter.flush` moves backlogs to the sockets without blocking (the server calls it on every loop pass;
it costs one attribute test while nothing is held), and a send to a backlogged peer first moves what that peer's
socket takes. :attr:`ResultRouter.backlog_full` (``backlog >= max_backlog`` frames, or ``backlog_bytes >=
max_backlog_bytes``) tells the server to stop reading tasks, which pushes back on producers through the ingest HWM.
Held frames can still be lost, always counted:

* ``"stalled"``: a backlogged peer took nothing for ``stall_timeout_s`` (checked by :meth:`flush`): it is taken for
  gone (a producer that exited, or a default endpoint nobody connects to) and its backlog is dropped, so a dead peer
  cannot hold the server's backlog, and with it the ingest, for ever. This also breaks the deadlock of a producer
  that sends without ever reading while the server pushes back on it. ``None`` disables it;
* ``"evicted"``: a new peer needs a slot in the full LRU and every peer has a backlog: the least recently used one is
  flushed without blocking, closed with ``evict_linger_ms``, and what it still held is dropped. Peers without a
  backlog are evicted first (least recently used first), so this needs ``max_peers`` slow peers at once;
* ``"close_timeout"``: held when :meth:`close`'s linger ran out.

Accounting: every call of ``send`` is counted exactly once, in ``sent`` (when ZeroMQ took it, at once or from the
backlog), in ``undeliverable`` (by reason), or still held in ``backlog``: ``sent + undeliverable + backlog`` is the
number of calls. ``sent`` means handed to ZeroMQ; a frame ZeroMQ still holds when a socket's linger ends is dropped
by ZeroMQ, uncounted (eviction, close). Over ipc, libzmq 4.3 also loses frames still in flight when the sending
socket closes while the receiver is at its ``RCVHWM``, whatever the linger (zeromq/libzmq#4660): a slow ipc consumer
can miss the last results at shutdown or eviction.

``max_backlog``, ``max_backlog_bytes``, ``reserve`` and ``stall_timeout_s`` are plain attributes read where used:
they may be changed between calls.

Sockets: ``SNDHWM`` bounds each outbox; ``IMMEDIATE`` is off so a result queues while the connection to a freshly
named reply endpoint is still being made (with it on, the first results would be dropped); ``LINGER`` is finite so
``close()`` flushes but never hangs. Use a router from one thread (ZeroMQ sockets are not thread-safe).
"""

from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable, Sequence

import zmq

from .protocol import DEFAULT_REPLY_PATTERNS, endpoint_allowed

__all__ = ["ResultRouter"]

log = logging.getLogger(__name__)

# Plain ints: pyzmq's enum members cost an attribute lookup and an IntFlag operation each on the hot path.
_NOBLOCK = int(zmq.NOBLOCK)
_EVENTS = int(zmq.EVENTS)
_POLLOUT = int(zmq.POLLOUT)
_COPY_BELOW = 65536  # zero-copy sends pay for a Frame object and a free callback: only worth it for large frames
# The compiled send under pyzmq's Python-level ``Socket.send`` (which only adds routing_id/group handling that
# PUSH sockets never use): 0.9 µs against 1.2 µs per 1 KiB result on the hot path.
_raw_send = getattr(getattr(zmq, "backend", None), "Socket", zmq.Socket).send
_LOG_INTERVAL_S = 1.0


class ResultRouter:
    """Sends encoded result frames to reply endpoints (connected PUSH each) or the bound default endpoint.

    ``max_backlog`` / ``max_backlog_bytes``: when the frames (or bytes) held reach either, :attr:`backlog_full` is
    True. ``reserve``: frames held beyond ``max_backlog`` before ``send`` drops (the hard cap is ``max_backlog +
    reserve``): room for the results of tasks already read when the server stops reading. ``stall_timeout_s``: a
    backlogged peer that took nothing for this long has its backlog dropped ("stalled"); None: never.
    """

    def __init__(
        self,
        ctx: zmq.Context,
        default_endpoint: str | None,
        allowed_patterns: Iterable[str] = DEFAULT_REPLY_PATTERNS,
        max_peers: int = 64,
        sndhwm: int = 10_000,
        linger_ms: int = 1000,
        evict_linger_ms: int = 100,
        max_backlog: int = 100_000,
        max_backlog_bytes: int = 1 << 30,
        reserve: int = 50_000,
        stall_timeout_s: float | None = 10.0,
    ) -> None:
        if max_peers < 1:
            raise ValueError("max_peers must be >= 1")
        if max_backlog < 0 or max_backlog_bytes < 0 or reserve < 0:
            raise ValueError("max_backlog, max_backlog_bytes and reserve must be >= 0")
        if stall_timeout_s is not None and stall_timeout_s <= 0:
            raise ValueError("stall_timeout_s must be > 0 or None")
        self._ctx = ctx
        self.allowed_patterns = tuple(allowed_patterns)
        self.max_peers = max_peers
        self.sndhwm = sndhwm
        self.linger_ms = linger_ms
        self.evict_linger_ms = evict_linger_ms
        self.max_backlog = max_backlog
        self.max_backlog_bytes = max_backlog_bytes
        self.reserve = reserve
        self.stall_timeout_s = stall_timeout_s
        self._peers: OrderedDict[str, zmq.Socket] = OrderedDict()
        # Endpoints already checked and connected (None: the default), for send's fast path. An entry goes when its
        # socket is evicted or closed.
        self._direct: dict[str | None, zmq.Socket] = {}
        # Per-peer overflow, oldest first; None is the default endpoint. A key is present only while its deque is
        # non-empty, and a reply endpoint with a backlog is always in _peers.
        self._backlogs: dict[str | None, deque[bytes]] = {}
        self._progress: dict[str | None, float] = {}  # when each backlog last moved (or began)
        self.backlog = 0  # frames held, all peers
        self.backlog_bytes = 0
        self.backlog_peak = 0  # the most frames ever held at once
        self.deferred = 0  # frames that went through a backlog (including those later dropped)
        self.sent = 0
        self.undeliverable = 0
        self.undeliverable_by_reason: Counter[str] = Counter()
        self.evictions = 0
        self._full_logged_at = float("-inf")
        self._full_unlogged = 0
        self._closed = False
        self._default: zmq.Socket | None = None
        self.default_endpoint: str | None = None
        if default_endpoint is not None:
            sock = self._new_socket()
            try:
                sock.bind(default_endpoint)
            except BaseException:
                sock.close(linger=0)
                raise
            self._default = sock
            self.default_endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)

    def _new_socket(self) -> zmq.Socket:
        sock = self._ctx.socket(zmq.PUSH)
        sock.setsockopt(zmq.SNDHWM, self.sndhwm)
        sock.setsockopt(zmq.LINGER, self.linger_ms)
        sock.setsockopt(zmq.IMMEDIATE, 0)
        return sock

    def _drop(self, reason: str, n: int = 1) -> bool:
        self.undeliverable += n
        self.undeliverable_by_reason[reason] += n
        return False

    def _socket_for(self, key: str | None) -> zmq.Socket:
        return self._default if key is None else self._peers[key]  # type: ignore[return-value]

    def _peer(self, endpoint: str) -> zmq.Socket | None:
        sock = self._peers.get(endpoint)
        if sock is not None:
            self._peers.move_to_end(endpoint)
            return sock
        sock = self._new_socket()
        try:
            sock.connect(endpoint)
        except zmq.ZMQError as exc:
            sock.close(linger=0)
            log.warning("cannot connect results to %r: %s", endpoint, exc)
            return None
        if len(self._peers) >= self.max_peers:
            self._evict()
        self._peers[endpoint] = sock
        return sock

    def _evict(self) -> None:
        """Close one peer to make room: the least recently used one without a backlog, else the least recently used
        one after a non-blocking flush, dropping what it still holds ("evicted")."""
        victim = None
        if self.backlog:
            for ep in self._peers:
                if ep not in self._backlogs:
                    victim = ep
                    break
        if victim is None:
            victim = next(iter(self._peers))
        sock = self._peers[victim]
        q = self._backlogs.get(victim)
        if q is not None:
            self._flush_peer(victim, sock, q)
            if victim in self._backlogs:
                self._discard(victim, "evicted")
        del self._peers[victim]
        self._direct.pop(victim, None)
        sock.close(linger=self.evict_linger_ms)
        self.evictions += 1

    def send(self, reply_to: str | None, payload: bytes) -> bool:
        """Hand ``payload`` to ``reply_to`` (or the default endpoint when None), or hold it in that peer's backlog.
        Never blocks, never raises. True: taken (sent or held); False: dropped and counted (see the module doc)."""
        sock = self._direct.get(reply_to)
        if sock is None or self.backlog:  # first result for this endpoint, or results are held somewhere
            return self._send(reply_to, payload)
        # Fast path (the server's per-task send): the endpoint passed the checks before and is connected.
        try:
            _raw_send(sock, payload, _NOBLOCK, len(payload) < _COPY_BELOW, False)
        except zmq.Again:
            return self._hold(reply_to, sock, payload)
        except zmq.ZMQError as exc:
            log.warning("result send to %r failed: %s", reply_to or self.default_endpoint, exc)
            return self._drop("error")
        if reply_to is not None:
            self._peers.move_to_end(reply_to)  # least recently used goes first on eviction
        self.sent += 1
        return True

    def send_rows(self, replies: Sequence[str | None], reply_of: Sequence[int], payload: memoryview, step: int) -> None:
        """``send(replies[reply_of[i]], row i)`` for each ``step``-byte row ``i`` of ``payload``, in order: the
        results of a batch (``ingest.bulk``), each to its producer. A row for a connected endpoint with nothing held
        goes straight to its socket (about 1 µs a row less than ``send``); after that endpoint's first refusal its
        rows go through ``send``, which holds them in order."""
        socks = [None if self.backlog else self._direct.get(r) for r in replies]
        copy = step < _COPY_BELOW
        raw_send, send = _raw_send, self.send
        sent = off = 0
        for g in reply_of:
            row = payload[off:off + step]
            off += step
            sock = socks[g]
            if sock is not None:
                try:
                    raw_send(sock, row, _NOBLOCK, copy, False)
                    sent += 1
                    continue
                except zmq.Again:
                    socks[g] = None  # held from here on, in order
                except zmq.ZMQError as exc:
                    log.warning("result send to %r failed: %s", replies[g] or self.default_endpoint, exc)
                    self._drop("error")
                    continue
            send(replies[g], row)
        self.sent += sent
        for r in replies:
            if r is not None and r in self._peers:
                self._peers.move_to_end(r)  # least recently used goes first on eviction

    def _send(self, reply_to: str | None, payload: bytes) -> bool:
        """``send`` with every check: closed router, allowed endpoint, connection, backlog order."""
        if self._closed:
            return self._drop("closed")
        if reply_to is None:
            sock = self._default
            if sock is None:
                return self._drop("no_default")
        else:
            if not endpoint_allowed(reply_to, self.allowed_patterns):
                return self._drop("not_allowed")
            sock = self._peer(reply_to)
            if sock is None:
                return self._drop("bad_endpoint")
        if self.backlog and reply_to in self._backlogs:
            return self._hold(reply_to, sock, payload)  # behind the peer's backlog: keeps its order
        try:
            sock.send(payload, _NOBLOCK, copy=len(payload) < _COPY_BELOW)
        except zmq.Again:
            return self._hold(reply_to, sock, payload)
        except zmq.ZMQError as exc:
            log.warning("result send to %r failed: %s", reply_to or self.default_endpoint, exc)
            return self._drop("error")
        self.sent += 1
        self._direct[reply_to] = sock
        return True

    def _hold(self, key: str | None, sock: zmq.Socket, payload: bytes) -> bool:
        q = self._backlogs.get(key)
        if q is not None:
            self._flush_peer(key, sock, q)  # first what the peer takes now, oldest first
            q = self._backlogs.get(key)
            if q is None:  # all of it went: this one may follow straight away
                try:
                    sock.send(payload, _NOBLOCK, copy=len(payload) < _COPY_BELOW)
                except zmq.Again:
                    pass
                except zmq.ZMQError as exc:
                    log.warning("result send to %r failed: %s", key or self.default_endpoint, exc)
                    return self._drop("error")
                else:
                    self.sent += 1
                    return True
        if self.backlog >= self.max_backlog + self.reserve:
            return self._drop_full()
        if q is None:
            q = self._backlogs[key] = deque()
            self._progress[key] = time.monotonic()
        q.append(payload)
        self.backlog += 1
        self.backlog_bytes += len(payload)
        self.deferred += 1
        if self.backlog > self.backlog_peak:
            self.backlog_peak = self.backlog
        return True

    def _drop_full(self) -> bool:
        self._full_unlogged += 1
        now = time.monotonic()
        if now - self._full_logged_at >= _LOG_INTERVAL_S:
            log.error("result backlog at its cap (%d frames, %d bytes): %d result(s) dropped since the last report; "
                      "the server must stop reading tasks while backlog_full, with reserve >= what it can still "
                      "produce", self.backlog, self.backlog_bytes, self._full_unlogged)
            self._full_logged_at = now
            self._full_unlogged = 0
        return self._drop("backlog_full")

    def _flush_peer(self, key: str | None, sock: zmq.Socket, q: deque[bytes], budget: int | None = None) -> int:
        """Move frames of one backlog to its socket, oldest first, until it refuses; return how many moved."""
        if not sock.getsockopt(_EVENTS) & _POLLOUT:  # much cheaper than a send raising zmq.Again
            return 0
        moved = nbytes = 0
        while q and (budget is None or moved < budget):
            frame = q[0]
            try:
                sock.send(frame, _NOBLOCK, copy=len(frame) < _COPY_BELOW)
            except zmq.Again:
                break
            except zmq.ZMQError as exc:
                q.popleft()
                self.backlog -= 1
                self.backlog_bytes -= len(frame)
                log.warning("result send to %r failed: %s", key or self.default_endpoint, exc)
                self._drop("error")
                continue
            q.popleft()
            moved += 1
            nbytes += len(frame)
        if moved:
            self.backlog -= moved
            self.backlog_bytes -= nbytes
            self.sent += moved
            self._progress[key] = time.monotonic()
        if not q:
            del self._backlogs[key]
            del self._progress[key]
        return moved

    def _discard(self, key: str | None, reason: str) -> None:
        """Drop a peer's whole backlog, counted under ``reason``."""
        q = self._backlogs.pop(key)
        del self._progress[key]
        n = len(q)
        self.backlog -= n
        self.backlog_bytes -= sum(map(len, q))
        self._drop(reason, n)
        log.warning("dropped %d held result(s) for %r: %s", n, key or self.default_endpoint, reason)

    def flush(self, limit: int | None = None) -> int:
        """Move held results to their sockets without blocking, oldest first per peer, each peer until its socket
        refuses; return how many moved. Drops ("stalled") the backlog of a peer that took nothing for
        ``stall_timeout_s``. ``limit`` caps the frames moved in this call (peers cut short go last next time).
        Returns at once when nothing is held, so callers may call it on every loop pass."""
        if not self.backlog or (limit is not None and limit < 1):
            return 0
        moved = 0
        now = time.monotonic()
        stall = self.stall_timeout_s
        done: list[str | None] = []
        for key in list(self._backlogs):
            q = self._backlogs.get(key)
            if q is None:  # emptied by an error path of an earlier peer: cannot happen, but be safe
                continue
            done.append(key)
            n = self._flush_peer(key, self._socket_for(key), q, None if limit is None else limit - moved)
            moved += n
            if not n and stall is not None and key in self._backlogs and now - self._progress[key] > stall:
                self._discard(key, "stalled")
            if limit is not None and moved >= limit:
                for k in done:  # round robin: the peers served now go behind those not reached
                    held = self._backlogs.pop(k, None)
                    if held is not None:
                        self._backlogs[k] = held
                break
        return moved

    @property
    def backlog_full(self) -> bool:
        """True while the backlog is at ``max_backlog`` frames or ``max_backlog_bytes``: stop reading tasks."""
        return self.backlog >= self.max_backlog or self.backlog_bytes >= self.max_backlog_bytes

    @property
    def backlog_by_peer(self) -> dict[str | None, int]:
        """Frames held per endpoint (None: the default endpoint)."""
        return {key: len(q) for key, q in self._backlogs.items()}

    @property
    def peers(self) -> list[str]:
        """Connected reply endpoints, least recently used first."""
        return list(self._peers)

    def close(self, linger_ms: int | None = None) -> None:
        """Hand the backlogs to the sockets, waiting up to ``linger_ms`` (default: the router's; negative: no limit)
        for slow peers to take them, count what is still held ("close_timeout"), then close every socket with the
        rest of that time as its linger, so ZeroMQ can deliver what it holds. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._direct.clear()
        linger = self.linger_ms if linger_ms is None else linger_ms
        deadline = None if linger < 0 else time.monotonic() + linger / 1000
        if self.backlog:
            self._drain(deadline)
        left = linger if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
        for sock in self._peers.values():
            sock.close(linger=left)
        self._peers.clear()
        if self._default is not None:
            self._default.close(linger=left)
            self._default = None

    def _drain(self, deadline: float | None) -> None:
        while True:
            for key in list(self._backlogs):
                q = self._backlogs.get(key)
                if q is not None:
                    self._flush_peer(key, self._socket_for(key), q)
            if not self.backlog:
                return
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            timeout_ms = 100 if deadline is None else min(100, max(1, int((deadline - now) * 1000)))
            poller = zmq.Poller()
            for key in self._backlogs:
                poller.register(self._socket_for(key), zmq.POLLOUT)
            poller.poll(timeout_ms)
        for key in list(self._backlogs):
            self._discard(key, "close_timeout")

    def __enter__(self) -> ResultRouter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
