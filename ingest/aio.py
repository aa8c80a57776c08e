"""The asyncio producer client: :class:`AsyncClient` is :class:`ingest.client.Client` with ``await``.

Contract: the same sockets, ids and routing as the threaded client (see ``ingest/client.py``), over
``zmq.asyncio``. ``await submit(...)`` sends the task and returns its :class:`~ingest.protocol.Result`, waiting at
most ``timeout_s`` (``TimeoutError`` names the id). ``send_task`` returns the asyncio future instead, for callers
that keep many tasks in flight. A reader task resolves futures by id; it starts on first use inside the running
loop. Use one client from one event loop. ``await close()`` is idempotent and fails pending futures with
:class:`~ingest.client.ClientClosed`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import zmq
import zmq.asyncio

from ._sockets import check_client_args, open_client_sockets
from .client import ClientClosed
from .protocol import ProtocolError, Result, decode_result, encode_task

__all__ = ["AsyncClient"]

log = logging.getLogger(__name__)


class AsyncClient:
    """asyncio zmqrt producer. Construct anywhere; use from one running event loop."""

    def __init__(
        self,
        ingest_endpoint: str,
        reply_endpoint: str | None = None,
        *,
        results_endpoint: str | None = None,
        ctx: zmq.asyncio.Context | None = None,
        timeout_s: float = 5.0,
        sndhwm: int = 10_000,
        rcvhwm: int = 10_000,
        curve_secret: str | None = None,
        server_public: str | None = None,
    ) -> None:
        check_client_args(reply_endpoint, results_endpoint, curve_secret, server_public)
        self.timeout_s = timeout_s
        self._own_ctx = ctx is None
        self._ctx = zmq.asyncio.Context() if ctx is None else ctx
        self._ids = itertools.count(1)
        self._pending: dict[int | str, asyncio.Future[Result]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._closed = False
        self.unknown_results = 0
        self.bad_results = 0
        self.ingest_endpoint = ingest_endpoint
        try:
            push, pull, self.reply_to = open_client_sockets(
                self._ctx, ingest_endpoint, reply_endpoint, results_endpoint, sndhwm, rcvhwm, curve_secret,
                server_public)
        except BaseException:
            if self._own_ctx:
                self._ctx.term()
            raise
        self._push = push
        self._pull = pull

    def _ensure_reader(self) -> None:
        if self._closed:
            raise ClientClosed("client is closed")
        if self._reader is None:
            self._reader = asyncio.get_running_loop().create_task(self._recv_loop(), name="zmqrt-aio-client")

    async def _send(self, frame: bytes, what: str) -> None:
        try:
            await asyncio.wait_for(self._push.send(frame), self.timeout_s)
        except asyncio.TimeoutError:
            raise TimeoutError(f"{what}: no room to send within {self.timeout_s}s") from None

    async def send_task(
        self,
        kernel: str,
        *arrays: np.ndarray,
        params: Mapping[str, Any] | None = None,
        priority: int | None = None,
        deadline_us: float | None = None,
        period_us: float | None = None,
        task_id: int | str | None = None,
    ) -> asyncio.Future[Result]:
        """Send one task and return the future of its result (no waiting for the result)."""
        _, fut = await self._start(kernel, arrays, params, priority, deadline_us, period_us, task_id)
        return fut

    async def _start(
        self,
        kernel: str,
        arrays: tuple[np.ndarray, ...],
        params: Mapping[str, Any] | None = None,
        priority: int | None = None,
        deadline_us: float | None = None,
        period_us: float | None = None,
        task_id: int | str | None = None,
    ) -> tuple[int | str, asyncio.Future[Result]]:
        self._ensure_reader()
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
        fut: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending[task_id] = fut
        try:
            await self._send(frame, f"task {task_id!r}")
        except BaseException:
            self._pending.pop(task_id, None)
            raise
        return task_id, fut

    async def submit(
        self,
        kernel: str,
        *arrays: np.ndarray,
        params: Mapping[str, Any] | None = None,
        priority: int | None = None,
        deadline_us: float | None = None,
        period_us: float | None = None,
        task_id: int | str | None = None,
        timeout_s: float | None = None,
    ) -> Result:
        """Send one task and return its result, waiting at most ``timeout_s`` (default: the client's)."""
        task_id, fut = await self._start(kernel, arrays, params, priority, deadline_us, period_us, task_id)
        timeout = self.timeout_s if timeout_s is None else timeout_s
        try:
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            self._pending.pop(task_id, None)
            raise TimeoutError(f"task {task_id!r} ({kernel}): no result within {timeout}s") from None

    call = submit

    async def send_raw(self, frame: bytes) -> None:
        """Send an arbitrary frame to ingest (tests of bad input)."""
        self._ensure_reader()
        await self._send(frame, "raw frame")

    def expect(self, task_id: int | str) -> asyncio.Future[Result]:
        """A future for a result with ``task_id`` sent by other means (``send_raw``). Call inside the loop."""
        self._ensure_reader()
        if task_id in self._pending:
            raise ValueError(f"task id {task_id!r} is already pending")
        fut: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending[task_id] = fut
        return fut

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def _recv_loop(self) -> None:
        while True:
            frame = await self._pull.recv()
            try:
                result = decode_result(frame)
            except ProtocolError as exc:
                self.bad_results += 1
                log.warning("bad result frame: %s", exc)
                continue
            fut = self._pending.pop(result.id, None) if result.id is not None else None
            if fut is None or fut.done():
                self.unknown_results += 1
            else:
                fut.set_result(result)

    async def close(self) -> None:
        """Stop the reader, fail pending futures with ClientClosed, close the sockets. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except asyncio.CancelledError:
                pass
        for task_id, fut in self._pending.items():
            if not fut.done():
                fut.set_exception(ClientClosed(f"client closed before the result of task {task_id!r} arrived"))
        self._pending.clear()
        self._push.close(linger=0)
        self._pull.close(linger=0)
        if self._own_ctx:
            self._ctx.term()

    @property
    def closed(self) -> bool:
        return self._closed

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
