"""Which driver calls wait for a resident (never-ending) kernel? One child process per call, each with a timeout.

A resident lane (``--resident``) keeps one block running for ever. Any driver call that waits for the context's
running work would then hang the server. Measured on the H200 (driver 580, bench/results/ab/session12/): the
stream query, kernel and graph launches (lazy kernels included), async copies, event and stream creation and
device/pinned allocation return; cuMemFree, cuMemFreeHost, cuModuleLoadData and cuCtxSynchronize wait, and so
did cuGraphInstantiate in the server's calibration (after many graphs). The backend therefore builds and loads
everything before the blocks start, and pauses them around graph capture and destruction.

Each probe starts a fresh child (spawn) that builds everything it needs, starts a resident block
(``bench/persistent_floor.py``'s kernel), makes one driver call, checks the block still answers, and stops it.
A probe whose call never returned within ``--timeout`` seconds is reported ``BLOCKS`` and killed. The driver's
module loading mode (lazy or eager) is printed, because lazy loading turns a kernel's first launch into a load.

Usage: python3 bench/resident_probe.py [--timeout 20] [--only launch_lazy,graph_instantiate]
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
    from zmqrt.cuda import Device, DeviceBuffer, Event, Graph, KernelArgs, Module, PinnedBuffer, Stream, check

    def say(msg: str) -> None:
        out_q.put((name, msg))

    # Everything a probe needs exists before the resident block starts, so that each probe makes one call.
    device = Device(0)
    ctx = device.retain_context()
    ctx.set_current()
    arch = device.info.arch
    module = Module(compile_source(OTHER_SRC, "other.cu", arch).cubin, "other")
    func = module.kernel("other").func
    check(cu.cuFuncLoad(func), "cuFuncLoad(other)")
    lazy_module = Module(compile_source(OTHER_SRC, "other_lazy.cu", arch).cubin, "other lazy")
    lazy_func = lazy_module.kernel("other").func  # never loaded: its first launch loads it
    image = compile_source(OTHER_SRC, "other2.cu", arch).cubin
    stream = Stream(0)
    buf = DeviceBuffer(NEL * 4)
    host = PinnedBuffer(NEL * 4)
    to_free_dev = DeviceBuffer(1 << 20)
    to_free_host = PinnedBuffer(1 << 20)
    args = KernelArgs(2)
    args.set_ptr(0, buf.ptr)
    args.set_i32(1, NEL)
    with Graph.capture(stream) as cap:
        check(cu.cuLaunchKernel(func, 1, 1, 1, 256, 1, 1, 0, stream.handle, args.address, 0), "cuLaunchKernel")
    ready_graph = cap.graph
    res = ResidentVadd(timeout_s=5.0)
    say(f"loading mode {check(cu.cuModuleGetLoadingMode(), 'cuModuleGetLoadingMode')!r}")
    rng = np.random.default_rng()
    a, b = rng.standard_normal(NEL).astype(np.float32), rng.standard_normal(NEL).astype(np.float32)
    np.testing.assert_allclose(res.run(a, b), a + b, rtol=1e-6)  # the block runs
    t0 = time.perf_counter()
    if name == "stream_query":
        check(cu.cuStreamQuery(stream.handle), "cuStreamQuery")
    elif name in ("launch_loaded", "launch_lazy"):
        f = func if name == "launch_loaded" else lazy_func
        check(cu.cuLaunchKernel(f, 1, 1, 1, 256, 1, 1, 0, stream.handle, args.address, 0), "cuLaunchKernel")
        stream.synchronize()
    elif name == "graph_launch":
        ready_graph.launch(stream)
        stream.synchronize()
    elif name == "graph_instantiate":
        with Graph.capture(stream) as cap:
            check(cu.cuLaunchKernel(func, 1, 1, 1, 256, 1, 1, 0, stream.handle, args.address, 0), "cuLaunchKernel")
        cap.graph.close()
    elif name == "memcpy_async":
        check(cu.cuMemcpyHtoDAsync(buf.ptr, host.ptr, NEL * 4, stream.handle), "cuMemcpyHtoDAsync")
        stream.synchronize()
    elif name == "event_create":
        Event(timing=True).close()
    elif name == "stream_create":
        Stream(0).close()
    elif name == "mem_alloc":
        kept = DeviceBuffer(1 << 20)  # noqa: F841 (freed after the block stops)
    elif name == "mem_free":
        to_free_dev.close()
    elif name == "host_alloc":
        kept = PinnedBuffer(1 << 20)  # noqa: F841
    elif name == "host_free":
        to_free_host.close()
    elif name == "module_load":
        kept = Module(image, "other2")  # noqa: F841
    elif name == "ctx_synchronize":  # waits for every stream: must BLOCK (checks that the probe detects it)
        check(cu.cuCtxSynchronize(), "cuCtxSynchronize")
    else:
        raise ValueError(f"unknown probe {name}")
    took_ms = (time.perf_counter() - t0) * 1e3
    np.testing.assert_allclose(res.run(b, a), a + b, rtol=1e-6)  # and still answers
    say(f"returned in {took_ms:.3f} ms; the resident block still answers")
    res.close()
    out_q.put((name, "done"))


PROBES = ("stream_query", "launch_loaded", "graph_launch", "memcpy_async", "event_create", "stream_create",
          "mem_alloc", "mem_free", "host_alloc", "host_free", "graph_instantiate", "module_load", "launch_lazy",
          "ctx_synchronize")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--timeout", type=float, default=20.0,
                    help="seconds per probe, startup included, before it counts as blocking (default 20)")
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
        alive = proc.is_alive()
        if alive:
            proc.kill()
            proc.join()
        # The verdict is the call's own: startup (spawn, CUDA init, three NVRTC compiles) takes several seconds on
        # a slow host, so a child still alive at the timeout has not necessarily blocked in the probed call.
        if any(x.startswith("returned") for x in lines):
            verdicts[name] = "ok"
        elif alive:
            verdicts[name] = "BLOCKS" if any(x.startswith("loading mode") for x in lines) else "timeout (startup)"
        else:
            verdicts[name] = f"failed (exit {proc.exitcode})"
        print(f"{name:22s} {verdicts[name]:10s} {'; '.join(x for x in lines if x != 'done')}", flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
