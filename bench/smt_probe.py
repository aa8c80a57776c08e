"""Which CPUs slow one another down: hyperthreads that a virtual machine does not report.

A KVM guest may say "1 thread per core" while its vCPUs are pairs of hyperthreads on the host. A spinning
producer or I/O thread on the hidden sibling of the server loop's CPU then takes a share of that core's pipeline,
and the loop runs slower in a way no setting in the guest shows. This probe times a fixed pure-Python loop on
CPU ``--target`` alone, then with a busy loop pinned on each other CPU in turn; a sibling shows as a slowdown of
tens of percent, any other CPU as about none.

Usage: python3 bench/smt_probe.py [--target N] [--out NAME]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import card_name, write_results  # noqa: E402


def _spin(cpu: int, stop) -> None:
    os.sched_setaffinity(0, {cpu})
    x = 0
    while not stop.is_set():
        for i in range(10_000):
            x += i


def _work(n: int) -> float:
    t = time.perf_counter()
    x = 0
    for i in range(n):
        x += i * 3 ^ (x >> 7)
    return time.perf_counter() - t


def time_on(cpu: int, n: int, trials: int) -> float:
    """The fastest of ``trials`` runs of the fixed loop, in ms, on ``cpu`` (this process, pinned)."""
    os.sched_setaffinity(0, {cpu})
    return min(_work(n) for _ in range(trials)) * 1e3


def probe(target: int, n: int = 300_000, trials: int = 5) -> dict:
    """Time CPU ``target`` alone and beside a busy loop on each other CPU. This process is pinned to ``target``
    while it times, and gets its CPU set back after."""
    ctx = mp.get_context("spawn")
    cpus = sorted(os.sched_getaffinity(0))
    try:
        alone = time_on(target, n, trials)
        slowdown = {}
        for cpu in cpus:
            if cpu == target:
                continue
            stop = ctx.Event()
            proc = ctx.Process(target=_spin, args=(cpu, stop), daemon=True)
            proc.start()
            time.sleep(0.05)  # the spinner is up and pinned
            busy = time_on(target, n, trials)
            stop.set()
            proc.join(5)
            slowdown[cpu] = busy / alone - 1.0
        again = time_on(target, n, trials)
    finally:
        os.sched_setaffinity(0, cpus)
    return {"target": target, "alone_ms": alone, "alone_again_ms": again,
            "slowdown": {str(c): round(s, 4) for c, s in slowdown.items()},
            "siblings": sorted(c for c, s in slowdown.items() if s > 0.15)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", type=int, action="append", help="CPU to time (repeatable; default the highest CPU)")
    ap.add_argument("--out", default="smt_probe", help="result name under bench/results (default smt_probe)")
    args = ap.parse_args()
    targets = args.target or [max(os.sched_getaffinity(0))]
    results = {"card": card_name(), "probes": []}
    lines = ["| CPU timed | alone ms | CPUs that slow it > 15% | largest slowdowns |", "|---|---|---|---|"]
    for t in targets:
        r = probe(t)
        results["probes"].append(r)
        top = sorted(r["slowdown"].items(), key=lambda kv: -kv[1])[:3]
        line = (f"| {t} | {r['alone_ms']:.1f} / {r['alone_again_ms']:.1f} | {r['siblings'] or 'none'} | "
                f"{', '.join(f'{c}: {s:+.0%}' for c, s in top)} |")
        lines.append(line)
        print(line, flush=True)
    print(f"wrote {write_results(args.out, results, chr(10).join(lines) + chr(10))}")


if __name__ == "__main__":
    main()
