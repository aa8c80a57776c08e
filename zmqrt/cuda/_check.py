"""The one error-check helper for every ``cuda.bindings`` driver call.

Contract: every driver call returns ``(CUresult, *values)``. :func:`check` returns the values (``None``, the
single value, or a tuple) or raises :class:`CudaError` naming the call, the enum name and the driver's text.
``CUDA_ERROR_NOT_READY`` is an expected status for queries; :func:`query` turns it into ``False``.
"""

from __future__ import annotations

from typing import Any

from cuda.bindings import driver as cu

_SUCCESS = cu.CUresult.CUDA_SUCCESS
_NOT_READY = cu.CUresult.CUDA_ERROR_NOT_READY
# Errors after which the context is unusable; only a new process recovers (DESIGN.md, "Pitfalls").
_STICKY = frozenset(
    int(getattr(cu.CUresult, name))
    for name in (
        "CUDA_ERROR_ILLEGAL_ADDRESS",
        "CUDA_ERROR_LAUNCH_FAILED",
        "CUDA_ERROR_ILLEGAL_INSTRUCTION",
        "CUDA_ERROR_MISALIGNED_ADDRESS",
        "CUDA_ERROR_INVALID_ADDRESS_SPACE",
        "CUDA_ERROR_INVALID_PC",
        "CUDA_ERROR_HARDWARE_STACK_ERROR",
        "CUDA_ERROR_ASSERT",
        "CUDA_ERROR_LAUNCH_TIMEOUT",
    )
    if hasattr(cu.CUresult, name)
)


class CudaError(RuntimeError):
    """A driver call failed. ``status`` is the CUresult; ``call`` the function name."""

    def __init__(self, call: str, status: Any) -> None:
        self.call = call
        self.status = status
        self.name = _error_name(status)
        self.text = _error_text(status)
        super().__init__(f"{call}: {self.name} ({int(status)}): {self.text}")

    @property
    def sticky(self) -> bool:
        """True when the context is poisoned and the process must be restarted."""
        return int(self.status) in _STICKY


class CudaOutOfMemory(CudaError, MemoryError):
    """Device or pinned allocation failed; callers may shrink their pools and retry."""


class CudaUnavailable(CudaError):
    """No driver or no device answers; the server falls back to the CPU backend."""


def _error_name(status: Any) -> str:
    try:
        err, name = cu.cuGetErrorName(status)
        if not err and name:
            return name.decode()
    except Exception:  # the driver library itself may be missing
        pass
    return getattr(status, "name", str(status))


def _error_text(status: Any) -> str:
    try:
        err, text = cu.cuGetErrorString(status)
        if not err and text:
            return text.decode()
    except Exception:
        pass
    return "no description"


def error_for(call: str, status: Any) -> CudaError:
    code = int(status)
    if code == int(cu.CUresult.CUDA_ERROR_OUT_OF_MEMORY):
        return CudaOutOfMemory(call, status)
    if code in (int(cu.CUresult.CUDA_ERROR_NO_DEVICE), int(cu.CUresult.CUDA_ERROR_NOT_INITIALIZED)):
        return CudaUnavailable(call, status)
    return CudaError(call, status)


def check(result: tuple, call: str) -> Any:
    """Unpack ``(CUresult, *values)``: return the values or raise :class:`CudaError` for ``call``."""
    err = result[0]
    if err:  # CUresult is an int enum with CUDA_SUCCESS == 0
        raise error_for(call, err)
    n = len(result)
    if n == 1:
        return None
    if n == 2:
        return result[1]
    return result[1:]


def query(result: tuple, call: str) -> bool:
    """For cuEventQuery/cuStreamQuery: ``True`` done, ``False`` not ready, anything else raises."""
    err = result[0]
    if not err:
        return True
    if err == _NOT_READY:
        return False
    raise error_for(call, err)
