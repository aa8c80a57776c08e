"""Keep the CPUs out of deep idle states while the server runs: a PM QoS CPU latency request.

Why: on the dev VM (the cpuidle driver haltpoll with ``guest_halt_poll_ns=0``), a vCPU with nothing to do halts at
once. ZeroMQ moves every message through its I/O thread, which sleeps between tasks, so each send after
an idle gap wakes a halted vCPU: an IPI that leaves the guest, 15 to 25 µs on the dev VM against 0.9 back to back.
A latency request of 0 µs makes the idle governor pick its polling state instead of halt; a polling CPU is woken by
a flag, not an interrupt. It is the kernel's own interface for this (``Documentation/power/pm_qos_interface.rst``;
tuned's latency-performance profile uses it): the request holds while the file stays open and ends when it closes,
even if the process dies, so nothing outlives the server. It applies to every CPU of the machine and costs their
idle power, which is why it is off unless asked for.

It needs a cpuidle driver to act on it. The GPU hosts we measured have none (an idle CPU halts by the default idle
call), and there it changed nothing; neither did keeping every CPU busy, so the cost there is the wake-up
interrupt itself, not the halt (bench/NOTES.md 40).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

DEV_PATH = "/dev/cpu_dma_latency"
CPUIDLE_SYSFS = "/sys/devices/system/cpu"


def valid_latency_us(value: object) -> bool:
    """A latency request is a whole number of µs >= 0 (the device takes an s32; a bool is not a number here)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class CpuLatencyError(OSError):
    """The latency request could not be made (no such device, or not permitted)."""


class CpuLatencyRequest:
    """Hold a PM QoS CPU latency request of ``latency_us`` µs until ``close()`` (idempotent) or the ``with`` ends."""

    def __init__(self, latency_us: int, path: str = DEV_PATH):
        self._fd: int | None = None  # first: close() and __del__ work whatever fails below
        if not valid_latency_us(latency_us):
            raise ValueError(f"CPU latency request must be a whole number of µs >= 0, not {latency_us!r}")
        self.latency_us = latency_us
        self.path = path
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        except PermissionError as e:
            raise CpuLatencyError(e.errno, f"a CPU latency request needs write access to {path} (root, usually)",
                                  path) from None
        except FileNotFoundError as e:
            raise CpuLatencyError(e.errno, f"{path} does not exist: this kernel has no PM QoS CPU latency "
                                  "interface", path) from None
        try:
            # The device takes a binary s32 (or an ASCII hex string); binary is the documented form.
            os.write(self._fd, struct.pack("i", latency_us))
        except OSError:
            self.close()
            raise

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the file is what ends the request

    @property
    def active(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> CpuLatencyRequest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def idle_states(cpu: int = 0, sysfs: str = CPUIDLE_SYSFS) -> dict:
    """What the CPU does when idle: cpuidle driver, governor, and each state's name, exit latency (µs) and usage.

    For logs and benchmark records; an empty ``states`` list where the kernel exposes none."""
    root = Path(sysfs)
    out: dict = {"driver": _read(root / "cpuidle" / "current_driver"),
                 "governor": _read(root / "cpuidle" / "current_governor_ro")
                 or _read(root / "cpuidle" / "current_governor"),
                 "states": []}
    state_dir = root / f"cpu{cpu}" / "cpuidle"
    if state_dir.is_dir():
        for d in sorted(state_dir.glob("state[0-9]*"), key=lambda p: int(p.name[5:])):
            out["states"].append({"name": _read(d / "name"), "latency_us": _int(_read(d / "latency")),
                                  "usage": _int(_read(d / "usage")), "disable": _int(_read(d / "disable"))})
    haltpoll = Path("/sys/module/haltpoll/parameters/guest_halt_poll_ns")
    if sysfs == CPUIDLE_SYSFS and haltpoll.exists():
        out["guest_halt_poll_ns"] = _int(_read(haltpoll))
    return out


def describe_idle(info: dict) -> str:
    """One log line from ``idle_states()``."""
    states = ", ".join(f"{s['name']} ({s['latency_us']} µs)" for s in info["states"]) or "none exposed"
    extra = f", guest_halt_poll_ns {info['guest_halt_poll_ns']}" if "guest_halt_poll_ns" in info else ""
    return f"cpuidle driver {info['driver'] or '-'}, governor {info['governor'] or '-'}: {states}{extra}"


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None
