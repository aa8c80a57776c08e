"""Orderings of the resident lane's block against each other, in one process: what its system fences cost.

A resident lane (``zmqrt/backends/resident.py``, ``ptx/resident.cu``) costs a task its input copy, two mailbox
stores, and then the GPU's part: a poll read of host memory that sees the request, an acquire, the inputs' read and
the output's write over PCIe, a release (the output before the done number), the done number's write, and the
host's poll of it. Call 1 of session 24 split that with clock64: of about 3.9 µs in the block, the release fence
(every thread's ``__threadfence_system``) took 1.8 and the acquire fence 0.6. ``ptx/resident.cu``'s
``RESIDENT_FENCE`` modes do the same ordering with fewer fences; this measures, per mode:

- the host's time from the input copy to the done number seen (``submit_frame`` + ``poll``, the server's calls),
  with a random idle gap before each task so that a request lands at a random point of the block's poll cycle, as
  tasks arriving at 10 kHz do (back-to-back tasks would lock the host's store to the block's poll phase);
- with ``RESIDENT_STAMPS`` builds, the block's own split (clock64 on thread 0): request seen -> acquire done ->
  inputs read and output written -> barrier and release done.

Variants run in rounds, shuffled each round, one block running at a time (each lane is started, measured, stopped),
so a drifting host weighs on all alike. Every variant's outputs are checked bit for bit against numpy on fresh
random inputs of both kernels, the outputs poisoned first (mode 9, which has no release, is there only to show
what the release costs: a check that passes does not make it safe).

Usage: python3 bench/resident_variants.py [--n 20000] [--rounds 5] [--gap-us 20] [--modes 0,1,2,3,9]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

import msgpack
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import card_name, environment, md_row, summarize, write_results  # noqa: E402

NEL = 256  # 1 KiB of float32 per input, as everywhere in the suite


def _frame(a: np.ndarray, b: np.ndarray) -> tuple[bytes, tuple[int, int]]:
    """A frame holding both inputs' bytes, and their offsets: what the server's template hands ``submit_frame``."""
    frame = msgpack.packb([a.tobytes(), b.tobytes()])
    return frame, (frame.index(a.tobytes()), frame.index(b.tobytes()))


class Checked:
    params = {"alpha": 1.5}


def _verify(lane, tasks: int, rng) -> int:
    """Fresh random inputs of both kernels, outputs poisoned first; bit-for-bit against numpy. Wrong count."""
    wrong = 0
    alpha = np.float32(Checked.params["alpha"])
    for i in range(tasks):
        a = rng.standard_normal(NEL).astype(np.float32)
        b = rng.standard_normal(NEL).astype(np.float32)
        lane._out[:NEL] = np.nan
        frame, offsets = _frame(a, b)
        name = "vector_add" if i % 2 == 0 else "saxpy"
        lane.submit_frame(name, frame, offsets, NEL, None, Checked)
        _wait(lane)
        want = a + b if name == "vector_add" else alpha * a + b
        if not np.array_equal(lane.collect()[0].view(np.uint32), want.view(np.uint32)):
            wrong += 1
    return wrong


def _wait(lane, timeout_s: float = 2.0) -> None:
    spins, give_up = 0, 0
    while not lane.poll():
        spins += 1
        if spins & 0xFFFF == 0:
            now = time.monotonic()
            if not give_up:
                give_up = now + timeout_s
            elif now > give_up:
                raise TimeoutError("resident block did not answer")


def _timed(lane, frame: bytes, offsets, n: int, gap_ns: int, rng: random.Random) -> list[int]:
    clock = time.perf_counter_ns
    out = []
    submit, poll = lane.submit_frame, lane.poll
    for _ in range(n):
        until = clock() + rng.randrange(gap_ns) if gap_ns else 0
        while clock() < until:
            pass
        t0 = clock()
        submit("vector_add", frame, offsets, NEL, None, Checked)
        spins = 0
        while not poll():
            spins += 1
            if spins > 50_000_000:  # seconds: a block that never answers (a bug) must not hang the whole run
                raise TimeoutError("resident block did not answer")
        out.append(clock() - t0)
    return out


def _stamps(module, lane, first: int, n: int, clock_khz: int) -> dict:
    """The block's split for requests ``first``..``first + n - 1``, medians in µs."""
    from cuda.bindings import driver as cu

    from zmqrt.cuda import check as cu_check

    ptr, size = cu_check(cu.cuModuleGetGlobal(module.handle, b"resident_stamps"), "cuModuleGetGlobal")
    host = np.zeros(size // 8, dtype=np.uint64)
    cu_check(cu.cuMemcpyDtoH(host.ctypes.data, ptr, size), "cuMemcpyDtoH")
    slots = host.size // 4
    rows = host.reshape(slots, 4).astype(np.int64)
    idx = [r % slots for r in range(first, first + min(n, slots))]
    sel = rows[idx]
    us = 1e3 / clock_khz
    return {"fence_in_us": float(np.median(sel[:, 1] - sel[:, 0]) * us),
            "serve_us": float(np.median(sel[:, 2] - sel[:, 1]) * us),
            "fence_out_us": float(np.median(sel[:, 3] - sel[:, 2]) * us)}


MODES = {0: "every thread fences (legacy)", 1: "thread 0 fences, after barriers", 2: "acquire load, thread 0 fences",
         3: "acquire load, release store", 9: "acquire load, no release (UNSAFE, timing only)"}


def measure(n: int, rounds: int, gap_us: float, modes: list[int]) -> dict:
    from cuda.bindings import driver as cu

    from zmqrt.backends.resident import SOURCE, ResidentLane
    from zmqrt.compiler import COMPILE_OPTIONS, compile_source
    from zmqrt.cuda import Device, Module
    from zmqrt.cuda import check as cu_check

    device = Device(0)
    ctx = device.retain_context()
    clock_khz = cu_check(cu.cuDeviceGetAttribute(cu.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_CLOCK_RATE,
                                                 device.cu_device), "cuDeviceGetAttribute")
    text = SOURCE.read_text()
    # (name, mode, stamped): each mode's plain build is timed by the host, its stamped build split by the block
    variants = [(f"{m}: {MODES[m]}" + (" [stamps]" if st else ""), m, st) for m in modes for st in (False, True)]
    modules = {name: Module(compile_source(text, "resident.cu", device.info.arch,
                                           (*COMPILE_OPTIONS, f"-DRESIDENT_FENCE={m}",
                                            *(("-DRESIDENT_STAMPS",) if st else ()))).cubin, name)
               for name, m, st in variants}
    # Every lane allocated before any block runs: allocation may wait for running kernels
    lanes = {name: ResidentLane(modules[name]) for name, _, _ in variants}
    rng = np.random.default_rng()
    prng = random.Random(7)
    a = rng.standard_normal(NEL).astype(np.float32)
    b = rng.standard_normal(NEL).astype(np.float32)
    frame, offsets = _frame(a, b)
    gap_ns = int(gap_us * 1000)
    samples: dict[str, list[int]] = {name: [] for name, _, st in variants if not st}
    wrong: dict[str, int] = {name: 0 for name in lanes}
    splits: dict[str, list[dict]] = {name: [] for name, _, st in variants if st}
    per_round = max(1, n // rounds)
    try:
        for r in range(rounds):
            order = list(variants)
            prng.shuffle(order)
            for name, _, stamped in order:
                lane = lanes[name]
                lane.start()
                try:
                    wrong[name] += _verify(lane, 100, rng)
                    _timed(lane, frame, offsets, 500, gap_ns, prng)
                    first = lane.seq + 1
                    got = _timed(lane, frame, offsets, per_round, gap_ns, prng)
                    if stamped:
                        splits[name].append(_stamps(modules[name], lane, first, per_round, clock_khz))
                    else:
                        samples[name] += got
                finally:
                    lane.stop()
                    lane.join()
            print(f"round {r + 1}/{rounds} done", flush=True)
    finally:
        for lane in lanes.values():
            lane.close()
        for m in modules.values():
            m.close()
        ctx.close()
    results: dict = {"card": card_name(), "env": environment(), "n": n, "rounds": rounds, "gap_us": gap_us,
                     "clock_khz": clock_khz, "verify_wrong": wrong,
                     "variants": {name: summarize(s) for name, s in samples.items()},
                     "split_us": {name: {k: float(np.median([s[k] for s in rows])) for k in rows[0]}
                                  for name, rows in splits.items()}}
    return results


def table(results: dict) -> str:
    rows = results["variants"]
    base = next(iter(rows.values()))
    lines = [f"# Resident lane orderings: {results['card']}", "",
             f"1 KiB vector_add from a frame (submit_frame) to the done number seen, host clock, µs; a random idle gap "
             f"of 0 to {results['gap_us']:.0f} µs before each task; {results['rounds']} rounds, variants shuffled "
             "each round. Ratio: the variant's p50 over the first row's.", "",
             md_row(["variant", "p50", "p99", "p99.9", "ratio p50", "wrong"]), md_row(["---"] * 6)]
    for name, s in rows.items():
        lines.append(md_row([name, f"{s['p50']:.2f}", f"{s['p99']:.2f}", f"{s['p999']:.2f}",
                             f"{s['p50'] / base['p50']:.3f}", str(results["verify_wrong"][name])]))
    lines += ["", "The block's split (clock64 on thread 0, medians, µs):", "",
              md_row(["variant", "seen -> acquire fence done", "inputs read, output written",
                      "barrier + release fence"]), md_row(["---"] * 4)]
    for name, s in results["split_us"].items():
        lines.append(md_row([name, f"{s['fence_in_us']:.2f}", f"{s['serve_us']:.2f}", f"{s['fence_out_us']:.2f}"]))
    wrong = {k: v for k, v in results["verify_wrong"].items() if "[stamps]" in k}
    lines += ["", "Stamped builds' wrong outputs: " + ", ".join(f"{k.split(':')[0]}: {v}" for k, v in wrong.items())]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20000, help="timed tasks per variant (over all rounds)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds; variants shuffled in each")
    ap.add_argument("--gap-us", type=float, default=20.0, help="random idle gap before each task, 0 to this (µs)")
    ap.add_argument("--modes", default="0,1,2,3,9", help="RESIDENT_FENCE modes of ptx/resident.cu to compare")
    args = ap.parse_args()
    results = measure(args.n, args.rounds, args.gap_us, [int(m) for m in args.modes.split(",")])
    text = table(results)
    print(text, flush=True)
    print(f"wrote {write_results('resident_variants', results, text)}")
    bad = sum(results["verify_wrong"].values())
    if bad:
        print(f"WARNING: {bad} wrong outputs", file=sys.stderr)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
