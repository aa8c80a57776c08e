"""Kernel specs and registry: NVRTC compiles every source, validation codes, numpy references, launch plans,
user kernels. Everything here runs without a GPU; the one ``gpu`` test launches each builtin for real."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from zmqrt.errors import Code, TaskError
from zmqrt.kernels import (
    KernelRegistry,
    KernelSpec,
    LaunchPlan,
    UserKernelSpec,
    builtin_ptx_dir,
    load_registry,
    load_user_kernel,
    load_user_kernels,
)
from zmqrt.kernels.builtin import BUILTIN_SOURCES, F32_EPS, FFT_MAX_N, FIR_MAX_TAPS

REPO = Path(__file__).resolve().parents[1]
USER_DIR = REPO / "tests" / "data" / "user_kernels"
EXAMPLE_DIR = REPO / "examples" / "user_kernels"
F32 = np.float32
C64 = np.complex64


@pytest.fixture(scope="module")
def registry() -> KernelRegistry:
    return load_registry([USER_DIR])


def f32(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape, dtype=F32)


def c64(*shape: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(C64)


# -- NVRTC ---------------------------------------------------------------------------------------------------


def nvrtc_ptx(path: Path) -> tuple[str, str]:
    """(ptx, log) of compiling ``path`` for compute_90; raises with the log on failure."""
    nvrtc = pytest.importorskip("cuda.bindings.nvrtc")
    err, prog = nvrtc.nvrtcCreateProgram(path.read_bytes(), path.name.encode(), 0, [], [])
    assert err == nvrtc.nvrtcResult.NVRTC_SUCCESS
    try:
        (result,) = nvrtc.nvrtcCompileProgram(prog, 1, [b"--gpu-architecture=compute_90"])
        _, log_size = nvrtc.nvrtcGetProgramLogSize(prog)
        log = bytearray(log_size)
        nvrtc.nvrtcGetProgramLog(prog, log)
        log_text = bytes(log).rstrip(b"\x00").decode()
        assert result == nvrtc.nvrtcResult.NVRTC_SUCCESS, f"{path.name} failed to compile:\n{log_text}"
        _, ptx_size = nvrtc.nvrtcGetPTXSize(prog)
        ptx = bytearray(ptx_size)
        nvrtc.nvrtcGetPTX(prog, ptx)
        return bytes(ptx).rstrip(b"\x00").decode(), log_text
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


def test_every_kernel_compiles_to_ptx_without_warnings(registry: KernelRegistry) -> None:
    entries: dict[Path, list[str]] = {}
    for spec in registry:
        entries.setdefault(spec.source_path, []).append(spec.entry)
    example = load_user_kernels(EXAMPLE_DIR)[0]
    entries.setdefault(example.source_path, []).append(example.entry)
    assert len(entries) == len(BUILTIN_SOURCES) + 2
    for path, names in entries.items():
        ptx, log = nvrtc_ptx(path)
        assert log.strip() == "", f"{path.name} compiled with warnings:\n{log}"
        assert ".target sm_90" in ptx
        for entry in names:
            assert f".entry {entry}(" in ptx, f"{entry} missing from {path.name}"


# -- registry --------------------------------------------------------------------------------------------------


def test_registry_names_sources_and_lookup(registry: KernelRegistry) -> None:
    assert registry.names() == ["vector_add", "saxpy", "matmul", "fft", "reduce_sum", "fir", "scale_add"]
    assert len(registry) == 7 and "fft" in registry and "nope" not in registry and ["x"] not in registry
    assert registry.get("fft").entry == "fft"
    sources = registry.sources()
    assert sorted(sources) == sorted([f"builtin/{s}" for s in BUILTIN_SOURCES] + ["user/user_kernels/scale_add.cu"])
    assert all(p.is_file() for p in sources.values())
    assert builtin_ptx_dir() == REPO / "ptx"
    for spec in registry:
        assert isinstance(spec, KernelSpec) and spec.source_path.is_file() and spec.error_bound


@pytest.mark.parametrize("name", ["nope", "", None, ["vector_add"]])
def test_unknown_kernel(registry: KernelRegistry, name: object) -> None:
    with pytest.raises(TaskError) as exc:
        registry.get(name)  # type: ignore[arg-type]
    assert exc.value.code is Code.UNKNOWN_KERNEL
    assert "known: vector_add, saxpy" in exc.value.message


def test_duplicate_names_are_refused(tmp_path: Path) -> None:
    registry = load_registry()
    with pytest.raises(ValueError, match="already registered"):
        registry.add(registry.get("fft"))
    clash = tmp_path / "k"
    clash.mkdir()
    write_user_kernel(clash, name="fir")
    with pytest.raises(ValueError, match="'fir'.*already registered"):
        load_registry([clash])


def test_sources_ids_stay_unique_for_same_named_dirs(tmp_path: Path) -> None:
    dirs = []
    for i, kernel in enumerate(["k_one", "k_two"]):
        d = tmp_path / str(i) / "kernels"
        d.mkdir(parents=True)
        write_user_kernel(d, name=kernel, stem="same")
        dirs.append(d)
    sources = load_registry(dirs).sources()
    assert sources["user/kernels/same.cu"] == dirs[0] / "same.cu"
    assert sources["user/kernels/same.cu~2"] == dirs[1] / "same.cu"


def test_missing_builtin_source_is_reported(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="elementwise.cu"):
        load_registry(ptx_dir=tmp_path)


# -- validation ------------------------------------------------------------------------------------------------

BAD_TASKS = [
    # (kernel, inputs, params, code)
    ("vector_add", [f32(4)], {}, Code.BAD_ARITY),
    ("vector_add", [f32(4), f32(4), f32(4)], {}, Code.BAD_ARITY),
    ("vector_add", [f32(4), f32(4).astype(np.float64)], {}, Code.BAD_DTYPE),
    ("vector_add", [f32(4), f32(4).astype(">f4")], {}, Code.BAD_DTYPE),  # no silent byte swapping
    ("vector_add", [f32(4), f32(4).astype(np.int32)], {}, Code.BAD_DTYPE),
    ("vector_add", [f32(4), [1.0, 2.0, 3.0, 4.0]], {}, Code.BAD_DTYPE),
    ("vector_add", [f32(4), f32(5)], {}, Code.BAD_SHAPE),
    ("vector_add", [f32(4), f32(2, 2)], {}, Code.BAD_SHAPE),
    ("vector_add", [f32(0), f32(0)], {}, Code.BAD_SHAPE),
    ("vector_add", [f32(4), f32(4)], {"alpha": 1.0}, Code.BAD_PARAM),
    ("saxpy", [f32(4), f32(4)], {"alpha": "2"}, Code.BAD_PARAM),
    ("saxpy", [f32(4), f32(4)], {"alpha": True}, Code.BAD_PARAM),
    ("saxpy", [f32(4), f32(4)], {"alpha": np.bool_(True)}, Code.BAD_PARAM),
    ("saxpy", [f32(4), f32(4)], {"alpha": float("nan")}, Code.BAD_PARAM),
    ("saxpy", [f32(4), f32(4)], {"alpha": float("inf")}, Code.BAD_PARAM),
    ("saxpy", [f32(4), f32(4)], {"alpha": 1e39}, Code.BAD_PARAM),
    ("saxpy", [f32(4), f32(4)], {"alpha": None}, Code.BAD_PARAM),
    ("saxpy", [f32(4), f32(4)], {"beta": 1.0}, Code.BAD_PARAM),
    ("saxpy", [f32(4), f32(4)], {1: 1.0}, Code.BAD_PARAM),
    ("matmul", [f32(2, 3), f32(4, 5)], {}, Code.BAD_SHAPE),
    ("matmul", [f32(6), f32(6)], {}, Code.BAD_SHAPE),
    ("matmul", [f32(2, 3, 1), f32(3, 2)], {}, Code.BAD_SHAPE),
    ("matmul", [f32(0, 3), f32(3, 2)], {}, Code.BAD_SHAPE),
    ("matmul", [f32(2, 3)], {}, Code.BAD_ARITY),
    ("fft", [c64(12)], {}, Code.BAD_SHAPE),
    ("fft", [c64(3, 6)], {}, Code.BAD_SHAPE),
    ("fft", [c64(2 * FFT_MAX_N)], {}, Code.BAD_SHAPE),
    ("fft", [c64(4, 0)], {}, Code.BAD_SHAPE),
    ("fft", [np.array(1 + 2j, dtype=C64)], {}, Code.BAD_SHAPE),  # 0-d: no axis to transform
    ("fft", [c64(8).astype(np.complex128)], {}, Code.BAD_DTYPE),
    ("fft", [f32(8)], {}, Code.BAD_DTYPE),
    ("reduce_sum", [f32(8).astype(np.float16)], {}, Code.BAD_DTYPE),
    ("reduce_sum", [f32(3, 0)], {}, Code.BAD_SHAPE),
    ("reduce_sum", [], {}, Code.BAD_ARITY),
    ("fir", [f32(100), f32(FIR_MAX_TAPS + 1)], {}, Code.BAD_SHAPE),
    ("fir", [f32(10, 10), f32(3)], {}, Code.BAD_SHAPE),
    ("fir", [f32(10), f32(3, 1)], {}, Code.BAD_SHAPE),
    ("fir", [f32(10), f32(0)], {}, Code.BAD_SHAPE),
    ("scale_add", [f32(4), f32(5)], {}, Code.BAD_SHAPE),
    ("scale_add", [f32(4), f32(4)], {"factor": "x"}, Code.BAD_PARAM),
]


@pytest.mark.parametrize(("kernel", "inputs", "params", "code"), BAD_TASKS)
def test_bad_tasks_get_their_exact_code(registry: KernelRegistry, kernel: str, inputs, params, code: Code) -> None:
    with pytest.raises(TaskError) as exc:
        registry.get(kernel).check(inputs, params)
    assert exc.value.code is code, exc.value.message
    assert exc.value.message.startswith(kernel)


def test_too_large_without_allocating(registry: KernelRegistry) -> None:
    # A broadcast view has a huge shape and a tiny buffer, which check() must never read.
    huge = np.broadcast_to(np.zeros(1, F32), (2**31,))
    with pytest.raises(TaskError) as exc:
        registry.get("vector_add").check([huge, huge], {})
    assert exc.value.code is Code.TOO_LARGE
    tall = np.broadcast_to(np.zeros((1, 1), F32), (2**21, 1))
    with pytest.raises(TaskError) as exc:
        registry.get("matmul").check([tall, np.zeros((1, 1), F32)], {})
    assert exc.value.code is Code.TOO_LARGE


def test_messages_say_why(registry: KernelRegistry) -> None:
    with pytest.raises(TaskError, match="not a power of two"):
        registry.get("fft").check([c64(12)], {})
    with pytest.raises(TaskError, match="exceeds 4096"):
        registry.get("fft").check([c64(8192)], {})
    with pytest.raises(TaskError, match="K mismatch"):
        registry.get("matmul").check([f32(2, 3), f32(4, 5)], {})
    with pytest.raises(TaskError, match=r"takes 2 input\(s\) \(a, b\), got 1"):
        registry.get("vector_add").check([f32(3)], {})
    with pytest.raises(TaskError, match="missing required param 'alpha'"):
        required_param_kernel().check([f32(3)], {})


def test_params_are_coerced_and_defaulted(registry: KernelRegistry) -> None:
    saxpy = registry.get("saxpy")
    assert saxpy.check([f32(3), f32(3)], {}).params == {"alpha": 1.0}
    checked = saxpy.check([f32(3), f32(3)], {"alpha": 2})
    assert checked.params == {"alpha": 2.0} and type(checked.params["alpha"]) is float
    assert saxpy.check([f32(3), f32(3)], {"alpha": np.float32(0.5)}).params == {"alpha": 0.5}
    spec = required_param_kernel()
    assert spec.check([f32(3)], {"alpha": 2.5, "count": np.int64(7)}).params == {"alpha": 2.5, "count": 7}
    for bad in (2.0, True, 2**31, "3"):
        with pytest.raises(TaskError) as exc:
            spec.check([f32(3)], {"alpha": 1.0, "count": bad})
        assert exc.value.code is Code.BAD_PARAM


def test_check_returns_output_shapes_and_dtypes(registry: KernelRegistry) -> None:
    cases = {
        "vector_add": ([f32(3, 5), f32(3, 5)], ((3, 5), F32)),
        "saxpy": ([np.ones((), F32), np.ones((), F32)], ((), F32)),
        "matmul": ([f32(7, 3), f32(3, 2)], ((7, 2), F32)),
        "fft": ([c64(2, 3, 16)], ((2, 3, 16), C64)),
        "reduce_sum": ([f32(4, 4)], ((1,), F32)),
        "fir": ([f32(9), f32(20)], ((9,), F32)),
        "scale_add": ([f32(6), f32(6)], ((6,), F32)),
    }
    for name, (inputs, (shape, dtype)) in cases.items():
        checked = registry.get(name).check(inputs, {})
        assert checked.outputs == ((shape, np.dtype(dtype)),), name
        (out,) = registry.get(name).reference(inputs, checked.params)
        assert out.shape == shape and out.dtype == dtype and isinstance(out, np.ndarray), name


@pytest.mark.parametrize("size", [1, 2, 7, 1000, 5000])
def test_sample_inputs_are_valid(registry: KernelRegistry, size: int) -> None:
    rng = np.random.default_rng(size)
    for spec in registry:
        inputs, params = spec.sample_inputs(rng, size)
        checked = spec.check(inputs, params)
        outputs = spec.reference(inputs, checked.params)
        assert [(o.shape, o.dtype) for o in outputs] == list(checked.outputs), spec.name
        rtol, atol = spec.tolerance(inputs, checked.params)
        assert rtol >= 0 and atol >= 0 and math.isfinite(atol)


# -- reference numerics against independent computations ---------------------------------------------------------


def test_vector_add_and_saxpy_are_exactly_rounded(registry: KernelRegistry) -> None:
    for n in (1, 333, 100_003):
        a, b = f32(n, seed=1), f32(n, seed=2)
        # A float32 sum or product is exact in float64; rounding it once to float32 is the IEEE result.
        (out,) = registry.get("vector_add").reference([a, b], {})
        np.testing.assert_array_equal(out, (a.astype(np.float64) + b).astype(F32))
        alpha = 0.3  # not a float32 value: the kernel and the reference both use float32(0.3)
        (out,) = registry.get("saxpy").reference([a, b], {"alpha": alpha})
        ax = (np.float64(F32(alpha)) * a.astype(np.float64)).astype(F32)
        np.testing.assert_array_equal(out, (ax.astype(np.float64) + b).astype(F32))


@pytest.mark.parametrize(("m", "k", "n"), [(1, 1, 1), (1, 7, 1), (5, 1, 9), (17, 33, 5), (130, 70, 45), (256, 512, 96)])
def test_matmul_reference_within_bound(registry: KernelRegistry, m: int, k: int, n: int) -> None:
    spec = registry.get("matmul")
    a, b = f32(m, k, seed=3), f32(k, n, seed=4)
    (out,) = spec.reference([a, b], {})
    exact = np.einsum("ik,kj->ij", a.astype(np.float64), b.astype(np.float64))
    _, atol = spec.tolerance([a, b])
    # The reference alone uses at most half the documented gap (the device may use the other half).
    assert np.abs(out - exact).max() <= atol / 2


def naive_dft(x: np.ndarray) -> np.ndarray:
    n = x.shape[-1]
    k = np.arange(n)
    w = np.exp(-2j * np.pi * np.outer(k, k) / n)
    return x.astype(np.complex128) @ w.T


@pytest.mark.parametrize("shape", [(1,), (2,), (4,), (3, 8), (2, 5, 32), (256,), (4, 1024)])
def test_fft_reference_matches_naive_dft(registry: KernelRegistry, shape: tuple[int, ...]) -> None:
    spec = registry.get("fft")
    x = c64(*shape, seed=5)
    (out,) = spec.reference([x], {})
    exact = naive_dft(x)
    _, atol = spec.tolerance([x])
    assert out.dtype == C64 and out.shape == shape
    assert np.abs(out - exact).max() <= atol / 2


def emulate_device_fft(x: np.ndarray) -> np.ndarray:
    """ptx/fft.cu step by step in float32: bit-reversed load, radix-2 stages, rounded twiddles."""
    n = x.shape[-1]
    log2n = n.bit_length() - 1
    rev = np.array([int(format(i, f"0{log2n}b")[::-1], 2) if log2n else 0 for i in range(n)])
    buf = np.empty_like(x)
    buf[..., rev] = x
    re, im = buf.real.astype(F32), buf.imag.astype(F32)
    for s in range(1, log2n + 1):
        half = 1 << (s - 1)
        j = np.arange(n // 2)
        k = j & (half - 1)
        i0 = ((j >> (s - 1)) << s) + k
        i1 = i0 + half
        cs, sn = np.cos(-np.pi * k / half).astype(F32), np.sin(-np.pi * k / half).astype(F32)
        tr = cs * re[..., i1] - sn * im[..., i1]
        ti = cs * im[..., i1] + sn * re[..., i1]
        ur, ui = re[..., i0], im[..., i0]
        re[..., i0], im[..., i0], re[..., i1], im[..., i1] = ur + tr, ui + ti, ur - tr, ui - ti
    return re + 1j * im.astype(np.complex64)


@pytest.mark.parametrize("n", [1, 2, 8, 64, 512, FFT_MAX_N])
def test_fft_device_algorithm_meets_bound(registry: KernelRegistry, n: int) -> None:
    """The documented bound holds for the kernel's own algorithm, emulated in float32 on the CPU."""
    spec = registry.get("fft")
    x = c64(8, n, seed=n)
    device = emulate_device_fft(x)
    exact = np.fft.fft(x.astype(np.complex128), axis=-1)
    for row in range(x.shape[0]):
        bound = 1e-6 * max(1, n.bit_length() - 1) * np.linalg.norm(exact[row])
        assert np.linalg.norm(device[row] - exact[row]) <= bound / 2
    (ref,) = spec.reference([x], {})
    assert np.abs(device - ref).max() <= spec.tolerance([x])[1]


@pytest.mark.parametrize("n", [1, 5, 1024, 1025, 100_000, 1 << 20])
def test_reduce_sum_within_bound(registry: KernelRegistry, n: int) -> None:
    spec = registry.get("reduce_sum")
    x = f32(n, seed=6) + F32(0.25)  # a non-zero mean makes the sum grow, so rounding matters
    (out,) = spec.reference([x], {})
    exact = math.fsum(x.astype(np.float64))
    _, atol = spec.tolerance([x])
    assert out.shape == (1,) and out.dtype == F32
    assert abs(float(out[0]) - exact) <= atol / 2
    # The device order: ceil(n/1024) sequential terms per thread, then a tree over the 1024 partial sums.
    padded = np.zeros(-(-n // 1024) * 1024, F32)
    padded[:n] = x
    partial = np.zeros(1024, F32)
    for row in padded.reshape(-1, 1024):
        partial += row
    while partial.size > 1:
        partial = partial[: partial.size // 2] + partial[partial.size // 2 :]
    assert abs(float(partial[0]) - exact) <= atol / 2
    assert F32_EPS == 2.0**-24


@pytest.mark.parametrize(("n", "t"), [(1, 1), (7, 3), (3, 7), (1000, 64), (4097, 4096)])
def test_fir_reference_matches_explicit_loop(registry: KernelRegistry, n: int, t: int) -> None:
    spec = registry.get("fir")
    signal, taps = f32(n, seed=7), f32(t, seed=8)
    (out,) = spec.reference([signal, taps], {})
    exact = np.zeros(n)
    for j in range(min(t, n)):  # out[i] = sum_j taps[j] * signal[i - j]
        exact[j:] += np.float64(taps[j]) * signal[: n - j].astype(np.float64)
    _, atol = spec.tolerance([signal, taps])
    assert out.shape == (n,) and out.dtype == F32
    assert np.abs(out - exact).max() <= atol / 2


# -- launch plans ----------------------------------------------------------------------------------------------


def threads(plan: LaunchPlan) -> tuple[int, int, int]:
    return tuple(g * b for g, b in zip(plan.grid, plan.block, strict=True))  # type: ignore[return-value]


@pytest.mark.parametrize("n", [1, 255, 256, 257, 1_000_003])
def test_elementwise_plans_cover_every_element(registry: KernelRegistry, n: int) -> None:
    for name in ("vector_add", "saxpy", "scale_add"):
        spec = registry.get(name)
        params = spec.check([f32(1), f32(1)], {}).params
        plan = spec.plan([(n,), (n,)], params)
        assert threads(plan)[0] >= n > threads(plan)[0] - plan.block[0]
        assert plan.scalars[0] == ("i32", n) and plan.shared_bytes == 0
    plan = registry.get("saxpy").plan([(2, 3), (2, 3)], {"alpha": 0.5})
    assert plan.scalars == (("i32", 6), ("f32", 0.5))


@pytest.mark.parametrize(("m", "k", "n"), [(1, 1, 1), (16, 16, 16), (17, 3, 33), (1000, 5, 1)])
def test_matmul_plan_covers_output(registry: KernelRegistry, m: int, k: int, n: int) -> None:
    plan = registry.get("matmul").plan([(m, k), (k, n)], {})
    tx, ty, _ = threads(plan)
    assert tx >= n > tx - plan.block[0] and ty >= m > ty - plan.block[1]
    assert plan.block == (16, 16, 1) and plan.scalars == (("i32", m), ("i32", n), ("i32", k))


@pytest.mark.parametrize(("shape", "block"), [((1,), 1), ((2,), 1), ((3, 64), 32), ((2, 2, 1024), 512), ((4096,), 512)])
def test_fft_plan(registry: KernelRegistry, shape: tuple[int, ...], block: int) -> None:
    n = shape[-1]
    plan = registry.get("fft").plan([shape], {})
    assert plan.grid == (math.prod(shape[:-1]), 1, 1) and plan.block == (block, 1, 1)
    assert plan.shared_bytes == n * 8 <= 32 * 1024
    assert plan.scalars == (("i32", n), ("i32", int(math.log2(n))))


def test_reduce_and_fir_plans(registry: KernelRegistry) -> None:
    plan = registry.get("reduce_sum").plan([(3, 1000)], {})
    assert plan == LaunchPlan((1, 1, 1), (1024, 1, 1), 0, (("i32", 3000),))
    plan = registry.get("fir").plan([(1000,), (33,)], {})
    assert plan == LaunchPlan((4, 1, 1), (256, 1, 1), 33 * 4, (("i32", 1000), ("i32", 33)))
    assert registry.get("fir").plan([(10,), (FIR_MAX_TAPS,)], {}).shared_bytes == 16 * 1024


# -- user kernels ----------------------------------------------------------------------------------------------

GOOD_TOML = """\
name = "{name}"
entry = "{stem}"
inputs = [{{ name = "x", dtype = "float32" }}, {{ name = "y", dtype = "float32" }}]
params = [{{ name = "factor", kind = "f32", default = 1.0 }}]
output = {{ like = "x" }}
launch = {{ block = 128 }}
reference = "x * factor + y"
error_bound = "exact"
"""
GOOD_CU = (
    'extern "C" __global__ void {stem}(const float* x, const float* y, float* out, int n, float factor)\n'
    "{{ int i = blockIdx.x * blockDim.x + threadIdx.x; if (i < n) out[i] = x[i] * factor + y[i]; }}\n"
)


def write_user_kernel(directory: Path, name: str = "k", stem: str | None = None, toml: str | None = None) -> Path:
    stem = stem or name
    (directory / f"{stem}.cu").write_text(GOOD_CU.format(stem=stem))
    path = directory / f"{stem}.toml"
    path.write_text((toml if toml is not None else GOOD_TOML).format(name=name, stem=stem))
    return path


def required_param_kernel() -> UserKernelSpec:
    """A user kernel with a required f32 and an optional i32 param, built from a temporary directory."""
    import tempfile

    d = Path(tempfile.mkdtemp())
    try:
        toml = (
            GOOD_TOML.replace(
                '[{{ name = "factor", kind = "f32", default = 1.0 }}]',
                '[{{ name = "alpha", kind = "f32" }}, {{ name = "count", kind = "i32", default = 2 }}]',
            )
            .replace(
                'inputs = [{{ name = "x", dtype = "float32" }}, {{ name = "y", dtype = "float32" }}]',
                'inputs = [{{ name = "x", dtype = "float32" }}]',
            )
            .replace("x * factor + y", "x * alpha + count")
        )
        return load_user_kernel(write_user_kernel(d, name="req", toml=toml))
    finally:
        shutil.rmtree(d)


def test_example_user_kernel_matches_test_copy() -> None:
    for name in ("scale_add.cu", "scale_add.toml"):
        assert (EXAMPLE_DIR / name).read_text() == (USER_DIR / name).read_text()


def test_user_kernel_check_plan_reference(registry: KernelRegistry) -> None:
    spec = registry.get("scale_add")
    assert isinstance(spec, UserKernelSpec)
    assert (spec.entry, spec.source, spec.source_dir) == ("scale_add", "scale_add.cu", USER_DIR)
    x, y = f32(2, 3, seed=1), f32(2, 3, seed=2)
    checked = spec.check([x, y], {"factor": 3})
    assert checked.params == {"factor": 3.0}
    assert checked.outputs == (((2, 3), np.dtype(F32)),)
    plan = spec.plan([x.shape, y.shape], checked.params)
    assert plan == LaunchPlan((1, 1, 1), (256, 1, 1), 0, (("i32", 6), ("f32", 3.0)))
    (out,) = spec.reference([x, y], checked.params)
    assert out.dtype == F32
    np.testing.assert_array_equal(out, x * F32(3.0) + y)
    assert spec.tolerance([x, y]) == (0.0, 1.2e-38)


def test_user_kernel_params_and_output_dtype(tmp_path: Path) -> None:
    spec = required_param_kernel()
    assert [(p.name, p.kind, p.default) for p in spec.params] == [("alpha", "f32", None), ("count", "i32", 2)]
    (out,) = spec.reference([np.ones(3, F32)], {"alpha": 0.5, "count": 2})
    np.testing.assert_array_equal(out, np.full(3, 2.5, F32))
    assert spec.plan([(3,)], {"alpha": 0.5, "count": 2}).scalars == (("i32", 3), ("f32", 0.5), ("i32", 2))
    toml = GOOD_TOML.replace('{{ like = "x" }}', '{{ like = "y", dtype = "float64" }}').replace(
        "x * factor + y", "factor"
    )
    spec = load_user_kernel(write_user_kernel(tmp_path, toml=toml))
    (out,) = spec.reference([f32(4), f32(4)], {"factor": 2.0})
    assert spec.check([f32(4), f32(4)], {}).outputs == (((4,), np.dtype(np.float64)),)
    np.testing.assert_array_equal(out, np.full(4, 2.0))  # a scalar result is broadcast to the output shape
    assert spec.tolerance([]) == (1e-5, 1e-6)  # the documented defaults


BAD_TOMLS = [
    # (replace this, with that, error regex)
    ('name = "{name}"\n', "", r"field 'name' is required"),
    ('name = "{name}"', 'name = "two words"', r"field 'name' must be an identifier"),
    ('name = "{name}"', "name = 3", r"field 'name' must be str, got int"),
    ('entry = "{stem}"', 'entry = "missing"', r"field 'entry' 'missing' is not defined in k.cu"),
    ("error_bound", "colour = 1\nerror_bound", r"field 'colour' unknown key"),
    ('dtype = "float32" }}, {{', 'dtype = "object" }}, {{', r"field 'inputs\[0\].dtype' dtype 'object' is not supp"),
    ('{{ name = "x", dtype = "float32" }}', '{{ name = "x" }}', r"field 'inputs\[0\].dtype' is required"),
    ('{{ name = "x", dtype = "float32" }}', '{{ name = "x", dtype = "float32", size = 3 }}', r"inputs\[0\].size"),
    ('[{{ name = "x", dtype = "float32" }}, {{ name = "y", dtype = "float32" }}]', "[]", r"at least one input"),
    ('{{ name = "y", dtype', '{{ name = "x", dtype', r"field 'inputs' name 'x' is used twice"),
    ('name = "factor"', 'name = "np"', r"field 'params' name 'np'"),
    ('kind = "f32"', 'kind = "f64"', r"field 'params\[0\].kind' must be 'f32' or 'i32'"),
    ("default = 1.0", 'default = "1"', r"field 'params\[0\].default' must be int or float, got str"),
    ("default = 1.0", "default = true", r"field 'params\[0\].default' must be int or float, got bool"),
    ("default = 1.0", "default = nan", r"field 'params\[0\].default' must be finite"),
    ('kind = "f32", default = 1.0', 'kind = "i32", default = 1.5', r"field 'params\[0\].default' must be int"),
    ('like = "x"', 'like = "z"', r"field 'output.like' names no input: 'z'"),
    ('output = {{ like = "x" }}\n', "", r"field 'output' is required"),
    ("block = 128", "block = 2048", r"field 'launch.block' must be 1..1024"),
    ("block = 128", "block = true", r"field 'launch.block' must be int, got bool"),
    ("block = 128", "grid = 1", r"field 'launch.grid' unknown key"),
    ("x * factor + y", "x * factor + z", r"field 'reference' uses unknown name 'z'"),
    ("x * factor + y", "x * (factor", r"field 'reference' is not a Python expression"),
    ("x * factor + y", "x.__class__", r"field 'reference' uses private attribute '__class__'"),
    ("x * factor + y", "open('f')", r"field 'reference' uses unknown name 'open'"),
    ("x * factor + y", "np.nope(x)", r"field 'reference' fails on sample inputs: AttributeError"),
    ("x * factor + y", "x[:2]", r"field 'reference' fails on sample inputs"),
    ('error_bound = "exact"', 'error_bound = " "', r"field 'error_bound' must not be empty"),
    ('error_bound = "exact"', 'error_bound = "exact"\ntolerance = {{ rtol = -1 }}', r"'tolerance.rtol' must be fi"),
    ('error_bound = "exact"', "error_bound = [", r"not valid TOML"),
]


@pytest.mark.parametrize(("old", "new", "error"), BAD_TOMLS)
def test_bad_user_toml_is_refused_with_file_and_field(tmp_path: Path, old: str, new: str, error: str) -> None:
    assert old in GOOD_TOML
    path = write_user_kernel(tmp_path, toml=GOOD_TOML.replace(old, new))
    with pytest.raises(ValueError, match=error) as exc:
        load_user_kernel(path)
    assert str(path) in str(exc.value)


def test_user_dir_errors(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        load_user_kernels(tmp_path / "missing")
    (tmp_path / "k.toml").write_text(GOOD_TOML.format(name="k", stem="k"))
    with pytest.raises(ValueError, match=r"field 'entry' needs the source file k.cu"):
        load_user_kernels(tmp_path)
    write_user_kernel(tmp_path, name="same", stem="a")
    write_user_kernel(tmp_path, name="same", stem="b")
    (tmp_path / "k.toml").unlink()
    with pytest.raises(ValueError, match=r"b.toml: field 'name' 'same' is already defined by .*a.toml"):
        load_user_kernels(tmp_path)
    (tmp_path / "b.toml").unlink()
    with caplog.at_level("WARNING"):
        assert [s.name for s in load_user_kernels(tmp_path)] == ["same"]
    assert "b.cu has no b.toml sidecar" in caplog.text


# -- GPU: every builtin launched for real against its reference ---------------------------------------------------


def _cuda_device():
    try:
        from cuda.bindings import driver

        (err,) = driver.cuInit(0)
        if err != driver.CUresult.CUDA_SUCCESS:
            return None
        err, count = driver.cuDeviceGetCount()
    except Exception:  # no cuda-python, or no libcuda: cuda.bindings raises on first use
        return None
    return driver if err == driver.CUresult.CUDA_SUCCESS and count > 0 else None


@pytest.mark.gpu
def test_builtins_on_gpu_match_reference_within_tolerance(registry: KernelRegistry) -> None:
    """A minimal driver-API launcher (independent of the engine) runs each kernel on sample and edge inputs."""
    import ctypes

    driver = _cuda_device()
    if driver is None:
        pytest.skip("no CUDA driver or device")
    from cuda.bindings import nvrtc

    def ok(result):
        err, *values = result if isinstance(result, tuple) else (result,)
        assert int(err) == 0, f"{err}"
        return values[0] if len(values) == 1 else values

    device = ok(driver.cuDeviceGet(0))
    major = ok(
        driver.cuDeviceGetAttribute(driver.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device)
    )
    minor = ok(
        driver.cuDeviceGetAttribute(driver.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device)
    )
    context = ok(driver.cuDevicePrimaryCtxRetain(device))
    ok(driver.cuCtxSetCurrent(context))
    functions = {}
    for spec in registry:
        prog = ok(nvrtc.nvrtcCreateProgram(spec.source_path.read_bytes(), spec.source.encode(), 0, [], []))
        ok(nvrtc.nvrtcCompileProgram(prog, 1, [f"--gpu-architecture=sm_{major}{minor}".encode()]))
        cubin = bytearray(ok(nvrtc.nvrtcGetCUBINSize(prog)))
        ok(nvrtc.nvrtcGetCUBIN(prog, cubin))
        module = ok(driver.cuModuleLoadData(bytes(cubin)))
        functions[spec.name] = ok(driver.cuModuleGetFunction(module, spec.entry.encode()))

    def launch(spec: KernelSpec, inputs: list[np.ndarray], params: dict) -> list[np.ndarray]:
        checked = spec.check(inputs, params)
        plan = spec.plan([a.shape for a in inputs], checked.params)
        outputs = [np.empty(shape, dtype) for shape, dtype in checked.outputs]
        pointers = []
        for arr in [*inputs, *outputs]:
            ptr = ok(driver.cuMemAlloc(max(arr.nbytes, 1)))
            pointers.append(ptr)
        for arr, ptr in zip(inputs, pointers[: len(inputs)], strict=True):
            ok(driver.cuMemcpyHtoD(ptr, np.ascontiguousarray(arr).ctypes.data, arr.nbytes))
        args = [ctypes.c_uint64(int(p)) for p in pointers]
        args += [ctypes.c_int32(v) if kind == "i32" else ctypes.c_float(v) for kind, v in plan.scalars]
        argv = (ctypes.c_void_p * len(args))(*[ctypes.addressof(a) for a in args])
        ok(driver.cuLaunchKernel(functions[spec.name], *plan.grid, *plan.block, plan.shared_bytes, 0, argv, 0))
        ok(driver.cuCtxSynchronize())
        for arr, ptr in zip(outputs, pointers[len(inputs) :], strict=True):
            ok(driver.cuMemcpyDtoH(arr.ctypes.data, ptr, arr.nbytes))
        for ptr in pointers:
            ok(driver.cuMemFree(ptr))
        return outputs

    rng = np.random.default_rng(42)
    cases = [(spec, *spec.sample_inputs(rng, size)) for spec in registry for size in (1, 3, 1000, 70_000)]
    cases += [
        (registry.get("matmul"), [f32(17, 33, seed=1), f32(33, 5, seed=2)], {}),
        (registry.get("matmul"), [f32(1, 300, seed=1), f32(300, 1, seed=2)], {}),
        (registry.get("fft"), [c64(3, FFT_MAX_N, seed=3)], {}),
        (registry.get("fft"), [c64(5, 2, 8, seed=3)], {}),
        (registry.get("fir"), [f32(5000, seed=4), f32(FIR_MAX_TAPS, seed=5)], {}),
        (registry.get("fir"), [f32(3, seed=4), f32(10, seed=5)], {}),
        (registry.get("reduce_sum"), [f32(3_000_001, seed=6)], {}),
    ]
    try:
        for spec, inputs, params in cases:
            (got,) = launch(spec, inputs, params)
            (want,) = spec.reference(inputs, spec.check(inputs, params).params)
            rtol, atol = spec.tolerance(inputs, params)
            label = f"{spec.name} {[a.shape for a in inputs]}"
            assert got.shape == want.shape and got.dtype == want.dtype, label
            np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=label)
    finally:
        ok(driver.cuDevicePrimaryCtxRelease(device))
