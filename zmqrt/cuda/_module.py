"""Loaded modules (CUBIN or PTX images) and kernels with a preallocated kernelParams array.

A :class:`Kernel` owns :class:`KernelArgs`: one 8-byte slot per argument and a fixed ``void*[]`` that points
at the slots. A launch writes values into the slots and passes the same array address every time, so the hot
path builds no tuples of ctypes objects (the probe measured that as slower and allocating).
"""

from __future__ import annotations

import numpy as np
from cuda.bindings import driver as cu

from ._check import check
from ._handle import OwnedHandle

MAX_KERNEL_ARGS = 24


class Module(OwnedHandle):
    def __init__(self, image: bytes, what: str = "module") -> None:
        self.what = what
        # cuModuleLoadData wants a NUL-terminated PTX string or a CUBIN image; bytes work for both here
        # because a PTX image is passed with an explicit terminator.
        handle = check(cu.cuModuleLoadData(image), f"cuModuleLoadData({what})")
        self._own(handle, cu.cuModuleUnload, handle)

    def kernel(self, entry: str) -> Kernel:
        func = check(cu.cuModuleGetFunction(self.handle, entry.encode()), f"cuModuleGetFunction({entry})")
        return Kernel(self, entry, func)


class KernelArgs:
    """Preallocated argument storage. Slot ``i`` holds a pointer (u64), an i32 or an f32."""

    __slots__ = ("_u64", "_i32", "_f32", "_ptrs", "address")

    def __init__(self, n_slots: int = MAX_KERNEL_ARGS) -> None:
        self._u64 = np.zeros(n_slots, dtype=np.uint64)
        # Little-endian views: an i32/f32 written at 2*i occupies the low 4 bytes of slot i.
        self._i32 = self._u64.view(np.int32)
        self._f32 = self._u64.view(np.float32)
        base = self._u64.ctypes.data
        self._ptrs = np.arange(n_slots, dtype=np.uint64) * np.uint64(8) + np.uint64(base)
        self.address = int(self._ptrs.ctypes.data)

    def set_ptr(self, i: int, value: int) -> None:
        self._u64[i] = value

    def set_i32(self, i: int, value: int) -> None:
        self._i32[2 * i] = value

    def set_f32(self, i: int, value: float) -> None:
        self._f32[2 * i] = value

    def set_scalar(self, i: int, kind: str, value) -> None:
        if kind == "i32":
            self._i32[2 * i] = value
        elif kind == "f32":
            self._f32[2 * i] = value
        elif kind == "u64":
            self._u64[i] = value
        else:
            raise ValueError(f"unknown scalar kind {kind!r}")


class Kernel:
    """A function in a loaded module. Keeps its module alive."""

    def __init__(self, module: Module, entry: str, func) -> None:
        self.module = module
        self.entry = entry
        self.func = func
        self.args = KernelArgs()

    def set_max_dynamic_shared(self, nbytes: int) -> None:
        attr = cu.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
        check(cu.cuFuncSetAttribute(self.func, attr, nbytes), "cuFuncSetAttribute")

    def launch(self, stream, grid: tuple[int, int, int], block: tuple[int, int, int], shared_bytes: int = 0,
               args: KernelArgs | None = None) -> None:
        """Launch with the values already written into ``args`` (default: this kernel's own slots)."""
        params = (args or self.args).address
        err = cu.cuLaunchKernel(self.func, grid[0], grid[1], grid[2], block[0], block[1], block[2],
                                shared_bytes, stream.handle, params, 0)[0]
        if err:
            check((err,), f"cuLaunchKernel({self.entry})")
