"""User kernels: ``NAME.cu`` plus a sidecar ``NAME.toml``, loaded from directories named at start.

The vocabulary covers the elementwise family: every input has the same shape, there is one output of that
shape, and the kernel runs one thread per element on a 1-D grid. A spec file::

    name = "scale_add"                   # wire name (identifier characters)
    entry = "scale_add"                  # extern "C" symbol in NAME.cu (NAME = this file's stem)
    inputs = [{ name = "x", dtype = "float32" }, { name = "y", dtype = "float32" }]
    params = [{ name = "factor", kind = "f32", default = 1.0 }]   # optional; kind "f32" | "i32"; no default = required
    output = { like = "x" }              # same shape and dtype as input x; optional dtype = "..." overrides the dtype
    launch = { block = 256 }             # optional, default 256; 1..1024 threads per block
    reference = "x * factor + y"         # numpy expression over the input names, the param names and `np`
    error_bound = "..."                  # one sentence: how far the kernel may be from the reference
    tolerance = { rtol = 1e-6, atol = 1e-6 }   # optional, default rtol 1e-5, atol 1e-6: the GPU check

ABI of the entry (as for builtins): ``(const T0* in0, ..., T* out, int n, <params in order>)`` where ``n`` is
the element count, f32 params are C ``float`` and i32 params C ``int``.

Loading is strict: an unknown key, a missing field, a wrong type, an unsupported dtype, a name clash, an entry
symbol absent from the ``.cu`` or a reference that does not evaluate raises :class:`ValueError` naming the file
and the field. The reference runs under ``eval`` with no builtins and only ``np``, the inputs and the params
(params as ``np.float32``/``np.int32``, the values the device receives) in scope, and names starting with ``_``
are refused. That keeps mistakes out; it is not a sandbox: the operator who names a kernel directory trusts it,
exactly as they trust its CUDA code.

Requires Python 3.11 or newer (``tomllib``); on 3.10 loading a user directory raises :class:`RuntimeError`.
"""

from __future__ import annotations

import ast
import logging
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import CodeType
from typing import Any, NoReturn

import numpy as np

from zmqrt.dtypes import DTYPE_NAMES
from zmqrt.errors import Code, TaskError
from zmqrt.kernels.spec import (
    INT32_MAX,
    INT32_MIN,
    InputSpec,
    KernelSpec,
    LaunchPlan,
    ParamSpec,
    blocks_for,
    count_elements,
)

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: tomli is not a dependency
    tomllib = None  # type: ignore[assignment]

__all__ = ["SUPPORTED_DTYPES", "UserKernelSpec", "load_user_kernel", "load_user_kernels"]

log = logging.getLogger(__name__)

SUPPORTED_DTYPES = DTYPE_NAMES
DEFAULT_BLOCK = 256
DEFAULT_RTOL = 1e-5
DEFAULT_ATOL = 1e-6

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_TOP_KEYS = {
    "name": True,
    "entry": True,
    "inputs": True,
    "params": False,
    "output": True,
    "launch": False,
    "reference": True,
    "error_bound": True,
    "tolerance": False,
}  # key -> required


class UserKernelSpec(KernelSpec):
    """An elementwise kernel described by a ``.toml`` sidecar. Build it with :func:`load_user_kernel`."""

    def __init__(
        self,
        *,
        name: str,
        source: str,
        source_dir: Path,
        entry: str,
        inputs: Sequence[InputSpec],
        params: Sequence[ParamSpec],
        error_bound: str,
        source_id: str,
        like: int,
        output_dtype: np.dtype,
        block: int,
        reference_text: str,
        reference_code: CodeType,
        rtol: float,
        atol: float,
        spec_path: Path,
    ) -> None:
        super().__init__(
            name=name,
            source=source,
            source_dir=source_dir,
            entry=entry,
            inputs=inputs,
            params=params,
            error_bound=error_bound,
            source_id=source_id,
        )
        self.like = like
        self.output_dtype = output_dtype
        self.block = block
        self.reference_text = reference_text
        self.spec_path = spec_path
        self._reference_code = reference_code
        self._rtol = rtol
        self._atol = atol
        # Params reach the reference as the numpy scalar the device gets, so numpy's promotion matches C's.
        self._param_types = tuple(np.float32 if p.kind == "f32" else np.int32 for p in self.params)

    def _check_shapes(self, shapes: tuple[tuple[int, ...], ...]) -> tuple[tuple[tuple[int, ...], np.dtype], ...]:
        shape = shapes[self.like]
        for spec, other in zip(self.inputs, shapes, strict=True):
            if other != shape:
                raise TaskError(
                    Code.BAD_SHAPE,
                    f"{self.name}: input {spec.name!r} has shape {other}, all inputs must have shape {shape} "
                    f"(that of {self.inputs[self.like].name!r})",
                )
        count_elements(self.name, "the output", shape)
        return ((shape, self.output_dtype),)

    def plan(self, inputs_shapes: Sequence[tuple[int, ...]], params: Mapping[str, int | float]) -> LaunchPlan:
        n = math.prod(inputs_shapes[self.like])
        scalars = (("i32", n), *((p.kind, params[p.name]) for p in self.params))
        return LaunchPlan((blocks_for(n, self.block), 1, 1), (self.block, 1, 1), 0, scalars)

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, int | float]) -> list[np.ndarray]:
        scope: dict[str, Any] = {spec.name: arr for spec, arr in zip(self.inputs, inputs, strict=True)}
        for spec, kind in zip(self.params, self._param_types, strict=True):
            scope[spec.name] = kind(params[spec.name])
        result = np.asarray(eval(self._reference_code, {"__builtins__": {}, "np": np}, scope))
        shape = inputs[self.like].shape
        if result.shape == shape and result.dtype == self.output_dtype:
            return [result]
        # A scalar or broadcastable result is widened; the dtype is cast to the declared output dtype.
        return [np.array(np.broadcast_to(result, shape), dtype=self.output_dtype)]

    def tolerance(
        self, inputs: Sequence[np.ndarray], params: Mapping[str, int | float] | None = None
    ) -> tuple[float, float]:
        return (self._rtol, self._atol)

    def sample_inputs(self, rng: np.random.Generator, size: int) -> tuple[list[np.ndarray], dict]:
        n = max(1, int(size))
        arrays = [_random_array(rng, np.dtype(spec.dtypes[0]), n) for spec in self.inputs]
        params = {
            p.name: (p.default if p.default is not None else (1.5 if p.kind == "f32" else 3)) for p in self.params
        }
        return arrays, params


def _random_array(rng: np.random.Generator, dtype: np.dtype, n: int) -> np.ndarray:
    if dtype.kind == "f":
        return rng.standard_normal(n).astype(dtype)
    if dtype.kind == "c":
        return (rng.standard_normal(n) + 1j * rng.standard_normal(n)).astype(dtype)
    low = 0 if dtype.kind == "u" else -100
    return rng.integers(low, 100, n).astype(dtype)


class _Fields:
    """Typed access to one toml table, with errors that name the file and the field."""

    def __init__(self, path: Path, where: str, table: Any, keys: Mapping[str, bool]) -> None:
        self.path = path
        self.where = where
        if not isinstance(table, dict):
            self.fail(where, f"must be a table, got {type(table).__name__}")
        unknown = sorted(set(table) - set(keys))
        if unknown:
            self.fail(f"{where}{unknown[0]}", f"unknown key (allowed: {', '.join(keys)})")
        for key, required in keys.items():
            if required and key not in table:
                self.fail(f"{where}{key}", "is required")
        self.table = table

    def fail(self, field: str, message: str) -> NoReturn:
        raise ValueError(f"{self.path}: field {field or '<top>'!r} {message}")

    def get(self, key: str, types: type | tuple[type, ...], default: Any = None) -> Any:
        if key not in self.table:
            return default
        value = self.table[key]
        # bool is an int subclass; a toml `true` is never a valid number here.
        if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
            self.fail(self.where + key, f"must be {_names(types)}, got bool")
        if not isinstance(value, types):
            self.fail(self.where + key, f"must be {_names(types)}, got {type(value).__name__}")
        return value

    def ident(self, key: str) -> str:
        value = self.get(key, str)
        if not _IDENT.match(value):
            self.fail(self.where + key, f"must be an identifier ([A-Za-z_][A-Za-z0-9_]*), got {value!r}")
        return value


def _names(types: type | tuple[type, ...]) -> str:
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join(t.__name__ for t in types)


def _dtype(fields: _Fields, key: str) -> np.dtype:
    name = fields.get(key, str)
    if name not in SUPPORTED_DTYPES:
        fields.fail(fields.where + key, f"dtype {name!r} is not supported (one of {', '.join(SUPPORTED_DTYPES)})")
    return np.dtype(name)


def _compile_reference(fields: _Fields, text: str, allowed: set[str]) -> CodeType:
    field = "reference"
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        fields.fail(field, f"is not a Python expression: {exc.msg}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id not in allowed:
            fields.fail(field, f"uses unknown name {node.id!r} (allowed: {', '.join(sorted(allowed))})")
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            fields.fail(field, f"uses private attribute {node.attr!r}")
    return compile(tree, f"{fields.path}:reference", "eval")


def load_user_kernel(spec_path: str | Path, source_id_prefix: str | None = None) -> UserKernelSpec:
    """Parse and validate one ``NAME.toml``; its source is ``NAME.cu`` in the same directory."""
    if tomllib is None:
        raise RuntimeError("user kernels need Python 3.11 or newer (tomllib)")
    path = Path(spec_path)
    try:
        with path.open("rb") as f:
            doc = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    top = _Fields(path, "", doc, _TOP_KEYS)

    name = top.ident("name")
    entry = top.ident("entry")
    source_path = path.with_suffix(".cu")
    if not source_path.is_file():
        top.fail("entry", f"needs the source file {source_path.name} next to the spec, and it does not exist")
    if not re.search(rf"\b{re.escape(entry)}\s*\(", source_path.read_text(encoding="utf-8", errors="replace")):
        top.fail("entry", f"{entry!r} is not defined in {source_path.name}")

    raw_inputs = top.get("inputs", list)
    if not raw_inputs:
        top.fail("inputs", "must list at least one input")
    inputs: list[InputSpec] = []
    for i, raw in enumerate(raw_inputs):
        fields = _Fields(path, f"inputs[{i}].", raw, {"name": True, "dtype": True})
        inputs.append(InputSpec(fields.ident("name"), (_dtype(fields, "dtype").name,)))

    params: list[ParamSpec] = []
    for i, raw in enumerate(top.get("params", list, [])):
        fields = _Fields(path, f"params[{i}].", raw, {"name": True, "kind": True, "default": False})
        pname = fields.ident("name")
        kind = fields.get("kind", str)
        if kind not in ("f32", "i32"):
            fields.fail(f"params[{i}].kind", f"must be 'f32' or 'i32', got {kind!r}")
        default = fields.get("default", (int, float) if kind == "f32" else int)
        if default is not None:
            if kind == "f32" and not math.isfinite(default):
                fields.fail(f"params[{i}].default", f"must be finite, got {default!r}")
            if kind == "i32" and not INT32_MIN <= default <= INT32_MAX:
                fields.fail(f"params[{i}].default", f"is out of int32 range: {default}")
            default = float(default) if kind == "f32" else default
        params.append(ParamSpec(pname, kind, default))

    names: list[str] = []
    for field, entries in (("inputs", inputs), ("params", params)):
        for entry_spec in entries:
            if entry_spec.name == "np" or entry_spec.name in names:
                top.fail(field, f"name {entry_spec.name!r} is used twice or shadows np; names must be distinct")
            names.append(entry_spec.name)

    out = _Fields(path, "output.", top.get("output", dict), {"like": True, "dtype": False})
    like_name = out.ident("like")
    input_names = [s.name for s in inputs]
    if like_name not in input_names:
        out.fail("output.like", f"names no input: {like_name!r} (inputs: {', '.join(input_names)})")
    like = input_names.index(like_name)
    output_dtype = _dtype(out, "dtype") if "dtype" in out.table else np.dtype(inputs[like].dtypes[0])

    launch = _Fields(path, "launch.", top.get("launch", dict, {}), {"block": False})
    block = launch.get("block", int, DEFAULT_BLOCK)
    if not 1 <= block <= 1024:
        launch.fail("launch.block", f"must be 1..1024 threads, got {block}")

    tol = _Fields(path, "tolerance.", top.get("tolerance", dict, {}), {"rtol": False, "atol": False})
    rtol = float(tol.get("rtol", (int, float), DEFAULT_RTOL))
    atol = float(tol.get("atol", (int, float), DEFAULT_ATOL))
    for key, value in (("rtol", rtol), ("atol", atol)):
        if not (math.isfinite(value) and value >= 0):
            tol.fail(f"tolerance.{key}", f"must be finite and >= 0, got {value!r}")

    error_bound = top.get("error_bound", str).strip()
    if not error_bound:
        top.fail("error_bound", "must not be empty")
    reference_text = top.get("reference", str)
    code = _compile_reference(top, reference_text, set(names) | {"np"})

    prefix = source_id_prefix if source_id_prefix is not None else f"user/{path.parent.name}"
    spec = UserKernelSpec(
        name=name,
        source=source_path.name,
        source_dir=path.parent,
        entry=entry,
        inputs=inputs,
        params=params,
        error_bound=error_bound,
        source_id=f"{prefix}/{source_path.name}",
        like=like,
        output_dtype=output_dtype,
        block=block,
        reference_text=reference_text,
        reference_code=code,
        rtol=rtol,
        atol=atol,
        spec_path=path,
    )
    # Evaluate the reference once on small sample data so a broken expression fails at load, not per task.
    arrays, sample_params = spec.sample_inputs(np.random.default_rng(0), 5)
    try:
        (result,) = spec.reference(arrays, sample_params)
    except Exception as exc:  # the expression is user code: any failure is a spec error
        top.fail("reference", f"fails on sample inputs: {type(exc).__name__}: {exc}")
    if result.shape != arrays[like].shape:
        top.fail("reference", f"gives shape {result.shape} for inputs of shape {arrays[like].shape}")
    return spec


def load_user_kernels(directory: str | Path) -> list[UserKernelSpec]:
    """Every ``*.toml`` kernel spec in ``directory`` (not recursive), sorted by file name."""
    root = Path(directory)
    if not root.is_dir():
        raise ValueError(f"kernel directory {root} does not exist or is not a directory")
    specs = [load_user_kernel(p) for p in sorted(root.glob("*.toml"))]
    described = {s.source for s in specs}
    for cu in sorted(root.glob("*.cu")):
        if cu.name not in described:
            log.warning("user kernel source %s has no %s sidecar; ignored", cu, cu.with_suffix(".toml").name)
    seen: dict[str, Path] = {}
    for s in specs:
        if s.name in seen:
            raise ValueError(f"{s.spec_path}: field 'name' {s.name!r} is already defined by {seen[s.name]}")
        seen[s.name] = s.spec_path
    return specs
