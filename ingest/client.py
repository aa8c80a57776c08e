"""The Python producer client: push tasks to a zmqrt server and get each task's result back as a Future.

Contract:

* One PUSH connected to the server's ingest endpoint (or to several, comma-separated: engines started with
  ``zmqrt serve --devices LIST --fanout direct`` bind one each, and the PUSH deals tasks round-robin). Results
  come back on a PULL the client *binds* (``reply_endpoint``, default ``tcp://127.0.0.1:*`` resolved to the real
  port) whose address rides in every task's ``reply_to``, so results reach only this client. Alternatively
  ``results_endpoint=`` connects the PULL to a server's bound results endpoint and sends no ``reply_to`` (then
  only one client should use that server).
* Ids are generated per client (an int counter) unless ``task_id=`` is given; a pending id cannot be reused.
* A background thread owns the PULL and resolves futures by id. Results for ids nobody waits for (unknown, or
  whose ``call`` timed out) are counted in ``unknown_results``; undecodable result frames in ``bad_results``.
* ``submit`` never waits for the result; its send waits at most ``timeout_s`` for room in the outbox and raises
  ``TimeoutError`` otherwise. ``call`` waits for the result at most ``timeout_s`` and raises ``TimeoutError``
  naming the id.
* ``close()`` is idempotent; futures still pending then fail with :class:`ClientClosed`.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import numpy as np
import zmq

from ._sockets import check_client_args, open_client_sockets
from .protocol import ProtocolError, Result, decode_result, encode_task

__all__ = ["Client", "ClientClosed"]

log = logging.getLogger(__name__)



class ClientClosed(RuntimeError):
    """The client was closed before the task's result arrived."""


class Client:
    """Synchronous zmqrt producer with future-based results. Thread-safe: any thread may submit."""

    def __init__(
        self,
        ingest_endpoint: str,
        reply_endpoint: str | None = None,
        *,
        results_endpoint: str | None = None,
        ctx: zmq.Context | None = None,
        timeout_s: float = 5.0,
        sndhwm: int = 10_000,
        rcvhwm: int = 10_000,
        curve_secret: str | None = None,
        server_public: str | None = None,
    ) -> None:
        check_client_args(reply_endpoint, results_endpoint, curve_secret, server_public)
        self.timeout_s = timeout_s
        self._own_ctx = ctx is None
        self._ctx = zmq.Context() if ctx is None else ctx
        self._ids = itertools.count(1)
        self._pending: dict[int | str, Future[Result]] = {}
        self._lock = threading.Lock()  # guards _pending and the PUSH socket
        self._stop = threading.Event()
        self._closed = False
        self.unknown_results = 0
        self.bad_results = 0
        self.ingest_endpoint = ingest_endpoint

        try:
            push, pull, self.reply_to = open_client_sockets(
                self._ctx, ingest_endpoint, reply_endpoint, results_endpoint, sndhwm, rcvhwm, curve_secret,
                server_public, send_timeout_ms=int(timeout_s * 1000))
        except BaseException:
            if self._own_ctx:
                self._ctx.term()
            raise
        self._push = push
        self._pull = pull
        self._thread = threading.Thread(target=self._recv_loop, name=f"zmqrt-client-{self.reply_to}", daemon=True)
        self._thread.start()

    # ---- sending ----

    def submit(
        self,
        kernel: str,
        *arrays: np.ndarray,
        params: Mapping[str, Any] | None = None,
        priority: int | None = None,
        deadline_us: float | None = None,
        period_us: float | None = None,
        task_id: int | str | None = None,
    ) -> Future[Result]:
        """Send one task; the future resolves to its :class:`~ingest.protocol.Result` (any status)."""
        fut: Future[Result] = Future()
        with self._lock:
            if self._closed:
                raise ClientClosed("client is closed")
            if task_id is None:
                task_id = next(self._ids)
            elif task_id in self._pending:
                raise ValueError(f"task id {task_id!r} is already pending")
            frame = encode_task(
                task_id,
                kernel,
                arrays,
                params=params,
                priority=priority,
                deadline_us=deadline_us,
                period_us=period_us,
                reply_to=self.reply_to,
                sent_ns=time.time_ns(),
            )
            self._pending[task_id] = fut
            try:
                self._push.send(frame)
            except zmq.Again:
                del self._pending[task_id]
                raise TimeoutError(f"task {task_id!r}: no room to send within {self.timeout_s}s") from None
            except BaseException:
                del self._pending[task_id]
                raise
        fut.task_id = task_id  # type: ignore[attr-defined]  # lets call() name the id
        return fut

    def call(self, kernel: str, *arrays: np.ndarray, timeout_s: float | None = None, **kwargs: Any) -> Result:
        """Submit and wait for the result at most ``timeout_s`` (default: the client's)."""
        fut = self.submit(kernel, *arrays, **kwargs)
        task_id = fut.task_id  # type: ignore[attr-defined]
        timeout = self.timeout_s if timeout_s is None else timeout_s
        try:
            return fut.result(timeout)
        except FutureTimeout:
            with self._lock:
                self._pending.pop(task_id, None)
            fut.cancel()
            raise TimeoutError(f"task {task_id!r} ({kernel}): no result within {timeout}s") from None

    def send_raw(self, frame: bytes) -> None:
        """Send an arbitrary frame to ingest (tests of bad input). Its result, if any, counts as unknown."""
        with self._lock:
            if self._closed:
                raise ClientClosed("client is closed")
            try:
                self._push.send(frame)
            except zmq.Again:
                raise TimeoutError(f"no room to send within {self.timeout_s}s") from None

    def expect(self, task_id: int | str) -> Future[Result]:
        """A future for a result with ``task_id`` sent by other means (``send_raw``)."""
        fut: Future[Result] = Future()
        with self._lock:
            if task_id in self._pending:
                raise ValueError(f"task id {task_id!r} is already pending")
            self._pending[task_id] = fut
        fut.task_id = task_id  # type: ignore[attr-defined]
        return fut

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    # ---- receiving ----

    def _recv_loop(self) -> None:
        pull = self._pull
        while not self._stop.is_set():
            try:
                if not pull.poll(50, zmq.POLLIN):
                    continue
                frame = pull.recv(zmq.NOBLOCK)
            except zmq.Again:
                continue
            except zmq.ZMQError:
                if self._stop.is_set():
                    return
                raise
            try:
                result = decode_result(frame)
            except ProtocolError as exc:
                self.bad_results += 1
                log.warning("bad result frame: %s", exc)
                continue
            with self._lock:
                fut = self._pending.pop(result.id, None) if result.id is not None else None
            if fut is None:
                self.unknown_results += 1
            elif fut.set_running_or_notify_cancel():
                fut.set_result(result)

    # ---- lifetime ----

    def close(self) -> None:
        """Stop the receiver thread, fail pending futures with :class:`ClientClosed`, close sockets. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pending = list(self._pending.items())
            self._pending.clear()
        self._stop.set()
        self._thread.join()
        for task_id, fut in pending:
            if fut.set_running_or_notify_cancel():
                fut.set_exception(ClientClosed(f"client closed before the result of task {task_id!r} arrived"))
        self._push.close(linger=0)
        self._pull.close(linger=0)
        if self._own_ctx:
            self._ctx.term()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
