"""Cost of each call on the task path, one by one, on this host (timed before optimizing, per STYLE).

Prints p50/p99 in µs of: the driver calls (event record/query/elapsed, stream query, copies, launch), the numpy
copy into pinned memory, decode_task, encode_result, spec.check, and a zmq NOBLOCK recv that finds nothing.
Usage: python3 bench/call_costs.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import card_name, environment, md_row, summarize, time_loop, write_results  # noqa: E402


def main() -> None:
    import time

    import zmq
    from cuda.bindings import driver as cu

    from ingest.protocol import Limits, decode_task, encode_result, encode_task
    from zmqrt.backends.cuda import CudaBackend
    from zmqrt.errors import Code
    from zmqrt.kernels.registry import load_registry

    registry = load_registry()
    backend = CudaBackend(registry, lanes=1, max_task_bytes=1 << 16)
    spec = registry.get("vector_add")
    a = np.random.default_rng().standard_normal(256).astype(np.float32)
    inputs = [a, a.copy()]
    checked = spec.check(inputs, {})
    backend.submit(0, spec, inputs, checked, True)
    backend.wait(0)
    ln = backend.lane(0)
    prep = ln._current
    s, ev = ln._s, ln._ev
    frame = encode_task(1, "vector_add", inputs, priority=0, deadline_us=1000.0, reply_to="tcp://127.0.0.1:5000")
    limits = Limits()
    outs = backend.collect(0)
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.bind("tcp://127.0.0.1:*")
    n = 20000

    def again():
        try:
            pull.recv(zmq.NOBLOCK)
        except zmq.Again:
            pass

    calls = {
        "cuEventRecord": lambda: cu.cuEventRecord(ev[0], s),
        "cuEventQuery (done)": lambda: cu.cuEventQuery(ev[0]),
        "cuStreamQuery (idle)": lambda: cu.cuStreamQuery(s),
        "cuEventElapsedTime": lambda: cu.cuEventElapsedTime(ev[0], ev[1]),
        "cuMemcpyHtoDAsync 2 KiB + sync": lambda: (cu.cuMemcpyHtoDAsync(ln._d_in, ln._h_in, 2048, s),
                                                   cu.cuStreamSynchronize(s)),
        "cuLaunchKernel + sync": lambda: (cu.cuLaunchKernel(prep.func, 1, 1, 1, 256, 1, 1, 0, s, prep.args.address,
                                                            0), cu.cuStreamSynchronize(s)),
        "cuStreamSynchronize (idle)": lambda: cu.cuStreamSynchronize(s),
        "numpy copy 1 KiB into pinned view": lambda: prep.in_views[0].__setitem__(Ellipsis, a),
        "spec.check": lambda: spec.check(inputs, {}),
        "decode_task (1 KiB vector_add)": lambda: decode_task(frame, registry, limits, time.monotonic_ns(), 1),
        "encode_result (1 KiB out, 5 stages)": lambda: encode_result(1, Code.OK, "", outs, False,
                                                                     {"queue": 1.0, "h2d": 1.0, "kernel": 1.0,
                                                                      "d2h": 1.0, "service": 1.0}),
        "zmq recv NOBLOCK (empty)": again,
        "time.monotonic_ns": time.monotonic_ns,
    }
    results = {"card": card_name(), "env": environment(), "calls": {}}
    for name, fn in calls.items():
        row = summarize(time_loop(fn, n, warm=1000))
        results["calls"][name] = row
        print(f"{name:40s} p50 {row['p50']:6.2f} p99 {row['p99']:6.2f} us", flush=True)
    pull.close(0)
    ctx.term()
    backend.close()
    lines = [f"# Per-call costs on the task path: {results['card']} host", "",
             md_row(["call", "p50 µs", "p99 µs"]), md_row(["---"] * 3)]
    lines += [md_row([k, f"{v['p50']:.2f}", f"{v['p99']:.2f}"]) for k, v in results["calls"].items()]
    print(f"wrote {write_results('call_costs', results, chr(10).join(lines) + chr(10))}")


if __name__ == "__main__":
    main()
