"""Hypothesis state machine: submit / advance clock / dispatch / complete over every policy.

Invariants: every accepted task finishes (completed, expired or drained) exactly once; the scheduler's
running totals equal the model's; an admitted task's predicted finish obeys the admission formula; under
``ps`` no backlogged level waits longer than the stride bound.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from zmqrt.errors import Code, TaskError
from zmqrt.sched import AdmissionControl, ServicePredictor, make_scheduler

LEVELS = 4
LANES = 2
KERNELS = ("vector_add", "fft")


@dataclass(eq=False)
class Task:
    seq: int
    priority: int
    deadline_ns: int | None
    period_us: float | None
    kernel: str
    size_class: int


class SchedulerMachine(RuleBasedStateMachine):
    @initialize(
        policy=st.sampled_from(["fp", "edf", "rm", "ps"]),
        mode=st.sampled_from(["reject", "flag"]),
        capacity=st.integers(1, 6),
    )
    def setup(self, policy: str, mode: str, capacity: int) -> None:
        self.now_ns = 1_000_000
        self.pred = ServicePredictor(alpha=0.2, k=2.0, default_ns=50_000)
        self.pred.seed("vector_add", 0, 10_000)
        self.sched = make_scheduler(policy, levels=LEVELS, capacity=capacity, total_capacity=capacity * 3)
        self.adm = AdmissionControl(self.pred, lanes=LANES, mode=mode, expiry="late")
        self.seq = 0
        self.queued: dict[int, int] = {}  # seq -> cost_ns
        self.lanes: list[tuple[Task, int, int] | None] = [None] * LANES  # task, cost_ns, start_ns
        self.finished: dict[int, str] = {}
        self.accepted: set[int] = set()
        self.pops_waiting = [0] * LEVELS  # ps: pops of other levels since this level was last served

    def inflight_ns(self) -> int:
        return sum(max(0, cost - (self.now_ns - start)) for lane in self.lanes if lane for _, cost, start in [lane])

    @rule(
        priority=st.integers(0, LEVELS - 1),
        deadline_us=st.none() | st.integers(0, 400),
        period_us=st.none() | st.sampled_from([10.0, 100.0, 1000.0]),
        kernel=st.sampled_from(KERNELS),
    )
    def submit(self, priority: int, deadline_us: int | None, period_us: float | None, kernel: str) -> None:
        self.seq += 1
        deadline_ns = None if deadline_us is None else self.now_ns + deadline_us * 1000
        t = Task(self.seq, priority, deadline_ns, period_us, kernel, 0)
        service_ns = self.adm.service_ns(t)
        inflight = self.inflight_ns()
        finish_ns = self.adm.predicted_finish_ns(t, self.now_ns, self.sched, inflight)
        ahead_ns = self.sched.work_ahead_ns(t, service_ns)
        assert 0 <= ahead_ns <= self.sched.queued_ns
        assert finish_ns == self.now_ns + -(-(ahead_ns + inflight) // LANES) + service_ns
        was_backlogged = self.sched.count_by_level[priority] > 0
        try:
            flagged = self.adm.submit(t, self.now_ns, self.sched, inflight)
        except TaskError as e:
            if e.code is Code.DEADLINE_INFEASIBLE:
                assert self.adm.mode == "reject" and deadline_ns is not None and finish_ns > deadline_ns
            else:
                assert e.code is Code.QUEUE_FULL
                assert (
                    self.sched.count_by_level[priority] >= self.sched.capacity_by_level[priority]
                    or len(self.sched) >= self.sched.total_capacity
                )
            return
        assert flagged == (deadline_ns is not None and finish_ns > deadline_ns)
        self.accepted.add(t.seq)
        self.queued[t.seq] = service_ns
        if not was_backlogged:
            self.pops_waiting[priority] = 0

    @rule(dt_us=st.integers(1, 200))
    def advance(self, dt_us: int) -> None:
        self.now_ns += dt_us * 1000

    @precondition(lambda self: None in self.lanes)
    @rule()
    def dispatch(self) -> None:
        entry = self.sched.pop_entry()
        if entry is None:
            return
        cost_ns, t = entry
        assert self.queued.pop(t.seq) == cost_ns
        if self.sched.policy == "ps":
            bound = self.sched.wait_bound(t.priority)
            assert self.pops_waiting[t.priority] <= bound
            for level in range(LEVELS):
                self.pops_waiting[level] = 0 if level == t.priority else self.pops_waiting[level] + 1
        if self.adm.expired_at_dispatch(t, self.now_ns):
            self._finish(t, "expired")
            return
        self.lanes[self.lanes.index(None)] = (t, cost_ns, self.now_ns)

    @rule(lane=st.integers(0, LANES - 1), took_us=st.integers(1, 60))
    def complete(self, lane: int, took_us: int) -> None:
        slot = self.lanes[lane]
        if slot is None:
            return
        t, _, _ = slot
        self.lanes[lane] = None
        self.now_ns += took_us * 1000
        self.pred.observe(t.kernel, t.size_class, took_us * 1000)
        self._finish(t, "ok")

    def _finish(self, t: Task, how: str) -> None:
        assert t.seq in self.accepted
        assert t.seq not in self.finished, "finished twice"
        self.finished[t.seq] = how

    @invariant()
    def totals_match_model(self) -> None:
        if not hasattr(self, "sched"):
            return
        assert len(self.sched) == len(self.queued)
        assert self.sched.queued_ns == sum(self.queued.values())
        assert sum(self.sched.count_by_level) == len(self.queued)
        assert all(n >= 0 for n in self.sched.queued_ns_by_level)

    def teardown(self) -> None:
        if not hasattr(self, "sched"):
            return
        for slot in self.lanes:
            if slot is not None:
                self._finish(slot[0], "ok")
        for t in self.sched.drain():
            self._finish(t, "drained")
        assert set(self.finished) == self.accepted
        assert self.sched.queued_ns == 0 and len(self.sched) == 0


TestSchedulerMachine = SchedulerMachine.TestCase
TestSchedulerMachine.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)
