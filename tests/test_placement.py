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
