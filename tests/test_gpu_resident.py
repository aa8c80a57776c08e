"""The persistent-kernel floor (bench/persistent_floor.py) computes right: every task on fresh random inputs with
the output poisoned first, across many requests, and the kernel stops when asked.

Needs a CUDA device (marker ``gpu``); skipped cleanly without one.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.gpu_support import requires_cuda

pytestmark = [pytest.mark.gpu, requires_cuda]


def test_resident_kernel_answers_each_request_with_its_own_sum():
    from bench.persistent_floor import NEL, ResidentVadd, verify

    rng = np.random.default_rng()
    with ResidentVadd(timeout_s=5.0) as res:
        assert verify(res, 500, rng) == 0
        a = rng.standard_normal(NEL).astype(np.float32)
        b = rng.standard_normal(NEL).astype(np.float32)
        res.c[...] = np.nan
        np.testing.assert_allclose(res.run(a, b), a + b, rtol=1e-6)
        assert res.seq == 501
    res.close()  # idempotent


def _backend(resident: bool, lanes: int = 2):
    from zmqrt.backends.cuda import CudaBackend
    from zmqrt.kernels.registry import load_registry

    return CudaBackend(load_registry(), lanes=lanes, max_task_bytes=1 << 18, resident=resident)


def _run(backend, lane, spec, inputs, params, timed=False):
    checked = spec.check(inputs, params)
    backend.submit(lane, spec, inputs, checked, timed)
    backend.wait(lane)
    return [np.array(o, copy=True) for o in backend.collect(lane)]


def test_resident_lanes_match_numpy_and_the_launched_kernels_bit_for_bit():
    """One backend only: a driver call that allocates or loads while resident blocks run may wait for them."""
    from zmqrt.backends.resident import MAX_ELEMENTS

    rng = np.random.default_rng()
    with _backend(True) as be:
        registry = be.registry
        for name, params in (("vector_add", {}), ("saxpy", {"alpha": 1.7})):
            spec = registry.get(name)
            for shape in ((1,), (100,), (256,), (16, 64), (MAX_ELEMENTS,), (MAX_ELEMENTS + 1,)):
                for lane in (0, 1):
                    inputs = [rng.standard_normal(shape).astype(np.float32) for _ in range(2)]
                    for r in be._resident:
                        r._out[:] = np.nan  # poisoned: a stale or skipped output cannot pass
                    got = _run(be, lane, spec, inputs, params)
                    assert be._on_resident[lane] == (inputs[0].size <= MAX_ELEMENTS), (name, shape)
                    want = spec.reference(inputs, spec.check(inputs, params).params)
                    np.testing.assert_array_equal(got[0], want[0])
                    launched = _run(be, lane, spec, inputs, params, timed=True)  # the launched kernel, with events
                    assert not be._on_resident[lane]
                    np.testing.assert_array_equal(got[0], launched[0])
                    assert got[0].shape == shape


def test_timed_and_other_kernels_take_the_launched_path_on_the_same_lane():
    rng = np.random.default_rng()
    with _backend(True, lanes=1) as be:
        va, fft = be.registry.get("vector_add"), be.registry.get("fft")
        for i in range(20):
            inputs = [rng.standard_normal(256).astype(np.float32) for _ in range(2)]
            timed = i % 3 == 0
            got = _run(be, 0, va, inputs, {}, timed=timed)
            assert be._on_resident[0] is (not timed)
            np.testing.assert_array_equal(got[0], inputs[0] + inputs[1])
            assert (be.stage_times(0) is None) is (not timed)
            x = (rng.standard_normal(128) + 1j * rng.standard_normal(128)).astype(np.complex64)
            out = _run(be, 0, fft, [x], {})
            assert not be._on_resident[0]
            np.testing.assert_allclose(out[0], np.fft.fft(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("resident", [True, False])
def test_a_warm_copy_starts_nothing_and_the_next_task_is_its_own(resident):
    """``warm`` (the server's cache warming) copies inputs into an idle lane's slot and starts nothing: the resident
    block's done number and the lane's state stay as they were, and the next task's output is that task's (poisoned
    first), not the warm copy's."""
    rng = np.random.default_rng()
    with _backend(resident, lanes=2) as be:
        spec = be.registry.get("vector_add")
        for lane in (0, 1):
            first = [rng.standard_normal(256).astype(np.float32) for _ in range(2)]
            checked = spec.check(first, {})  # one form object, as the decoder shares it: warm finds the lane's launch
            be.submit(lane, spec, first, checked, False)
            be.wait(lane)
            np.testing.assert_array_equal(be.collect(lane)[0], first[0] + first[1])
            done = be._resident[lane].done_number if resident else None
            seq = be._resident[lane].seq if resident else None
            for _ in range(50):
                warm = [rng.standard_normal(256).astype(np.float32) for _ in range(2)]
                be.warm(lane, spec, warm, checked)
            if resident:
                assert be._resident[lane].done_number == done and be._resident[lane].seq == seq
            else:
                assert not be._lanes[lane].busy
            assert be.poll(lane)  # still idle: nothing was started
            nxt = [rng.standard_normal(256).astype(np.float32) for _ in range(2)]
            for out in be.collect(lane):
                out[...] = np.nan  # poisoned: a stale output cannot pass
            be.submit(lane, spec, nxt, checked, False)
            be.wait(lane)
            np.testing.assert_array_equal(be.collect(lane)[0], nxt[0] + nxt[1])


def test_server_with_resident_lanes_end_to_end(endpoint):
    from ingest.client import Client
    from tests.server_support import running_server
    from zmqrt.kernels.registry import load_registry

    rng = np.random.default_rng()
    with running_server(endpoint(), backend="cuda", resident=True, lanes=2, stage_timing_every=4) as server, \
            Client(server.receiver.endpoint, timeout_s=10) as client:
        assert "resident lanes" in server.backend.description
        registry = load_registry()
        for i in range(60):
            spec = registry.get(("vector_add", "saxpy", "matmul")[i % 3])
            inputs, params = spec.sample_inputs(rng, 300)
            res = client.call(spec.name, *inputs, params=params)
            assert res.status.value == "ok", (spec.name, res.code, res.message)
            want = spec.reference(inputs, spec.check(inputs, params).params)
            np.testing.assert_allclose(res.outputs[0], want[0], rtol=1e-5, atol=1e-5)


def test_cold_paths_pause_the_blocks_without_losing_a_task_in_flight():
    """Graph instantiation waits for running kernels (measured on the H200), so a lane's capture stops the resident
    blocks and starts them again. A resident task in flight on another lane is served before its block stops, and
    a restarted block does not serve the last request twice."""
    rng = np.random.default_rng()
    with _backend(True, lanes=2) as be:
        va, fft = be.registry.get("vector_add"), be.registry.get("fft")
        for n in (64, 128, 256, 512, 1024):  # each new fft shape is captured on its second and third use
            for _ in range(3):
                a, b = (rng.standard_normal(n).astype(np.float32) for _ in range(2))
                be._resident[1]._out[:] = np.nan
                be.submit(1, va, [a, b], va.check([a, b], {}), False)  # in flight on lane 1's block
                assert be._on_resident[1]
                x = (rng.standard_normal(n) + 1j * rng.standard_normal(n)).astype(np.complex64)
                got = _run(be, 0, fft, [x], {})
                np.testing.assert_allclose(got[0], np.fft.fft(x), rtol=1e-3, atol=1e-3)
                be.wait(1)
                np.testing.assert_array_equal(be.collect(1)[0], a + b)
        assert be.pauses >= 5
        done = be._resident[1].done_number
        assert done == be._resident[1].seq  # nothing served twice or skipped


def _matched(registry, kernel: str, inputs, params):
    """A frame of this task and its byte-template match (``TaskDecoder.match``): ``(frame, rec, values)``."""
    from ingest.fastdecode import TaskDecoder
    from ingest.protocol import Limits, encode_task

    dec = TaskDecoder(registry, Limits(max_task_bytes=1 << 18))
    for i in range(3):  # the form's first decodes build its template
        dec.decode(encode_task(f"w{i}", kernel, inputs, params, deadline_us=500.0), 0, i)
    frame = encode_task("t", kernel, inputs, params, deadline_us=500.0)
    rec, values = dec.match(frame, 0)
    return frame, rec, values


def test_tasks_copied_from_their_frames_match_numpy_and_the_launched_kernels_bit_for_bit():
    """``submit_frame`` (the server's resident path: the inputs' bytes copied from the task frame, no views) on fresh
    random inputs with the outputs poisoned first; a timed task or a too-large one is not taken; ``warm_frame``
    starts nothing and the next task's output is its own."""
    from zmqrt.backends.resident import MAX_ELEMENTS

    rng = np.random.default_rng()
    with _backend(True) as be:
        for name, params in (("vector_add", {}), ("saxpy", {"alpha": -0.37})):
            spec = be.registry.get(name)
            for shape in ((1,), (256,), (16, 64), (MAX_ELEMENTS,), (MAX_ELEMENTS + 1,)):
                for lane in (0, 1):
                    inputs = [rng.standard_normal(shape).astype(np.float32) for _ in range(2)]
                    frame, rec, values = _matched(be.registry, name, inputs, params)
                    checked = rec[0].checked
                    assert not be.submit_frame(lane, spec, frame, values[6], rec[4], checked, True)  # timed
                    for r in be._resident:
                        r._out[:] = np.nan  # poisoned: a stale or skipped output cannot pass
                    took = be.submit_frame(lane, spec, frame, values[6], rec[4], checked, False)
                    assert took == (inputs[0].size <= MAX_ELEMENTS), (name, shape)
                    if not took:
                        assert not be.warm_frame(lane, spec, frame, values[6], rec[4], checked)
                        continue
                    be.wait(lane)
                    got = np.array(be.collect(lane)[0], copy=True)
                    assert got.shape == shape
                    want = spec.reference(inputs, spec.check(inputs, params).params)
                    np.testing.assert_array_equal(got, want[0])
                    launched = _run(be, lane, spec, inputs, params, timed=True)
                    np.testing.assert_array_equal(got, launched[0])
                    # a warm copy of other inputs: nothing starts, and the next task's output is its own
                    done, seq = be._resident[lane].done_number, be._resident[lane].seq
                    other = [rng.standard_normal(shape).astype(np.float32) for _ in range(2)]
                    f2, rec2, values2 = _matched(be.registry, name, other, params)
                    assert be.warm_frame(lane, spec, f2, values2[6], rec2[4], rec2[0].checked)
                    assert (be._resident[lane].done_number, be._resident[lane].seq) == (done, seq)
                    for r in be._resident:
                        r._out[:] = np.nan
                    assert be.submit_frame(lane, spec, frame, values[6], rec[4], checked, False)
                    be.wait(lane)
                    np.testing.assert_array_equal(be.collect(lane)[0], want[0])
