"""The bare floors zmqrt is measured against, in one run: the driver alone, ZeroMQ alone, the minimal prototype.

Driver floors (host clock, per round trip, on ``zmqrt.cuda`` objects with the raw driver calls in the loop):
- empty kernel launch + ``cuStreamSynchronize``, and + event spin (``cuEventRecord`` then ``cuEventQuery``);
- 1 KiB: numpy copy into pinned memory, H2D (2 x 256 float32) + ``vadd`` + D2H (256 float32), + sync / + spin;
- the same three operations captured once as a CUDA graph, replayed with one ``cuGraphLaunch``, + sync / + spin;
- zero-copy: a kernel working in place on mapped pinned host memory (256 float32), + event spin.
ZeroMQ floors (producer round trip at ``--rate`` over ipc, open loop, from ``bench/roundtrip.py``):
- the bare msgpack echo and the minimal ZeroMQ -> CUDA graph -> ZeroMQ prototype (``bench/floor_servers.py``).
Every GPU path's output is checked against numpy once. These are floors, not targets: zmqrt's executor aims at
<= 1.2x the bare 1 KiB path (issue 2), its round trip at <= 1.1x the prototype (issue 6).

Usage: python3 bench/floors.py [--n 20000] [--warm 2000] [--rate 10000] [--modes block,spin] [--no-zmq]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import card_name, environment, md_row, summarize, time_loop, write_results  # noqa: E402

SRC = r"""
extern "C" __global__ void empty() {}
extern "C" __global__ void vadd(const float* a, const float* b, float* c, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x; if (i < n) c[i] = a[i] + b[i]; }
extern "C" __global__ void vinc(float* a, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x; if (i < n) a[i] = a[i] + 1.0f; }
"""

NEL = 256  # 1 KiB of float32 per array


def driver_floors(n: int, warm: int = 1000) -> dict[str, dict]:
    """The bare driver paths; returns ``{path: summarize(...)}`` in µs."""
    from cuda.bindings import driver as cu

    from zmqrt.compiler import compile_source
    from zmqrt.cuda import Device, DeviceBuffer, Event, Graph, KernelArgs, Module, PinnedBuffer, Stream

    dev = Device(0)
    ctx = dev.retain_context()
    images = compile_source(SRC, "floors.cu", dev.info.arch)
    module = Module(images.cubin, "floors cubin")
    k_empty, k_vadd, k_vinc = module.kernel("empty"), module.kernel("vadd"), module.kernel("vinc")
    stream = Stream(0)
    ev = Event(timing=False)
    s, e = stream.handle, ev.handle
    nb = NEL * 4
    h_in, h_out = PinnedBuffer(2 * nb), PinnedBuffer(nb)
    d_in, d_out = DeviceBuffer(2 * nb), DeviceBuffer(nb)
    args = KernelArgs(4)
    args.set_ptr(0, d_in.ptr)
    args.set_ptr(1, d_in.ptr + nb)
    args.set_ptr(2, d_out.ptr)
    args.set_i32(3, NEL)
    rng = np.random.default_rng()
    src = rng.standard_normal(2 * NEL).astype(np.float32)
    want = src[:NEL] + src[NEL:]
    src_u8 = src.view(np.uint8)
    in_view = h_in.view
    out_f32 = h_out.view.view(np.float32)
    f_empty, f_vadd, f_vinc = k_empty.func, k_vadd.func, k_vinc.func
    pa = args.address
    launch, sync, record, query = cu.cuLaunchKernel, cu.cuStreamSynchronize, cu.cuEventRecord, cu.cuEventQuery
    h2d, d2h = cu.cuMemcpyHtoDAsync, cu.cuMemcpyDtoHAsync
    d_in_h, d_out_h = d_in.handle, d_out.handle

    def spin() -> None:
        record(e, s)
        while int(query(e)[0]) != 0:
            pass

    def empty_sync():
        launch(f_empty, 1, 1, 1, 1, 1, 1, 0, s, 0, 0)
        sync(s)

    def empty_spin():
        launch(f_empty, 1, 1, 1, 1, 1, 1, 0, s, 0, 0)
        spin()

    def copies():
        in_view[:] = src_u8
        h2d(d_in_h, h_in.ptr, 2 * nb, s)
        launch(f_vadd, 1, 1, 1, 256, 1, 1, 0, s, pa, 0)
        d2h(h_out.ptr, d_out_h, nb, s)

    def vadd_sync():
        copies()
        sync(s)

    def vadd_spin():
        copies()
        spin()

    with Graph.capture(stream) as cap:
        h2d(d_in_h, h_in.ptr, 2 * nb, s)
        launch(f_vadd, 1, 1, 1, 256, 1, 1, 0, s, pa, 0)
        d2h(h_out.ptr, d_out_h, nb, s)
    graph = cap.graph
    g = graph.handle
    glaunch = cu.cuGraphLaunch

    def graph_sync():
        in_view[:] = src_u8
        glaunch(g, s)
        sync(s)

    def graph_spin():
        in_view[:] = src_u8
        glaunch(g, s)
        spin()

    mapped = PinnedBuffer(nb, mapped=True)
    m_f32 = mapped.view.view(np.float32)
    margs = KernelArgs(2)
    margs.set_ptr(0, mapped.device_ptr)
    margs.set_i32(1, NEL)
    ma = margs.address
    a_src = src[:NEL]

    def zero_copy_spin():
        m_f32[:] = a_src
        launch(f_vinc, 1, 1, 1, 256, 1, 1, 0, s, ma, 0)
        spin()

    # Each GPU path's output against numpy, once.
    for fn in (vadd_sync, vadd_spin, graph_sync, graph_spin):
        out_f32[:] = 0
        fn()
        np.testing.assert_allclose(out_f32, want, rtol=1e-6, err_msg=fn.__name__)
    zero_copy_spin()
    np.testing.assert_allclose(m_f32, a_src + 1.0, rtol=1e-6, err_msg="zero-copy")

    paths = {
        "empty launch + sync": empty_sync,
        "empty launch + event spin": empty_spin,
        "1 KiB H2D+vadd+D2H + sync": vadd_sync,
        "1 KiB H2D+vadd+D2H + event spin": vadd_spin,
        "1 KiB graph(H2D+vadd+D2H) + sync": graph_sync,
        "1 KiB graph(H2D+vadd+D2H) + event spin": graph_spin,
        "1 KiB zero-copy mapped vinc + event spin": zero_copy_spin,
    }
    samples: dict[str, list[int]] = {k: [] for k in paths}
    rounds = 5 if n >= 5000 else 1
    for _ in range(rounds):  # interleaved, so drift hits every path alike
        for name, fn in paths.items():
            samples[name] += time_loop(fn, n // rounds, warm=warm // rounds)
    out = {name: summarize(v) for name, v in samples.items()}
    for obj in (mapped, graph, h_in, h_out, d_in, d_out, ev, stream, module, ctx):
        obj.close()
    return out


def zmq_floors(n: int, warm: int, rate: float, modes: list[str]) -> dict[str, dict]:
    """Bare echo and prototype through ``bench.roundtrip.run_floor``: ``{"zmq echo [block]": {...}, ...}``."""
    from bench.floor_servers import echo_server, prototype_server
    from bench.roundtrip import run_floor

    args = SimpleNamespace(n=n, warm=warm, rate=rate)
    rng = np.random.default_rng()
    out: dict[str, dict] = {}
    for mode in modes:
        for name, target in (("zmq echo", echo_server), ("prototype", prototype_server)):
            rtt, server_side = run_floor(target, n + warm, mode == "spin", args, rng)
            out[f"{name} [{mode}]"] = {"roundtrip_us": rtt, "server_side_us": server_side}
            print(f"{name + ' [' + mode + ']':44s} RTT p50 {rtt.get('p50', float('nan')):8.2f} p99 "
                  f"{rtt.get('p99', float('nan')):8.2f} us | server p50 {server_side['p50']:6.2f} p99 "
                  f"{server_side['p99']:6.2f} us | lost {rtt.get('lost')} wrong {rtt.get('wrong_outputs')}",
                  flush=True)
    return out


def measure(n: int = 20000, warm: int = 2000, rate: float = 10_000.0, modes: tuple[str, ...] = ("block", "spin"),
            zmq: bool = True) -> dict:
    """Every floor in one run; a dict ready for ``write_results``."""
    results: dict = {"card": card_name(), "env": environment(), "n": n, "warm": warm, "rate_hz": rate,
                     "payload": "vector_add 2 x 256 float32 in, 256 out"}
    results["driver_us"] = driver_floors(n, min(warm, 1000))
    for name, row in results["driver_us"].items():
        print(f"{name:44s} p50 {row['p50']:8.2f} p99 {row['p99']:8.2f} p99.9 {row['p999']:8.2f} us", flush=True)
    if zmq:
        results["zmq"] = zmq_floors(n, warm, rate, list(modes))
    return results


def table(results: dict) -> str:
    lines = [f"# Floors: {results['card']}", "",
             "Bare driver round trips (host clock), µs; 1 KiB = 2 x 256 float32 in, 256 out.", "",
             md_row(["path", "p50", "p99", "p99.9", "max"]), md_row(["---"] * 5)]
    for name, r in results["driver_us"].items():
        lines.append(md_row([name, f"{r['p50']:.2f}", f"{r['p99']:.2f}", f"{r['p999']:.2f}", f"{r['max']:.1f}"]))
    if results.get("zmq"):
        lines += ["", f"Producer round trip at {results['rate_hz'] / 1e3:.0f} kHz over ipc, µs (server side: the "
                      "server's own receive-to-send timer).", "",
                  md_row(["path", "RTT p50", "RTT p99", "RTT p99.9", "server p50", "server p99", "lost"]),
                  md_row(["---"] * 7)]
        for name, row in results["zmq"].items():
            r, s = row["roundtrip_us"], row["server_side_us"]
            lines.append(md_row([name, f"{r.get('p50', float('nan')):.1f}", f"{r.get('p99', float('nan')):.1f}",
                                 f"{r.get('p999', float('nan')):.1f}", f"{s['p50']:.1f}", f"{s['p99']:.1f}",
                                 r.get("lost")]))
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20000, help="timed iterations / measured tasks per path")
    ap.add_argument("--warm", type=int, default=2000, help="warm-up iterations / tasks per path, not measured")
    ap.add_argument("--rate", type=float, default=10_000.0, help="ZeroMQ floors' send rate in Hz (default 10000)")
    ap.add_argument("--modes", default="block,spin", help="ZeroMQ floors' server modes: comma list of block, spin")
    ap.add_argument("--no-zmq", action="store_true", help="driver floors only")
    args = ap.parse_args()
    results = measure(args.n, args.warm, args.rate, tuple(args.modes.split(",")), zmq=not args.no_zmq)
    print(f"wrote {write_results('floors', results, table(results))}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
