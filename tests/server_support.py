"""A zmqrt server on the CPU backend, serving from a thread of the test process, for end-to-end tests."""

from __future__ import annotations

import contextlib
import threading

from zmqrt.config import ServerConfig
from zmqrt.server import Server


@contextlib.contextmanager
def running_server(ingest: str, **overrides):
    settings = dict(backend="cpu", ingest=ingest, lanes=2, calibrate=False, monitor_interval_s=0.2)
    backend = overrides.pop("backend_instance", None)
    settings.update(overrides)
    server = Server(ServerConfig(**settings), backend=backend)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop()
        thread.join(10)
        assert not thread.is_alive(), "server loop did not stop"
