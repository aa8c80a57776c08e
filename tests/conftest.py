"""Shared fixtures: ZeroMQ contexts whose sockets never hang a test, endpoint factories, and a kernel registry.

* ``zmq_ctx``: a fresh ``zmq.Context``; every socket made from it is closed with linger 0 at teardown, and the
  context is terminated, so a leaked socket cannot hang the run.
* ``ipc_endpoint()`` / ``tcp_endpoint()``: factories of bindable endpoints (ipc under ``tmp_path``, tcp on
  127.0.0.1 port ``*`` so the OS picks a free port; read the real one from ``LAST_ENDPOINT``).
* ``endpoint``: parametrized over ``ipc`` and ``tcp``, for tests that must pass on both transports.
* ``registry``: the real ``zmqrt.kernels.registry.load_registry()`` when it exists, else a small fake with the
  same surface (``get(name) -> spec``, ``spec.check``, ``spec.reference``) for vector_add, saxpy and reduce_sum.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import zmq

from zmqrt.errors import Code, TaskError


class _TrackingContext(zmq.Context):
    """A context that remembers its sockets so teardown can close them all with linger 0."""

    _tracked: list[zmq.Socket]  # declared: pyzmq treats unknown attributes as socket options

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tracked: list[zmq.Socket] = []

    def socket(self, socket_type: int, **kwargs: Any) -> zmq.Socket:  # type: ignore[override]
        sock = super().socket(socket_type, **kwargs)
        self._tracked.append(sock)
        return sock


@pytest.fixture
def zmq_ctx() -> Iterator[zmq.Context]:
    ctx = _TrackingContext()
    try:
        yield ctx
    finally:
        for sock in ctx._tracked:
            if not sock.closed:
                sock.close(linger=0)
        ctx.term()


@pytest.fixture
def ipc_endpoint() -> Iterator[Callable[[], str]]:
    # ipc paths are limited to ~107 bytes, and pytest's tmp_path can be longer: use a short temp dir.
    tmp = tempfile.mkdtemp(prefix="zq")
    counter = itertools.count()

    def make() -> str:
        return f"ipc://{tmp}/s{next(counter)}"

    yield make
    for name in os.listdir(tmp):
        try:
            os.unlink(os.path.join(tmp, name))
        except OSError:
            pass
    os.rmdir(tmp)


@pytest.fixture
def producer(ipc_endpoint, zmq_ctx) -> tuple[str, zmq.Socket, zmq.Socket, str]:
    """A producer's sockets for a server under test: ``(ingest endpoint for the server, PUSH to connect to it once
    the server binds, PULL bound for the results, its reply_to endpoint)``."""
    pull = zmq_ctx.socket(zmq.PULL)
    pull.bind(ipc_endpoint())
    return ipc_endpoint(), zmq_ctx.socket(zmq.PUSH), pull, pull.getsockopt_string(zmq.LAST_ENDPOINT)


@pytest.fixture
def tcp_endpoint() -> Callable[[], str]:
    return lambda: "tcp://127.0.0.1:*"


@pytest.fixture(params=["ipc", "tcp"])
def endpoint(request: pytest.FixtureRequest, ipc_endpoint: Callable[[], str], tcp_endpoint: Callable[[], str]):
    """A factory of bindable endpoints on the parametrized transport."""
    return ipc_endpoint if request.param == "ipc" else tcp_endpoint


# ---- kernel registry --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FakeChecked:
    params: dict[str, Any]
    outputs: tuple[tuple[tuple[int, ...], np.dtype], ...]


class FakeSpec:
    """Just enough of KernelSpec: arity, exact dtype, equal shapes, float params with defaults."""

    def __init__(self, name: str, arity: int, params: Mapping[str, float | None], reduce: bool = False) -> None:
        self.name = name
        self.arity = arity
        self.param_defaults = dict(params)
        self.reduce = reduce

    def check(self, inputs: Sequence[np.ndarray], params: Mapping[str, Any]) -> FakeChecked:
        if len(inputs) != self.arity:
            raise TaskError(Code.BAD_ARITY, f"{self.name} takes {self.arity} inputs, got {len(inputs)}")
        for a in inputs:
            if a.dtype != np.float32:
                raise TaskError(Code.BAD_DTYPE, f"{self.name} takes float32, got {a.dtype}")
            if a.ndim != 1 or a.size == 0:
                raise TaskError(Code.BAD_SHAPE, f"{self.name} takes non-empty 1-d arrays")
        if any(a.shape != inputs[0].shape for a in inputs):
            raise TaskError(Code.BAD_SHAPE, f"{self.name}: shapes differ")
        out: dict[str, Any] = {}
        for key, value in params.items():
            if key not in self.param_defaults:
                raise TaskError(Code.BAD_PARAM, f"{self.name}: unknown param {key!r}")
            if type(value) not in (int, float):
                raise TaskError(Code.BAD_PARAM, f"{self.name}: param {key!r} must be a number")
            out[key] = float(value)
        for key, default in self.param_defaults.items():
            if key not in out:
                if default is None:
                    raise TaskError(Code.BAD_PARAM, f"{self.name}: missing param {key!r}")
                out[key] = default
        shape = (1,) if self.reduce else inputs[0].shape
        return FakeChecked(out, ((shape, np.dtype(np.float32)),))

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, Any]) -> list[np.ndarray]:
        if self.name == "vector_add":
            return [inputs[0] + inputs[1]]
        if self.name == "saxpy":
            return [(np.float32(params["alpha"]) * inputs[0] + inputs[1]).astype(np.float32)]
        return [np.array([inputs[0].sum()], dtype=np.float32)]


class FakeRegistry:
    def __init__(self) -> None:
        self._specs = {
            "vector_add": FakeSpec("vector_add", 2, {}),
            "saxpy": FakeSpec("saxpy", 2, {"alpha": 1.0}),
            "reduce_sum": FakeSpec("reduce_sum", 1, {}, reduce=True),
        }

    def get(self, name: str) -> FakeSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise TaskError(Code.UNKNOWN_KERNEL, f"no kernel named {name!r}") from None

    def names(self) -> list[str]:
        return sorted(self._specs)


def _load_registry() -> Any:
    try:
        from zmqrt.kernels.registry import load_registry
    except ImportError:
        return FakeRegistry()
    return load_registry()


@pytest.fixture(scope="session")
def registry() -> Any:
    return _load_registry()


@pytest.fixture(scope="session")
def fake_registry() -> FakeRegistry:
    return FakeRegistry()
