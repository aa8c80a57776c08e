"""Which driver calls wait for a resident (never-ending) kernel? One child process per call, each with a timeout.

A resident lane (``--resident``) keeps one block running for ever. Any driver call that waits for the context's
running work would then hang the server. Each probe starts a fresh child (spawn) that loads the modules, starts
a resident block (``bench/persistent_floor.py``'s kernel), makes one driver call, checks the block still answers,
and stops it. The parent waits ``--timeout`` seconds: a child that did not finish is reported ``BLOCKS`` and
killed. The driver's module loading mode (lazy or eager) is printed, because lazy loading turns a kernel's first
launch into a load.

Usage: python3 bench/resident_probe.py [--timeout 10] [--only launch_lazy,graph_instantiate]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OTHER_SRC = r"""
extern "C" __global__ void other(float* a, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x; if (i < n) a[i] = a[i] + 1.0f; }
"""


def _probe(name: str, out_q) -> None:
    import numpy as np
    from cuda.bindings import driver as cu

    from bench.persistent_floor import NEL, ResidentVadd
    from zmqrt.compiler import compile_source
    from zmqrt.cuda import DeviceBuffer, Graph, KernelArgs, Module, PinnedBuffer, Stream, check

    def say(msg: str) -> None:
        out_q.put((name, msg))

    res = ResidentVadd(timeout_s=5.0)
    mode = check(cu.cuModuleGetLoadingMode(), "cuModuleGetLoadingMode")
    say(f"loading mode {mode!r}")
    module = Module(compile_source(OTHER_SRC, "other.cu", res.device.info.arch).cubin, "other")
    func = module.kernel("other").func
    if name != "launch_lazy":
        check(cu.cuFuncLoad(func), "cuFuncLoad(other)")
    stream = Stream(0)
    buf = DeviceBuffer(NEL * 4)
    args = KernelArgs(2)
    args.set_ptr(0, buf.ptr)
    args.set_i32(1, NEL)
    rng = np.random.default_rng()
    a, b = rng.standard_normal(NEL).astype(np.float32), rng.standard_normal(NEL).astype(np.float32)
    np.testing.assert_allclose(res.run(a, b), a + b, rtol=1e-6)  # the block runs
    t0 = time.perf_counter()
    if name in ("launch_lazy", "launch_loaded"):
        check(cu.cuLaunchKernel(func, 1, 1, 1, 256, 1, 1, 0, stream.handle, args.address, 0), "cuLaunchKernel")
        stream.synchronize()
    elif name == "graph_instantiate":
        with Graph.capture(stream) as cap:
            check(cu.cuLaunchKernel(func, 1, 1, 1, 256, 1, 1, 0, stream.handle, args.address, 0), "cuLaunchKernel")
        cap.graph.launch(stream)
        stream.synchronize()
        cap.graph.close()
    elif name == "mem_alloc_free":
        DeviceBuffer(1 << 20).close()
    elif name == "host_alloc_free":
        PinnedBuffer(1 << 20).close()
    elif name == "module_load_unload":
        Module(compile_source(OTHER_SRC, "other2.cu", res.device.info.arch).cubin, "other2").close()
    elif name == "stream_create_destroy":
        Stream(0).close()
    else:
        raise ValueError(f"unknown probe {name}")
    took_ms = (time.perf_counter() - t0) * 1e3
    np.testing.assert_allclose(res.run(b, a), a + b, rtol=1e-6)  # and still answers
    say(f"returned in {took_ms:.2f} ms; the resident block still answers")
    for obj in (buf, stream, module):
        obj.close()
    res.close()
    out_q.put((name, "done"))


PROBES = ("launch_loaded", "graph_instantiate", "mem_alloc_free", "host_alloc_free", "module_load_unload",
          "stream_create_destroy", "launch_lazy")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per probe before it counts as blocking")
    ap.add_argument("--only", default="", help=f"comma list of probes (default all: {', '.join(PROBES)})")
    args = ap.parse_args()
    names = [n for n in args.only.split(",") if n] or list(PROBES)
    ctx = mp.get_context("spawn")
    verdicts = {}
    for name in names:
        q = ctx.Queue()
        proc = ctx.Process(target=_probe, args=(name, q), daemon=True)
        proc.start()
        proc.join(args.timeout)
        lines = []
        while not q.empty():
            lines.append(q.get_nowait()[1])
        if proc.is_alive():
            proc.kill()
            proc.join()
            verdicts[name] = "BLOCKS"
        else:
            verdicts[name] = "ok" if "done" in lines else f"failed (exit {proc.exitcode})"
        print(f"{name:22s} {verdicts[name]:10s} {'; '.join(x for x in lines if x != 'done')}", flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
