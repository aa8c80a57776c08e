"""The backend contract the server drives: lanes that run one task at a time, asynchronously.

A server calls ``submit(lane, spec, inputs, checked)`` on an idle lane (or ``submit_frame`` with the inputs as byte
ranges of a task frame, where the backend takes that), later ``poll(lane)`` until it is done (never blocking on
any one task), then ``collect(lane)`` for the outputs and ``stage_times(lane)`` for the GPU-side stage times (or
``finish(lane)`` for both). Outputs returned by ``collect`` are views into the lane's buffers: valid until the
next ``submit`` on that lane, so the caller encodes (copies) them before reusing the lane.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import Code, TaskError


@dataclass(slots=True)
class StageTimes:
    """GPU-side stage durations in ns (from events on CUDA; on the CPU backend only ``kernel_ns``)."""

    h2d_ns: int = 0
    kernel_ns: int = 0
    d2h_ns: int = 0

    @property
    def total_ns(self) -> int:
        return self.h2d_ns + self.kernel_ns + self.d2h_ns


SLOT_ALIGN_BYTES = 256  # cudaMalloc alignment; keeps every input and output on its own aligned offset


def align_up(n: int, a: int = SLOT_ALIGN_BYTES) -> int:
    return (n + a - 1) // a * a


def rows_like(inputs: Sequence[np.ndarray], rows: int) -> list[np.ndarray]:
    """Stand-ins of ``rows`` stacked rows for ``inputs`` (stacked rows of one form): each a read-only view of the
    first row, for what needs only shapes and dtypes (a kernel's check, a launch's plan), never for data."""
    return [np.broadcast_to(a[:1], (rows, *a.shape[1:])) for a in inputs]


def packed_bytes(nbytes: Sequence[int]) -> int:
    """Bytes one slot needs for arrays of these sizes laid out at aligned offsets."""
    total = 0
    for n in nbytes:
        total = align_up(total) + n
    return total


class Backend(ABC):
    """``name`` is ``"cuda"`` or ``"cpu"``; ``description`` is one line for logs."""

    name: str
    description: str
    registry: object
    lanes: int
    max_task_bytes: int

    @abstractmethod
    def submit(self, lane: int, spec, inputs: Sequence[np.ndarray], checked, timed: bool = True) -> None:
        """Start one task on an idle lane. ``timed`` asks for GPU stage times (a few µs of events on CUDA)."""

    def submit_rows(self, lane: int, spec, inputs: Sequence[np.ndarray], checked, rows: int) -> None:
        """Run a batch of ``len(inputs[0])`` stacked rows (untimed) as a launch for ``rows`` rows (at least as many;
        ``checked`` is the form of ``rows`` rows). The outputs' first ``len(inputs[0])`` rows are the batch's; the
        rest are the padding's and mean nothing. Why: a launch prepared (and captured as a graph) per batch size
        class instead of per batch size. Default: the batch as it is (a backend that prepares nothing)."""
        self.submit(lane, spec, inputs, checked, False)

    def submit_frame(self, lane: int, spec, frame: bytes, offsets: Sequence[int], views: Sequence[tuple], checked,
                     timed: bool = True) -> bool:
        """``submit`` of a task whose inputs are byte ranges of ``frame`` (a task frame matched by a byte template:
        input ``j`` starts at ``offsets[j]``, ``views[j]`` is its ``(dtype, count, shape or None)``), where the
        backend can copy the bytes without numpy views of them; True: started. False: not taken, nothing done, and
        the caller makes the views and calls ``submit``. Default: False."""
        return False

    def warm_frame(self, lane: int, spec, frame: bytes, offsets: Sequence[int], views: Sequence[tuple],
                   checked) -> bool:
        """``warm`` on ``submit_frame``'s path; True where that path would take the task. Default: False."""
        return False

    def warm(self, lane: int, spec, inputs: Sequence[np.ndarray], checked) -> None:
        """Copy ``inputs`` where a submit on the idle ``lane`` would put them, and start nothing: the server's cache
        warming (``keep_warm_us``) then finds the copy's code and the slot's memory in the CPU's caches. Default:
        nothing (a backend with no input slots)."""
        return None

    @abstractmethod
    def poll(self, lane: int) -> bool: ...

    @abstractmethod
    def wait(self, lane: int) -> None: ...

    @abstractmethod
    def collect(self, lane: int) -> list[np.ndarray]: ...

    @abstractmethod
    def stage_times(self, lane: int) -> StageTimes | None:
        """Stage times of the lane's last task; None when it was submitted untimed."""

    def finish(self, lane: int) -> tuple[list[np.ndarray], StageTimes | None]:
        """``(collect(lane), stage_times(lane))`` of a finished lane: the server's per-task completion, one call
        where a backend can save the others (it sits between the GPU's done and the result's send)."""
        return self.collect(lane), self.stage_times(lane)

    @abstractmethod
    def close(self) -> None: ...

    def bind_thread(self) -> None:
        """Make this backend usable from the calling thread (the loop may run in another thread than the one
        that built the backend). Nothing to do on the CPU backend."""
        return None

    def check_fits(self, inputs: Sequence[np.ndarray], checked) -> None:
        """Refuse a task whose inputs or outputs do not fit a lane's slots (TOO_LARGE), before touching it."""
        in_bytes = packed_bytes([a.nbytes for a in inputs])
        if in_bytes > self.slot_bytes:
            raise TaskError(Code.TOO_LARGE, f"inputs need {in_bytes} bytes; a lane slot holds {self.slot_bytes}")
        out_bytes = packed_bytes([int(np.prod(shape)) * np.dtype(dt).itemsize for shape, dt in checked.outputs])
        if out_bytes > self.slot_bytes:
            raise TaskError(Code.TOO_LARGE, f"outputs need {out_bytes} bytes; a lane slot holds {self.slot_bytes}")

    @property
    def slot_bytes(self) -> int:
        # Room for the alignment padding of up to 8 arrays on top of the configured maximum.
        return self.max_task_bytes + 8 * SLOT_ALIGN_BYTES

    def run(self, kernel: str, inputs: Sequence[np.ndarray], params=None, lane: int = 0
            ) -> tuple[list[np.ndarray], StageTimes]:
        """Synchronous convenience for tests, the demo and benchmarks: validate, run, copy out."""
        spec = self.registry.get(kernel)
        checked = spec.check(inputs, params or {})
        self.submit(lane, spec, inputs, checked)
        self.wait(lane)
        outputs = [np.array(o, copy=True) for o in self.collect(lane)]
        return outputs, self.stage_times(lane) or StageTimes()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
