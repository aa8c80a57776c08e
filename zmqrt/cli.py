"""The ``zmqrt`` command: serve, kernels, demo, stats, keys (and loadgen where installed)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from pathlib import Path

log = logging.getLogger("zmqrt")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _add_serve(sub) -> None:
    p = sub.add_parser("serve", help="run the task server",
                       description="Run a zmqrt server: PULL tasks on --ingest, run them on the GPU (or the CPU "
                                   "reference backend) under a real-time policy, PUSH each result to the task's "
                                   "reply_to. SIGINT/SIGTERM stop accepting, answer every queued task, exit 0.")
    p.add_argument("--config", metavar="FILE.toml", help="settings file (flags override it)")
    p.add_argument("--backend", choices=["auto", "cuda", "cpu"], help="auto (default) takes CUDA when a driver and "
                   "device answer, else the CPU backend")
    p.add_argument("--device", type=int, help="CUDA device ordinal (default 0)")
    p.add_argument("--ingest", metavar="EP", help="task endpoint to bind, tcp:// or ipc:// "
                   "(default ipc://$XDG_RUNTIME_DIR or /tmp/zmqrt-ingest.sock)")
    p.add_argument("--results", metavar="EP", help="bind a PUSH here for results of tasks without reply_to")
    p.add_argument("--stats", metavar="EP", help="bind a REP here answering msgpack stats snapshots")
    p.add_argument("--metrics-port", type=int, metavar="PORT", help="serve Prometheus metrics on 127.0.0.1:PORT")
    p.add_argument("--policy", choices=["edf", "fp", "rm", "ps"], help="scheduling policy (default edf): "
                   "earliest deadline first, fixed priority, rate monotonic, proportional share")
    p.add_argument("--lanes", type=int, help="concurrent execution lanes = CUDA streams (default 4)")
    p.add_argument("--max-task-bytes", type=int, metavar="N", help="largest inputs (and outputs) of one task "
                   "(default 1048576); lanes preallocate this much")
    p.add_argument("--priority-levels", type=int, help="number of priority levels, 0 most urgent (default 8)")
    p.add_argument("--queue-capacity", type=int, help="queued tasks per priority level before QUEUE_FULL")
    p.add_argument("--admission", choices=["reject", "flag"], help="infeasible deadline: reject at once "
                   "(default) or accept and flag")
    p.add_argument("--admission-margin", type=float, metavar="K", help="admission predicts a task's service as "
                   "mean + K mean absolute deviations of its kernel and size class (default 1, about p80: a task is "
                   "rejected when it would most likely finish late). A higher K rejects sooner (3 is near p99: on a "
                   "noisy host it rejected whole kernels for seconds, most of whose tasks would have made it)")
    p.add_argument("--expire", choices=["off", "late", "predicted"], help="at dispatch, expire tasks already late "
                   "or predicted to finish late (default predicted)")
    p.add_argument("--kernels-dir", action="append", metavar="DIR", help="directory of user kernels "
                   "(NAME.cu + NAME.toml); repeatable")
    p.add_argument("--cache-dir", metavar="DIR", help="compiled-kernel cache (default $ZMQRT_CACHE_DIR or "
                   "~/.cache/zmqrt)")
    p.add_argument("--spin", action="store_true", default=None, help="busy-poll even when idle (lowest latency, "
                   "burns a core)")
    p.add_argument("--idle-poll-us", type=float, metavar="US", help="without --spin: keep polling US µs after "
                   "the last piece of work before sleeping in recv, so that at a steady rate of a few kHz a task "
                   "finds the loop awake and warm while an idle server still sleeps (default 200, or 0 with "
                   "--fifo-priority; 0: sleep at once)")
    p.add_argument("--keep-warm-us", type=float, metavar="US", help="while the loop polls idle (--spin, or the "
                   "idle poll): every US µs, run the last task's decode, its input copy into an idle lane (nothing "
                   "started) and its result's encode again and discard them, so that a task arriving after idle "
                   "finds that code and data in the CPU's caches (default 20; 0: off)")
    p.add_argument("--resident", action="store_true", default=None, help="serve small vector_add and saxpy tasks "
                   "(up to 4096 elements, untimed) from a kernel resident on each lane, fed through mapped host "
                   "memory: no driver call per task (service p50 39.7 -> 31.0 µs on an H200 host), at the cost of "
                   "one SM per lane polling host memory over PCIe even when idle. Engines sharing a GPU "
                   "(--devices 0,0) need CUDA MPS for it")
    p.add_argument("--stage-timing-every", type=int, metavar="N", help="record GPU events around h2d/kernel/d2h "
                   "on every Nth task (default 256; 1: every task; 0: never). A timed task costs 20 to 25 µs more "
                   "(150 to 200 µs with --resident)")
    p.add_argument("--stage-timing-gap-ms", type=float, metavar="MS", help="and at most one timed task per MS "
                   "milliseconds (default 100; 0: no limit), so sampling never weighs on more than a few tasks in a "
                   "thousand at high rates")
    p.add_argument("--batch-max", type=int, metavar="K", help="run up to K queued tasks of one form of a row-wise "
                   "kernel (vector_add, saxpy, fft) as one launch when a lane frees, growing the batch only while the "
                   "earliest deadline in it still holds; a loop that falls behind reads up to K waiting frames and "
                   "decodes those of one form as one batch (see --no-bulk). A throughput setting: under bursts it "
                   "moves waiting from ZeroMQ's queue into service time (default 1: off; 128 measured best for "
                   "throughput: 101k to 115k tasks/s per engine on an H200 host)")
    p.add_argument("--no-bulk", dest="bulk", action="store_false", default=None, help="with --batch-max: read a "
                   "backlog task by task into the queue instead of as batches decoded and answered with numpy "
                   "(ingest/bulk.py; on by default, the fast path for throughput)")
    p.add_argument("--p95-target-us", type=float, help="warn in the monitor line when P95 exceeds this")
    p.add_argument("--cpu", type=int, metavar="N", help="pin the loop thread to CPU N (keep producers and other "
                   "spinning work off that core); ZeroMQ's I/O thread keeps the other CPUs. With several engines "
                   "(--devices), engine i's loop runs on CPU N+i and no engine's other threads run on those CPUs")
    p.add_argument("--fifo-priority", type=int, metavar="P", help="run the loop thread SCHED_FIFO at priority P "
                   "where permitted (needs CAP_SYS_NICE; logged and ignored otherwise). Default: normal scheduling")
    p.add_argument("--cpu-latency-us", type=int, metavar="US", help="while serving, hold a PM QoS CPU latency "
                   "request of US µs (/dev/cpu_dma_latency; needs root, logged and ignored otherwise). 0 keeps every "
                   "CPU polling instead of halting when idle, so that a send after an idle gap does not wait for "
                   "ZeroMQ's I/O thread's CPU to wake from halt. Only where the kernel has a cpuidle driver: the GPU "
                   "hosts we measured have none, and there it changed nothing (bench/NOTES.md 40). Costs the "
                   "machine's idle power. Default: no request")
    p.add_argument("--watchdog-ms", type=float, metavar="MS", help="a task still running after MS ms is a hung GPU: "
                   "its lane's task gets GPU_FAULT and the engine restarts (default 2000; 0: off)")
    p.add_argument("--trace", dest="trace_path", metavar="FILE.npy", help="record a per-task stage trace (receipt, "
                   "decoded, admitted, submitted, done, encoded, sent) and write it here at shutdown; read it with "
                   "zmqrt.trace.summarize")
    g = p.add_argument_group("security (CURVE encryption + key authentication of producers; give both or neither)")
    g.add_argument("--curve-secret", metavar="FILE", help="the server's secret certificate NAME.key_secret (from "
                   "`zmqrt keys`); producers need the matching NAME.key. Encrypts the ingest socket")
    g.add_argument("--allowed-keys", metavar="DIR", help="directory of the producers' public certificates (*.key) "
                   "that may send tasks, read at start; any other producer gets nothing in and no result")
    g = p.add_argument_group("supervision (the engine runs in a child process: a sticky CUDA error or a hung kernel "
                             "needs a fresh process, and the supervisor starts one)")
    g.add_argument("--supervise", action=argparse.BooleanOptionalAction, default=None, help="restart the engine when "
                   "it exits after a fatal GPU fault or crashes; tasks sent meanwhile wait in the producers' queues "
                   "(default on; --no-supervise serves in this process)")
    g.add_argument("--devices", type=_device_list, metavar="LIST", help="one engine per CUDA device, e.g. 0,1 (a "
                   "device may repeat). This process binds --ingest and deals tasks to the engines through an "
                   "internal ipc hop (one more ZeroMQ hop: 30 to 40 µs more round trip at 10 kHz on the H200 hosts, "
                   "bench/NOTES.md 41; --fanout direct: none); each engine binds "
                   "--stats/--results with .N (ipc) or port+N (tcp) appended, and --metrics-port+N. Implies "
                   "--supervise")
    g.add_argument("--fanout", choices=("proxy", "direct"), help="with --devices: how tasks reach the engines. "
                   "proxy (default): this process binds --ingest and deals them out, so producers need one endpoint. "
                   "direct: engine i binds --ingest with .i (ipc) or port+i (tcp) itself and producers connect to "
                   "all of them (comma-separated, e.g. tcp://h:5555,tcp://h:5556 for zmqrt loadgen and Client): one "
                   "ZeroMQ hop less, and no fan-out threads that every task waits in")
    g.add_argument("--fanout-io-threads", type=int, metavar="N", help="with --devices: ZeroMQ I/O threads of the "
                   "fan-out, which moves every task in and out (default 2: one was the bottleneck near 200k tasks/s)")
    g.add_argument("--ingest-workers", type=int, metavar="N", help="experimental: N relay processes between --ingest "
                   "and the engine(s) do the per-task recv and send, and each engine reads their messages as batches "
                   "in its one CUDA context (zmqrt/relay.py). Under overload on a 32-core H200 host, 2 to 4 relays "
                   "raised one engine from 160k-165k to 175k-181k tasks/s; below that they add latency (service "
                   "p50 about 1 ms against 0.5). Goes with --batch-max (e.g. 256); implies --supervise (default 0: "
                   "off)")
    g.add_argument("--max-restarts", type=int, default=5, metavar="N", help="give up (exit 4) when an engine needs "
                   "more than N restarts within --restart-window (default 5)")
    g.add_argument("--restart-window", type=float, default=60.0, metavar="S", help="seconds (default 60)")
    p.add_argument("-v", "--verbose", action="store_true")


def _device_list(text: str) -> list[int]:
    try:
        devices = [int(d) for d in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected device ordinals like 0,1, got {text!r}") from None
    if any(d < 0 for d in devices):
        raise argparse.ArgumentTypeError(f"device ordinals are >= 0, got {text!r}")
    return devices


def cmd_serve(args) -> int:
    from .config import build_config

    _setup_logging(args.verbose)
    overrides = {k: getattr(args, k) for k in (
        "backend", "device", "ingest", "results", "stats", "metrics_port", "policy", "lanes", "max_task_bytes",
        "priority_levels", "queue_capacity", "admission", "admission_margin", "expire", "cache_dir", "spin",
        "idle_poll_us", "keep_warm_us", "stage_timing_every", "stage_timing_gap_ms",
        "p95_target_us", "curve_secret", "allowed_keys", "cpu", "fifo_priority", "cpu_latency_us", "watchdog_ms",
        "trace_path", "batch_max", "bulk", "resident", "ingest_workers", "fanout_io_threads", "fanout")}
    overrides["kernels_dirs"] = args.kernels_dir
    try:
        cfg = build_config(args.config, **overrides)
        if cfg.curve_secret is not None:  # bad key files: a one-line error now, not a traceback from Server
            from .security import load_allowed, load_secret
            load_secret(cfg.curve_secret)
            load_allowed(cfg.allowed_keys)
    except (ValueError, OSError, RuntimeError) as e:
        print(f"zmqrt serve: {e}", file=sys.stderr)
        return 2
    if args.devices is not None and (args.supervise is False or args.device is not None):
        print("zmqrt serve: --devices runs supervised engines, one per device: it goes with neither --no-supervise "
              "nor --device", file=sys.stderr)
        return 2
    if args.supervise is False and cfg.ingest_workers:
        print("zmqrt serve: --ingest-workers runs relay processes beside a supervised engine: it does not go with "
              "--no-supervise", file=sys.stderr)
        return 2
    with _cpu_latency_request(cfg.cpu_latency_us):
        return _serve(cfg, args)


def _serve(cfg, args) -> int:
    from .server import run_server

    if args.supervise is False:
        return run_server(cfg)
    import zmq

    from .supervisor import Supervisor

    try:
        sup = Supervisor(cfg, devices=args.devices, max_restarts=args.max_restarts,
                         restart_window_s=args.restart_window)
        sup.install_signal_handlers()
        return sup.run()
    except (RuntimeError, ValueError, OSError, zmq.ZMQError) as e:  # an engine failed to start, ingest in use...
        print(f"zmqrt serve: {e}", file=sys.stderr)
        return 1


@contextlib.contextmanager
def _cpu_latency_request(latency_us: int | None):
    """Hold ``--cpu-latency-us`` in this process for the whole serve (engines included: the request is system-wide).
    Not permitted or not there: logged, and serving goes on without it, as --fifo-priority does."""
    from .cpu_latency import CpuLatencyError, CpuLatencyRequest, describe_idle, idle_states

    if latency_us is None:
        yield None
        return
    log = logging.getLogger("zmqrt")
    try:
        req = CpuLatencyRequest(latency_us)
    except CpuLatencyError as e:
        log.warning("--cpu-latency-us %d not applied: %s", latency_us, e.strerror)
        yield None
        return
    with req:
        idle = idle_states()
        log.info("holding a CPU latency request of %d µs (%s)", latency_us, describe_idle(idle))
        if idle["driver"] in (None, "none"):
            log.warning("--cpu-latency-us: this kernel has no cpuidle driver, so idle CPUs halt whatever the request "
                        "says; it changes nothing here (as on the GPU hosts in bench/NOTES.md 40)")
        yield req


def cmd_kernels(args) -> int:
    from .compiler import KernelCache, compile_registry, default_cache_dir, nvrtc_version
    from .kernels.registry import load_registry

    registry = load_registry(args.kernels_dir or (), ptx_dir=args.ptx_dir)
    arch = args.arch
    if arch is None:
        from .backends.select import cuda_available
        ok, _ = cuda_available(0)
        if ok:
            from .cuda import Device
            arch = Device(0).info.arch
        else:
            arch = "sm_90"
            print("no CUDA device here: compiling for sm_90 (use --arch to choose)")
    out_dir = Path(args.out) if args.out else default_cache_dir() / "ptx"
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"NVRTC {'.'.join(map(str, nvrtc_version()))}, arch {arch}, PTX to {out_dir}")
    cache = None if args.no_cache else KernelCache()
    compiled = compile_registry(registry, arch, cache, want_cubin=True)
    by_path = {str(Path(c.path).resolve()): c for c in compiled.values()}  # a relative --kernels-dir too
    for spec in registry:
        comp = by_path[str(spec.source_path.resolve())]
        ptx_path = out_dir / f"{spec.name}.{arch}.ptx"
        ptx_path.write_bytes(comp.ptx)
        ins = ", ".join(f"{i.name}:{'|'.join(i.dtypes)}" for i in spec.inputs)
        params = ", ".join(f"{p.name}:{p.kind}" + (f"={p.default}" if p.default is not None else "")
                           for p in spec.params)
        src = "cache" if comp.from_cache else f"compiled {comp.seconds * 1e3:.0f} ms"
        print(f"  {spec.name:<12} ({ins}{'; ' + params if params else ''})  {spec.source_id} -> {ptx_path.name} "
              f"[{len(comp.ptx)} B PTX, {len(comp.cubin or b'')} B CUBIN, {src}]")
    print(f"{len(registry)} kernels, {len(compiled)} sources: all compiled")
    return 0


def cmd_keys(args) -> int:
    from .security import make_keys

    try:
        public, secret = make_keys(args.directory, args.name)
    except (ValueError, OSError) as e:
        print(f"zmqrt keys: {e}", file=sys.stderr)
        return 1
    print(public)
    print(secret)
    print(f"give {public} to the other side (a producer's goes into the server's --allowed-keys directory); "
          f"keep {secret} private", file=sys.stderr)
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    report = run_demo(backend=args.backend, stream_s=args.stream_seconds, rate_hz=args.rate, lanes=args.lanes)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=float) + "\n")
    return 0 if report.get("server_exit_code") == 0 else 1


def cmd_stats(args) -> int:
    from .statsview import fetch_stats

    snap = fetch_stats(args.endpoint, args.timeout)
    if snap is None:
        print(f"zmqrt stats: no answer from {args.endpoint} within {args.timeout} s", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(snap, indent=1, default=str))
        return 0
    from .statsview import render

    render(snap)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zmqrt", description="Real-time GPU task server over ZeroMQ. Producers "
                                     "PUSH msgpack tasks; zmqrt schedules them (EDF/RM/FP/PS) and runs NVRTC-"
                                     "compiled CUDA kernels through the driver API; one result per task.")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_serve(sub)

    p = sub.add_parser("kernels", help="list the kernels and compile every one to PTX (no GPU needed)")
    p.add_argument("--ptx-dir", metavar="DIR", help="builtin kernel sources (default: the shipped ptx/)")
    p.add_argument("--kernels-dir", action="append", metavar="DIR", help="user kernel directory; repeatable")
    p.add_argument("--arch", help="target such as sm_90 (default: this GPU's, or sm_90 without one)")
    p.add_argument("--out", metavar="DIR", help="where to write NAME.ARCH.ptx (default: <cache dir>/ptx)")
    p.add_argument("--no-cache", action="store_true", help="compile everything, ignoring the cache")

    p = sub.add_parser("demo", help="the seed's demonstration, for real: single task, 10 kHz stream, scenarios")
    p.add_argument("--backend", choices=["auto", "cuda", "cpu"], default="auto")
    p.add_argument("--stream-seconds", type=float, default=2.0, help="length of the 10 kHz stream (default 2)")
    p.add_argument("--rate", type=float, default=10_000.0, help="stream rate in Hz (default 10000)")
    p.add_argument("--lanes", type=int, default=4)
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")

    p = sub.add_parser("stats", help="print a running server's stats snapshot")
    p.add_argument("--endpoint", required=True, metavar="EP", help="the server's --stats endpoint")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for an answer")
    p.add_argument("--json", action="store_true", help="raw JSON instead of a table")

    p = sub.add_parser("keys", help="make a CURVE key pair (certificate files) for a server or a producer",
                       description="Write DIR/NAME.key (public: give it to the other side; a producer's goes into "
                                   "the server's --allowed-keys directory) and DIR/NAME.key_secret (mode 0600: "
                                   "the server's goes to serve --curve-secret, a producer's stays with it). "
                                   "Prints the two paths, public first. Never overwrites an existing key.")
    p.add_argument("directory", metavar="DIR", help="where to write the files (created if missing)")
    p.add_argument("--name", required=True, help="base name of the files, e.g. server or the producer's name")

    try:
        from .loadgen_cli import add_loadgen_parser
        add_loadgen_parser(sub)
    except ImportError:
        pass
    return parser


COMMANDS = {"serve": cmd_serve, "kernels": cmd_kernels, "demo": cmd_demo, "stats": cmd_stats, "keys": cmd_keys}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = COMMANDS.get(args.command) or getattr(args, "handler", None)
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
