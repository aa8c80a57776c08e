"""Executor against the bare driver floor, and NVRTC cold compile against warm start from the cache.

Round trip per task, 1 KiB ``vector_add`` (2 x 256 float32 in, 256 out), measured on the host clock:
- bare: numpy copy into pinned memory, cuMemcpyHtoDAsync, cuLaunchKernel (preallocated kernelParams),
  cuMemcpyDtoHAsync, cuStreamSynchronize: the same three driver calls with nothing around them;
- executor: ``CudaBackend.submit`` + ``wait`` + ``collect``, untimed (the same driver calls as bare), with
  ``spec.check`` added (validation runs at decode in the server), and with the four stage-timing events.
Targets (issue 2): executor p50 <= 1.2x bare; warm start < 200 ms.

Usage: python3 bench/executor_floor.py [--n 20000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import card_name, environment, md_row, summarize, time_loop, write_results  # noqa: E402


def bare_roundtrip(backend, a, b):
    from cuda.bindings import driver as cu

    from zmqrt.cuda import DeviceBuffer, KernelArgs, PinnedBuffer, Stream

    nel = a.size
    nbytes = nel * 4
    stream = Stream(0)
    h_in, h_out = PinnedBuffer(2 * nbytes), PinnedBuffer(nbytes)
    d_in, d_out = DeviceBuffer(2 * nbytes), DeviceBuffer(nbytes)
    args = KernelArgs(4)
    args.set_ptr(0, d_in.ptr)
    args.set_ptr(1, d_in.ptr + nbytes)
    args.set_ptr(2, d_out.ptr)
    args.set_i32(3, nel)
    func = backend.kernel("vector_add").func
    src = np.concatenate([a, b]).view(np.uint8)
    view = h_in.view
    s = stream.handle
    grid = (nel + 255) // 256

    def once():
        view[:] = src
        cu.cuMemcpyHtoDAsync(d_in.handle, h_in.ptr, 2 * nbytes, s)
        cu.cuLaunchKernel(func, grid, 1, 1, 256, 1, 1, 0, s, args.address, 0)
        cu.cuMemcpyDtoHAsync(h_out.ptr, d_out.handle, nbytes, s)
        cu.cuStreamSynchronize(s)

    once()
    got = h_out.view.view(np.float32)
    assert np.allclose(got, a + b), "bare vector_add wrong"
    keep = (stream, h_in, h_out, d_in, d_out, args)
    return once, keep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20000, help="timed iterations per path (default 20000)")
    args = ap.parse_args()

    from zmqrt.backends.cuda import CudaBackend
    from zmqrt.compiler import KernelCache
    from zmqrt.kernels.registry import load_registry

    registry = load_registry()
    results: dict = {"card": card_name(), "env": environment(), "n": args.n}

    with tempfile.TemporaryDirectory() as cache_dir:
        # Cold: empty cache, every source compiled by NVRTC. Warm: a new backend on the filled cache.
        t0 = time.perf_counter()
        cold = CudaBackend(registry, lanes=4, cache=KernelCache(cache_dir))
        cold_total = time.perf_counter() - t0
        results["cold_start"] = {"total_ms": cold_total * 1e3, "compile_ms": cold.compile_seconds * 1e3,
                                 "module_load_ms": cold.load_seconds * 1e3}
        cold.close()
        t0 = time.perf_counter()
        warm = CudaBackend(registry, lanes=4, cache=KernelCache(cache_dir))
        warm_total = time.perf_counter() - t0
        results["warm_start"] = {"total_ms": warm_total * 1e3, "cache_read_ms": warm.compile_seconds * 1e3,
                                 "module_load_ms": warm.load_seconds * 1e3}
        print(f"cold start {cold_total * 1e3:.1f} ms (nvrtc {cold.compile_seconds * 1e3:.1f} ms); "
              f"warm start {warm_total * 1e3:.1f} ms (cache {warm.compile_seconds * 1e3:.1f} ms, "
              f"load {warm.load_seconds * 1e3:.1f} ms)", flush=True)
        warm.close()

    rng = np.random.default_rng()
    a = rng.standard_normal(256).astype(np.float32)
    b = rng.standard_normal(256).astype(np.float32)
    paths = {}
    spec = registry.get("vector_add")
    inputs = [a, b]
    backend = CudaBackend(registry, lanes=1, max_task_bytes=1 << 16, timing=True)
    checked0 = spec.check(inputs, {})

    def executor(timed: bool, with_check: bool):
        def once():
            checked = spec.check(inputs, {}) if with_check else checked0
            backend.submit(0, spec, inputs, checked, timed)
            backend.wait(0)
            return backend.collect(0)
        return once

    variants = {
        "executor (untimed)": executor(False, False),
        "executor (untimed) + spec.check": executor(False, True),
        "executor (stage timing events)": executor(True, False),
    }
    for fn in variants.values():
        out = fn()[0]
        np.testing.assert_allclose(out, a + b, rtol=1e-6)
    once, keep = bare_roundtrip(backend, a, b)
    # Interleave the paths in rounds so drift (clocks, other load) hits all alike.
    samples: dict[str, list[int]] = {"bare": [], **{k: [] for k in variants}}
    rounds = 10
    for _ in range(rounds):
        samples["bare"] += time_loop(once, args.n // rounds, warm=200)
        for name, fn in variants.items():
            samples[name] += time_loop(fn, args.n // rounds, warm=200)
    bare_row = summarize(samples["bare"])
    paths["bare (3 driver calls + sync)"] = bare_row
    for name in variants:
        row = summarize(samples[name])
        row["ratio_p50"] = row["p50"] / bare_row["p50"]
        row["ratio_p99"] = row["p99"] / bare_row["p99"]
        paths[name] = row
    del keep
    backend.close()
    results["roundtrip_us"] = paths
    for name, row in paths.items():
        print(f"{name:30s} p50 {row['p50']:7.2f} us  p99 {row['p99']:7.2f} us  p99.9 {row['p999']:7.2f} us", flush=True)

    lines = [f"# Executor vs bare driver floor: {results['card']}", "",
             "1 KiB vector_add round trip (host clock), µs; ratio against the bare path in the same run.", "",
             md_row(["path", "p50", "p99", "p99.9", "p50 ratio", "p99 ratio"]), md_row(["---"] * 6)]
    for name, row in paths.items():
        lines.append(md_row([name, f"{row['p50']:.2f}", f"{row['p99']:.2f}", f"{row['p999']:.2f}",
                             f"{row.get('ratio_p50', 1.0):.2f}", f"{row.get('ratio_p99', 1.0):.2f}"]))
    lines += ["", "Target: executor p50 <= 1.2x bare.", "",
              md_row(["start", "total ms", "nvrtc / cache ms", "module load ms"]), md_row(["---"] * 4),
              md_row(["cold (empty cache)", f"{results['cold_start']['total_ms']:.1f}",
                      f"{results['cold_start']['compile_ms']:.1f}", f"{results['cold_start']['module_load_ms']:.1f}"]),
              md_row(["warm (cache hit)", f"{results['warm_start']['total_ms']:.1f}",
                      f"{results['warm_start']['cache_read_ms']:.1f}",
                      f"{results['warm_start']['module_load_ms']:.1f}"]),
              "", "Target: warm start < 200 ms.", ""]
    path = write_results("executor_floor", results, "\n".join(lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
