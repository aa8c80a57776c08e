"""The persistent-kernel floor (bench/persistent_floor.py) computes right: every task on fresh random inputs with
the output poisoned first, across many requests, and the kernel stops when asked.

Needs a CUDA device (marker ``gpu``); skipped cleanly without one.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.gpu_support import requires_cuda

pytestmark = [pytest.mark.gpu, requires_cuda]


def test_resident_kernel_answers_each_request_with_its_own_sum():
    from bench.persistent_floor import NEL, ResidentVadd, verify

    rng = np.random.default_rng()
    with ResidentVadd(timeout_s=5.0) as res:
        assert verify(res, 500, rng) == 0
        a = rng.standard_normal(NEL).astype(np.float32)
        b = rng.standard_normal(NEL).astype(np.float32)
        res.c[...] = np.nan
        np.testing.assert_allclose(res.run(a, b), a + b, rtol=1e-6)
        assert res.seq == 501
    res.close()  # idempotent
