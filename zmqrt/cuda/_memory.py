"""Pinned host buffers (with a numpy view) and device buffers.

Both are allocated once at startup and reused; nothing on the task path allocates. Copy into a pinned
buffer with ``numpy.copyto``/``ctypes.memmove`` on the view, never ``ctypes_array[:] = bytes`` (element by
element: it once cost 5x the whole GPU round trip).
"""

from __future__ import annotations

import ctypes

import numpy as np
from cuda.bindings import driver as cu

from ._check import check
from ._handle import OwnedHandle

CU_MEMHOSTALLOC_PORTABLE = 0x01
CU_MEMHOSTALLOC_DEVICEMAP = 0x02


class PinnedBuffer(OwnedHandle):
    """Page-locked host memory from ``cuMemHostAlloc``; ``.view`` is a uint8 numpy array over it."""

    def __init__(self, nbytes: int, mapped: bool = False) -> None:
        if nbytes <= 0:
            raise ValueError(f"pinned buffer size must be positive, got {nbytes}")
        self.nbytes = nbytes
        flags = CU_MEMHOSTALLOC_PORTABLE | (CU_MEMHOSTALLOC_DEVICEMAP if mapped else 0)
        ptr = check(cu.cuMemHostAlloc(nbytes, flags), "cuMemHostAlloc")
        self.ptr = int(ptr)
        self._own(ptr, cu.cuMemFreeHost, ptr)
        self.view = np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(self.ptr))
        self.device_ptr = int(check(cu.cuMemHostGetDevicePointer(self.ptr, 0), "cuMemHostGetDevicePointer")) \
            if mapped else None

    def close(self) -> None:
        self.view = None  # no numpy view may outlive the memory
        super().close()


class DeviceBuffer(OwnedHandle):
    """Device memory from ``cuMemAlloc``; ``.ptr`` is the raw address for kernel arguments."""

    def __init__(self, nbytes: int) -> None:
        if nbytes <= 0:
            raise ValueError(f"device buffer size must be positive, got {nbytes}")
        self.nbytes = nbytes
        dptr = check(cu.cuMemAlloc(nbytes), "cuMemAlloc")
        self.ptr = int(dptr)
        self._own(dptr, cu.cuMemFree, dptr)

    def fill_bytes(self, value: int, stream=None) -> None:
        """Set every byte (used to poison outputs in tests)."""
        if stream is None:
            check(cu.cuMemsetD8(self._handle, value, self.nbytes), "cuMemsetD8")
        else:
            check(cu.cuMemsetD8Async(self._handle, value, self.nbytes, stream.handle), "cuMemsetD8Async")
