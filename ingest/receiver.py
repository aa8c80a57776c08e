"""The ingest socket: one bound PULL that producers' PUSH sockets connect to.

Contract:

* Every ZeroMQ option that matters is set deliberately: ``MAXMSGSIZE`` = ``limits.max_frame_bytes`` (libzmq drops
  a larger frame *and disconnects that peer*, which is the only safe answer to an oversized frame and cannot be
  counted here), ``RCVHWM`` (bounded memory when the server falls behind: producers then block or drop on their
  side), ``LINGER`` 0 (nothing to flush on a receive-only socket; never hang shutdown).
* :meth:`Receiver.recv_frame` never raises ``zmq.Again``: no frame is ``None``.
* :meth:`Receiver.log_undecodable` counts every undecodable frame but logs at most one line per second, with the
  count of the lines it suppressed, so a garbage flood cannot flood the log.
* Use it from one thread (ZeroMQ sockets are not thread-safe). ``close()`` is idempotent.
"""

from __future__ import annotations

import logging
import time
import warnings
import weakref

import zmq

from .protocol import Limits

__all__ = ["Receiver"]

log = logging.getLogger(__name__)

DEFAULT_RCVHWM = 10_000


def _close_socket(sock: zmq.Socket) -> None:
    if not sock.closed:
        warnings.warn("ingest Receiver was not closed", ResourceWarning, stacklevel=2)
        sock.close(linger=0)


class Receiver:
    """PULL socket bound at ``endpoint`` (``tcp://`` or ``ipc://``; ``tcp://127.0.0.1:*`` picks a free port), or
    connected to it with ``connect=True``."""

    def __init__(
        self,
        ctx: zmq.Context,
        endpoint: str,
        limits: Limits | None = None,
        hwm: int = DEFAULT_RCVHWM,
        log_interval_s: float = 1.0,
        connect: bool = False,
        curve: object | None = None,
        max_msg_bytes: int | None = None,
    ) -> None:
        if not endpoint.startswith(("tcp://", "ipc://")):
            raise ValueError(f"ingest endpoint must be tcp:// or ipc://, got {endpoint!r}")
        self.limits = limits if limits is not None else Limits()
        sock = ctx.socket(zmq.PULL)
        try:
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.RCVHWM, hwm)
            # None: the limits' frame bound; -1 (no bound) only for private hops whose sender applied it.
            sock.setsockopt(zmq.MAXMSGSIZE, self.limits.max_frame_bytes if max_msg_bytes is None else max_msg_bytes)
            if curve is not None:  # zmqrt.security.CurveServer: security options only apply to later bind/connect
                curve.apply(sock)  # type: ignore[attr-defined]
            if connect:  # an engine behind a fan-out (zmqrt.supervisor) connects to the distributor's PUSH
                sock.connect(endpoint)
                self.endpoint: str = endpoint
            else:
                sock.bind(endpoint)
                self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        except BaseException:
            sock.close(linger=0)
            raise
        self.socket: zmq.Socket | None = sock
        self.frames = 0
        self.undecodable = 0
        self._log_interval_s = log_interval_s
        self._last_log = -float("inf")
        self._suppressed = 0
        self._finalizer = weakref.finalize(self, _close_socket, sock)

    def recv_frame(self, block: bool = True, timeout_ms: int | None = None) -> bytes | None:
        """Next frame, or None when none arrived (non-blocking, or ``timeout_ms`` passed while blocking)."""
        sock = self.socket
        if sock is None:
            raise RuntimeError("Receiver is closed")
        if block and timeout_ms is not None and not sock.poll(timeout_ms, zmq.POLLIN):
            return None
        try:
            frame = sock.recv(0 if block else zmq.NOBLOCK)
        except zmq.Again:
            return None
        self.frames += 1
        return frame

    def log_undecodable(self, reason: str) -> None:
        """Count one undecodable frame; log it unless a line was logged less than ``log_interval_s`` ago."""
        self.undecodable += 1
        now = time.monotonic()
        if now - self._last_log < self._log_interval_s:
            self._suppressed += 1
            return
        if self._suppressed:
            log.warning(
                "undecodable frame on %s: %s (%d more since the last line; %d in all)",
                self.endpoint,
                reason,
                self._suppressed,
                self.undecodable,
            )
        else:
            log.warning("undecodable frame on %s: %s (%d in all)", self.endpoint, reason, self.undecodable)
        self._suppressed = 0
        self._last_log = now

    def close(self) -> None:
        """Close the socket (linger 0). Idempotent."""
        if self.socket is not None:
            self.socket.close(linger=0)
            self.socket = None
            self._finalizer.detach()

    @property
    def closed(self) -> bool:
        return self.socket is None

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Receiver({self.endpoint!r}, frames={self.frames}, undecodable={self.undecodable})"
