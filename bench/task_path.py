"""The per-task path's CPU cost in one process: is the service time the code's, or the cold caches between tasks?

One server (CPU backend with a resident-like stand-in: the inputs copied into fixed slots and added there, no
timing) is fed 1 KiB ``vector_add`` frames by direct calls, as its loop would: ``_accept`` (decode, admission,
submit) and then ``_poll_lanes`` (collect, encode, send to a real ZeroMQ PULL socket). Each task is timed from the
call to ``_accept`` to the stand-in's submit, and from there to the result sent, two ways:
- back to back: the path stays in the caches;
- spaced: between tasks the thread spins for ``--gap-us`` on what the server's spin loop calls (ZMQ_EVENTS of a
  socket and the clock), as at 10 kHz.
The GPU is not used: on the GPU host, the difference between this figure and the server's receipt to sent there,
less the GPU's part, is what the loop's surroundings add.

With ``--versus-floor BLOCKS`` it also times the critical path before and after the GPU against a floor-like path
(the resident prototype's host side), interleaved in blocks in the same process.

Usage: python3 bench/task_path.py [--n 20000] [--gap-us 100] [--keep-warm-us 20] [--versus-floor 30]
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import card_name, environment, md_row, summarize, write_results  # noqa: E402


def _stand_in(lanes: int):
    from zmqrt.backends.cpu import CpuBackend
    from zmqrt.kernels import load_registry

    class ResidentLike(CpuBackend):
        """A resident lane's host side: two copies into fixed slots; outputs are views of a fixed slot."""

        def __init__(self) -> None:
            super().__init__(load_registry(()), lanes)
            self._in = [np.empty(2048, np.float32) for _ in range(lanes)]
            self._out = [np.empty(1024, np.float32) for _ in range(lanes)]
            self._in_bytes = [memoryview(a).cast("B") for a in self._in]
            self._views: list = [None] * lanes
            self.submitted_ns = self.copied_ns = 0

        def submit(self, lane, spec, inputs, checked, timed=True):
            self.submitted_ns = time.perf_counter_ns()
            a, b = inputs
            n = a.size
            slot = self._in[lane]
            slot[:n] = a
            slot[n:2 * n] = b
            self.copied_ns = time.perf_counter_ns()  # where the GPU would start: the inputs are in place
            self._add(lane, n)

        def submit_frame(self, lane, spec, frame, offsets, views, checked, timed=True):
            """The resident lane's copies from the frame's bytes (CudaBackend.submit_frame), then the sum."""
            self.submitted_ns = time.perf_counter_ns()
            n = views[0][1]
            nbytes = n * 4
            src, dst = memoryview(frame), self._in_bytes[lane]
            o0, o1 = offsets
            dst[0:nbytes] = src[o0:o0 + nbytes]
            dst[nbytes:2 * nbytes] = src[o1:o1 + nbytes]
            self.copied_ns = time.perf_counter_ns()
            self._add(lane, n)
            return True

        def _add(self, lane, n):
            """The GPU's part: the sum of the slot's two inputs; the outputs are a view of the lane's output slot."""
            slot = self._in[lane]
            out = self._out[lane][:n]
            np.add(slot[:n], slot[n:2 * n], out=out)
            self._views[lane] = [out]

        def warm(self, lane, spec, inputs, checked):
            a, b = inputs
            n = a.size
            slot = self._in[lane]
            slot[:n] = a
            slot[n:2 * n] = b

        def collect(self, lane):
            return self._views[lane]

        def stage_times(self, lane):
            return None

    return ResidentLike()


def _setup(keep_warm_us: float = 0.0):
    """(ZeroMQ context, the results' PULL socket, its endpoint, the stand-in backend, a server on it)."""
    import zmq

    from zmqrt.config import ServerConfig
    from zmqrt.server import Server

    tmp = tempfile.mkdtemp(prefix="ztp")
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVHWM, 0)
    reply_to = f"ipc://{tmp}/results"
    pull.bind(reply_to)
    cfg = ServerConfig(backend="cpu", ingest=f"ipc://{tmp}/in", linger_ms=0, ingest_hwm=0, result_hwm=0,
                       stage_timing_every=0, calibrate=False, spin=True, keep_warm_us=keep_warm_us)
    backend = _stand_in(cfg.lanes)
    return ctx, pull, reply_to, backend, Server(cfg, backend=backend)


def _drain(pull) -> None:
    import zmq

    try:
        while True:
            pull.recv(zmq.NOBLOCK)
    except zmq.Again:
        pass


def versus_floor(blocks: int, block_n: int = 500) -> dict:
    """zmqrt's critical path against a floor-like one (the resident prototype's host side: ``msgpack.unpackb``,
    two ``np.frombuffer`` views, two copies into a slot, then ``msgpack.packb`` of the result and a send), in one
    process, ``block_n`` tasks of each in turn per block (the machine's drift cancels), back to back. Per path:
    before the GPU (from the frame to the inputs copied into the slot) and after it (zmqrt: the lane seen done to
    the result sent; the floor: its pack and send), µs."""
    import msgpack
    import zmq

    from ingest.protocol import encode_task

    ctx, pull, reply_to, backend, server = _setup()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.SNDHWM, 0)
    push.connect(reply_to)
    pc = time.perf_counter_ns
    marks = {"seen": 0, "sent": 0}
    poll, send = backend.poll, server.router.send

    def seen(lane):  # the stand-in's poll, timed when it reports the lane done
        done = poll(lane)
        if done:
            marks["seen"] = pc()
        return done

    def sent(reply, payload):
        ok = send(reply, payload)
        marks["sent"] = pc()
        return ok

    backend.poll, server.router.send = seen, sent
    slot, out = np.empty(2048, np.float32), np.empty(1024, np.float32)

    def floor(frame: bytes) -> tuple[int, int]:
        t0 = pc()
        msg = msgpack.unpackb(frame)
        a = np.frombuffer(msg["inputs"][0]["data"], np.float32)
        b = np.frombuffer(msg["inputs"][1]["data"], np.float32)
        n = a.size
        slot[:n] = a
        slot[n:2 * n] = b
        t1 = pc()
        np.add(slot[:n], slot[n:2 * n], out=out[:n])
        t2 = pc()
        push.send(msgpack.packb({"id": msg["id"], "status": "ok",
                                 "outputs": [{"dtype": "float32", "shape": [n], "data": out[:n].tobytes()}]}))
        return t1 - t0, pc() - t2

    def zmqrt(frame: bytes) -> tuple[int, int]:
        t0 = pc()
        server._accept(frame)
        while server._busy_lanes:
            server._poll_lanes()
        server._flush_books(1)
        return backend.copied_ns - t0, marks["sent"] - marks["seen"]

    rng = np.random.default_rng()
    pool = [list(rng.standard_normal((2, 256), dtype=np.float32)) for _ in range(64)]
    got: dict[str, tuple[list[int], list[int]]] = {"floor": ([], []), "zmqrt": ([], [])}
    gc.collect()
    gc.disable()
    try:
        for blk in range(blocks + 2):  # the first two blocks warm up (templates, encoders)
            frames = [encode_task(f"t{blk}-{i}", "vector_add", pool[i % 64], priority=0, deadline_us=1000.0,
                                  reply_to=reply_to, sent_ns=time.time_ns()) for i in range(block_n)]
            for name, path in (("floor", floor), ("zmqrt", zmqrt)):
                for frame in frames:
                    before, after = path(frame)
                    if blk >= 2:
                        got[name][0].append(before)
                        got[name][1].append(after)
                _drain(pull)
    finally:
        gc.enable()
        server.close()
        push.close(linger=0)
        pull.close(linger=0)
        ctx.term()
    return {name: {"before_gpu_us": summarize(a), "after_gpu_us": summarize(b)} for name, (a, b) in got.items()}


def run(n: int, gap_us: float, keep_warm_us: float = 0.0) -> dict:
    import zmq

    from ingest.protocol import encode_task

    ctx, pull, reply_to, backend, server = _setup(keep_warm_us)
    rng = np.random.default_rng()
    pool = [rng.standard_normal((2, 256), dtype=np.float32) for _ in range(64)]
    frames = [encode_task(i, "vector_add", list(pool[i % 64]), priority=0, deadline_us=1000.0, reply_to=reply_to,
                          sent_ns=time.time_ns()) for i in range(n + 200)]
    events, pollin = int(zmq.EVENTS), int(zmq.POLLIN)
    readable = server.receiver.socket.getsockopt
    pc = time.perf_counter_ns
    gap_ns = int(gap_us * 1000)
    warm_ns = int(keep_warm_us * 1000)
    out: dict[str, dict] = {}
    try:
        for mode, spaced in (("back to back", False), (f"spaced {gap_us:g} µs", True)):
            to_submit, to_sent = [], []
            gc.collect()
            gc.freeze()
            gc.disable()
            for i, frame in enumerate(frames):
                if spaced:
                    until = pc() + gap_ns
                    next_warm = pc() + warm_ns
                    while pc() < until:  # what the spin loop touches between tasks
                        readable(events) & pollin
                        if warm_ns and pc() >= next_warm:  # as the loop does with keep_warm_us
                            server._warm()
                            next_warm = pc() + warm_ns
                t0 = pc()
                server._accept(frame)
                while server._busy_lanes:
                    server._poll_lanes()
                t2 = pc()
                server._flush_books(1)
                if i >= 200:  # the first tasks build the form's template and encoder
                    to_submit.append(backend.submitted_ns - t0)
                    to_sent.append(t2 - backend.submitted_ns)
                if i % 256 == 0:
                    _drain(pull)
            gc.enable()
            out[mode] = {"to_submit_us": summarize(to_submit), "submit_to_sent_us": summarize(to_sent),
                         "total_us": summarize(np.add(to_submit, to_sent))}
            # Fresh ids for the next mode (the same ids again would be fine: each finished before the next came).
            first = len(out) * (n + 200)
            frames = [encode_task(first + i, "vector_add", list(pool[i % 64]), priority=0, deadline_us=1000.0,
                                  reply_to=reply_to, sent_ns=time.time_ns()) for i in range(n + 200)]
    finally:
        server.close()
        pull.close(linger=0)
        ctx.term()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20000, help="measured tasks per mode (default 20000)")
    ap.add_argument("--gap-us", type=float, default=100.0, help="spin between tasks in the spaced mode, µs "
                    "(default 100: 10 kHz)")
    ap.add_argument("--keep-warm-us", type=float, default=0.0, metavar="US", help="spaced mode: run the server's "
                    "warm pass (keep_warm_us) every US µs of the gap (default 0: off)")
    ap.add_argument("--versus-floor", type=int, default=0, metavar="BLOCKS", help="also time the critical path "
                    "before and after the GPU against a floor-like path (the resident prototype's host side), 500 "
                    "tasks of each in turn per block (default 0: not run)")
    ap.add_argument("--out", default="task_path", help="result name under bench/results (default task_path)")
    args = ap.parse_args()
    modes = run(args.n, args.gap_us, args.keep_warm_us)
    floor = versus_floor(args.versus_floor) if args.versus_floor else None
    lines = [f"# The per-task path's CPU cost, one process, resident-like stand-in: {card_name()}", "",
             "µs per 1 KiB vector_add; to submit = _accept to the backend's submit; then to the result sent.", "",
             md_row(["mode", "to submit p50", "p99", "submit to sent p50", "p99", "total p50", "p99"]),
             md_row(["---"] * 7)]
    for mode, r in modes.items():
        a, b, t = r["to_submit_us"], r["submit_to_sent_us"], r["total_us"]
        print(f"{mode:16s} to submit p50 {a['p50']:6.2f} p99 {a['p99']:6.2f} | submit to sent p50 {b['p50']:6.2f} "
              f"p99 {b['p99']:6.2f} | total p50 {t['p50']:6.2f} p99 {t['p99']:6.2f} µs", flush=True)
        lines.append(md_row([mode, f"{a['p50']:.2f}", f"{a['p99']:.2f}", f"{b['p50']:.2f}", f"{b['p99']:.2f}",
                             f"{t['p50']:.2f}", f"{t['p99']:.2f}"]))
    if floor:
        lines += ["", "Against a floor-like path (the resident prototype's host side), interleaved, back to back:", "",
                  md_row(["path", "before the GPU p50", "p99", "after the GPU p50", "p99"]), md_row(["---"] * 5)]
        for name, r in floor.items():
            a, b = r["before_gpu_us"], r["after_gpu_us"]
            print(f"{name:6s} before the GPU p50 {a['p50']:6.2f} p99 {a['p99']:6.2f} | after p50 {b['p50']:6.2f} "
                  f"p99 {b['p99']:6.2f} µs", flush=True)
            lines.append(md_row([name, f"{a['p50']:.2f}", f"{a['p99']:.2f}", f"{b['p50']:.2f}", f"{b['p99']:.2f}"]))
    write_results(args.out, {"card": card_name(), "env": environment(), "n": args.n, "gap_us": args.gap_us,
                             "keep_warm_us": args.keep_warm_us, "modes": modes, "versus_floor": floor},
                  "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
