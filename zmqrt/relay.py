"""Ingest relays: the per-task socket work of one busy engine, spread over worker processes.

Why: at 200k tasks/s one engine's loop spent about 2 µs a task in ``recv`` and 2 µs in ``send`` on the H200 host
(bench/NOTES.md 28), and the GIL keeps all of it on one core. Several engines on one GPU are several CUDA contexts,
which the GPU time-slices (a 272 µs kernel stage with two). With ``--ingest-workers N`` the supervisor's fan-out
deals the producers' frames to N relay processes instead:

* a relay reads what waits (up to ``--batch-max`` frames; with fewer, it waits up to ``RELAY_WAIT_US`` after the first
  for more) and hands it to its engine as one message;
* the engine decodes the frames of a form together (the bulk path, ``ingest.bulk``), runs each batch as one launch
  in its one context, and hands every batch's encoded result rows back, one message per relay;
* the relay sends each row to its producer's ``reply_to`` through its own ``ResultRouter`` (the same endpoint
  checks, outboxes and counts as the engine's).

Anything the bulk path does not take (other forms, rejections, results without ``reply_to``) is decoded and
answered by the engine itself, as without relays. Relay messages travel on private ipc endpoints inside one
service and are not part of ingest/PROTOCOL.md:

* relay -> engine, one part: ``b"T"``, u16 relay index, u32 frame count n, n int32 frame lengths, n int64 receipt
  times (CLOCK_MONOTONIC ns, one clock for every process of the host), the frames back to back (little-endian)
* engine -> relay, one part: ``b"R"``, u32 row length, u32 row count n, u32 length of the next item, a msgpack list of
  reply endpoints, n int32 endpoint indices, the n result rows back to back

Stopping, in order (``zmqrt.supervisor``): the fan-out stops taking frames; each relay hands its engine what it
still holds and says so (``drained``); the engines drain and exit; the relays deliver the last results
(``engines_done``) and exit. A relay ignores SIGINT and SIGTERM, so a Ctrl-C to the process group cannot cut this
short, and exits by itself if its supervisor dies.
"""

from __future__ import annotations

import logging
import os
import struct
import time
from typing import Any

import msgpack
import numpy as np
import zmq

from .config import ServerConfig

log = logging.getLogger("zmqrt")

RELAY_BATCH = 256  # frames a relay hands over in one message at most without --batch-max (else --batch-max)
RELAY_WAIT_US = 250  # a relay holding fewer frames than a batch waits this long after the first for more
RELAY_HWM = 1000  # messages queued between a relay and its engine, each way
_TASKS = b"T"
_ROWS = b"R"
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_QUIET_S = 0.05  # a relay is drained once its socket gave nothing for this long after the fan-out stopped


def pack_frames(index: int, frames: list[bytes], stamps: list[int]) -> bytes:
    """One relay -> engine message (one part: pyzmq's cost is per part): ``frames`` (received at ``stamps``) from
    relay ``index``."""
    n = len(frames)
    return b"".join([_TASKS, _U16.pack(index), _U32.pack(n), np.fromiter(map(len, frames), np.int32, n).tobytes(),
                     np.asarray(stamps, np.int64).tobytes(), *frames])


def unpack_frames(msg: bytes | memoryview) -> tuple[int, np.ndarray, np.ndarray, memoryview]:
    """(relay index, frame lengths, receipt times, the frames back to back) of a relay -> engine message. ValueError
    if its header is malformed; the lengths are checked against the bytes where they are read
    (``ingest.bulk.FrameBlock``), once for all the messages read together."""
    msg = memoryview(msg)
    if len(msg) < 7 or msg[:1] != _TASKS:
        raise ValueError("not a relay task message")
    n = _U32.unpack_from(msg, 3)[0]
    head = 7 + 12 * n
    if len(msg) < head:
        raise ValueError("relay task message: shorter than its frame count says")
    return (_U16.unpack_from(msg, 1)[0], np.frombuffer(msg, np.int32, n, 7), np.frombuffer(msg, np.int64, n, 7 + 4 * n),
            msg[head:])


def pack_rows(replies: list, reply_of: np.ndarray, rows: bytes | memoryview, step: int) -> bytes:
    """One engine -> relay message (one part): ``rows`` (``step`` bytes each), row ``i`` to
    ``replies[reply_of[i]]``."""
    head = msgpack.packb(replies)
    return b"".join([_ROWS, _U32.pack(step), _U32.pack(len(reply_of)), _U32.pack(len(head)), head,
                     np.asarray(reply_of, np.int32).tobytes(), rows])


def unpack_rows(msg: bytes | memoryview) -> tuple[list, list[int], memoryview, int]:
    """(replies, reply_of, rows, step) of an engine -> relay message. ValueError if it is malformed."""
    msg = memoryview(msg)
    if len(msg) < 13 or msg[:1] != _ROWS:
        raise ValueError("not a relay result message")
    step, n, head = _U32.unpack_from(msg, 1)[0], _U32.unpack_from(msg, 5)[0], _U32.unpack_from(msg, 9)[0]
    at = 13 + head
    if step <= 0 or len(msg) != at + 4 * n + step * n:
        raise ValueError("relay result message: rows, step and endpoints disagree")
    replies = msgpack.unpackb(msg[13:at])
    reply_of = np.frombuffer(msg, np.int32, n, at)
    if not isinstance(replies, list) or (n and not 0 <= int(reply_of.min()) <= int(reply_of.max()) < len(replies)):
        raise ValueError("relay result message: an endpoint index is out of range")
    return replies, reply_of.tolist(), msg[at + 4 * n:], step


def relay_endpoints(tmp: str, relays: int, engines: int) -> tuple[list[str], list[str]]:
    """(engine ``e``'s relay ingest, relay ``r``'s result endpoint) in the supervisor's private directory. Relay
    ``r`` feeds engine ``r % engines``."""
    return ([f"ipc://{tmp}/relay-in-{e}" for e in range(engines)],
            [f"ipc://{tmp}/relay-out-{r}" for r in range(relays)])


class Relay:
    """One relay's sockets and loop (see the module doc). ``close()`` is idempotent."""

    def __init__(self, index: int, cfg: ServerConfig, fanout_ep: str, engine_ep: str, results_ep: str) -> None:
        from ingest.protocol import DEFAULT_REPLY_PATTERNS, Limits
        from ingest.results import ResultRouter

        self.index = index
        self.batch = cfg.batch_max if cfg.batch_max > 1 else RELAY_BATCH
        self.wait_ns = int(RELAY_WAIT_US * 1000)
        self.ctx = zmq.Context()
        self._closed = False
        self.frames = self.messages = self.bad_messages = 0
        self.pull = self.ctx.socket(zmq.PULL)  # frames dealt by the fan-out
        self.push = self.ctx.socket(zmq.PUSH)  # batches of frames to the engine
        self.back = self.ctx.socket(zmq.PULL)  # result rows from the engine
        for sock in (self.pull, self.push, self.back):
            sock.setsockopt(zmq.LINGER, 0)
        self.pull.setsockopt(zmq.RCVHWM, cfg.ingest_hwm)
        self.pull.setsockopt(zmq.MAXMSGSIZE, Limits(max_task_bytes=cfg.max_task_bytes).max_frame_bytes)
        self.push.setsockopt(zmq.SNDHWM, RELAY_HWM)
        self.push.setsockopt(zmq.LINGER, 5000)  # what it handed over at stop must reach the engine
        self.back.setsockopt(zmq.RCVHWM, RELAY_HWM)
        self.back.bind(results_ep)
        self.pull.connect(fanout_ep)
        self.push.connect(engine_ep)
        patterns = tuple(cfg.reply_to_patterns) if cfg.reply_to_patterns else DEFAULT_REPLY_PATTERNS
        self.router = ResultRouter(self.ctx, None, patterns, sndhwm=cfg.result_hwm, linger_ms=cfg.linger_ms)

    def _deliver(self) -> int:
        """Send every result row waiting from the engine to its producer; the rows handled."""
        n = 0
        back, router = self.back, self.router
        while True:
            try:
                msg = back.recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return n
            try:
                replies, reply_of, rows, step = unpack_rows(msg.buffer)
            except (ValueError, msgpack.UnpackException, TypeError) as e:  # a bug between our own processes
                self.bad_messages += 1
                log.error("relay %d: malformed result message from the engine dropped: %s", self.index, e)
                continue
            router.send_rows(replies, reply_of, rows, step)
            n += len(reply_of)
        return n

    def _read(self) -> bytes | None:
        """The frames waiting from the fan-out (up to one engine batch), packed for the engine; None if none."""
        frames: list[bytes] = []
        stamps: list[int] = []
        recv, now = self.pull.recv, time.monotonic_ns
        for attempt in range(2):
            try:
                while len(frames) < self.batch:
                    frames.append(recv(zmq.NOBLOCK))
                    stamps.append(now())
            except zmq.Again:
                pass
            if not frames or len(frames) >= self.batch or attempt or self.wait_ns <= 0:
                break
            # A short message costs the engine about as much as a full one (bench/NOTES.md 29: at 90k tasks/s,
            # 4 relays sent so many small messages that the engine fell 0.4 s behind): let more frames arrive,
            # up to wait_ns after the first.
            left_ns = self.wait_ns - (now() - stamps[0])
            if left_ns > 0:
                time.sleep(left_ns / 1e9)
        if not frames:
            return None
        self.frames += len(frames)
        self.messages += 1
        return pack_frames(self.index, frames, stamps)

    def run(self, stop: Any, drained: Any, engines_done: Any) -> None:
        parent = os.getppid()
        poller = zmq.Poller()
        poller.register(self.back, zmq.POLLIN)
        poller.register(self.pull, zmq.POLLIN)
        held: bytes | None = None  # a message the engine's queue had no room for: sent before reading more
        draining_since: float | None = None
        last_check = time.monotonic()
        while True:
            timeout_ms = 1 if (held is not None or self.router.backlog) else 100
            events = dict(poller.poll(timeout_ms))
            if self.back in events:
                self._deliver()
            if self.router.backlog:
                self.router.flush()
            if held is None and (self.pull in events or draining_since is not None):
                held = self._read()
                if held is None and draining_since is not None and time.monotonic() - draining_since > _QUIET_S \
                        and not drained.is_set():
                    drained.set()  # everything the fan-out dealt us is on its way to the engine
            if held is not None:
                try:
                    # Copied: pyzmq's zero-copy send hands the buffer to a garbage-collector thread, which cost tens
                    # of µs a part in the engine (bench/NOTES.md 29); one memcpy is far cheaper.
                    self.push.send(held, zmq.NOBLOCK)
                    held = None
                except zmq.Again:  # the engine is behind: frames wait here, then in ZeroMQ, then at the producers
                    poller.modify(self.pull, 0)
                else:
                    poller.modify(self.pull, zmq.POLLIN)
            if draining_since is None and stop.is_set():
                draining_since = time.monotonic()
            if engines_done.is_set() and held is None:
                # The engines exited after their last sends (linger): rows may still be on the way in.
                while self.back.poll(100):
                    self._deliver()
                break
            now = time.monotonic()
            if now - last_check > 1.0:
                last_check = now
                if os.getppid() != parent:
                    log.error("relay %d: the supervisor is gone; exiting", self.index)
                    break
        log.info("relay %d: %d frames in %d messages handed to the engine; %d results sent, %d undeliverable",
                 self.index, self.frames, self.messages, self.router.sent, self.router.undeliverable)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.pull.close(linger=0)
        self.back.close(linger=0)
        self.push.close()
        self.router.close()
        self.ctx.term()

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
