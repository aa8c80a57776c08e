"""Throughput of supervised engines: one engine against one engine per GPU (``zmqrt serve --devices 0,1``).

Each configuration runs a :class:`zmqrt.supervisor.Supervisor` in this process (engines are spawned children, as
``zmqrt serve`` runs them) and drives it with ``ingest.loadgen.run_loadgen``: several producer processes, open
loop, 1 KiB ``vector_add`` without deadline, at an offered rate above what one engine can do. Throughput = ok
results per second; a sample of outputs is checked against numpy; lost must be 0. Same offered load for every
configuration, in the same run. Target (issue 7): N GPUs >= 1.8x one GPU at N = 2.

Writes bench/results/scaleout-<CARD>.json and .md.

A device may repeat: ``--configs "0;0,0;0,0,0,0"`` runs 1, 2 and 4 engines sharing GPU 0 (each its own process and
CUDA context), the "several engines" route to throughput on one GPU. ``DEVICES@N`` runs N relay processes in front
of those engines (``zmqrt serve --ingest-workers N``, zmqrt/relay.py): ``--configs "0;0@4"`` compares one engine
alone with one engine behind 4 relays, in the same run.

Usage: python3 bench/scaleout.py [--seconds 5] [--rate 60000] [--processes 6] [--configs 0;0,1] [--out NAME]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import card_name, environment, md_row, write_results  # noqa: E402
from bench.mps import mps  # noqa: E402
from bench.steal import StealSampler, steal_by_window  # noqa: E402


def run_config(devices: list[int], args, relays: int = 0) -> dict:
    import numpy as np

    from ingest.loadgen import LoadgenConfig, MixEntry, run_loadgen
    from ingest.loadgen_report import summarize
    from zmqrt.config import ServerConfig
    from zmqrt.latency.tracker import LatencyTracker
    from zmqrt.placement import thread_cpu_ms
    from zmqrt.statsview import fetch_stats
    from zmqrt.supervisor import Supervisor, _nth_endpoint, engine_cpus

    tmp = tempfile.mkdtemp(prefix='zrt')
    trace_path = None
    if args.trace:  # each engine writes engine.I.npy (tasks) and engine.I.batches.npy (bulk batches) there
        tdir = Path(args.trace) / ("_".join(map(str, devices)) + (f"@{relays}" if relays else ""))
        tdir.mkdir(parents=True, exist_ok=True)
        trace_path = str(tdir / "engine.npy")
    cfg = ServerConfig(backend=args.backend, ingest=f"ipc://{tmp}/in", lanes=args.lanes, stats=f"ipc://{tmp}/stats",
                       batch_max=args.batch_max, ingest_workers=relays, cpu=args.engine_cpu, trace_path=trace_path,
                       fanout_io_threads=args.fanout_io_threads, fanout=args.fanout, resident=args.resident,
                       spin=args.spin)
    lg = LoadgenConfig(endpoint=cfg.ingest, mix=[MixEntry(kernel="vector_add", size=256)], rate_hz=args.rate,
                       duration_s=args.seconds, timeout_s=15.0, check_fraction=0.001, processes=args.processes,
                       collector=args.collector, drain_per_send=args.drain_per_send)
    with Supervisor(cfg, devices=devices if len(devices) > 1 else None) as sup:
        sup.start()
        thread = threading.Thread(target=sup.run, daemon=True)
        thread.start()
        lg.endpoint = sup.ingest_endpoint
        kept = _keep_producers_off(engine_cpus(args.engine_cpu, len(devices)))
        warmup = None
        try:
            if args.warmup_s > 0:  # the same load on the same engines first; reported apart, not in the figures
                warm = run_loadgen(dataclasses.replace(lg, duration_s=args.warmup_s))
                warmup = _warmup_summary(warm)
                print(f"  warm-up {args.warmup_s:g} s: {warmup}", flush=True)
            t0 = time.perf_counter()
            cpu0 = thread_cpu_ms()
            with StealSampler() as steal:
                res = run_loadgen(lg)
        finally:
            if kept is not None:
                os.sched_setaffinity(0, kept)
        wall = time.perf_counter() - t0
        # The fan-out's threads live in this process: its proxy and ZeroMQ's I/O threads. Each one's busy share of
        # the run says whether the front of several engines keeps up (one I/O thread moves every frame in and out).
        fanout = getattr(sup, "_fanout", None)
        proxy_tid = fanout._thread.native_id if fanout is not None else None
        fanout_busy = {f"{'proxy' if tid == proxy_tid else name} ({tid})":
                       round((ms - cpu0.get(tid, (name, 0))[1]) / 1e3 / wall, 3)
                       for tid, (name, ms) in thread_cpu_ms().items()
                       if tid == proxy_tid or name.startswith("ZMQbg/IO")} if fanout is not None else {}
        engines = []  # each engine's own counters: how its tasks went (bulk or per task, relayed or not)
        merged = LatencyTracker()  # every engine's histograms: service = receipt to result sent, the server's clock
        for i in range(len(devices)):
            snap = fetch_stats(_nth_endpoint(cfg.stats, i) if len(devices) > 1 else cfg.stats, timeout_s=10)
            engines.append(snap["server"] if snap else None)
            if snap:
                merged.merge_snapshot(snap)
        sup.stop()
        thread.join(60)
    overall = summarize(res)["overall"]
    overall.pop("hdr", None)
    ok = res.status == "ok"
    roundtrip = _roundtrip_us(res)
    windows = _rt_windows(res.sent_ns[ok], res.done_ns[ok])
    lag = _lag_summary(res)
    stolen = steal.summary()
    if stolen and windows:
        stolen["by_window"] = steal_by_window(stolen, np.array(windows["start_ns_by_window"], np.int64),
                                              np.array(windows["p99_us_by_window"]))
    sent = res.sent_ns[res.sent_ns >= 0]
    # What the producers managed to send (the offered rate is only an intent): sends over their span.
    sent_hz = (len(sent) - 1) / ((int(sent.max()) - int(sent.min())) / 1e9) if len(sent) > 1 else 0.0
    batches = _batch_summaries(trace_path, len(devices)) if trace_path else None
    # The results' own service field ends at the batch's collection (it is written before the send); the engines'
    # service histograms end at the send. Both are kept: the second is issue 6's "receipt to result sent".
    sent_service = {k: v / 1e3 for k, v in merged.summary("service").items() if k.endswith("_ns")}
    return {"devices": devices, "ingest_workers": relays, "wall_s": wall, "engines": engines, "batch_trace": batches,
            "warmup": warmup, "steal": stolen, "producer_lag": lag,
            "fanout_threads_busy": fanout_busy,
            "engine_service_to_sent_us": {k[:-3]: v for k, v in sent_service.items()},
            "roundtrip_from_actual_send_us": roundtrip, "roundtrip_windows": windows,
            "throughput_tasks_per_s": overall.get("throughput_hz"),
            "sent_tasks_per_s": sent_hz,
            "counts": overall["counts"], "latency_us": overall.get("latency_us", {}),
            "server_us": overall.get("server_us", {})}


def _rt_windows(sent_ns, done_ns, window_ns: int = 100_000_000) -> dict:
    """The round trip from the actual send per 100 ms of send time: is the tail spread over the run or a few bad
    moments? Each window's p99 (µs); how many windows have a p99 over 1 ms; the worst five."""
    import numpy as np

    if not len(sent_ns):
        return {}
    rt = (done_ns - sent_ns) / 1e3
    t0 = int(sent_ns.min())
    slot = (sent_ns - t0) // window_ns
    order = np.argsort(slot, kind="stable")
    slot, rt = slot[order], rt[order]
    edges = np.flatnonzero(np.diff(slot)) + 1
    kept = [(int(s[0]), np.percentile(part, 99)) for s, part in zip(np.split(slot, edges), np.split(rt, edges))  # noqa: B905
            if len(part) >= 100]
    if not kept:
        return {}
    p99 = np.array([v for _, v in kept])
    return {"window_ms": window_ns // 1_000_000, "windows": int(len(p99)), "over_1ms": int((p99 > 1000).sum()),
            "median_window_p99_us": float(np.median(p99)), "worst_us": sorted(np.round(p99, 0).tolist())[-5:],
            # where in the run the bad windows are (start-up, or spread over it): every window's p99 in order
            "p99_us_by_window": np.round(p99, 0).tolist(),
            "start_ns_by_window": [t0 + k * window_ns for k, _ in kept]}


def _lag_summary(res) -> dict:
    """How far each producer fell behind its schedule (actual send - intended send), and when: the latency from the
    intended send counts this lag, the round trip from the actual send does not. Per producer, the largest lag
    and the second of the run it came at; and the share of tasks sent more than 10 ms late."""
    import numpy as np

    sent = res.sent_ns >= 0
    if not sent.any():
        return {}
    lag_ms = (res.sent_ns[sent] - res.intended_ns[sent]) / 1e6
    at_s = (res.intended_ns[sent] - res.intended_ns.min()) / 1e9
    workers = res.worker[sent]
    per = {}
    for w in np.unique(workers).tolist():
        mine = workers == w
        k = int(np.argmax(lag_ms[mine]))
        per[str(w)] = {"max_ms": round(float(lag_ms[mine][k]), 1), "at_s": round(float(at_s[mine][k]), 2),
                       "over_10ms_s": [round(float(x), 1) for x in np.unique(np.floor(at_s[mine][lag_ms[mine] > 10]))]}
    return {"p50_ms": round(float(np.percentile(lag_ms, 50)), 3), "p99_ms": round(float(np.percentile(lag_ms, 99)), 1),
            "share_over_10ms": round(float((lag_ms > 10).mean()), 4), "per_producer": per}


def _roundtrip_us(res) -> dict:
    """From the actual send to the result's receipt, on the producers' clock, p50 / p99 / p99.9 (µs): the round trip
    without the producers' own lag behind their schedule (which the intended-send latency counts, as an open loop
    must). Empty when nothing was answered ok."""
    import numpy as np

    ok = res.status == "ok"
    rt = (res.done_ns[ok] - res.sent_ns[ok]) / 1e3
    if not len(rt):
        return {}
    p50, p99, p99_9 = np.percentile(rt, [50, 99, 99.9]).tolist()
    return {"p50": p50, "p99": p99, "p99_9": p99_9}


def _warmup_summary(res) -> dict:
    """A warm-up run in brief: what was answered, and its round trip from the actual send."""
    rt = _roundtrip_us(res)
    return {"tasks": len(res.status), "ok": int((res.status == "ok").sum()),
            "roundtrip_p50_us": round(rt["p50"], 1) if rt else None,
            "roundtrip_p99_us": round(rt["p99"], 1) if rt else None}


def _keep_producers_off(cpus) -> set[int] | None:
    """Keep the producer processes (started next, inheriting this process's CPU set) off the engines' loop CPUs and
    their hyperthread siblings: a producer scheduled there preempts a loop for whole time slices. Returns the CPU
    set to restore afterwards (None: nothing changed)."""
    from zmqrt.placement import thread_siblings

    if not cpus or not hasattr(os, "sched_setaffinity"):
        return None
    allowed = os.sched_getaffinity(0)
    reserved = set().union(*(thread_siblings(c) for c in cpus))
    rest = allowed - reserved
    if not rest:
        return None
    os.sched_setaffinity(0, rest)
    print(f"  producers kept off CPUs {','.join(map(str, sorted(reserved & allowed)))} (engine loops "
          f"{','.join(map(str, cpus))} and their hyperthread siblings)", flush=True)
    return allowed


def _batch_summaries(trace_path: str, engines: int) -> list:
    """Each engine's bulk-batch trace summarized (zmqrt.trace.summarize_batches): where a batch's time went."""
    import numpy as np

    from zmqrt.supervisor import _nth_trace
    from zmqrt.trace import batch_trace_path, summarize_batches

    out = []
    for i in range(engines):
        path = batch_trace_path(_nth_trace(trace_path, i) if engines > 1 else trace_path)
        out.append(summarize_batches(np.load(path), skip=100) if path.exists() else None)
    return out


def _print_batches(summaries: list) -> None:
    for i, s in enumerate(summaries):
        if not s or "tasks" not in s:
            print(f"  engine {i}: no bulk batches traced", flush=True)
            continue
        gaps = "; ".join(f"{k} {v['p50']:.0f}/{v['p99']:.0f}" for k, v in s.items()
                         if isinstance(v, dict) and "p99" in v)
        share = ", ".join(f"{k} {v:.0%}" for k, v in s["loop_share"].items())
        print(f"  engine {i} batches {s['batches']} (size p50 {s['batch_size']['p50']:.0f}, mean "
              f"{s['batch_size']['mean']:.0f}); µs p50/p99 by task: {gaps}; loop busy: {share}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rate", type=float, default=60_000.0, help="offered tasks/s, all producers (default 60000)")
    ap.add_argument("--processes", type=int, default=6, help="producer processes (default 6)")
    ap.add_argument("--lanes", type=int, default=4)
    ap.add_argument("--batch-max", type=int, default=128, help="engines' --batch-max "
                    "(default 128: the throughput setting, bench/NOTES.md 28; 1: no batching)")
    ap.add_argument("--engine-cpu", type=int, metavar="N", help="pin the engines' loops to CPUs N, N+1, ... (zmqrt "
                    "serve --cpu N); the producers are kept off those CPUs and their hyperthread siblings")
    ap.add_argument("--backend", default="cuda", help="cuda (default); cpu for a smoke test without a GPU")
    ap.add_argument("--configs", default="0;0,1", help="device lists separated by ';', each optionally @N for N "
                    "relay processes (default '0;0,1')")
    ap.add_argument("--trace", metavar="DIR", help="engines record stage and bulk-batch traces under DIR/CONFIG/ and "
                    "each engine's batch gaps are printed (read, match+submit, gpu+wait, collect, encode, send)")
    ap.add_argument("--fanout-io-threads", type=int, default=2, help="ZeroMQ I/O threads of the fan-out in front of "
                    "several engines (zmqrt serve --fanout-io-threads; default 2)")
    ap.add_argument("--fanout", choices=("proxy", "direct"), default="proxy", help="how tasks reach several engines "
                    "(zmqrt serve --fanout): proxy (default), through the fan-out in this process; direct, each "
                    "producer connected to every engine's own ingest endpoint")
    ap.add_argument("--warmup-s", type=float, default=0.0, metavar="S", help="first run the same load for S "
                    "seconds on the same engines, reported apart (a long-running server has paid its first-use "
                    "costs, each batch size's first launch and graph capture; default 0: none)")
    ap.add_argument("--drain-per-send", type=int, default=64, metavar="N", help="a producer behind schedule takes "
                    "at most N waiting results between two sends (default 64; 1 was the rule before session 18)")
    ap.add_argument("--collector", action="store_true", help="each producer's results go to a collector process "
                    "of its own (zmqrt loadgen --collector), so the round trip from the actual send leaves out the "
                    "producer's own delay in looking")
    ap.add_argument("--mps", action="store_true", help="run the engines under CUDA MPS, started here for the GPUs "
                    "of --configs and stopped after (bench/mps.py); without it, start MPS yourself if you want it")
    ap.add_argument("--resident", action="store_true", help="engines with --resident: batches of up to 4096 elements "
                    "per input (16 rows of 1 KiB) go to a kernel resident on each lane, no launch per batch. Several "
                    "engines on one GPU need CUDA MPS for it (--mps)")
    ap.add_argument("--spin", action="store_true", help="engines with --spin: each loop busy-polls its pinned CPU "
                    "instead of sleeping in recv when idle (with cache warming, on by default with it)")
    ap.add_argument("--out", default="scaleout", help="result name under bench/results (default scaleout)")
    args = ap.parse_args()
    specs = [(spec, [int(d) for d in spec.partition("@")[0].split(",")], int(spec.partition("@")[2] or 0))
             for spec in args.configs.split(";")]
    with ExitStack() as stack:
        mps_on = bool(args.mps and args.backend == "cuda"
                      and stack.enter_context(mps(sorted({d for _, devs, _ in specs for d in devs}))))
        rows = _run_configs(specs, args)
    return _report(rows, args, mps_on)


def _row_key(spec: str, rows: dict) -> str:
    """A configuration may repeat ("0;0,1;0;0,1": alternating pairs on a drifting host): its second run is kept
    as "SPEC #2", and so on, never over the first."""
    if spec not in rows:
        return spec
    return f"{spec} #{sum(k.partition(' #')[0] == spec for k in rows) + 1}"


def _paired_speedups(rows: dict, first: str) -> None:
    """Set each row's ``speedup_vs_first``: its throughput over the latest run of the ``first`` configuration at or
    before it, which with alternating repeats is its own pair's."""
    base = float("nan")
    for key, r in rows.items():
        if key.partition(" #")[0] == first:
            base = r["throughput_tasks_per_s"] or float("nan")
        r["speedup_vs_first"] = (r["throughput_tasks_per_s"] or 0.0) / base


def _run_configs(specs: list[tuple[str, list[int], int]], args) -> dict:
    rows = {}
    for spec, devices, relays in specs:
        r = rows[_row_key(spec, rows)] = run_config(devices, args, relays)
        c = r["counts"]
        print(f"devices {spec:6s}: sent {r['sent_tasks_per_s']:,.0f}/s, "
              f"{r['throughput_tasks_per_s']:,.0f} ok/s; ok {c['ok']} rejected {c['rejected']} "
              f"{c['rejected_by_code']} lost {c['lost']} mismatches {c['mismatches']}; latency p50 "
              f"{r['latency_us'].get('p50', float('nan')):,.0f} p99 {r['latency_us'].get('p99', float('nan')):,.0f} µs"
              f" (server service p50 {r['server_us'].get('service', {}).get('p50', float('nan')):,.0f} p99 "
              f"{r['server_us'].get('service', {}).get('p99', float('nan')):,.0f} µs; receipt to sent p50 "
              f"{r['engine_service_to_sent_us'].get('p50', float('nan')):,.0f} p99 "
              f"{r['engine_service_to_sent_us'].get('p99', float('nan')):,.0f} p99.9 "
              f"{r['engine_service_to_sent_us'].get('p99_9', float('nan')):,.0f} µs; round trip from the actual "
              f"send p50 {r['roundtrip_from_actual_send_us'].get('p50', float('nan')):,.0f} p99 "
              f"{r['roundtrip_from_actual_send_us'].get('p99', float('nan')):,.0f} µs)", flush=True)
        w = r["roundtrip_windows"]
        if w:
            print(f"  round trip from the actual send per {w['window_ms']} ms: {w['over_1ms']} of {w['windows']} "
                  f"windows with p99 > 1 ms; median window p99 {w['median_window_p99_us']:,.0f} µs; worst "
                  f"{', '.join(f'{x:,.0f}' for x in w['worst_us'])} µs", flush=True)
            per_s = 1000 // w["window_ms"]
            by = w["p99_us_by_window"]
            print("  windows over 1 ms, per second of the run: " + " ".join(
                str(sum(x > 1000 for x in by[k:k + per_s])) for k in range(0, len(by), per_s)), flush=True)
        lag = r.get("producer_lag") or {}
        if lag:
            print(f"  producers behind schedule: p50 {lag['p50_ms']} ms, p99 {lag['p99_ms']} ms, "
                  f"{lag['share_over_10ms']:.2%} of tasks over 10 ms late; largest per producer: " + ", ".join(
                      f"{v['max_ms']:.0f} ms at {v['at_s']:.1f} s" for v in lag["per_producer"].values()), flush=True)
        st = r.get("steal") or {}
        if st:
            bw = st.get("by_window", {})
            print(f"  CPU time the hypervisor took (steal): {st['all_cpus']:.2%} of all CPUs, worst CPU "
                  f"{st['max_cpu']:.2%}; in the windows over 1 ms {bw.get('steal_all_cpus_over', float('nan')):.2%} "
                  f"(worst CPU {bw.get('steal_worst_cpu_over', float('nan')):.2%}), in the others "
                  f"{bw.get('steal_all_cpus_under', float('nan')):.2%} "
                  f"(worst CPU {bw.get('steal_worst_cpu_under', float('nan')):.2%})", flush=True)
        if r["fanout_threads_busy"]:
            print("  busy share of this process's threads over the run: " + ", ".join(
                f"{k} {v:.0%}" for k, v in r["fanout_threads_busy"].items()), flush=True)
        for i, e in enumerate(r["engines"]):
            if e:
                print(f"  engine {i}: frames {e['frames']}, batches {e['batches']}, bulk tasks {e['bulk_tasks']}, "
                      f"relayed {e['relayed_results']}, relay fallbacks {e['relay_fallbacks']}, "
                      f"undeliverable {e['undeliverable']}", flush=True)
        if r.get("batch_trace"):
            _print_batches(r["batch_trace"])
    return rows


def _report(rows: dict, args, mps_on: bool) -> int:
    _paired_speedups(rows, args.configs.split(";")[0])
    lines = [f"# Supervised engines, throughput at {args.rate:,.0f} tasks/s offered ({args.processes} producers, "
             f"{args.seconds:g} s, 1 KiB vector_add, batch_max {args.batch_max}, fan-out {args.fanout}): "
             f"{card_name()}", "",
             md_row(["engines on devices", "sent tasks/s", "ok tasks/s", "x the first config's run before", "ok",
                     "rejected", "lost", "mismatches", "p50 µs (from intended send)", "p99 µs", "service p99 µs",
                     "receipt to sent p99 µs", "round trip from actual send p99 µs"]),
             md_row(["---"] * 13)]
    for spec, r in rows.items():
        c = r["counts"]
        lat = r["latency_us"]
        svc = r["server_us"].get("service", {})
        lines.append(md_row([spec, f"{r['sent_tasks_per_s']:,.0f}",
                             f"{r['throughput_tasks_per_s']:,.0f}", f"{r['speedup_vs_first']:.2f}", c["ok"],
                             c["rejected"], c["lost"], c["mismatches"], f"{lat.get('p50', float('nan')):.0f}",
                             f"{lat.get('p99', float('nan')):.0f}", f"{svc.get('p99', float('nan')):.0f}",
                             f"{r['engine_service_to_sent_us'].get('p99', float('nan')):.0f}",
                             f"{r['roundtrip_from_actual_send_us'].get('p99', float('nan')):.0f}"]))
    path = write_results(args.out, {"card": card_name(), "env": environment(), "rate_hz": args.rate,
                                      "seconds": args.seconds, "processes": args.processes, "batch_max": args.batch_max,
                                      "collector": args.collector, "spin": args.spin,
                                      "fanout_io_threads": args.fanout_io_threads, "fanout": args.fanout,
                                      "warmup_s": args.warmup_s, "drain_per_send": args.drain_per_send, "mps": mps_on,
                                      "configs": rows},
                         "\n".join(lines) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
