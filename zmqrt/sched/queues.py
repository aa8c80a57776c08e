"""Bounded per-priority task queues under one of four real-time policies.

Contract
--------
Items are duck-typed: ``priority: int`` (0 is the most urgent, ``0..levels-1``), ``deadline_ns: int | None``
(absolute, on the server's monotonic ns clock), ``period_us: float | None``. ``seq``, ``kernel`` and
``size_class`` are not read here. Ties are broken by push order, which is arrival order because the server
pushes in ``seq`` order; using an internal counter keeps the heap from ever comparing two items.

Policies (``make_scheduler(policy, ...)``):

- ``fp``  strict fixed priority, FIFO within a level.
- ``edf`` earliest absolute deadline first; ties by priority, then arrival. Items without a deadline run
  after every item that has one, among themselves by priority then arrival.
- ``rm``  rate monotonic: shorter declared ``period_us`` first; ties by priority, then arrival. Items without
  a period run after every periodic one, among themselves by priority then arrival.
- ``ps``  proportional share over the priority levels by stride scheduling, counted in tasks. Level ``p``
  has integer weight ``w[p]`` (default ``2**(levels-1-p)``: each level gets twice the share of the next).
  With ``L = lcm(w)`` the stride is ``L // w[p]`` (exact, no rounding). The backlogged level with the
  smallest pass is served (ties: the more urgent level) and its pass grows by its stride. A level that
  becomes backlogged starts at ``max(own pass, virtual time)`` so an idle level cannot hoard credit.

  Bounds (``W`` the weight sum of the continuously backlogged levels, ``k`` their number, ``n`` pops since
  they all became backlogged): level ``p`` is served between ``n*w[p]/W - k*w[p]/W`` and ``n*w[p]/W + 1``
  times, i.e. it never gets more than one task beyond its share and never falls more than ``k`` tasks
  behind. Between two services of a backlogged level ``p`` there are at most
  ``sum_{j != p} (stride[p] // stride[j] + 1)`` other pops (:meth:`ProportionalShareScheduler.wait_bound`):
  no starvation.

Capacity: ``capacity`` is per level (an int, or one int per level) and ``total_capacity`` (optional) bounds
the sum. A push beyond either raises ``TaskError(QUEUE_FULL)`` naming the limit; nothing is dropped.

Cost accounting for admission: ``push(item, cost_ns)`` stores the item's predicted service time in its entry,
and the scheduler keeps running totals per level so :meth:`Scheduler.work_ahead_ns` costs O(levels).

Complexity: push and pop are O(log n) (``heapq``) for ``fp``/``edf``/``rm`` and O(levels) for ``ps``. The only
allocation per operation is the entry tuple. Not thread-safe: one thread owns a scheduler.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Sequence
from typing import Any, Protocol

from zmqrt.errors import Code, TaskError

POLICIES = ("fp", "edf", "rm", "ps")
DEFAULT_LEVELS = 8
DEFAULT_CAPACITY = 1024  # per level

# Sort key for items with no deadline / no period: after every real one. An int for edf so that the key
# column compares int to int; a float for rm because periods are floats.
_NO_DEADLINE = 1 << 126
_NO_PERIOD = math.inf


class SchedItem(Protocol):
    priority: int
    deadline_ns: int | None
    period_us: float | None
    seq: int
    kernel: str
    size_class: int


class Scheduler:
    """Common bookkeeping: capacity, counts and predicted-work totals per level. Use :func:`make_scheduler`."""

    policy = ""

    def __init__(
        self,
        levels: int = DEFAULT_LEVELS,
        capacity: int | Sequence[int] = DEFAULT_CAPACITY,
        total_capacity: int | None = None,
    ) -> None:
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        caps = [int(capacity)] * levels if isinstance(capacity, int) else [int(c) for c in capacity]
        if len(caps) != levels or min(caps) < 0:
            raise ValueError(f"capacity must be one non-negative int or {levels} of them, got {capacity!r}")
        self.levels = levels
        self.capacity_by_level: list[int] = caps
        self.total_capacity: int | None = total_capacity
        self.count_by_level: list[int] = [0] * levels
        self.queued_ns_by_level: list[int] = [0] * levels
        self.queued_ns: int = 0
        self._len = 0
        self._arrivals = 0

    def __len__(self) -> int:
        return self._len

    def __bool__(self) -> bool:
        return self._len > 0

    def _check_and_count(self, level: Any, cost_ns: int) -> None:
        """Validate the level, enforce capacity, then account the push (before the policy stores it)."""
        if type(level) is not int or not 0 <= level < self.levels:
            raise TaskError(Code.BAD_PRIORITY, f"priority {level!r} outside 0..{self.levels - 1}")
        if self.count_by_level[level] >= self.capacity_by_level[level]:
            raise TaskError(
                Code.QUEUE_FULL,
                f"queue for priority {level} is full ({self.capacity_by_level[level]} tasks per level)",
            )
        if self.total_capacity is not None and self._len >= self.total_capacity:
            raise TaskError(Code.QUEUE_FULL, f"scheduler is full ({self.total_capacity} tasks in total)")
        self.count_by_level[level] += 1
        self.queued_ns_by_level[level] += cost_ns
        self.queued_ns += cost_ns
        self._len += 1

    def _uncount(self, level: int, cost_ns: int) -> None:
        self.count_by_level[level] -= 1
        self.queued_ns_by_level[level] -= cost_ns
        self.queued_ns -= cost_ns
        self._len -= 1

    def push(self, item: SchedItem, cost_ns: int = 0) -> None:
        """Queue ``item`` with predicted service ``cost_ns``. Raises TaskError(QUEUE_FULL | BAD_PRIORITY)."""
        raise NotImplementedError

    def pop(self) -> SchedItem | None:
        """Remove and return the next item under the policy, or None when empty."""
        entry = self.pop_entry()
        return None if entry is None else entry[1]

    def pop_entry(self) -> tuple[int, SchedItem] | None:
        """Like :meth:`pop` but returns ``(cost_ns, item)``, the cost given at push."""
        raise NotImplementedError

    def peek(self) -> SchedItem | None:
        """The item :meth:`pop` would return, without removing it."""
        raise NotImplementedError

    def drain(self) -> list[SchedItem]:
        """Remove and return every queued item in policy order (shutdown path)."""
        out = []
        while self._len:
            out.append(self.pop())
        return out

    def work_ahead_ns(self, item: SchedItem, service_ns: int) -> int:
        """Predicted queued work that would run before ``item`` if pushed now (O(levels)); see subclasses."""
        raise NotImplementedError


class FixedPriorityScheduler(Scheduler):
    """``fp``: strict priority, FIFO within a level."""

    policy = "fp"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._heap: list[tuple[int, int, int, SchedItem]] = []

    def push(self, item: SchedItem, cost_ns: int = 0) -> None:
        level = item.priority
        self._check_and_count(level, cost_ns)
        self._arrivals += 1
        heapq.heappush(self._heap, (level, self._arrivals, cost_ns, item))

    def pop_entry(self) -> tuple[int, SchedItem] | None:
        if not self._heap:
            return None
        level, _, cost_ns, item = heapq.heappop(self._heap)
        self._uncount(level, cost_ns)
        return cost_ns, item

    def peek(self) -> SchedItem | None:
        return self._heap[0][3] if self._heap else None

    def work_ahead_ns(self, item: SchedItem, service_ns: int) -> int:
        """Exact for the queued work: every item of the same or a more urgent level is ahead (FIFO).
        Later arrivals at more urgent levels are not foreseen."""
        q = self.queued_ns_by_level
        total = 0
        for level in range(item.priority + 1):
            total += q[level]
        return total


class _KeyedScheduler(Scheduler):
    """A heap on ``(key, priority, arrival)``; items whose key is missing sort after all keyed ones."""

    _missing: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._heap: list[tuple[Any, int, int, int, SchedItem]] = []
        self.keyed_ns = 0  # predicted work of queued items that have a key
        self.keyed_count = 0
        self.unkeyed_ns_by_level: list[int] = [0] * self.levels

    def _key(self, item: SchedItem) -> Any:
        raise NotImplementedError

    def push(self, item: SchedItem, cost_ns: int = 0) -> None:
        level = item.priority
        key = self._key(item)
        self._check_and_count(level, cost_ns)
        if key is None:
            key = self._missing
            self.unkeyed_ns_by_level[level] += cost_ns
        else:
            self.keyed_ns += cost_ns
            self.keyed_count += 1
        self._arrivals += 1
        heapq.heappush(self._heap, (key, level, self._arrivals, cost_ns, item))

    def pop_entry(self) -> tuple[int, SchedItem] | None:
        if not self._heap:
            return None
        key, level, _, cost_ns, item = heapq.heappop(self._heap)
        self._uncount(level, cost_ns)
        if key == self._missing:
            self.unkeyed_ns_by_level[level] -= cost_ns
        else:
            self.keyed_ns -= cost_ns
            self.keyed_count -= 1
        return cost_ns, item

    def peek(self) -> SchedItem | None:
        return self._heap[0][4] if self._heap else None

    def work_ahead_ns(self, item: SchedItem, service_ns: int) -> int:
        """Upper bound in O(levels), exact at both ends.

        A keyed item whose key is smaller than every queued key has nothing queued ahead (0). Otherwise all
        queued keyed work is counted as ahead, which is exact when its key is the largest and pessimistic in
        between (an exact answer would need an order-statistic tree over keys). An item without a key has all
        keyed work ahead plus the unkeyed work of its own and more urgent levels.
        """
        key = self._key(item)
        if key is None:
            ahead = self.keyed_ns
            q = self.unkeyed_ns_by_level
            for level in range(item.priority + 1):
                ahead += q[level]
            return ahead
        if self.keyed_count == 0 or key < self._heap[0][0]:
            return 0
        return self.keyed_ns


class EarliestDeadlineScheduler(_KeyedScheduler):
    """``edf``: earliest absolute deadline first; no deadline runs last."""

    policy = "edf"
    _missing = _NO_DEADLINE

    def _key(self, item: SchedItem) -> int | None:
        return item.deadline_ns


class RateMonotonicScheduler(_KeyedScheduler):
    """``rm``: shortest declared period first; no period runs last."""

    policy = "rm"
    _missing = _NO_PERIOD

    def _key(self, item: SchedItem) -> float | None:
        return item.period_us


def default_weights(levels: int) -> list[int]:
    """``2**(levels-1-p)``: level 0 gets twice the share of level 1, and so on."""
    return [1 << (levels - 1 - p) for p in range(levels)]


class ProportionalShareScheduler(Scheduler):
    """``ps``: stride scheduling over the levels; see the module docstring for the bounds."""

    policy = "ps"

    def __init__(
        self,
        levels: int = DEFAULT_LEVELS,
        capacity: int | Sequence[int] = DEFAULT_CAPACITY,
        total_capacity: int | None = None,
        weights: Sequence[int] | None = None,
    ) -> None:
        super().__init__(levels, capacity, total_capacity)
        w = default_weights(levels) if weights is None else [int(x) for x in weights]
        if len(w) != levels or min(w) < 1 or any(int(x) != x for x in (weights or ())):
            raise ValueError(f"weights must be {levels} positive ints, got {weights!r}")
        self.weights: list[int] = w
        lcm = math.lcm(*w)
        self.strides: list[int] = [lcm // x for x in w]
        self.passes: list[int] = [0] * levels
        self.virtual_time = 0
        self._queues: list[deque[tuple[int, SchedItem]]] = [deque() for _ in range(levels)]

    def push(self, item: SchedItem, cost_ns: int = 0) -> None:
        level = item.priority
        self._check_and_count(level, cost_ns)
        q = self._queues[level]
        if not q and self.passes[level] < self.virtual_time:
            self.passes[level] = self.virtual_time
        q.append((cost_ns, item))

    def _next_level(self) -> int:
        best = -1
        best_pass = 0
        passes = self.passes
        for level, q in enumerate(self._queues):
            if q and (best < 0 or passes[level] < best_pass):
                best = level
                best_pass = passes[level]
        return best

    def pop_entry(self) -> tuple[int, SchedItem] | None:
        if not self._len:
            return None
        level = self._next_level()
        cost_ns, item = self._queues[level].popleft()
        self.virtual_time = self.passes[level]
        self.passes[level] += self.strides[level]
        self._uncount(level, cost_ns)
        return cost_ns, item

    def peek(self) -> SchedItem | None:
        if not self._len:
            return None
        return self._queues[self._next_level()][0][1]

    def wait_bound(self, level: int) -> int:
        """Most pops of other levels between two services of ``level`` while it stays backlogged."""
        s = self.strides[level]
        return sum(s // self.strides[j] + 1 for j in range(self.levels) if j != level)

    def work_ahead_ns(self, item: SchedItem, service_ns: int) -> int:
        """Estimate in O(levels): the queued work of the item's own level (FIFO) plus, for every other
        backlogged level ``j``, the tasks stride scheduling interleaves meanwhile. While ``m`` tasks of level
        ``p`` run, ``j`` runs at most ``ceil(m * w[j] / w[p]) + 1`` tasks (the bound above); their work is taken
        at that level's mean queued task size, so this is an estimate, not a hard bound."""
        p = item.priority
        m = self.count_by_level[p] + 1
        wp = self.weights[p]
        ahead = self.queued_ns_by_level[p]
        for j in range(self.levels):
            n_j = self.count_by_level[j]
            if j == p or n_j == 0:
                continue
            runs_j = -(-m * self.weights[j] // wp) + 1
            if runs_j >= n_j:
                ahead += self.queued_ns_by_level[j]
            else:
                ahead += self.queued_ns_by_level[j] * runs_j // n_j
        return ahead


_CLASSES: dict[str, type[Scheduler]] = {
    "fp": FixedPriorityScheduler,
    "edf": EarliestDeadlineScheduler,
    "rm": RateMonotonicScheduler,
    "ps": ProportionalShareScheduler,
}


def make_scheduler(
    policy: str,
    levels: int = DEFAULT_LEVELS,
    capacity: int | Sequence[int] = DEFAULT_CAPACITY,
    weights: Sequence[int] | None = None,
    total_capacity: int | None = None,
) -> Scheduler:
    """A scheduler for ``policy`` in ``fp|edf|rm|ps``. ``weights`` is only meaningful for ``ps``."""
    cls = _CLASSES.get(policy)
    if cls is None:
        raise ValueError(f"unknown policy {policy!r}; expected one of {', '.join(POLICIES)}")
    if cls is ProportionalShareScheduler:
        return ProportionalShareScheduler(levels, capacity, total_capacity, weights)
    if weights is not None:
        raise ValueError(f"weights apply to policy 'ps' only, not {policy!r}")
    return cls(levels, capacity, total_capacity)
