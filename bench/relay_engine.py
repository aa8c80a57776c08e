"""One engine behind relays, alone: how many tasks a second its loop turns into launches and result rows when the
relays' messages are already waiting (``zmqrt.relay``; no producers, no relay processes, nothing else on the host).

The relay messages (1 KiB ``vector_add``, ``--frames`` frames each, as a relay packs them) are queued on the engine's
ingest before its loop starts; the loop runs until every result row has gone to the (bound, unread) relay socket.
Run per ``--batch-max``: the loop's cost per batch and per task, the two numbers that bound the service time at a
given rate (bench/NOTES.md 29). Writes bench/results/relay-engine-<CARD>.json and .md.

``--direct``: the same without relays: the frames wait on the engine's own ingest socket, from two producers (two
reply endpoints, bound here and read after), as ``zmqrt serve --batch-max N`` reads them. ``--trace DIR``: the
engine records its stage and bulk-batch traces there and the batch gaps are printed (zmqrt.trace).

Usage: python3 bench/relay_engine.py [--tasks 200000] [--frames 32] [--batch-max 64,128,256,512] [--backend cuda]
       [--direct] [--trace DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import card_name, environment, md_row, write_results  # noqa: E402


def run(batch_max: int, args) -> dict:
    import numpy as np
    import zmq

    from ingest.protocol import encode_task
    from zmqrt.config import ServerConfig
    from zmqrt.relay import pack_frames
    from zmqrt.server import Server

    tmp = tempfile.mkdtemp(prefix="zre")
    trace = None
    if args.trace:
        Path(args.trace).mkdir(parents=True, exist_ok=True)
        trace = str(Path(args.trace) / f"engine-b{batch_max}.npy")
    relays = () if args.direct else (f"ipc://{tmp}/out0",)
    cfg = ServerConfig(backend=args.backend, ingest=f"ipc://{tmp}/in", relay_results=relays,
                       batch_max=batch_max, linger_ms=0, ingest_hwm=0, trace_path=trace)
    ctx = zmq.Context()
    backs = []
    for ep in relays or [f"ipc://{tmp}/producer{p}" for p in range(2)]:
        back = ctx.socket(zmq.PULL)
        back.setsockopt(zmq.RCVHWM, 0)
        back.bind(ep)
        backs.append(back)
    rng = np.random.default_rng()
    x, y = rng.standard_normal((2, 256), dtype=np.float32)
    with Server(cfg) as server:
        push = ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.SNDHWM, 0)
        push.connect(cfg.ingest)
        task_id = 0
        for _ in range(args.tasks // args.frames):
            frames = []
            for _ in range(args.frames):
                task_id += 1
                reply = f"ipc://{tmp}/producer{task_id % 2}"
                frames.append(encode_task(task_id, "vector_add", [x, y], reply_to=reply, sent_ns=time.time_ns()))
            if args.direct:
                for f in frames:
                    push.send(f)
            else:
                push.send(pack_frames(0, frames, [time.monotonic_ns()] * args.frames))
        time.sleep(0.5)  # every message in the engine's queue
        done: dict = {}

        def stop_when_done() -> None:
            while server.results_sent < task_id:
                time.sleep(0.0005)
            done["t"] = time.perf_counter()
            server.stop()

        threading.Thread(target=stop_when_done, daemon=True).start()
        t0 = time.perf_counter()
        server.serve_forever()
        wall = done["t"] - t0
        out = {"batch_max": batch_max, "tasks": task_id, "wall_s": wall, "tasks_per_s": task_id / wall,
               "us_per_task": wall / task_id * 1e6, "batches": server.batches, "bulk_tasks": server.bulk_tasks,
               "relayed_results": server.relayed_results, "relay_fallbacks": server.relay_fallbacks}
        push.close(linger=0)
    for back in backs:
        back.close(linger=0)
    ctx.term()
    out["us_per_batch"] = wall / max(1, out["batches"]) * 1e6
    if trace:
        from zmqrt.trace import batch_trace_path, summarize_batches

        out["batch_trace"] = summarize_batches(np.load(batch_trace_path(trace)), skip=10)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=200_000)
    ap.add_argument("--frames", type=int, default=32, help="frames per relay message (default 32)")
    ap.add_argument("--batch-max", default="64,128,256,512", help="comma-separated --batch-max values")
    ap.add_argument("--backend", default="cuda", help="cuda (default); cpu for a smoke test without a GPU")
    ap.add_argument("--direct", action="store_true", help="no relays: frames wait on the engine's own ingest")
    ap.add_argument("--trace", metavar="DIR", help="record the engine's stage and bulk-batch traces in DIR")
    ap.add_argument("--out", default="relay-engine")
    args = ap.parse_args()
    rows = []
    for k in (int(v) for v in args.batch_max.split(",")):
        r = run(k, args)
        rows.append(r)
        print(f"batch_max {k:4d}: {r['tasks_per_s']:,.0f} tasks/s, {r['us_per_task']:.2f} µs/task, "
              f"{r['us_per_batch']:.0f} µs/batch ({r['batches']} batches, {r['bulk_tasks']} bulk, "
              f"{r['relayed_results']} relayed)", flush=True)
        bt = r.get("batch_trace")
        if bt and "tasks" in bt:
            print("   by task p50/p99 µs: " + "; ".join(f"{k} {v['p50']:.0f}/{v['p99']:.0f}" for k, v in bt.items()
                                                     if isinstance(v, dict) and "p99" in v), flush=True)
    what = "its own ingest (--direct)" if args.direct else f"relays, {args.frames} frames per relay message"
    lines = [f"# One engine's loop alone, the frames waiting on {what}, 1 KiB vector_add: "
             f"{card_name()}", "", md_row(["batch_max", "tasks/s", "µs/task", "µs/batch", "batches"]),
             md_row(["---"] * 5)]
    for r in rows:
        lines.append(md_row([r["batch_max"], f"{r['tasks_per_s']:,.0f}", f"{r['us_per_task']:.2f}",
                             f"{r['us_per_batch']:.0f}", r["batches"]]))
    path = write_results(args.out, {"card": card_name(), "env": environment(), "frames": args.frames, "runs": rows},
                         "\n".join(lines) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
