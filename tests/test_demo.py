"""The README's main job, `zmqrt demo`, end to end on the CPU backend (a short stream)."""

from __future__ import annotations

from zmqrt.demo import run_demo


def test_demo_runs_every_part_and_answers_every_task():
    report = run_demo(backend="cpu", stream_s=0.2)  # raises if a checked output differs from numpy
    assert report["server_exit_code"] == 0
    assert report["single"]["server_latency_us"]["service"] > 0
    rows = {"stream": report["stream"], **report["scenarios"]}
    assert set(rows) == {"stream", "High Frequency Small", "Medium Frequency Medium", "Low Frequency Large"}
    for name, row in rows.items():
        assert row["tasks"] > 0 and row["lost"] == 0 and row["errors"] == 0, (name, row)
        assert row["ok"] + row["rejected"] + row["expired"] == row["tasks"], (name, row)
