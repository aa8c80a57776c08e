"""What a kernel is, for everything that is not the GPU: validation, launch geometry and the numpy reference.

A :class:`KernelSpec` describes one kernel that tasks name on the wire. It holds

- where its CUDA source is (``source_dir / source``) and the ``extern "C"`` symbol (``entry``) to launch;
- what it accepts (``inputs``, ``params``) and :meth:`KernelSpec.check`, which refuses a bad task with a
  :class:`~zmqrt.errors.TaskError` carrying the exact code (BAD_ARITY, BAD_DTYPE, BAD_SHAPE, BAD_PARAM,
  TOO_LARGE) and returns the output shapes and dtypes the engine must allocate;
- :meth:`KernelSpec.plan`, the launch geometry and the scalar arguments;
- :meth:`KernelSpec.reference`, the numpy expression that defines the result (the CPU backend *is* it);
- ``error_bound`` and :meth:`KernelSpec.tolerance`: how far a GPU result may be from the reference.

Kernel ABI, which the CUDA executor relies on exactly: every entry is
``extern "C" __global__ void entry(const T* in0, ..., T* out0, ..., <scalars>)``: one device pointer per input
(contiguous, C order), one per output, then the scalars in the order :attr:`LaunchPlan.scalars` lists them,
each tagged ``"i32"`` (C ``int``) or ``"f32"`` (C ``float``).

:meth:`KernelSpec.check` runs for every task on the hot path. It reads only ``dtype``, ``shape`` and ``size``
of the arrays, never their data, and allocates nothing beyond small tuples and the params dict.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from zmqrt.errors import Code, TaskError

__all__ = [
    "F32_EPS",
    "INT32_MAX",
    "Checked",
    "InputSpec",
    "KernelSpec",
    "LaunchPlan",
    "ParamSpec",
]

INT32_MAX = 2**31 - 1
INT32_MIN = -(2**31)
# Unit roundoff of float32 (half an ulp of 1.0): the u of the error bounds stated by the kernels.
F32_EPS = 2.0**-24
_F32_MAX = float(np.finfo(np.float32).max)
_PARAM_KINDS = ("f32", "i32")


_SHAPE_CACHE_MAX = 4096  # distinct input-shape tuples remembered per kernel


@dataclass(frozen=True)
class InputSpec:
    """One input array: its name (for messages and user references) and the numpy dtype names it accepts."""

    name: str
    dtypes: tuple[str, ...]


@dataclass(frozen=True)
class ParamSpec:
    """One scalar parameter. ``kind`` is ``"f32"`` or ``"i32"``; ``default`` None means required."""

    name: str
    kind: str
    default: float | int | None = None

    def __post_init__(self) -> None:
        if self.kind not in _PARAM_KINDS:
            raise ValueError(f"param {self.name!r}: kind must be one of {_PARAM_KINDS}, got {self.kind!r}")


@dataclass(frozen=True)
class LaunchPlan:
    """Launch geometry. ``scalars`` are appended after the pointers, each as ``("i32", v)`` or ``("f32", v)``."""

    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    shared_bytes: int
    scalars: tuple[tuple[str, int | float], ...]


class Checked(NamedTuple):
    """A task that passed :meth:`KernelSpec.check`: params with defaults filled and types coerced, and the
    ``(shape, dtype)`` of every output in the order the kernel writes them. A NamedTuple, not a frozen
    dataclass: it is built per task, and a frozen dataclass costs about 0.8 µs to construct."""

    params: dict[str, int | float]
    outputs: tuple[tuple[tuple[int, ...], np.dtype], ...]


def _type_name(value: object) -> str:
    return type(value).__name__


def coerce_param(kernel: str, spec: ParamSpec, value: Any) -> int | float:
    """``value`` as the Python number ``spec`` asks for, or BAD_PARAM. bool is not a number here."""
    if spec.kind == "f32":
        # int and float are the only types msgpack yields; numbers.Real admits numpy scalars too.
        if (
            type(value) is float
            or type(value) is int
            or (isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)))
        ):
            v = float(value)
            if not math.isfinite(v):
                raise TaskError(Code.BAD_PARAM, f"{kernel}: param {spec.name!r} must be finite, got {v!r}")
            if abs(v) > _F32_MAX:
                raise TaskError(Code.BAD_PARAM, f"{kernel}: param {spec.name!r}={v!r} is out of float32 range")
            return v
        raise TaskError(
            Code.BAD_PARAM, f"{kernel}: param {spec.name!r} must be a number (f32), got {_type_name(value)}"
        )
    if type(value) is int or (isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))):
        v = int(value)
        if not INT32_MIN <= v <= INT32_MAX:
            raise TaskError(Code.BAD_PARAM, f"{kernel}: param {spec.name!r}={v} is out of int32 range")
        return v
    raise TaskError(Code.BAD_PARAM, f"{kernel}: param {spec.name!r} must be an integer (i32), got {_type_name(value)}")


class KernelSpec:
    """Base class of every kernel description. Subclasses implement the shape rule and the four methods.

    Subclass hooks: :meth:`_check_shapes` (shape rule -> output shapes and dtypes), :meth:`plan`,
    :meth:`reference`, :meth:`tolerance` and :meth:`sample_inputs`. The base :meth:`check` does arity,
    exact dtype match, zero-size and params, then calls :meth:`_check_shapes`.
    """

    name: str
    source: str
    source_dir: Path
    entry: str
    inputs: tuple[InputSpec, ...]
    params: tuple[ParamSpec, ...]
    error_bound: str
    # Unique key of the source among all registered sources, e.g. "builtin/fft.cu" (see KernelRegistry.sources).
    source_id: str
    # Row-wise kernels: k tasks of one form, their inputs stacked on a new leading axis, run as one task whose
    # output row i is task i's output. The server may then batch queued tasks of one form into one launch.
    batchable: bool = False

    def __init__(
        self,
        *,
        name: str,
        source: str,
        source_dir: str | Path,
        entry: str,
        inputs: Sequence[InputSpec],
        params: Sequence[ParamSpec] = (),
        error_bound: str,
        source_id: str | None = None,
    ) -> None:
        self.name = name
        self.source = source
        self.source_dir = Path(source_dir)
        self.entry = entry
        self.inputs = tuple(inputs)
        self.params = tuple(params)
        self.error_bound = error_bound
        self.source_id = source_id if source_id is not None else f"builtin/{source}"
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError(f"kernel {name!r}: duplicate param names {names}")
        # Precomputed once so check() compares dtype objects without building anything per call.
        self._dtypes: tuple[tuple[np.dtype, ...], ...] = tuple(
            tuple(np.dtype(d) for d in spec.dtypes) for spec in self.inputs
        )
        self._param_names = frozenset(names)
        self._arity_text = ", ".join(spec.name for spec in self.inputs)
        self._shape_cache: dict[tuple[tuple[int, ...], ...], tuple] = {}

    @property
    def source_path(self) -> Path:
        """The ``.cu`` file holding :attr:`entry`."""
        return self.source_dir / self.source

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} entry={self.entry!r} source={str(self.source_path)!r}>"

    # -- validation (hot path) -------------------------------------------------------------------------------

    def check(self, inputs: Sequence[np.ndarray], params: Mapping[str, Any]) -> Checked:
        """Validate a task's inputs and params; return the coerced params and the outputs to allocate.

        Raises :class:`TaskError` with BAD_ARITY (input count), BAD_DTYPE (dtype not exactly one allowed,
        no casting), BAD_SHAPE (the kernel's shape rule, zero-size arrays), TOO_LARGE (more elements than a
        32-bit launch can index) or BAD_PARAM (unknown, missing, wrongly typed or non-finite param).
        """
        if len(inputs) != len(self.inputs):
            raise TaskError(
                Code.BAD_ARITY,
                f"{self.name} takes {len(self.inputs)} input(s) ({self._arity_text}), got {len(inputs)}",
            )
        for i, arr in enumerate(inputs):
            # np.dtype("float64") == None is True in numpy, so a missing dtype must be caught explicitly.
            dtype = getattr(arr, "dtype", None)
            if dtype is None or dtype not in self._dtypes[i]:
                spec = self.inputs[i]
                raise TaskError(
                    Code.BAD_DTYPE,
                    f"{self.name}: input {spec.name!r} must be {' or '.join(spec.dtypes)}, got {dtype}",
                )
            if arr.size == 0:
                raise TaskError(
                    Code.BAD_SHAPE, f"{self.name}: input {self.inputs[i].name!r} is empty (shape {arr.shape})"
                )
        shapes = tuple([arr.shape for arr in inputs])
        # The shape rule is a pure function of the shapes, and real-time producers repeat a few shapes:
        # memoize it (bounded) so the per-task check is a dict lookup. Failing shapes are never cached.
        cache = self._shape_cache
        outputs = cache.get(shapes)
        if outputs is None:
            outputs = self._check_shapes(shapes)
            if len(cache) >= _SHAPE_CACHE_MAX:
                cache.clear()
            cache[shapes] = outputs
        return Checked(self._check_params(params) if (params or self.params) else {}, outputs)

    def _check_params(self, params: Mapping[str, Any]) -> dict[str, int | float]:
        for key in params:
            if key not in self._param_names:
                known = ", ".join(sorted(self._param_names)) or "none"
                raise TaskError(Code.BAD_PARAM, f"{self.name}: unknown param {key!r} (known: {known})")
        out: dict[str, int | float] = {}
        for spec in self.params:
            if spec.name in params:
                out[spec.name] = coerce_param(self.name, spec, params[spec.name])
            elif spec.default is None:
                raise TaskError(Code.BAD_PARAM, f"{self.name}: missing required param {spec.name!r} ({spec.kind})")
            else:
                out[spec.name] = spec.default
        return out

    def _check_shapes(self, shapes: tuple[tuple[int, ...], ...]) -> tuple[tuple[tuple[int, ...], np.dtype], ...]:
        """The shape rule: raise BAD_SHAPE/TOO_LARGE or return ``(shape, dtype)`` per output."""
        raise NotImplementedError

    # -- launch, reference, tolerance --------------------------------------------------------------------------

    def plan(self, inputs_shapes: Sequence[tuple[int, ...]], params: Mapping[str, int | float]) -> LaunchPlan:
        """Launch geometry and scalars for checked shapes and checked params (``Checked.params``)."""
        raise NotImplementedError

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, int | float]) -> list[np.ndarray]:
        """The defining numpy computation; outputs in their declared dtypes. Inputs must have passed check()."""
        raise NotImplementedError

    def tolerance(
        self, inputs: Sequence[np.ndarray], params: Mapping[str, int | float] | None = None
    ) -> tuple[float, float]:
        """``(rtol, atol)`` that a GPU result must meet against :meth:`reference` (``np.allclose`` style),
        consistent with :attr:`error_bound`. Cold path: it may look at the data."""
        raise NotImplementedError

    def sample_inputs(self, rng: np.random.Generator, size: int) -> tuple[list[np.ndarray], dict]:
        """Random valid inputs of roughly ``size`` elements (``size`` >= 1) and params, for tests and benches."""
        raise NotImplementedError


def count_elements(kernel: str, what: str, shape: tuple[int, ...]) -> int:
    """Element count of ``shape``; TOO_LARGE when a 32-bit ``int n`` cannot hold it."""
    n = 1
    for d in shape:
        n *= d
    if n > INT32_MAX:
        raise TaskError(Code.TOO_LARGE, f"{kernel}: {what} has {n} elements, more than {INT32_MAX}")
    return n


def blocks_for(n: int, block: int) -> int:
    """Blocks of ``block`` threads needed to give each of ``n`` items a thread (at least one block)."""
    return max(1, -(-n // block))
