"""Non-blocking CUDA streams with a checked priority."""

from __future__ import annotations

from cuda.bindings import driver as cu

from ._check import check, query
from ._handle import OwnedHandle

CU_STREAM_NON_BLOCKING = 1


class Stream(OwnedHandle):
    """A stream that does not synchronize with the legacy default stream.

    ``priority`` uses the driver's convention (lower is more urgent) and must lie inside
    ``cuCtxGetStreamPriorityRange``; out-of-range values are refused rather than clamped silently.
    """

    def __init__(self, priority: int = 0) -> None:
        least, greatest = check(cu.cuCtxGetStreamPriorityRange(), "cuCtxGetStreamPriorityRange")
        if not int(greatest) <= priority <= int(least):
            raise ValueError(f"stream priority {priority} outside the device range [{int(greatest)}, {int(least)}]")
        self.priority = priority
        handle = check(cu.cuStreamCreateWithPriority(CU_STREAM_NON_BLOCKING, priority), "cuStreamCreateWithPriority")
        self._own(handle, cu.cuStreamDestroy, handle)

    def synchronize(self) -> None:
        check(cu.cuStreamSynchronize(self._handle), "cuStreamSynchronize")

    def is_done(self) -> bool:
        return query(cu.cuStreamQuery(self._handle), "cuStreamQuery")
