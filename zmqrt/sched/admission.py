"""Deadline admission control and the dispatch-time expiry test.

Contract
--------
At receipt (``now_ns``) a task with a deadline is admitted only if its predicted finish is within it::

    predicted_finish_ns = now_ns + ceil((work_ahead_ns + inflight_ns) / lanes) + service_ns

- ``service_ns`` is ``predictor.predict_ns(kernel, size_class)`` (conservative; see ``predictor``).
- ``work_ahead_ns`` is ``scheduler.work_ahead_ns(item, service_ns)``: the predicted work queued ahead of the
  item under the scheduler's policy, from running per-level totals, O(levels) per admission and never
  O(queue length). ``fp`` is exact for queued work; ``edf``/``rm`` are an upper bound exact at both ends (0 when
  the item's key beats every queued key, all keyed work otherwise); ``ps`` is an estimate from the stride
  share. None of them foresees later, more urgent arrivals.
- ``inflight_ns`` is the caller's predicted remaining work of the tasks already on the lanes.
- Spreading the work ahead evenly over the lanes assumes the lanes drain in parallel at the same rate.

In ``reject`` mode an infeasible task raises ``TaskError(DEADLINE_INFEASIBLE)`` with the numbers. In ``flag``
mode it is accepted and :meth:`AdmissionControl.admit` returns True ("predicted to miss"). A task without a
deadline is always admitted (returns False).

:meth:`AdmissionControl.expired_at_dispatch` decides whether a popped task is already late: ``off`` never,
``late`` when ``now_ns > deadline_ns``, ``predicted`` when ``now_ns + service_ns > deadline_ns``.
"""

from __future__ import annotations

from zmqrt.errors import Code, TaskError
from zmqrt.sched.predictor import ServicePredictor
from zmqrt.sched.queues import SchedItem, Scheduler

ADMISSION_MODES = ("reject", "flag")
EXPIRY_MODES = ("off", "late", "predicted")


class AdmissionControl:
    """Predicted-finish admission against a :class:`ServicePredictor` and a :class:`Scheduler`."""

    def __init__(
        self,
        predictor: ServicePredictor,
        lanes: int = 1,
        mode: str = "reject",
        expiry: str = "predicted",
    ) -> None:
        if lanes < 1:
            raise ValueError(f"lanes must be >= 1, got {lanes}")
        if mode not in ADMISSION_MODES:
            raise ValueError(f"mode must be one of {ADMISSION_MODES}, got {mode!r}")
        if expiry not in EXPIRY_MODES:
            raise ValueError(f"expiry must be one of {EXPIRY_MODES}, got {expiry!r}")
        self.predictor = predictor
        self.lanes = lanes
        self.mode = mode
        self.expiry = expiry

    def service_ns(self, item: SchedItem) -> int:
        """Predicted service time of ``item`` (ns)."""
        return self.predictor.predict_ns(item.kernel, item.size_class)

    def predicted_finish_ns(
        self, item: SchedItem, now_ns: int, scheduler: Scheduler, inflight_ns: int, service_ns: int | None = None
    ) -> int:
        """Absolute predicted finish time (ns) if ``item`` were pushed now; formula in the module docstring."""
        if service_ns is None:
            service_ns = self.service_ns(item)
        wait_ns = -(-(scheduler.work_ahead_ns(item, service_ns) + inflight_ns) // self.lanes)
        return now_ns + wait_ns + service_ns

    def admit(self, item: SchedItem, now_ns: int, scheduler: Scheduler, inflight_ns: int) -> bool:
        """True when accepted but predicted to miss (flag mode); raises DEADLINE_INFEASIBLE in reject mode."""
        return self._admit(item, now_ns, scheduler, inflight_ns, self.service_ns(item))

    def submit(self, item: SchedItem, now_ns: int, scheduler: Scheduler, inflight_ns: int) -> bool:
        """:meth:`admit`, then push with the predicted service as the entry's cost (one prediction).

        Returns the flag from :meth:`admit`. Raises TaskError(DEADLINE_INFEASIBLE | QUEUE_FULL | BAD_PRIORITY).
        """
        service_ns = self.service_ns(item)
        flagged = self._admit(item, now_ns, scheduler, inflight_ns, service_ns)
        scheduler.push(item, service_ns)
        return flagged

    def _admit(self, item: SchedItem, now_ns: int, scheduler: Scheduler, inflight_ns: int, service_ns: int) -> bool:
        deadline_ns = item.deadline_ns
        if deadline_ns is None:
            return False
        ahead_ns = scheduler.work_ahead_ns(item, service_ns)
        finish_ns = now_ns + -(-(ahead_ns + inflight_ns) // self.lanes) + service_ns
        if finish_ns <= deadline_ns:
            return False
        if self.mode == "flag":
            return True
        raise TaskError(
            Code.DEADLINE_INFEASIBLE,
            f"predicted finish {(finish_ns - now_ns) / 1e3:.1f} µs after receipt > deadline "
            f"{(deadline_ns - now_ns) / 1e3:.1f} µs (queued ahead {ahead_ns / 1e3:.1f} µs + in flight "
            f"{inflight_ns / 1e3:.1f} µs over {self.lanes} lane(s), service {service_ns / 1e3:.1f} µs, "
            f"policy {scheduler.policy})",
        )

    def expired_at_dispatch(self, item: SchedItem, now_ns: int) -> bool:
        """Whether a task popped at ``now_ns`` is already late and must not run (see ``expiry``)."""
        deadline_ns = item.deadline_ns
        if deadline_ns is None or self.expiry == "off":
            return False
        if self.expiry == "late":
            return now_ns > deadline_ns
        # "Can no longer meet it" uses the expected time, not the conservative bound admission uses: at
        # dispatch the task is next to run, and dropping one that would probably finish in time is a miss too.
        return now_ns + self.predictor.mean_ns(item.kernel, item.size_class) > deadline_ns
