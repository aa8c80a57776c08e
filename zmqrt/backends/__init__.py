"""Backends: CUDA (driver API) and CPU (numpy references), behind one lane-based contract."""

from .base import Backend, StageTimes
from .select import make_backend

__all__ = ["Backend", "StageTimes", "make_backend"]
