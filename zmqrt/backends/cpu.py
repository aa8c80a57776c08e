"""The CPU backend: the same registry, running each kernel's numpy reference. It *is* the reference.

Used when no CUDA driver or device answers, and in CI. A "lane" here is only a result slot: the work runs
inside ``submit``, so ``poll`` is always true.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from .base import Backend, StageTimes


class CpuBackend(Backend):
    name = "cpu"

    def __init__(self, registry, lanes: int = 4, max_task_bytes: int = 1 << 20) -> None:
        if lanes < 1:
            raise ValueError("lanes must be >= 1")
        self.registry = registry
        self.lanes = lanes
        self.max_task_bytes = max_task_bytes
        self.description = f"cpu (numpy {np.__version__} reference kernels)"
        self._outputs: list[list[np.ndarray]] = [[] for _ in range(lanes)]
        self._times = [StageTimes() for _ in range(lanes)]
        self._closed = False

    def submit(self, lane: int, spec, inputs: Sequence[np.ndarray], checked, timed: bool = True) -> None:
        self.check_fits(inputs, checked)
        t0 = time.perf_counter_ns()
        outs = spec.reference(inputs, checked.params)
        self._times[lane] = StageTimes(kernel_ns=time.perf_counter_ns() - t0)
        self._outputs[lane] = [np.ascontiguousarray(o, dtype=dt)
                               for o, (_, dt) in zip(outs, checked.outputs, strict=True)]

    def poll(self, lane: int) -> bool:
        return True

    def wait(self, lane: int) -> None:
        return None

    def collect(self, lane: int) -> list[np.ndarray]:
        return self._outputs[lane]

    def stage_times(self, lane: int) -> StageTimes:
        return self._times[lane]

    def close(self) -> None:
        self._closed = True
        self._outputs = [[] for _ in range(self.lanes)]
