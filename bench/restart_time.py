"""Restart time after a fatal GPU fault, CUDA backend: fault -> new engine -> first good result.

A supervised engine (``zmqrt.supervisor``, one device: the engine binds the ingest itself, as ``zmqrt serve``
runs it) serves the builtins plus tests/fault_kernels. Each repetition sends ``fault_trap(trap=1)`` (the kernel
executes ``__trap()``: a sticky error, the engine answers GPU_FAULT and exits 3), waits for that answer, sends a
1 KiB ``vector_add`` once the supervisor has seen the engine exit, and waits for its good result. Per repetition:

- ``fault_to_ok_ms``: from the GPU_FAULT answer to the first good result, what a producer sees. It includes the
  producer's reconnection: ZeroMQ retries every ``RECONNECT_IVL`` (100 ms by default; ``--reconnect-ivl-ms``);
- ``exit_ms``: GPU_FAULT answer -> the supervisor sees the engine gone (drain, close, CUDA teardown);
- ``death_to_ready_ms``: the supervisor's figure, engine gone -> new engine ready (spawn, imports, CUDA context,
  kernels from the compile cache, lane buffers, calibration unless ``--no-calibrate``).

Writes bench/results/restart_time-<CARD>.json and .md.

Usage: python3 bench/restart_time.py [--reps 10] [--no-calibrate] [--reconnect-ivl-ms 100]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import card_name, environment, md_row, write_results  # noqa: E402

FAULT_KERNELS = str(Path(__file__).resolve().parents[1] / "tests" / "fault_kernels")


def _stats(ms: list[float]) -> dict:
    a = np.asarray(ms, dtype=np.float64)
    return {"p50": float(np.percentile(a, 50)), "max": float(a.max()), "min": float(a.min()), "n": int(a.size)}


def measure(reps: int, calibrate: bool, reconnect_ivl_ms: int, lanes: int) -> dict:
    import zmq

    from ingest.client import Client
    from zmqrt.config import ServerConfig
    from zmqrt.supervisor import Supervisor

    cfg = ServerConfig(backend="cuda", ingest=f"ipc://{tempfile.mkdtemp(prefix='zrt')}/in", lanes=lanes,
                       kernels_dirs=[FAULT_KERNELS], calibrate=calibrate)
    rows = []
    ctx = zmq.Context()
    ctx.setsockopt(zmq.RECONNECT_IVL, reconnect_ivl_ms)  # default for the client's sockets made below
    x = np.ones(256, np.float32)
    with Supervisor(cfg, max_restarts=reps + 1, restart_window_s=3600.0) as sup:
        sup.start()
        thread = threading.Thread(target=sup.run, daemon=True)
        thread.start()
        with Client(sup.ingest_endpoint, ctx=ctx, timeout_s=300) as client:
            assert client.call("vector_add", x, x).ok
            for rep in range(reps):
                before = sup.restarts
                res = client.call("fault_trap", x, params={"trap": 1})
                t_fault = time.perf_counter()
                if res.code.value != "GPU_FAULT":
                    raise RuntimeError(f"fault_trap answered {res.code}: {res.message}")
                while sup.restarts == before:
                    time.sleep(0.0002)
                t_dead = time.perf_counter()
                res = client.call("vector_add", x, x)
                t_ok = time.perf_counter()
                if not res.ok or not np.array_equal(res.outputs[0], x + x):
                    raise RuntimeError(f"first task after restart: {res.code}: {res.message}")
                row = {"fault_to_ok_ms": (t_ok - t_fault) * 1e3, "exit_ms": (t_dead - t_fault) * 1e3,
                       "death_to_ready_ms": sup.restart_seconds[-1] * 1e3}
                rows.append(row)
                print(f"rep {rep}: fault -> first good result {row['fault_to_ok_ms']:.0f} ms (engine exit "
                      f"{row['exit_ms']:.0f} ms, death -> ready {row['death_to_ready_ms']:.0f} ms)", flush=True)
        sup.stop()
        thread.join(60)
    ctx.term()
    return {"card": card_name(), "env": environment(), "reps": reps, "calibrate": calibrate, "lanes": lanes,
            "reconnect_ivl_ms": reconnect_ivl_ms, "runs": rows,
            "ms": {k: _stats([r[k] for r in rows]) for k in ("fault_to_ok_ms", "exit_ms", "death_to_ready_ms")}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=10, help="faults to inject (default 10)")
    ap.add_argument("--no-calibrate", dest="calibrate", action="store_false",
                    help="engines skip the startup calibration (shorter restarts, unseeded admission)")
    ap.add_argument("--reconnect-ivl-ms", type=int, default=100, help="the producer's ZMQ_RECONNECT_IVL "
                    "(default 100, ZeroMQ's own default)")
    ap.add_argument("--lanes", type=int, default=4)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    r = measure(args.reps, args.calibrate, args.reconnect_ivl_ms, args.lanes)
    labels = {"fault_to_ok_ms": "GPU_FAULT answer -> first good result", "exit_ms": "GPU_FAULT answer -> engine gone",
              "death_to_ready_ms": "engine gone -> new engine ready"}
    lines = [f"# Restart after a fatal GPU fault: {r['card']}", "",
             f"{r['reps']} faults (fault_trap: __trap()), CUDA backend, {r['lanes']} lanes, calibrate "
             f"{r['calibrate']}, producer reconnect interval {r['reconnect_ivl_ms']} ms.", "",
             md_row(["interval", "p50 ms", "max ms", "min ms"]), md_row(["---"] * 4)]
    for key, label in labels.items():
        s = r["ms"][key]
        lines.append(md_row([label, f"{s['p50']:.1f}", f"{s['max']:.1f}", f"{s['min']:.1f}"]))
    print("\n".join(lines))
    print(f"wrote {write_results('restart_time', r, chr(10).join(lines) + chr(10))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
