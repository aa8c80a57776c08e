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
            text = f.read().strip()
    except OSError:
        return {cpu}
    out: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out | {cpu}


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


def thread_report() -> list[str]:
    """One line per thread of this process: native id, name, allowed CPUs, the CPU it last ran on, and its CPU
    time (user + system, ms), from /proc ([] where /proc is not available). Logged at shutdown, it shows which
    threads shared the loop's CPU and how busy each was."""
    lines = []
    try:
        tids = sorted(int(t) for t in os.listdir("/proc/self/task"))
    except OSError:
        return lines
    tick_hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                stat = f.read()
            cpus = sorted(os.sched_getaffinity(tid))
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()  # fields from the state on (field 3 of proc(5))
        cpu_ms = (int(fields[11]) + int(fields[12])) * 1000 // tick_hz  # utime, stime
        lines.append(f"thread {tid} {name!r}: CPUs {','.join(map(str, cpus))}, last on {fields[36]}, {cpu_ms} ms CPU")
    return lines
