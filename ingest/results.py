"""Result delivery: each result goes to its own task's ``reply_to``, or to the server's bound results endpoint.

Why per-endpoint sockets: one PUSH connected to several producers round-robins among them, so results would reach
the wrong producer. :class:`ResultRouter` therefore keeps one connected PUSH per reply endpoint (an LRU of at most
``max_peers``; an evicted one is closed with a short linger), and one bound PUSH for tasks without ``reply_to``.
That bound PUSH round-robins too: it is meant for a single consumer (or a collector that demultiplexes by id).

Contract of :meth:`ResultRouter.send`: it never blocks and never raises for a bad or slow peer. It returns True
when ZeroMQ took the frame, else False and counts the reason in ``undeliverable_by_reason``:

* ``"not_allowed"``: ``reply_to`` fails the endpoint policy (:func:`ingest.protocol.endpoint_allowed`);
* ``"no_default"``: no ``reply_to`` and no default endpoint;
* ``"full"``: the peer's outbox is at ``SNDHWM`` (a slow consumer), or no consumer is connected to the default
  endpoint;
* ``"bad_endpoint"``: ZeroMQ refused to connect to the endpoint.

Sockets: ``SNDHWM`` bounds each outbox; ``IMMEDIATE`` is off so a result queues while the connection to a freshly
named reply endpoint is still being made (with it on, the first results would be dropped); ``LINGER`` is finite so
``close()`` flushes but never hangs. Use a router from one thread (ZeroMQ sockets are not thread-safe).
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from collections.abc import Iterable

import zmq

from .protocol import DEFAULT_REPLY_PATTERNS, endpoint_allowed

__all__ = ["ResultRouter"]

log = logging.getLogger(__name__)


class ResultRouter:
    """Sends encoded result frames to reply endpoints (connected PUSH each) or the bound default endpoint."""

    def __init__(
        self,
        ctx: zmq.Context,
        default_endpoint: str | None,
        allowed_patterns: Iterable[str] = DEFAULT_REPLY_PATTERNS,
        max_peers: int = 64,
        sndhwm: int = 10_000,
        linger_ms: int = 1000,
        evict_linger_ms: int = 100,
    ) -> None:
        if max_peers < 1:
            raise ValueError("max_peers must be >= 1")
        self._ctx = ctx
        self.allowed_patterns = tuple(allowed_patterns)
        self.max_peers = max_peers
        self.sndhwm = sndhwm
        self.linger_ms = linger_ms
        self.evict_linger_ms = evict_linger_ms
        self._peers: OrderedDict[str, zmq.Socket] = OrderedDict()
        self.sent = 0
        self.undeliverable = 0
        self.undeliverable_by_reason: Counter[str] = Counter()
        self.evictions = 0
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

    def _drop(self, reason: str) -> bool:
        self.undeliverable += 1
        self.undeliverable_by_reason[reason] += 1
        return False

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
        self._peers[endpoint] = sock
        if len(self._peers) > self.max_peers:
            _, old = self._peers.popitem(last=False)
            old.close(linger=self.evict_linger_ms)
            self.evictions += 1
        return sock

    def send(self, reply_to: str | None, payload: bytes) -> bool:
        """Queue ``payload`` for ``reply_to`` (or the default endpoint when None). Never blocks, never raises."""
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
        try:
            sock.send(payload, zmq.NOBLOCK, copy=len(payload) < 65536)
        except zmq.Again:
            return self._drop("full")
        except zmq.ZMQError as exc:
            log.warning("result send to %r failed: %s", reply_to or self.default_endpoint, exc)
            return self._drop("error")
        self.sent += 1
        return True

    @property
    def peers(self) -> list[str]:
        """Connected reply endpoints, least recently used first."""
        return list(self._peers)

    def close(self, linger_ms: int | None = None) -> None:
        """Close every socket, flushing queued results for at most ``linger_ms`` (default: the router's). Idempotent."""
        if self._closed:
            return
        self._closed = True
        linger = self.linger_ms if linger_ms is None else linger_ms
        for sock in self._peers.values():
            sock.close(linger=linger)
        self._peers.clear()
        if self._default is not None:
            self._default.close(linger=linger)
            self._default = None

    def __enter__(self) -> ResultRouter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
