"""Thin, checked layer over ``cuda.bindings.driver`` and the objects built on it.

Importing this package does not touch the driver; :func:`init_driver` (called by :class:`Device`) does.
"""

from ._check import CudaError, CudaOutOfMemory, CudaUnavailable, check, query
from ._device import Context, Device, DeviceInfo, device_count, driver_version, init_driver, pci_bus_id
from ._event import Event
from ._graph import Graph
from ._memory import DeviceBuffer, PinnedBuffer
from ._module import Kernel, KernelArgs, Module
from ._stream import Stream

__all__ = [
    "Context",
    "CudaError",
    "CudaOutOfMemory",
    "CudaUnavailable",
    "Device",
    "DeviceBuffer",
    "DeviceInfo",
    "Event",
    "Graph",
    "Kernel",
    "KernelArgs",
    "Module",
    "PinnedBuffer",
    "Stream",
    "check",
    "device_count",
    "driver_version",
    "init_driver",
    "pci_bus_id",
    "query",
]
