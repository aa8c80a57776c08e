"""GPU: every kernel against its numpy reference on fresh random data, outputs poisoned first.

Marked ``gpu``; skipped cleanly where no CUDA driver or device answers.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.gpu_support import requires_cuda

pytestmark = [pytest.mark.gpu, requires_cuda]

KERNELS = ["vector_add", "saxpy", "matmul", "fft", "reduce_sum", "fir"]
# 1, sizes that are not multiples of any block or tile size, and large.
SIZES = [1, 37, 1000, 4099, 1 << 20]


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    from zmqrt.backends.cuda import CudaBackend
    from zmqrt.compiler import KernelCache
    from zmqrt.kernels.registry import load_registry

    cache = KernelCache(tmp_path_factory.mktemp("kcache"))
    with CudaBackend(load_registry(), lanes=2, max_task_bytes=32 << 20, cache=cache) as b:
        yield b


def poison(backend, lane: int) -> None:
    ln = backend.lane(lane)
    ln.d_out.fill_bytes(0xFF)  # 0xFFFFFFFF is a NaN in float32: an unwritten output cannot pass
    ln.h_out.view[:] = 0xFF


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", KERNELS)
def test_kernel_matches_reference(backend, name, size):
    spec = backend.registry.get(name)
    rng = np.random.default_rng()
    inputs, params = spec.sample_inputs(rng, size)
    checked = spec.check(inputs, params)
    want = spec.reference(inputs, checked.params)
    poison(backend, 0)
    outputs, times = backend.run(name, inputs, params, lane=0)
    rtol, atol = spec.tolerance(inputs)
    for got, ref in zip(outputs, want, strict=True):
        assert got.shape == ref.shape and got.dtype == ref.dtype
        assert np.all(np.isfinite(got)), f"{name}: unwritten (poisoned) output elements"
        np.testing.assert_allclose(got, ref, rtol=rtol, atol=atol, err_msg=f"{name} size {size}: {spec.error_bound}")
    assert times.kernel_ns > 0 and times.h2d_ns > 0 and times.d2h_ns > 0


def test_two_lanes_in_flight(backend):
    spec = backend.registry.get("matmul")
    rng = np.random.default_rng()
    jobs = []
    for lane in (0, 1):
        inputs, params = spec.sample_inputs(rng, 20000)
        checked = spec.check(inputs, params)
        poison(backend, lane)
        backend.submit(lane, spec, inputs, checked)
        jobs.append((lane, spec.reference(inputs, checked.params), spec.tolerance(inputs)))
    for lane, want, (rtol, atol) in jobs:
        while not backend.poll(lane):
            pass
        np.testing.assert_allclose(backend.collect(lane)[0], want[0], rtol=rtol, atol=atol)


def test_too_large_is_refused_and_backend_survives(backend):
    from zmqrt.errors import Code, TaskError

    big = np.zeros((32 << 20) // 4 + 1024, np.float32)
    with pytest.raises(TaskError) as info:
        backend.run("vector_add", [big, big])
    assert info.value.code is Code.TOO_LARGE
    (out,), _ = backend.run("vector_add", [np.ones(3, np.float32), np.ones(3, np.float32)])
    np.testing.assert_array_equal(out, np.full(3, 2, np.float32))


def test_failing_driver_call_names_the_call(backend):
    from zmqrt.cuda import CudaError, CudaOutOfMemory, DeviceBuffer, Module

    with pytest.raises(CudaOutOfMemory) as info:
        DeviceBuffer(1 << 50)
    assert info.value.call == "cuMemAlloc" and "CUDA_ERROR_OUT_OF_MEMORY" in str(info.value)
    with pytest.raises(CudaError) as info:
        Module(b"this is not a module\0", "junk")
    assert "cuModuleLoadData(junk)" in str(info.value)


def test_stream_priority_checked(backend):
    from zmqrt.cuda import Stream

    least, greatest = backend.context.stream_priority_range()
    with pytest.raises(ValueError, match="outside the device range"):
        Stream(least + 1)
    with Stream(greatest) as s:
        s.synchronize()
    assert s.closed


def test_resources_released():
    from cuda.bindings import driver as cu

    from zmqrt.backends.cuda import CudaBackend
    from zmqrt.cuda import check
    from zmqrt.kernels.registry import load_registry

    def free_bytes():
        return check(cu.cuMemGetInfo(), "cuMemGetInfo")[0]

    registry = load_registry()
    with CudaBackend(registry, lanes=1, max_task_bytes=1 << 20):
        pass
    baseline = free_bytes()
    for _ in range(3):
        b = CudaBackend(registry, lanes=4, max_task_bytes=64 << 20)
        during = free_bytes()
        b.close()
        b.close()  # idempotent
        assert baseline - during >= 4 * 2 * (64 << 20)
    assert abs(free_bytes() - baseline) < (8 << 20)


def test_graph_capture_replays_lane_work(backend):
    from zmqrt.cuda import Graph

    spec = backend.registry.get("vector_add")
    ln = backend.lane(1)
    a = np.random.default_rng().standard_normal(256).astype(np.float32)
    b = np.random.default_rng().standard_normal(256).astype(np.float32)
    checked = spec.check([a, b], {})
    backend.submit(1, spec, [a, b], checked)  # prepares the launch (args, views) for this shape on lane 1
    ln.wait()
    prep = ln._current
    with Graph.capture(ln.stream) as cap:
        from cuda.bindings import driver as cu
        cu.cuMemcpyHtoDAsync(ln.d_in.handle, ln.h_in.ptr, 2048, ln.stream.handle)
        cu.cuLaunchKernel(prep.func, *prep.grid, *prep.block, prep.shared_bytes, ln.stream.handle,
                          prep.args.address, 0)
        cu.cuMemcpyDtoHAsync(ln.h_out.ptr, ln.d_out.handle, 1024, ln.stream.handle)
    graph = cap.graph
    with graph:
        for _ in range(3):
            a2 = np.random.default_rng().standard_normal(256).astype(np.float32)
            ln.h_in.view[:1024] = a2.view(np.uint8)
            ln.h_out.view[:1024] = 0xFF
            graph.launch(ln.stream)
            ln.stream.synchronize()
            np.testing.assert_allclose(ln.h_out.view[:1024].view(np.float32), a2 + b, rtol=1e-6)


@pytest.mark.parametrize("name", KERNELS)
def test_untimed_tasks_replay_a_graph_with_fresh_data(backend, name):
    """Untimed repeats of one shape go through the lane's captured graph: each must see its own inputs."""
    spec = backend.registry.get(name)
    rng = np.random.default_rng()
    params = spec.sample_inputs(rng, 1000)[1]  # one set of scalars: they are part of the graph's shape key
    for i in range(4):
        inputs = spec.sample_inputs(rng, 1000)[0]
        checked = spec.check(inputs, params)
        want = spec.reference(inputs, checked.params)
        poison(backend, 1)
        backend.submit(1, spec, inputs, checked, False)
        backend.wait(1)
        rtol, atol = spec.tolerance(inputs)
        for got, ref in zip(backend.collect(1), want, strict=True):
            assert np.all(np.isfinite(got)), f"{name} replay {i}: unwritten (poisoned) output elements"
            np.testing.assert_allclose(got, ref, rtol=rtol, atol=atol, err_msg=f"{name} replay {i}")
    assert backend.lane(1)._current.graph is not None, "a repeated untimed shape should be a graph by now"
