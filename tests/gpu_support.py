"""Shared skip logic for GPU tests: they run only where a CUDA driver and device answer."""

from __future__ import annotations

import pytest

from zmqrt.backends.select import cuda_available

HAVE_CUDA, WHY_NOT = cuda_available(0)
requires_cuda = pytest.mark.skipif(not HAVE_CUDA, reason=f"needs a CUDA device: {WHY_NOT}")
