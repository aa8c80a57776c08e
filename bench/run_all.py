"""Run the whole benchmark suite on this GPU host and write one merged report plus ``bench/results/latest.json``.

Runs, each as a subprocess (``sys.executable``) that writes its own ``bench/results/<name>-<CARD>.json``:
floors, peers, executor_floor, roundtrip, stream, seed_scenarios, sched_overhead, restart_time, sustained
throughput runs of one engine (``ingest.loadgen.run_loadgen``: several producer processes, open loop, 1 KiB
vector_add with no deadline; throughput = ok results per second), and ``throughput_engines``: several engines on GPU 0
under MPS at 220k tasks/s offered (``bench/scaleout.py --mps``). Then writes:
- ``bench/results/<card>-<date>.json``: every benchmark's results (or its error), merged;
- ``bench/results/<card>-<date>.md``: zmqrt against the floors and the peers, as ratios, with the targets;
- ``bench/results/latest.json``: ``card``, ``service_us`` {p50, p99} (zmqrt's receipt to result sent, roundtrip.py
  block mode), ``roundtrip_us`` and ``prototype_roundtrip_us`` {p50, p99} (producer round trip, block mode),
  ``throughput_tasks_per_s`` (the several-engine run's, else the one-engine run's: ``throughput_source`` says),
  ``throughput_engines`` (its sent rate, lost, and latencies), ``lost`` (every zmqrt run together), the ratios and
  the failures.
Targets: >= 200,000 tasks/s sustained, 0 lost, p99 < 1 ms (issue 6); executor p50 <= 1.2x bare (issue 2); zmqrt
round trip p50/p99 <= 1.15x the prototype (issue 3) and <= 1.1x (issue 6); service p50 <= 20 µs, p99 <= 40 µs and
<= the prototype's server side (issue 6); zmqrt p50 >= 2x faster than PyTorch, >= 4x than CuPy (issue 6).
Fail soft: a benchmark that fails is recorded with its error and the rest still run; the exit code is 1 if any
failed. ``--quick`` shortens every run (the suite then takes about 3-4 minutes).

Usage: python3 bench/run_all.py [--quick] [--only floors,peers,...] [--skip NAME,...]
       python3 bench/run_all.py --throughput-only [--seconds 5] [--rate 100000] [--processes 4]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import RESULTS_DIR, card_slug, md_row  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent

ENGINES = max(1, min(12, (os.cpu_count() or 1) - 20))  # engines of the suite's several-engine throughput run
_ENGINES_ARGS = ["--configs", ",".join(["0"] * ENGINES), "--fanout", "direct", "--processes", "6", "--batch-max", "64",
                 "--engine-cpu", "2", "--mps", "--out", "throughput_engines"]

# name -> (script under bench/, full args, quick args); each writes bench/results/<name>-<CARD>.json
SUITE: dict[str, tuple[str, list[str], list[str]]] = {
    "floors": ("floors.py", ["--n", "20000", "--warm", "2000"], ["--n", "3000", "--warm", "500"]),
    "peers": ("peers.py", ["--n", "20000"], ["--n", "3000", "--warm", "300"]),
    "executor_floor": ("executor_floor.py", ["--n", "20000"], ["--n", "3000"]),
    # Seven alternating repeats, medians reported: one run's ratio moved by 0.2x between runs of one call
    # (bench/NOTES.md 22), and single repeats' p99 ratios spread from 0.9x to 1.2x with three (NOTES 30).
    "roundtrip": ("roundtrip.py", ["--n", "10000", "--warm", "1000", "--repeat", "7"],
                  ["--n", "3000", "--warm", "500"]),
    # Spin mode with the loop's CPU to itself: the mode that measured best (bench/NOTES.md 16).
    "stream": ("stream.py", ["--seconds", "10", "--spin"], ["--seconds", "2", "--warm-seconds", "0.5", "--spin"]),
    "seed_scenarios": ("seed_scenarios.py", ["--stream-seconds", "5"],
                       ["--stream-seconds", "1", "--warm-tasks", "500"]),
    "sched_overhead": ("sched_overhead.py", ["--n", "200000"], ["--n", "20000"]),
    "restart_time": ("restart_time.py", ["--reps", "10"], ["--reps", "3"]),
    # Offered just below one engine's capacity (about 23k/s on an H200 host): sustained, nothing lost.
    # bench/scaleout.py runs the overload (60k/s offered) against one and two GPUs.
    "throughput": ("run_all.py", ["--throughput-only", "--seconds", "5", "--rate", "20000"],
                   ["--throughput-only", "--seconds", "2", "--rate", "20000"]),
    # The throughput setting (--batch-max 64: backlogs read as batches, bench/NOTES.md 28), one engine, offered
    # about two thirds of what it completes under overload (about 85k/s on an H200 host), so it is sustained.
    # bench/scaleout.py runs several engines at up to 210k/s.
    "throughput_bulk": ("run_all.py", ["--throughput-only", "--seconds", "10", "--rate", "60000", "--batch-max",
                                       "64", "--processes", "4", "--name", "throughput_bulk"],
                        ["--throughput-only", "--seconds", "2", "--rate", "60000", "--batch-max", "64",
                         "--processes", "4", "--name", "throughput_bulk"]),
    # Issue 6's throughput row: several engines on GPU 0 under MPS (bench/mps.py), each producer connected to every
    # engine (--fanout direct), 220k tasks/s offered for 10 s after a 2 s warm-up (bench/NOTES.md 33 and 34). Twelve
    # engines on a 32-CPU host (session 19's best count), fewer where there are fewer CPUs (the loops are pinned
    # from CPU 2 and six producers need CPUs of their own).
    "throughput_engines": ("scaleout.py", [*_ENGINES_ARGS, "--rate", "220000", "--seconds", "10", "--warmup-s", "2"],
                           [*_ENGINES_ARGS, "--rate", "100000", "--seconds", "3", "--warmup-s", "1"]),
}

NAN = float("nan")


# -- the throughput run ------------------------------------------------------------------------------------------


def measure_throughput(seconds: float, rate: float, processes: int, lanes: int,
                       backend: str = "cuda", batch_max: int = 1) -> dict:
    """Sustained open-loop load against a zmqrt server (CUDA backend); ok results per second."""
    from bench._common import card_name, environment
    from ingest.loadgen import LoadgenConfig, MixEntry, run_loadgen
    from ingest.loadgen_report import summarize
    from zmqrt.config import ServerConfig
    from zmqrt.demo import start_server, stop_server

    tmp = tempfile.mkdtemp(prefix="zrt")
    cfg = ServerConfig(backend=backend, ingest=f"ipc://{tmp}/in", lanes=lanes, policy="edf", batch_max=batch_max)
    lg = LoadgenConfig(endpoint=cfg.ingest, mix=[MixEntry(kernel="vector_add", size=256)], rate_hz=rate,
                       duration_s=seconds, timeout_s=10.0, check_fraction=0.001, processes=processes)
    proc = start_server(cfg)
    try:
        t0 = time.perf_counter()
        res = run_loadgen(lg)
        wall = time.perf_counter() - t0
    finally:
        code = stop_server(proc)
    summary = summarize(res)
    overall = summary["overall"]
    overall.pop("hdr", None)
    return {"card": card_name(), "env": environment(), "backend": backend, "offered_rate_hz": rate,
            "seconds": seconds, "processes": processes, "lanes": lanes, "batch_max": batch_max,
            "server_exit_code": code, "wall_s": wall,
            "throughput_tasks_per_s": overall.get("throughput_hz", NAN), "counts": overall["counts"],
            "latency_us": overall.get("latency_us", {}), "server_us": overall.get("server_us", {})}


def throughput_main(args) -> int:
    from bench._common import write_results

    r = measure_throughput(args.seconds, args.rate, args.processes, args.lanes, args.backend, args.batch_max)
    c = r["counts"]
    lat = r["latency_us"]
    print(f"throughput {r['throughput_tasks_per_s']:,.0f} ok tasks/s (offered {args.rate:,.0f} Hz, "
          f"{args.processes} producers, {args.seconds:g} s, batch_max {args.batch_max}): ok {c['ok']}, rejected "
          f"{c['rejected']} {c['rejected_by_code']}, expired {c['expired']}, error {c['error']}, lost {c['lost']}, "
          f"mismatches {c['mismatches']}; latency p50 {lat.get('p50', NAN):,.0f} p99 {lat.get('p99', NAN):,.0f} µs",
          flush=True)
    lines = [f"# Sustained throughput: {r['card']}", "",
             md_row(["offered Hz", "producers", "batch_max", "ok tasks/s", "ok", "rejected", "lost", "mismatches",
                     "p50 µs", "p99 µs"]),
             md_row(["---"] * 10),
             md_row([f"{args.rate:.0f}", args.processes, args.batch_max, f"{r['throughput_tasks_per_s']:.0f}",
                     c["ok"], c["rejected"], c["lost"], c["mismatches"], _f(lat.get("p50"), "{:.0f}"),
                     _f(lat.get("p99"), "{:.0f}")]), ""]
    print(f"wrote {write_results(args.name, r, chr(10).join(lines))}")
    return 1 if c["mismatches"] else 0


# -- running the suite -------------------------------------------------------------------------------------------


RESIDENT_RUNS = ("roundtrip", "stream")  # the benchmarks that take --resident


def run_one(name: str, quick: bool, timeout_s: float, results_dir: Path = RESULTS_DIR,
            extra: tuple[str, ...] = ()) -> dict:
    """Run one benchmark as a subprocess; ``{"status": "ok"|"failed", "seconds", "result"?, "error"?}``."""
    script, full, short = SUITE[name]
    cmd = [sys.executable, str(BENCH / script), *(short if quick else full), *extra]
    print(f"=== {name}: {' '.join(cmd[1:])}", flush=True)
    t0 = time.time()
    entry: dict = {"command": cmd[1:]}
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
        rc, tail = proc.returncode, (proc.stdout + proc.stderr)[-4000:]
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"") + (e.stderr or b"")
        rc, tail = None, (out.decode(errors="replace") if isinstance(out, bytes) else str(out))[-4000:]
    entry["seconds"] = time.time() - t0
    entry["returncode"] = rc
    print(tail[-2000:], flush=True)
    stem = "throughput" if name == "throughput" else name
    found = sorted((p for p in results_dir.glob(f"{stem}-*.json") if p.stat().st_mtime >= t0 - 1),
                   key=lambda p: p.stat().st_mtime)
    if found:
        entry["result"] = json.loads(found[-1].read_text())
        entry["file"] = found[-1].name
    if rc == 0 and found:
        entry["status"] = "ok"
    else:
        entry["status"] = "failed"
        why = "timed out" if rc is None else f"exit code {rc}" if rc else "no results file written"
        entry["error"] = f"{why}: {tail[-1500:]}"
    print(f"--- {name}: {entry['status']} ({entry['seconds']:.1f} s)", flush=True)
    return entry


# -- the merged report -------------------------------------------------------------------------------------------


def _get(d, *keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def _pair(row) -> dict | None:
    if not isinstance(row, dict) or "p50" not in row or "p99" not in row:
        return None
    return {"p50": float(row["p50"]), "p99": float(row["p99"])}


def _result(merged: dict, name: str) -> dict:
    return _get(merged, "benchmarks", name, "result") or {}


def comparisons(merged: dict) -> list[dict]:
    """zmqrt against each floor and peer found in ``merged``.

    ``kind`` "slowdown": ratio = zmqrt / reference (target: at most ``target``);
    ``kind`` "speedup": ratio = reference / zmqrt (target: at least ``target``).
    """
    ef, fl, pe, rt = (_result(merged, n) for n in ("executor_floor", "floors", "peers", "roundtrip"))
    executor = _pair(_get(ef, "roundtrip_us", "executor (untimed) + spec.check"))
    rows: list[tuple[str, dict | None, dict | None, str, float | None]] = [
        ("executor vs bare driver 1 KiB + sync (same run)", executor,
         _pair(_get(ef, "roundtrip_us", "bare (3 driver calls + sync)")), "slowdown", 1.2),
        ("executor vs bare driver 1 KiB + sync (floors.py)", executor,
         _pair(_get(fl, "driver_us", "1 KiB H2D+vadd+D2H + sync")), "slowdown", None),
        ("executor vs CUDA graph 1 KiB + sync (floors.py)", executor,
         _pair(_get(fl, "driver_us", "1 KiB graph(H2D+vadd+D2H) + sync")), "slowdown", None),
    ]
    # The launched path (the default), then the resident lanes' (zmqrt serve --resident), which is what a 1 KiB
    # vector_add runs on in a server started with --resident.
    for path, label_z in (("zmqrt", "executor"), ("zmqrt --resident", "executor --resident")):
        z_peer = _pair(_get(pe, "paths_us", path))
        if z_peer is None:
            continue
        for peer, label, target in (("torch", "PyTorch", 2.0), ("cupy", "CuPy", 4.0)):
            rows.append((f"{label_z} vs {label} (peers.py, same run)", z_peer, _pair(_get(pe, "paths_us", peer)),
                         "speedup", target))
    for mode in ("block", "spin"):
        z = _get(rt, "paths", f"zmqrt [{mode}]")
        if z is None:
            continue
        rows += [
            (f"round trip vs prototype [{mode}]", _pair(_get(z, "roundtrip_us")),
             _pair(_get(rt, "paths", f"prototype [{mode}]", "roundtrip_us")), "slowdown", 1.1),
            (f"round trip vs bare ZeroMQ echo [{mode}]", _pair(_get(z, "roundtrip_us")),
             _pair(_get(rt, "paths", f"zmq echo [{mode}]", "roundtrip_us")), "slowdown", None),
            (f"service vs prototype server side [{mode}]", _pair(_get(z, "server_side_us")),
             _pair(_get(rt, "paths", f"prototype [{mode}]", "server_side_us")), "slowdown", 1.0),
        ]
        resident = _get(rt, "paths", f"prototype resident [{mode}]", "server_side_us")
        if resident is not None:  # the floor with zmqrt's resident GPU path: zmqrt's own per-task work, no target
            rows.append((f"service vs resident prototype server side [{mode}]", _pair(_get(z, "server_side_us")),
                         _pair(resident), "slowdown", None))
    out = []
    for label, zm, ref, kind, target in rows:
        row: dict = {"comparison": label, "kind": kind, "zmqrt_us": zm, "reference_us": ref, "target": target}
        if zm and ref and zm["p50"] > 0 and ref["p50"] > 0:
            if kind == "slowdown":
                row["ratio"] = {"p50": zm["p50"] / ref["p50"], "p99": zm["p99"] / ref["p99"]}
            else:
                row["ratio"] = {"p50": ref["p50"] / zm["p50"], "p99": ref["p99"] / zm["p99"]}
            if target is not None:
                r = row["ratio"]["p50"]
                row["met"] = bool(r <= target) if kind == "slowdown" else bool(r >= target)
        out.append(row)
    return out


def lost_by_run(merged: dict) -> dict[str, int]:
    """Tasks sent to a zmqrt server that never got a result, per run."""
    out: dict[str, int] = {}
    rt = _result(merged, "roundtrip")
    for key, row in (_get(rt, "paths") or {}).items():
        if key.startswith("zmqrt"):
            out[f"roundtrip {key}"] = int(_get(row, "roundtrip_us", "lost") or 0)
    st = _get(_result(merged, "stream"), "overall", "lost")
    if st is not None:
        out["stream"] = int(st)
    ss = _result(merged, "seed_scenarios")
    for name, row in (_get(ss, "scenarios") or {}).items():
        out[f"seed {name}"] = int(row.get("lost", 0))
    if _get(ss, "stream", "lost") is not None:
        out["seed stream"] = int(ss["stream"]["lost"])
    for name in ("throughput", "throughput_bulk"):
        tp = _get(_result(merged, name), "counts", "lost")
        if tp is not None:
            out[name] = int(tp)
    for spec, row in (_get(_result(merged, "throughput_engines"), "configs") or {}).items():
        if _get(row, "counts", "lost") is not None:
            out[f"throughput_engines {spec}"] = int(row["counts"]["lost"])
    return out


def engines_throughput(merged: dict) -> dict | None:
    """The several-engine run's figures (its first configuration), or None where it did not run."""
    res = _result(merged, "throughput_engines")
    row = next(iter((_get(res, "configs") or {}).values()), None)
    if not isinstance(row, dict):
        return None
    return {"engines": len(row.get("devices") or []) or None, "mps": res.get("mps"),
            "offered_tasks_per_s": res.get("rate_hz"), "sent_tasks_per_s": row.get("sent_tasks_per_s"),
            "tasks_per_s": row.get("throughput_tasks_per_s"), "lost": _get(row, "counts", "lost"),
            "latency_from_intended_send_us": _pair(row.get("latency_us")),
            "roundtrip_from_actual_send_us": _pair(row.get("roundtrip_from_actual_send_us")),
            "engine_receipt_to_sent_us": _pair(row.get("engine_service_to_sent_us"))}


def latest(merged: dict) -> dict:
    rt = _result(merged, "roundtrip")
    lost = lost_by_run(merged)
    one_engine = _get(_result(merged, "throughput"), "throughput_tasks_per_s")
    engines = engines_throughput(merged)
    return {
        "card": merged.get("card"),
        "date": merged.get("date"),
        "quick": merged.get("quick"),
        "resident": bool(merged.get("resident")),
        "service_us": _pair(_get(rt, "paths", "zmqrt [block]", "server_side_us")),
        "roundtrip_us": _pair(_get(rt, "paths", "zmqrt [block]", "roundtrip_us")),
        "prototype_roundtrip_us": _pair(_get(rt, "paths", "prototype [block]", "roundtrip_us")),
        "service_spin_us": _pair(_get(rt, "paths", "zmqrt [spin]", "server_side_us")),
        "roundtrip_spin_us": _pair(_get(rt, "paths", "zmqrt [spin]", "roundtrip_us")),
        # The system's sustained throughput: several engines where that run ran, else the one-engine run.
        "throughput_tasks_per_s": engines["tasks_per_s"] if engines else one_engine,
        "throughput_source": ("throughput_engines" if engines else "throughput") if engines or one_engine else None,
        "throughput_one_engine_tasks_per_s": one_engine,
        "throughput_engines": engines,
        "throughput_bulk_tasks_per_s": _get(_result(merged, "throughput_bulk"), "throughput_tasks_per_s"),
        "throughput_bulk_latency_us": _pair(_get(_result(merged, "throughput_bulk"), "latency_us")),
        "lost": sum(lost.values()) if lost else None,
        "lost_by_run": lost,
        "ratios": {c["comparison"]: c.get("ratio") for c in comparisons(merged)},
        "failed": sorted(k for k, v in merged.get("benchmarks", {}).items() if v.get("status") != "ok"),
    }


def _f(x, fmt: str = "{:.1f}") -> str:
    return fmt.format(x) if isinstance(x, (int, float)) else "–"


def report_md(merged: dict) -> str:
    card = merged.get("card", "unknown")
    lines = [f"# zmqrt benchmark suite: {card}, {merged.get('date')}{' (quick)' if merged.get('quick') else ''}"
             f"{' (round trip and stream with --resident)' if merged.get('resident') else ''}", "",
             "1 KiB vector_add unless said otherwise; µs. Ratio: zmqrt / reference for floors (lower is better), "
             "reference / zmqrt for peers (how many times faster zmqrt is).", "",
             md_row(["comparison", "zmqrt p50", "zmqrt p99", "ref p50", "ref p99", "ratio p50", "ratio p99",
                     "target (p50)", "met"]), md_row(["---"] * 9)]
    for c in comparisons(merged):
        z, r, ratio = c["zmqrt_us"] or {}, c["reference_us"] or {}, c.get("ratio") or {}
        target = "" if c["target"] is None else (f"<= {c['target']:g}x" if c["kind"] == "slowdown"
                                                 else f">= {c['target']:g}x")
        met = "" if "met" not in c else ("yes" if c["met"] else "NO")
        lines.append(md_row([c["comparison"], _f(z.get("p50"), "{:.2f}"), _f(z.get("p99"), "{:.2f}"),
                             _f(r.get("p50"), "{:.2f}"), _f(r.get("p99"), "{:.2f}"), _f(ratio.get("p50"), "{:.2f}"),
                             _f(ratio.get("p99"), "{:.2f}"), target, met]))
    lt = latest(merged)
    svc = lt["service_us"] or {}
    lines += ["", md_row(["headline", "value", "target"]), md_row(["---"] * 3),
              md_row(["service p50 / p99 µs (block)", f"{_f(svc.get('p50'))} / {_f(svc.get('p99'))}",
                      "<= 20 / <= 40"]),
              md_row(["round trip p50 / p99 µs (block)", f"{_f((lt['roundtrip_us'] or {}).get('p50'))} / "
                      f"{_f((lt['roundtrip_us'] or {}).get('p99'))}", "<= 1.1x prototype"]),
              md_row(["prototype round trip p50 / p99 µs", f"{_f((lt['prototype_roundtrip_us'] or {}).get('p50'))}"
                      f" / {_f((lt['prototype_roundtrip_us'] or {}).get('p99'))}", ""]),
              md_row(["service p50 / p99 µs (spin)", f"{_f((lt['service_spin_us'] or {}).get('p50'))} / "
                      f"{_f((lt['service_spin_us'] or {}).get('p99'))}", "<= 20 / <= 40"]),
              md_row(["round trip p50 / p99 µs (spin)", f"{_f((lt['roundtrip_spin_us'] or {}).get('p50'))} / "
                      f"{_f((lt['roundtrip_spin_us'] or {}).get('p99'))}", "<= 1.1x prototype"]),
              md_row(["sustained throughput, ok tasks/s (one engine, latency setting)",
                      _f(lt["throughput_one_engine_tasks_per_s"], "{:,.0f}"), ""]),
              md_row(["sustained throughput, ok tasks/s (one engine, --batch-max 64); latency p50 / p99 µs",
                      f"{_f(lt['throughput_bulk_tasks_per_s'], '{:,.0f}')}; "
                      f"{_f((lt['throughput_bulk_latency_us'] or {}).get('p50'), '{:,.0f}')} / "
                      f"{_f((lt['throughput_bulk_latency_us'] or {}).get('p99'), '{:,.0f}')}",
                      "(one engine; the target is the several-engine row's)"]),
              md_row(["lost tasks (all zmqrt runs)", _f(lt["lost"], "{:d}"), "0"])]
    eng = lt["throughput_engines"]
    if eng:
        lat = eng["latency_from_intended_send_us"] or {}
        rcp = eng["engine_receipt_to_sent_us"] or {}
        lines.insert(-1, md_row([
            f"sustained throughput, {eng['engines']} engines on GPU 0 ({'MPS' if eng['mps'] else 'no MPS'}, "
            f"{_f(eng['offered_tasks_per_s'], '{:,.0f}')}/s offered), ok tasks/s; producers' latency from the "
            "intended send p50 / p99 µs; engines' receipt to sent p99 µs",
            f"{_f(eng['tasks_per_s'], '{:,.0f}')} (lost {eng['lost']}); {_f(lat.get('p50'), '{:,.0f}')} / "
            f"{_f(lat.get('p99'), '{:,.0f}')}; {_f(rcp.get('p99'), '{:,.0f}')}", ">= 200,000, 0 lost, p99 < 1,000"]))
    st = _get(_result(merged, "stream"), "overall")
    if st:
        pct = _f(st.get("miss_pct"), "{:.3f}")
        mode = "spin" if _get(_result(merged, "stream"), "spin") else "block"
        lines.append(md_row([f"10 kHz stream misses (stream.py, {mode})", f"{st.get('misses')} ({pct}%)",
                             "< 0.1%, none at priority 0"]))
    so = _get(_result(merged, "sched_overhead"), "policies", "edf", "added_p50_us")
    if so is not None:
        lines.append(md_row(["scheduling + tracking added p50 µs (edf)", _f(so, "{:.2f}"), "<= 3"]))
    ws = _get(_result(merged, "executor_floor"), "warm_start", "total_ms")
    if ws is not None:
        lines.append(md_row(["warm start ms", _f(ws), "< 200"]))
    ss = _result(merged, "seed_scenarios")
    if ss.get("scenarios"):
        lines += ["", "The seed's scenarios (producer round trip, µs):", "",
                  md_row(["scenario", "tasks", "misses", "miss %", "mean", "p50", "p95", "p99", "max", "tasks/s"]),
                  md_row(["---"] * 10)]
        for name, s in [*ss["scenarios"].items(), ("stream (all)", ss.get("stream", {}))]:
            if s:
                lines.append(md_row([name, s.get("tasks"), s.get("misses"), _f(s.get("miss_pct"), "{:.2f}"),
                                     _f(s.get("mean")), _f(s.get("p50")), _f(s.get("p95")), _f(s.get("p99")),
                                     _f(s.get("max")), _f(s.get("throughput"), "{:.0f}")]))
    skipped = _get(_result(merged, "peers"), "skipped") or {}
    for peer, why in skipped.items():
        lines.append(f"\n- peer {peer} skipped: {why}")
    failed = lt["failed"]
    lines += ["", f"Failed: {', '.join(failed)}" if failed else "All benchmarks ran.", ""]
    for name in failed:
        err = (_get(merged, "benchmarks", name, "error") or "").strip().splitlines()[-3:]
        lines.append(f"- {name}: {' | '.join(err)}")
    return "\n".join(lines) + "\n"


def write_report(merged: dict, out_dir: Path) -> dict[str, Path]:
    """Write ``<card>-<date>.json``, ``<card>-<date>.md`` and ``latest.json`` under ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{card_slug(merged.get('card') or 'unknown')}-{merged.get('date')}"
    paths = {"json": out_dir / f"{stem}.json", "md": out_dir / f"{stem}.md", "latest": out_dir / "latest.json"}
    paths["json"].write_text(json.dumps(merged, indent=1, sort_keys=True, default=str) + "\n")
    paths["md"].write_text(report_md(merged))
    paths["latest"].write_text(json.dumps(latest(merged), indent=1, sort_keys=True) + "\n")
    extra = os.environ.get("OUT")
    if extra and Path(extra).resolve() != out_dir.resolve():
        Path(extra).mkdir(parents=True, exist_ok=True)
        for p in paths.values():
            (Path(extra) / p.name).write_text(p.read_text())
    return paths


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="shorter runs: the whole suite in about 3-4 minutes")
    ap.add_argument("--only", default="", help=f"comma list of benchmarks to run (default all: {', '.join(SUITE)})")
    ap.add_argument("--skip", default="", help="comma list of benchmarks to leave out")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per benchmark (default 300 quick, 1200)")
    ap.add_argument("--resident", action="store_true", help="run the round trip and the stream with zmqrt serve "
                    "--resident (small vector_add on kernels resident on the lanes)")
    ap.add_argument("--out-dir", type=Path, default=RESULTS_DIR,
                    help="where the merged report and latest.json go (default bench/results; each benchmark "
                    "writes its own file to bench/results)")
    t = ap.add_argument_group("the throughput run (what run_all starts as its own subprocess)")
    t.add_argument("--throughput-only", action="store_true", help="run only the sustained throughput measurement")
    t.add_argument("--seconds", type=float, default=5.0, help="throughput run length (default 5)")
    t.add_argument("--rate", type=float, default=100_000.0, help="offered rate in Hz, all producers (default 100000)")
    t.add_argument("--processes", type=int, default=4, help="producer processes (default 4)")
    t.add_argument("--lanes", type=int, default=4, help="server lanes (default 4)")
    t.add_argument("--backend", default="cuda", choices=["cuda", "cpu"], help="server backend (cpu: smoke test)")
    t.add_argument("--batch-max", type=int, default=1, help="server --batch-max (default 1: the latency setting; "
                   "64: the throughput setting)")
    t.add_argument("--name", default="throughput", help="result name under bench/results (default throughput)")
    args = ap.parse_args()
    if args.throughput_only:
        return throughput_main(args)
    names = [n for n in (args.only.split(",") if args.only else SUITE) if n]
    unknown = [n for n in names + args.skip.split(",") if n and n not in SUITE]
    if unknown:
        ap.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(SUITE)}")
    names = [n for n in names if n not in set(args.skip.split(","))]
    timeout = args.timeout or (300.0 if args.quick else 1200.0)
    merged: dict = {"date": _dt.date.today().isoformat(), "quick": args.quick, "resident": args.resident,
                    "benchmarks": {}}
    t0 = time.time()
    for name in names:
        extra = ("--resident",) if args.resident and name in RESIDENT_RUNS else ()
        merged["benchmarks"][name] = run_one(name, args.quick, timeout, extra=extra)
    merged["total_seconds"] = time.time() - t0
    cards = [_get(v, "result", "card") for v in merged["benchmarks"].values()]
    cards = [c for c in cards if c and c != "no-gpu"] or [c for c in cards if c]
    merged["card"] = cards[0] if cards else "unknown"
    paths = write_report(merged, args.out_dir)
    print(paths["md"].read_text())
    for p in paths.values():
        print(f"wrote {p}")
    failed = latest(merged)["failed"]
    if failed:
        print(f"FAILED: {', '.join(failed)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
