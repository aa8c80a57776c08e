"""Loop placement: the loop's CPU is cleared of the process's other threads. Run in a child process, so the
affinity changes never leak into the test session."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                                reason="needs Linux CPU affinity and at least 2 CPUs")

CHILD = textwrap.dedent("""
    import os, threading, time, json
    from zmqrt.placement import other_threads, pin_loop
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)  # stands in for ZeroMQ's I/O thread
    worker.start()
    allowed = sorted(os.sched_getaffinity(0))
    cpu = allowed[-1]
    lines = pin_loop(cpu)
    out = {"cpu": cpu, "allowed": allowed, "lines": lines, "me": sorted(os.sched_getaffinity(0)),
           "others": [sorted(os.sched_getaffinity(t)) for t in other_threads()]}
    stop.set(); worker.join()
    print(json.dumps(out))
""")


def _run_child(code: str) -> dict:
    """Run ``code`` in a fresh interpreter (affinity changes stay there); its last stdout line, as JSON."""
    import json

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": root})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_pin_loop_clears_the_loop_cpu_of_other_threads():
    out = _run_child(CHILD)
    assert out["me"] == [out["cpu"]]
    assert out["others"] and all(out["cpu"] not in cpus and cpus for cpus in out["others"])
    assert out["lines"][0] == f"loop thread pinned to CPU {out['cpu']}" and "moved" in out["lines"][1]


def test_pin_loop_without_a_cpu_does_nothing():
    from zmqrt.placement import pin_loop

    assert pin_loop(None, 0) == []


CHILD_KEEP_OFF = textwrap.dedent("""
    import os, threading, json
    from zmqrt.placement import other_threads, pin_loop
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    allowed = sorted(os.sched_getaffinity(0))
    cpu, sibling_loop = allowed[-1], allowed[-2]
    lines = pin_loop(cpu, 0, keep_off=[sibling_loop])
    out = {"cpu": cpu, "off": sibling_loop, "others": [sorted(os.sched_getaffinity(t)) for t in other_threads()]}
    stop.set(); worker.join()
    print(json.dumps(out))
""")


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 3 if hasattr(os, "sched_getaffinity") else True,
                    reason="needs 3 CPUs: the loop's, a sibling engine's, and one for the other threads")
def test_other_threads_stay_off_sibling_engines_loop_cpus():
    out = _run_child(CHILD_KEEP_OFF)
    assert out["others"] and all(out["cpu"] not in c and out["off"] not in c and c for c in out["others"])


def test_thread_siblings_include_the_cpu_itself():
    from zmqrt.placement import thread_siblings

    cpu = sorted(os.sched_getaffinity(0))[0]
    assert cpu in thread_siblings(cpu)
    assert thread_siblings(10_000) == {10_000}  # no such CPU in sysfs: itself only


def test_engines_get_one_loop_cpu_each():
    from zmqrt.supervisor import engine_cpus

    assert engine_cpus(4, 3) == (4, 5, 6)
    assert engine_cpus(None, 3) == ()


def test_parse_cpulist():
    from zmqrt.placement import parse_cpulist

    assert parse_cpulist("0-3,8,10-11\n") == {0, 1, 2, 3, 8, 10, 11}
    assert parse_cpulist("") == set()


def _fake_pci(tmp_path, bus: str, cpulist: str, node: str):
    dev = tmp_path / "bus" / "pci" / "devices" / bus
    dev.mkdir(parents=True)
    (dev / "local_cpulist").write_text(cpulist + "\n")
    (dev / "numa_node").write_text(node + "\n")


def test_gpu_local_cpus_from_sysfs(tmp_path):
    from zmqrt.placement import gpu_local_cpus

    _fake_pci(tmp_path, "0000:1a:00.0", "16-31", "1")
    _fake_pci(tmp_path, "0000:00:06.0", "0-31", "-1")  # no NUMA affinity (a VM): says nothing
    # cuDeviceGetPCIBusId's spelling, nvidia-smi's 8-digit domain and none at all find the same device
    for bus in ("0000:1A:00.0", "00000000:1A:00.0", "1A:00.0"):
        assert gpu_local_cpus(bus, sysfs=str(tmp_path)) == set(range(16, 32))
    assert gpu_local_cpus("0000:00:06.0", sysfs=str(tmp_path)) == set()
    assert gpu_local_cpus("0000:99:00.0", sysfs=str(tmp_path)) == set()  # no such device


def test_cpu_plan_prefers_the_gpu_node_and_takes_an_explicit_loop_cpu():
    from bench._common import cpu_plan

    avail = list(range(1000, 1008))  # no sysfs entry for these: no siblings known
    plan = cpu_plan(near={1000, 1001, 1002, 1003}, avail=avail)
    assert plan == {"loop": 1003, "server": {1003, 1002}, "producer": {1000, 1001, 1004, 1005, 1006, 1007}}
    plan = cpu_plan(loop=1005, avail=avail)
    assert plan["loop"] == 1005 and plan["server"] == {1005, 1006} and 1005 not in plan["producer"]
    assert cpu_plan(avail=avail)["loop"] == 1007  # nothing known: the highest CPU, as before
    assert cpu_plan(loop=5000, avail=avail)["loop"] == 1007  # not one of ours: ignored
    assert cpu_plan(avail=avail[:3]) is None  # too few CPUs to keep the producer apart


def test_thread_cpu_time_and_report():
    import threading
    import time

    from zmqrt.placement import thread_cpu_ms, thread_report

    if not os.path.isdir("/proc/self/task"):
        pytest.skip("needs /proc")
    ready, stop = threading.Event(), threading.Event()
    tid = []

    def burn():
        tid.append(threading.get_native_id())
        ready.set()
        t_end = time.perf_counter() + 0.3
        while time.perf_counter() < t_end:
            pass
        stop.wait()

    worker = threading.Thread(target=burn)
    worker.start()
    ready.wait()
    before = thread_cpu_ms()[tid[0]][1]
    time.sleep(0.4)
    try:
        assert thread_cpu_ms()[tid[0]][1] - before >= 100  # it spun most of 0.3 s
        assert any(line.startswith(f"thread {tid[0]} ") and "ms CPU" in line for line in thread_report())
    finally:
        stop.set()
        worker.join()
