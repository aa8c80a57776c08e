"""Server configuration: defaults, an optional TOML file, then command-line flags (each overrides the last).

Every field has a sensible default so ``zmqrt serve`` with no arguments runs: ipc endpoints in the runtime
directory, the backend picked automatically, EDF, four lanes, 1 MiB tasks.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cpu_latency import valid_latency_us

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - 3.10
    tomllib = None  # type: ignore[assignment]

# Cache warming's interval with --spin and no setting (bench/NOTES.md 36: at 10 kHz on the H200 host the per-task
# path's decode fell from 13.8 to 7.3 µs p50).
KEEP_WARM_DEFAULT_US = 20.0
# Without spin, the loop polls this long after its last piece of work before it sleeps in recv, as Seastar's reactor
# does (its --idle-poll-time-us, default 200): at a steady rate of a few kHz or more the loop is awake, and with cache
# warming warm, when the next task comes, and an idle server still sleeps. On the H200 host at 10 kHz, receipt to
# sent over the resident prototype's server side was 1.35x, 1.44x and 1.42x at p50 with a loop that slept at once,
# 1.02x, 1.33x and 1.05x with the poll, alternating (bench/NOTES.md 37).
IDLE_POLL_DEFAULT_US = 200.0


def default_ipc_dir() -> Path:
    return Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir())


@dataclass
class ServerConfig:
    backend: str = "auto"  # auto | cuda | cpu
    device: int = 0
    ingest: str = field(default_factory=lambda: f"ipc://{default_ipc_dir() / 'zmqrt-ingest.sock'}")
    results: str | None = None  # bound PUSH for tasks without reply_to; None: such results are undeliverable
    stats: str | None = None  # REQ/REP snapshot endpoint
    metrics_port: int | None = None
    policy: str = "edf"  # edf | fp | rm | ps
    lanes: int = 4
    max_task_bytes: int = 1 << 20
    priority_levels: int = 8
    queue_capacity: int = 4096  # tasks per priority level
    ps_weights: list[float] | None = None
    admission: str = "reject"  # reject | flag
    # Admission predicts a task's service as mean + margin * mean absolute deviation of its (kernel, size class).
    # 1 (about p80 for a well-behaved kernel): a task is infeasible when it would most likely finish late. 3 (near
    # p99, the default until session 21) rejected every task of a kernel whose tail crossed its deadline during a
    # slow phase of the host, for seconds; most of them would have made it. On the H200 host's 10 kHz stream, 3
    # missed 6.34%, 0.48% and 0.59% (5,859 rejected), 1 missed 0.33%, 0.44% and 0.23% (none rejected) in one call
    # (bench/NOTES.md 36).
    admission_margin: float = 1.0
    expire: str = "predicted"  # off | late | predicted: when a queued task is expired at dispatch
    reply_to_patterns: list[str] | None = None
    kernels_dirs: list[str] = field(default_factory=list)
    cache_dir: str | None = None
    spin: bool = False  # busy-poll sockets and events even when idle
    # Without spin: µs the loop keeps polling after its last piece of work before it sleeps in recv. None:
    # IDLE_POLL_DEFAULT_US, or 0 with fifo_priority (the kernel throttles a SCHED_FIFO thread that runs 950 ms of a
    # second, which a loop polling between steady tasks would); 0: sleep at once.
    idle_poll_us: float | None = None
    # While the loop polls (spin, or idle_poll_us after work): every this many µs of idle time it runs a recent
    # task's decode (template match and checks), its input copy into an idle lane's slot (nothing started) and its
    # result's encode again, one form a pass in turn, and discards them, so that a task arriving after idle finds
    # that code and data in the CPU's caches (cache warming, as trading systems keep their order path warm). None:
    # KEEP_WARM_DEFAULT_US where the loop polls when idle (spin, or idle_poll_us > 0), else off; 0: off.
    keep_warm_us: float | None = None
    # Small vector_add/saxpy tasks run on a kernel resident on each lane, fed through mapped host memory: no driver
    # call per task (zmqrt.backends.resident). Costs one SM per lane, polling host memory even when idle.
    resident: bool = False
    cpu: int | None = None  # pin the loop thread to this CPU (ZeroMQ's I/O thread keeps the others)
    # Set by the supervisor for each of several engines (--devices): the other engines' loop CPUs, which this
    # engine's other threads stay off. Not a user setting.
    cpu_keep_off: tuple[int, ...] = ()
    fifo_priority: int = 0  # SCHED_FIFO priority for the loop thread where permitted; 0: normal scheduling
    # Hold a PM QoS CPU latency request of this many µs while serving (zmqrt.cpu_latency): 0 keeps every CPU out of
    # halt, so that waking ZeroMQ's I/O thread for a send is a flag, not an IPI to a halted vCPU. None: no request.
    cpu_latency_us: int | None = None
    # GPU events around h2d/kernel/d2h on every Nth task; 0: never. A timed task records four events and takes the
    # plain launch path instead of the graph: 20 to 25 µs more on an H200 host. One task in 16 put 6% of tasks in
    # the p95/p99 tail (bench/NOTES.md 13); one in 256 keeps the tail clean and still samples the GPU stages
    # about 40 times a second at 10 kHz.
    stage_timing_every: int = 256
    # ...and at most one timed task per this many ms (0: no limit). A timed task on the H200 host cost 150 to 200 µs
    # of loop time with --resident (the launched path, cold after hundreds of resident tasks, and the full encoder),
    # and at 10 kHz the next one or two tasks waited behind it: one in 256 put 1% of the round trips in the tail, the
    # whole p99 gap to the prototype (bench/NOTES.md 30). Ten a second keep the GPU stage histograms fed at any rate.
    stage_timing_gap_ms: float = 100.0
    # Deadline-aware batching: when a lane frees and queued tasks of one form (kernel, dtypes, shapes, params) of a
    # row-wise kernel are next in the policy's order, up to this many run as one launch, and the batch grows only
    # while its predicted finish meets the earliest deadline in it. A loop behind its producers reads the waiting
    # frames (up to batch_max) together, as batches (``bulk`` below). Off (1) by default: on the H200 host it raised
    # one engine's throughput 1.2x to 1.5x and four engines' sharing a GPU 2.6x, but under bursts it moves the
    # wait from ZeroMQ's queue into service time (the seed's 100 kHz burst: service p50 62 -> 518 µs) and it
    # cost the 10 kHz stream deadlines (bench/NOTES.md 17). A throughput setting, not a latency one.
    batch_max: int = 1
    # With batching on, a backlog of one layout of a form (any producer) is read as one batch and decoded, run and
    # answered with numpy (ingest.bulk, bench/NOTES.md 28); False: every frame goes task by task into the queue,
    # where batches form only from queued tasks (as before; for A/B runs).
    bulk: bool = True
    calibrate: bool = True
    monitor_interval_s: float = 1.0
    p95_target_us: float = 100.0
    drain_timeout_s: float = 5.0  # on shutdown: run queued tasks for at most this long, then reject SHUTDOWN
    result_hwm: int = 10_000
    ingest_hwm: int = 100_000
    linger_ms: int = 5000  # at shutdown, results still queued get this long to reach their producers
    watchdog_ms: float = 2000.0  # a task in flight longer than this is a hung GPU: fault path; 0: off
    ingest_connect: bool = False  # connect the ingest PULL instead of binding it (engines behind a fan-out)
    # Relay processes (zmqrt.relay) between the supervisor's fan-out and each engine: they do the per-task recv and
    # send, the engine decodes and runs batches. A throughput setting (each hop adds tens of µs); 0: none.
    ingest_workers: int = 0
    # ZeroMQ I/O threads of the several-engine fan-out (--devices): every task comes in and goes out through them.
    # One was 67% busy at 192k tasks/s on the H200 host; the producers' round trip p50 / p99 was 0.67 to 1.0 / 2.7 to
    # 44 ms over five runs with one, 0.56 to 0.76 / 1.65 to 12 ms over seven with two (bench/NOTES.md 32).
    fanout_io_threads: int = 2
    # How several engines (--devices) get their tasks. "proxy": this process binds ``ingest`` and deals the frames to
    # the engines (producers need one endpoint; a frame waits in the proxy, where any engine can take it, while one
    # restarts). "direct": engine i binds ``ingest`` with ``.i`` (ipc) or port + i (tcp) itself and each producer
    # connects to all of them, its PUSH dealing round-robin: no fan-out hop (its I/O threads and proxy were 50 to
    # 64% busy each at 200k tasks/s, and every task waits in them), at the price of a list of endpoints.
    fanout: str = "proxy"
    relay_results: tuple[str, ...] = ()  # set by the supervisor: the engine reads relay messages; relay r's endpoint
    trace_path: str | None = None  # write a per-task stage trace (.npy, zmqrt.trace) here at shutdown
    trace_capacity: int = 200_000  # tasks the trace ring holds (the most recent ones)
    # CURVE on ingest (zmqrt.security): the server's NAME.key_secret, and a directory of the producers' NAME.key
    # files it admits. Both or neither.
    curve_secret: str | None = None
    allowed_keys: str | None = None

    def replace(self, **changes: Any) -> ServerConfig:
        return dataclasses.replace(self, **changes)


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file whose top level (or ``[server]`` table) holds ServerConfig field names."""
    if tomllib is None:
        raise RuntimeError("--config needs Python 3.11+ (tomllib)")
    with open(path, "rb") as f:
        data = tomllib.load(f)
    data = data.get("server", data)
    known = {f.name for f in dataclasses.fields(ServerConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{path}: unknown setting(s) {unknown}; known: {sorted(known)}")
    return {k.replace("-", "_"): v for k, v in data.items()}


def build_config(file: str | Path | None = None, **overrides: Any) -> ServerConfig:
    values: dict[str, Any] = {}
    if file:
        values.update(load_toml(file))
    values.update({k: v for k, v in overrides.items() if v is not None})
    cfg = ServerConfig(**values)
    validate(cfg)
    return cfg


def idle_poll_us(cfg: ServerConfig) -> float:
    """How long the loop polls after its last piece of work before it sleeps: inf with spin (it never sleeps), else
    the setting, or with none IDLE_POLL_DEFAULT_US (0 with fifo_priority)."""
    if cfg.spin:
        return float("inf")
    if cfg.idle_poll_us is not None:
        return cfg.idle_poll_us
    return 0.0 if cfg.fifo_priority else IDLE_POLL_DEFAULT_US


def keep_warm_us(cfg: ServerConfig) -> float:
    """The cache-warming interval in effect: the setting, or with none KEEP_WARM_DEFAULT_US where the loop polls
    when idle (spin, or an idle poll), else 0."""
    if cfg.keep_warm_us is not None:
        return cfg.keep_warm_us
    return KEEP_WARM_DEFAULT_US if idle_poll_us(cfg) > 0 else 0.0


def validate(cfg: ServerConfig) -> None:
    if cfg.backend not in ("auto", "cuda", "cpu"):
        raise ValueError(f"backend must be auto, cuda or cpu, not {cfg.backend!r}")
    if cfg.policy not in ("edf", "fp", "rm", "ps"):
        raise ValueError(f"policy must be edf, fp, rm or ps, not {cfg.policy!r}")
    if cfg.lanes < 1 or cfg.lanes > 64:
        raise ValueError(f"lanes must be 1..64, not {cfg.lanes}")
    if cfg.max_task_bytes < 1024:
        raise ValueError(f"max_task_bytes must be at least 1024, not {cfg.max_task_bytes}")
    if cfg.fanout not in ("proxy", "direct"):
        raise ValueError(f"fanout must be proxy or direct, not {cfg.fanout!r}")
    if cfg.fanout_io_threads < 1:
        raise ValueError(f"fanout_io_threads must be at least 1, not {cfg.fanout_io_threads}")
    if cfg.cpu is not None and cfg.cpu < 0:
        raise ValueError(f"cpu must be a CPU number >= 0, not {cfg.cpu}")
    if cfg.cpu_latency_us is not None and not valid_latency_us(cfg.cpu_latency_us):
        raise ValueError(f"cpu_latency_us must be a whole number of µs >= 0, not {cfg.cpu_latency_us!r}")
    if not 0 <= cfg.fifo_priority <= 99:
        raise ValueError(f"fifo_priority must be 0 (off) or 1..99, not {cfg.fifo_priority}")
    if cfg.watchdog_ms < 0:
        raise ValueError(f"watchdog_ms must be >= 0 (0: off), not {cfg.watchdog_ms}")
    if cfg.ingest_workers < 0:
        raise ValueError(f"ingest_workers must be >= 0 (0: none), not {cfg.ingest_workers}")
    if cfg.batch_max < 1:
        raise ValueError(f"batch_max must be >= 1 (1: no batching), not {cfg.batch_max}")
    if cfg.keep_warm_us is not None:
        if not 0 <= cfg.keep_warm_us < float("inf"):
            raise ValueError(f"keep_warm_us must be a finite number >= 0 (0: off), not {cfg.keep_warm_us}")
    if cfg.idle_poll_us is not None and not 0 <= cfg.idle_poll_us < float("inf"):
        raise ValueError(f"idle_poll_us must be a finite number >= 0 (0: sleep at once; spin: never sleep), not "
                         f"{cfg.idle_poll_us}")
    if cfg.keep_warm_us and not idle_poll_us(cfg):
        raise ValueError("keep_warm_us needs a loop that polls when idle (spin, or idle_poll_us > 0): one that sleeps "
                         "at once has no idle time to warm in")
    if cfg.stage_timing_every < 0:
        raise ValueError(f"stage_timing_every must be >= 0, not {cfg.stage_timing_every}")
    if not 0 <= cfg.stage_timing_gap_ms < float("inf"):
        raise ValueError(f"stage_timing_gap_ms must be a finite number >= 0, not {cfg.stage_timing_gap_ms}")
    if not 0 <= cfg.admission_margin <= 100:
        raise ValueError(f"admission_margin must be 0..100 deviations, not {cfg.admission_margin}")
    if cfg.admission not in ("reject", "flag"):
        raise ValueError(f"admission must be reject or flag, not {cfg.admission!r}")
    if cfg.expire not in ("off", "late", "predicted"):
        raise ValueError(f"expire must be off, late or predicted, not {cfg.expire!r}")
    for ep in (cfg.ingest, cfg.results, cfg.stats):
        if ep is not None and not ep.startswith(("tcp://", "ipc://")):
            raise ValueError(f"endpoint must be tcp:// or ipc://, got {ep!r}")
    if (cfg.curve_secret is None) != (cfg.allowed_keys is None):
        raise ValueError("curve_secret (the server's NAME.key_secret) and allowed_keys (a directory of producers' "
                         "NAME.key files) go together: give both to turn CURVE on, or neither")
