"""Paired, simultaneous A/B of two zmqrt source trees: is B's service faster or slower than A's?

Why this design. The GPU hosts drift by more than a small change is worth over minutes: run A, then B, and the
difference between them is mostly when each ran. Here both arms run at the same time, each a ``zmqrt serve`` of its
own tree on its own GPU and its own CPUs, each driven by its own open-loop producer (1 KiB vector_add at --rate,
deadline --deadline-us, the schedules started together). Whatever the host does during a round, it does to both
arms, so the ratio B/A of one round is free of drift. The two placements (GPU 0 with its CPUs, GPU 1 with its
CPUs) are never quite alike, so the arms swap them every round: A in slot 0 in even rounds, in slot 1 in odd ones.
Over an even number of rounds the placement's own difference cancels too; the ratios split by placement show how
big it was (their geometric mean is the estimate with it cancelled).

Per round, each arm's figure is its server's own receipt-to-sent histogram of the measured tasks (priority 0; the
warm-up ran at priority 1), as bench/roundtrip.py takes it; the producers' round trips are reported beside it.
The verdict is the median over rounds of B/A, with the number of rounds B was lower (and a sign test's p). It is
valid only when no task was lost, failed or came back wrong: a WARNING says otherwise, and the exit status is 3
(the results are written all the same). Exit 1: a server or producer failed (the server's log tail is printed).

Only the servers run each tree's code (cwd and PYTHONPATH of their tree); the producers and this script run this
tree's. Run an A/A null test first (``--a . --b .``): its ratios show the noise floor of the host, and any effect
of B against A smaller than that is not one.

Usage (2-GPU host, base tree unpacked under _base):
  python3 bench/paired.py --a . --b .              # A/A null test
  python3 bench/paired.py --a _base --b . --spin   # base against this tree
  python3 bench/paired.py --a . --b . --backend cpu --rounds 2 --n 300 --warm 100 --rate 2000   # smoke, no GPU
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import math
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (  # noqa: E402
    card_name,
    cpu_plan,
    environment,
    gpu_cpus,
    md_row,
    spawn_on,
    write_results,
)
from bench.roundtrip import drive as roundtrip_drive  # noqa: E402
from bench.roundtrip import receipt_to_sent  # noqa: E402
from zmqrt.placement import thread_siblings  # noqa: E402
from zmqrt.statsview import fetch_stats  # noqa: E402

ARMS = ("A", "B")
MIN_PINNED_CPUS = 8  # two {loop, io} pairs, their SMT siblings, and at least a core for each producer
READY_TIMEOUT_S = 120.0  # a CUDA server compiles and calibrates its kernels before it answers
STOP_TIMEOUT_S = 15.0
BARRIER_TIMEOUT_S = 120.0  # a producer encodes every frame before it waits: 12k tasks take about a second
PR_SET_PDEATHSIG = 1


# --- CPU placement -------------------------------------------------------------------------------------------------

def _cores(cpus: set[int]) -> list[set[int]]:
    """``cpus`` grouped by physical core (SMT siblings together), in CPU order."""
    out: list[set[int]] = []
    seen: set[int] = set()
    for c in sorted(cpus):
        if c not in seen:
            core = thread_siblings(c) & cpus
            seen |= core
            out.append(core)
    return out


def split_producers(rest: set[int], near: tuple[set[int], set[int]]) -> tuple[set[int], set[int]]:
    """``rest`` as two producer sets, whole cores each (two producers never share a core): a core local to one
    slot's GPU only goes to that slot, any other to the smaller set. Evenly, ignoring ``near``, where that leaves a
    set empty."""
    sets: tuple[set[int], set[int]] = (set(), set())
    for core in _cores(rest):
        local = [s for s in (0, 1) if min(core) in near[s]]
        slot = local[0] if len(local) == 1 else min((0, 1), key=lambda s: len(sets[s]))
        sets[slot].update(core)
    if all(sets):
        return sets
    return split_producers(rest, (set(), set())) if any(near) else sets


def plan_cpus(near: tuple[set[int], set[int]], avail: list[int]) -> list[dict] | None:
    """Per slot ``{"loop", "server", "producer"}`` (CPU lists): slot 0's {loop, io} pair near its GPU, slot 1's near
    its own from the CPUs left (SMT siblings of slot 0's excluded), the rest split between the two producers. None
    with fewer than MIN_PINNED_CPUS CPUs, or where no such plan fits."""
    if len(avail) < MIN_PINNED_CPUS:
        return None
    free = sorted(avail)
    slots: list[dict] = []
    for s in (0, 1):
        p = cpu_plan(None, near[s], free)
        if p is None:
            return None
        taken = set().union(*(thread_siblings(c) for c in p["server"]))
        free = [c for c in free if c not in taken]
        slots.append({"loop": p["loop"], "server": sorted(p["server"])})
    producers = split_producers(set(free), near)
    if not all(producers):
        return None
    for slot, cpus in zip(slots, producers, strict=True):
        slot["producer"] = sorted(cpus)
    return slots


# --- the servers ---------------------------------------------------------------------------------------------------

@dataclass
class Server:
    arm: str
    slot: int
    proc: subprocess.Popen
    stats_ep: str
    ingest_ep: str
    log_path: Path
    exit_code: int | None = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _child_setup(cpus: list[int] | None):
    """What the server's child runs between fork and exec: its CPUs, and SIGTERM when this script dies by a signal
    that skips our cleanup (SIGKILL), so no server outlives it."""
    libc = None
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # loaded here, before the fork: the child only calls it
    except OSError:
        pass

    def setup() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)
        if libc is not None:
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return setup


def server_command(args: argparse.Namespace, arm: str, device: int, loop_cpu: int | None, ingest_ep: str,
                   stats_ep: str) -> list[str]:
    cmd = [sys.executable, "-m", "zmqrt.cli", "serve", "--backend", args.backend, "--ingest", ingest_ep,
           "--stats", stats_ep, "--policy", "edf", "--lanes", "4"]
    if args.backend == "cuda":
        cmd += ["--device", str(device)]
    if loop_cpu is not None:
        cmd += ["--cpu", str(loop_cpu)]
    if args.spin:
        cmd.append("--spin")
    if args.resident:
        cmd.append("--resident")
    return cmd + list(args.server_arg or ()) + list((args.a_arg if arm == "A" else args.b_arg) or ())


def start_server(arm: str, slot: int, tree: Path, args: argparse.Namespace, cpus: dict | None, tmp: Path,
                 round_no: int) -> Server:
    """``zmqrt serve`` of ``tree`` (its own cwd and PYTHONPATH first) on slot ``slot``'s GPU and CPU pair; returns
    at once: ``wait_ready`` waits for it."""
    ingest_ep, stats_ep = f"ipc://{tmp}/{arm}-in", f"ipc://{tmp}/{arm}-stats"
    cmd = server_command(args, arm, args.devices[slot], cpus["loop"] if cpus else None, ingest_ep, stats_ep)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(tree), os.environ.get("PYTHONPATH", "")) if p)
    log_path = tmp / f"round{round_no}-{arm}.log"
    with open(log_path, "wb") as log:
        # A session of its own: Ctrl-C in the terminal reaches this script only, which then stops the servers
        # with SIGTERM (they drain and exit); and the fallback SIGKILL reaches the engine child with its supervisor.
        proc = subprocess.Popen(cmd, cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=_child_setup(cpus["server"] if cpus else None))
    return Server(arm, slot, proc, stats_ep, ingest_ep, log_path)


def wait_ready(servers: list[Server], timeout_s: float = READY_TIMEOUT_S) -> None:
    """Until every server answers on its stats endpoint; RuntimeError with its log's tail when one exits or is not
    up in ``timeout_s``."""
    pending = list(servers)
    t_end = time.monotonic() + timeout_s
    while pending:
        for srv in list(pending):
            if srv.proc.poll() is not None:
                raise RuntimeError(f"server {srv.arm} exited during startup (exit code {srv.proc.returncode}); log "
                                   f"{srv.log_path}:\n{srv.log_tail()}")
            if fetch_stats(srv.stats_ep, timeout_s=0.5) is not None:
                pending.remove(srv)
        if pending and time.monotonic() > t_end:
            srv = pending[0]
            raise RuntimeError(f"server {srv.arm} did not answer on {srv.stats_ep} in {timeout_s:.0f} s; log "
                               f"{srv.log_path}:\n{srv.log_tail()}")


def stop_server(srv: Server) -> int | None:
    """SIGTERM (the server drains and exits 0), then SIGKILL to its whole session after STOP_TIMEOUT_S."""
    proc = srv.proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            print(f"  server {srv.arm} did not stop in {STOP_TIMEOUT_S:.0f} s: killed", flush=True)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    srv.exit_code = proc.returncode
    return srv.exit_code


# --- the producers -------------------------------------------------------------------------------------------------

@dataclass
class Load:
    """What each producer sends (the same schedule and inputs for both arms of a round)."""

    n: int
    warm: int
    rate_hz: float
    deadline_us: float
    seed: int


def drive(endpoint: str, load: Load, ready) -> dict:
    """``bench/roundtrip.py``'s open-loop run against ``endpoint``: round trip µs percentiles of the measured tasks
    answered ok, and the counts (lost, not ok, wrong outputs among the sampled ones, missed deadlines)."""
    row, body = roundtrip_drive(endpoint, load.n, load.rate_hz, load.deadline_us, np.random.default_rng(load.seed),
                                load.warm, ready=ready)
    counts = {k: row.pop(k) for k in ("lost", "not_ok", "wrong_outputs", "missed")}
    codes = sorted({f"{r.status} {r.code}: {r.message}" for r in body if r.status != "ok"})
    return {"roundtrip_us": row, **counts, "not_ok_examples": codes[:5]}


def producer_main(slot: int, endpoint: str, load: Load, barrier, out_q) -> None:
    """A spawned producer process: drive one server, starting its schedule when the other producer starts its."""
    try:
        out_q.put((slot, drive(endpoint, load, ready=lambda: barrier.wait(BARRIER_TIMEOUT_S))))
    except BaseException as e:  # the parent must hear of it, or it waits for a result that never comes
        barrier.abort()
        out_q.put((slot, {"error": f"{type(e).__name__}: {e}"}))


def run_producers(servers: list[Server], load: Load, cpu_slots: list[dict] | None) -> dict[int, dict]:
    """Both producers at once, each on its slot's producer CPUs; their results by slot."""
    ctx = mp.get_context("spawn")
    barrier, out_q = ctx.Barrier(2), ctx.Queue()
    procs = []
    try:
        for srv in servers:
            p = ctx.Process(target=producer_main, args=(srv.slot, srv.ingest_ep, load, barrier, out_q), daemon=True)
            with spawn_on(set(cpu_slots[srv.slot]["producer"]) if cpu_slots else None):
                p.start()
            procs.append(p)
        wait_s = BARRIER_TIMEOUT_S + (load.n + load.warm) / load.rate_hz + 60.0
        results = dict(out_q.get(timeout=wait_s) for _ in procs)
        for p in procs:
            p.join(10)
    finally:  # interrupted, or one did not answer: stop them now (their server is stopped next)
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(5)
    for slot, res in results.items():
        if "error" in res:
            raise RuntimeError(f"producer of slot {slot} failed: {res['error']}")
    return results


# --- one round -----------------------------------------------------------------------------------------------------

def slot_order(round_no: int) -> tuple[str, str]:
    """The arms in slot 0 and slot 1: A first in even rounds, B first in odd ones."""
    return ARMS if round_no % 2 == 0 else ARMS[::-1]


def ratio(b: float | None, a: float | None) -> float | None:
    return b / a if a and b else None


def run_round(round_no: int, args: argparse.Namespace, trees: dict[str, Path], cpu_slots: list[dict] | None,
              tmp: Path) -> dict:
    order = slot_order(round_no)
    servers: list[Server] = []
    try:
        for slot, arm in enumerate(order):
            servers.append(start_server(arm, slot, trees[arm], args, cpu_slots[slot] if cpu_slots else None, tmp,
                                        round_no))
        wait_ready(servers)
        load = Load(args.n, args.warm, args.rate, args.deadline_us, seed=round_no)
        by_slot = run_producers(servers, load, cpu_slots)
        snaps = {srv.arm: fetch_stats(srv.stats_ep, timeout_s=5.0) or {} for srv in servers}
    finally:
        for srv in servers:
            stop_server(srv)
    arms = {}
    for srv in servers:
        service = receipt_to_sent(snaps[srv.arm])
        if not service:
            print(f"  WARNING: server {srv.arm} has no service histogram of the measured tasks; log tail:\n"
                  f"{srv.log_tail(10)}", flush=True)
        arms[srv.arm] = {"slot": srv.slot, "device": args.devices[srv.slot] if args.backend == "cuda" else None,
                         "service_us": service, "server_exit_code": srv.exit_code, **by_slot[srv.slot]}
    a, b = arms["A"]["service_us"], arms["B"]["service_us"]
    return {"round": round_no, "slot0": order[0], "slot1": order[1], "arms": arms,
            "ratio_b_over_a": {q: ratio(b.get(q), a.get(q)) for q in ("p50", "p99")}}


def _fmt(v: float | None, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def round_line(r: dict, total: int, elapsed_s: float) -> str:
    a, b = r["arms"]["A"], r["arms"]["B"]
    sa, sb, ra, rb = a["service_us"], b["service_us"], a["roundtrip_us"], b["roundtrip_us"]
    rr = r["ratio_b_over_a"]
    return (f"round {r['round'] + 1}/{total} done ({elapsed_s:.0f} s): A@slot{a['slot']} B@slot{b['slot']} | service "
            f"A p50 {_fmt(sa.get('p50'))} p99 {_fmt(sa.get('p99'))}, B p50 {_fmt(sb.get('p50'))} p99 "
            f"{_fmt(sb.get('p99'))} µs | B/A p50 {_fmt(rr['p50'], '.3f')} p99 {_fmt(rr['p99'], '.3f')} | round trip "
            f"A {_fmt(ra.get('p50'))}/{_fmt(ra.get('p99'))} B {_fmt(rb.get('p50'))}/{_fmt(rb.get('p99'))} µs")


# --- the summary ---------------------------------------------------------------------------------------------------

def sign_test_p(lower: int, n: int) -> float | None:
    """Two-sided sign test: the chance of a split at least this uneven of ``n`` rounds when B and A are alike."""
    if n == 0:
        return None
    k = min(lower, n - lower)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n)


def _median(vals: list[float]) -> float | None:
    return float(np.median(vals)) if vals else None


def _ratio_stats(rounds: list[dict], q: str) -> dict:
    vals = [r["ratio_b_over_a"][q] for r in rounds if r["ratio_b_over_a"][q] is not None]
    return {"median": _median(vals), "min": min(vals, default=None), "max": max(vals, default=None), "n": len(vals)}


def summarize_rounds(rounds: list[dict]) -> dict:
    out: dict = {q: _ratio_stats(rounds, q) for q in ("p50", "p99")}
    p50s = [r["ratio_b_over_a"]["p50"] for r in rounds if r["ratio_b_over_a"]["p50"] is not None]
    lower = sum(v < 1.0 for v in p50s)
    out["b_lower_p50_rounds"] = lower
    out["sign_test_p"] = sign_test_p(lower, sum(v != 1.0 for v in p50s))
    out["arm_medians_us"] = {arm: {q: _median([r["arms"][arm]["service_us"][q] for r in rounds
                                               if r["arms"][arm]["service_us"].get(q)]) for q in ("p50", "p99")}
                             for arm in ARMS}
    # Placement: the ratios of the rounds with A in slot 0 against those with A in slot 1. Their geometric mean has
    # the slots' own difference cancelled (it multiplies one side's ratios and divides the other's).
    by_slot = {f"A_in_slot{s}": {q: _ratio_stats([r for r in rounds if r["slot0"] == ("A" if s == 0 else "B")], q)
                                 ["median"] for q in ("p50", "p99")} for s in (0, 1)}
    by_slot["geometric_mean"] = {q: math.sqrt(by_slot["A_in_slot0"][q] * by_slot["A_in_slot1"][q])
                                 if by_slot["A_in_slot0"][q] and by_slot["A_in_slot1"][q] else None
                                 for q in ("p50", "p99")}
    out["by_slot"] = by_slot
    out["totals"] = {k: sum(r["arms"][arm][k] for r in rounds for arm in ARMS)
                     for k in ("lost", "not_ok", "wrong_outputs", "missed")}
    missing = sum(1 for r in rounds for arm in ARMS if not r["arms"][arm]["service_us"].get("p50"))
    out["rounds_without_service"] = missing
    t = out["totals"]
    out["valid"] = bool(rounds) and missing == 0 and t["lost"] == t["not_ok"] == t["wrong_outputs"] == 0
    return out


def summary_lines(s: dict, rounds: int) -> list[str]:
    p50, p99, m = s["p50"], s["p99"], s["arm_medians_us"]
    bs = s["by_slot"]
    lines = [f"B/A service, median of {p50['n']} rounds: p50 {_fmt(p50['median'], '.3f')} (min "
             f"{_fmt(p50['min'], '.3f')}, max {_fmt(p50['max'], '.3f')}), p99 {_fmt(p99['median'], '.3f')} (min "
             f"{_fmt(p99['min'], '.3f')}, max {_fmt(p99['max'], '.3f')})",
             f"B lower at p50 in {s['b_lower_p50_rounds']} of {rounds} rounds (sign test p "
             f"{_fmt(s['sign_test_p'], '.3f')})",
             f"medians: A p50 {_fmt(m['A']['p50'])} p99 {_fmt(m['A']['p99'])} µs, B p50 {_fmt(m['B']['p50'])} p99 "
             f"{_fmt(m['B']['p99'])} µs",
             f"by placement, B/A p50 / p99: A in slot 0 {_fmt(bs['A_in_slot0']['p50'], '.3f')} / "
             f"{_fmt(bs['A_in_slot0']['p99'], '.3f')}, A in slot 1 {_fmt(bs['A_in_slot1']['p50'], '.3f')} / "
             f"{_fmt(bs['A_in_slot1']['p99'], '.3f')}, geometric mean {_fmt(bs['geometric_mean']['p50'], '.3f')} / "
             f"{_fmt(bs['geometric_mean']['p99'], '.3f')}",
             "totals: " + ", ".join(f"{k} {v}" for k, v in s["totals"].items())]
    if rounds % 2:
        lines.append("note: an odd number of rounds: the placements are not balanced")
    if not s["valid"]:
        lines.append(f"WARNING: NOT A VALID VERDICT: lost {s['totals']['lost']}, not ok {s['totals']['not_ok']}, "
                     f"wrong {s['totals']['wrong_outputs']}, arm-rounds without a service figure "
                     f"{s['rounds_without_service']} (all must be 0)")
    return lines


def table_md(data: dict) -> str:
    s = data["summary"]
    lines = [f"# Paired A/B, service (receipt to sent) µs, 1 KiB vector_add at {data['args']['rate'] / 1e3:g} kHz: "
             f"{data['card']}", "",
             f"A: {data['trees']['A']['dir']} ({data['trees']['A']['head'][:12]}, code {data['trees']['A']['code']})"
             f"; B: {data['trees']['B']['dir']} ({data['trees']['B']['head'][:12]}, code "
             f"{data['trees']['B']['code']}); backend {data['args']['backend']}, "
             f"{'pinned' if data['cpu_plan'] else 'not pinned'}", "",
             md_row(["round", "A slot", "A p50", "A p99", "B p50", "B p99", "B/A p50", "B/A p99", "RTT A p50/p99",
                     "RTT B p50/p99"]), md_row(["---"] * 10)]
    for r in data["rounds"]:
        a, b = r["arms"]["A"], r["arms"]["B"]
        lines.append(md_row([r["round"] + 1, a["slot"], _fmt(a["service_us"].get("p50")),
                             _fmt(a["service_us"].get("p99")), _fmt(b["service_us"].get("p50")),
                             _fmt(b["service_us"].get("p99")), _fmt(r["ratio_b_over_a"]["p50"], ".3f"),
                             _fmt(r["ratio_b_over_a"]["p99"], ".3f"),
                             f"{_fmt(a['roundtrip_us'].get('p50'))}/{_fmt(a['roundtrip_us'].get('p99'))}",
                             f"{_fmt(b['roundtrip_us'].get('p50'))}/{_fmt(b['roundtrip_us'].get('p99'))}"]))
    m = s["arm_medians_us"]
    lines.append(md_row(["median", "", _fmt(m["A"]["p50"]), _fmt(m["A"]["p99"]), _fmt(m["B"]["p50"]),
                         _fmt(m["B"]["p99"]), _fmt(s["p50"]["median"], ".3f"), _fmt(s["p99"]["median"], ".3f"), "",
                         ""]))
    return "\n".join(lines + [""] + [f"- {x}" for x in summary_lines(s, len(data["rounds"]))] + [""])


# --- the trees -----------------------------------------------------------------------------------------------------

def _git(tree: Path, *cmd: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(tree), *cmd], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def code_digest(tree: Path) -> str:
    """sha256 (16 hex digits) of the server's code in ``tree`` (zmqrt/, ingest/ and ptx/ sources): shows whether
    two arms run the same code, where a tree is no git checkout of its own (git archive under _base)."""
    h = hashlib.sha256()
    for sub in ("zmqrt", "ingest", "ptx"):
        for p in sorted((tree / sub).rglob("*")):
            if p.is_file() and p.suffix in (".py", ".cu", ".cuh", ".toml"):
                h.update(str(p.relative_to(tree)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def tree_info(tree: Path, label: str) -> dict:
    """HEAD and the count of dirty paths where ``tree`` is the top of a git checkout; "unknown" where it is not
    (an unpacked archive inside this repo would otherwise report this repo's HEAD)."""
    top = _git(tree, "rev-parse", "--show-toplevel")
    own = top is not None and Path(top).resolve() == tree.resolve()
    status = _git(tree, "status", "--porcelain") if own else None
    return {"dir": label, "head": (_git(tree, "rev-parse", "HEAD") if own else None) or "unknown",
            "dirty": len(status.splitlines()) if status is not None else "unknown", "code": code_digest(tree)}


# --- main ----------------------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", required=True, metavar="DIR_A", help="root of arm A's tree (e.g. _base)")
    ap.add_argument("--b", required=True, metavar="DIR_B", help="root of arm B's tree (e.g. .)")
    ap.add_argument("--rounds", type=int, default=6, help="rounds, each arm once in each slot per two (default 6)")
    ap.add_argument("--n", type=int, default=10_000, help="measured tasks per arm and round (default 10000)")
    ap.add_argument("--warm", type=int, default=2000, help="warm-up tasks before them, not measured (default 2000)")
    ap.add_argument("--rate", type=float, default=10_000.0, help="send rate per arm in Hz (default 10000)")
    ap.add_argument("--deadline-us", type=float, default=1000.0, help="deadline on every task (default 1000)")
    ap.add_argument("--spin", action="store_true", help="serve --spin")
    ap.add_argument("--resident", action="store_true", help="serve --resident")
    ap.add_argument("--backend", choices=("cuda", "cpu"), default="cuda", help="cuda (default); cpu: both arms on "
                    "the CPU backend, no --device (a smoke test without a GPU)")
    ap.add_argument("--devices", default="0,1", help="the GPUs of slot 0 and slot 1 (default 0,1)")
    ap.add_argument("--server-arg", action="append", metavar="ARG", help="one more argument for both servers, "
                    "verbatim; repeatable, e.g. --server-arg=--idle-poll-us --server-arg=0")
    ap.add_argument("--a-arg", action="append", metavar="ARG", help="one more argument for arm A's server only "
                    "(after --server-arg's): compare two settings of one tree, e.g. --a . --b . "
                    "--a-arg=--keep-warm-us --a-arg=0")
    ap.add_argument("--b-arg", action="append", metavar="ARG", help="the same for arm B's server")
    ap.add_argument("--out", default="paired", help="result name (default paired): NAME-<card>.json and .md")
    ap.add_argument("--out-dir", type=Path, help="where to write them (default bench/results)")
    args = ap.parse_args(argv)
    args.devices = [int(d) for d in args.devices.split(",")]
    if len(args.devices) != 2:
        ap.error("--devices takes two ordinals, slot 0's and slot 1's")
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    return args


def cpu_slots_for(args: argparse.Namespace) -> list[dict] | None:
    avail = sorted(os.sched_getaffinity(0))
    # The CPU backend has no GPU to be near: plan over the CPUs alone.
    near = (gpu_cpus(args.devices[0]), gpu_cpus(args.devices[1])) if args.backend == "cuda" else (set(), set())
    slots = plan_cpus(near, avail)
    if slots is None:
        print(f"CPUs: {len(avail)} usable, fewer than {MIN_PINNED_CPUS} or no plan fits: NOT PINNED (the OS places "
              f"servers and producers; the comparison is noisier)", flush=True)
        return None
    for s, p in enumerate(slots):
        print(f"CPUs slot {s}: GPU {args.devices[s]}'s NUMA node {','.join(map(str, sorted(near[s]))) or 'unknown'}; "
              f"server loop {p['loop']}, server {p['server']}, producer {p['producer']}", flush=True)
    return slots


def _interrupt(signum: int, frame) -> None:
    """SIGTERM taken as Ctrl-C, so the finally blocks stop the servers before this script exits."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    trees = {"A": Path(args.a).resolve(), "B": Path(args.b).resolve()}
    for arm, tree in trees.items():
        if not (tree / "zmqrt" / "cli.py").is_file():
            print(f"--{arm.lower()} {tree}: no zmqrt/cli.py there", file=sys.stderr)
            return 2
    info = {arm: tree_info(tree, getattr(args, arm.lower())) for arm, tree in trees.items()}
    for arm in ARMS:
        print(f"{arm}: {info[arm]['dir']} head {info[arm]['head']} dirty {info[arm]['dirty']} code "
              f"{info[arm]['code']}", flush=True)
    if info["A"]["code"] == info["B"]["code"]:
        print("A and B run the same code: an A/A null test", flush=True)
    cpu_slots = cpu_slots_for(args)
    tmp = Path(tempfile.mkdtemp(prefix="zpair"))  # short: ipc paths are limited to about 107 bytes
    rounds: list[dict] = []
    for k in range(args.rounds):
        order = slot_order(k)
        print(f"round {k + 1}/{args.rounds} start: {order[0]} -> slot 0, {order[1]} -> slot 1", flush=True)
        t0 = time.perf_counter()
        rounds.append(run_round(k, args, trees, cpu_slots, tmp))
        print(round_line(rounds[-1], args.rounds, time.perf_counter() - t0), flush=True)
    summary = summarize_rounds(rounds)
    print("\n".join(summary_lines(summary, len(rounds))), flush=True)
    if summary["valid"]:
        shutil.rmtree(tmp, ignore_errors=True)
    else:  # kept, as after an exception: the servers' logs say why tasks were lost
        print(f"servers' logs kept in {tmp}", flush=True)
    data = {"card": card_name(), "env": environment(), "args": {k: v for k, v in vars(args).items()
                                                                   if k != "out_dir"},
            "cpu_plan": cpu_slots, "pinned": cpu_slots is not None, "trees": info, "rounds": rounds,
            "summary": summary, "payload": "vector_add 2 x 256 float32 in, 256 out, ipc",
            "measure": "server receipt-to-sent histogram of the measured tasks (priority 0)"}
    path = write_results(args.out, data, table_md(data), out_dir=args.out_dir)
    print(f"wrote {path}", flush=True)
    return 0 if summary["valid"] else 3


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the servers and producers are stopped by now
        print("interrupted: servers and producers stopped", file=sys.stderr)
        sys.exit(130)
    except RuntimeError as e:  # a server or producer failed: its message holds the log's tail
        print(f"paired: {e}", file=sys.stderr)
        sys.exit(1)
