"""The builtin kernels: their shape rules, launch plans, numpy references and error bounds.

Each class below pairs with one ``extern "C"`` entry in ``ptx/*.cu``; the comment at the top of each ``.cu``
file states the same ABI and launch geometry as :meth:`plan` here, and the two must change together.

=============  ==============  =========================================  ==========================================
wire name      source          inputs -> outputs                          reference
=============  ==============  =========================================  ==========================================
vector_add     elementwise.cu  a, b float32 (same shape) -> same shape    ``a + b``
saxpy          elementwise.cu  x, y float32 (same shape); alpha f32 = 1   ``alpha * x + y``
matmul         matmul.cu       A[M,K], B[K,N] float32 -> [M,N]            ``A @ B``
fft            fft.cu          x[..., n] complex64, n = 2^k <= 4096       ``np.fft.fft(x, axis=-1)``
reduce_sum     reduce.cu       x float32, any shape -> (1,)               ``[x.sum()]``
fir            fir.cu          signal[n], taps[t <= 4096] float32 -> [n]  ``np.convolve(signal, taps)[:n]``
=============  ==============  =========================================  ==========================================
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from zmqrt.errors import Code, TaskError
from zmqrt.kernels.spec import (
    F32_EPS,
    InputSpec,
    KernelSpec,
    LaunchPlan,
    ParamSpec,
    blocks_for,
    count_elements,
)

__all__ = [
    "BUILTIN_SOURCES",
    "FFT_MAX_N",
    "FIR_MAX_TAPS",
    "Fft",
    "Fir",
    "Matmul",
    "ReduceSum",
    "Saxpy",
    "VectorAdd",
    "builtin_specs",
]

F32 = np.dtype(np.float32)
C64 = np.dtype(np.complex64)
_F32_IN = ("float32",)
_C64_IN = ("complex64",)

ELEMENTWISE_BLOCK = 256
MATMUL_TILE = 16  # must equal TILE in ptx/matmul.cu
# gridDim.y is limited to 65535 blocks, and matmul puts the M tiles on y.
MATMUL_MAX_M = 65535 * MATMUL_TILE
FFT_MAX_N = 4096  # n * 8 bytes of shared memory: 32 KiB, inside the 48 KiB a block gets without opt-in
FFT_MAX_BLOCK = 512
REDUCE_BLOCK = 1024
FIR_BLOCK = 256
FIR_MAX_TAPS = 4096  # t * 4 bytes of shared memory: 16 KiB

# The smallest normal float32. The elementwise kernels are bit-identical to numpy; this slack only absorbs a
# build with flush-to-zero, where a subnormal result becomes 0.
_F32_TINY = float(np.finfo(np.float32).tiny)

BUILTIN_SOURCES = ("elementwise.cu", "matmul.cu", "fft.cu", "reduce.cu", "fir.cu")


def _gamma(k: int) -> float:
    """Higham's gamma_k = k*u / (1 - k*u) for float32: the bound on k chained roundings; inf once meaningless."""
    ku = k * F32_EPS
    return ku / (1.0 - ku) if ku < 0.5 else math.inf


class _Elementwise(KernelSpec):
    """Two float32 inputs of one shape (any rank, 0-d included) -> one output of that shape."""

    batchable = True  # stacking k tasks' inputs gives the k outputs stacked

    def _check_shapes(self, shapes: tuple[tuple[int, ...], ...]) -> tuple[tuple[tuple[int, ...], np.dtype], ...]:
        first, second = shapes
        if first != second:
            raise TaskError(
                Code.BAD_SHAPE,
                f"{self.name}: inputs {self.inputs[0].name!r} {first} and {self.inputs[1].name!r} {second} "
                "must have the same shape",
            )
        count_elements(self.name, "the output", first)
        return ((first, F32),)

    def _plan(self, shape: tuple[int, ...], extra: tuple[tuple[str, int | float], ...]) -> LaunchPlan:
        n = math.prod(shape)
        return LaunchPlan((blocks_for(n, ELEMENTWISE_BLOCK), 1, 1), (ELEMENTWISE_BLOCK, 1, 1), 0, (("i32", n), *extra))

    def tolerance(
        self, inputs: Sequence[np.ndarray], params: Mapping[str, int | float] | None = None
    ) -> tuple[float, float]:
        return (0.0, _F32_TINY)

    def _sample(self, rng: np.random.Generator, size: int) -> list[np.ndarray]:
        n = max(1, int(size))
        return [rng.standard_normal(n, dtype=np.float32) for _ in range(2)]


class VectorAdd(_Elementwise):
    def __init__(self, source_dir: str | Path) -> None:
        super().__init__(
            name="vector_add",
            source="elementwise.cu",
            source_dir=source_dir,
            entry="vector_add",
            inputs=(InputSpec("a", _F32_IN), InputSpec("b", _F32_IN)),
            error_bound="Bit-identical to a + b in float32 (one correctly rounded add per element).",
        )

    def plan(self, inputs_shapes: Sequence[tuple[int, ...]], params: Mapping[str, int | float]) -> LaunchPlan:
        return self._plan(inputs_shapes[0], ())

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, int | float]) -> list[np.ndarray]:
        a, b = inputs
        return [np.asarray(a + b)]  # asarray: 0-d inputs give a numpy scalar, the contract is an array

    def sample_inputs(self, rng: np.random.Generator, size: int) -> tuple[list[np.ndarray], dict]:
        return self._sample(rng, size), {}


class Saxpy(_Elementwise):
    def __init__(self, source_dir: str | Path) -> None:
        super().__init__(
            name="saxpy",
            source="elementwise.cu",
            source_dir=source_dir,
            entry="saxpy",
            inputs=(InputSpec("x", _F32_IN), InputSpec("y", _F32_IN)),
            params=(ParamSpec("alpha", "f32", 1.0),),
            error_bound=(
                "Bit-identical to float32(alpha) * x + y in float32: the multiply and the add are each rounded, "
                "never fused into an FMA."
            ),
        )

    def plan(self, inputs_shapes: Sequence[tuple[int, ...]], params: Mapping[str, int | float]) -> LaunchPlan:
        return self._plan(inputs_shapes[0], (("f32", params["alpha"]),))

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, int | float]) -> list[np.ndarray]:
        x, y = inputs
        # The device receives alpha as a C float, so the reference rounds it to float32 too.
        return [np.asarray(np.float32(params["alpha"]) * x + y)]

    def sample_inputs(self, rng: np.random.Generator, size: int) -> tuple[list[np.ndarray], dict]:
        return self._sample(rng, size), {"alpha": float(np.float32(rng.uniform(-2.0, 2.0)))}


class Matmul(KernelSpec):
    def __init__(self, source_dir: str | Path) -> None:
        super().__init__(
            name="matmul",
            source="matmul.cu",
            source_dir=source_dir,
            entry="matmul",
            inputs=(InputSpec("A", _F32_IN), InputSpec("B", _F32_IN)),
            error_bound=(
                "Each element is within 2*gamma_K*(|A| @ |B|)_ij of A @ B in float32, gamma_K = K*2^-24/(1 - K*2^-24): "
                "device and reference each accumulate K float32 products (classic dot-product bound)."
            ),
        )

    def _check_shapes(self, shapes: tuple[tuple[int, ...], ...]) -> tuple[tuple[tuple[int, ...], np.dtype], ...]:
        a, b = shapes
        if len(a) != 2 or len(b) != 2:
            raise TaskError(Code.BAD_SHAPE, f"matmul: A and B must be 2-D, got shapes {a} and {b}")
        (m, k), (k2, n) = a, b
        if k != k2:
            raise TaskError(
                Code.BAD_SHAPE, f"matmul: A is {m}x{k} and B is {k2}x{n}; A's columns must equal B's rows (K mismatch)"
            )
        count_elements("matmul", "A", a)
        count_elements("matmul", "B", b)
        count_elements("matmul", "the output", (m, n))
        if m > MATMUL_MAX_M:
            raise TaskError(Code.TOO_LARGE, f"matmul: M={m} rows, at most {MATMUL_MAX_M} (grid y limit)")
        return (((m, n), F32),)

    def plan(self, inputs_shapes: Sequence[tuple[int, ...]], params: Mapping[str, int | float]) -> LaunchPlan:
        (m, k), (_, n) = inputs_shapes
        return LaunchPlan(
            (blocks_for(n, MATMUL_TILE), blocks_for(m, MATMUL_TILE), 1),
            (MATMUL_TILE, MATMUL_TILE, 1),
            0,  # the tiles are static __shared__ arrays
            (("i32", m), ("i32", n), ("i32", k)),
        )

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, int | float]) -> list[np.ndarray]:
        a, b = inputs
        return [a @ b]

    def tolerance(
        self, inputs: Sequence[np.ndarray], params: Mapping[str, int | float] | None = None
    ) -> tuple[float, float]:
        a, b = inputs
        k = a.shape[1]
        magnitude = float((np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64))).max())
        return (0.0, 2.0 * _gamma(k) * magnitude)

    def sample_inputs(self, rng: np.random.Generator, size: int) -> tuple[list[np.ndarray], dict]:
        side = max(1, math.isqrt(max(1, int(size))))  # A is side x side: about `size` elements
        return [rng.standard_normal((side, side), dtype=np.float32) for _ in range(2)], {}


class Fft(KernelSpec):
    batchable = True  # one transform per row of x[..., n]: k tasks stacked are k more rows

    def __init__(self, source_dir: str | Path) -> None:
        super().__init__(
            name="fft",
            source="fft.cu",
            source_dir=source_dir,
            entry="fft",
            inputs=(InputSpec("x", _C64_IN),),
            error_bound=(
                "Per row, ||out - ref||_2 <= 1e-6 * max(1, log2 n) * ||ref||_2 = 1e-6 * max(1, log2 n) * sqrt(n) * "
                "||x||_2, with ref = np.fft.fft(x) in complex64: radix-2 with ~1-ulp sincospif twiddles loses at most "
                "about 8*2^-24 per stage, and the reference about as much."
            ),
        )

    def _check_shapes(self, shapes: tuple[tuple[int, ...], ...]) -> tuple[tuple[tuple[int, ...], np.dtype], ...]:
        (shape,) = shapes
        if not shape:
            raise TaskError(Code.BAD_SHAPE, "fft: x must have at least 1 dimension (the transform axis is the last)")
        n = shape[-1]
        if n & (n - 1):
            raise TaskError(Code.BAD_SHAPE, f"fft: last axis length {n} is not a power of two (radix-2 kernel)")
        if n > FFT_MAX_N:
            raise TaskError(
                Code.BAD_SHAPE,
                f"fft: last axis length {n} exceeds {FFT_MAX_N} (one row must fit in 32 KiB of shared memory)",
            )
        count_elements("fft", "x", shape)
        return ((shape, C64),)

    def plan(self, inputs_shapes: Sequence[tuple[int, ...]], params: Mapping[str, int | float]) -> LaunchPlan:
        (shape,) = inputs_shapes
        n = shape[-1]
        rows = math.prod(shape[:-1])
        threads = min(max(n // 2, 1), FFT_MAX_BLOCK)
        return LaunchPlan((rows, 1, 1), (threads, 1, 1), n * C64.itemsize, (("i32", n), ("i32", n.bit_length() - 1)))

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, int | float]) -> list[np.ndarray]:
        (x,) = inputs
        # numpy >= 2 transforms complex64 in single precision; older numpy returns complex128.
        return [np.fft.fft(x, axis=-1).astype(C64, copy=False)]

    def tolerance(
        self, inputs: Sequence[np.ndarray], params: Mapping[str, int | float] | None = None
    ) -> tuple[float, float]:
        (x,) = inputs
        n = x.shape[-1]
        row_norm = float(np.sqrt((np.abs(x.astype(np.complex128)) ** 2).sum(axis=-1)).max())
        return (0.0, 1e-6 * max(1, n.bit_length() - 1) * math.sqrt(n) * row_norm)

    def sample_inputs(self, rng: np.random.Generator, size: int) -> tuple[list[np.ndarray], dict]:
        size = max(1, int(size))
        n = 1 << (min(size, FFT_MAX_N).bit_length() - 1)  # largest power of two <= size, capped
        rows = max(1, size // n)
        shape = (rows, n) if rows > 1 else (n,)
        x = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(C64)
        return [x], {}


class ReduceSum(KernelSpec):
    def __init__(self, source_dir: str | Path) -> None:
        super().__init__(
            name="reduce_sum",
            source="reduce.cu",
            source_dir=source_dir,
            entry="reduce_sum",
            inputs=(InputSpec("x", _F32_IN),),
            error_bound=(
                "|out - ref| <= (n/512 + 64) * 2^-24 * sum(|x|): the device sums ceil(n/1024) terms per thread then "
                "a 10-level tree, numpy sums pairwise; each stays within its depth times 2^-24 * sum(|x|)."
            ),
        )

    def _check_shapes(self, shapes: tuple[tuple[int, ...], ...]) -> tuple[tuple[tuple[int, ...], np.dtype], ...]:
        count_elements("reduce_sum", "x", shapes[0])
        return (((1,), F32),)

    def plan(self, inputs_shapes: Sequence[tuple[int, ...]], params: Mapping[str, int | float]) -> LaunchPlan:
        # One block: it alone writes out[0], so the output needs no zeroing and no second launch.
        return LaunchPlan((1, 1, 1), (REDUCE_BLOCK, 1, 1), 0, (("i32", math.prod(inputs_shapes[0])),))

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, int | float]) -> list[np.ndarray]:
        (x,) = inputs
        return [np.array([x.sum()], dtype=F32)]

    def tolerance(
        self, inputs: Sequence[np.ndarray], params: Mapping[str, int | float] | None = None
    ) -> tuple[float, float]:
        (x,) = inputs
        return (0.0, (x.size / 512 + 64) * F32_EPS * float(np.abs(x).sum(dtype=np.float64)))

    def sample_inputs(self, rng: np.random.Generator, size: int) -> tuple[list[np.ndarray], dict]:
        return [rng.standard_normal(max(1, int(size)), dtype=np.float32)], {}


class Fir(KernelSpec):
    def __init__(self, source_dir: str | Path) -> None:
        super().__init__(
            name="fir",
            source="fir.cu",
            source_dir=source_dir,
            entry="fir",
            inputs=(InputSpec("signal", _F32_IN), InputSpec("taps", _F32_IN)),
            error_bound=(
                "Each output is within 2*gamma_m * sum(|taps|) * max(|signal|) of np.convolve(signal, taps)[:n], "
                "m = min(t, n), gamma_m = m*2^-24/(1 - m*2^-24): both sides are float32 dot products of <= m terms."
            ),
        )

    def _check_shapes(self, shapes: tuple[tuple[int, ...], ...]) -> tuple[tuple[tuple[int, ...], np.dtype], ...]:
        signal, taps = shapes
        if len(signal) != 1 or len(taps) != 1:
            raise TaskError(Code.BAD_SHAPE, f"fir: signal and taps must be 1-D, got shapes {signal} and {taps}")
        if taps[0] > FIR_MAX_TAPS:
            raise TaskError(
                Code.BAD_SHAPE, f"fir: {taps[0]} taps, at most {FIR_MAX_TAPS} (the taps live in shared memory)"
            )
        count_elements("fir", "signal", signal)
        return ((signal, F32),)

    def plan(self, inputs_shapes: Sequence[tuple[int, ...]], params: Mapping[str, int | float]) -> LaunchPlan:
        (n,), (t,) = inputs_shapes
        return LaunchPlan(
            (blocks_for(n, FIR_BLOCK), 1, 1), (FIR_BLOCK, 1, 1), t * F32.itemsize, (("i32", n), ("i32", t))
        )

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, int | float]) -> list[np.ndarray]:
        signal, taps = inputs
        return [np.convolve(signal, taps)[: signal.shape[0]].astype(F32, copy=False)]

    def tolerance(
        self, inputs: Sequence[np.ndarray], params: Mapping[str, int | float] | None = None
    ) -> tuple[float, float]:
        signal, taps = inputs
        m = min(signal.shape[0], taps.shape[0])
        scale = float(np.abs(taps).sum(dtype=np.float64)) * float(np.abs(signal).max())
        return (0.0, 2.0 * _gamma(m) * scale)

    def sample_inputs(self, rng: np.random.Generator, size: int) -> tuple[list[np.ndarray], dict]:
        n = max(1, int(size))
        t = max(1, min(64, n // 4))
        return [rng.standard_normal(n, dtype=np.float32), rng.standard_normal(t, dtype=np.float32)], {}


def builtin_specs(ptx_dir: str | Path) -> list[KernelSpec]:
    """One instance of every builtin kernel, reading its source from ``ptx_dir``."""
    ptx_dir = Path(ptx_dir)
    return [cls(ptx_dir) for cls in (VectorAdd, Saxpy, Matmul, Fft, ReduceSum, Fir)]
