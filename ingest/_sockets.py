"""The producer's two sockets, set up the same way for the threaded and the asyncio client."""

from __future__ import annotations

import zmq

DEFAULT_REPLY_ENDPOINT = "tcp://127.0.0.1:*"
# With several engine endpoints, each connection's send queue: a PUSH skips a peer whose queue is full, so a slow or
# stalled engine does not keep taking an equal share of the work (as the fan-out's 64 per engine do).
MULTI_ENDPOINT_HWM = 256


def connect_ingest(push: zmq.Socket, ingest_endpoint: str) -> int:
    """Connect ``push`` to the server's ingest: one endpoint, or several separated by commas (``zmqrt serve
    --devices 0,1 --fanout direct``: one per engine; the PUSH deals round-robin). Returns how many. Security
    options must be set before: they apply to connections made later."""
    endpoints = [e.strip() for e in ingest_endpoint.split(",") if e.strip()]
    if not endpoints:
        raise ValueError(f"no ingest endpoint in {ingest_endpoint!r}")
    if len(endpoints) > 1:
        # Queue only towards engines connected now: a restarting engine's share goes to the others, not into a pipe
        # that waits for it. (One endpoint keeps ZeroMQ's default: tasks wait for the engine to come back.)
        push.setsockopt(zmq.IMMEDIATE, 1)
        hwm = push.getsockopt(zmq.SNDHWM)
        push.setsockopt(zmq.SNDHWM, MULTI_ENDPOINT_HWM if hwm == 0 else min(hwm, MULTI_ENDPOINT_HWM))
    for ep in endpoints:
        push.connect(ep)
    return len(endpoints)


def check_client_args(reply_endpoint: str | None, results_endpoint: str | None, curve_secret: str | None,
                      server_public: str | None) -> None:
    if reply_endpoint is not None and results_endpoint is not None:
        raise ValueError("give reply_endpoint (the client binds) or results_endpoint (it connects), not both")
    if (curve_secret is None) != (server_public is None):
        raise ValueError("CURVE needs both curve_secret (this producer's NAME.key_secret) and server_public "
                         "(the server's NAME.key), or neither")


def open_client_sockets(ctx: zmq.Context, ingest_endpoint: str, reply_endpoint: str | None,
                        results_endpoint: str | None, sndhwm: int, rcvhwm: int, curve_secret: str | None,
                        server_public: str | None, send_timeout_ms: int | None = None
                        ) -> tuple[zmq.Socket, zmq.Socket, str | None]:
    """(push to the server's ingest, pull for results, the ``reply_to`` to put in tasks or None).

    The pull binds ``reply_endpoint`` (default: a free loopback tcp port) and its resolved address becomes
    ``reply_to``; with ``results_endpoint`` it connects there instead and tasks carry no ``reply_to``. On any
    failure both sockets are closed before the error propagates."""
    push = ctx.socket(zmq.PUSH)
    pull = ctx.socket(zmq.PULL)
    try:
        for sock in (push, pull):
            sock.setsockopt(zmq.LINGER, 0)
        push.setsockopt(zmq.SNDHWM, sndhwm)
        if send_timeout_ms is not None:
            push.setsockopt(zmq.SNDTIMEO, send_timeout_ms)
        pull.setsockopt(zmq.RCVHWM, rcvhwm)
        if curve_secret is not None:  # before connect: security options apply to connections made later
            from zmqrt.security import apply_client

            apply_client(push, curve_secret, server_public)
        connect_ingest(push, ingest_endpoint)
        if results_endpoint is not None:
            pull.connect(results_endpoint)
            reply_to = None
        else:
            pull.bind(reply_endpoint or DEFAULT_REPLY_ENDPOINT)
            reply_to = pull.getsockopt_string(zmq.LAST_ENDPOINT)
    except BaseException:
        push.close(linger=0)
        pull.close(linger=0)
        raise
    return push, pull, reply_to
