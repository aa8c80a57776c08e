"""Layouts of the resident lane's block against each other, in one process: which one sees a request soonest.

A resident lane (``zmqrt/backends/resident.py``, ``ptx/resident.cu``) costs a task its input copy, two mailbox
stores, and then the GPU's part: a poll read of host memory that sees the request, the inputs' read, the output's
write, a system fence and the done number's write, each over PCIe, and the host's poll of the done number. One
poller has one read in flight, so a request stored just after a read left waits for the next one; warps that only
poll, out of phase, each with a read in flight, should see it sooner. This measures, per variant:

- the host's time from the input copy to the done number seen (``submit_frame`` + ``poll``, the server's calls),
  with a random idle gap before each task so that a request lands at a random point of the pollers' cycle, as
  tasks arriving at 10 kHz do (back-to-back tasks would lock the host's store to the block's poll phase);
- with ``RESIDENT_STAMPS`` builds, the block's own split (clock64 on its first worker): request seen -> fence ->
  inputs read and output written -> fence and barrier.

Variants run in rounds, shuffled each round, one block running at a time (each lane is started, measured, stopped),
so a drifting host weighs on all alike. Every variant's outputs are checked bit for bit against numpy on fresh
random inputs of both kernels, the outputs poisoned first.

Usage: python3 bench/resident_variants.py [--n 20000] [--rounds 5] [--gap-us 20] [--pollers 0,1,2,4,8]
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


def measure(n: int, rounds: int, gap_us: float, pollers: list[int], acqrel: bool) -> dict:
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
    builds = {"membar": (), "stamps": ("-DRESIDENT_STAMPS",)}
    if acqrel:
        builds["acqrel"] = ("-DRESIDENT_FENCE_ACQREL",)
    modules = {k: Module(compile_source(text, "resident.cu", device.info.arch, (*COMPILE_OPTIONS, *opts)).cubin,
                         f"resident {k}") for k, opts in builds.items()}
    variants = [(f"{p} poller warps" if p else "one poller thread (legacy)", "membar", p) for p in pollers]
    if acqrel:
        variants += [(f"{p} poller warps, fence.acq_rel.sys" if p else "legacy, fence.acq_rel.sys", "acqrel", p)
                     for p in (min(pollers), max(pollers))]
    stamp_variants = [(f"stamps: {p} poller warps" if p else "stamps: legacy", "stamps", p)
                      for p in (min(pollers), max(pollers))]
    # Every lane allocated before any block runs: allocation may wait for running kernels
    lanes = {name: ResidentLane(modules[build], 0, p) for name, build, p in variants + stamp_variants}
    rng = np.random.default_rng()
    prng = random.Random(7)
    a = rng.standard_normal(NEL).astype(np.float32)
    b = rng.standard_normal(NEL).astype(np.float32)
    frame, offsets = _frame(a, b)
    gap_ns = int(gap_us * 1000)
    samples: dict[str, list[int]] = {name: [] for name, _, _ in variants}
    wrong: dict[str, int] = {name: 0 for name in lanes}
    splits: dict[str, list[dict]] = {name: [] for name, _, _ in stamp_variants}
    per_round = max(1, n // rounds)
    try:
        for r in range(rounds):
            order = list(variants + stamp_variants)
            prng.shuffle(order)
            for name, build, _ in order:
                lane = lanes[name]
                lane.start()
                try:
                    wrong[name] += _verify(lane, 100, rng)
                    _timed(lane, frame, offsets, 500, gap_ns, prng)
                    first = lane.seq + 1
                    got = _timed(lane, frame, offsets, per_round, gap_ns, prng)
                    if build == "stamps":
                        splits[name].append(_stamps(modules["stamps"], lane, first, per_round, clock_khz))
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
    lines = [f"# Resident lane layouts: {results['card']}", "",
             f"1 KiB vector_add from a frame (submit_frame) to the done number seen, host clock, µs; a random idle gap "
             f"of 0 to {results['gap_us']:.0f} µs before each task; {results['rounds']} rounds, variants shuffled "
             "each round. Ratio: the variant's p50 over the first row's.", "",
             md_row(["variant", "p50", "p99", "p99.9", "ratio p50", "wrong"]), md_row(["---"] * 6)]
    for name, s in rows.items():
        lines.append(md_row([name, f"{s['p50']:.2f}", f"{s['p99']:.2f}", f"{s['p999']:.2f}",
                             f"{s['p50'] / base['p50']:.3f}", str(results["verify_wrong"][name])]))
    lines += ["", "The block's split (clock64 on its first worker, medians, µs):", "",
              md_row(["variant", "seen -> acquire fence done", "inputs read, output written",
                      "release fence + barrier"]), md_row(["---"] * 4)]
    for name, s in results["split_us"].items():
        lines.append(md_row([name, f"{s['fence_in_us']:.2f}", f"{s['serve_us']:.2f}", f"{s['fence_out_us']:.2f}"]))
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20000, help="timed tasks per variant (over all rounds)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds; variants shuffled in each")
    ap.add_argument("--gap-us", type=float, default=20.0, help="random idle gap before each task, 0 to this (µs)")
    ap.add_argument("--pollers", default="0,1,2,4,8", help="poller warps per variant; 0: the one-thread layout")
    ap.add_argument("--acqrel", action="store_true", help="also fence.acq_rel.sys builds of the smallest and largest")
    args = ap.parse_args()
    results = measure(args.n, args.rounds, args.gap_us, [int(p) for p in args.pollers.split(",")], args.acqrel)
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
