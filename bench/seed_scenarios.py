"""The seed's benchmark scenarios and its 10 kHz stream, through a real zmqrt server on the GPU.

One zmqrt server (CUDA backend, EDF, admission "flag" and expiry "late" as ``zmqrt demo`` runs it, so every
task is served and a late one is counted, not refused) gets, open loop from ``ingest.openloop``:
- High Frequency Small (1000 x vector_add of 2 x 256 B, every 10 µs), Medium Frequency Medium (500 x matmul of
  about 1 KiB per input, every 50 µs), Low Frequency Large (100 x fft of 4 KiB, every 200 µs), each with a
  500 µs deadline (``zmqrt.demo.SCENARIOS``);
- the seed's stream at ``--rate`` (10 kHz) for ``--stream-seconds``: vector_add 50 µs, matmul 100 µs, fft 75 µs
  deadlines round robin (``zmqrt.demo.STREAM_MIX``), deadlines counted from the server's receipt.
Reported per scenario, as the seed's table: tasks, deadline misses and miss %, mean, p50, p95, p99, max
(producer round trip from the intended send time, µs) and throughput (ok tasks / wall second). Here a miss is
any task that did not finish in time: ok-but-late, expired, rejected, failed or lost. A sample of outputs is
checked against numpy. Target (issue 4): no misses at priority 0/1 in the stream, under 0.1% overall.

Usage: python3 bench/seed_scenarios.py [--stream-seconds 5] [--rate 10000] [--repeat 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import card_name, environment, md_row, write_results  # noqa: E402
from ingest.openloop import Planned, run_open_loop  # noqa: E402


def _wrong(recs, kept: dict, kernels: list[str]) -> int:
    from zmqrt.demo import reference, tolerance

    bad = 0
    for idx, inputs in kept.items():
        r = recs[idx]
        if r.status != "ok" or r.outputs is None:
            continue
        want = reference(kernels[idx], inputs)
        rtol, atol = tolerance(kernels[idx], want)
        if not np.allclose(r.outputs[0], want, rtol=rtol, atol=atol):
            bad += 1
    return bad


def _row(recs, wall: float, wrong: int) -> dict:
    from zmqrt.demo import summarize

    s = summarize(recs, wall)
    s["ok_late"] = s.pop("misses")
    s["misses"] = s["tasks"] - s["ok"] + s["ok_late"]
    s["miss_pct"] = 100.0 * s["misses"] / max(1, s["tasks"])
    s["wrong_outputs"] = wrong
    return s


def run_scenarios(endpoint: str, rng, repeat: int = 1) -> dict[str, dict]:
    from zmqrt.demo import SCENARIOS, task_inputs

    out = {}
    for sc in SCENARIOS:
        pool = [task_inputs(sc.kernel, sc.task_bytes, rng) for _ in range(16)]
        count = sc.count * repeat
        plan = [Planned(int(i * sc.interval_us * 1000), sc.kernel, pool[i % 16], priority=1, deadline_us=500.0,
                        tag=sc.name) for i in range(count)]
        kept = {i: pool[i % 16] for i in range(0, count, 10)}
        t0 = time.perf_counter()
        recs = run_open_loop(endpoint, plan, timeout_s=10.0, keep_outputs=lambda i, kept=kept: i in kept,
                             id_prefix=f"seed_{sc.kernel}_")
        wall = time.perf_counter() - t0
        out[sc.name] = _row(recs, wall, _wrong(recs, kept, [sc.kernel] * count))
    return out


def run_stream(endpoint: str, rng, seconds: float, rate: float) -> dict:
    from zmqrt.demo import STREAM_MIX, stream_plan

    n = max(3, int(seconds * rate))
    period_ns = int(1e9 / rate)
    plan, kernels, kept = stream_plan(n, period_ns, rng)
    t0 = time.perf_counter()
    recs = run_open_loop(endpoint, plan, timeout_s=10.0, keep_outputs=lambda i: i in kept, id_prefix="stream_")
    wall = time.perf_counter() - t0
    row = _row(recs, wall, _wrong(recs, kept, kernels))
    row["by_kernel"] = {}
    for kernel, prio, dl in STREAM_MIX:
        sub = [r for r in recs if r.kernel == kernel]
        row["by_kernel"][f"{kernel} (p{prio}, {dl:.0f} µs)"] = _row(sub, wall, 0)
    return row


def measure(stream_seconds: float = 5.0, rate: float = 10_000.0, repeat: int = 1, lanes: int = 4,
            warm_tasks: int = 2000, backend: str = "cuda") -> dict:
    from zmqrt.config import ServerConfig
    from zmqrt.demo import start_server, stop_server, task_inputs

    rng = np.random.default_rng()
    tmp = tempfile.mkdtemp(prefix="zrt")
    cfg = ServerConfig(backend=backend, ingest=f"ipc://{tmp}/in", lanes=lanes, policy="edf", admission="flag",
                       expire="late")
    results: dict = {"card": card_name(), "env": environment(), "backend": backend, "lanes": lanes,
                     "policy": "edf", "admission": "flag", "expire": "late", "stream_rate_hz": rate,
                     "stream_seconds": stream_seconds, "repeat": repeat}
    proc = start_server(cfg)
    try:
        if warm_tasks:  # first tasks of each shape take the cold path (buffer plans); keep them out of the figures
            warm = [Planned(i * 100_000, k, task_inputs(k, size, rng), priority=1)
                    for i, (k, size) in enumerate([("vector_add", 256), ("vector_add", 1024), ("matmul", 1024),
                                                   ("fft", 1024), ("fft", 4096)] * max(1, warm_tasks // 5))]
            run_open_loop(cfg.ingest, warm, timeout_s=10.0, id_prefix="warm_")
        results["scenarios"] = run_scenarios(cfg.ingest, rng, repeat)
        results["stream"] = run_stream(cfg.ingest, rng, stream_seconds, rate)
    finally:
        results["server_exit_code"] = stop_server(proc)
    return results


COLUMNS = ("tasks", "misses", "miss %", "mean µs", "p50 µs", "p95 µs", "p99 µs", "max µs", "tasks/s", "lost",
           "wrong")


def _cells(name: str, s: dict) -> list:
    nan = float("nan")
    return [name, s["tasks"], s["misses"], f"{s['miss_pct']:.2f}", f"{s.get('mean', nan):.1f}",
            f"{s.get('p50', nan):.1f}", f"{s.get('p95', nan):.1f}", f"{s.get('p99', nan):.1f}",
            f"{s.get('max', nan):.1f}", f"{s['throughput']:.0f}", s["lost"], s["wrong_outputs"]]


def table(results: dict) -> str:
    lines = [f"# The seed's scenarios through zmqrt: {results['card']}", "",
             "Producer round trip from the intended send time, µs. Miss: not finished in time (late, expired, "
             "rejected, failed or lost).", "", md_row(["scenario", *COLUMNS]), md_row(["---"] * (len(COLUMNS) + 1))]
    for name, s in results["scenarios"].items():
        lines.append(md_row(_cells(name, s)))
    st = results["stream"]
    lines.append(md_row(_cells(f"stream {results['stream_rate_hz'] / 1e3:.0f} kHz (all)", st)))
    for name, s in st["by_kernel"].items():
        lines.append(md_row(_cells(f"stream: {name}", s)))
    lines += ["", "Target (issue 4): no misses at the stream's most urgent priority, under 0.1% overall.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stream-seconds", type=float, default=5.0, help="length of the 10 kHz stream (default 5)")
    ap.add_argument("--rate", type=float, default=10_000.0, help="stream rate in Hz (default 10000)")
    ap.add_argument("--repeat", type=int, default=1, help="run each scenario's task count this many times over")
    ap.add_argument("--lanes", type=int, default=4)
    ap.add_argument("--warm-tasks", type=int, default=2000, help="warm-up tasks before the measured runs")
    ap.add_argument("--backend", default="cuda", choices=["cuda", "cpu"], help="server backend (cpu: smoke test)")
    args = ap.parse_args()
    results = measure(args.stream_seconds, args.rate, args.repeat, args.lanes, args.warm_tasks, args.backend)
    from zmqrt.demo import format_table

    rows = [*results["scenarios"].items(), ("stream (all)", results["stream"])]
    print(format_table([(name, {**s, "misses": s["misses"], "ok": s["tasks"]}) for name, s in rows]))
    print("(misses above: every task not finished in time; % of all tasks)")
    print(f"wrote {write_results('seed_scenarios', results, table(results))}")


if __name__ == "__main__":
    main()
