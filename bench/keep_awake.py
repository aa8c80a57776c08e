"""Keep CPUs from halting while a command runs: one SCHED_IDLE process per CPU that yields in a loop.

A probe, not a zmqrt feature (bench/NOTES.md 40). On the GPU hosts' VMs the kernel has no cpuidle driver: an idle
vCPU halts, and waking it (ZeroMQ's I/O thread, at every send and every receipt after an idle gap) is an
interrupt that the hypervisor delivers. A SCHED_IDLE task on the CPU keeps it running guest code, and any normal
thread that wakes there preempts it at once. Comparing a run with and without them shows what halted CPUs cost.

    python3 bench/keep_awake.py [--cpus all|LIST] -- CMD ARGS...

Exits with CMD's status; the spinners end with it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys

SPIN = ("import os, sys\n"
        "os.sched_setaffinity(0, {int(sys.argv[1])})\n"
        "os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))\n"
        "y = os.sched_yield\n"
        "while True:\n"
        "    y()\n")


def parse_cpus(text: str) -> list[int]:
    if text == "all":
        return sorted(os.sched_getaffinity(0))
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


@contextlib.contextmanager
def keep_awake(cpus: list[int]):
    """SCHED_IDLE spinners on ``cpus`` for the duration of the block."""
    procs = [subprocess.Popen([sys.executable, "-c", SPIN, str(c)], stdin=subprocess.DEVNULL) for c in cpus]
    try:
        yield procs
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpus", default="all", help="CPUs to keep awake: all (this process's), or e.g. 1-7,16")
    ap.add_argument("cmd", nargs=argparse.REMAINDER, help="the command, after --")
    args = ap.parse_args()
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        ap.error("give the command to run after --")
    cpus = parse_cpus(args.cpus)
    print(f"keep_awake: SCHED_IDLE spinners on CPUs {cpus}", flush=True)
    with keep_awake(cpus):
        return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
