"""The PM QoS CPU latency request (zmqrt.cpu_latency) and its serve option, without touching the real device."""

from __future__ import annotations

import logging
import os
import struct

import pytest

from zmqrt.cli import _cpu_latency_request
from zmqrt.config import ServerConfig, validate
from zmqrt.cpu_latency import CpuLatencyError, CpuLatencyRequest, describe_idle, idle_states


def test_the_request_writes_a_binary_s32_and_holds_until_closed(tmp_path):
    path = tmp_path / "cpu_dma_latency"
    path.write_bytes(b"")
    req = CpuLatencyRequest(7, path=str(path))
    assert req.active and struct.unpack("i", path.read_bytes()) == (7,)
    fd = req._fd
    os.fstat(fd)  # open while held
    req.close()
    req.close()  # idempotent
    assert not req.active
    with pytest.raises(OSError):
        os.fstat(fd)  # closing the file is what ends the request


def test_the_request_is_a_context_manager(tmp_path):
    path = tmp_path / "dev"
    path.write_bytes(b"")
    with CpuLatencyRequest(0, path=str(path)) as req:
        assert req.active
    assert not req.active


@pytest.mark.parametrize("bad", [-1, 1.5, True, "0", None])
def test_bad_latencies_are_refused(bad, tmp_path):
    with pytest.raises(ValueError, match="whole number"):
        CpuLatencyRequest(bad, path=str(tmp_path / "never-opened"))
    cfg = ServerConfig(backend="cpu", cpu_latency_us=bad)
    if bad is not None:
        with pytest.raises(ValueError, match="cpu_latency_us"):
            validate(cfg)


def test_a_missing_device_says_so(tmp_path):
    with pytest.raises(CpuLatencyError, match="no PM QoS"):
        CpuLatencyRequest(0, path=str(tmp_path / "absent"))


def test_no_permission_says_what_it_needs(tmp_path, monkeypatch):
    def denied(*_a, **_k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(CpuLatencyError, match="write access"):
        CpuLatencyRequest(0, path=str(tmp_path / "dev"))


def test_idle_states_reads_the_cpuidle_tree(tmp_path):
    root = tmp_path / "cpu"
    (root / "cpuidle").mkdir(parents=True)
    (root / "cpuidle" / "current_driver").write_text("haltpoll\n")
    (root / "cpuidle" / "current_governor_ro").write_text("haltpoll\n")
    for i, (name, lat) in enumerate([("POLL", 0), ("haltpoll idle", 1)]):
        d = root / "cpu0" / "cpuidle" / f"state{i}"
        d.mkdir(parents=True)
        (d / "name").write_text(name + "\n")
        (d / "latency").write_text(f"{lat}\n")
        (d / "usage").write_text(f"{10 * (i + 1)}\n")
        (d / "disable").write_text("0\n")
    info = idle_states(0, sysfs=str(root))
    assert info["driver"] == "haltpoll" and info["governor"] == "haltpoll"
    assert [(s["name"], s["latency_us"], s["usage"]) for s in info["states"]] == [("POLL", 0, 10),
                                                                                 ("haltpoll idle", 1, 20)]
    assert describe_idle(info) == "cpuidle driver haltpoll, governor haltpoll: POLL (0 µs), haltpoll idle (1 µs)"


def test_a_kernel_without_cpuidle_reads_as_none(tmp_path):
    info = idle_states(0, sysfs=str(tmp_path))
    assert info["driver"] is None and info["states"] == []
    assert describe_idle(info).startswith("cpuidle driver -, governor -: none exposed")


def test_serve_goes_on_without_the_request_when_it_cannot_be_made(monkeypatch, caplog):
    def refuse(_latency_us):
        raise CpuLatencyError(13, "a CPU latency request needs write access to /dev/cpu_dma_latency (root, usually)")

    monkeypatch.setattr("zmqrt.cpu_latency.CpuLatencyRequest", refuse)
    with caplog.at_level(logging.WARNING, logger="zmqrt"), _cpu_latency_request(0) as req:
        assert req is None
    assert "not applied" in caplog.text and "write access" in caplog.text


def test_serve_holds_the_request_while_serving(monkeypatch, tmp_path):
    path = tmp_path / "dev"
    path.write_bytes(b"")
    made = []

    def to_file(latency_us):
        made.append(CpuLatencyRequest(latency_us, path=str(path)))
        return made[-1]

    monkeypatch.setattr("zmqrt.cpu_latency.CpuLatencyRequest", to_file)
    with _cpu_latency_request(0) as req:
        assert req is made[0] and req.active
    assert not made[0].active
    with _cpu_latency_request(None) as req:
        assert req is None and len(made) == 1
