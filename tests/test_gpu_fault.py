"""GPU fault injection: a kernel that executes ``__trap()`` poisons the CUDA context; the supervised engine answers
the task GPU_FAULT, exits ``EXIT_GPU_FAULT``, and a fresh engine (fresh context) serves the next task.

Needs a CUDA device (marker ``gpu``); skipped cleanly without one. The CPU version is tests/test_supervisor.py.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ingest.client import Client
from tests.gpu_support import requires_cuda
from zmqrt.config import ServerConfig
from zmqrt.supervisor import Supervisor

pytestmark = [pytest.mark.gpu, requires_cuda]

FAULT_KERNELS = str(Path(__file__).resolve().parent / "fault_kernels")


def _vector_add_ok(client: Client) -> None:
    rng = np.random.default_rng()
    a, b = rng.standard_normal(1000).astype(np.float32), rng.standard_normal(1000).astype(np.float32)
    res = client.call("vector_add", a, b, timeout_s=120)
    assert res.ok, (res.code, res.message)
    np.testing.assert_allclose(res.outputs[0], a + b, rtol=1e-6)


@pytest.mark.parametrize("resident", [False, True], ids=["launched", "resident"])
def test_trap_is_answered_gpu_fault_and_a_new_engine_serves(ipc_endpoint, resident):
    # With --resident, the trap also kills the resident blocks: the engine must still answer, stop and exit
    # (a dead block never publishes its done number; the lane notices through its stream), not hang.
    cfg = ServerConfig(backend="cuda", ingest=ipc_endpoint(), kernels_dirs=[FAULT_KERNELS], lanes=2,
                       calibrate=False, drain_timeout_s=2.0, linger_ms=1000, resident=resident)
    with Supervisor(cfg, max_restarts=3, start_timeout_s=300) as sup:
        sup.start()
        thread = threading.Thread(target=sup.run, daemon=True)
        thread.start()
        with Client(sup.ingest_endpoint, timeout_s=120) as client:
            _vector_add_ok(client)
            _vector_add_ok(client)  # the first task is timed (launched path); the second is resident with --resident
            x = np.arange(256, dtype=np.float32)
            res = client.call("fault_trap", x, timeout_s=60)  # trap=0: an ordinary copy on the GPU
            assert res.ok and np.array_equal(res.outputs[0], x), (res.code, res.message)

            old_pid = sup.engine_pids()[0]
            res = client.call("fault_trap", x, params={"trap": 1}, timeout_s=60)
            assert res.status.value == "error" and res.code.value == "GPU_FAULT", (res.code, res.message)
            # Sent once the old engine is gone: the task waits in this producer's queue for the new engine.
            deadline = time.monotonic() + 60
            while sup.restarts == 0:
                assert time.monotonic() < deadline, "the engine did not exit after the fault"
                time.sleep(0.005)
            res = client.call("vector_add", x, x, timeout_s=300)
            assert res.ok, (res.code, res.message)
            np.testing.assert_array_equal(res.outputs[0], x + x)
            assert sup.restarts == 1 and sup.engine_pids()[0] != old_pid
            assert len(sup.restart_seconds) == 1
            _vector_add_ok(client)
        sup.stop()
        thread.join(60)
        assert not thread.is_alive()
