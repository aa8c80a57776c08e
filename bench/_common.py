"""Helpers shared by the bench scripts: percentiles, the card's name, writing JSON plus a markdown table."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def summarize(ns: list[int] | np.ndarray) -> dict:
    a = np.asarray(ns, dtype=np.float64) / 1e3
    return {
        "p50": float(np.percentile(a, 50)),
        "p95": float(np.percentile(a, 95)),
        "p99": float(np.percentile(a, 99)),
        "p999": float(np.percentile(a, 99.9)),
        "max": float(a.max()),
        "mean": float(a.mean()),
        "n": int(a.size),
    }


def time_loop(fn: Callable[[], object], n: int, warm: int = 1000) -> list[int]:
    for _ in range(warm):
        fn()
    pc = time.perf_counter_ns
    out = [0] * n
    for i in range(n):
        t0 = pc()
        fn()
        out[i] = pc() - t0
    return out


def card_name() -> str:
    try:
        from zmqrt.cuda import Device
        return Device(0).info.name
    except Exception:
        return "no-gpu"


def card_slug(name: str) -> str:
    for tag in ("H200", "H100", "A100", "L40S", "L4"):
        if tag in name:
            return tag
    return name.replace(" ", "-") or "unknown"


def environment() -> dict:
    info = {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count(),
            "date": _dt.date.today().isoformat()}
    try:
        from cuda.bindings import __version__ as cb
        info["cuda_bindings"] = cb
    except Exception:
        pass
    try:
        from zmqrt.compiler import nvrtc_version
        from zmqrt.cuda import driver_version
        info["nvrtc"] = "{}.{}".format(*nvrtc_version())
        info["driver_cuda"] = driver_version()
    except Exception:
        pass
    return info


def write_results(name: str, data: dict, table_md: str, out_dir: Path | None = None) -> Path:
    out_dir = out_dir or RESULTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    slug = card_slug(data.get("card", "unknown"))
    path = out_dir / f"{name}-{slug}.json"
    path.parent.mkdir(parents=True, exist_ok=True)  # a name may hold folders: ab/session15/rt-1
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    (out_dir / f"{name}-{slug}.md").write_text(table_md)
    return path


def md_row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def cpu_plan(loop: int | None = None, near: set[int] | None = None, avail: list[int] | None = None) -> dict | None:
    """Separate cores for the server under test and the producer, so neither spins on the other's core or SMT
    sibling: ``{"loop": A, "server": {A, B}, "producer": rest}`` (B for ZeroMQ's I/O thread), or None with
    fewer than 4 usable CPUs. ``loop``: the loop's CPU (default: the highest of ``near``, the GPU's own NUMA node's
    CPUs where known, else the highest CPU); B is the CPU nearest to it by number that is not its sibling, on
    that node too where it can be.
    ``avail``: the CPUs to plan over (default: this process's)."""
    from zmqrt.placement import thread_siblings

    if avail is None:
        try:
            avail = sorted(os.sched_getaffinity(0))
        except AttributeError:
            return None
    avail = sorted(avail)
    if len(avail) < 4:
        return None
    near = near or set()
    if loop is None or loop not in avail:
        local = [c for c in avail if c in near]
        loop = local[-1] if local else avail[-1]
    taken = thread_siblings(loop)
    io = min((c for c in avail if c not in taken), key=lambda c: (c not in near, abs(c - loop), -c), default=None)
    if io is None:
        return None
    taken |= thread_siblings(io)
    producer = {c for c in avail if c not in taken}
    return {"loop": loop, "server": {loop, io}, "producer": producer} if producer else None


def gpu_cpus(ordinal: int = 0) -> set[int]:
    """The CPUs of GPU ``ordinal``'s NUMA node (empty where unknown, or without a driver)."""
    from zmqrt.placement import gpu_local_cpus

    try:
        from zmqrt.cuda import pci_bus_id

        return gpu_local_cpus(pci_bus_id(ordinal))
    except Exception:  # no driver or no device: placement falls back to the highest CPUs
        return set()


LOOP_CPU_HELP = ("the server loop's CPU (default: the highest CPU of GPU 0's NUMA node where sysfs says which, else "
                 "the highest CPU); its I/O thread gets the nearest other core")


def producer_on_own_cpus(no_pin: bool, loop_cpu: int | None) -> dict | None:
    """The benchmark's CPU plan (``cpu_plan`` near GPU 0; None with ``no_pin`` or too few CPUs), with this process,
    the open-loop producer that spins, moved off the server's cores."""
    near = gpu_cpus(0)
    plan = None if no_pin else cpu_plan(loop_cpu, near)
    print(f"GPU 0's NUMA node CPUs: {','.join(map(str, sorted(near))) or 'not known'}", flush=True)
    if plan:
        os.sched_setaffinity(0, plan["producer"])
    return plan


@contextlib.contextmanager
def spawn_on(cpus: set[int] | None):
    """Processes spawned inside the block inherit CPU affinity ``cpus``; the caller's own is restored after."""
    if not cpus:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)
