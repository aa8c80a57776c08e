"""Where the loop thread runs: pinned to one CPU, that CPU cleared of the process's other threads, SCHED_FIFO.

Why clear the CPU: ZeroMQ's I/O thread and the CUDA driver's threads inherit the process's CPU set, so the
scheduler may put one of them on the loop's CPU. A blocking loop yields the CPU often enough that this costs
little; a spinning loop (``--spin``) then shares its CPU with the I/O thread that delivers its frames, which is
the likely reason spin mode measured slower than blocking (bench/NOTES.md 10 and 16). With SCHED_FIFO on the
loop a thread sharing its CPU would starve outright.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable

log = logging.getLogger("zmqrt")


def other_threads() -> list[int]:
    """Native ids of this process's threads other than the calling one ([] where /proc is not available)."""
    me = threading.get_native_id()
    try:
        return [int(t) for t in os.listdir("/proc/self/task") if int(t) != me]
    except OSError:
        return []


def thread_siblings(cpu: int) -> set[int]:
    """The CPUs sharing ``cpu``'s physical core (hyperthreads), ``cpu`` included; {cpu} where sysfs does not say."""
    try:
        with open(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list") as f:
            return parse_cpulist(f.read()) | {cpu}
    except (OSError, ValueError):
        return {cpu}


def parse_cpulist(text: str) -> set[int]:
    """CPUs of a sysfs list such as ``0-15,32-47`` (empty text: none)."""
    out: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def gpu_local_cpus(pci_bus_id: str, sysfs: str = "/sys") -> set[int]:
    """The CPUs on the NUMA node of the PCI device ``pci_bus_id`` (``0000:1A:00.0``, as ``cuDeviceGetPCIBusId`` or
    nvidia-smi write it), or an empty set where sysfs does not say (no NUMA information, a VM that hides it).

    Why: the loop polls the GPU's completion in host memory, and a resident block reads its inputs from host memory
    over PCIe. From a CPU on the other socket each of those crosses the link between the sockets as well."""
    bus = pci_bus_id.strip().lower()
    if bus.count(":") == 1:  # nvidia-smi's 8-digit domain or none at all: sysfs wants 4 digits
        bus = "0000:" + bus
    domain, rest = bus.split(":", 1)
    bus = f"{int(domain, 16):04x}:{rest}"
    try:
        with open(f"{sysfs}/bus/pci/devices/{bus}/local_cpulist") as f:
            cpus = parse_cpulist(f.read())
    except (OSError, ValueError):
        return set()
    try:
        with open(f"{sysfs}/bus/pci/devices/{bus}/numa_node") as f:
            node = int(f.read().strip())
    except (OSError, ValueError):
        node = -1
    if node < 0:  # no NUMA affinity: local_cpulist then lists every CPU, which says nothing
        return set()
    return cpus


def pin_loop(cpu: int | None, fifo_priority: int = 0, keep_off: Iterable[int] = ()) -> list[str]:
    """Pin the calling thread to ``cpu``, move the process's other threads to its remaining CPUs but ``keep_off``
    (the loop CPUs of sibling engines: their I/O threads must not land there either), and raise the calling thread
    to SCHED_FIFO ``fifo_priority`` (> 0) where permitted. Returns what it did, as log lines; failures are warnings,
    never errors: placement is an optimisation."""
    done: list[str] = []
    if cpu is not None:
        try:
            allowed = os.sched_getaffinity(0)
            os.sched_setaffinity(0, {cpu})
            done.append(f"loop thread pinned to CPU {cpu}")
        except (OSError, ValueError, AttributeError) as e:
            log.warning("cannot pin the loop to CPU %s: %s", cpu, e)
        else:
            rest = (allowed - {cpu} - set(keep_off)) or (allowed - {cpu})
            if rest:
                moved = 0
                for tid in other_threads():
                    try:
                        os.sched_setaffinity(tid, rest)
                        moved += 1
                    except OSError:  # the thread exited meanwhile, or may not be moved
                        pass
                done.append(f"{moved} other thread(s) moved to CPUs {','.join(map(str, sorted(rest)))}")
            else:
                log.warning("CPU %d is the only CPU allowed: the loop shares it with the process's other threads",
                            cpu)
    if fifo_priority > 0:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(fifo_priority))
            done.append(f"loop thread runs SCHED_FIFO priority {fifo_priority}")
        except (OSError, AttributeError) as e:
            log.warning("SCHED_FIFO %d not permitted (%s); normal scheduling", fifo_priority, e)
    return done


def _thread_stats() -> dict[int, tuple[str, int, str]]:
    """This process's threads from /proc: native id -> (name, CPU time in ms (user + system), the CPU it last ran
    on); {} where /proc is not available."""
    out: dict[int, tuple[str, int, str]] = {}
    try:
        tids = sorted(int(t) for t in os.listdir("/proc/self/task"))
    except OSError:
        return out
    tick_hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:  # the thread exited meanwhile
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # fields from the state on (field 3 of proc(5))
        cpu_ms = (int(fields[11]) + int(fields[12])) * 1000 // tick_hz  # utime, stime
        out[tid] = (stat[stat.index("(") + 1:stat.rindex(")")], cpu_ms, fields[36])
    return out


def thread_cpu_ms() -> dict[int, tuple[str, int]]:
    """This process's threads: native id -> (name, CPU time in ms, user + system), from /proc ({} without it).
    Two snapshots around a run give each thread's busy share, e.g. ZeroMQ's I/O threads ("ZMQbg/IO/0")."""
    return {tid: (name, cpu_ms) for tid, (name, cpu_ms, _) in _thread_stats().items()}


def thread_report() -> list[str]:
    """One line per thread of this process: native id, name, allowed CPUs, the CPU it last ran on, and its CPU
    time (user + system, ms), from /proc ([] where /proc is not available). Logged at shutdown, it shows which
    threads shared the loop's CPU and how busy each was."""
    lines = []
    for tid, (name, cpu_ms, last) in _thread_stats().items():
        try:
            cpus = sorted(os.sched_getaffinity(tid))
        except OSError:
            continue
        lines.append(f"thread {tid} {name!r}: CPUs {','.join(map(str, cpus))}, last on {last}, {cpu_ms} ms CPU")
    return lines
