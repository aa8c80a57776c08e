"""Device discovery and the retained primary context.

``Device(ordinal)`` initializes the driver once and describes the card. ``Device.retain_context()`` gives a
:class:`Context` that owns one reference on the primary context, released on ``close()``.
"""

from __future__ import annotations

from dataclasses import dataclass

from cuda.bindings import driver as cu

from ._check import CudaUnavailable, check
from ._handle import OwnedHandle

_initialized = False


def init_driver() -> None:
    """``cuInit`` once per process. A missing driver library becomes :class:`CudaUnavailable`."""
    global _initialized
    if _initialized:
        return
    try:
        result = cu.cuInit(0)
    except Exception as exc:  # cuda.pathfinder raises when libcuda.so is absent
        raise CudaUnavailable("cuInit", cu.CUresult.CUDA_ERROR_NO_DEVICE) from exc
    check(result, "cuInit")
    _initialized = True


def device_count() -> int:
    init_driver()
    return int(check(cu.cuDeviceGetCount(), "cuDeviceGetCount"))


def driver_version() -> int:
    """As the driver reports it, e.g. 13000 for CUDA 13.0."""
    init_driver()
    return int(check(cu.cuDriverGetVersion(), "cuDriverGetVersion"))


def pci_bus_id(ordinal: int) -> str:
    """The device's PCI bus id, ``0000:1A:00.0`` style (for its NUMA node: ``zmqrt.placement.gpu_local_cpus``)."""
    init_driver()
    dev = check(cu.cuDeviceGet(ordinal), "cuDeviceGet")
    raw = check(cu.cuDeviceGetPCIBusId(16, dev), "cuDeviceGetPCIBusId")
    if isinstance(raw, bytes):
        raw = raw.split(b"\0", 1)[0].decode()
    return str(raw)


@dataclass(frozen=True)
class DeviceInfo:
    ordinal: int
    name: str
    compute_capability: tuple[int, int]
    total_mem_bytes: int
    driver_version: int

    @property
    def arch(self) -> str:
        """``sm_90`` style name of the exact architecture."""
        return f"sm_{self.compute_capability[0]}{self.compute_capability[1]}"


class Device:
    def __init__(self, ordinal: int = 0) -> None:
        init_driver()
        count = device_count()
        if not 0 <= ordinal < count:
            raise CudaUnavailable("cuDeviceGet", cu.CUresult.CUDA_ERROR_INVALID_DEVICE)
        self.ordinal = ordinal
        self.cu_device = check(cu.cuDeviceGet(ordinal), "cuDeviceGet")
        raw = check(cu.cuDeviceGetName(256, self.cu_device), "cuDeviceGetName")
        attr = cu.CUdevice_attribute
        major = check(cu.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, self.cu_device),
                      "cuDeviceGetAttribute")
        minor = check(cu.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, self.cu_device),
                      "cuDeviceGetAttribute")
        total = check(cu.cuDeviceTotalMem(self.cu_device), "cuDeviceTotalMem")
        self.info = DeviceInfo(
            ordinal=ordinal,
            name=raw.split(b"\0", 1)[0].decode(errors="replace"),
            compute_capability=(int(major), int(minor)),
            total_mem_bytes=int(total),
            driver_version=driver_version(),
        )

    def retain_context(self) -> Context:
        return Context(self)

    def __repr__(self) -> str:
        return f"Device({self.ordinal}, {self.info.name!r}, {self.info.arch})"


class Context(OwnedHandle):
    """One reference on the device's primary context, made current on this thread at creation."""

    def __init__(self, device: Device) -> None:
        self.device = device
        ctx = check(cu.cuDevicePrimaryCtxRetain(device.cu_device), "cuDevicePrimaryCtxRetain")
        self._own(ctx, cu.cuDevicePrimaryCtxRelease, device.cu_device)
        self.set_current()

    def set_current(self) -> None:
        check(cu.cuCtxSetCurrent(self.handle), "cuCtxSetCurrent")

    def synchronize(self) -> None:
        check(cu.cuCtxSynchronize(), "cuCtxSynchronize")

    def stream_priority_range(self) -> tuple[int, int]:
        """``(least, greatest)``: numerically, greatest <= least (e.g. 0 and -5)."""
        least, greatest = check(cu.cuCtxGetStreamPriorityRange(), "cuCtxGetStreamPriorityRange")
        return int(least), int(greatest)
