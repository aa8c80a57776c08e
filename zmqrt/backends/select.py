"""Choosing a backend: ``auto`` takes CUDA when a driver and a device answer, else CPU, said in one line."""

from __future__ import annotations

import logging

from .base import Backend

log = logging.getLogger("zmqrt")


def cuda_available(device: int = 0) -> tuple[bool, str]:
    """Whether a CUDA driver answers and has device ``device``; with the reason when not."""
    try:
        from ..cuda import device_count
        n = device_count()
    except Exception as exc:  # no libcuda, no device, or a broken driver: all mean "no CUDA here"
        return False, f"no CUDA driver ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    if n <= device:
        return False, f"CUDA driver answers but has {n} device(s); device {device} requested"
    return True, f"{n} CUDA device(s)"


def make_backend(kind: str, registry, device: int = 0, lanes: int = 4, max_task_bytes: int = 1 << 20,
                 cache=None, timing: bool = True, resident: bool = False) -> Backend:
    if kind not in ("auto", "cuda", "cpu"):
        raise ValueError(f"backend must be auto, cuda or cpu, not {kind!r}")
    if kind == "auto":
        ok, why = cuda_available(device)
        if not ok:
            log.warning("backend auto: %s; using the CPU backend (numpy reference kernels)", why)
            kind = "cpu"
        else:
            kind = "cuda"
    if kind == "cpu":
        from .cpu import CpuBackend
        if resident:
            log.warning("resident lanes need the CUDA backend; ignored on the CPU backend")
        return CpuBackend(registry, lanes=lanes, max_task_bytes=max_task_bytes)
    from .cuda import CudaBackend
    return CudaBackend(registry, device=device, lanes=lanes, max_task_bytes=max_task_bytes, cache=cache,
                       timing=timing, resident=resident)
