"""The zmqrt server: one process, one event loop, one GPU.

The loop reads frames from the ingest PULL socket, decodes and validates them, admits them into the
policy's per-priority queues, dispatches to idle lanes, polls lanes for completion and pushes each result to
its task's ``reply_to``. One thread does all of it, so there is no lock and no GIL hand-off on the task path.

While any task is in flight the loop spins (GPU tasks finish in microseconds; a sleep costs about 10 µs p50
and 50 µs p99 on wake-up). When nothing is queued or in flight it polls on for ``idle_poll_us`` (200 µs by default)
and then sleeps in the ingest socket's recv, unless ``spin``, which never sleeps.

Exactly one result for every task whose id can be read: rejections at decode, duplicates, admission
refusals, expiry at dispatch, faults and shutdown all end in ``_reply``. Frames without a readable id are
counted and logged (rate-limited) by the receiver.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
import time
from collections.abc import Sequence
from typing import NamedTuple

import msgpack
import numpy as np
import zmq

from ingest.bulk import BulkBatch, BulkForm, BulkResults, FrameBlock
from ingest.fastdecode import TaskDecoder
from ingest.protocol import DEFAULT_REPLY_PATTERNS, Limits, OkEncoder, Rejection, Task, encode_ok_result, encode_result
from ingest.receiver import Receiver
from ingest.results import ResultRouter

from .backends import Backend, make_backend
from .backends.base import rows_like
from .compiler import KernelCache
from .config import ServerConfig, idle_poll_us, keep_warm_us
from .cuda import CudaError
from .errors import Code, TaskError
from .kernels.registry import KernelRegistry, load_registry
from .latency import LatencyMonitor, LatencyTracker
from .placement import pin_loop, thread_report
from .relay import RELAY_HWM, pack_rows, unpack_frames
from .sched import AdmissionControl, ServicePredictor, make_scheduler
from .trace import (
    ADMITTED,
    COLLECTED,
    DECODED,
    ENCODED,
    POPPED,
    RECV,
    SEEN_DONE,
    SENT,
    SUBMITTED,
    BatchTrace,
    StageTrace,
    batch_trace_path,
)

log = logging.getLogger("zmqrt")

_READ_AHEAD = 8  # frames read per loop pass while every lane is busy
_WARM_FORMS_MAX = 8  # forms kept warm in turn (keep_warm_us); as many as the decoder keeps byte templates
_BULK_LAYOUTS = 4  # batches (layouts) read from one backlog at most
# Deferred bookkeeping entries before a busy loop applies them anyway; ZMQRT_BOOKS_MAX=1 applies each at once,
# right after its send, as before (for A/B runs: bench/NOTES.md 21).
_BOOKS_MAX = max(1, int(os.environ.get("ZMQRT_BOOKS_MAX", "256")))
# Young objects before an idle loop pass collects them (about 50 µs); ZMQRT_GC_IDLE_THRESHOLD overrides (A/B runs).
_GC_IDLE_THRESHOLD = int(os.environ.get("ZMQRT_GC_IDLE_THRESHOLD", "2000"))
_GC_BUSY_THRESHOLD = 200_000  # ...and before a busy loop collects them anyway
# Latencies of bulk batches held before they go into the histograms at once (``Server._flush_bulk_hist``). Each
# update costs about ten numpy calls whatever its size: four per batch were about a quarter of a batch's fixed cost
# (bench/NOTES.md 30).
_BULK_HIST_VALUES = 4096
# Longest idle wait in recv while a stats endpoint is bound: a stats request waits at most this long for its answer.
# It was the reason to wait in zmq.Poller.poll over both sockets instead, which put a poll and a loop pass between
# a frame's arrival and its recv: the round trip in block mode about 18 µs more than the prototype's (NOTES 27, 30).
_STATS_WAIT_MS = 10
_PROBE_INTERVAL_NS = 10_000_000  # at most one admission probe per (kernel, size class) per 10 ms
_PROBE_AFTER_REJECTIONS = 16  # ...and only after this many infeasible rejections in a row
_NS_PER_US = 1e-3
_EVENTS, _POLLIN = int(zmq.EVENTS), int(zmq.POLLIN)  # plain ints: IntFlag.__and__ costs ~2 µs
EXIT_GPU_FAULT = 3  # run_server's exit status after a fatal GPU fault: restart me (zmqrt.supervisor)


def rows_class(k: int, cap: int) -> int:
    """The launch size of a bulk batch of ``k`` rows: the smallest of 1, 2, 3, 4, 6, 8, 12, 16, 24, ... (powers of
    two and 1.5 times them) at least ``k``, and at most ``cap`` (the most one launch holds; ``k <= cap``).

    Why: each launch size is prepared and captured as a CUDA graph once per lane, about a millisecond on the H200
    host. At 200k tasks a second batch sizes wander over the whole range, so one size per batch size made several
    hundred cold launches per engine in its first second, which held most of a run's slowest 1% of batches
    (bench/NOTES.md 31).
    At most half the rows are padding; a row-wise kernel computes them and nobody reads them."""
    if k <= 2:
        return k
    p = 1 << (k - 1).bit_length()  # the power of two at or above k
    c = p * 3 // 4 if p * 3 // 4 >= k else p
    return min(c, cap)


class _Row(NamedTuple):
    """What ``Server._fail`` reads of a task, for a bulk batch's rows (which have no Task objects)."""

    id: int | str
    reply_to: str | None
    recv_ns: int


def _in_turn(entries: dict, n: int):
    """Entry ``n`` (modulo their number) of ``entries``, or None when empty; trimmed to the newest
    ``_WARM_FORMS_MAX`` once it holds twice that (templates and forms come and go)."""
    if not entries:
        return None
    if len(entries) > 2 * _WARM_FORMS_MAX:
        for key in list(entries)[:-_WARM_FORMS_MAX]:
            del entries[key]
    return list(entries.values())[n % len(entries)]


def size_class(in_bytes: int) -> int:
    """Admission predicts service per kernel and power-of-two input size."""
    return in_bytes.bit_length()


class Server:
    def __init__(self, cfg: ServerConfig, backend: Backend | None = None, registry: KernelRegistry | None = None,
                 ctx: zmq.Context | None = None) -> None:
        self.cfg = cfg
        self.registry = registry if registry is not None else load_registry(cfg.kernels_dirs)
        self._own_ctx = ctx is None
        self.ctx = ctx if ctx is not None else zmq.Context()
        self._closed = False
        self.backend = backend if backend is not None else make_backend(
            cfg.backend, self.registry, device=cfg.device, lanes=cfg.lanes, max_task_bytes=cfg.max_task_bytes,
            cache=KernelCache(cfg.cache_dir) if cfg.cache_dir else None, timing=cfg.stage_timing_every > 0,
            resident=cfg.resident)
        patterns = tuple(cfg.reply_to_patterns) if cfg.reply_to_patterns else DEFAULT_REPLY_PATTERNS
        self.limits = Limits(max_task_bytes=cfg.max_task_bytes, priority_levels=cfg.priority_levels,
                             reply_to_patterns=patterns)
        self.decoder = TaskDecoder(self.registry, self.limits)
        self._match, self._task_of = self.decoder.match, self.decoder.task
        self._decode_unmatched = self.decoder.decode_unmatched
        self.curve = None
        if cfg.curve_secret or cfg.allowed_keys:  # CURVE + ZAP on ingest; either alone fails here, never runs open
            from .security import CurveServer
            self.curve = CurveServer(self.ctx, cfg.curve_secret, cfg.allowed_keys)
        # Behind relays (zmqrt.relay) the ingest socket takes their messages, many frames each: no frame limit there
        # (each relay applies it to the frames it reads).
        self.receiver = Receiver(self.ctx, cfg.ingest, self.limits, hwm=cfg.ingest_hwm, connect=cfg.ingest_connect,
                                 curve=self.curve, max_msg_bytes=-1 if cfg.relay_results else None)
        # Relay r's result endpoint (cfg.relay_results[r]), connected on its first message.
        self._relay_socks: dict[int, zmq.Socket] = {}
        self.relay_fallbacks = 0  # result messages a full relay queue refused, sent by this engine instead
        self.relayed_results = 0  # result rows handed to relays
        self.router = ResultRouter(self.ctx, cfg.results, patterns, sndhwm=cfg.result_hwm, linger_ms=cfg.linger_ms)
        self.stats_socket: zmq.Socket | None = None
        if cfg.stats:
            self.stats_socket = self.ctx.socket(zmq.REP)
            self.stats_socket.setsockopt(zmq.LINGER, 0)
            self.stats_socket.bind(cfg.stats)
        self.sched = make_scheduler(cfg.policy, levels=cfg.priority_levels, capacity=cfg.queue_capacity,
                                    weights=cfg.ps_weights)
        self.predictor = ServicePredictor(k=cfg.admission_margin)
        self.admission = AdmissionControl(self.predictor, lanes=self.backend.lanes, mode=cfg.admission,
                                          expiry=cfg.expire)
        self.tracker = LatencyTracker(interval_stage="service")
        self.monitor = LatencyMonitor(self.tracker, cfg.p95_target_us, cfg.monitor_interval_s, time.monotonic_ns())
        self.metrics = None
        if cfg.metrics_port is not None:
            from .latency.metrics import start_metrics_server
            self.metrics = start_metrics_server(cfg.metrics_port, self.tracker)
        n = self.backend.lanes
        self._lane_task: list[Task | None] = [None] * n
        self._lane_batch: list[list[Task] | None] = [None] * n  # the tasks of a batched launch (else None)
        self._batch_max = cfg.batch_max
        self._batch_forms: dict[tuple[int, int], tuple[object, object]] = {}  # (id(form), k) -> (form, checked_k)
        self.batches = 0
        self.batched_tasks = 0
        # Batches decoded together from a backlog (ingest.bulk), per lane; their readers and result encoders.
        # (batch, its (reply_to, id) keys, the relay each row came from or None)
        self._lane_bulk: list[tuple[BulkBatch, list, np.ndarray | None] | None] = [None] * n
        # (id(FrameTemplate), slot layout) -> (the template, its reader of that layout or None)
        self._bulk_forms: dict[tuple, tuple[object, BulkForm | None]] = {}
        self._bulk_results: dict[tuple, BulkResults] = {}
        self._last_bulk_form: BulkForm | None = None  # the last one _bulk_form found: tried first, by one C call
        self.bulk_tasks = 0
        # A batch read while every lane was busy: (batch, its backlog's frames, their receipt times, their relays)
        self._pending_bulk: tuple[BulkBatch, list[bytes], list[int], np.ndarray | None] | None = None
        # Result encoder per task form, id(checked) -> (checked, OkEncoder): a form fixes its outputs' dtypes, shapes.
        self._encoders: dict[int, tuple[object, OkEncoder]] = {}
        self._books: list[tuple] = []  # stage histograms and counters of sent tasks, applied in idle passes
        # Bulk batches' latencies per (kernel, priority, stage), recorded together every _BULK_HIST_VALUES values or
        # when the loop idles: one histogram update per many batches instead of four per batch.
        self._bulk_hist: dict[tuple[str, int, str], list[np.ndarray]] = {}
        self._bulk_hist_n = 0
        self._lane_dispatch_ns = [0] * n
        self._lane_sampled = [False] * n  # the lane's task is a sampled timed one (stage_timing_every > 1)
        self._lane_predicted_ns = [0] * n
        self._free_lanes: list[int] = list(range(n - 1, -1, -1))  # a stack: pop() gives lane 0 first
        self._busy_lanes: list[int] = []
        self._inflight_keys: set[tuple[str | None, int | str]] = set()
        self._seq = 0
        self._last_probe_ns: dict[tuple[str, int], int] = {}
        self._reject_streak: dict[tuple[str, int], int] = {}
        self.probes = 0
        self._dispatched = 0
        self._timing_every = cfg.stage_timing_every
        self._timing_gap_ns = int(cfg.stage_timing_gap_ms * 1e6)
        # Dispatch count and time of the last timed task, set so that the first task is timed.
        self._last_timed = -cfg.stage_timing_every
        self._last_timed_ns = -(1 << 62)
        self.results_sent = 0
        # Cache warming (keep_warm_us, while the loop polls idle): per byte template the last frame it matched, and
        # per task form the last result's (encoder, outputs, id), run again in idle time, one form a pass in turn.
        self._warm_ns = int(keep_warm_us(cfg) * 1000)
        self._warm_frames: dict[int, bytes] = {}
        self._warm_results: dict[int, tuple] = {}
        self.warm_passes = 0
        self._stop = threading.Event()
        self._accepting = True
        self.trace = StageTrace(cfg.trace_capacity) if cfg.trace_path else None
        self.batch_trace = BatchTrace(max(1, cfg.trace_capacity // 2)) if cfg.trace_path else None
        self._batch_marks = (0, 0)  # (--trace) the last backlog's read and matched points, for its batch
        self._lane_marks: list[tuple[int, ...]] = [(0, 0, 0, 0)] * n  # ...and each bulk lane's, with checked, submitted
        self.fault: str | None = None  # set by a fatal GPU fault: the engine must be restarted
        self._watchdog_ns = int(cfg.watchdog_ms * 1e6) if cfg.watchdog_ms > 0 else 0
        self.started_ns = time.monotonic_ns()
        if cfg.calibrate:
            self.calibrate()

    # ------------------------------------------------------------------ startup
    def calibrate(self, repeats: int = 20, budget_ns: int = 5_000_000) -> None:
        """Seed the service predictor: time each kernel at sizes growing 4x on lane 0, on the host clock from
        submit to completion (what dispatch-to-done will measure later). A kernel stops growing once one run
        takes longer than ``budget_ns``, so startup stays short on the CPU backend."""
        rng = np.random.default_rng(0)
        backend = self.backend
        for spec in self.registry:
            classes = {}
            size = 16
            while size <= (1 << 22):
                try:
                    inputs, params = spec.sample_inputs(rng, size)
                    checked = spec.check(inputs, params)
                    backend.check_fits(inputs, checked)
                except TaskError:
                    break
                sc = size_class(sum(a.nbytes for a in inputs))
                samples = []
                for i in range(repeats + 3):  # the first runs pay for lazy loading and first-touch
                    t0 = time.perf_counter_ns()
                    backend.submit(0, spec, inputs, checked, False)
                    backend.wait(0)
                    backend.collect(0)
                    if i >= 3:
                        samples.append(time.perf_counter_ns() - t0)
                for ns in samples:
                    self.predictor.seed(spec.name, sc, ns)
                classes[sc] = self.predictor.predict_ns(spec.name, sc)
                if max(samples) > budget_ns:
                    break
                size *= 4
            log.info("calibrated %s: predicted service %s", spec.name,
                     ", ".join(f"{1 << (sc - 1)}+ B: {ns / 1e3:.1f} µs" for sc, ns in sorted(classes.items())))

    def describe(self) -> list[str]:
        return [
            f"backend: {self.backend.description}",
            f"kernels: {', '.join(self.registry.names())}",
            f"ingest: {self.receiver.endpoint}",
            f"results: {self.router.default_endpoint or 'reply_to only'}",
            f"stats: {self.cfg.stats or 'off'}; metrics: "
            f"{f'http://127.0.0.1:{self.metrics.port}/metrics' if self.metrics else 'off'}",
            f"policy: {self.cfg.policy}, lanes: {self.backend.lanes}, max task: {self.cfg.max_task_bytes} bytes, "
            f"admission: {self.cfg.admission}, expire: {self.cfg.expire}, spin: {self.cfg.spin}, "
            f"idle poll: {idle_poll_us(self.cfg):g} µs, cache warming: every {keep_warm_us(self.cfg):g} µs, "
            f"resident: {self.cfg.resident}",
        ]

    # ------------------------------------------------------------------ results
    def _reply(self, task_id, reply_to: str | None, code: Code, message: str, outputs: Sequence[np.ndarray] = (),
               missed: bool = False, latency_us: dict | None = None) -> None:
        payload = encode_result(task_id, code, message, outputs, missed, latency_us)
        self.router.send(reply_to, payload)
        self.results_sent += 1

    def _refuse(self, task: Task, code: Code, message: str, now_ns: int) -> None:
        """A task refused after decode (duplicate, admission, queue full, shutdown)."""
        self._reply(task.id, task.reply_to, code, message,
                    latency_us={"service": (now_ns - task.recv_ns) * _NS_PER_US})
        self.tracker.count_rejected(code)

    # ------------------------------------------------------------------ ingest
    def _accept(self, frame: bytes, recv_ns: int = 0) -> None:
        if not recv_ns:
            recv_ns = time.monotonic_ns()
        self._seq += 1
        matched = self._match(frame, recv_ns)
        if matched is not None:
            if (self._free_lanes and self._accepting and not len(self.sched)
                    and self._start_matched(matched, frame, recv_ns)):
                return
            if self._warm_ns:
                self._warm_frames[id(matched[0])] = frame  # the template's record: one entry per template
        try:
            task = (self._task_of(matched, frame, recv_ns, self._seq) if matched is not None else
                    self._decode_unmatched(frame, recv_ns, self._seq))
        except Rejection as r:
            if r.task_id is None:
                self.receiver.log_undecodable(r.message)  # counts and logs, rate-limited
                self.tracker.count_undecodable()
                return
            self._reply(r.task_id, r.reply_to, r.code, r.message)
            self.tracker.count_rejected(r.code)
            return
        trace = self.trace
        if trace is not None:
            base = task.trace_row = trace.row(task.seq)
            trace.buf[base + RECV] = recv_ns
            trace.buf[base + DECODED] = time.monotonic_ns()
        if not self._accepting:
            self._refuse(task, Code.SHUTDOWN, "server is shutting down; task not run", recv_ns)
            return
        key = (task.reply_to, task.id)
        if key in self._inflight_keys:
            self._refuse(task, Code.DUPLICATE, f"task id {task.id!r} is already queued or running for this "
                                               "reply endpoint; ids must be unique while in flight", recv_ns)
            return
        task.size_class = size_class(task.in_bytes)
        if self._free_lanes and not len(self.sched):
            # Nothing queued and a lane free: every policy runs this task now, and its predicted finish is
            # receipt + its own service time. Admission then needs no queue arithmetic, and the task skips the
            # queue: about 6 µs less per task at low load. An infeasible one takes the full path (its message).
            cost_ns = self._cost_if_on_time(task.kernel, task.size_class, recv_ns, task.deadline_ns)
            if cost_ns is not None:
                self._admitted(task.kernel, task.size_class, key)
                now = time.monotonic_ns()
                if trace is not None:
                    trace.buf[task.trace_row + ADMITTED] = now
                self._start(task, cost_ns, now)
                return
        try:
            self.admission.submit(task, recv_ns, self.sched, self._inflight_remaining_ns(recv_ns))
        except TaskError as e:
            if not (e.code is Code.DEADLINE_INFEASIBLE and self._probe(task, recv_ns)):
                self._refuse(task, e.code, e.message, recv_ns)
                return
            self._inflight_keys.add(key)  # a probe (its streak was reset there)
        else:
            self._admitted(task.kernel, task.size_class, key)
        if trace is not None:
            trace.buf[task.trace_row + ADMITTED] = time.monotonic_ns()

    def _start_matched(self, matched: tuple, frame: bytes, recv_ns: int) -> bool:
        """Start a task that matched a byte template (``TaskDecoder.match``) before its Task exists; False: nothing
        done, the full path takes it (a duplicate id, an infeasible deadline).

        The caller checked that a lane is free, nothing is queued and the server accepts tasks: every policy runs
        this task now, as in ``_accept``'s fast path, with the same admission. The GPU then works while the Task,
        the in-flight key and the lane's records are built (about 3 µs a task on the dev VM, more with cold caches
        on the GPU host), instead of before it starts. The trace's "decoded" point is the match."""
        rec, values = matched
        form, kernel, reply_to = rec[0], rec[1], rec[3]
        key = (reply_to, values[0])
        if key in self._inflight_keys:
            return False
        size = form.in_bytes.bit_length()  # size_class, inline: a call less before the GPU starts
        # _cost_if_on_time's rule, inline
        cost_ns = self.predictor.predict_ns(kernel, size)
        deadline_ns = values[3]
        if deadline_ns is not None and recv_ns + cost_ns > deadline_ns:
            return False
        trace = self.trace
        matched_ns = time.monotonic_ns() if trace is not None else 0
        now = time.monotonic_ns()
        free = self._free_lanes
        lane = free.pop() if values[1] == 0 else free.pop(0)  # _take_lane, inline
        timed = self._take_timing(lane, now)
        error = None
        backend = self.backend
        try:
            # A resident lane copies the inputs' bytes from the frame; any other path gets views of them
            if not backend.submit_frame(lane, form.spec, frame, values[6], rec[4], form.checked, timed):
                backend.submit(lane, form.spec, rec[5](frame, values[6]), form.checked, timed)
        except (TaskError, CudaError) as e:
            error = e
        submitted_ns = time.monotonic_ns() if trace is not None else 0
        # The rest while the GPU works
        if self._warm_ns:
            self._warm_frames[id(rec)] = frame  # the template's record: one entry per template
        task = self._task_of(matched, frame, recv_ns, self._seq)
        task.size_class = size
        self._admitted(kernel, size, key)
        if trace is not None:
            base = task.trace_row = trace.row(task.seq)
            buf = trace.buf
            buf[base + RECV] = recv_ns
            buf[base + DECODED] = matched_ns
            buf[base + ADMITTED] = buf[base + POPPED] = now
            buf[base + SUBMITTED] = submitted_ns
        if error is not None:
            self._submit_failed(lane, (task,), error, now)
        else:
            self._started(lane, task, cost_ns, now)
        return True

    def _cost_if_on_time(self, kernel: str, size: int, recv_ns: int, deadline_ns: int | None) -> int | None:
        """A task started now on a free lane finishes at receipt + its predicted service: that service in ns, or
        None when that misses its deadline (the full admission then decides, and words a refusal)."""
        cost_ns = self.predictor.predict_ns(kernel, size)
        return cost_ns if deadline_ns is None or recv_ns + cost_ns <= deadline_ns else None

    def _admitted(self, kernel: str, size: int, key: tuple) -> None:
        """A task is admitted: its key is in flight, and its (kernel, size class) streak of rejections ends."""
        if self._reject_streak:
            self._reject_streak.pop((kernel, size), None)
        self._inflight_keys.add(key)

    def _probe(self, task: Task, now_ns: int) -> bool:
        """Admit an infeasible-looking task anyway after a long streak of rejections of its (kernel, size class).

        Predictions are learned from completed tasks only. Without probes, a prediction that once rose above
        every deadline would reject every later task, get no new sample and stay wrong for ever. A probe needs
        ``_PROBE_AFTER_REJECTIONS`` rejections in a row and at most one per key per ``_PROBE_INTERVAL_NS``:
        an occasional infeasible task is still rejected at once, and probes cost at most 100 tasks a second per key.
        A probe's sample may only lower the prediction (``ServicePredictor.observe(bound_only=True)``), so probing
        often is safe: it cannot push a prediction further up, only find out sooner that it came down."""
        key = (task.kernel, task.size_class)
        streak = self._reject_streak.get(key, 0) + 1
        self._reject_streak[key] = streak
        if streak < _PROBE_AFTER_REJECTIONS or now_ns - self._last_probe_ns.get(key, 0) < _PROBE_INTERVAL_NS:
            return False
        self._last_probe_ns[key] = now_ns
        self._reject_streak[key] = 0
        task.probe = True
        try:
            self.sched.push(task, self.admission.service_ns(task))
        except TaskError:
            return False
        self.probes += 1
        return True

    # ------------------------------------------------------------------ a backlog decoded as one batch
    def _accept_backlog(self, frames: list[bytes] | FrameBlock, stamps: list[int],
                        origin: np.ndarray | None = None) -> None:
        """Frames read together from a backlog (batching on, nothing queued): the frames of one byte template's
        layout, from any producer of that form, become one batch decoded and answered with numpy
        (``ingest.bulk``) and run as one launch, on a free lane or, with none free, as the one pending batch.
        Every other frame, and every row a batch leaves, takes the per-task path (``_accept``), which decodes it
        or words its rejection as for any frame.

        Why: at 100k+ tasks a second the per-task decode, admission, encode and bookkeeping (about 35 µs a task
        on the H200 host) are the whole budget; read as one batch they cost a few µs a task, most of it the
        recv and the send (bench/NOTES.md 28). Tasks of a batch are untimed (no GPU stage events) and have no
        rows in the stage trace (``--trace``); their queue, service and e2e latencies are recorded as any.
        ``origin``: the relay each frame came from (``zmqrt.relay``), whose batches' results go back through it."""
        btrace = self.batch_trace
        read_ns = time.monotonic_ns() if btrace is not None else 0
        n = len(frames)
        todo = np.arange(n)
        single: list[np.ndarray] = []  # rows for the per-task path
        if self._accepting and n > 1:
            lengths = None
            recv_ns = np.asarray(stamps, np.int64)
            for _ in range(_BULK_LAYOUTS):  # a few layouts per backlog; the rest goes task by task
                if len(todo) < 2 or not ((self._free_lanes and not len(self.sched)) or self._pending_bulk is None):
                    break
                form = self._bulk_form(frames[todo[0]])
                if form is None:
                    single.append(todo[:1])
                    todo = todo[1:]
                    continue
                if len(todo) == n and type(frames) is list and all(len(f) == form.length for f in frames):
                    rows, todo, rows_recv = todo, todo[:0], recv_ns  # the usual backlog: one layout, no masks
                else:
                    if lengths is None:
                        lengths = frames.lengths if isinstance(frames, FrameBlock) else np.fromiter(
                            map(len, frames), np.int64, n)
                    same = lengths[todo] == form.length
                    rows = todo[same]
                    todo = todo[~same]
                    rows_recv = recv_ns[rows]
                batch, rest = form.match(frames, rows, rows_recv, self.decoder.replies)
                if btrace is not None:
                    self._batch_marks = (read_ns, time.monotonic_ns())
                if len(rest):
                    single.append(rest)
                if batch is not None:
                    if self._free_lanes and not len(self.sched):  # what it leaves may form the next batch
                        left = self._start_bulk(batch, origin)
                        if len(left):
                            todo = np.sort(np.concatenate((todo, left)))
                    else:  # after the lanes' work and the tasks queued before it
                        self._pending_bulk = (batch, frames, stamps, origin)
        if len(todo):
            single.append(todo)
        if not single:  # every frame is in a batch
            return
        accept = self._accept
        for i in np.sort(np.concatenate(single)).tolist():
            accept(frames[i], stamps[i])

    def _bulk_form(self, frame: bytes) -> BulkForm | None:
        """The reader of ``frame``'s layout: of the byte template that matches it (most recently used first) and
        of its slots' widths, built once. None: no template matches, or it cannot be read as columns."""
        last = self._last_bulk_form
        if last is not None and last.fits(frame):  # the usual case: the backlog before was of this layout too
            return last
        for tpl in self.decoder.templates:
            if tpl.match(frame) is not None:
                break
        else:
            return None
        layout = BulkForm.layout(tpl, frame)
        if layout is None:
            return None
        key = (id(tpl), layout)
        entry = self._bulk_forms.get(key)
        if entry is None or entry[0] is not tpl:
            if len(self._bulk_forms) >= 256:
                self._bulk_forms.clear()
            form = BulkForm.of(tpl, self.limits, layout) if tpl.form[0].spec.batchable else None
            entry = self._bulk_forms[key] = (tpl, form)
        if entry[1] is not None:
            self._last_bulk_form = entry[1]
        return entry[1]

    def _start_pending_bulk(self) -> None:
        """The batch read while every lane was busy, on the lane that freed; its left rows go the per-task way."""
        batch, frames, stamps, origin = self._pending_bulk
        self._pending_bulk = None
        self._batch_marks = (0, 0)  # (--trace) read and matched long before: not this batch's points
        accept = self._accept
        for i in self._start_bulk(batch, origin).tolist():
            accept(frames[i], stamps[i])

    def _start_bulk(self, batch: BulkBatch, origin: np.ndarray | None = None) -> np.ndarray:
        """Run ``batch`` as one launch on a free lane; returns the rows it leaves to the per-task path: all of them
        for a duplicate id (the per-task path answers DUPLICATE), rows past what one launch holds, and rows whose
        deadline the batch's predicted service would miss (the per-task path admits or refuses each)."""
        form, kernel = batch.rec[0], batch.rec[1]
        keys = batch.keys()
        inflight = self._inflight_keys
        if len(set(keys)) != len(keys) or not inflight.isdisjoint(keys):
            return batch.rows
        back = []
        cap = min(self._batch_max, max(1, self.backend.max_task_bytes // max(form.in_bytes, form.out_bytes, 1)))
        if len(batch) > cap:
            keep = np.arange(len(batch)) < cap
            back.append(batch.rows[~keep])
            batch = batch.take(keep)
        now = time.monotonic_ns()
        cost_ns = self.predictor.predict_ns(kernel, size_class(len(batch) * form.in_bytes))
        feasible = batch.deadline_ns >= now + cost_ns  # NO_DEADLINE always is
        if np.count_nonzero(feasible) != len(feasible):  # (a count is one C call; .all() several Python ones)
            back.append(batch.rows[~feasible])
            batch = batch.take(feasible)
        if len(batch) < 2:
            back.append(batch.rows)
            return np.concatenate(back)
        k = len(batch)
        if len(keys) != k:  # rows were left: the keys of those kept
            keys = batch.keys()
        free = self._free_lanes
        lane = free.pop() if np.count_nonzero(batch.priority) != k else free.pop(0)  # any urgent (0) task
        rows = rows_class(k, cap)
        try:
            self.backend.submit_rows(lane, form.spec, batch.inputs,
                                     self._checked_rows(form.spec, form.checked, batch.inputs, rows), rows)
        except (TaskError, CudaError) as e:  # a row-wise kernel's own form never fails its check; answered all
            free.append(lane)
            code = Code.GPU_FAULT if isinstance(e, CudaError) else e.code
            for (reply_to, task_id), recv_ns in zip(keys, batch.recv_ns.tolist()):  # noqa: B905 - one per row
                self._reply(task_id, reply_to, code, f"batched run of {k}: {e}",
                            latency_us={"service": (now - recv_ns) * _NS_PER_US})
                self.tracker.count_error(code)
            if isinstance(e, CudaError) and e.sticky:
                self._gpu_fault(str(e), fatal=True)
            return np.concatenate(back) if back else batch.rows[:0]
        if self.batch_trace is not None:
            self._lane_marks[lane] = (*self._batch_marks, now, time.monotonic_ns())
        inflight.update(keys)
        self._dispatched += 1
        self.batches += 1
        self.batched_tasks += k
        self.bulk_tasks += k
        self._lane_bulk[lane] = (batch, keys, None if origin is None else origin[batch.rows])
        self._lane_task[lane] = None
        self._lane_dispatch_ns[lane] = now
        self._lane_predicted_ns[lane] = cost_ns
        self._lane_sampled[lane] = False
        self._busy_lanes.append(lane)
        return np.concatenate(back) if back else batch.rows[:0]

    def _complete_bulk(self, lane: int) -> None:
        """Every task of a finished bulk batch gets its own result, encoded with the batch's others in one go."""
        batch, keys, relays = self._lane_bulk[lane]
        self._lane_bulk[lane] = None
        self._busy_lanes.remove(lane)
        btrace = self.batch_trace
        seen_ns = time.monotonic_ns() if btrace is not None else 0
        outputs = self.backend.collect(lane)
        done_ns = time.monotonic_ns()
        k = len(batch)
        if len(outputs[0]) != k:  # a padded launch (rows_class): the batch's rows come first
            outputs = [o[:k] for o in outputs]
        dispatch_ns = self._lane_dispatch_ns[lane]
        form, kernel = batch.rec[0], batch.rec[1]
        missed = batch.deadline_ns < done_ns
        key = BulkResults.key(outputs, batch.id_raw.shape[1])
        enc = self._bulk_results.get(key)
        if enc is None:
            if len(self._bulk_results) >= 256:
                self._bulk_results.clear()
            enc = self._bulk_results[key] = BulkResults([o[0] for o in outputs], batch.id_raw[0].tobytes())
        recv_ns = batch.recv_ns
        queue_ns = dispatch_ns - recv_ns  # each task's wait: its queue figure, and the base of its others
        queue_us = queue_ns * _NS_PER_US
        payload = memoryview(enc.encode(batch.id_raw, outputs, missed, queue_us,
                                        queue_us + (done_ns - dispatch_ns) * _NS_PER_US))
        encoded_ns = time.monotonic_ns() if btrace is not None else 0
        self._free_lanes.append(lane)  # every row is copied into the payload
        if relays is None or None in batch.replies:  # (results without reply_to go to this engine's --results)
            self.router.send_rows(batch.replies, batch.reply_of.tolist(), payload, enc.length)
        else:
            self._relay_rows(batch, relays, payload, enc.length)
        sent_ns = time.monotonic_ns()
        if btrace is not None:
            btrace.add((int(recv_ns.min()), int(recv_ns.max()), *self._lane_marks[lane], seen_ns, done_ns, encoded_ns,
                        sent_ns, k, lane))
        self.results_sent += k
        self._inflight_keys.difference_update(keys)
        # Bookkeeping at once, for the whole batch: a few array operations, not per task.
        priorities = batch.priority
        e2e = time.time_ns() - batch.sent_ns if batch.sent_ns is not None else None
        prio_list = priorities.tolist()
        one = prio_list[0] if prio_list.count(prio_list[0]) == k else None  # a list count: no numpy reductions
        held = self._bulk_hist
        for prio in [one] if one is not None else np.unique(priorities).tolist():
            sel = slice(None) if one is not None else priorities == prio
            for stage, values in (("queue", queue_ns[sel]), ("service", queue_ns[sel] + (sent_ns - dispatch_ns)),
                                  ("e2e", None if e2e is None else e2e[sel])):
                if values is not None:
                    held.setdefault((kernel, prio, stage), []).append(values)
        self._bulk_hist_n += k
        if self._bulk_hist_n >= _BULK_HIST_VALUES:
            self._flush_bulk_hist()
        self.tracker.count_ok_many(sent_ns, k, int(np.count_nonzero(missed)))
        self.predictor.observe(kernel, size_class(k * form.in_bytes), done_ns - dispatch_ns, False)

    # ------------------------------------------------------------------ behind relays (zmqrt.relay)
    def _read_relay(self) -> bool:
        """Read the relay messages waiting, up to --batch-max frames (at least one message), as one backlog.
        False: none waited."""
        recv = self.receiver.socket.recv
        n = 0
        lengths: list[np.ndarray] = []
        stamps: list[np.ndarray] = []
        relays: list[int] = []
        blobs: list[memoryview] = []
        try:
            while n < self._batch_max or not n:
                # copy=False: the frames are read in place (a view of the message's buffer), never copied per frame.
                msg = recv(zmq.NOBLOCK, copy=False)
                try:
                    index, got, at, blob = unpack_frames(msg.buffer)
                except ValueError as e:  # only our own relays connect here: a bug, never a producer's frame
                    self.receiver.log_undecodable(f"malformed relay message: {e}")
                    continue
                n += len(got)
                lengths.append(got)
                stamps.append(at)
                relays.append(index)
                blobs.append(blob)
        except zmq.Again:
            pass
        if not n:
            return False
        try:
            if len(blobs) == 1:
                frames = FrameBlock(blobs[0], lengths[0])
                at, origin = stamps[0], np.full(n, relays[0], np.int32)
            else:
                frames = FrameBlock(b"".join(blobs), np.concatenate(lengths))
                at = np.concatenate(stamps)
                origin = np.repeat(np.asarray(relays, np.int32), [len(g) for g in lengths])
        except ValueError as e:  # a bug between our own processes: counted and logged, the loop goes on
            self.receiver.log_undecodable(f"malformed relay message(s): {e}; {n} frame(s) dropped")
            return True
        self.receiver.frames += n
        if not (self._batch_max > 1 and self.cfg.bulk):  # no bulk path: task by task, as frames read directly
            for i, t in enumerate(at.tolist()):
                self._accept(frames[i], t)
            return True
        self._accept_backlog(frames, at.tolist(), origin)
        return True

    def _relay_rows(self, batch: BulkBatch, relays: np.ndarray, payload: memoryview, step: int) -> None:
        """A finished batch's result rows, each back to the relay its frame came from, which sends it on."""
        first = int(relays[0])
        groups = [first] if (relays == first).all() else np.unique(relays).tolist()
        rows = np.frombuffer(payload, np.uint8).reshape(len(batch), step) if len(groups) > 1 else None
        for r in groups:
            if rows is None:
                reply_of, part = batch.reply_of, payload
            else:
                sel = relays == r
                reply_of, part = batch.reply_of[sel], rows[sel].tobytes()
            sock = self._relay_socks.get(r)
            if sock is None:
                sock = self._relay_socks[r] = self.ctx.socket(zmq.PUSH)
                sock.setsockopt(zmq.SNDHWM, RELAY_HWM)
                sock.setsockopt(zmq.LINGER, self.cfg.linger_ms)
                sock.connect(self.cfg.relay_results[r])
            try:
                # One part, copied: a zero-copy send (a garbage-collector thread frees the buffer) cost about 70 µs
                # a part here, more than a batch's sends to its producers without relays (bench/NOTES.md 29).
                sock.send(pack_rows(batch.replies, reply_of, part, step), zmq.NOBLOCK)
                self.relayed_results += len(reply_of)
            except zmq.Again:  # that relay is behind: this engine sends the rows itself (never blocks, none lost)
                self.relay_fallbacks += 1
                self.router.send_rows(batch.replies, reply_of.tolist(), memoryview(part), step)

    def _inflight_remaining_ns(self, now_ns: int) -> int:
        total = 0
        for lane in self._busy_lanes:
            left = self._lane_predicted_ns[lane] - (now_ns - self._lane_dispatch_ns[lane])
            if left > 0:
                total += left
        return total

    # ------------------------------------------------------------------ dispatch and completion
    def _dispatch_free(self) -> None:
        """Fill free lanes: queued tasks in the policy's order, then the pending bulk batch, read after them."""
        if len(self.sched):
            self._dispatch()
        if self._pending_bulk is not None and self._free_lanes and not len(self.sched):
            self._start_pending_bulk()

    def _dispatch(self) -> None:
        sched = self.sched
        while self._free_lanes and len(sched):
            cost_ns, task = sched.pop_entry()
            now = time.monotonic_ns()
            # A probe runs unless already late: its purpose is to measure what the prediction says is too slow.
            if (now > task.deadline_ns if task.probe else self.admission.expired_at_dispatch(task, now)):
                self._inflight_keys.discard((task.reply_to, task.id))
                late_us = (now - task.deadline_ns) * _NS_PER_US
                msg = (f"deadline passed {late_us:.1f} µs ago" if late_us >= 0 else
                       f"cannot finish within the {-late_us:.1f} µs left before its deadline")
                self._reply(task.id, task.reply_to, Code.EXPIRED, f"{msg}; not run",
                            latency_us={"queue": (now - task.recv_ns) * _NS_PER_US,
                                        "service": (now - task.recv_ns) * _NS_PER_US})
                self.tracker.count_expired()
                continue
            if self._batch_max > 1 and len(sched) and task.spec.batchable and not task.probe:
                grown = self._grow_batch(task, now)
                if grown is not None:
                    self._start_batch(grown[0], grown[1], now)
                    continue
            self._start(task, cost_ns, now)

    def _grow_batch(self, task: Task, now: int) -> tuple[list[Task], int] | None:
        """(batch, its predicted service ns): ``task`` plus the queued tasks of its form that come next in the
        policy's order, while the batch's predicted service still meets the earliest deadline in it (None: nothing
        to batch with).

        Only the head of the queue is ever taken, so batching never reorders the policy; a task of another form
        at the head ends the batch. Tasks of one form share one ``checked`` object (ingest.fastdecode)."""
        sched = self.sched
        form = task.checked
        per_task = max(task.in_bytes, task.out_bytes)
        room = self.backend.max_task_bytes
        predict = self.predictor.predict_ns
        expired = self.admission.expired_at_dispatch
        earliest = task.deadline_ns
        batch = [task]
        cost_ns = 0
        while len(batch) < self._batch_max and len(sched):
            nxt = sched.peek()
            if nxt.checked is not form or nxt.probe or (len(batch) + 1) * per_task > room or expired(nxt, now):
                break
            d = nxt.deadline_ns
            if earliest is not None and (d is None or earliest < d):
                d = earliest
            k_cost = predict(task.kernel, size_class((len(batch) + 1) * task.in_bytes))
            if d is not None and now + k_cost > d:
                break
            sched.pop_entry()
            batch.append(nxt)
            earliest, cost_ns = d, k_cost
        return (batch, cost_ns) if len(batch) > 1 else None

    def _checked_rows(self, spec, checked, inputs: list[np.ndarray], k: int):
        """The checked object of ``k`` stacked rows of the form whose one-task checked object is ``checked``, built
        once per (form, k). ``inputs``: stacked rows of that form, ``k`` or fewer (a padded bulk batch). Raises
        TaskError as ``spec.check`` does (a row-wise kernel's own form never does)."""
        key = (id(checked), k)
        entry = self._batch_forms.get(key)
        if entry is None or entry[0] is not checked:
            if len(inputs) and len(inputs[0]) != k:  # shapes of k rows: views of the first row
                inputs = rows_like(inputs, k)
            entry = (checked, spec.check(inputs, checked.params))
            if len(self._batch_forms) >= 1024:
                self._batch_forms.clear()
            self._batch_forms[key] = entry
        return entry[1]

    def _start_batch(self, batch: list[Task], cost_ns: int, now: int) -> None:
        """Run ``batch`` (tasks of one form) as one task of stacked inputs on a free lane."""
        first = batch[0]
        k = len(batch)
        inputs = [np.stack([t.inputs[j] for t in batch]) for j in range(len(first.inputs))]
        free = self._free_lanes
        lane = free.pop() if min(t.priority for t in batch) == 0 else free.pop(0)
        try:
            self.backend.submit(lane, first.spec, inputs, self._checked_rows(first.spec, first.checked, inputs, k),
                                False)
        except (TaskError, CudaError) as e:  # a row-wise kernel's own form never fails its check; answered all
            self._submit_failed(lane, batch, e, now, f"batched run of {k}: ")
            return
        if self.trace is not None:
            submitted = time.monotonic_ns()
            for t in batch:
                if t.trace_row >= 0:
                    self.trace.buf[t.trace_row + POPPED] = now
                    self.trace.buf[t.trace_row + SUBMITTED] = submitted
        self._dispatched += 1
        self.batches += 1
        self.batched_tasks += k
        self._lane_task[lane] = first
        self._lane_batch[lane] = batch
        self._lane_dispatch_ns[lane] = now
        self._lane_predicted_ns[lane] = cost_ns
        self._busy_lanes.append(lane)

    def _start(self, task: Task, cost_ns: int, now: int) -> None:
        """Submit ``task`` on a free lane (the caller checked there is one)."""
        lane = self._take_lane(task.priority)
        timed = self._take_timing(lane, now)
        try:
            self.backend.submit(lane, task.spec, task.inputs, task.checked, timed)
        except (TaskError, CudaError) as e:
            self._submit_failed(lane, (task,), e, now)
            return
        if self.trace is not None:
            self.trace.buf[task.trace_row + POPPED] = now
            self.trace.buf[task.trace_row + SUBMITTED] = time.monotonic_ns()
        self._started(lane, task, cost_ns, now)

    def _take_lane(self, priority: int) -> int:
        # Urgent tasks take the lowest free lane (highest stream priority); others the highest free one,
        # which keeps the urgent lanes free for the next urgent arrival.
        free = self._free_lanes
        return free.pop() if priority == 0 else free.pop(0)

    def _take_timing(self, lane: int, now: int) -> bool:
        """Whether the task about to start on ``lane`` gets GPU stage timing (every ``stage_timing_every``-th, at
        most one per ``stage_timing_gap_ms``)."""
        every = self._timing_every
        self._dispatched += 1
        timed = every == 1
        if (every > 1 and self._dispatched - self._last_timed >= every
                and now - self._last_timed_ns >= self._timing_gap_ns):
            timed = True
            self._last_timed, self._last_timed_ns = self._dispatched, now
        self._lane_sampled[lane] = timed and every != 1
        return timed

    def _started(self, lane: int, task: Task, cost_ns: int, now: int) -> None:
        self._lane_task[lane] = task
        self._lane_dispatch_ns[lane] = now
        self._lane_predicted_ns[lane] = cost_ns
        self._busy_lanes.append(lane)

    def _submit_failed(self, lane: int, tasks: Sequence[Task], exc: TaskError | CudaError, now: int,
                       prefix: str = "") -> None:
        """A submit on ``lane`` raised: the lane is free again, and each task gets its error. A sticky CUDA
        error also takes the fatal fault path (the engine must be restarted)."""
        self._free_lanes.append(lane)
        if isinstance(exc, CudaError):
            for task in tasks:
                self._fail(task, Code.GPU_FAULT, f"{prefix}{exc}", now)
            if exc.sticky:
                self._gpu_fault(str(exc), fatal=True)
        else:
            for task in tasks:
                self._fail(task, exc.code, f"{prefix}{exc.message}", now)

    def _fail(self, task: Task, code: Code, message: str, now_ns: int) -> None:
        self._inflight_keys.discard((task.reply_to, task.id))
        self._reply(task.id, task.reply_to, code, message,
                    latency_us={"service": (now_ns - task.recv_ns) * _NS_PER_US})
        self.tracker.count_error(code)

    def _poll_lanes(self) -> bool:
        done_any = False
        backend = self.backend
        for lane in tuple(self._busy_lanes):
            try:
                if not backend.poll(lane):
                    continue
            except CudaError as e:
                self._gpu_fault(str(e), fatal=e.sticky)
                return True
            self._complete(lane)
            done_any = True
        return done_any

    def _complete(self, lane: int) -> None:
        if self._lane_bulk[lane] is not None:
            self._complete_bulk(lane)
            return
        if self._lane_batch[lane] is not None:
            self._complete_batch(lane)
            return
        trace = self.trace
        seen_ns = time.monotonic_ns() if trace is not None else 0
        task = self._lane_task[lane]
        done_ns = time.monotonic_ns()
        outputs, times = self.backend.finish(lane)
        dispatch_ns = self._lane_dispatch_ns[lane]
        recv_ns = task.recv_ns
        missed = task.deadline_ns is not None and done_ns > task.deadline_ns
        if times is not None:
            latency_us = {
                "queue": (dispatch_ns - recv_ns) * _NS_PER_US,
                "h2d": times.h2d_ns * _NS_PER_US,
                "kernel": times.kernel_ns * _NS_PER_US,
                "d2h": times.d2h_ns * _NS_PER_US,
                "service": (done_ns - recv_ns) * _NS_PER_US,
            }
            payload = encode_ok_result(task.id, outputs, missed, latency_us)
        else:  # untimed task (stage_timing_every > 1): no GPU stage figures rather than made-up ones
            checked = task.checked
            entry = self._encoders.get(id(checked))
            if entry is None or entry[0] is not checked:  # first result of this form: its encoder, kept with it
                if len(self._encoders) >= 1024:
                    self._encoders.clear()
                entry = self._encoders[id(checked)] = (checked, OkEncoder(outputs))
            payload = entry[1].encode(task.id, outputs, missed, (dispatch_ns - recv_ns) * _NS_PER_US,
                                      (done_ns - recv_ns) * _NS_PER_US)
        encoded_ns = time.monotonic_ns() if trace is not None else 0
        self.router.send(task.reply_to, payload)
        sent_ns = time.monotonic_ns()
        if times is None and self._warm_ns:  # the form's record for cache warming, after the send
            self._warm_results[id(task.checked)] = (entry[1], outputs, task.id)
        # Only the result's own work comes before the send; the rest waits until it has gone. The lane is reusable
        # now: its output views were copied into the payload.
        self._lane_task[lane] = None
        self._busy_lanes.remove(lane)
        self._free_lanes.append(lane)
        if trace is not None and task.trace_row >= 0:
            buf, base = trace.buf, task.trace_row
            buf[base + SEEN_DONE] = seen_ns
            buf[base + COLLECTED] = done_ns
            buf[base + ENCODED] = encoded_ns
            buf[base + SENT] = sent_ns
        self.results_sent += 1
        self._inflight_keys.discard((task.reply_to, task.id))
        e2e_ns = time.time_ns() - task.sent_ns if task.sent_ns is not None else None
        # A sampled timed task (events around each stage: 20 to 25 µs more; with --resident also the launched path
        # instead of the resident one) does not teach the predictor: it would raise every untimed task's
        # prediction, and admission then rejected as infeasible tasks that would have made it (bench/NOTES.md 25).
        # A probe's or a first sample is always taken: the predictor has nothing better.
        run_ns = done_ns - dispatch_ns
        if self._lane_sampled[lane] and not task.probe and self.predictor.knows(task.kernel, task.size_class):
            run_ns = None
        self._book((task.kernel, task.priority, dispatch_ns - recv_ns, sent_ns - recv_ns, e2e_ns, times, sent_ns,
                    missed, task.size_class, run_ns, task.probe))

    def _warm(self) -> None:
        """Run a recent task's decode, its input copy into the idle lane an urgent task takes next (nothing started)
        and its result's encode again, and discard them (``keep_warm_us``): a task arriving after idle then finds
        that code and data in the CPU's caches. One form a pass, in turn, so that a pass stays short (a frame
        arriving meanwhile waits for it) and a mix of forms stays warm. Called only in idle loop passes."""
        n = self.warm_passes
        frame = _in_turn(self._warm_frames, n)
        if frame is not None:
            matched = self.decoder.rehearse(frame, 0)
            if matched is not None:
                rec, values = matched
                form = rec[0]
                self.predictor.predict_ns(rec[1], size_class(form.in_bytes))
                free = self._free_lanes
                if free and not self._busy_lanes:  # the lane an urgent task takes next (_take_lane), idle
                    backend = self.backend
                    try:
                        if not backend.warm_frame(free[-1], form.spec, frame, values[6], rec[4], form.checked):
                            backend.warm(free[-1], form.spec, rec[5](frame, values[6]), form.checked)
                    except Exception:  # noqa: BLE001 - a warm-up must never stop the loop: turn it off instead
                        log.exception("cache warming failed; keep_warm_us is off from now on")
                        self._warm_ns = 0
        result = _in_turn(self._warm_results, n)
        if result is not None:
            encoder, outputs, task_id = result
            encoder.encode(task_id, outputs, False, 0.0, 0.0)
        self.warm_passes = n + 1

    def _book(self, entry: tuple) -> None:
        """Queue a sent task's bookkeeping for an idle loop pass (``_flush_books``): ``(kernel, priority,
        queue_ns, service_ns, e2e_ns or None, StageTimes or None, sent_ns, missed, size_class, run_ns or None,
        probe)``; ``run_ns`` (dispatch to done) is the predictor's sample, None for a batch's later tasks."""
        books = self._books
        books.append(entry)
        if len(books) >= _BOOKS_MAX:  # never idle (overload): bounded all the same
            self._flush_books()

    def _flush_bulk_hist(self) -> None:
        """Record the bulk batches' held latencies: one histogram update per (kernel, priority, stage)."""
        held, self._bulk_hist, self._bulk_hist_n = self._bulk_hist, {}, 0
        record = self.tracker.record_many
        for (kernel, priority, stage), parts in held.items():
            record(kernel, priority, stage, parts[0] if len(parts) == 1 else np.concatenate(parts))

    def _flush_books(self, limit: int = 1 << 30) -> None:
        """Apply up to ``limit`` queued bookkeeping entries, oldest first.

        Why deferred: the stage histograms, the counters and the predictor's update cost about 8 µs of loop time
        per task on the H200 host. Done right after the send, they delay a frame that is already waiting (at
        10 kHz, the task after a slow one: that was the round trip's tail, bench/NOTES.md 22); done in idle passes,
        one entry per pass, a frame arriving meanwhile waits for at most one entry. Every reader of the tracker
        on the loop thread (monitor line, stats answer, shutdown) flushes first, so nothing it reports is late;
        admission reads a prediction at most one idle pass (or ``_BOOKS_MAX`` tasks under overload) old.
        """
        if self._bulk_hist and limit >= len(self._books):  # a full flush: every reader of the tracker sees them too
            self._flush_bulk_hist()
        books = self._books
        n = min(limit, len(books))
        record, count_ok, observe = self.tracker.record_stages, self.tracker.count_ok, self.predictor.observe
        for kernel, priority, queue_ns, service_ns, e2e_ns, times, sent_ns, missed, sc, run_ns, probe in books[:n]:
            if times is None:
                stages = {"queue": queue_ns, "service": service_ns}
            else:
                stages = {"queue": queue_ns, "h2d": times.h2d_ns, "kernel": times.kernel_ns, "d2h": times.d2h_ns,
                          "service": service_ns}
            if e2e_ns is not None:
                stages["e2e"] = e2e_ns
            record(kernel, priority, stages)
            count_ok(sent_ns, missed)
            if run_ns is not None:
                observe(kernel, sc, run_ns, probe)
        del books[:n]

    def _complete_batch(self, lane: int) -> None:
        """Each task of a finished batch gets its own result: its rows of the stacked outputs."""
        seen_ns = time.monotonic_ns()
        batch = self._lane_batch[lane]
        self._lane_batch[lane] = None
        self._lane_task[lane] = None
        self._busy_lanes.remove(lane)
        outputs = self.backend.collect(lane)
        done_ns = time.monotonic_ns()
        dispatch_ns = self._lane_dispatch_ns[lane]
        payloads, missed = [], []
        for i, task in enumerate(batch):
            recv_ns = task.recv_ns
            late = task.deadline_ns is not None and done_ns > task.deadline_ns
            missed.append(late)
            payloads.append(encode_ok_result(task.id, [o[i] for o in outputs], late,
                                             {"queue": (dispatch_ns - recv_ns) * _NS_PER_US,
                                              "service": (done_ns - recv_ns) * _NS_PER_US}))
        self._free_lanes.append(lane)  # every row is copied into a payload
        encoded_ns = time.monotonic_ns()
        send = self.router.send
        for task, payload in zip(batch, payloads):  # noqa: B905 - one payload per task
            send(task.reply_to, payload)
        sent_ns = time.monotonic_ns()
        self.results_sent += len(batch)
        trace = self.trace
        # The predictor learns the batch's run once, for the size class of all its inputs (the first entry).
        run_ns, batch_class = done_ns - dispatch_ns, size_class(len(batch) * batch[0].in_bytes)
        for task, late in zip(batch, missed):  # noqa: B905 - one flag per task
            self._inflight_keys.discard((task.reply_to, task.id))
            e2e_ns = time.time_ns() - task.sent_ns if task.sent_ns is not None else None
            self._book((task.kernel, task.priority, dispatch_ns - task.recv_ns, sent_ns - task.recv_ns, e2e_ns, None,
                        sent_ns, late, batch_class, run_ns, False))
            run_ns = None
            if trace is not None and task.trace_row >= 0:
                base = task.trace_row
                trace.buf[base + SEEN_DONE] = seen_ns
                trace.buf[base + COLLECTED] = done_ns
                trace.buf[base + ENCODED] = encoded_ns
                trace.buf[base + SENT] = sent_ns

    def _lane_tasks(self, lane: int) -> list[Task]:
        """The tasks a busy lane is running: its batch, or its one task (for a bulk batch, what ``_fail`` reads of
        each: id, reply_to, recv_ns)."""
        bulk = self._lane_bulk[lane]
        if bulk is not None:
            self._lane_bulk[lane] = None
            batch, keys, _ = bulk
            return [_Row(i, reply_to, r) for (reply_to, i), r in zip(keys, batch.recv_ns.tolist())]  # noqa: B905
        batch = self._lane_batch[lane]
        if batch is not None:
            self._lane_batch[lane] = None
            return batch
        task = self._lane_task[lane]
        return [task] if task is not None else []

    def _gpu_fault(self, reason: str, fatal: bool) -> None:
        """Every in-flight task gets GPU_FAULT. A fatal fault (a sticky CUDA error poisons the context; a hung
        kernel cannot be stopped from the host) also stops the server with ``fault`` set: ``run_server`` then
        exits ``EXIT_GPU_FAULT`` and the supervisor starts a fresh engine with a fresh context."""
        log.error("GPU fault: %s; failing %d in-flight task(s)", reason, len(self._busy_lanes))
        now = time.monotonic_ns()
        for lane in tuple(self._busy_lanes):
            tasks = self._lane_tasks(lane)
            self._lane_task[lane] = None
            self._busy_lanes.remove(lane)
            self._free_lanes.append(lane)  # after a non-fatal fault the lane serves again
            for task in tasks:
                self._fail(task, Code.GPU_FAULT, f"GPU fault while running: {reason}", now)
        if fatal:
            self.fault = reason
            self._accepting = False  # whatever is still read or queued is answered SHUTDOWN, not run
            self.stop()

    def _watchdog(self, now_ns: int) -> None:
        """A task in flight longer than ``watchdog_ms`` means a hung kernel: fail it (and its lane mates) by the
        fault path. The GPU cannot be interrupted from here; only a new context frees it."""
        limit = self._watchdog_ns
        for lane in self._busy_lanes:
            if now_ns - self._lane_dispatch_ns[lane] > limit:
                task = self._lane_task[lane]
                kernel = task.kernel if task is not None else "?"
                self._gpu_fault(f"watchdog: {kernel} on lane {lane} ran over {self.cfg.watchdog_ms:g} ms", fatal=True)
                return

    # ------------------------------------------------------------------ stats
    def snapshot(self) -> dict:
        now = time.monotonic_ns()
        snap = self.tracker.snapshot(now)
        snap["stages"] = self.tracker.stage_summaries()
        snap["server"] = {
            "backend": self.backend.description,
            "policy": self.cfg.policy,
            "lanes": self.backend.lanes,
            "uptime_s": (now - self.started_ns) / 1e9,
            "frames": self.receiver.frames,
            "batches": self.batches,
            "bulk_tasks": self.bulk_tasks,
            "relayed_results": self.relayed_results,
            "relay_fallbacks": self.relay_fallbacks,
            "batched_tasks": self.batched_tasks,
            "undecodable": self.receiver.undecodable,
            "results_sent": self.results_sent,
            "undeliverable": self.router.undeliverable,
            "undeliverable_by_reason": dict(self.router.undeliverable_by_reason),
            "results_held": self.router.backlog,
            "results_held_peak": self.router.backlog_peak,
            "queued": len(self.sched),
            "admission_probes": self.probes,
            "warm_passes": self.warm_passes,  # cache warming's idle passes (keep_warm_us): 0 when it is off
            "in_flight": len(self._busy_lanes),
        }
        return snap

    def _serve_stats(self) -> None:
        sock = self.stats_socket
        # Readiness first: a NOBLOCK recv that finds nothing raises zmq.Again, 5 to 12 µs on the H200 host, once a
        # millisecond on the loop thread (a frame arriving meanwhile waits for it).
        if not sock.getsockopt(_EVENTS) & _POLLIN:
            return
        try:
            sock.recv(zmq.NOBLOCK)
        except zmq.Again:
            return
        self._flush_books()
        sock.send(msgpack.packb(self.snapshot(), use_bin_type=True))

    # ------------------------------------------------------------------ loop
    def stop(self) -> None:
        """Ask the loop to stop accepting and drain (thread- and signal-safe)."""
        self._stop.set()

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stop())

    def _pin(self) -> None:
        """Pin the loop thread and clear its CPU of the process's other threads (``zmqrt.placement``)."""
        for line in pin_loop(self.cfg.cpu, self.cfg.fifo_priority, self.cfg.cpu_keep_off):
            log.info("%s", line)

    def serve_forever(self) -> None:
        self.backend.bind_thread()
        self._pin()
        # Startup objects (kernels, buffers, histograms) never die: move them out of the collector's view. The
        # task path allocates no reference cycles (refcounting frees it), so automatic collection is off while
        # serving and a young-generation pass runs only when the loop is idle: a collection in the middle of a
        # task would land in its latency.
        gc.collect()
        gc.freeze()
        gc.disable()
        gc_count, gc_collect = gc.get_count, gc.collect
        sock = self.receiver.socket
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        if self.stats_socket is not None:
            poller.register(self.stats_socket, zmq.POLLIN)
        stats_sock = self.stats_socket
        spin = self.cfg.spin
        idle_timeout_ms = max(1, min(100, int(self.cfg.monitor_interval_s * 1000)))
        # Idle: block in the ingest socket's recv, up to idle_timeout_ms. With a stats endpoint as well, the wait is
        # cut to _STATS_WAIT_MS and each timeout runs a loop pass (housekeeping answers a stats request), so an idle
        # server answers stats within that; a busy one answers once a millisecond, as before.
        relayed = bool(self.cfg.relay_results)
        wait_in_recv = not spin and not relayed
        if wait_in_recv:
            sock.setsockopt(zmq.RCVTIMEO, idle_timeout_ms if stats_sock is None else
                            min(idle_timeout_ms, _STATS_WAIT_MS))
        next_housekeeping_ns = 0
        recv = sock.recv
        # Asking ZMQ_EVENTS costs well under a µs; a NOBLOCK recv that finds nothing raises zmq.Again, which
        # measured 7.5 µs on the H200 host: paid on every loop pass, it was a quarter of the service time.
        readable = sock.getsockopt
        EVENTS, POLLIN = int(zmq.EVENTS), int(zmq.POLLIN)  # plain ints: IntFlag.__and__ costs ~2 µs
        accept = self._accept
        receiver = self.receiver
        batching = self._batch_max > 1
        bulk = batching and self.cfg.bulk
        batch_max = self._batch_max
        monotonic_ns = time.monotonic_ns
        NOBLOCK = int(zmq.NOBLOCK)
        router = self.router
        warm_ns, next_warm_ns = self._warm_ns, 0
        # Without spin: poll this long after the last piece of work before sleeping (idle_poll_us; inf with spin).
        poll_ns = idle_poll_us(self.cfg) * 1000
        active_ns = 0  # when the loop last had work: a frame read, a lane busy, a task queued
        while not self._stop.is_set():
            # One frame per pass while a lane is free, then completions, then dispatch: a task read while a lane
            # is free starts at once. Reading a batch of 64 first made a burst wait for all 64 decodes (~0.5 ms)
            # before the first one ran, and completions waited as long: that was the millisecond p99. With every
            # lane busy a few frames are read ahead, so the policy orders them (and a full queue says QUEUE_FULL)
            # instead of ZeroMQ's buffer holding them unseen.
            progressed = False
            if router.backlog:  # results a slow producer's outbox refused: retry (never blocks)
                router.flush()
            n = 0
            # With a batch already pending (bulk path), frames wait in ZeroMQ until a lane frees: the next backlog is
            # read as a batch too, not task by task into the queue.
            limit = 0 if self._pending_bulk is not None else (1 if self._free_lanes else _READ_AHEAD)
            if relayed:  # relay messages, many frames each: read as backlogs
                if limit and not (router.backlog and router.backlog_full) and readable(EVENTS) & POLLIN:
                    progressed = self._read_relay()
                limit = 0
            # While the held results are at their bound, read no new task: ZeroMQ's ingest queue then fills and
            # pushes back on the producers, instead of the server dropping results it cannot deliver.
            while n < limit and not (router.backlog and router.backlog_full) and readable(EVENTS) & POLLIN:
                frame = recv(zmq.NOBLOCK)
                receiver.frames += 1
                n += 1
                progressed = True
                if bulk and readable(EVENTS) & POLLIN:
                    # Another frame waits already: the loop is behind its producers. Read the backlog (up to
                    # --batch-max frames) and decode it as batches.
                    frames, stamps = [frame], [monotonic_ns()]
                    # recv until ZeroMQ has no more: one zmq.Again at the end costs less than asking ZMQ_EVENTS
                    # before each frame (about 2 µs a frame here, a third of the bulk path's cost per task).
                    try:
                        while len(frames) < batch_max:
                            frames.append(recv(NOBLOCK))
                            stamps.append(monotonic_ns())
                    except zmq.Again:
                        pass
                    receiver.frames += len(frames) - 1
                    # Finish what the GPU has done before decoding this backlog: its results are older than these
                    # frames, and would wait behind this backlog's decode and launch (150 to 350 µs on the H200 host
                    # at 200k tasks/s; the A/B was within that host's spread, bench/NOTES.md 31).
                    if self._busy_lanes and self._poll_lanes():
                        progressed = True
                    self._accept_backlog(frames, stamps)
                    break
                accept(frame)
            if self._busy_lanes and self._poll_lanes():
                progressed = True
            if self._free_lanes and (len(self.sched) or self._pending_bulk is not None):
                self._dispatch_free()
            now = time.monotonic_ns()
            if progressed or self._busy_lanes or len(self.sched):
                active_ns = now
            if now >= next_housekeeping_ns:
                next_housekeeping_ns = now + 1_000_000
                if (self._books or self._bulk_hist) and self.monitor.due(now):
                    self._flush_books()
                for line in self.monitor.maybe_tick(now):
                    log.info("%s", line)
                if stats_sock is not None:
                    self._serve_stats()
                if self._watchdog_ns and self._busy_lanes:
                    self._watchdog(now)
                if gc_count()[0] > _GC_BUSY_THRESHOLD:  # never idle (overload): collect anyway, bounded memory
                    gc_collect(1)
            if not progressed and not self._busy_lanes and not len(self.sched):
                if self._books:  # one entry per idle pass: a frame arriving meanwhile waits for one at most
                    self._flush_books(1)
                    continue
                if self._bulk_hist:
                    self._flush_bulk_hist()
                    continue
                # Idle: the cheapest moment to free garbage (automatic collection is off while serving).
                young, middle, _ = gc_count()
                if young > _GC_IDLE_THRESHOLD:
                    gc_collect(1 if middle > 10 else 0)
                if now - active_ns < poll_ns:  # polling (always with spin: inf); warm when due
                    if warm_ns and now >= next_warm_ns:
                        self._warm()
                        warm_ns = self._warm_ns  # 0 once a warm pass failed
                        next_warm_ns = monotonic_ns() + warm_ns
                    continue
                # The idle poll is over (block mode): sleep until a frame comes or the idle timeout.
                if wait_in_recv and not router.backlog:
                    # Wait in recv itself, as the prototype does: the frame is in hand when the loop wakes. A
                    # poll, then a loop pass, then the recv cost the round trip about 18 µs more than the
                    # prototype's at equal service time in block mode (bench/NOTES.md 27).
                    try:
                        frame = recv()  # RCVTIMEO: idle_timeout_ms
                    except zmq.Again:
                        continue
                    receiver.frames += 1
                    accept(frame)
                    continue
                poller.poll(1 if router.backlog else idle_timeout_ms)
        gc.enable()
        self._shutdown()

    def _shutdown(self) -> None:
        """Stop accepting; answer everything read: run queued tasks until the drain timeout, reject the rest."""
        self._accepting = False
        sock = self.receiver.socket
        # Frames already received by ZeroMQ are read and answered SHUTDOWN, so none is lost silently.
        router = self.router
        give_up_ns = time.monotonic_ns() + int(self.cfg.drain_timeout_s * 1e9)
        while time.monotonic_ns() < give_up_ns:  # producers still sending cannot keep shutdown waiting
            if router.backlog:
                router.flush()
                if router.backlog_full:  # each SHUTDOWN answer needs room: wait for the producers, bounded
                    time.sleep(0.001)
                    continue
            if self.cfg.relay_results:
                if not self._read_relay():
                    break
                continue
            try:
                frame = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            self.receiver.frames += 1
            self._accept(frame)
        self.receiver.close()
        # After a fatal GPU fault the context is poisoned: queued tasks are not run but answered SHUTDOWN.
        deadline = time.monotonic_ns() + (int(self.cfg.drain_timeout_s * 1e9) if self.fault is None else 0)
        while (len(self.sched) or self._busy_lanes or self._pending_bulk) and time.monotonic_ns() < deadline:
            if router.backlog:
                router.flush()
            if self._busy_lanes:
                self._poll_lanes()
            if self._free_lanes and (len(self.sched) or self._pending_bulk is not None):
                self._dispatch_free()
        now = time.monotonic_ns()
        leftover = self.sched.drain()
        for task in leftover:
            self._inflight_keys.discard((task.reply_to, task.id))
            self._refuse(task, Code.SHUTDOWN, "server shut down before this task could run", now)
        if self._pending_bulk is not None:  # read as a batch, never started
            batch = self._pending_bulk[0]
            self._pending_bulk = None
            for reply_to, task_id in batch.keys():
                self._reply(task_id, reply_to, Code.SHUTDOWN, "server shut down before this task could run")
                self.tracker.count_rejected(Code.SHUTDOWN)
        for lane in tuple(self._busy_lanes):  # only after the drain timeout: the GPU did not finish in time
            tasks = self._lane_tasks(lane)
            self._busy_lanes.remove(lane)
            for task in tasks:
                self._fail(task, Code.SHUTDOWN, "server shut down while the task was running", now)
        self._flush_books()
        if self.cfg.cpu is not None:  # which threads shared the loop's CPU, and how busy each was
            for line in thread_report():
                log.info("%s", line)
        log.info("shutdown: %d result(s) sent, %d queued task(s) rejected SHUTDOWN, %d undeliverable",
                 self.results_sent, len(leftover), self.router.undeliverable)
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.receiver.close()
        if self.curve is not None:
            self.curve.close()
        for relay_sock in self._relay_socks.values():
            relay_sock.close()  # LINGER: the last rows reach their relays
        self.router.close(self.cfg.linger_ms)
        if self.trace is not None:
            path = self.trace.dump(self.cfg.trace_path)
            log.info("stage trace of %d task(s) written to %s", min(self.trace.max_seq + 1, self.trace.capacity), path)
            if self.batch_trace is not None and self.batch_trace.count:
                bpath = batch_trace_path(path)
                np.save(bpath, self.batch_trace.to_numpy())
                log.info("bulk batch trace of %d batch(es) written to %s",
                         min(self.batch_trace.count, self.batch_trace.capacity), bpath)
        if self.stats_socket is not None:
            self.stats_socket.close(linger=0)
        if self.metrics is not None:
            self.metrics.close()
        self.backend.close()
        if self._own_ctx:
            self.ctx.term()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_server(cfg: ServerConfig) -> int:
    """The body of ``zmqrt serve``: start, log what runs where, serve until SIGINT/SIGTERM, drain, exit 0."""
    server = Server(cfg)
    for line in server.describe():
        log.info("%s", line)
    server.install_signal_handlers()
    log.info("serving; SIGINT or SIGTERM drains and stops")
    server.serve_forever()
    if server.fault is not None:
        log.error("engine stopped after a GPU fault (%s); exit %d", server.fault, EXIT_GPU_FAULT)
        return EXIT_GPU_FAULT
    return 0
