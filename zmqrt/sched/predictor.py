"""Predicted GPU service time per (kernel, size_class), learned online.

Contract
--------
``predict_ns(kernel, size_class)`` returns a conservative, high-quantile-ish estimate in integer ns:
``ceil(mean + k * dev)`` where ``mean`` is an EWMA of the observed service time and ``dev`` an EWMA of the
absolute deviation from it (for a normal distribution, mean abs deviation = 0.8 sigma, so the default
``k=3`` is about mean + 2.4 sigma, near p99 for well-behaved kernels). Each observation's deviation is
clipped at 3 dev (Huber), so outliers cannot inflate the estimate without bound.
``mean_ns`` is the expected time, used to decide at dispatch whether a task can still make its deadline.

- The first ``1/alpha`` samples of a key use a cumulative average (alpha_n = 1/n) so a short calibration
  converges at once; later samples use ``alpha``.
- The first sample of a kernel initialises ``dev`` to ``initial_dev_frac * ns``: until more samples arrive
  the estimate stays pessimistic. The first sample of a new size class of a kernel already known borrows the
  relative deviation of the kernel's nearest known class instead: a wide guess there (2.5x the sample at the
  default 0.5) put the 1 KiB fft above its 75 µs deadline for a whole run (bench/NOTES.md 15-16).
- ``observe(..., bound_only=True)`` is a sample taken from a probe (a task admitted against the prediction, to
  re-learn it). It may only lower the estimate: a probe runs only when the prediction already says infeasible,
  so a sample above the prediction changes no admission decision, and probes run in the worst conditions (a
  flood of rejections), so letting them raise the estimate kept it stuck above the deadline.
- ``seed()`` is a calibration sample (done by the server at start) and updates exactly like ``observe()``.
- An unseen key falls back to the nearest known size class above it (conservative), else to the largest
  known class scaled linearly in bytes, else to ``default_ns``.

Predictions are cached per key, so ``predict_ns`` is two dict lookups. Not thread-safe.
"""

from __future__ import annotations

import math

DEFAULT_SERVICE_NS = 1_000_000  # 1 ms: a deliberately pessimistic guess for a kernel never run
_CLIP = 3.0  # an observation counts at most this many deviations away from the mean
_DEV_FLOOR = 0.05  # ...with the deviation taken as at least 5% of the mean, so a tight start can still move


class _Estimate:
    __slots__ = ("mean", "dev", "pred_ns", "n")

    def __init__(self, ns: int, initial_dev_frac: float, k: float) -> None:
        self.mean = float(ns)
        self.dev = float(ns) * initial_dev_frac
        self.n = 1
        self.pred_ns = math.ceil(self.mean + k * self.dev)


class ServicePredictor:
    """Predicted service ns per (kernel, size_class). See the module docstring for the estimator."""

    def __init__(
        self,
        alpha: float = 0.05,
        k: float = 3.0,
        default_ns: int = DEFAULT_SERVICE_NS,
        initial_dev_frac: float = 0.5,
    ) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        if k < 0 or default_ns < 0 or initial_dev_frac < 0:
            raise ValueError("k, default_ns and initial_dev_frac must be >= 0")
        self.alpha = alpha
        self.k = k
        self.default_ns = int(default_ns)
        self.initial_dev_frac = initial_dev_frac
        self._warmup = max(1, round(1.0 / alpha))
        self._est: dict[str, dict[int, _Estimate]] = {}

    def seed(self, kernel: str, size_class: int, ns: int) -> None:
        """A calibration sample; same update as :meth:`observe`."""
        self.observe(kernel, size_class, ns)

    def observe(self, kernel: str, size_class: int, ns: int, bound_only: bool = False) -> None:
        """Learn from one measured service time (ns); ``bound_only``: a probe's sample, used only to lower."""
        by_class = self._est.get(kernel)
        if by_class is None:
            by_class = self._est[kernel] = {}
        e = by_class.get(size_class)
        if e is None:
            by_class[size_class] = _Estimate(ns, self._new_class_dev_frac(by_class, size_class), self.k)
            return
        if bound_only and ns >= e.pred_ns:
            return
        e.n += 1
        a = 1.0 / e.n if e.n <= self._warmup else self.alpha
        err = ns - e.mean
        # Huber-style clipping: one outlier (a GC pause, a page fault) moves the estimate by a bounded step
        # instead of inflating dev enough to reject every later task, which would then never be observed
        # again and keep the estimate stuck. A lasting shift is still followed, geometrically.
        limit = _CLIP * max(e.dev, _DEV_FLOOR * e.mean)
        if err > limit:
            err = limit
        elif err < -limit:
            err = -limit
        e.mean += a * err
        e.dev += a * (abs(err) - e.dev)
        e.pred_ns = math.ceil(e.mean + self.k * e.dev)

    def knows(self, kernel: str, size_class: int) -> bool:
        """Whether (kernel, size_class) has an estimate of its own (from calibration or observation)."""
        by_class = self._est.get(kernel)
        return by_class is not None and size_class in by_class

    def _new_class_dev_frac(self, by_class: dict[int, _Estimate], size_class: int) -> float:
        """Relative deviation for a new class: the nearest known class's, else ``initial_dev_frac``."""
        if not by_class:
            return self.initial_dev_frac
        near = by_class[min(by_class, key=lambda sc: (abs(sc - size_class), -sc))]
        return max(near.dev / near.mean if near.mean > 0 else self.initial_dev_frac, _DEV_FLOOR)

    def mean_ns(self, kernel: str, size_class: int) -> int:
        """The expected (mean) service time; the same fallback rule as :meth:`predict_ns`."""
        by_class = self._est.get(kernel)
        if by_class is not None:
            e = by_class.get(size_class)
            if e is not None:
                return int(e.mean)
            if by_class:
                above = [sc for sc in by_class if sc >= size_class]
                if above:
                    return int(by_class[min(above)].mean)
                top = max(by_class)
                return int(by_class[top].mean) << (size_class - top)
        return self.default_ns

    def predict_ns(self, kernel: str, size_class: int) -> int:
        """Conservative predicted service time in ns (see the fallback rule in the module docstring)."""
        by_class = self._est.get(kernel)
        if by_class is not None:
            e = by_class.get(size_class)
            if e is not None:
                return e.pred_ns
            if by_class:
                return self._fallback(by_class, size_class)
        return self.default_ns

    @staticmethod
    def _fallback(by_class: dict[int, _Estimate], size_class: int) -> int:
        # The nearest known class above is an upper bound for smaller work; above every known class, scale
        # the largest one linearly in bytes (size classes are powers of two), which over-predicts for
        # latency-bound small kernels and is about right for bandwidth-bound large ones.
        above = [sc for sc in by_class if sc >= size_class]
        if above:
            return by_class[min(above)].pred_ns
        top = max(by_class)
        return by_class[top].pred_ns << (size_class - top)

    def known(self, kernel: str, size_class: int) -> bool:
        """Whether (kernel, size_class) has at least one sample."""
        return size_class in self._est.get(kernel, {})

    def snapshot(self) -> dict[str, dict[str, dict[str, float | int]]]:
        """``{kernel: {str(size_class): {mean_ns, dev_ns, pred_ns, n}}}`` (msgpack/JSON-able)."""
        return {
            kernel: {
                str(sc): {"mean_ns": e.mean, "dev_ns": e.dev, "pred_ns": e.pred_ns, "n": e.n}
                for sc, e in by_class.items()
            }
            for kernel, by_class in self._est.items()
        }
