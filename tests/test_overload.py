"""The overload ledger: a burst far beyond what the server can serve, through real sockets, on the CPU backend.

Two producers push several thousand tasks as fast as ZeroMQ takes them (a small queue, so QUEUE_FULL; some tight
deadlines, so DEADLINE_INFEASIBLE and EXPIRED), each with its own reply endpoint, then collect results until every
task is answered. The ledger, per producer: every task sent gets exactly one result (none lost, none duplicated,
none unexpected), each an answer (ok, rejected or expired, never error); and memory stays bounded: the scheduler
never holds more than its capacity, and the result router's backlog never passes its cap and drops nothing.

The slow-consumer variant keeps one producer from reading its results for a while: they wait in the router's
backlog; at ``max_backlog`` the server stops reading tasks (pushing back on both producers through the ingest HWM)
until the consumer reads again. Still nothing is lost.

This relies on the server's side of the backlog: it calls ``router.flush()`` on every loop pass and stops reading
ingest while ``router.backlog_full`` (zmqrt/server.py).
"""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pytest
import zmq

from ingest.protocol import decode_result, encode_task
from tests.server_support import running_server
from zmqrt.backends.cpu import CpuBackend
from zmqrt.kernels.registry import load_registry

TASKS_PER_PRODUCER = 3000
QUEUE_CAPACITY = 16  # per priority level
PRIORITIES = 3  # tasks use levels 0..2
LANES = 2
SERVICE_US = 200  # each task holds its lane this long (PacedCpuBackend): the server serves 10k tasks a second
RESULT_HWM = 20  # the server's outbox per producer: small, so a consumer that does not read fills it at once
CONSUMER_RCVHWM = 20
TIMEOUT_S = 12.0  # the whole exchange; it takes about 1 s (2 s with the slow consumer) on a laptop
HOLD_FULL_S = 0.3  # a paused consumer starts reading once the router's backlog has been full this long...
MAX_PAUSE_S = 4.0  # ...or after this long, if it never fills
ANSWERS = {"ok", "rejected", "expired"}


class PacedCpuBackend(CpuBackend):
    """The CPU backend with a GPU-like service time: a lane is busy for SERVICE_US after submit. (The plain CPU
    backend finishes inside submit, so the server reads one frame per pass and is never behind its ingest.)"""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self._busy_until = [0] * self.lanes

    def submit(self, lane: int, *a, **kw) -> None:
        super().submit(lane, *a, **kw)
        self._busy_until[lane] = time.perf_counter_ns() + SERVICE_US * 1000

    def poll(self, lane: int) -> bool:
        return time.perf_counter_ns() >= self._busy_until[lane]


class Producer:
    """One producer: a PUSH to the ingest, its own bound PULL for results, pre-encoded tasks, and its ledger."""

    def __init__(self, ctx: zmq.Context, name: str, ingest: str, reply_endpoint: str, n: int,
                 paused: bool = False, size: int = 16) -> None:
        self.name = name
        self.pull = ctx.socket(zmq.PULL)
        self.pull.setsockopt(zmq.LINGER, 0)
        self.pull.setsockopt(zmq.RCVHWM, CONSUMER_RCVHWM)
        self.pull.bind(reply_endpoint)
        self.reply_to = self.pull.getsockopt_string(zmq.LAST_ENDPOINT)
        self.push = ctx.socket(zmq.PUSH)
        self.push.setsockopt(zmq.LINGER, 0)
        self.push.setsockopt(zmq.SNDHWM, 200)
        self.push.connect(ingest)
        x = np.arange(size, dtype=np.float32)
        self.ids = [f"{name}-{i}" for i in range(n)]
        # Every 4th task has a deadline far tighter than the uncalibrated predictor's guess (DEADLINE_INFEASIBLE,
        # or EXPIRED once a probe gets it in); the rest have none.
        self.frames = [encode_task(tid, "vector_add", [x, x], priority=i % PRIORITIES,
                                   deadline_us=200 if i % 4 == 0 else None, reply_to=self.reply_to)
                       for i, tid in enumerate(self.ids)]
        self.next = 0  # frames sent so far (ZeroMQ took them)
        self.refused_sends = 0  # sends that found the ingest path full: backpressure reached this producer
        self.paused = paused  # a slow consumer: reads no result until run_burst releases it
        self.results: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        self.codes: Counter[str] = Counter()
        self.unexpected: list[object] = []
        self._known = set(self.ids)

    def pump_send(self, budget: int) -> None:
        end = min(len(self.frames), self.next + budget)
        while self.next < end:
            try:
                self.push.send(self.frames[self.next], zmq.NOBLOCK)
            except zmq.Again:
                self.refused_sends += 1
                return
            self.next += 1

    def pump_recv(self) -> None:
        if self.paused:
            return
        pull = self.pull
        while pull.poll(0, zmq.POLLIN):
            res = decode_result(pull.recv())
            if res.id not in self._known:
                self.unexpected.append(res.id)
                continue
            self.results[res.id] += 1
            self.statuses[res.status.value] += 1
            self.codes[res.code.value] += 1

    @property
    def answered(self) -> int:
        return len(self.results)

    def check_ledger(self) -> None:
        sent = set(self.ids[: self.next])
        assert self.next == len(self.ids), f"{self.name}: only {self.next} of {len(self.ids)} tasks could be sent"
        lost = sent - set(self.results)
        duplicated = {tid: c for tid, c in self.results.items() if c > 1}
        assert not lost, f"{self.name}: {len(lost)} task(s) got no result, e.g. {sorted(lost)[:5]}"
        assert not duplicated, f"{self.name}: duplicated results {list(duplicated.items())[:5]}"
        assert not self.unexpected, f"{self.name}: results for tasks it never sent: {self.unexpected[:5]}"
        assert set(self.statuses) <= ANSWERS, f"{self.name}: statuses {dict(self.statuses)}"
        assert self.statuses.get("error", 0) == 0


def run_burst(server, producers: list[Producer]) -> dict[str, float]:
    """Send every producer's burst as fast as the ingest takes it while collecting results; stop once every task is
    answered (or at TIMEOUT_S), then listen a little longer so a duplicate would show. Samples the memory bounds.

    A paused producer starts reading once the router's backlog has been full for HOLD_FULL_S (the server has
    stopped reading tasks meanwhile), or after MAX_PAUSE_S if it never fills."""
    router, sched = server.router, server.sched
    peak: dict[str, float] = {"queued_per_level": 0, "backlog": 0, "full_s": 0.0}
    poller = zmq.Poller()
    for p in producers:
        poller.register(p.pull, zmq.POLLIN)
    start = time.monotonic()
    end = start + TIMEOUT_S
    full_since: float | None = None
    while True:
        now = time.monotonic()
        for p in producers:
            p.pump_send(500)
            p.pump_recv()
        peak["queued_per_level"] = max(peak["queued_per_level"], max(sched.count_by_level))
        peak["backlog"] = max(peak["backlog"], router.backlog)
        if any(p.paused for p in producers):
            if full_since is None and router.backlog_full:
                full_since = now
            if (full_since is not None and now - full_since >= HOLD_FULL_S) or now - start >= MAX_PAUSE_S:
                peak["full_s"] = 0.0 if full_since is None else now - full_since
                for p in producers:
                    p.paused = False
        if all(p.next == len(p.frames) and p.answered == len(p.frames) for p in producers) or now > end:
            break
        poller.poll(1)  # yields the GIL to the server thread
    quiet_end = time.monotonic() + 0.3
    while time.monotonic() < quiet_end:
        poller.poll(20)
        for p in producers:
            p.pump_recv()
    peak["elapsed_s"] = time.monotonic() - start
    return peak


def overload_server(ingest: str):
    # batch_max=1: the paced backend takes as long for a batch as for one task, so batching would multiply its
    # capacity and the burst would no longer overload it (batching has its own tests in test_server_e2e.py).
    return running_server(ingest, lanes=LANES, queue_capacity=QUEUE_CAPACITY, result_hwm=RESULT_HWM,
                          ingest_hwm=200, linger_ms=1000, drain_timeout_s=1.0, batch_max=1,
                          backend_instance=PacedCpuBackend(load_registry(), lanes=LANES))


def check_server_bounds(server, peak: dict[str, float]) -> None:
    router = server.router
    assert peak["queued_per_level"] <= QUEUE_CAPACITY
    assert max(server.sched.capacity_by_level) == QUEUE_CAPACITY
    assert router.backlog_peak <= router.max_backlog + router.reserve
    assert router.undeliverable == 0, dict(router.undeliverable_by_reason)
    assert router.backlog == 0


@pytest.mark.parametrize("transport", ["ipc", "tcp"])
def test_overload_burst_every_task_answered_exactly_once(ipc_endpoint, transport):
    reply = ipc_endpoint if transport == "ipc" else (lambda: "tcp://127.0.0.1:*")
    with overload_server(ipc_endpoint()) as server:
        ctx = zmq.Context()
        try:
            producers = [Producer(ctx, name, server.receiver.endpoint, reply(), TASKS_PER_PRODUCER)
                         for name in ("a", "b")]
            peak = run_burst(server, producers)
            for p in producers:
                p.check_ledger()
            codes = sum((p.codes for p in producers), Counter())
            assert codes["QUEUE_FULL"] > 0 and codes["OK"] > 0, codes  # it really was overloaded, and served
            check_server_bounds(server, peak)
        finally:
            ctx.destroy(linger=0)


def test_overload_with_a_slow_consumer_loses_nothing(ipc_endpoint):
    # ipc: the kernel's unix-socket buffers are fixed, so the slow consumer's results surely overflow into the
    # router's backlog; over tcp, buffer autotuning may absorb them all.
    with overload_server(ipc_endpoint()) as server:
        router = server.router
        # A small backlog cap, so the slow consumer's results reach it and the server has to stop reading. The
        # reserve covers what the server still produces once it stops: queued, running and read-ahead tasks.
        router.max_backlog = 300
        router.reserve = QUEUE_CAPACITY * server.cfg.priority_levels + LANES + 64
        ctx = zmq.Context()
        try:
            fast = Producer(ctx, "fast", server.receiver.endpoint, ipc_endpoint(), TASKS_PER_PRODUCER)
            # 4 KiB results (for the tasks that run), and it reads nothing until the backlog has been full a while.
            slow = Producer(ctx, "slow", server.receiver.endpoint, ipc_endpoint(), TASKS_PER_PRODUCER, paused=True,
                            size=1024)
            peak = run_burst(server, [fast, slow])
            fast.check_ledger()
            slow.check_ledger()
            assert router.backlog_peak >= router.max_backlog, ("the slow consumer never filled the backlog", peak)
            assert peak["full_s"] >= HOLD_FULL_S
            check_server_bounds(server, peak)
        finally:
            ctx.destroy(linger=0)
