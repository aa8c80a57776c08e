"""Supervised engines: every engine (a :class:`~zmqrt.server.Server` and its CUDA context) runs in a child process
that the supervisor restarts when it dies; with several devices the supervisor also fans tasks out to them.

Why a child process: a sticky CUDA error (illegal address, ``__trap``) poisons the context for the rest of the
process, and a hung kernel cannot be stopped from the host. The engine then exits ``EXIT_GPU_FAULT`` and only a
fresh process gets a working GPU back. Children are started with multiprocessing *spawn*: a process forked after
cuInit inherits CUDA state it cannot use.

Topology:

* One engine: the child binds ``cfg.ingest`` itself, so a task pays no extra hop (each ZeroMQ hop costs 10+ µs).
  While it restarts, producers' PUSH sockets keep the tasks they send queued and deliver them once the new engine
  binds the same endpoint: a ``tcp://...:*`` port is pinned to the one first bound, and libzmq re-binds an ipc
  path, removing the socket file a killed engine left behind.
* Several engines (``devices=[0, 1]``): the parent binds ``cfg.ingest`` (a PULL, with CURVE when configured) and a
  PUSH on a private ipc endpoint that every engine's PULL connects to; ``zmq.proxy`` (C, GIL released) moves the
  frames. PUSH deals round-robin over the engines connected *now* and skips a full one, so while an engine
  restarts, tasks go to the others or wait in the proxy. Results go from each engine straight to the reply_to.
* Several engines, ``fanout="direct"``: no fan-out. Engine ``i`` binds ``cfg.ingest`` with ``.i`` (ipc) or port + i
  (tcp), and producers connect their PUSH to all of them (``ingest_endpoint`` lists them, comma-separated, as the
  clients take it). A task then crosses one ZeroMQ hop instead of three threads; while an engine restarts, the
  producers' PUSH (``IMMEDIATE`` with several endpoints) deals to the others.
* Relays (``cfg.ingest_workers`` N > 0, ``zmqrt.relay``): the fan-out deals the frames to N relay processes instead;
  relay ``r`` hands them, many per message, to engine ``r % engines``, which binds a private ipc endpoint for its
  relays, and sends every batch's result rows back through the relay they came from. One engine, one CUDA context;
  the per-task socket calls run in N processes. A relay that dies is restarted; the frames it held are lost.

What a dying engine loses: after a fatal GPU fault it still answers every task it had read (GPU_FAULT for those
running, SHUTDOWN for the rest). An engine killed by a signal answers nothing it had read, and frames ZeroMQ had
already queued to it are dropped with its connection.
"""

from __future__ import annotations

import collections
import logging
import multiprocessing as mp
import os
import shutil
import signal
import stat
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait

import zmq

from .config import ServerConfig
from .relay import RELAY_HWM, relay_endpoints

log = logging.getLogger("zmqrt")

EXIT_GAVE_UP = 4  # the supervisor's exit status after too many restarts in the window
# Frames queued towards one engine (the fan-out's send side and the engine's receive side each): a backlog beyond
# that waits in the proxy, where any engine can take it, rather than behind one engine that may die with it or fall
# behind. 1000 each way let a busy engine hold up to 40 ms of work at 50k tasks/s, waiting before the engine's
# receipt, so outside its service time. 64 is the throughput setting's --batch-max. (Session 16, call 9: no
# measurable change in the producers' round-trip p99, which stays 2 to 12 ms from other causes; bench/NOTES.md 31.)
_ENGINE_HWM = 64
_CURVE_FIELDS = ("curve_secret", "allowed_keys")


def _engine_main(cfg: ServerConfig, ready: Connection, index: int, log_level: int, server_factory) -> None:
    """Body of one engine process: ``run_server``, plus telling the supervisor when it serves and where."""
    logging.basicConfig(level=log_level, format=f"%(asctime)s %(levelname)s %(name)s[engine {index}]: %(message)s")
    from .server import EXIT_GPU_FAULT, Server

    server = (server_factory or Server)(cfg)  # kernels compiled, buffers preallocated, sockets bound
    for line in server.describe():
        log.info("%s", line)
    server.install_signal_handlers()  # before "ready": from then on SIGTERM must drain, not kill
    ready.send({"pid": os.getpid(), "ingest": server.receiver.endpoint,
                "results": server.router.default_endpoint,
                "stats": server.stats_socket.getsockopt_string(zmq.LAST_ENDPOINT) if server.stats_socket else None,
                "metrics_port": server.metrics.port if server.metrics else None})
    ready.close()
    prof_dir = os.environ.get("ZMQRT_ENGINE_PROFILE")  # a diagnostic (bench/NOTES.md 29): cProfile to this dir
    if prof_dir:
        import cProfile

        prof = cProfile.Profile()
        prof.runcall(server.serve_forever)
        prof.dump_stats(os.path.join(prof_dir, f"engine-{index}-{os.getpid()}.prof"))
    else:
        server.serve_forever()
    if server.fault is not None:
        log.error("engine stopped after a GPU fault (%s); exit %d", server.fault, EXIT_GPU_FAULT)
        sys.exit(EXIT_GPU_FAULT)
    sys.exit(0)


def _close_fds(*fds: int) -> None:
    for fd in fds:
        os.close(fd)


def _describe_exit(code: int | None) -> str:
    from .server import EXIT_GPU_FAULT

    if code == EXIT_GPU_FAULT:
        return f"stopped after a fatal GPU fault (exit {code})"
    if code is not None and code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def _nth_endpoint(ep: str | None, i: int) -> str | None:
    """Engine ``i``'s own copy of an endpoint every engine binds (stats, results): ipc path ``.i``, tcp port + i."""
    if ep is None:
        return None
    if ep.startswith("ipc://"):
        return f"{ep}.{i}"
    host, _, port = ep.rpartition(":")
    return ep if port == "*" else f"{host}:{int(port) + i}"


def engine_cpus(cpu: int | None, engines: int) -> tuple[int, ...]:
    """The loop CPUs of ``engines`` engines started with ``--cpu cpu``: ``cpu``, ``cpu + 1``, ... (none without)."""
    return () if cpu is None else tuple(range(cpu, cpu + engines))


def _nth_trace(path: str | None, i: int) -> str | None:
    """Engine ``i``'s own stage trace file: ``NAME.i.npy`` for ``NAME.npy``."""
    if path is None:
        return None
    stem = path[:-4] if path.endswith(".npy") else path
    return f"{stem}.{i}.npy"


def _nth_port(port: int | None, i: int) -> int | None:
    return port + i if port else port  # None stays off, 0 stays "any free port"


@dataclass
class _Relay:
    index: int
    engine_ep: str
    results_ep: str
    ready: object  # multiprocessing Event: its sockets are connected
    drained: object  # multiprocessing Event: after the stop, what it read is on its way to the engine
    proc: mp.process.BaseProcess | None = None


def _relay_process(index: int, cfg: ServerConfig, fanout_ep: str, engine_ep: str, results_ep: str, stop, ready,
                   drained, engines_done, log_level: int) -> None:
    from .relay import Relay

    logging.basicConfig(level=log_level, format=f"%(asctime)s %(levelname)s %(name)s[relay {index}]: %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # stopped by the supervisor, after its engines (zmqrt.relay)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with Relay(index, cfg, fanout_ep, engine_ep, results_ep) as relay:
        ready.set()
        relay.run(stop, drained, engines_done)


@dataclass
class _Engine:
    index: int
    cfg: ServerConfig
    proc: mp.process.BaseProcess | None = None
    ready: Connection | None = None  # read end; closed once the engine reported
    is_ready: bool = False
    died_at: float | None = None  # when the death of the previous process was seen (restart timing)
    started_at: float = 0.0


class _FanOut:
    """The several-engine front: PULL at the public ingest -> ``zmq.proxy_steerable`` -> PUSH that engines connect to.

    The sockets belong to the proxy thread once it starts; the parent talks to it only over the control pair."""

    def __init__(self, cfg: ServerConfig, backend_ep: str) -> None:
        from ingest.protocol import Limits

        self.ctx = zmq.Context(io_threads=cfg.fanout_io_threads)
        self.curve = None
        front = self.ctx.socket(zmq.PULL)
        back = self.ctx.socket(zmq.PUSH)
        ctl, self._ctl = self.ctx.socket(zmq.PAIR), self.ctx.socket(zmq.PAIR)
        try:
            for sock in (front, back, ctl, self._ctl):
                sock.setsockopt(zmq.LINGER, 0)
            front.setsockopt(zmq.RCVHWM, cfg.ingest_hwm)
            # Same rule as the engine's own Receiver: libzmq drops an oversized frame and disconnects its sender.
            front.setsockopt(zmq.MAXMSGSIZE, Limits(max_task_bytes=cfg.max_task_bytes).max_frame_bytes)
            secret, allowed = (getattr(cfg, f, None) for f in _CURVE_FIELDS)
            if secret or allowed:  # CURVE is checked here, at the edge; the private hop to the engines is plain
                from .security import CurveServer

                self.curve = CurveServer(self.ctx, secret, allowed)
                self.curve.apply(front)
            front.bind(cfg.ingest)
            self.endpoint = front.getsockopt_string(zmq.LAST_ENDPOINT)
            back.setsockopt(zmq.SNDHWM, _ENGINE_HWM)
            back.bind(backend_ep)
            ctl.bind("inproc://zmqrt-fanout-control")
            self._ctl.connect("inproc://zmqrt-fanout-control")
        except BaseException:
            for sock in (front, back, ctl, self._ctl):
                sock.close(linger=0)
            if self.curve is not None:
                self.curve.close()
            self.ctx.term()
            raise
        self._back = back
        self._thread = threading.Thread(target=self._run, args=(front, back, ctl, cfg.ingest_hwm),
                                        name="zmqrt-fanout", daemon=True)
        self._thread.start()
        self._closed = False

    @staticmethod
    def _run(front: zmq.Socket, back: zmq.Socket, ctl: zmq.Socket, backlog: int) -> None:
        try:
            # libzmq's proxy moves a frame only when the PUSH can take it: with no engine connected (all restarting)
            # frames wait in the PULL's queue, and a TERMINATE is still seen.
            zmq.proxy_steerable(front, back, None, ctl)
            # Stopped: frames already taken from producers go on to the engines, which answer them while draining
            # (bounded: producers may go on sending).
            for _ in range(backlog):
                back.send(front.recv(zmq.NOBLOCK), zmq.NOBLOCK)
        except (zmq.Again, zmq.ContextTerminated):
            pass
        finally:  # ``back`` stays open while the engines drain what it handed them; close() closes it
            front.close(linger=0)
            ctl.close()

    def stop_proxy(self) -> None:
        """Stop taking tasks from producers (what they still send stays queued on their side). Idempotent."""
        if self._thread.is_alive():
            try:
                self._ctl.send(b"TERMINATE", zmq.NOBLOCK)
            except zmq.Again:  # the proxy thread is gone already
                return
            self._thread.join(10)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.stop_proxy()
        # After the engines stopped (Supervisor.close): what is still queued here has no engine left to take it.
        self._back.close(linger=0)
        self._ctl.close(linger=0)
        if self.curve is not None:
            self.curve.close()
        self.ctx.term()


def mps_running() -> bool:
    """Whether a CUDA MPS control daemon serves this process's clients: its control pipe exists in
    ``CUDA_MPS_PIPE_DIRECTORY`` (default ``/tmp/nvidia-mps``), where the engines' CUDA clients will look for it
    (a named pipe, or a socket)."""
    pipe_dir = os.environ.get("CUDA_MPS_PIPE_DIRECTORY") or "/tmp/nvidia-mps"
    try:
        mode = os.stat(os.path.join(pipe_dir, "control")).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


class Supervisor:
    """Run ``cfg``'s engine (``devices`` None or one device) or one engine per entry of ``devices`` in child
    processes; restart an engine that dies; stop them all on :meth:`stop` (SIGINT/SIGTERM with
    :meth:`install_signal_handlers`).

    Restart policy, by the engine's exit: ``EXIT_GPU_FAULT``, death by a signal or any other non-zero status: start
    a new engine at once (counted in ``restarts``; ``restart_seconds`` holds, per restart, the time from seeing the
    death to the new engine reporting ready). More than ``max_restarts`` restarts within ``restart_window_s``: give
    up, stop the others, :meth:`run` returns ``EXIT_GAVE_UP``. Exit 0: the engine was stopped on request (SIGTERM
    or SIGINT sent to it directly, e.g. Ctrl-C to the process group): the supervisor stops the whole service, exit 0.

    ``server_factory`` (a picklable ``cfg -> Server``, default ``Server``) lets tests run an engine with an
    injected fault. A device may repeat in ``devices``: engines then share it.
    """

    def __init__(self, cfg: ServerConfig, devices: list[int] | None = None, max_restarts: int = 5,
                 restart_window_s: float = 60.0, *, start_timeout_s: float = 300.0, server_factory=None,
                 log_level: int | None = None) -> None:
        if devices is not None and not devices:
            raise ValueError("devices must name at least one device (or be None: cfg.device)")
        if max_restarts < 0 or restart_window_s <= 0:
            raise ValueError("max_restarts must be >= 0 and restart_window_s > 0")
        self.cfg = cfg
        self.devices = list(devices) if devices is not None else [cfg.device]
        if cfg.resident and len(set(self.devices)) < len(self.devices) and not mps_running():
            # Each engine is a context of its own, and kernels of different contexts do not run side by side: a
            # never-ending resident block would leave the other engines on that GPU only time slices. Under CUDA
            # MPS the engines' kernels do run side by side.
            listed = ",".join(map(str, self.devices))
            raise ValueError(f"--resident needs one engine per GPU, or CUDA MPS; devices {listed} share a GPU "
                             "between engines and no MPS control daemon answers (drop --resident, name each device "
                             "once, or start nvidia-cuda-mps-control)")
        self.max_restarts = max_restarts
        self.restart_window_s = restart_window_s
        self.start_timeout_s = start_timeout_s
        self.server_factory = server_factory
        self.log_level = log_level if log_level is not None else log.getEffectiveLevel()
        self.restarts = 0
        self.restart_seconds: list[float] = []
        self.gave_up: str | None = None
        self._recent: collections.deque[float] = collections.deque()  # times of restarts within the window
        self._mp = mp.get_context("spawn")
        self._engines: list[_Engine] = []
        self._fanout: _FanOut | None = None
        self._tmp: str | None = None
        self._backend_ep: str | None = None  # the fan-out's private PUSH: engines or relays connect to it
        self._relays: list[_Relay] = []
        self._relay_stop = self._mp.Event()
        self._engines_done = self._mp.Event()
        self.relay_restarts = 0
        self._started = False
        self._closed = False
        self._close_lock = threading.Lock()
        self._stopping = threading.Event()
        # stop() may run in a signal handler: it only sets the event and writes a byte here, which wakes the monitor.
        # The pipe lives as long as this object, so a late stop() never writes to a reused descriptor.
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        weakref.finalize(self, _close_fds, self._wake_r, self._wake_w)
        # What producers connect to once started: with several engines, the fan-out's endpoint, or with
        # fanout="direct" every engine's own (``ingest_endpoint`` then joins them with commas, as the clients take).
        self.ingest_endpoint: str | None = None
        self.ingest_endpoints: list[str] = []

    # ------------------------------------------------------------------ start
    def _engine_cfgs(self) -> list[ServerConfig]:
        cfg = self.cfg
        relays = cfg.ingest_workers
        if len(self.devices) == 1 and not relays:
            return [cfg.replace(device=self.devices[0])]
        many = len(self.devices) > 1
        direct = cfg.fanout == "direct" and many
        if direct:
            wirings = self._direct_wirings()
            plain: dict = {}  # each engine binds a public endpoint: CURVE stays on
        else:
            wirings = self._fanout_wirings()
            plain = {f: None for f in _CURVE_FIELDS if hasattr(cfg, f)}  # no CURVE on the private hop
        cfgs = []
        # --cpu N with several engines: engine i's loop on CPU N + i, and no engine's other threads on any of them.
        loop_cpus = engine_cpus(cfg.cpu, len(self.devices)) if many else ()
        for i, (d, wiring) in enumerate(zip(self.devices, wirings)):  # noqa: B905 - one wiring per device
            own = dict(stats=_nth_endpoint(cfg.stats, i), results=_nth_endpoint(cfg.results, i),
                       metrics_port=_nth_port(cfg.metrics_port, i),
                       trace_path=_nth_trace(cfg.trace_path, i)) if many else {}
            if loop_cpus:
                own.update(cpu=loop_cpus[i], cpu_keep_off=tuple(c for c in loop_cpus if c != loop_cpus[i]))
            cfgs.append(cfg.replace(device=d, **wiring, **own, **plain))
        return cfgs

    def _fanout_wirings(self) -> list[dict]:
        """Bind the fan-out (and start the relays' endpoints): each engine's ingest settings behind it."""
        cfg, relays = self.cfg, self.cfg.ingest_workers
        self._tmp = tempfile.mkdtemp(prefix="zmqrt-sup-")  # private: only our engines connect to the backend
        backend_ep = self._backend_ep = f"ipc://{self._tmp}/engines"
        self._fanout = _FanOut(cfg, backend_ep)
        self.ingest_endpoint = self._fanout.endpoint
        self.ingest_endpoints = [self.ingest_endpoint]
        engine_in, relay_out = relay_endpoints(self._tmp, relays, len(self.devices))
        self._relays = [_Relay(r, engine_in[r % len(self.devices)], relay_out[r], self._mp.Event(), self._mp.Event())
                        for r in range(relays)]
        if relays:  # engine i binds its relays' endpoint; relay r's results endpoint is relay_out[r]
            return [dict(ingest=engine_in[i], ingest_connect=False, ingest_hwm=RELAY_HWM,
                         relay_results=tuple(relay_out)) for i in range(len(self.devices))]
        return [dict(ingest=backend_ep, ingest_connect=True, ingest_hwm=_ENGINE_HWM)] * len(self.devices)

    def _direct_wirings(self) -> list[dict]:
        """``fanout="direct"``: engine i binds its own copy of the ingest endpoint; producers connect to them all."""
        cfg = self.cfg
        if cfg.ingest_workers:
            raise ValueError("--fanout direct gives each engine its own public endpoint; relays (--ingest-workers) "
                             "sit behind the fan-out's one endpoint: use --fanout proxy with them")
        eps = [_nth_endpoint(cfg.ingest, i) for i in range(len(self.devices))]
        if len(set(eps)) < len(eps):  # tcp port "*": every engine would pick its own, unknown to the producers
            raise ValueError(f"--fanout direct needs an ingest endpoint with a fixed tcp port or an ipc path (engine "
                             f"i binds port + i or path.i), not {cfg.ingest!r}")
        taken = {}  # every endpoint an engine binds besides its ingest -> which flag it comes from
        for name, base in (("stats", cfg.stats), ("results", cfg.results)):
            if base is not None:
                taken.update((_nth_endpoint(base, i), name) for i in range(len(self.devices)))
        clash = sorted(set(eps) & set(taken))
        if clash:
            raise ValueError(f"--fanout direct: engine ingest endpoint(s) {', '.join(clash)} are also --"
                             f"{taken[clash[0]]} endpoints of an engine; leave {len(eps)} ports between them")
        self.ingest_endpoints = eps
        self.ingest_endpoint = ",".join(eps)  # what producers connect to: ZeroMQ endpoints never hold a comma
        # A small queue per producer connection, as behind the fan-out: a producer's PUSH skips an engine whose
        # queue is full, so a slow engine does not hold a growing share of the work.
        return [dict(ingest=ep, ingest_connect=False, ingest_hwm=_ENGINE_HWM) for ep in eps]

    def _spawn_relay(self, relay: _Relay) -> None:
        relay.ready.clear()
        proc = self._mp.Process(target=_relay_process, name=f"zmqrt-relay-{relay.index}", daemon=True,
                                args=(relay.index, self.cfg, self._backend_ep, relay.engine_ep,
                                      relay.results_ep, self._relay_stop, relay.ready, relay.drained,
                                      self._engines_done, self.log_level))
        proc.start()
        relay.proc = proc

    def _spawn(self, engine: _Engine) -> None:
        reader, writer = self._mp.Pipe(duplex=False)
        proc = self._mp.Process(target=_engine_main, name=f"zmqrt-engine-{engine.index}", daemon=True,
                                args=(engine.cfg, writer, engine.index, self.log_level, self.server_factory))
        proc.start()
        writer.close()  # the child holds its own copy; ours would keep EOF from showing if it dies
        engine.proc, engine.ready, engine.is_ready = proc, reader, False
        engine.started_at = time.monotonic()

    def _take_ready(self, engine: _Engine) -> None:
        """Read the engine's "serving" report, if there; pin the endpoints it resolved (``:*``, port 0) so that
        a restarted engine is found at the same addresses."""
        conn = engine.ready
        if conn is None or not conn.poll():
            return
        try:
            info = conn.recv()
        except EOFError:  # died before reporting; its sentinel says so
            info = None
        conn.close()
        engine.ready = None
        if info is None:
            return
        engine.is_ready = True
        pinned = {k: info[k] for k in ("results", "stats", "metrics_port") if info[k] is not None}
        if not engine.cfg.ingest_connect and not engine.cfg.relay_results:
            pinned["ingest"] = info["ingest"]
            if len(self._engines) == 1:  # with --fanout direct, each engine's: ingest_endpoint lists them all
                self.ingest_endpoint = info["ingest"]
                self.ingest_endpoints = [info["ingest"]]
        engine.cfg = engine.cfg.replace(**pinned)
        if engine.died_at is not None:
            took = time.monotonic() - engine.died_at
            engine.died_at = None
            self.restart_seconds.append(took)
            log.warning("engine %d serving again (pid %d), %.3f s after its predecessor died (restart %d)",
                        engine.index, info["pid"], took, self.restarts)
        else:
            log.info("engine %d (device %d, pid %d) serving", engine.index, engine.cfg.device, info["pid"])

    def start(self) -> None:
        """Start every engine and return once all serve. Raises RuntimeError if one fails to start."""
        if self._started:
            return
        self._started = True
        self._engines = [_Engine(i, c) for i, c in enumerate(self._engine_cfgs())]
        if self._fanout is not None:
            log.info("supervisor: ingest %s fanned out to %d engines on devices %s", self.ingest_endpoint,
                     len(self._engines), ",".join(map(str, self.devices)))
        elif len(self._engines) > 1:
            log.info("supervisor: %d engines on devices %s bind their own ingest (--fanout direct); producers "
                     "connect to all of %s", len(self._engines), ",".join(map(str, self.devices)),
                     self.ingest_endpoint)
        if self._relays:
            log.info("supervisor: %d relay process(es) between the fan-out and the engine(s)", len(self._relays))
        for relay in self._relays:
            self._spawn_relay(relay)
        for engine in self._engines:
            self._spawn(engine)
        deadline = time.monotonic() + self.start_timeout_s
        while not all(e.is_ready for e in self._engines):
            pending = [e for e in self._engines if not e.is_ready]
            wait([self._wake_r] + [e.ready for e in pending if e.ready] + [e.proc.sentinel for e in pending],
                 max(0.0, deadline - time.monotonic()))
            if self._stopping.is_set():
                return
            for e in pending:
                self._take_ready(e)
                if not e.is_ready and not e.proc.is_alive():
                    raise RuntimeError(f"engine {e.index} (device {e.cfg.device}) failed to start: "
                                       f"it {_describe_exit(e.proc.exitcode)}; see its log above")
            if time.monotonic() > deadline:
                raise RuntimeError(f"engines did not start within {self.start_timeout_s:g} s")
        for relay in self._relays:  # spawned before the engines: long ready by now
            if not relay.ready.wait(max(0.0, deadline - time.monotonic())):
                raise RuntimeError(f"relay {relay.index} did not start: it "
                                   f"{_describe_exit(relay.proc.exitcode) if not relay.proc.is_alive() else 'hangs'}")

    # ------------------------------------------------------------------ run
    def run(self) -> int:
        """Start (if not yet), supervise until stopped or given up, stop everything. 0, or ``EXIT_GAVE_UP``."""
        try:
            self.start()
            return self._monitor()
        finally:
            self.close()

    def _monitor(self) -> int:
        while not self._stopping.is_set():
            starting = [e for e in self._engines if not e.is_ready]
            timeout = None
            if starting:
                timeout = max(0.0, min(e.started_at for e in starting) + self.start_timeout_s - time.monotonic())
            wait([self._wake_r] + [e.proc.sentinel for e in self._engines] + [e.ready for e in starting if e.ready]
                 + [r.proc.sentinel for r in self._relays], timeout)
            if self._stopping.is_set():
                break
            for relay in self._relays:
                if not relay.proc.is_alive():
                    relay.proc.join()
                    self.relay_restarts += 1
                    log.error("relay %d (pid %d) %s; the frames it held are lost; starting a new one", relay.index,
                              relay.proc.pid, _describe_exit(relay.proc.exitcode))
                    self._spawn_relay(relay)
            for engine in self._engines:
                self._take_ready(engine)
                if engine.proc.is_alive():
                    if not engine.is_ready and time.monotonic() - engine.started_at > self.start_timeout_s:
                        log.error("engine %d did not start within %g s; killing it", engine.index,
                                  self.start_timeout_s)
                        engine.proc.kill()  # its death is handled on the next pass
                    continue
                status = self._on_exit(engine)
                if status is not None:
                    return status
        return 0

    def _on_exit(self, engine: _Engine) -> int | None:
        """An engine process ended: restart it (None) or end supervision (the exit status)."""
        engine.proc.join()
        code = engine.proc.exitcode
        if code == 0:
            log.warning("engine %d was stopped from outside the supervisor (exit 0); stopping the service",
                        engine.index)
            return 0
        now = time.monotonic()
        why = _describe_exit(code)
        while self._recent and now - self._recent[0] > self.restart_window_s:
            self._recent.popleft()
        if len(self._recent) >= self.max_restarts:
            self.gave_up = (f"engine {engine.index} {why}, after {len(self._recent)} restart(s) within "
                            f"{self.restart_window_s:g} s (the limit is {self.max_restarts}): giving up")
            log.error("%s", self.gave_up)
            return EXIT_GAVE_UP
        self._recent.append(now)
        self.restarts += 1
        log.warning("engine %d (pid %d) %s; starting a new one (restart %d, %d within %g s)", engine.index,
                    engine.proc.pid, why, self.restarts, len(self._recent), self.restart_window_s)
        engine.died_at = now
        self._spawn(engine)
        return None

    # ------------------------------------------------------------------ stop
    def stop(self) -> None:
        """Ask :meth:`run` to stop every engine and return 0. Thread- and signal-safe."""
        self._stopping.set()
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:  # pipe full: the monitor has plenty to wake it
            pass

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stop())

    def relay_pids(self) -> list[int | None]:
        return [r.proc.pid if r.proc is not None else None for r in self._relays]

    def engine_pids(self) -> list[int | None]:
        return [e.proc.pid if e.proc is not None else None for e in self._engines]

    def close(self) -> None:
        """Stop taking tasks, SIGTERM every engine (each drains and answers what it holds), wait for them, release
        the proxy. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._stopping.set()
        if self._fanout is not None:
            self._fanout.stop_proxy()
        live_relays = [r for r in self._relays if r.proc is not None and r.proc.is_alive()]
        if live_relays:  # they hand the engines what they hold before the engines drain (zmqrt.relay)
            self._relay_stop.set()
            deadline = time.monotonic() + 5.0
            for relay in live_relays:
                if not relay.drained.wait(max(0.0, deadline - time.monotonic())):
                    log.error("relay %d did not hand over its frames within 5 s", relay.index)
        live = [e.proc for e in self._engines if e.proc is not None and e.proc.is_alive()]
        for proc in live:
            proc.terminate()
        grace = self.cfg.drain_timeout_s + self.cfg.linger_ms / 1000 + 10
        deadline = time.monotonic() + grace
        for proc in live:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                log.error("engine pid %d did not stop within %.0f s of SIGTERM; killing it", proc.pid, grace)
                proc.kill()
                proc.join()
        self._engines_done.set()  # the relays deliver the engines' last results and exit
        for relay in live_relays:
            relay.proc.join(self.cfg.linger_ms / 1000 + 5)
            if relay.proc.is_alive():
                log.error("relay pid %d did not stop; killing it", relay.proc.pid)
                relay.proc.kill()
                relay.proc.join()
        for engine in self._engines:
            if engine.ready is not None:
                engine.ready.close()
                engine.ready = None
        if self._fanout is not None:
            self._fanout.close()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
        codes = [e.proc.exitcode for e in self._engines if e.proc is not None]
        log.info("supervisor: stopped; %d restart(s); engine exit codes %s", self.restarts, codes)

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
