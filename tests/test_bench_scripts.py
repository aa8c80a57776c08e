"""The bench scripts on CPU: every script's ``--help`` works, and run_all's merged report is computed correctly."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ["floors", "peers", "seed_scenarios", "run_all", "executor_floor", "roundtrip", "stream", "sched_overhead",
           "persistent_floor", "resident_probe", "tail_analysis", "batch_trace", "scaleout", "relay_engine",
           "bulk_profile", "restart_time", "smt_probe", "paired", "task_path", "idle_wake", "keep_awake"]


@pytest.mark.parametrize("name", SCRIPTS)
def test_help(name):
    proc = subprocess.run([sys.executable, f"bench/{name}.py", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout.lower()


def _pair(p50, p99, **extra):
    return {"p50": p50, "p99": p99, "p95": p99, "p999": p99, "max": p99, "mean": p50, "n": 100, **extra}


def fake_merged() -> dict:
    def ok(result):
        return {"status": "ok", "seconds": 1.0, "result": {"card": "NVIDIA H100 80GB HBM3", **result}}

    return {
        "card": "NVIDIA H100 80GB HBM3",
        "date": "2025-01-02",
        "quick": True,
        "benchmarks": {
            "executor_floor": ok({"roundtrip_us": {"bare (3 driver calls + sync)": _pair(10.0, 20.0),
                                                   "executor (untimed) + spec.check": _pair(12.0, 30.0)},
                                  "warm_start": {"total_ms": 50.0}}),
            "floors": ok({"driver_us": {"1 KiB H2D+vadd+D2H + sync": _pair(8.0, 16.0),
                                        "1 KiB graph(H2D+vadd+D2H) + sync": _pair(6.0, 12.0)}}),
            "peers": ok({"paths_us": {"zmqrt": _pair(10.0, 20.0), "torch": _pair(30.0, 50.0)},
                         "skipped": {"cupy": "ModuleNotFoundError: No module named 'cupy'"}}),
            "roundtrip": ok({"paths": {
                "zmq echo [block]": {"roundtrip_us": _pair(20.0, 40.0, lost=0), "server_side_us": _pair(3.0, 5.0)},
                "prototype [block]": {"roundtrip_us": _pair(40.0, 80.0, lost=0), "server_side_us": _pair(15.0, 30.0)},
                "prototype resident [block]": {"roundtrip_us": _pair(35.0, 70.0, lost=0),
                                               "server_side_us": _pair(12.0, 24.0)},
                "zmqrt [block]": {"roundtrip_us": _pair(50.0, 100.0, lost=2), "server_side_us": _pair(18.0, 36.0)},
            }}),
            "stream": ok({"overall": {"lost": 1, "misses": 3, "miss_pct": 0.003}}),
            "seed_scenarios": ok({"scenarios": {"High Frequency Small": {"tasks": 1000, "misses": 0, "miss_pct": 0.0,
                                                                         "lost": 0, "p50": 30.0, "throughput": 9e4}},
                                  "stream": {"tasks": 10, "misses": 0, "lost": 4}}),
            "sched_overhead": ok({"policies": {"edf": {"added_p50_us": 1.5}}}),
            "throughput": ok({"throughput_tasks_per_s": 45000.0, "counts": {"lost": 0}}),
            "call_costs": {"status": "failed", "seconds": 0.1, "error": "exit code 1: boom\nlast line"},
        },
    }


def test_comparisons_ratios():
    from bench.run_all import comparisons

    rows = {c["comparison"]: c for c in comparisons(fake_merged())}
    same = rows["executor vs bare driver 1 KiB + sync (same run)"]
    assert same["kind"] == "slowdown"
    assert same["ratio"] == pytest.approx({"p50": 1.2, "p99": 1.5})
    assert same["met"] is True  # 1.2 <= 1.2
    assert rows["executor vs CUDA graph 1 KiB + sync (floors.py)"]["ratio"]["p50"] == pytest.approx(2.0)
    assert "met" not in rows["executor vs CUDA graph 1 KiB + sync (floors.py)"]  # no target
    torch = rows["executor vs PyTorch (peers.py, same run)"]
    assert torch["kind"] == "speedup"
    assert torch["ratio"] == pytest.approx({"p50": 3.0, "p99": 2.5})
    assert torch["met"] is True  # 3x >= 2x
    assert "ratio" not in rows["executor vs CuPy (peers.py, same run)"]  # skipped peer: no ratio, no verdict
    rt = rows["round trip vs prototype [block]"]
    assert rt["ratio"] == pytest.approx({"p50": 1.25, "p99": 1.25})
    assert rt["met"] is False  # 1.25 > 1.1
    assert rows["service vs prototype server side [block]"]["ratio"]["p50"] == pytest.approx(1.2)
    assert rows["round trip vs bare ZeroMQ echo [block]"]["ratio"]["p50"] == pytest.approx(2.5)
    resident = rows["service vs resident prototype server side [block]"]
    assert resident["ratio"] == pytest.approx({"p50": 1.5, "p99": 1.5})
    assert "met" not in resident  # a floor to read zmqrt's own work against, no target
    assert not any("[spin]" in k for k in rows)  # no spin mode in the results, no spin rows


def test_latest_keys_and_values():
    from bench.run_all import latest

    lt = latest(fake_merged())
    for key in ("card", "service_us", "roundtrip_us", "prototype_roundtrip_us", "throughput_tasks_per_s", "lost"):
        assert key in lt
    assert lt["card"] == "NVIDIA H100 80GB HBM3"
    assert lt["service_us"] == {"p50": 18.0, "p99": 36.0}
    assert lt["roundtrip_us"] == {"p50": 50.0, "p99": 100.0}
    assert lt["prototype_roundtrip_us"] == {"p50": 40.0, "p99": 80.0}
    assert lt["throughput_tasks_per_s"] == 45000.0
    assert lt["lost"] == 2 + 1 + 0 + 4 + 0  # roundtrip zmqrt, stream, seed scenario, seed stream, throughput
    assert lt["failed"] == ["call_costs"]
    assert lt["ratios"]["executor vs PyTorch (peers.py, same run)"]["p50"] == pytest.approx(3.0)


def test_latest_takes_the_several_engine_run_as_the_throughput():
    from bench.run_all import latest, report_md

    merged = fake_merged()
    merged["benchmarks"]["throughput_engines"] = {"status": "ok", "seconds": 30.0, "result": {
        "card": "NVIDIA H100 80GB HBM3", "rate_hz": 220000.0, "mps": True, "configs": {"0,0,0": {
            "devices": [0, 0, 0], "sent_tasks_per_s": 219990.0, "throughput_tasks_per_s": 219980.0,
            "counts": {"lost": 3}, "latency_us": _pair(500.0, 1800.0),
            "roundtrip_from_actual_send_us": _pair(490.0, 1700.0), "engine_service_to_sent_us": _pair(250.0, 650.0)}}}}
    lt = latest(merged)
    assert lt["throughput_tasks_per_s"] == 219980.0 and lt["throughput_source"] == "throughput_engines"
    assert lt["throughput_one_engine_tasks_per_s"] == 45000.0
    eng = lt["throughput_engines"]
    assert eng["engines"] == 3 and eng["mps"] is True and eng["lost"] == 3
    assert eng["latency_from_intended_send_us"] == {"p50": 500.0, "p99": 1800.0}
    assert lt["lost_by_run"]["throughput_engines 0,0,0"] == 3 and lt["lost"] == 7 + 3
    md = report_md(merged)
    assert "3 engines on GPU 0 (MPS, 220,000/s offered)" in md and "219,980 (lost 3); 500 / 1,800; 650" in md


def test_latest_with_everything_missing():
    from bench.run_all import latest, report_md

    merged = {"card": "no-gpu", "date": "2025-01-02", "benchmarks": {"roundtrip": {"status": "failed", "error": "x"}}}
    lt = latest(merged)
    assert lt["service_us"] is None and lt["roundtrip_us"] is None and lt["throughput_tasks_per_s"] is None
    assert lt["lost"] is None and lt["failed"] == ["roundtrip"]
    assert "Failed: roundtrip" in report_md(merged)


def test_write_report(tmp_path, monkeypatch):
    from bench.run_all import write_report

    monkeypatch.delenv("OUT", raising=False)
    paths = write_report(fake_merged(), tmp_path)
    assert paths["json"].name == "H100-2025-01-02.json"
    assert paths["md"].name == "H100-2025-01-02.md"
    assert json.loads(paths["json"].read_text())["benchmarks"]["throughput"]["status"] == "ok"
    lt = json.loads((tmp_path / "latest.json").read_text())
    assert lt["service_us"]["p50"] == 18.0
    md = paths["md"].read_text()
    assert "| executor vs PyTorch (peers.py, same run) | 10.00 | 20.00 | 30.00 | 50.00 | 3.00 | 2.50 | >= 2x | yes |" \
        in md
    assert "| round trip vs prototype [block] | 50.00 | 100.00 | 40.00 | 80.00 | 1.25 | 1.25 | <= 1.1x | NO |" in md
    assert "peer cupy skipped" in md
    assert "Failed: call_costs" in md
    assert "High Frequency Small" in md


def test_roundtrip_measures_service_to_the_send_on_the_measured_tasks_only():
    from bench.roundtrip import WARM_PRIORITY, plan, receipt_to_sent

    tasks, _ = plan(10, 10_000.0, 500.0, np.random.default_rng(0), warm=3)
    assert [t.priority for t in tasks] == [WARM_PRIORITY] * 3 + [0] * 7 and WARM_PRIORITY != 0
    hist = {"count": 7, "p50_ns": 21_000, "p95_ns": 25_000, "p99_ns": 30_000, "p99_9_ns": 40_000,
            "max_ns": 50_000, "mean_ns": 22_000.0}
    snap = {"histograms": [{"kernel": "vector_add", "priority": WARM_PRIORITY, "stage": "service", **hist,
                            "count": 3, "p50_ns": 90_000},
                           {"kernel": "vector_add", "priority": 0, "stage": "queue", **hist, "p50_ns": 1_000},
                           {"kernel": "vector_add", "priority": 0, "stage": "service", **hist}]}
    got = receipt_to_sent(snap)
    assert got == {"n": 7, "p50": 21.0, "p95": 25.0, "p99": 30.0, "p999": 40.0, "max": 50.0, "mean": 22.0}
    assert receipt_to_sent({"histograms": []}) == {} and receipt_to_sent({}) == {}


def test_roundtrip_repeats_merge_to_medians_and_segments_line_up():
    from types import SimpleNamespace

    from bench.roundtrip import merge_repeats, segments

    rows = [({"p50": 100.0, "p99": 200.0, "lost": 0, "n": 10}, {"p50": 40.0, "p99": 70.0}),
            ({"p50": 90.0, "p99": 400.0, "lost": 1, "n": 10}, {"p50": 30.0, "p99": 60.0}),
            ({"p50": 120.0, "p99": 180.0, "lost": 0, "n": 10}, {"p50": 50.0, "p99": 90.0})]
    merged = merge_repeats(rows)
    assert merged["roundtrip_us"]["p50"] == 100.0 and merged["roundtrip_us"]["p99"] == 200.0
    assert merged["roundtrip_us"]["lost"] == 1 and merged["roundtrip_us"]["n"] == 30
    assert merged["server_side_us"]["p50"] == 40.0 and len(merged["server_side_us"]["repeats"]) == 3
    assert merge_repeats(rows[:1]) == {"roundtrip_us": rows[0][0], "server_side_us": rows[0][1]}

    def rec(intended, sent, done, status="ok"):
        return SimpleNamespace(intended_ns=intended, sent_ns=sent, done_ns=done, status=status)

    # Task 0: sent 1000, received by the server at 1500, result sent at 4000, back at 4600. Task 1 is sent at
    # 3000, while the server still serves task 0 (not "idle"); task 2 is sent at 9000, after task 1's result.
    body = [rec(900, 1000, 4600), rec(3000, 3000, 8000), rec(9000, 9100, 12000)]
    stamps = [(1500, 4000), (4100, 7000), (9400, 11000)]
    seg = segments(body, stamps)
    assert seg["lag"]["max"] == 0.1 and seg["inbound"]["max"] == 1.1
    assert seg["inbound_idle"]["n"] == 1 and seg["inbound_idle"]["p50"] == 0.3
    assert seg["server"]["p50"] == 2.5 and seg["outbound"]["max"] == 1.0


def test_persistent_floor_kernel_compiles_without_a_gpu():
    from bench.persistent_floor import SRC
    from zmqrt.compiler import compile_source

    images = compile_source(SRC, "resident.cu", "sm_90", want_cubin=False)
    assert b".entry resident_vadd" in images.ptx


def test_tail_analysis_finds_a_periodic_stall_and_a_ms_step(tmp_path):
    # A synthetic round-trip dump: 4000 tasks at 100 µs; every 53rd is 150 µs slow in "submitted" (a periodic
    # stall, as the GPU-timed task was), and any task whose span covers 250 µs after a ms boundary is 20 µs slower
    # in "decoded" (a host tick). The script must report roots 5.3 ms apart and a +20 µs step at 250 µs.
    from zmqrt.trace import STAGES

    n = 4000
    rng = np.random.default_rng(1)
    intended = 1_000_000_000 + np.arange(n, dtype=np.int64) * 100_000
    sent = intended + 5_000
    gaps = np.tile(np.array([10_000, 2_000, 0, 5_000, 8_000, 400, 4_000, 5_000], np.int64), (n, 1))
    gaps += rng.integers(0, 1_000, gaps.shape)
    recv = sent + 25_000
    covers = ((recv - 250_000) // 1_000_000 + 1) * 1_000_000 + 250_000 <= recv + gaps.sum(axis=1)
    gaps[covers, 0] += 20_000
    gaps[::53, 3] += 150_000
    rows = np.zeros((n, len(STAGES)), np.int64)
    rows[:, 0] = recv
    rows[:, 1:] = recv[:, None] + np.cumsum(gaps, axis=1)
    done = rows[:, -1] + 25_000
    producer = np.stack([intended, sent, done, np.ones(n), np.full(n, 30.0)], axis=1).astype(np.float64)
    np.save(tmp_path / "trace-block-1.npy", np.vstack([np.zeros((3, len(STAGES)), np.int64), rows]))
    np.save(tmp_path / "producer-block-1.npy", producer)
    out = subprocess.run([sys.executable, "bench/tail_analysis.py", str(tmp_path)], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "spacing ms p50 5.30" in out.stdout
    assert "covering 240 µs after a ms boundary" in out.stdout or "covering 220 µs" in out.stdout


def test_tail_analysis_says_when_there_is_nothing(tmp_path):
    out = subprocess.run([sys.executable, "bench/tail_analysis.py", str(tmp_path)], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and "no dumps" in out.stderr


def test_batch_trace_counts_slow_batches_per_second_and_leaves_out_the_warmup(tmp_path):
    # 3 s of batches of 10 tasks every 1 ms, 400 µs each; the first 0.2 s take 3 ms: the warm-up holds every slow one.
    from zmqrt.trace import BATCH_STAGES

    k = len(BATCH_STAGES)
    rows = np.zeros((3000, k + 2), np.int64)
    t0 = np.arange(3000, dtype=np.int64) * 1_000_000 + 10**9
    span = np.where(np.arange(3000) < 200, 3_000_000, 400_000)
    for j in range(k):
        rows[:, j] = t0 + span * j // (k - 1)
    rows[:, k] = 10
    path = tmp_path / "e.batches.npy"
    np.save(path, rows)
    out = subprocess.run([sys.executable, "bench/batch_trace.py", str(path)], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "per second: [200, 0, 0]" in out.stdout
    assert "after 1 s: p50 400 p99 400 p99.9 400 µs" in out.stdout


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs Linux CPU affinity and at least 2 CPUs")
def test_scaleout_keeps_the_producers_off_the_engines_cpus():
    # In a child process: the affinity change must not leak into the test session.
    code = textwrap.dedent("""
        import os, json, sys
        sys.path.insert(0, "bench")
        from scaleout import _keep_producers_off
        allowed = sorted(os.sched_getaffinity(0))
        engine = allowed[-1]
        before = _keep_producers_off((engine,))
        during = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, before)
        print(json.dumps({"engine": engine, "during": during, "after": sorted(os.sched_getaffinity(0)),
                          "allowed": allowed, "none": _keep_producers_off(())}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["engine"] not in out["during"] and out["during"]
    assert out["after"] == out["allowed"] and out["none"] is None


@pytest.mark.parametrize("fanout", ["proxy", "direct"])
def test_scaleout_runs_two_cpu_engines(tmp_path, fanout):
    """The benchmark end to end on the CPU backend: every task answered, both engines used, either way of fan-out."""
    proc = subprocess.run([sys.executable, "bench/scaleout.py", "--backend", "cpu", "--configs", "0,0", "--fanout",
                           fanout, "--seconds", "1", "--rate", "1000", "--processes", "2", "--batch-max", "16",
                           "--out", str(tmp_path / "sc")], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(next(tmp_path.glob("sc-*.json")).read_text())
    assert data["fanout"] == fanout
    run = data["configs"]["0,0"]
    assert run["counts"]["ok"] == 1000 and run["counts"]["lost"] == 0 and run["counts"]["mismatches"] == 0
    assert all(e["frames"] > 0 for e in run["engines"]), run["engines"]
    assert bool(run["fanout_threads_busy"]) == (fanout == "proxy")  # direct: no fan-out threads here
    assert len(run["producer_lag"]["per_producer"]) == 2 and run["producer_lag"]["p50_ms"] >= 0


def test_smt_probe_times_one_cpu_against_each_other():
    import os

    from bench.smt_probe import probe

    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs 2 CPUs")
    r = probe(cpus[-1], n=20_000, trials=1)
    assert sorted(os.sched_getaffinity(0)) == cpus  # pinned while it timed, and given its CPUs back
    assert r["target"] == cpus[-1] and r["alone_ms"] > 0 and r["alone_again_ms"] > 0
    assert set(r["slowdown"]) == {str(c) for c in cpus[:-1]}
    assert set(r["siblings"]) <= set(cpus[:-1])


def test_peers_against_the_resident_path_get_their_own_rows():
    from bench.peers import ratios, table
    from bench.run_all import comparisons

    merged = fake_merged()
    paths = {"zmqrt": _pair(20.0, 30.0), "zmqrt --resident": _pair(10.0, 15.0), "cupy": _pair(60.0, 90.0)}
    merged["benchmarks"]["peers"]["result"] = {"paths_us": paths, "skipped": {"torch": "no torch"}}
    rows = {c["comparison"]: c for c in comparisons(merged)}
    launched, resident = rows["executor vs CuPy (peers.py, same run)"], rows["executor --resident vs CuPy (peers.py, "
                                                                               "same run)"]
    assert launched["ratio"]["p50"] == pytest.approx(3.0) and launched["met"] is False
    assert resident["ratio"]["p50"] == pytest.approx(6.0) and resident["met"] is True
    assert "ratio" not in rows["executor --resident vs PyTorch (peers.py, same run)"]  # skipped peer
    res = ratios(paths, "zmqrt --resident")
    assert res["cupy"]["p50"] == pytest.approx(6.0) and "zmqrt --resident" not in res
    md = table({"card": "X", "paths_us": paths, "skipped": {}, "ratios_peer_over_zmqrt": ratios(paths),
                "ratios_peer_over_zmqrt_resident": res})
    assert "| cupy | 6.00 | 6.00 | >= 4x | yes |" in md


def test_steal_sampler_reads_proc_stat_and_lines_windows_up(tmp_path):
    from bench.steal import StealSampler, read_stat, steal_by_window

    stat = tmp_path / "stat"

    def write(steal0: int, steal1: int, total_each: int) -> None:
        # user nice system idle iowait irq softirq steal: the other fields fill each CPU's total
        rows = [(steal0, total_each), (steal1, total_each)]
        lines = [f"cpu {total_each * 2 - steal0 - steal1} 0 0 0 0 0 0 {steal0 + steal1} 0 0"]
        lines += [f"cpu{i} {t - s} 0 0 0 0 0 0 {s} 0 0" for i, (s, t) in enumerate(rows)]
        stat.write_text("\n".join(lines) + "\nintr 1 2 3\n")

    write(0, 0, 100)
    assert read_stat(str(stat)) == {"cpu": (0, 200), "cpu0": (0, 100), "cpu1": (0, 100)}
    assert read_stat(str(tmp_path / "missing")) == {}
    sampler = StealSampler(interval_s=60, path=str(stat))
    sampler.samples = [(0, read_stat(str(stat)))]
    write(0, 50, 200)  # first interval: CPU 1 lost half its time
    sampler.samples.append((100, read_stat(str(stat))))
    write(0, 50, 300)  # second interval: nothing stolen
    sampler.samples.append((200, read_stat(str(stat))))
    s = sampler.summary()
    assert s["per_cpu"] == {"cpu0": 0.0, "cpu1": 0.25} and s["all_cpus"] == 0.125
    assert s["intervals"] == [(0, 0.25, 0.5), (100, 0.0, 0.0)]
    by = steal_by_window(s, np.array([10, 150]), np.array([5000.0, 400.0]))
    assert by["steal_all_cpus_over"] == 0.25 and by["steal_worst_cpu_over"] == 0.5
    assert by["steal_all_cpus_under"] == 0.0 and by["windows_over"] == 1
    with StealSampler(interval_s=0.01, path=str(stat)) as live:
        time.sleep(0.05)
    live.stop()  # idempotent
    assert len(live.samples) >= 3


def _fake_control(tmp_path: Path, rc: int) -> Path:
    """A stand-in for nvidia-cuda-mps-control: logs its arguments, stdin and MPS variables, exits ``rc``."""
    exe = tmp_path / "bin" / "nvidia-cuda-mps-control"
    exe.parent.mkdir()
    exe.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        echo "args=$* pipe=$CUDA_MPS_PIPE_DIRECTORY visible=$CUDA_VISIBLE_DEVICES" >> {tmp_path}/calls.log
        [ $# -eq 0 ] && cat >> {tmp_path}/calls.log
        exit {rc}
        """))
    exe.chmod(0o755)
    return exe


def test_mps_starts_the_daemon_routes_the_children_and_stops_it(tmp_path, monkeypatch):
    import bench.mps as mps_mod

    _fake_control(tmp_path, 0)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_MPS_PIPE_DIRECTORY", raising=False)
    monkeypatch.setattr(mps_mod, "_START_S", 0.0)
    monkeypatch.setattr(mps_mod, "_STOP_S", 0.0)
    with mps_mod.mps([1, 0, 0]) as on:
        assert on is True
        pipe = os.environ["CUDA_MPS_PIPE_DIRECTORY"]  # what the engines spawned here inherit
        assert Path(pipe).is_dir()
    assert "CUDA_MPS_PIPE_DIRECTORY" not in os.environ and not Path(pipe).exists()
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert calls[0] == f"args=-d pipe={pipe} visible=0,1"  # the daemon sees the run's GPUs only
    assert calls[1].startswith("args= pipe=") and calls[2] == "quit"


@pytest.mark.parametrize("present", [False, True])
def test_mps_that_cannot_start_says_so_and_the_run_goes_on(tmp_path, monkeypatch, capsys, present):
    import bench.mps as mps_mod

    if present:
        _fake_control(tmp_path, 3)  # found, but -d fails
        monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    else:
        monkeypatch.setattr(mps_mod.shutil, "which", lambda name: None)
    monkeypatch.delenv("CUDA_MPS_PIPE_DIRECTORY", raising=False)
    with mps_mod.mps([0]) as on:
        assert on is False and "CUDA_MPS_PIPE_DIRECTORY" not in os.environ
    out = capsys.readouterr().out
    assert ("-d failed (3" if present else "not found") in out and "time-sliced" in out


def test_task_path_times_both_paths_against_the_floor():
    """``task_path.versus_floor``: both paths' stages are timed on every measured task (real ZeroMQ sends), and
    each stage is positive."""
    from bench.task_path import versus_floor

    got = versus_floor(blocks=1, block_n=60)
    for name in ("floor", "zmqrt"):
        for stage in ("before_gpu_us", "after_gpu_us"):
            assert got[name][stage]["n"] == 60 and got[name][stage]["p50"] > 0, (name, stage)


def test_keep_awake_runs_the_command_with_spinners_and_returns_its_status():
    proc = subprocess.run([sys.executable, "bench/keep_awake.py", "--cpus", "0", "--", sys.executable, "-c",
                           "import sys; sys.exit(3)"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert "spinners on CPUs [0]" in proc.stdout


def test_keep_awake_parses_cpu_lists():
    sys.path.insert(0, str(ROOT))
    from bench.keep_awake import parse_cpus

    assert parse_cpus("1-3,7") == [1, 2, 3, 7]
    assert parse_cpus("all") == sorted(os.sched_getaffinity(0))


def test_idle_wake_measures_each_stage_of_the_echo(tmp_path):
    proc = subprocess.run([sys.executable, "bench/idle_wake.py", "--n", "60", "--warm", "5", "--rounds", "1",
                           "--gaps-us", "0,50", "--modes", "spin", "--conditions", "none,one_cpu",
                           "--out-dir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(next(tmp_path.glob("idle_wake-*.json")).read_text())
    assert set(data["results"]) == {"none spin gap 0", "none spin gap 50", "one_cpu spin gap 0", "one_cpu spin gap 50"}
    for row in data["raw"].values():
        r = row[0]
        assert r["roundtrip"]["n"] == 60
        # task by task the echo's send lies inside its server side, and its receipt inside the round trip, so the
        # percentiles keep those orders: a stamp taken on the wrong side of a call breaks them
        assert r["send_call"]["p50"] > 0 and r["server_side"]["p50"] >= r["echo_send_call"]["p50"] > 0
        assert r["roundtrip"]["p50"] >= r["inbound"]["p50"]


@pytest.mark.parametrize("fanout", ["proxy", "direct"])
def test_roundtrip_devices_path_serves_through_several_engines_and_merges_their_service(fanout):
    """roundtrip.py --devices: zmqrt serve --devices in a spawned child, the load spread over its engines, and the
    service figure merged from every engine's histogram of the measured tasks (CPU backend, two engines)."""
    from types import SimpleNamespace

    from bench.roundtrip import run_zmqrt

    args = SimpleNamespace(backend="cpu", trace=False, plan=None, no_stats=False, free_loop=False, lanes=2,
                           stage_timing_every=0, fifo_priority=0, resident=False, idle_poll_us=None,
                           keep_warm_us=None, fanout=fanout, n=300, warm=60, rate=3000.0, deadline_us=50_000.0)
    row, srv = run_zmqrt(False, args, np.random.default_rng(1), devices=[0, 0])
    assert row["lost"] == 0 and row["not_ok"] == 0 and row["wrong_outputs"] == 0
    assert srv["measure"].startswith("receipt to sent") and srv["n"] == 300  # both engines' measured tasks only
    assert 0 < srv["p50"] <= srv["p99"]


def test_roundtrip_devices_cpus_end_at_the_loop_cpu_and_leave_the_producer_some():
    from bench.roundtrip import _devices, engines_cpus

    plan = {"loop": 31, "server": {31, 30}, "producer": set(range(30))}
    assert engines_cpus(plan, 2) == set(range(26, 32))
    assert engines_cpus({"loop": 5, "server": {5, 4}, "producer": {0, 1, 2, 3}}, 2) is None  # producer left 0 CPUs
    assert engines_cpus(None, 2) is None
    assert _devices("0,1") == [0, 1]
    for bad in ("0", "a,b", "0,-1"):
        with pytest.raises(argparse.ArgumentTypeError):
            _devices(bad)


def test_scaleout_keeps_every_run_of_a_repeated_config_and_pairs_each_with_the_first_before_it():
    sys.path.insert(0, str(ROOT / "bench"))
    from scaleout import _paired_speedups, _row_key

    rows: dict = {}
    for spec, thr in [("0", 100.0), ("0,1", 190.0), ("0", 80.0), ("0,1", 180.0)]:
        rows[_row_key(spec, rows)] = {"throughput_tasks_per_s": thr}
    assert list(rows) == ["0", "0,1", "0 #2", "0,1 #2"]
    _paired_speedups(rows, "0")
    assert [r["speedup_vs_first"] for r in rows.values()] == [1.0, 1.9, 1.0, 2.25]
