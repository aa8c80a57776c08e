"""An open-loop producer: sends tasks at their *intended* times and measures latency from those times.

One thread both sends and receives (no GIL hand-off between a sender and a receiver thread, which would add
milliseconds of jitter): it spins until the next intended send time, draining results in between. Latency
is measured from the intended send time, so a server stall shows in the percentiles instead of silently
slowing the sender (coordinated omission, as in wrk2).

Results come to a PULL socket this producer binds, named in every task's ``reply_to``, so several producers
against one server each get exactly their own results.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import msgpack
import numpy as np
import zmq

from ._sockets import connect_ingest
from .protocol import _LAT_QS_HEAD, _OK_ID_HEAD, _OK_STATUS, _SERVICE_KEY, encode_task
from .template import BAD, scalar_at

log = logging.getLogger("zmqrt.loadgen")


@dataclass(slots=True)
class Planned:
    """One task to send ``at_ns`` after the start."""

    at_ns: int
    kernel: str
    inputs: Sequence[np.ndarray]
    params: dict | None = None
    priority: int | None = None
    deadline_us: float | None = None
    period_us: float | None = None
    tag: str = ""  # scenario or mix entry this task belongs to


@dataclass(slots=True)
class Record:
    """What happened to one task. Times are ``perf_counter_ns`` on this host; ``-1`` means never."""

    index: int
    tag: str
    kernel: str
    priority: int | None
    intended_ns: int
    sent_ns: int = -1
    done_ns: int = -1
    status: str = "lost"
    code: str = ""
    message: str = ""
    missed_deadline: bool = False
    server_latency_us: dict = field(default_factory=dict)
    outputs: list | None = None

    @property
    def latency_ns(self) -> int:
        """From the intended send time to receipt of the result (coordinated-omission free)."""
        return self.done_ns - self.intended_ns if self.done_ns >= 0 else -1

    @property
    def service_ns(self) -> int:
        return self.done_ns - self.sent_ns if self.done_ns >= 0 else -1


_OK_TAIL = len(_LAT_QS_HEAD[0]) + 8 + len(_SERVICE_KEY) + 8  # missed flag, {"queue": f64, "service": f64}
_F64 = struct.Struct(">d").unpack_from


def fast_ok(frame: bytes) -> tuple[int | str, bool, dict] | None:
    """(id, missed_deadline, latency_us) of an untimed ok result (``OkEncoder``'s layout) without unpacking its
    outputs, or None for any other frame (which then takes ``msgpack.unpackb``). Why: at 20k+ results a second per
    producer, unpacking each 1 KiB result cost the producer more than the server's own work per task, and a late
    producer is latency."""
    if not frame.startswith(_OK_ID_HEAD) or len(frame) < len(_OK_ID_HEAD) + len(_OK_STATUS) + _OK_TAIL:
        return None
    rid, pos = scalar_at(frame, len(_OK_ID_HEAD))
    if rid is BAD or not frame.startswith(_OK_STATUS, pos):
        return None
    t = len(frame) - _OK_TAIL
    q = t + len(_LAT_QS_HEAD[0])
    if frame.startswith(_LAT_QS_HEAD[0], t):
        missed = False
    elif frame.startswith(_LAT_QS_HEAD[1], t):
        missed = True
    else:
        return None
    if not frame.startswith(_SERVICE_KEY, q + 8):
        return None
    return rid, missed, {"queue": _F64(frame, q)[0], "service": _F64(frame, q + 8 + len(_SERVICE_KEY))[0]}


def _decode_outputs(items) -> list[np.ndarray]:
    return [np.frombuffer(o["data"], dtype=o["dtype"]).reshape(o["shape"]) for o in items]


def _connect_push(push: zmq.Socket, ingest_endpoint: str, curve: tuple[str, str] | None) -> None:
    push.setsockopt(zmq.LINGER, 1000)
    push.setsockopt(zmq.SNDHWM, 0)  # open loop: queue rather than block or drop when the server lags
    if curve is not None:
        from zmqrt.security import apply_client

        apply_client(push, curve[0], curve[1])
    connect_ingest(push, ingest_endpoint)


@contextlib.contextmanager
def _no_collection():
    """The cyclic garbage collector frozen and off while a producer sends. Its frames and records (367k tasks make
    1.1 million tracked objects) make each full collection a pause of 186 ms on a dev VM, and every result that
    arrives meanwhile waits in the socket. In four 200k tasks/s runs on the GPU host, every 100 ms window with a p99
    over 1 ms (up to 18 ms) fell in the first 3 s, when those passes come (bench/NOTES.md 33). The send loop makes
    no reference cycles; refcounting frees what it drops. Process-wide, as the collector is: a producer is a
    process of its own (``ingest.loadgen``)."""
    was_on = gc.isenabled()
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.unfreeze()
        if was_on:
            gc.enable()


def _prepare(plan: Sequence[Planned], id_prefix: str, reply_to: str,
             ready: Callable[[], object] | None = None) -> tuple[list[bytes], list[Record], int]:
    """Every frame encoded before the first send, so encoding never delays one; a record per task; and the start
    on this host's clock, 20 ms from now, for the connection to settle. The records hold their times *relative to
    the start* until ``_anchor``: the start is taken after every record is built. Built after it (as before
    session 18), 367k records took 0.16 to 0.3 s, and every producer began that far behind its schedule: the
    latency from the intended send had a p99 of 160 to 330 ms from that alone (bench/NOTES.md 33). ``ready()``, when
    given, is called between the two: the load generator's producers wait there for each other."""
    frames = [encode_task(f"{id_prefix}{i}", p.kernel, p.inputs, p.params, p.priority, p.deadline_us, p.period_us,
                          reply_to) for i, p in enumerate(plan)]
    records = [Record(i, p.tag, p.kernel, p.priority, p.at_ns) for i, p in enumerate(plan)]
    if ready is not None:
        ready()
    return frames, records, time.perf_counter_ns() + 20_000_000


def _anchor(records: list[Record], start_ns: int) -> list[Record]:
    """The records' intended times on the host's clock, once the sending is over."""
    for rec in records:
        rec.intended_ns += start_ns
    return records


@_no_collection()
def run_open_loop(
    ingest_endpoint: str,
    plan: Sequence[Planned],
    *,
    timeout_s: float = 5.0,
    keep_outputs: Callable[[int], bool] | None = None,
    ctx: zmq.Context | None = None,
    reply_bind: str = "tcp://127.0.0.1:*",
    progress: Callable[[int, int], None] | None = None,
    id_prefix: str = "",
    curve: tuple[str, str] | None = None,
    collector: bool = False,
    drain_per_send: int = 64,
    ready: Callable[[], object] | None = None,
) -> list[Record]:
    """Send ``plan`` (sorted by ``at_ns``) open loop; wait up to ``timeout_s`` after the last send for results.

    ``keep_outputs(i)`` says which results keep their decoded outputs (for checking against numpy). A task with
    no result by the timeout stays ``status == "lost"``. ``progress(done, total)`` is called about 10x a second.
    ``curve`` = (producer secret certificate, server public certificate) for a server with CURVE on.
    ``collector``: results go to a second process (``ingest.collector``) and this thread only sends, so a result
    never waits for the sender to look (for rates one thread cannot both send and receive).
    ``drain_per_send``: behind schedule, results taken at most between two sends (at least 1).
    ``ready()``: called once every frame is encoded, just before the start is taken (several producers wait there
    for each other, so that their schedules start together).
    """
    if drain_per_send < 1:
        raise ValueError(f"drain_per_send must be at least 1, not {drain_per_send}")
    if collector:
        return _run_with_collector(ingest_endpoint, plan, timeout_s, keep_outputs, ctx, reply_bind, progress,
                                   id_prefix, curve, ready)
    own_ctx = ctx is None
    ctx = ctx or zmq.Context()
    pull = ctx.socket(zmq.PULL)
    push = ctx.socket(zmq.PUSH)
    try:
        pull.setsockopt(zmq.LINGER, 0)
        pull.setsockopt(zmq.RCVHWM, 0)  # never drop our own results
        pull.bind(reply_bind)
        reply_to = pull.getsockopt_string(zmq.LAST_ENDPOINT)
        _connect_push(push, ingest_endpoint, curve)
        frames, records, start = _prepare(plan, id_prefix, reply_to, ready)
        pc = time.perf_counter_ns
        recv = pull.recv
        nonblock = zmq.NOBLOCK
        unpackb = msgpack.unpackb
        n = len(plan)
        prefix_len = len(id_prefix)
        done = 0
        next_progress = 0
        i = 0

        readable = pull.getsockopt
        EVENTS, POLLIN = int(zmq.EVENTS), int(zmq.POLLIN)  # plain ints: IntFlag.__and__ is slow

        def drain_one() -> bool:
            nonlocal done
            # ZMQ_EVENTS first: a NOBLOCK recv that finds nothing raises zmq.Again, which costs several µs.
            if not readable(EVENTS) & POLLIN:
                return False
            frame = recv(nonblock)
            t = pc()
            fast = fast_ok(frame)
            if fast is not None:
                rid = fast[0]
                msg = None
            else:
                msg = unpackb(frame, raw=False)
                rid = msg.get("id")
            try:
                idx = int(str(rid)[prefix_len:])
                rec = records[idx]
            except (ValueError, IndexError):
                return True  # not ours; counted by the caller through the missing ids
            if rec.done_ns >= 0:
                rec.code = "DUPLICATE_RESULT"
                return True
            rec.done_ns = t
            if fast is not None and (keep_outputs is None or not keep_outputs(idx)):
                rec.status, rec.code, rec.message = "ok", "OK", ""
                rec.missed_deadline, rec.server_latency_us = fast[1], fast[2]
                done += 1
                return True
            if msg is None:
                msg = unpackb(frame, raw=False)
            rec.status = msg.get("status", "?")
            rec.code = msg.get("code", "")
            rec.message = msg.get("message", "")
            rec.missed_deadline = bool(msg.get("missed_deadline", False))
            rec.server_latency_us = msg.get("latency_us") or {}
            if keep_outputs is not None and keep_outputs(idx) and msg.get("outputs"):
                rec.outputs = _decode_outputs(msg["outputs"])
            done += 1
            return True

        while i < n:
            now = pc()
            if now >= start + records[i].intended_ns:
                push.send(frames[i], copy=True)
                records[i].sent_ns = pc()
                i += 1
                # Behind schedule the sends come back to back; still take the results waiting, up to a bound, or
                # the server's outbox to us fills and it has to count our results as undeliverable. One per send
                # was not enough: a burst of results then stood in our socket for as long as we stayed behind
                # (their round trip counting our backlog, not the server's), and 64 bound the sends' delay.
                for _ in range(drain_per_send):
                    if not drain_one():
                        break
                continue
            if not drain_one() and progress is not None and now >= next_progress:
                progress(done, n)
                next_progress = now + 100_000_000
        give_up = pc() + int(timeout_s * 1e9)
        while done < n and pc() < give_up:
            if pull.poll(10):
                while drain_one():
                    pass
            if progress is not None and pc() >= next_progress:
                progress(done, n)
                next_progress = pc() + 100_000_000
        if progress is not None:
            progress(done, n)
        return _anchor(records, start)
    finally:
        push.close(linger=0)
        pull.close(linger=0)
        if own_ctx:
            ctx.term()


def _run_with_collector(ingest_endpoint: str, plan: Sequence[Planned], timeout_s: float,
                        keep_outputs: Callable[[int], bool] | None, ctx: zmq.Context | None, reply_bind: str,
                        progress: Callable[[int, int], None] | None, id_prefix: str,
                        curve: tuple[str, str] | None, ready: Callable[[], object] | None) -> list[Record]:
    """``run_open_loop(..., collector=True)``: this thread sends on time; a collector process stamps the results."""
    from .collector import CollectorProcess

    n = len(plan)
    keep = np.fromiter((keep_outputs(i) for i in range(n)), bool, n) if keep_outputs is not None else None
    own_ctx = ctx is None
    ctx = ctx or zmq.Context()
    push = ctx.socket(zmq.PUSH)
    try:
        with CollectorProcess(reply_bind, n, id_prefix, keep, timeout_s) as coll:
            _connect_push(push, ingest_endpoint, curve)
            frames, records, start = _prepare(plan, id_prefix, coll.endpoint, ready)
            pc = time.perf_counter_ns
            send = push.send
            next_progress = 0
            for rec, frame in zip(records, frames):  # noqa: B905 - one frame per record
                at = start + rec.intended_ns
                now = pc()
                while now < at:
                    if progress is not None and now >= next_progress:
                        progress(coll.received, n)
                        next_progress = now + 100_000_000
                    now = pc()
                # Stamped before the send: after it, a sender descheduled in between would stamp a result that the
                # collector had already taken (on a host with fewer CPUs than busy processes).
                rec.sent_ns = now
                send(frame, copy=True)
            got = coll.finish()
    finally:
        push.close(linger=0)
        if own_ctx:
            ctx.term()
    for i, rec in enumerate(records):
        t = int(got.done_ns[i])
        if t < 0:
            continue
        rec.done_ns = t
        if got.fast[i]:
            rec.status, rec.code = "ok", "OK"
            rec.missed_deadline = bool(got.missed[i])
            rec.server_latency_us = {"queue": float(got.queue_us[i]), "service": float(got.service_us[i])}
        else:
            rec.status, rec.code, rec.message, rec.missed_deadline, rec.server_latency_us, rec.outputs = got.full[i]
    if got.duplicates:  # the single-thread path marks the task; here only the count is known
        log.warning("%d duplicate results", got.duplicates)
    if progress is not None:
        progress(int((got.done_ns >= 0).sum()), n)
    return _anchor(records, start)
