"""Events: completion markers (non-timing, cheapest) and timing events for GPU-side stage times."""

from __future__ import annotations

from cuda.bindings import driver as cu

from ._check import check, query
from ._handle import OwnedHandle

CU_EVENT_DEFAULT = 0
CU_EVENT_DISABLE_TIMING = 2


class Event(OwnedHandle):
    def __init__(self, timing: bool = True) -> None:
        self.timing = timing
        flags = CU_EVENT_DEFAULT if timing else CU_EVENT_DISABLE_TIMING
        handle = check(cu.cuEventCreate(flags), "cuEventCreate")
        self._own(handle, cu.cuEventDestroy, handle)

    def record(self, stream) -> None:
        check(cu.cuEventRecord(self._handle, stream.handle), "cuEventRecord")

    def is_done(self) -> bool:
        """``cuEventQuery``: NOT_READY is ``False``, not an exception."""
        return query(cu.cuEventQuery(self._handle), "cuEventQuery")

    def synchronize(self) -> None:
        check(cu.cuEventSynchronize(self._handle), "cuEventSynchronize")

    def elapsed_ms(self, start: Event) -> float:
        """Milliseconds from ``start`` to this event (both recorded, both timing events)."""
        return float(check(cu.cuEventElapsedTime(start.handle, self._handle), "cuEventElapsedTime"))
