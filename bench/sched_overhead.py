"""What scheduling and latency tracking add per task, against a direct dispatch, in the same run.

Real decoded tasks (1 KiB vector_add frames through ``decode_task``) go through exactly the calls the server
makes around a task: admission + push, pop + expiry check (before the result is sent: they add to service
latency), and on completion the predictor update, the stage histograms and the counters (after the result is
sent). The direct path is a plain list append/pop. CPU only; run on the GPU host so the
CPU is the one that serves.
Target (issue 4): <= 3 µs at p50.

Usage: python3 bench/sched_overhead.py [--n 200000] [--policy edf]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import environment, md_row, summarize, write_results  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--card", default=None, help="name of the machine's card, for the results file")
    args = ap.parse_args()

    from bench._common import card_name
    from ingest.protocol import Limits, decode_task, encode_task
    from zmqrt.kernels.registry import load_registry
    from zmqrt.latency import LatencyTracker
    from zmqrt.sched import AdmissionControl, ServicePredictor, make_scheduler
    from zmqrt.server import size_class

    registry = load_registry()
    limits = Limits()
    rng = np.random.default_rng()
    a, b = rng.standard_normal(256).astype(np.float32), rng.standard_normal(256).astype(np.float32)
    frame = encode_task(1, "vector_add", [a, b], priority=0, deadline_us=1000.0, reply_to="ipc:///tmp/x")
    results: dict = {"card": args.card or card_name(), "env": environment(), "n": args.n, "policies": {}}
    pc = time.perf_counter_ns
    for policy in ("edf", "fp", "rm", "ps"):
        sched = make_scheduler(policy)
        pred = ServicePredictor()
        pred.seed("vector_add", size_class(2048), 15_000)
        adm = AdmissionControl(pred, lanes=4, mode="reject", expiry="predicted")
        tracker = LatencyTracker(interval_stage="service")
        tasks = [decode_task(frame, registry, limits, time.monotonic_ns(), i) for i in range(2000)]
        for t in tasks:
            t.size_class = size_class(t.in_bytes)
        before, after, direct = [], [], []
        queue: list = []
        for i in range(args.n):
            task = tasks[i % 2000]
            now = time.monotonic_ns()
            task.recv_ns = now
            task.deadline_ns = now + 1_000_000
            t0 = pc()
            adm.submit(task, now, sched, 0)  # on the service path: admission and queueing...
            _, item = sched.pop_entry()
            adm.expired_at_dispatch(item, now)  # ...and the expiry check at dispatch
            t1 = pc()
            pred.observe(item.kernel, item.size_class, 15_000)  # after the result is sent: learning, tracking
            tracker.record_stages(item.kernel, item.priority, {"queue": 1000, "h2d": 2000, "kernel": 3000,
                                                              "d2h": 2000, "service": 15_000})
            tracker.count_ok(now, False)
            t2 = pc()
            queue.append(task)
            queue.pop()
            t3 = pc()
            before.append(t1 - t0)
            after.append(t2 - t1)
            direct.append(t3 - t2)
        b, a, d = summarize(before[1000:]), summarize(after[1000:]), summarize(direct[1000:])
        results["policies"][policy] = {"service_path_us": b, "after_send_us": a, "direct_us": d,
                                       "added_p50_us": b["p50"] - d["p50"], "added_p99_us": b["p99"] - d["p99"]}
        print(f"{policy}: on the service path p50 {b['p50']:.2f} p99 {b['p99']:.2f} us (direct {d['p50']:.2f}); "
              f"tracking after send p50 {a['p50']:.2f} p99 {a['p99']:.2f} us", flush=True)
    lines = [f"# Scheduling + tracking cost per task: {results['card']} host CPU", "",
             "Service path: admission + push + pop + expiry check, which run between receipt and the result being "
             "sent. After send: predictor update, five stage histograms and the counters, which the server runs "
             "once the result is on its way (loop time, not latency of that task). Direct: a list append/pop.", "",
             md_row(["policy", "added to service p50 µs", "p99 µs", "tracking after send p50 µs", "p99 µs"]),
             md_row(["---"] * 5)]
    for policy, row in results["policies"].items():
        lines.append(md_row([policy, f"{row['added_p50_us']:.2f}", f"{row['added_p99_us']:.2f}",
                             f"{row['after_send_us']['p50']:.2f}", f"{row['after_send_us']['p99']:.2f}"]))
    lines += ["", "Target: <= 3 µs at p50 added to service latency.", ""]
    print(f"wrote {write_results('sched_overhead', results, chr(10).join(lines))}")


if __name__ == "__main__":
    main()
