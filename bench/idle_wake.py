"""What an idle gap costs a ZeroMQ hop, and what a CPU latency request (zmqrt --cpu-latency-us 0) gives back.

A bare pyzmq echo (DEALER -> ROUTER over ipc, 1.2 KiB frames) in its own process, and a producer that sends each
frame a fixed gap after the previous reply, waiting for it by spinning. Per frame: the producer's send() call,
inbound (producer's send to the echo's receipt), the echo's server side (receipt to its send() returned), its
send() call, outbound (that to the producer's receipt), and the round trip. Both processes stamp CLOCK_MONOTONIC
(perf_counter_ns), so the stages line up.

Conditions (--conditions), interleaved in rounds so that host drift weighs on each alike:
  none           as the machine is;
  cpu_latency_0  a PM QoS CPU latency request of 0 µs held by this process (system-wide; needs root; a kernel
                 without a cpuidle driver ignores it);
  keep_awake     a SCHED_IDLE spinner on every CPU (bench/keep_awake.py), so that no CPU halts;
  one_cpu        the echo process, its ZeroMQ I/O thread included, confined to one CPU: its wake-ups are local.
With each, the echo blocks in recv (block) or polls (spin). Records the cpuidle state usage on the echo's CPUs
during each, where the kernel exposes it, to show which idle state ran.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import card_name, environment, md_row, summarize, write_results  # noqa: E402
from bench.keep_awake import keep_awake  # noqa: E402
from zmqrt.cpu_latency import CpuLatencyError, CpuLatencyRequest, idle_states  # noqa: E402

FRAME = b"x" * 1200


def echo(endpoint: str, spin: bool, cpus: list[int] | None, ready) -> None:
    import zmq

    if cpus:
        os.sched_setaffinity(0, set(cpus))
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.bind(endpoint)
    ready.set()
    pc = time.perf_counter_ns
    recv_ns: list[int] = []
    sent_ns: list[int] = []
    send_call_ns: list[int] = []
    while True:
        if spin:
            while True:
                try:
                    ident, body = sock.recv_multipart(zmq.NOBLOCK)
                    break
                except zmq.Again:
                    pass
        else:
            ident, body = sock.recv_multipart()
        t0 = pc()
        if body == b"END":
            stamps = np.array([recv_ns, sent_ns, send_call_ns], dtype=np.int64)
            sock.send_multipart([ident, stamps.tobytes()])
            break
        t1 = pc()
        sock.send_multipart([ident, body])
        t2 = pc()
        recv_ns.append(t0)
        sent_ns.append(t2)
        send_call_ns.append(t2 - t1)
    sock.close(linger=1000)
    ctx.term()


def measure(endpoint: str, spin: bool, gap_us: float, n: int, warm: int, echo_cpus) -> dict:
    import zmq

    ready = mp.get_context("spawn").Event()
    proc = mp.get_context("spawn").Process(target=echo, args=(endpoint, spin, echo_cpus, ready), daemon=True)
    proc.start()
    if not ready.wait(30):
        raise RuntimeError("echo process did not start")
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.connect(endpoint)
    pc = time.perf_counter_ns
    gap_ns = int(gap_us * 1e3)
    total = n + warm
    send0 = np.zeros(total, np.int64)
    send1 = np.zeros(total, np.int64)
    back = np.zeros(total, np.int64)
    usage0 = _usage(echo_cpus)
    t_next = pc()
    for i in range(total):
        while pc() < t_next:  # spin: the producer's own CPU never halts, only the echo's side is measured
            pass
        send0[i] = pc()
        sock.send(FRAME)
        send1[i] = pc()
        sock.recv()
        back[i] = pc()
        t_next = back[i] + gap_ns
    usage1 = _usage(echo_cpus)
    sock.send(b"END")
    stamps = np.frombuffer(sock.recv(), dtype=np.int64).reshape(3, -1)
    proc.join(10)
    sock.close(linger=0)
    ctx.term()
    recv_ns, sent_ns, echo_send_ns = stamps
    s = slice(warm, total)
    return {
        "send_call": summarize((send1 - send0)[s]),
        "inbound": summarize((recv_ns - send0)[s]),
        "server_side": summarize((sent_ns - recv_ns)[s]),
        "echo_send_call": summarize(echo_send_ns[s]),
        "outbound": summarize((back - sent_ns)[s]),
        "roundtrip": summarize((back - send0)[s]),
        "idle_usage": {k: usage1[k] - usage0[k] for k in usage0},
    }


def _usage(cpus: list[int] | None) -> dict[str, int]:
    """Entries into each cpuidle state, summed over the given CPUs (all of them if None)."""
    out: dict[str, int] = {}
    for cpu in cpus if cpus else range(os.cpu_count() or 1):
        for st in idle_states(cpu)["states"]:
            out[st["name"]] = out.get(st["name"], 0) + (st["usage"] or 0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=3000, help="measured frames per condition, gap and round")
    ap.add_argument("--warm", type=int, default=300)
    ap.add_argument("--gaps-us", default="0,20,100,1000", help="idle gaps after each reply, µs (100: 10 kHz)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--modes", default="block,spin", help="the echo's loop: block, spin")
    ap.add_argument("--conditions", default="none,keep_awake,one_cpu", help="comma list of none, cpu_latency_0, "
                    "keep_awake, one_cpu (see above)")
    ap.add_argument("--out", default="idle_wake")
    ap.add_argument("--out-dir", type=Path)
    args = ap.parse_args()
    ncpu = os.cpu_count() or 1
    # Echo and producer on their own CPUs, clear of CPU 0 (interrupts), when the machine has them.
    echo_cpus = list(range(2, 6)) if ncpu >= 12 else None
    client_cpus = list(range(8, 12)) if ncpu >= 12 else None
    if client_cpus:
        os.sched_setaffinity(0, set(client_cpus))
    conds = args.conditions.split(",")
    if "cpu_latency_0" in conds:
        try:
            CpuLatencyRequest(0).close()
        except CpuLatencyError as e:
            print(f"no CPU latency request here ({e.strerror}): leaving out cpu_latency_0", flush=True)
            conds.remove("cpu_latency_0")
    gaps = [float(g) for g in args.gaps_us.split(",")]
    modes = args.modes.split(",")
    raw: dict[str, list[dict]] = {}
    endpoint = f"ipc:///tmp/zmqrt-idle-wake-{os.getpid()}"
    for r in range(args.rounds):
        order = conds if r % 2 == 0 else conds[::-1]
        for cond in order:
            cpus = echo_cpus[:1] if cond == "one_cpu" and echo_cpus else echo_cpus
            with contextlib.ExitStack() as stack:
                if cond == "cpu_latency_0":
                    stack.enter_context(CpuLatencyRequest(0))
                elif cond == "keep_awake":
                    stack.enter_context(keep_awake(sorted(os.sched_getaffinity(0) | set(range(ncpu)))))
                for mode in modes:
                    for gap in gaps:
                        res = measure(endpoint, mode == "spin", gap, args.n, args.warm, cpus)
                        key = f"{cond} {mode} gap {gap:g}"
                        raw.setdefault(key, []).append(res)
                        print(f"round {r + 1} {key:28s} send {res['send_call']['p50']:5.1f} inbound "
                              f"{res['inbound']['p50']:6.1f}/{res['inbound']['p99']:6.1f} server "
                              f"{res['server_side']['p50']:5.1f}/{res['server_side']['p99']:6.1f} (its send "
                              f"{res['echo_send_call']['p50']:5.1f}) outbound {res['outbound']['p50']:6.1f}/"
                              f"{res['outbound']['p99']:6.1f} rtt {res['roundtrip']['p50']:6.1f}/"
                              f"{res['roundtrip']['p99']:6.1f} µs idle {res['idle_usage']}", flush=True)
    stages = ("send_call", "inbound", "server_side", "echo_send_call", "outbound", "roundtrip")
    merged = {k: {st: {q: float(np.median([v[st][q] for v in rows])) for q in ("p50", "p99")} for st in stages}
              for k, rows in raw.items()}
    for k, rows in raw.items():
        merged[k]["idle_usage"] = rows[-1]["idle_usage"]
    results = {"card": card_name(), "env": environment(), "idle": idle_states(), "echo_cpus": echo_cpus,
               "client_cpus": client_cpus, "n": args.n, "rounds": args.rounds, "results": merged, "raw": raw}
    lines = [f"# ZeroMQ hop after an idle gap, with and without a CPU latency request: {results['card']}", "",
             f"cpuidle: {results['idle']}. Medians over {args.rounds} interleaved rounds of {args.n} frames; µs, "
             "p50 / p99.", "",
             md_row(["condition", "producer send()", "inbound", "echo server side", "echo send()", "outbound",
                     "round trip"]), md_row(["---"] * 7)]
    for k, m in merged.items():
        lines.append(md_row([k] + [f"{m[st]['p50']:.1f} / {m[st]['p99']:.1f}" for st in stages]))
    path = write_results(args.out, results, "\n".join(lines) + "\n", out_dir=args.out_dir)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
