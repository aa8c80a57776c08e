"""The load generator's core: task mixes, scenarios, open-loop schedules, several producer processes, results.

Contract
--------
- A :class:`MixEntry` is one kind of task (kernel, input size, priority, deadline, period, params) with a
  relative ``weight``. Mixes come from ``--mix "kernel=...,size=...,weight=..."`` strings
  (:func:`parse_mix`) or from a TOML scenario with ``[[task]]`` tables (:func:`load_scenario`). Every
  malformed value raises :class:`ScenarioError` (a ``ValueError``) naming the file, the table and the key.
- :func:`build_schedule` turns a :class:`LoadgenConfig` into intended send offsets (constant or Poisson
  arrivals at ``rate_hz``, for ``count`` tasks or ``duration_s`` seconds), the mix entry of each task (drawn by
  weight) and the tasks whose outputs are checked against numpy (a ``check_fraction`` sample). Everything is
  drawn from ``seed``, so every producer process rebuilds the same schedule and the same input pools.
- Inputs are generated once per mix entry into a pool of ``pool_size`` arrays (:func:`build_pools`), so
  generation never delays a send; tasks of an entry cycle through its pool.
- :func:`run_loadgen` runs the schedule through :func:`ingest.openloop.run_open_loop`, in this process or in
  ``processes`` spawned producers. Producer ``k`` takes tasks ``k, k+N, k+2N, ...`` with its own reply socket
  and id prefix; a barrier lines up their starts. Their per-task columns are merged into one
  :class:`LoadgenResult`, time-ordered by intended send time.
- Latency is measured from each task's *intended* send time (:func:`intended_latencies_ns`), so a server stall
  shows in the percentiles instead of slowing the sender (coordinated omission); :func:`naive_latencies_ns`
  is the misleading send-to-completion measure, kept for comparison.

The hot path lives in ``run_open_loop``; everything here is setup and bookkeeping (cold path).
"""

from __future__ import annotations

import math
import multiprocessing as mp
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from .openloop import Planned, Record, run_open_loop

try:
    import tomllib
except ImportError:  # Python 3.10: scenario files need 3.11+, everything else works
    tomllib = None  # type: ignore[assignment]

ARRIVALS = ("constant", "poisson")
STAGES = ("queue", "h2d", "kernel", "d2h", "service")
STATUSES = ("ok", "error", "rejected", "expired", "lost")
# Same range and precision as the server's tracker (zmqrt.latency.tracker): 1 ns .. 60 s, 3 significant digits.
HIST_LOWEST_NS = 1
HIST_HIGHEST_NS = 60_000_000_000
HIST_DIGITS = 3

_ENTRY_KEYS = {"kernel", "size", "priority", "deadline_us", "period_us", "weight", "params", "name"}
_SCENARIO_KEYS = {"name", "description", "rate", "duration", "count", "arrival", "timeout", "seed", "task"}


class ScenarioError(ValueError):
    """A mix string or scenario file that cannot be used; the message says where and why."""


@dataclass(frozen=True)
class MixEntry:
    """One kind of task in the mix. ``size`` is roughly the element count (``spec.sample_inputs``)."""

    kernel: str = "vector_add"
    size: int = 256
    priority: int | None = None
    deadline_us: float | None = None
    period_us: float | None = None
    weight: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)
    name: str = ""

    @property
    def label(self) -> str:
        """The tag of this entry's tasks and its row in the report."""
        if self.name:
            return self.name
        text = f"{self.kernel}/{self.size}"
        if self.priority is not None:
            text += f"/p{self.priority}"
        if self.deadline_us is not None:
            text += f"/{self.deadline_us:g}us"
        return text


@dataclass
class LoadgenConfig:
    """Everything one run needs; picklable, so spawned producers get it whole."""

    endpoint: str
    mix: list[MixEntry]
    rate_hz: float = 1000.0
    duration_s: float | None = None
    count: int | None = None
    arrival: str = "constant"
    timeout_s: float = 5.0
    check_fraction: float = 0.0
    seed: int | None = None
    processes: int = 1
    pool_size: int = 16
    curve_secret: str | None = None  # this producer's NAME.key_secret, for a server with CURVE on
    server_public: str | None = None  # the server's NAME.key
    collector: bool = False  # each producer's results go to a collector process of its own (ingest.collector)
    drain_per_send: int = 64  # results a producer behind schedule takes at most between sends (ingest.openloop)

    def validate(self) -> None:
        if not self.mix:
            raise ValueError("the task mix is empty")
        if (self.curve_secret is None) != (self.server_public is None):
            raise ValueError("--curve-secret (this producer's NAME.key_secret) and --server-public (the server's "
                             "NAME.key) go together")
        if not (self.rate_hz > 0 and math.isfinite(self.rate_hz)):
            raise ValueError(f"rate must be a positive number of Hz, got {self.rate_hz}")
        if self.count is None and self.duration_s is None:
            raise ValueError("give a duration or a count")
        if self.count is not None and self.count < 1:
            raise ValueError(f"count must be at least 1, got {self.count}")
        if self.duration_s is not None and not self.duration_s > 0:
            raise ValueError(f"duration must be positive, got {self.duration_s}")
        if self.arrival not in ARRIVALS:
            raise ValueError(f"arrival must be one of {', '.join(ARRIVALS)}, got {self.arrival!r}")
        if not 0.0 <= self.check_fraction <= 1.0:
            raise ValueError(f"check fraction must be in [0, 1], got {self.check_fraction}")
        if self.processes < 1:
            raise ValueError(f"processes must be at least 1, got {self.processes}")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout must be positive, got {self.timeout_s}")
        if self.pool_size < 1:
            raise ValueError(f"pool size must be at least 1, got {self.pool_size}")

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["mix"] = [dict(asdict(e), label=e.label) for e in self.mix]
        return out


# -- mixes and scenarios ---------------------------------------------------------------------------------------


def _entry_from_mapping(raw: Mapping[str, Any], where: str) -> MixEntry:
    unknown = set(raw) - _ENTRY_KEYS
    if unknown:
        raise ScenarioError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} "
                            f"(known: {', '.join(sorted(_ENTRY_KEYS))})")
    if "kernel" not in raw:
        raise ScenarioError(f"{where}: 'kernel' is required")

    def number(key: str, kind: type, default: Any, minimum: float | None = None) -> Any:
        value = raw.get(key, default)
        if value is None:
            return None
        # bool is an int in Python, but "priority = true" is a mistake, not 1.
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and isinstance(value, float)
                                                                                and not value.is_integer()):
            raise ScenarioError(f"{where}: {key} must be {'an integer' if kind is int else 'a number'}, "
                                f"got {value!r}")
        value = kind(value)
        if not math.isfinite(value):
            raise ScenarioError(f"{where}: {key} must be finite, got {value!r}")
        if minimum is not None and value < minimum:
            raise ScenarioError(f"{where}: {key} must be at least {minimum:g}, got {value!r}")
        return value

    kernel = raw["kernel"]
    if not isinstance(kernel, str) or not kernel:
        raise ScenarioError(f"{where}: kernel must be a non-empty string, got {kernel!r}")
    params = raw.get("params", {})
    if not isinstance(params, Mapping):
        raise ScenarioError(f"{where}: params must be a table of scalars, got {params!r}")
    name = raw.get("name", "")
    if not isinstance(name, str):
        raise ScenarioError(f"{where}: name must be a string, got {name!r}")
    weight = number("weight", float, 1.0, 0.0)
    if weight == 0:
        raise ScenarioError(f"{where}: weight must be positive, got 0")
    return MixEntry(kernel=kernel, size=number("size", int, 256, 1), priority=number("priority", int, None, 0),
                    deadline_us=number("deadline_us", float, None, 0.0),
                    period_us=number("period_us", float, None, 0.0), weight=weight, params=dict(params), name=name)


def _scalar(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_mix(text: str) -> MixEntry:
    """``"kernel=saxpy,size=256,priority=0,deadline_us=50,weight=3,alpha=2.0"`` -> :class:`MixEntry`.

    Keys other than the entry's fields are kernel params (``alpha=2.0``), or say so with ``params.alpha=2.0``.
    """
    raw: dict[str, Any] = {}
    params: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ScenarioError(f"--mix {text!r}: {part!r} is not key=value")
        if key.startswith("params."):
            params[key[len("params."):]] = _scalar(value.strip())
        elif key in _ENTRY_KEYS - {"params"}:
            raw[key] = value.strip() if key in ("kernel", "name") else _scalar(value.strip())
        else:
            params[key] = _scalar(value.strip())
    if params:
        raw["params"] = params
    return _entry_from_mapping(raw, f"--mix {text!r}")


@dataclass
class Scenario:
    """A scenario file: its task mix and the run settings it names (``None``: not given, the CLI decides)."""

    mix: list[MixEntry]
    name: str = ""
    description: str = ""
    rate_hz: float | None = None
    duration_s: float | None = None
    count: int | None = None
    arrival: str | None = None
    timeout_s: float | None = None
    seed: int | None = None


def parse_scenario(doc: Mapping[str, Any], where: str = "scenario") -> Scenario:
    """A parsed TOML document -> :class:`Scenario`; raises :class:`ScenarioError` on any bad key or value."""
    unknown = set(doc) - _SCENARIO_KEYS
    if unknown:
        raise ScenarioError(f"{where}: unknown top-level key(s) {', '.join(sorted(unknown))} "
                            f"(known: {', '.join(sorted(_SCENARIO_KEYS))})")
    tasks = doc.get("task")
    if not isinstance(tasks, list) or not tasks:
        raise ScenarioError(f"{where}: needs at least one [[task]] table")
    mix = []
    for i, raw in enumerate(tasks):
        if not isinstance(raw, Mapping):
            raise ScenarioError(f"{where}: task[{i}] must be a table")
        mix.append(_entry_from_mapping(raw, f"{where}: [[task]] #{i + 1}"))

    def opt(key: str, kinds: tuple[type, ...], positive: bool = True) -> Any:
        value = doc.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise ScenarioError(f"{where}: {key} must be {' or '.join(k.__name__ for k in kinds)}, got {value!r}")
        if positive and not value > 0:
            raise ScenarioError(f"{where}: {key} must be positive, got {value!r}")
        return value

    arrival = doc.get("arrival")
    if arrival is not None and arrival not in ARRIVALS:
        raise ScenarioError(f"{where}: arrival must be one of {', '.join(ARRIVALS)}, got {arrival!r}")
    for key in ("name", "description"):
        if not isinstance(doc.get(key, ""), str):
            raise ScenarioError(f"{where}: {key} must be a string")
    rate = opt("rate", (int, float))
    duration = opt("duration", (int, float))
    timeout = opt("timeout", (int, float))
    return Scenario(mix=mix, name=doc.get("name", ""), description=doc.get("description", ""),
                    rate_hz=None if rate is None else float(rate),
                    duration_s=None if duration is None else float(duration), count=opt("count", (int,)),
                    arrival=arrival, timeout_s=None if timeout is None else float(timeout),
                    seed=opt("seed", (int,), positive=False))


def load_scenario(path: str | Path) -> Scenario:
    """Read and check a TOML scenario file (see ``examples/scenarios/``)."""
    path = Path(path)
    if tomllib is None:
        raise ScenarioError(f"{path}: scenario files need Python 3.11+ (tomllib)")
    try:
        doc = tomllib.loads(path.read_text())
    except OSError as e:
        raise ScenarioError(f"{path}: cannot read: {e.strerror or e}") from e
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{path}: not valid TOML: {e}") from e
    return parse_scenario(doc, str(path))


# -- inputs and schedule ----------------------------------------------------------------------------------------


def build_pools(mix: Sequence[MixEntry], registry: Any, rng: np.random.Generator,
                pool_size: int) -> list[list[tuple[list[np.ndarray], dict]]]:
    """Per mix entry, ``pool_size`` sets of ``(inputs, params)``; the entry's params override sampled ones.

    Each set is validated by the kernel's own ``check`` here, so a bad kernel name, size or param fails before
    the first send rather than as a stream of error results.
    """
    from zmqrt.errors import TaskError

    pools = []
    for entry in mix:
        if entry.kernel not in registry:
            raise ScenarioError(f"mix entry {entry.label!r}: unknown kernel {entry.kernel!r} "
                                f"(known: {', '.join(registry.names())})")
        spec = registry.get(entry.kernel)
        pool = []
        for _ in range(pool_size):
            inputs, params = spec.sample_inputs(rng, entry.size)
            params = {**params, **entry.params}
            try:
                spec.check(inputs, params)
            except TaskError as e:
                raise ScenarioError(f"mix entry {entry.label!r}: {e}") from e
            pool.append((inputs, params))
        pools.append(pool)
    return pools


@dataclass
class Schedule:
    """Intended send offsets (ns from the start), the mix entry of each task, and which outputs to check."""

    at_ns: np.ndarray  # int64, non-decreasing
    entry: np.ndarray  # int32 index into the mix
    check: np.ndarray  # bool

    def __len__(self) -> int:
        return len(self.at_ns)


def build_schedule(cfg: LoadgenConfig, rng: np.random.Generator) -> Schedule:
    """Constant arrivals every ``1/rate`` s or Poisson arrivals (exponential gaps of mean ``1/rate``)."""
    period_ns = 1e9 / cfg.rate_hz
    if cfg.arrival == "constant":
        n = cfg.count if cfg.count is not None else max(1, int(cfg.duration_s * cfg.rate_hz))
        at = np.arange(n, dtype=np.float64) * period_ns
    else:
        if cfg.count is not None:
            gaps = rng.exponential(period_ns, cfg.count)
        else:
            # Draw comfortably more gaps than the expected count, then cut at the duration.
            expect = cfg.duration_s * cfg.rate_hz
            gaps = rng.exponential(period_ns, int(expect + 6 * math.sqrt(expect) + 16))
        gaps[0] = 0.0  # the first task goes at the start
        at = np.cumsum(gaps)
        if cfg.count is None:
            at = at[at < cfg.duration_s * 1e9]
            if len(at) == 0:
                at = np.zeros(1)
    weights = np.array([e.weight for e in cfg.mix], dtype=np.float64)
    entry = rng.choice(len(cfg.mix), size=len(at), p=weights / weights.sum()).astype(np.int32)
    check = rng.random(len(at)) < cfg.check_fraction
    return Schedule(at.astype(np.int64), entry, check)


def prepare(cfg: LoadgenConfig, registry: Any = None) -> tuple[Schedule, list]:
    """The schedule and the input pools, both drawn from ``cfg.seed`` (which must be set)."""
    if registry is None:
        from zmqrt.kernels.registry import load_registry

        registry = load_registry()
    rng = np.random.default_rng(cfg.seed)
    pools = build_pools(cfg.mix, registry, rng, cfg.pool_size)
    return build_schedule(cfg, rng), pools


# -- coordinated-omission arithmetic ------------------------------------------------------------------------------


def intended_latencies_ns(intended_ns: np.ndarray, done_ns: np.ndarray) -> np.ndarray:
    """Latency of every completed task from its *intended* send time (``done_ns < 0``: never completed, left out).

    A sender that falls behind (a stalled server, a blocked socket) still charges each task from the moment it
    should have gone, so a 100 ms stall during a 1 kHz run costs ~100 tasks up to 100 ms each, not one.
    """
    intended_ns = np.asarray(intended_ns, dtype=np.int64)
    done_ns = np.asarray(done_ns, dtype=np.int64)
    done = done_ns >= 0
    return done_ns[done] - intended_ns[done]


def naive_latencies_ns(sent_ns: np.ndarray, done_ns: np.ndarray) -> np.ndarray:
    """Send-to-completion times: what a closed-loop benchmark reports, blind to the tasks it failed to send."""
    return intended_latencies_ns(sent_ns, done_ns)


def new_histogram() -> HdrHistogram:
    return HdrHistogram(HIST_LOWEST_NS, HIST_HIGHEST_NS, HIST_DIGITS)


def latency_histogram(latencies_ns: np.ndarray) -> HdrHistogram:
    """An HDR histogram of integer ns samples, clamped into its range (never dropped)."""
    hist = new_histogram()
    values, counts = np.unique(np.clip(np.asarray(latencies_ns, dtype=np.int64), HIST_LOWEST_NS, HIST_HIGHEST_NS),
                               return_counts=True)
    for v, c in zip(values.tolist(), counts.tolist(), strict=True):
        hist.record_value(v, c)
    return hist


# -- running ------------------------------------------------------------------------------------------------------


@dataclass
class LoadgenResult:
    """Per-task columns of one run, every producer merged, ordered by intended send time.

    Times are ``perf_counter_ns`` (CLOCK_MONOTONIC, shared by the processes of one host); ``-1`` means never.
    ``stages_us`` holds the server-reported stage latencies (NaN where the result had none).
    """

    config: LoadgenConfig
    entry: np.ndarray
    intended_ns: np.ndarray
    sent_ns: np.ndarray
    done_ns: np.ndarray
    status: np.ndarray  # str objects: ok | error | rejected | expired | lost
    code: np.ndarray  # str objects
    missed: np.ndarray  # bool: ok but after its deadline
    checked: np.ndarray  # bool: output compared with numpy
    mismatch: np.ndarray  # bool: compared and outside the kernel's tolerance
    worker: np.ndarray
    stages_us: dict[str, np.ndarray]
    mismatch_messages: list[str] = field(default_factory=list)
    duplicates: int = 0
    started_unix_s: float = 0.0  # wall-clock time of the first intended send (for the HDR log's StartTime)

    def __len__(self) -> int:
        return len(self.entry)

    @property
    def latency_ns(self) -> np.ndarray:
        """Per task from its intended send time; -1 where no result came."""
        return np.where(self.done_ns >= 0, self.done_ns - self.intended_ns, -1)


def compare_outputs(spec: Any, inputs: Sequence[np.ndarray], params: Mapping[str, Any],
                    outputs: Sequence[np.ndarray] | None) -> str | None:
    """``None`` when ``outputs`` match the kernel's numpy reference within its tolerance, else why not."""
    checked = spec.check(inputs, params).params
    want = spec.reference(inputs, checked)
    if outputs is None or len(outputs) != len(want):
        return f"{spec.name}: {0 if outputs is None else len(outputs)} output(s), expected {len(want)}"
    rtol, atol = spec.tolerance(inputs, checked)
    for i, (got, ref) in enumerate(zip(outputs, want, strict=True)):
        if got.shape != ref.shape or got.dtype != ref.dtype:
            return f"{spec.name}: output {i} is {got.dtype}{list(got.shape)}, expected {ref.dtype}{list(ref.shape)}"
        if not np.allclose(got, ref, rtol=rtol, atol=atol):
            err = float(np.max(np.abs(got.astype(np.complex128) - ref.astype(np.complex128))))
            return f"{spec.name}: output {i} differs by up to {err:.3g} (rtol {rtol:g}, atol {atol:g})"
    return None


def _columns(records: Sequence[Record], indices: np.ndarray, schedule: Schedule, pools: list, registry: Any,
             mix: Sequence[MixEntry], worker: int) -> dict[str, Any]:
    """A producer's records as numpy columns (outputs compared with numpy here, then dropped)."""
    n = len(records)
    cols: dict[str, Any] = {
        "index": indices,
        "intended_ns": np.fromiter((r.intended_ns for r in records), np.int64, n),
        "sent_ns": np.fromiter((r.sent_ns for r in records), np.int64, n),
        "done_ns": np.fromiter((r.done_ns for r in records), np.int64, n),
        "status": np.array([r.status for r in records], dtype=object),
        "code": np.array([r.code for r in records], dtype=object),
        "missed": np.fromiter((r.status == "ok" and r.missed_deadline for r in records), bool, n),
        "checked": np.zeros(n, bool),
        "mismatch": np.zeros(n, bool),
        "worker": np.full(n, worker, np.int16),
        "stages_us": {s: np.fromiter((r.server_latency_us.get(s, math.nan) for r in records), np.float64, n)
                      for s in STAGES},
        "mismatch_messages": [],
        "duplicates": sum(r.code == "DUPLICATE_RESULT" for r in records),
    }
    for j, r in enumerate(records):
        if r.status != "ok" or not schedule.check[indices[j]]:
            continue
        gi = int(indices[j])
        entry = int(schedule.entry[gi])
        inputs, params = pools[entry][gi % len(pools[entry])]
        why = compare_outputs(registry.get(mix[entry].kernel), inputs, params, r.outputs)
        cols["checked"][j] = True
        if why is not None:
            cols["mismatch"][j] = True
            if len(cols["mismatch_messages"]) < 20:
                cols["mismatch_messages"].append(f"task {gi}: {why}")
        r.outputs = None
    return cols


def _run_share(cfg: LoadgenConfig, worker: int, schedule: Schedule, pools: list, registry: Any,
               progress: Callable[[int, int], None] | None,
               ready: Callable[[], object] | None = None) -> dict[str, Any]:
    """Producer ``worker`` of ``cfg.processes``: its every-Nth share of the schedule, open loop."""
    indices = np.arange(worker, len(schedule), cfg.processes)
    plan = []
    for gi in indices.tolist():
        e = int(schedule.entry[gi])
        entry = cfg.mix[e]
        inputs, params = pools[e][gi % len(pools[e])]
        plan.append(Planned(int(schedule.at_ns[gi]), entry.kernel, inputs, params or None, entry.priority,
                            entry.deadline_us, entry.period_us, entry.label))
    check = schedule.check[indices]
    records = run_open_loop(cfg.endpoint, plan, timeout_s=cfg.timeout_s,
                            keep_outputs=(lambda i: bool(check[i])) if check.any() else None,
                            progress=progress, id_prefix=f"lg{worker}_{cfg.seed}_",
                            curve=(cfg.curve_secret, cfg.server_public) if cfg.curve_secret else None,
                            collector=cfg.collector, drain_per_send=cfg.drain_per_send, ready=ready)
    return _columns(records, indices, schedule, pools, registry, cfg.mix, worker)


# How long producers wait for each other to encode their frames: generous (a producer encodes about 200k 1 KiB
# frames a second on the 2-core dev VM).
_ENCODE_WAIT_S = 600.0


def _producer_main(cfg: LoadgenConfig, worker: int, barrier: Any, encoded: Any, done: Any, out: Any) -> None:
    """Entry point of a spawned producer: rebuild the schedule from the seed, wait for the others, encode its
    frames, wait for the others again (``encoded``), run. The second wait makes every producer's schedule start
    together: each takes seconds to encode a large share, and without it the first to finish ran alone at its share
    of the rate while others were still encoding, and the last ran alone after the others had ended."""
    try:
        from zmqrt.kernels.registry import load_registry

        registry = load_registry()
        schedule, pools = prepare(cfg, registry)
        barrier.wait(120)

        def progress(n_done: int, total: int) -> None:
            done[worker] = n_done

        out.put((worker, _run_share(cfg, worker, schedule, pools, registry, progress,
                                    ready=lambda: encoded.wait(_ENCODE_WAIT_S))))
    except BaseException as e:  # the parent must hear about any failure, or it would wait for the timeout
        barrier.abort()
        encoded.abort()
        out.put((worker, f"{type(e).__name__}: {e}"))


def _merge(cfg: LoadgenConfig, parts: Sequence[dict[str, Any]], n: int) -> LoadgenResult:
    order = np.concatenate([p["index"] for p in parts])
    inverse = np.empty(n, np.int64)
    inverse[order] = np.arange(n)

    def col(key: str) -> np.ndarray:
        return np.concatenate([p[key] for p in parts])[inverse]

    return LoadgenResult(
        config=cfg, entry=np.empty(0), intended_ns=col("intended_ns"), sent_ns=col("sent_ns"),
        done_ns=col("done_ns"), status=col("status"), code=col("code"), missed=col("missed"),
        checked=col("checked"), mismatch=col("mismatch"), worker=col("worker"),
        stages_us={s: np.concatenate([p["stages_us"][s] for p in parts])[inverse] for s in STAGES},
        mismatch_messages=[m for p in parts for m in p["mismatch_messages"]],
        duplicates=sum(p["duplicates"] for p in parts))


ProgressFn = Callable[[int, int, int], None]  # (sent, received, total)


def run_loadgen(cfg: LoadgenConfig, progress: ProgressFn | None = None, registry: Any = None) -> LoadgenResult:
    """Run ``cfg`` against its endpoint and return every task's outcome. ``progress(sent, received, total)`` is
    called about 10x a second; "sent" is the schedule's count up to now (an open loop sends on time)."""
    cfg.validate()
    if cfg.seed is None:
        # Every producer must draw the same schedule and pools, so the seed is fixed before any of them start.
        cfg.seed = int(np.random.SeedSequence().entropy % (1 << 63))
    if registry is None:
        from zmqrt.kernels.registry import load_registry

        registry = load_registry()
    schedule, pools = prepare(cfg, registry)
    n = len(schedule)
    at_ns = schedule.at_ns

    def sent_by(start_ns: int) -> int:
        return int(np.searchsorted(at_ns, time.perf_counter_ns() - start_ns, side="right"))

    if cfg.processes == 1:
        start = [0]

        def local_progress(done: int, total: int) -> None:
            if not start[0]:
                start[0] = time.perf_counter_ns() + 20_000_000  # run_open_loop starts 20 ms after its first call
            if progress is not None:
                progress(min(n, sent_by(start[0])), done, n)

        parts = [_run_share(cfg, 0, schedule, pools, registry, local_progress)]
    else:
        parts = _run_processes(cfg, n, progress, sent_by)
    result = _merge(cfg, parts, n)
    result.entry = schedule.entry
    if n:
        result.started_unix_s = time.time() - (time.perf_counter_ns() - int(result.intended_ns.min())) / 1e9
    return result


def _run_processes(cfg: LoadgenConfig, n: int, progress: ProgressFn | None,
                   sent_by: Callable[[int], int]) -> list[dict[str, Any]]:
    # spawn, never fork: the parent may have touched CUDA or hold ZeroMQ threads, neither survives a fork.
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(cfg.processes + 1)
    encoded = ctx.Barrier(cfg.processes + 1)  # every producer's frames encoded: the schedules start together
    done = ctx.Array("q", cfg.processes, lock=False)
    out = ctx.Queue()
    # A daemonic process may not start children, and each producer with a collector starts one; the finally below
    # joins or terminates every producer either way.
    procs = [ctx.Process(target=_producer_main, args=(cfg, k, barrier, encoded, done, out), daemon=not cfg.collector,
                         name=f"zmqrt-loadgen-{k}") for k in range(cfg.processes)]
    for p in procs:
        p.start()
    parts: dict[int, Any] = {}
    try:
        try:
            barrier.wait(180)
            encoded.wait(_ENCODE_WAIT_S)
        except Exception:  # BrokenBarrierError: a producer failed during setup; its message is on the queue
            pass
        start = time.perf_counter_ns() + 20_000_000  # each producer's open loop starts 20 ms after the barrier
        # Results must be read while the producers run: a child blocks on exit until its queued data is taken.
        while len(parts) < cfg.processes:
            try:
                worker, part = out.get(timeout=0.1)
                parts[worker] = part
            except Exception:  # queue.Empty
                if not any(p.is_alive() for p in procs) and out.empty():
                    break
            if progress is not None:
                progress(min(n, sent_by(start)), int(sum(done)), n)
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.terminate()
                p.join()
    failures = [f"producer {k}: {v}" for k, v in sorted(parts.items()) if isinstance(v, str)]
    missing = [k for k in range(cfg.processes) if k not in parts]
    if failures or missing:
        failures += [f"producer {k}: exited (code {procs[k].exitcode}) without results" for k in missing]
        raise RuntimeError("; ".join(failures))
    if progress is not None:
        progress(n, int(sum(done)), n)
    return [parts[k] for k in range(cfg.processes)]
