"""The supervisor on the CPU backend, through real sockets: restarts after a (simulated) GPU fault or a crash, gives
up after too many, stops on SIGTERM, and fans tasks out to several engines.

A GPU fault is injected with :class:`TrapCpuBackend`: the CPU backend, except that ``fault_trap`` with ``trap=1``
(tests/fault_kernels) fails the way the CUDA backend does when the kernel executes ``__trap()``: the launch is
accepted and the lane's completion check raises a sticky ``CudaError``. The real thing is tests/test_gpu_fault.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
from cuda.bindings import driver as cu

from ingest.client import Client
from zmqrt.backends.cpu import CpuBackend
from zmqrt.config import ServerConfig, validate
from zmqrt.cuda import CudaError
from zmqrt.kernels.registry import load_registry
from zmqrt.server import Server
from zmqrt.statsview import fetch_stats
from zmqrt.supervisor import EXIT_GAVE_UP, Supervisor, _FanOut, _nth_endpoint, _nth_trace, mps_running

FAULT_KERNELS = str(Path(__file__).resolve().parent / "fault_kernels")


class TrapCpuBackend(CpuBackend):
    """CPU backend whose ``fault_trap(trap=1)`` faults like a trapping CUDA kernel (sticky, seen at completion)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._trapped: set[int] = set()

    def submit(self, lane, spec, inputs, checked, timed=True) -> None:
        if spec.name == "fault_trap" and checked.params["trap"]:
            self._trapped.add(lane)  # a launch is asynchronous: the fault shows when the lane is polled
            return
        super().submit(lane, spec, inputs, checked, timed)

    def poll(self, lane: int) -> bool:
        if lane in self._trapped:
            raise CudaError("cuEventQuery", cu.CUresult.CUDA_ERROR_LAUNCH_FAILED)
        return True


def trap_cpu_engine(cfg: ServerConfig) -> Server:
    """``server_factory`` for the supervisor: runs in the (spawned) engine process."""
    registry = load_registry(cfg.kernels_dirs)
    return Server(cfg, backend=TrapCpuBackend(registry, lanes=cfg.lanes, max_task_bytes=cfg.max_task_bytes),
                  registry=registry)


def test_trap_backend_fails_like_the_gpu():
    with pytest.raises(CudaError) as err:
        backend = TrapCpuBackend(load_registry([FAULT_KERNELS]), lanes=1)
        spec = load_registry([FAULT_KERNELS]).get("fault_trap")
        x = np.ones(4, np.float32)
        backend.submit(0, spec, [x], spec.check([x], {"trap": 1}))
        backend.poll(0)
    assert err.value.sticky


@contextlib.contextmanager
def supervised(ingest: str, devices=None, max_restarts: int = 5, **overrides):
    """A Supervisor of CPU engines (with the trap backend) whose monitor runs in a thread; yields (sup, outcome)."""
    settings = dict(backend="cpu", ingest=ingest, lanes=2, calibrate=False, monitor_interval_s=0.2,
                    kernels_dirs=[FAULT_KERNELS], drain_timeout_s=2.0, linger_ms=1000)
    settings.update(overrides)
    sup = Supervisor(ServerConfig(**settings), devices=devices, max_restarts=max_restarts, restart_window_s=60.0,
                     start_timeout_s=60.0, server_factory=trap_cpu_engine)
    outcome: dict = {}
    try:
        sup.start()
        thread = threading.Thread(target=lambda: outcome.setdefault("rc", sup.run()), daemon=True)
        thread.start()
        yield sup, outcome
        sup.stop()
        thread.join(30)
        assert not thread.is_alive(), "supervisor did not stop"
    finally:
        sup.close()


def wait_for(cond, timeout_s: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def vector_add_ok(client: Client, n: int = 16, timeout_s: float = 30.0) -> None:
    a = np.arange(n, dtype=np.float32)
    res = client.call("vector_add", a, a, timeout_s=timeout_s)
    assert res.ok, (res.code, res.message)
    np.testing.assert_array_equal(res.outputs[0], a + a)


def each_answered_once(client: Client, count: int) -> None:
    """``count`` tasks, each answered right, and no second result for any of them."""
    xs = [np.full(8, i, np.float32) for i in range(count)]
    futs = [client.submit("vector_add", x, np.ones(8, np.float32)) for x in xs]
    for x, f in zip(xs, futs, strict=True):
        res = f.result(30)
        assert res.ok, (res.code, res.message)
        np.testing.assert_array_equal(res.outputs[0], x + 1)
    time.sleep(0.2)  # a duplicate result would come right behind the first
    assert client.unknown_results == 0


def send_during_restart(sup: Supervisor, client: Client, count: int = 20) -> list:
    """Tasks sent after the old engine died and before the new one serves: they must all be run by the new one."""
    wait_for(lambda: sup.restarts >= 1, what="the supervisor to see the engine die")
    xs = [np.full(8, i, np.float32) for i in range(count)]
    futs = [client.submit("vector_add", x, x) for x in xs]
    assert not sup.restart_seconds, "the new engine was already serving: nothing was sent during the restart"
    for x, f in zip(xs, futs, strict=True):
        res = f.result(30)
        assert res.ok, (res.code, res.message)
        np.testing.assert_array_equal(res.outputs[0], x + x)
    return futs


@pytest.fixture
def ingest_ep(endpoint):
    return endpoint()


def test_gpu_fault_answers_the_task_and_the_engine_is_restarted(ingest_ep):
    with supervised(ingest_ep) as (sup, _), Client(sup.ingest_endpoint, timeout_s=30) as client:
        vector_add_ok(client)
        x = np.arange(4, dtype=np.float32)
        assert client.call("fault_trap", x).outputs[0].tolist() == x.tolist()  # trap=0: a plain copy
        old_pid = sup.engine_pids()[0]
        res = client.call("fault_trap", x, params={"trap": 1})
        assert res.status.value == "error" and res.code.value == "GPU_FAULT", (res.code, res.message)
        send_during_restart(sup, client)
        assert sup.restarts == 1 and len(sup.restart_seconds) == 1
        assert sup.engine_pids()[0] != old_pid
        vector_add_ok(client)
        assert client.unknown_results == 0


def test_killed_engine_is_restarted_and_tasks_sent_meanwhile_are_run(ingest_ep):
    with supervised(ingest_ep) as (sup, _), Client(sup.ingest_endpoint, timeout_s=30) as client:
        vector_add_ok(client)
        os.kill(sup.engine_pids()[0], signal.SIGKILL)
        send_during_restart(sup, client)
        assert sup.restarts == 1 and sup.restart_seconds[0] > 0
        vector_add_ok(client)


def test_gives_up_after_too_many_restarts(ipc_endpoint):
    with supervised(ipc_endpoint(), max_restarts=1) as (sup, outcome), \
            Client(sup.ingest_endpoint, timeout_s=30) as client:
        vector_add_ok(client)
        res = client.call("fault_trap", np.ones(4, np.float32), params={"trap": 1})
        assert res.code.value == "GPU_FAULT"
        wait_for(lambda: len(sup.restart_seconds) == 1, what="the first restart")
        vector_add_ok(client)
        os.kill(sup.engine_pids()[0], signal.SIGKILL)  # the second death within the window: one too many
        wait_for(lambda: "rc" in outcome, what="the supervisor to give up")
        assert outcome["rc"] == EXIT_GAVE_UP
        assert sup.restarts == 1 and "giving up" in sup.gave_up and "SIGKILL" in sup.gave_up


def test_engine_stopped_directly_stops_the_service(ipc_endpoint):
    with supervised(ipc_endpoint()) as (sup, outcome):
        os.kill(sup.engine_pids()[0], signal.SIGTERM)  # e.g. Ctrl-C reaching the whole process group
        wait_for(lambda: "rc" in outcome, what="the supervisor to stop")
        assert outcome["rc"] == 0 and sup.restarts == 0


def test_engine_that_cannot_start_is_an_error_not_a_restart_loop(ipc_endpoint):
    cfg = ServerConfig(backend="cpu", ingest=ipc_endpoint(), calibrate=False, kernels_dirs=["/nonexistent/kernels"])
    with Supervisor(cfg, start_timeout_s=60) as sup, pytest.raises(RuntimeError, match="failed to start"):
        sup.start()
    sup.close()  # idempotent


def _stats(endpoint: str) -> dict:
    snap = fetch_stats(endpoint, timeout_s=10)
    assert snap is not None, f"no stats answer from {endpoint}"
    return snap


def test_two_engines_share_the_tasks_each_answered_once(ingest_ep, ipc_endpoint):
    stats = ipc_endpoint()
    with supervised(ingest_ep, devices=[0, 0], stats=stats) as (sup, _), \
            Client(sup.ingest_endpoint, timeout_s=30) as client:
        assert len(set(sup.engine_pids())) == 2

        def served() -> list[int]:
            return [_stats(_nth_endpoint(stats, i))["counters"]["ok"] for i in range(2)]

        # "Ready" means an engine serves; its connection to the proxy completes a moment later (under load, a
        # while): until then PUSH deals every task to the other one.
        def both_connected() -> bool:
            vector_add_ok(client)
            return min(served()) > 0

        wait_for(both_connected, what="both engines to take tasks")
        before = served()
        each_answered_once(client, 300)
        delta = [after - b for after, b in zip(served(), before, strict=True)]
        assert sum(delta) == 300 and min(delta) > 0, delta

        # One engine faults: its task is answered GPU_FAULT, the other engine goes on serving, and the faulted
        # one comes back.
        res = client.call("fault_trap", np.ones(4, np.float32), params={"trap": 1})
        assert res.code.value == "GPU_FAULT"
        wait_for(lambda: sup.restarts == 1, what="the supervisor to see the engine die")
        for _ in range(20):
            vector_add_ok(client)
        wait_for(lambda: len(sup.restart_seconds) == 1, what="the restart")
        each_answered_once(client, 50)


def test_fan_out_tasks_wait_in_the_proxy_while_every_engine_restarts(ipc_endpoint):
    with supervised(ipc_endpoint(), devices=[0, 0]) as (sup, _), Client(sup.ingest_endpoint, timeout_s=30) as c:
        vector_add_ok(c)
        for pid in sup.engine_pids():
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: sup.restarts == 2, what="both deaths")
        futs = [c.submit("vector_add", np.full(8, i, np.float32), np.zeros(8, np.float32)) for i in range(20)]
        assert len(sup.restart_seconds) < 2, "both engines were back before the tasks were sent"
        assert [f.result(30).outputs[0][0] for f in futs] == list(range(20))


def test_fan_out_applies_curve_at_the_edge(tmp_path, ipc_endpoint):
    security = pytest.importorskip("zmqrt.security")
    _, server_secret = security.make_keys(tmp_path / "server", "server")
    producer_public, producer_secret = security.make_keys(tmp_path / "producer", "producer")
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "producer.key").write_bytes(Path(producer_public).read_bytes())
    with supervised(ipc_endpoint(), devices=[0, 0], curve_secret=server_secret, allowed_keys=str(allowed)) as (
            sup, _):
        with Client(sup.ingest_endpoint, timeout_s=30, curve_secret=producer_secret,
                    server_public=str(tmp_path / "server" / "server.key")) as c:
            vector_add_ok(c)
        with Client(sup.ingest_endpoint, timeout_s=1) as plain, pytest.raises(TimeoutError):
            plain.call("vector_add", np.ones(4, np.float32), np.ones(4, np.float32))


def test_direct_fanout_engines_bind_their_own_ingest(ipc_endpoint):
    ingest, stats = ipc_endpoint(), ipc_endpoint()
    with supervised(ingest, devices=[0, 0], stats=stats, fanout="direct") as (sup, _):
        assert sup._fanout is None  # no proxy and no fan-out threads in this process
        assert sup.ingest_endpoints == [f"{ingest}.0", f"{ingest}.1"]
        assert sup.ingest_endpoint == f"{ingest}.0,{ingest}.1"
        with Client(sup.ingest_endpoint, timeout_s=30) as client:
            vector_add_ok(client)
            each_answered_once(client, 300)
        served = [_stats(_nth_endpoint(stats, i))["counters"]["ok"] for i in range(2)]
        assert sum(served) == 301 and min(served) > 0, served  # the producer's PUSH dealt to both engines


def test_direct_fanout_deals_around_a_dead_engine(ipc_endpoint):
    with supervised(ipc_endpoint(), devices=[0, 0], fanout="direct") as (sup, _), \
            Client(sup.ingest_endpoint, timeout_s=30) as client:
        vector_add_ok(client)
        os.kill(sup.engine_pids()[1], signal.SIGKILL)
        wait_for(lambda: sup.restarts == 1, what="the supervisor to see the engine die")
        # The producer's I/O thread drops the dead connection when its socket closes, within a few ms; a spawned
        # CPU engine needs over a second to come back, checked below. (IMMEDIATE: no queue waits for a dead peer.)
        time.sleep(0.2)
        futs = [client.submit("vector_add", np.full(8, i, np.float32), np.zeros(8, np.float32)) for i in range(20)]
        assert [f.result(30).outputs[0][0] for f in futs] == list(range(20))
        assert not sup.restart_seconds, "the engine was back before the tasks were sent: nothing was dealt around it"
        wait_for(lambda: len(sup.restart_seconds) == 1, what="the restart")
        vector_add_ok(client)


def test_direct_fanout_refuses_what_it_cannot_wire():
    def cfg(**kw):
        return ServerConfig(backend="cpu", fanout="direct", **kw)

    with pytest.raises(ValueError, match="fixed tcp port"):
        Supervisor(cfg(ingest="tcp://127.0.0.1:*"), devices=[0, 0]).start()
    with pytest.raises(ValueError, match="--stats endpoints"):
        Supervisor(cfg(ingest="tcp://127.0.0.1:6000", stats="tcp://127.0.0.1:6001"), devices=[0, 0]).start()
    with pytest.raises(ValueError, match=r"6006 are also --results"):  # engine 0's ingest is engine 2's results
        Supervisor(cfg(ingest="tcp://127.0.0.1:6006", results="tcp://127.0.0.1:6004"), devices=[0, 0, 0]).start()
    with pytest.raises(ValueError, match="ingest-workers"):
        Supervisor(cfg(ingest="tcp://127.0.0.1:6000", ingest_workers=2), devices=[0, 0]).start()
    with pytest.raises(ValueError, match="fanout must be proxy or direct"):
        validate(ServerConfig(fanout="both"))


def test_connect_ingest_takes_several_endpoints():
    from ingest._sockets import MULTI_ENDPOINT_HWM, connect_ingest

    ctx = zmq.Context()
    try:
        one, many = ctx.socket(zmq.PUSH), ctx.socket(zmq.PUSH)
        one.setsockopt(zmq.SNDHWM, 0)
        many.setsockopt(zmq.SNDHWM, 0)
        assert connect_ingest(one, "tcp://127.0.0.1:6100") == 1
        assert one.getsockopt(zmq.IMMEDIATE) == 0 and one.getsockopt(zmq.SNDHWM) == 0  # waits for its one server
        assert connect_ingest(many, "tcp://127.0.0.1:6100, tcp://127.0.0.1:6101,") == 2
        assert many.getsockopt(zmq.IMMEDIATE) == 1 and many.getsockopt(zmq.SNDHWM) == MULTI_ENDPOINT_HWM
        with pytest.raises(ValueError, match="no ingest endpoint"):
            connect_ingest(ctx.socket(zmq.PUSH), " , ")
    finally:
        ctx.destroy(linger=0)


def test_nth_trace_gives_each_engine_its_own_file():
    assert _nth_trace("/x/engine.npy", 1) == "/x/engine.1.npy"
    assert _nth_trace("/x/engine", 0) == "/x/engine.0.npy"
    assert _nth_trace(None, 2) is None


def test_nth_endpoint():
    assert _nth_endpoint("ipc:///tmp/x/stats", 1) == "ipc:///tmp/x/stats.1"
    assert _nth_endpoint("tcp://127.0.0.1:5600", 2) == "tcp://127.0.0.1:5602"
    assert _nth_endpoint("tcp://127.0.0.1:*", 1) == "tcp://127.0.0.1:*"
    assert _nth_endpoint(None, 1) is None


def test_bad_arguments(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", str(tmp_path))  # no MPS daemon, whatever this machine runs
    with pytest.raises(ValueError):
        Supervisor(ServerConfig(backend="cpu"), devices=[])
    with pytest.raises(ValueError):
        Supervisor(ServerConfig(backend="cpu"), max_restarts=-1)
    with pytest.raises(ValueError, match="--resident needs one engine per GPU"):
        Supervisor(ServerConfig(backend="cuda", resident=True), devices=[0, 1, 0])
    Supervisor(ServerConfig(backend="cuda", resident=True), devices=[0, 1]).close()  # one engine per GPU: fine
    with pytest.raises(ValueError, match="fanout_io_threads"):
        validate(ServerConfig(fanout_io_threads=0))


def test_resident_engines_may_share_a_gpu_only_under_mps(tmp_path, monkeypatch):
    pipe_dir = tmp_path / "mps"
    pipe_dir.mkdir()
    monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", str(pipe_dir))
    cfg = ServerConfig(backend="cuda", resident=True)
    assert not mps_running()
    with pytest.raises(ValueError, match="or CUDA MPS"):
        Supervisor(cfg, devices=[0, 0])
    (pipe_dir / "control").write_text("")  # a plain file is not the daemon's pipe
    assert not mps_running()
    (pipe_dir / "control").unlink()
    os.mkfifo(pipe_dir / "control")
    assert mps_running()
    Supervisor(cfg, devices=[0, 0]).close()  # under MPS the engines' kernels run side by side
    monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", str(tmp_path / "elsewhere"))
    assert not mps_running()


def test_the_fan_out_gets_its_io_threads():
    for n in (1, 3):
        fanout = _FanOut(ServerConfig(backend="cpu", ingest="tcp://127.0.0.1:*", fanout_io_threads=n),
                         f"ipc://{tempfile.mkdtemp(prefix='zq')}/engines")
        try:
            assert fanout.ctx.get(zmq.IO_THREADS) == n
        finally:
            fanout.close()


@pytest.mark.parametrize("mode", [[], ["--devices", "0,0"], ["--devices", "0,0", "--fanout", "direct"],
                                  ["--no-supervise"]], ids=["supervised", "devices", "direct", "unsupervised"])
def test_serve_cli_sigterm_exits_0(mode):
    tmp = tempfile.mkdtemp(prefix="zq")
    ingest = f"ipc://{tmp}/in"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "zmqrt.cli", "serve", "--backend", "cpu", "--ingest", ingest,
                             "--lanes", "1", *mode], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)
    # --fanout direct: each engine binds its own copy of --ingest, and the client connects to both
    producer_ep = f"{ingest}.0,{ingest}.1" if "direct" in mode else ingest
    try:
        with Client(producer_ep, timeout_s=60) as c:
            vector_add_ok(c, timeout_s=60)
            futs = [c.submit("vector_add", np.ones(4, np.float32), np.ones(4, np.float32)) for _ in range(20)]
            assert all(f.result(30).ok for f in futs)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        # with --devices, an engine still starting when SIGTERM comes (the other already served) just ends
        assert "shutdown:" in out, out
        assert ("supervisor: stopped" in out) == (mode != ["--no-supervise"]), out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_cli_refuses_devices_without_supervision():
    proc = subprocess.run([sys.executable, "-m", "zmqrt.cli", "serve", "--backend", "cpu", "--devices", "0,1",
                           "--no-supervise"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--devices" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "zmqrt.cli", "serve", "--devices", "0,x"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "device ordinals" in proc.stderr


class HeldTrapCpuBackend(TrapCpuBackend):
    """The trap shows only once the test says so, so tasks can queue behind it first."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.release = threading.Event()

    def poll(self, lane: int) -> bool:
        if lane in self._trapped and not self.release.is_set():
            return False
        return super().poll(lane)


def test_after_a_fault_queued_tasks_are_answered_shutdown_not_run(tmp_path):
    from tests.server_support import running_server

    registry = load_registry([FAULT_KERNELS])
    backend = HeldTrapCpuBackend(registry, lanes=1)
    with running_server(f"ipc://{tmp_path}/in", lanes=1, kernels_dirs=[FAULT_KERNELS],
                        backend_instance=backend) as server, Client(server.receiver.endpoint, timeout_s=10) as c:
        x = np.ones(4, np.float32)
        trap = c.submit("fault_trap", x, params={"trap": 1})
        queued = [c.submit("vector_add", x, x) for _ in range(3)]
        deadline = time.monotonic() + 5
        while server.receiver.frames < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        backend.release.set()
        assert trap.result(10).code.value == "GPU_FAULT"
        assert [f.result(2).code.value for f in queued] == ["SHUTDOWN"] * 3  # at once, not after the drain
        assert server.fault is not None


class OnceFailingCpuBackend(CpuBackend):
    """The first completion check fails with a non-sticky driver error; the context stays usable."""

    failed = False

    def poll(self, lane: int) -> bool:
        if not self.failed:
            self.failed = True
            raise CudaError("cuStreamQuery", cu.CUresult.CUDA_ERROR_INVALID_VALUE)
        return True


def test_a_non_fatal_fault_fails_the_task_and_the_lane_serves_again(tmp_path):
    from tests.server_support import running_server

    backend = OnceFailingCpuBackend(load_registry(), lanes=1)
    with running_server(f"ipc://{tmp_path}/in", lanes=1, backend_instance=backend) as server, \
            Client(server.receiver.endpoint, timeout_s=10) as c:
        x = np.ones(4, np.float32)
        assert c.call("vector_add", x, x).code.value == "GPU_FAULT"
        res = c.call("vector_add", x, x)  # the only lane must be back in service
        assert res.ok and np.array_equal(res.outputs[0], x + x)
        assert server.fault is None


def test_several_engines_with_a_cpu_get_one_loop_cpu_each_and_keep_off_the_others(tmp_path):
    cfg = ServerConfig(backend="cpu", ingest=f"ipc://{tmp_path}/in", cpu=3)
    with Supervisor(cfg, devices=[0, 0, 0]) as sup:
        cfgs = sup._engine_cfgs()
    assert [c.cpu for c in cfgs] == [3, 4, 5]
    assert [c.cpu_keep_off for c in cfgs] == [(4, 5), (3, 5), (3, 4)]
