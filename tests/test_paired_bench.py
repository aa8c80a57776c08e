"""bench/paired.py on the CPU backend: an A/A run of this tree end to end, and its CPU plan on a made-up host."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_paired_runs_both_arms_at_once_on_the_cpu_backend(tmp_path):
    proc = subprocess.run([sys.executable, "bench/paired.py", "--a", ".", "--b", ".", "--backend", "cpu", "--rounds",
                           "2", "--n", "300", "--warm", "100", "--rate", "2000", "--out", "paired-test",
                           "--out-dir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(next(tmp_path.glob("paired-test-*.json")).read_text())
    assert next(tmp_path.glob("paired-test-*.md")).read_text().count("\n| ") >= 4  # header, rule, 2 rounds, median
    rounds = data["rounds"]
    assert len(rounds) == 2
    assert [r["slot0"] for r in rounds] == ["A", "B"]  # the placement swaps every round
    for r in rounds:
        for arm in ("A", "B"):
            a = r["arms"][arm]
            assert a["service_us"].get("p50", 0) > 0 and a["service_us"]["n"] == 300, (arm, a, proc.stdout)
            assert a["lost"] == 0 and a["wrong_outputs"] == 0 and a["not_ok"] == 0, a
            assert a["roundtrip_us"]["n"] == 300
        assert r["ratio_b_over_a"]["p50"] > 0
    assert data["summary"]["valid"] is True
    assert data["trees"]["A"]["code"] == data["trees"]["B"]["code"]
    assert "B/A service, median of 2 rounds" in proc.stdout


@pytest.fixture
def smt_host(monkeypatch):
    """16 CPUs, CPU c and c + 8 one core's two threads."""
    import bench.paired
    import zmqrt.placement

    def siblings(cpu: int) -> set[int]:
        return {cpu % 8, cpu % 8 + 8}

    monkeypatch.setattr(zmqrt.placement, "thread_siblings", siblings)
    monkeypatch.setattr(bench.paired, "thread_siblings", siblings)
    return siblings


def test_cpu_plan_keeps_every_core_to_one_role_and_near_its_gpu(smt_host):
    from bench.paired import plan_cpus

    near = ({0, 1, 2, 3, 8, 9, 10, 11}, {4, 5, 6, 7, 12, 13, 14, 15})
    slots = plan_cpus(near, list(range(16)))
    assert slots is not None
    roles = [set(s["server"]) for s in slots] + [set(s["producer"]) for s in slots]
    cores = [{c % 8 for c in cpus} for cpus in roles]
    for i, a in enumerate(cores):  # no two roles share a physical core
        assert all(not a & b for b in cores[i + 1:]), slots
    for s, slot in enumerate(slots):
        assert slot["loop"] in slot["server"] and set(slot["server"]) | set(slot["producer"]) <= near[s], slots


def test_cpu_plan_without_numa_info_splits_evenly_and_gives_up_on_a_small_host(smt_host):
    from bench.paired import plan_cpus, sign_test_p, slot_order

    slots = plan_cpus((set(), set()), list(range(16)))
    assert slots is not None and len(slots[0]["producer"]) == len(slots[1]["producer"]) == 4
    assert plan_cpus((set(), set()), list(range(6))) is None
    assert [slot_order(k) for k in range(3)] == [("A", "B"), ("B", "A"), ("A", "B")]
    assert sign_test_p(6, 6) == pytest.approx(2 / 64) and sign_test_p(3, 6) == 1.0


def test_each_arm_gets_the_common_arguments_then_its_own():
    from bench.paired import parse_args, server_command

    args = parse_args(["--a", ".", "--b", ".", "--spin", "--server-arg=--resident", "--a-arg=--keep-warm-us",
                       "--a-arg=0", "--b-arg=--idle-poll-us", "--b-arg=50"])
    a = server_command(args, "A", 0, 7, "ipc://a", "ipc://as")
    b = server_command(args, "B", 1, 9, "ipc://b", "ipc://bs")
    assert a[-3:] == ["--resident", "--keep-warm-us", "0"] and "--idle-poll-us" not in a
    assert b[-3:] == ["--resident", "--idle-poll-us", "50"] and "--keep-warm-us" not in b
    assert a[a.index("--device") + 1] == "0" and b[b.index("--cpu") + 1] == "9" and "--spin" in a and "--spin" in b
