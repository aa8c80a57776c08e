"""Deadline-aware batching on the GPU: queued tasks of one form run as one launch of stacked inputs, through the
plain launch and then the captured graph of that batch shape, and each task gets exactly its own rows.

Needs a CUDA device (marker ``gpu``); skipped cleanly without one. The CPU versions are in test_server_e2e.py.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from ingest.client import Client
from tests.gpu_support import requires_cuda
from tests.server_support import running_server
from zmqrt.kernels.registry import load_registry

pytestmark = [pytest.mark.gpu, requires_cuda]


def _gated_cuda_backend():
    from zmqrt.backends.cuda import CudaBackend

    class GatedCudaBackend(CudaBackend):
        """Lanes report busy until the test opens the gate: a deterministic backlog behind the first task."""

        def __init__(self, *a, **kw) -> None:
            super().__init__(*a, **kw)
            self.gate = threading.Event()

        def poll(self, lane: int) -> bool:
            return self.gate.is_set() and super().poll(lane)

    return GatedCudaBackend(load_registry(), lanes=1, max_task_bytes=1 << 16)


@pytest.mark.parametrize("kernel", ["vector_add", "fft"])
def test_batched_launches_give_every_task_its_own_rows(ipc_endpoint, kernel):
    backend = _gated_cuda_backend()
    rng = np.random.default_rng()
    with running_server(ipc_endpoint(), lanes=1, batch_max=32, bulk=False, backend_instance=backend) as server, \
            Client(server.receiver.endpoint, timeout_s=60) as c:
        for _ in range(3):  # the plain launch, then (third use of the shape) its captured graph
            backend.gate.clear()
            backend.lane(0).h_out.view[...] = 0xFF  # poison: NaN in every float output slot
            if kernel == "vector_add":
                args = [(rng.standard_normal(256).astype(np.float32), rng.standard_normal(256).astype(np.float32))
                        for _ in range(11)]
                want = [a + b for a, b in args]
            else:
                args = [((rng.standard_normal(128) + 1j * rng.standard_normal(128)).astype(np.complex64),)
                        for _ in range(11)]
                want = [np.fft.fft(x) for (x,) in args]
            frames, batches, batched = server.receiver.frames, server.batches, server.batched_tasks
            futs = [c.submit(kernel, *a) for a in args]
            deadline = time.monotonic() + 30
            while server.receiver.frames < frames + len(args) and time.monotonic() < deadline:
                time.sleep(0.005)
            backend.gate.set()
            for w, f in zip(want, futs, strict=True):
                res = f.result(60)
                assert res.ok, (res.code, res.message)
                tol = 1e-6 if kernel == "vector_add" else 1e-4 * float(np.abs(w).max())
                np.testing.assert_allclose(res.outputs[0], w, rtol=1e-5, atol=tol)
            assert server.batches == batches + 1 and server.batched_tasks == batched + 10


@pytest.mark.parametrize("resident", [False, True])
def test_a_backlog_read_as_one_batch_gives_every_task_its_own_rows(tmp_path, resident):
    # The bulk path (ingest/bulk.py): a backlog of one form decoded as one batch, run as one launch (a resident
    # lane takes it while it fits), each result encoded from its rows. Outputs poisoned before every round.
    import zmq

    from ingest.protocol import decode_result, encode_task
    from zmqrt.backends.cuda import CudaBackend
    from zmqrt.config import ServerConfig
    from zmqrt.server import Server

    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    reply = f"ipc://{tmp_path}/reply"
    pull.bind(reply)
    backend = CudaBackend(load_registry(), lanes=2, max_task_bytes=1 << 20, resident=resident)
    server = Server(ServerConfig(backend="cuda", ingest=f"ipc://{tmp_path}/in", lanes=2, calibrate=False,
                                 batch_max=64, resident=resident), backend=backend, ctx=ctx)
    try:
        rng = np.random.default_rng()
        for round_ in range(4):  # plain launches, then the captured graph of the batch shape
            for lane in range(2):
                backend.lane(lane).h_out.view[...] = 0xFF
                if resident:
                    backend._resident[lane]._out[...] = np.nan
            n = 40 if round_ < 3 else 16  # 16 x 256 elements: on the resident block
            a = rng.standard_normal((n, 256)).astype(np.float32)
            b = rng.standard_normal((n, 256)).astype(np.float32)
            frames = [encode_task(1000 * (round_ + 1) + i, "vector_add", [a[i], b[i]], reply_to=reply)
                      for i in range(n)]
            start = 0
            if round_ == 0:  # the form's first frames: validated, then its byte template
                for f in frames[:3]:
                    server._accept(f)
                    while server._busy_lanes:
                        server._poll_lanes()
                start = 3
            before = server.bulk_tasks
            server._accept_backlog(frames[start:], [time.monotonic_ns()] * (n - start))
            assert server.bulk_tasks == before + n - start
            while server._busy_lanes:
                server._poll_lanes()
            got = {}
            while len(got) < n and pull.poll(5000):
                res = decode_result(pull.recv())
                got[res.id] = res
            assert len(got) == n
            for i in range(n):
                res = got[1000 * (round_ + 1) + i]
                assert res.ok, (res.code, res.message)
                np.testing.assert_allclose(res.outputs[0], a[i] + b[i], rtol=1e-6, atol=1e-6)
        # Batches of 37 and 40 rows ran as launches of their size class, 48 rows (zmqrt.server.rows_class).
        shapes = {key[1][0][0] for lane in range(2) for key in backend.lane(lane)._prepared}
        assert (48, 256) in shapes and not shapes & {(37, 256), (40, 256)}
    finally:
        server.close()
        pull.close(0)
        ctx.term()
