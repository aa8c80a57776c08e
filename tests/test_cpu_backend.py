"""The CPU backend runs the registry's numpy references through the same lane contract as CUDA."""

from __future__ import annotations

import numpy as np
import pytest

from zmqrt.backends import make_backend
from zmqrt.backends.cpu import CpuBackend
from zmqrt.errors import Code, TaskError
from zmqrt.kernels.registry import load_registry


@pytest.fixture(scope="module")
def backend():
    with CpuBackend(load_registry(), lanes=2, max_task_bytes=64 * 1024) as b:
        yield b


def test_auto_without_driver_picks_cpu_and_says_so(caplog):
    caplog.set_level("WARNING", logger="zmqrt")
    b = make_backend("auto", load_registry())
    try:
        assert b.name == "cpu"
        assert sum("using the CPU backend" in r.getMessage() for r in caplog.records) == 1
    finally:
        b.close()


def test_bad_backend_name():
    with pytest.raises(ValueError, match="auto, cuda or cpu"):
        make_backend("tpu", load_registry())


@pytest.mark.parametrize("name", ["vector_add", "saxpy", "matmul", "fft", "reduce_sum", "fir"])
def test_outputs_equal_reference_on_fresh_data(backend, name):
    spec = backend.registry.get(name)
    rng = np.random.default_rng()
    inputs, params = spec.sample_inputs(rng, 300)
    outputs, times = backend.run(name, inputs, params)
    want = spec.reference(inputs, spec.check(inputs, params).params)
    assert len(outputs) == len(want)
    for got, ref in zip(outputs, want, strict=True):
        assert got.dtype == ref.dtype and got.shape == ref.shape
        np.testing.assert_array_equal(got, ref)
    assert times.kernel_ns > 0


def test_vector_add_exact(backend):
    a = np.arange(5, dtype=np.float32)
    b = np.full(5, 0.5, dtype=np.float32)
    (out,), _ = backend.run("vector_add", [a, b])
    np.testing.assert_array_equal(out, np.array([0.5, 1.5, 2.5, 3.5, 4.5], np.float32))


def test_too_large_refused(backend):
    big = np.zeros(64 * 1024, np.float32)  # 256 KiB > 64 KiB slot
    with pytest.raises(TaskError) as info:
        backend.run("vector_add", [big, big])
    assert info.value.code is Code.TOO_LARGE
    # the backend keeps working afterwards
    (out,), _ = backend.run("vector_add", [np.ones(3, np.float32), np.ones(3, np.float32)])
    np.testing.assert_array_equal(out, np.full(3, 2, np.float32))
