"""A results collector in its own process, for an open-loop producer that only sends (``run_open_loop(...,
collector=True)``).

Why: one Python thread that both sends and receives takes a result only between sends. At 30k+ tasks a second per
producer it falls behind, sends back to back, and each result then waits in its socket until the next send lets
the thread look: the producer's own lag, counted as the server's round trip (bench/NOTES.md 31 and 32). A thread
would not help, since the GIL hands over in milliseconds. A second process reads the results as they come and
stamps them with ``perf_counter_ns`` (CLOCK_MONOTONIC on Linux, the same clock as the sender's), so a round trip
from the actual send is the server and the sockets only.

Protocol over the pipe: the collector sends its bound endpoint; the sender sends the number of tasks it sent and
the time its last send went out once it is done; the collector answers with :class:`Collected` once it has every
result or ``timeout_s`` after that.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from dataclasses import dataclass, field

import msgpack
import numpy as np
import zmq

__all__ = ["Collected", "CollectorProcess"]


@dataclass
class Collected:
    """Per task ``i`` of the plan: ``done_ns[i]`` (-1: none came). Tasks whose result was an untimed ok without
    outputs kept have ``fast[i]`` with ``missed``, ``queue_us`` and ``service_us``; every other result is in
    ``full[i]`` as ``(status, code, message, missed, latency_us, outputs or None)``."""

    done_ns: np.ndarray
    fast: np.ndarray
    missed: np.ndarray
    queue_us: np.ndarray
    service_us: np.ndarray
    full: dict = field(default_factory=dict)
    duplicates: int = 0
    foreign: int = 0


def _collect(bind: str, n: int, prefix: str, keep: np.ndarray | None, timeout_s: float, conn, counter) -> None:
    """The collector process's body (spawned: everything it needs comes as arguments)."""
    from .openloop import _decode_outputs, fast_ok  # a cycle at import time otherwise

    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.LINGER, 0)
    pull.setsockopt(zmq.RCVHWM, 0)  # never drop our own results
    pull.bind(bind)
    conn.send(pull.getsockopt_string(zmq.LAST_ENDPOINT))
    out = Collected(np.full(n, -1, np.int64), np.zeros(n, bool), np.zeros(n, bool), np.zeros(n), np.zeros(n))
    pc = time.perf_counter_ns
    recv = pull.recv
    readable = pull.getsockopt
    events, pollin = int(zmq.EVENTS), int(zmq.POLLIN)  # plain ints: IntFlag.__and__ is slow
    plen = len(prefix)
    done = 0
    give_up = None
    next_check = 0
    try:
        while done < n:
            # Spin, as the single-thread producer did: a blocking poll's wake-up would count as round trip.
            if not readable(events) & pollin:
                now = pc()
                if now >= next_check:
                    next_check = now + 100_000_000
                    counter.value = done
                    if give_up is None and conn.poll():
                        conn.recv()  # the sender is done: wait timeout_s more at most
                        give_up = now + int(timeout_s * 1e9)
                    if give_up is not None and now > give_up:
                        break
                continue
            frame = recv(zmq.NOBLOCK)  # one is there: no zmq.Again to pay for
            t = pc()
            fast = fast_ok(frame)
            msg = None if fast is not None else msgpack.unpackb(frame, raw=False)
            if msg is not None and type(msg) is not dict:
                out.foreign += 1
                continue
            rid = fast[0] if fast is not None else msg.get("id")
            try:
                idx = int(str(rid)[plen:])
                if not 0 <= idx < n:
                    raise IndexError
            except (ValueError, IndexError):
                out.foreign += 1
                continue
            if out.done_ns[idx] >= 0:
                out.duplicates += 1
                continue
            out.done_ns[idx] = t
            done += 1
            if fast is not None and (keep is None or not keep[idx]):
                out.fast[idx] = True
                out.missed[idx] = fast[1]
                out.queue_us[idx] = fast[2]["queue"]
                out.service_us[idx] = fast[2]["service"]
                continue
            if msg is None:
                msg = msgpack.unpackb(frame, raw=False)
            outputs = (_decode_outputs(msg["outputs"]) if keep is not None and keep[idx] and msg.get("outputs")
                       else None)
            out.full[idx] = (msg.get("status", "?"), msg.get("code", ""), msg.get("message", ""),
                             bool(msg.get("missed_deadline", False)), msg.get("latency_us") or {}, outputs)
        counter.value = done
        if give_up is None:
            conn.recv()  # every result came: still wait for the sender's word, so the pipe stays in step
        conn.send(out)
    finally:
        pull.close(linger=0)
        ctx.term()


class CollectorProcess:
    """``with CollectorProcess(bind, n, prefix, keep, timeout_s) as c``: ``c.endpoint`` for the tasks' ``reply_to``;
    ``c.received`` so far; ``c.finish()`` after the last send returns the :class:`Collected`."""

    def __init__(self, bind: str, n: int, prefix: str, keep: np.ndarray | None, timeout_s: float) -> None:
        ctx = mp.get_context("spawn")  # never fork: this process holds ZeroMQ threads
        self._conn, child = ctx.Pipe()
        self._counter = ctx.Value("q", 0, lock=False)
        self._proc = ctx.Process(target=_collect, args=(bind, n, prefix, keep, timeout_s, child, self._counter),
                                 daemon=True, name="zmqrt-collector")
        self._proc.start()
        self._timeout_s = timeout_s
        if not self._conn.poll(60):
            self.close()
            raise RuntimeError("the results collector did not start within 60 s")
        self.endpoint: str = self._conn.recv()

    @property
    def received(self) -> int:
        return int(self._counter.value)

    def finish(self) -> Collected:
        self._conn.send("sent")
        if not self._conn.poll(self._timeout_s + 60):
            raise RuntimeError("the results collector did not answer")
        return self._conn.recv()

    def close(self) -> None:
        if self._proc.is_alive():
            self._proc.join(5)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join()
        self._conn.close()

    def __enter__(self) -> CollectorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
