"""``zmqrt demo``: the seed tutorial's demonstration, run for real through a zmqrt server on this machine.

It starts a server (CUDA when a device answers, otherwise the CPU backend, said in one line), then:
1. a single ``vector_add`` task of 1 KiB, checked against numpy;
2. the 10 kHz stream of mixed ``vector_add`` (priority 1, 50 µs deadline), ``matmul`` (priority 2, 100 µs)
   and ``fft`` (priority 1, 75 µs), deadlines counted from the server's receipt;
3. the seed's three benchmark scenarios (High Frequency Small, Medium Frequency Medium, Low Frequency
   Large; 500 µs deadlines), and the seed's table at the end.
Latency is the producer's round trip, measured from each task's intended send time.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import tempfile
import time
from dataclasses import dataclass

import numpy as np

from ingest.openloop import Planned, Record, run_open_loop

from .config import ServerConfig

log = logging.getLogger("zmqrt")


@dataclass(frozen=True)
class Scenario:
    name: str
    count: int
    task_bytes: int
    interval_us: float
    kernel: str


SCENARIOS = (
    Scenario("High Frequency Small", 1000, 256, 10.0, "vector_add"),
    Scenario("Medium Frequency Medium", 500, 1024, 50.0, "matmul"),
    Scenario("Low Frequency Large", 100, 4096, 200.0, "fft"),
)

STREAM_MIX = (  # the seed's generateTaskStream: (kernel, priority, deadline)
    ("vector_add", 1, 50.0),
    ("matmul", 2, 100.0),
    ("fft", 1, 75.0),
)


def stream_plan(n: int, period_ns: int, rng: np.random.Generator
                ) -> tuple[list[Planned], list[str], dict[int, list[np.ndarray]]]:
    """The seed's stream: ``n`` tasks cycling through STREAM_MIX every ``period_ns``, 1 KiB inputs from a pool of
    16 per kernel. Returns (plan, kernel per task, inputs of every 97th task to check against numpy)."""
    plan, kernels, kept = [], [], {}
    pools = {k: [task_inputs(k, 1024, rng) for _ in range(16)] for k, _, _ in STREAM_MIX}
    for i in range(n):
        kernel, prio, dl = STREAM_MIX[i % 3]
        ins = pools[kernel][i % 16]
        plan.append(Planned(i * period_ns, kernel, ins, priority=prio, deadline_us=dl, tag=kernel))
        kernels.append(kernel)
        if i % 97 == 0:
            kept[i] = ins
    return plan, kernels, kept


def task_inputs(kernel: str, task_bytes: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Inputs of about ``task_bytes`` per input array, as the seed's AllocPinned(taskSize)."""
    if kernel == "vector_add":
        n = max(1, task_bytes // 4)
        return [rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)]
    if kernel == "matmul":
        side = max(1, int(np.sqrt(task_bytes // 4)))
        return [rng.standard_normal((side, side)).astype(np.float32),
                rng.standard_normal((side, side)).astype(np.float32)]
    if kernel == "fft":
        n = 1 << max(1, (task_bytes // 8).bit_length() - 1)
        return [(rng.standard_normal(n) + 1j * rng.standard_normal(n)).astype(np.complex64)]
    raise ValueError(kernel)


def reference(kernel: str, inputs: list[np.ndarray]) -> np.ndarray:
    if kernel == "vector_add":
        return inputs[0] + inputs[1]
    if kernel == "matmul":
        return (inputs[0].astype(np.float64) @ inputs[1].astype(np.float64)).astype(np.float32)
    return np.fft.fft(inputs[0]).astype(np.complex64)


def _serve(cfg: ServerConfig, ready, log_level: int) -> None:
    logging.basicConfig(level=log_level, format="  [server] %(message)s")
    from .server import Server

    server = Server(cfg)
    for line in server.describe():
        log.info("%s", line)
    ready.set()
    server.install_signal_handlers()
    profile_path = os.environ.get("ZMQRT_PROFILE")
    if not profile_path:
        server.serve_forever()
        return
    # Diagnostics for benchmarks: where the serving process spends its time, written at shutdown.
    import cProfile
    import io
    import pstats

    prof = cProfile.Profile()
    prof.runcall(server.serve_forever)
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(30)
    with open(profile_path, "w") as f:
        f.write(buf.getvalue())


def start_server(cfg: ServerConfig, log_level: int = logging.INFO, timeout_s: float = 120.0):
    """Start a server in a spawned child (fork after cuInit breaks CUDA); return the process once it serves."""
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=_serve, args=(cfg, ready, log_level), daemon=True)
    proc.start()
    t0 = time.monotonic()
    while not ready.wait(0.1):
        if not proc.is_alive():
            raise RuntimeError(f"server exited during startup (exit code {proc.exitcode})")
        if time.monotonic() - t0 > timeout_s:
            proc.terminate()
            raise RuntimeError("server did not start in time")
    return proc


def stop_server(proc) -> int:
    if proc.is_alive():
        proc.terminate()  # SIGTERM: the server drains and exits 0
    proc.join(15)
    if proc.is_alive():
        proc.kill()
        proc.join()
    return proc.exitcode


def summarize(records: list[Record], wall_s: float) -> dict:
    ok = [r for r in records if r.status == "ok"]
    lat_us = np.array([r.latency_ns for r in ok], dtype=np.float64) / 1e3
    misses = sum(r.missed_deadline for r in ok)
    out = {
        "tasks": len(records),
        "ok": len(ok),
        "rejected": sum(r.status == "rejected" for r in records),
        "expired": sum(r.status == "expired" for r in records),
        "errors": sum(r.status == "error" for r in records),
        "lost": sum(r.status == "lost" for r in records),
        "misses": misses,
        "throughput": len(ok) / wall_s if wall_s > 0 else 0.0,
    }
    if len(lat_us):
        out.update(mean=float(lat_us.mean()), p50=float(np.percentile(lat_us, 50)),
                   p95=float(np.percentile(lat_us, 95)), p99=float(np.percentile(lat_us, 99)),
                   max=float(lat_us.max()))
        service = np.array([r.server_latency_us.get("service", np.nan) for r in ok], dtype=np.float64)
        out["server_service_p50"] = float(np.nanpercentile(service, 50))
        out["server_service_p99"] = float(np.nanpercentile(service, 99))
    return out


def tolerance(kernel: str, want: np.ndarray) -> tuple[float, float]:
    """(rtol, atol) for a kernel's output against ``reference``: float32 rounding, and the fft's error grows
    with the size of its output."""
    return (1e-5, 1e-4) if kernel != "fft" else (1e-4, 1e-3 * float(np.abs(want).max() + 1))


def check_outputs(records: list[Record], inputs_by_index: dict[int, list[np.ndarray]], kernels: list[str]) -> int:
    """Compare every kept output with numpy; return the number checked (raises on a mismatch)."""
    checked = 0
    for idx, inputs in inputs_by_index.items():
        rec = records[idx]
        if rec.status != "ok" or rec.outputs is None:
            continue
        want = reference(kernels[idx], inputs)
        rtol, atol = tolerance(kernels[idx], want)
        np.testing.assert_allclose(rec.outputs[0], want, rtol=rtol, atol=atol,
                                   err_msg=f"{kernels[idx]} task {idx}")
        checked += 1
    return checked


def run_demo(backend: str = "auto", stream_s: float = 2.0, rate_hz: float = 10_000.0, lanes: int = 4,
             out=print) -> dict:
    rng = np.random.default_rng()
    tmp = tempfile.mkdtemp(prefix="zmqrt-demo-")
    cfg = ServerConfig(backend=backend, ingest=f"ipc://{os.path.join(tmp, 'ingest')}", lanes=lanes,
                       stats=f"ipc://{os.path.join(tmp, 'stats')}", admission="flag", expire="late",
                       monitor_interval_s=1.0)
    out("⚡ zmqrt demo: starting a server")
    proc = start_server(cfg)
    report: dict = {}
    try:
        out("\n🎯 Single Task Processing:")
        inputs = task_inputs("vector_add", 1024, rng)
        recs = run_open_loop(cfg.ingest, [Planned(0, "vector_add", inputs, priority=1, deadline_us=1000.0)],
                             keep_outputs=lambda i: True, timeout_s=10.0, id_prefix="test_vector_add_")
        r = recs[0]
        success = r.status == "ok" and r.outputs is not None and np.allclose(r.outputs[0], inputs[0] + inputs[1])
        out(f"   Task test_vector_add completed: Success={success}, Latency={r.latency_ns / 1e3:.1f}μs "
            f"(server: queue {r.server_latency_us.get('queue', 0):.1f}, h2d {r.server_latency_us.get('h2d', 0):.1f}, "
            f"kernel {r.server_latency_us.get('kernel', 0):.1f}, d2h {r.server_latency_us.get('d2h', 0):.1f}, "
            f"service to done {r.server_latency_us.get('service', 0):.1f} μs)")
        if r.missed_deadline:
            out("   ⚠️ Deadline missed!")
        if not success:
            raise RuntimeError(f"single task failed: {r.status} {r.code} {r.message}")
        report["single"] = {"latency_us": r.latency_ns / 1e3, "server_latency_us": r.server_latency_us}

        out(f"\n🌊 Streaming Processing: {rate_hz / 1e3:.0f} kHz for {stream_s:.1f} s, mixed "
            "vector_add (50 μs) / matmul (100 μs) / fft (75 μs), deadlines from receipt")
        n = int(stream_s * rate_hz)
        period_ns = int(1e9 / rate_hz)
        plan, kernels, kept = stream_plan(n, period_ns, rng)

        def progress(done: int, total: int) -> None:
            if done and done // 5000 != progress.last // 5000:
                out(f"   Processed {done} tasks...")
            progress.last = done

        progress.last = 0
        t0 = time.perf_counter()
        recs = run_open_loop(cfg.ingest, plan, keep_outputs=lambda i: i in kept, progress=progress,
                             id_prefix="stream_")
        wall = time.perf_counter() - t0
        nchecked = check_outputs(recs, kept, kernels)
        s = summarize(recs, wall)
        report["stream"] = s
        out(f"   Processed {s['ok']} tasks, {s['misses']} deadline misses "
            f"(rejected {s['rejected']}, expired {s['expired']}, errors {s['errors']}, lost {s['lost']})")
        if s["ok"]:
            out(f"   Average latency: {s['mean']:.1f}μs  (p50 {s['p50']:.1f}, p99 {s['p99']:.1f}; server receipt to "
                f"done p50 {s['server_service_p50']:.1f}, p99 {s['server_service_p99']:.1f} μs); "
                f"{nchecked} outputs checked against numpy")

        out("\n📊 Latency Benchmarking:")
        rows = []
        for sc in SCENARIOS:
            out(f"\n  Testing: {sc.name}")
            pool = [task_inputs(sc.kernel, sc.task_bytes, rng) for _ in range(16)]
            plan = [Planned(int(i * sc.interval_us * 1000), sc.kernel, pool[i % 16], priority=1, deadline_us=500.0,
                            tag=sc.name) for i in range(sc.count)]
            kept = {i: pool[i % 16] for i in range(0, sc.count, 10)}
            t0 = time.perf_counter()
            recs = run_open_loop(cfg.ingest, plan, keep_outputs=lambda i, kept=kept: i in kept,
                                 id_prefix=f"bench_{sc.kernel}_")
            wall = time.perf_counter() - t0
            check_outputs(recs, kept, [sc.kernel] * sc.count)
            s = summarize(recs, wall)
            rows.append((sc.name, s))
            pct = 100.0 * s["misses"] / max(1, s["ok"])
            out(f"    Tasks: {s['tasks']}, Deadline Misses: {s['misses']} ({pct:.1f}%)")
            if s["ok"]:
                out(f"    Latency - Mean: {s['mean']:.1f}μs, P50: {s['p50']:.1f}μs, P95: {s['p95']:.1f}μs, "
                    f"P99: {s['p99']:.1f}μs, Max: {s['max']:.1f}μs")
            out(f"    Throughput: {s['throughput']:.0f} tasks/sec")
        report["scenarios"] = {name: s for name, s in rows}
        out("\n" + format_table(rows))
    finally:
        code = stop_server(proc)
        out(f"\nserver stopped (exit code {code})")
        report["server_exit_code"] = code
    return report


def format_table(rows: list[tuple[str, dict]]) -> str:
    head = (f"{'Scenario':<26}{'Tasks':>7}{'Misses':>8}{'Miss %':>8}{'Mean µs':>10}{'P50 µs':>9}{'P95 µs':>9}"
            f"{'P99 µs':>9}{'Max µs':>10}{'Tasks/s':>10}{'Lost':>6}")
    lines = [head, "-" * len(head)]
    for name, s in rows:
        pct = 100.0 * s["misses"] / max(1, s["ok"])
        lines.append(f"{name:<26}{s['tasks']:>7}{s['misses']:>8}{pct:>8.1f}{s.get('mean', float('nan')):>10.1f}"
                     f"{s.get('p50', float('nan')):>9.1f}{s.get('p95', float('nan')):>9.1f}"
                     f"{s.get('p99', float('nan')):>9.1f}{s.get('max', float('nan')):>10.1f}"
                     f"{s['throughput']:>10.0f}{s['lost']:>6}")
    return "\n".join(lines)
