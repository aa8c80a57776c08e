"""CURVE + ZAP on ingest (zmqrt.security): allowed producers get results; others get nothing in and no result."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import time

import numpy as np
import pytest
import zmq
import zmq.auth
from zmq.utils.monitor import recv_monitor_message

from ingest.aio import AsyncClient
from ingest.client import Client
from ingest.protocol import encode_task
from tests.server_support import running_server
from zmqrt.cli import main
from zmqrt.config import ServerConfig, build_config
from zmqrt.security import CurveServer, apply_client, load_secret, make_keys
from zmqrt.server import Server

REFUSED = {zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL}
NO_RESULT_WINDOW_MS = 1000


@pytest.fixture
def keys(tmp_path):
    """Server pair, an allowed producer pair (its public cert copied into allowed/), and a stranger's pair."""
    server_public, server_secret = make_keys(tmp_path / "server", "server")
    good_public, good_secret = make_keys(tmp_path / "producer", "good")
    _, bad_secret = make_keys(tmp_path / "stranger", "bad")
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    shutil.copy(good_public, allowed)
    return dict(server_public=server_public, server_secret=server_secret, good_secret=good_secret,
                bad_secret=bad_secret, allowed=str(allowed))


def curve_server(ingest: str, keys: dict):
    return running_server(ingest, curve_secret=keys["server_secret"], allowed_keys=keys["allowed"])


@pytest.mark.parametrize("transport", ["tcp", "ipc"])
def test_allowed_key_gets_correct_result(transport, keys, ipc_endpoint):
    ingest = "tcp://127.0.0.1:*" if transport == "tcp" else ipc_endpoint()
    a, b = np.arange(300, dtype=np.float32), np.full(300, 0.5, np.float32)
    with curve_server(ingest, keys) as server, Client(server.receiver.endpoint, timeout_s=5,
                                                      curve_secret=keys["good_secret"],
                                                      server_public=keys["server_public"]) as client:
        res = client.call("vector_add", a, b)
        assert res.status.value == "ok", (res.code, res.message)
        np.testing.assert_array_equal(res.outputs[0], a + b)
        assert server.receiver.frames == 1


def test_async_client_with_allowed_key(keys):
    a = np.ones(64, np.float32)

    async def go(endpoint):
        async with AsyncClient(endpoint, curve_secret=keys["good_secret"],
                               server_public=keys["server_public"]) as client:
            return await client.submit("vector_add", a, a, timeout_s=5)

    with curve_server("tcp://127.0.0.1:*", keys) as server:
        res = asyncio.run(go(server.receiver.endpoint))
    assert res.status.value == "ok", (res.code, res.message)
    np.testing.assert_array_equal(res.outputs[0], a + a)


def _wait_refused(monitor: zmq.Socket, timeout_s: float = 3.0) -> int:
    """The first handshake failure the producer's socket reports: proof the server refused it, not just slowness."""
    deadline = time.monotonic() + timeout_s
    while (left_ms := int((deadline - time.monotonic()) * 1000)) > 0:
        if monitor.poll(left_ms):
            event = recv_monitor_message(monitor)["event"]
            if event in REFUSED:
                return event
            assert event != zmq.EVENT_HANDSHAKE_SUCCEEDED, "the server accepted a producer it should refuse"
    raise AssertionError("no handshake failure reported within the timeout")


@pytest.mark.parametrize("credential", ["stranger_key", "no_key"])
def test_refused_producer_gets_nothing_in_and_no_result(credential, keys, zmq_ctx, ipc_endpoint):
    a = np.ones(16, np.float32)
    ingest = ipc_endpoint()
    reply = zmq_ctx.socket(zmq.PULL)
    reply.bind("tcp://127.0.0.1:*")
    reply_to = reply.getsockopt_string(zmq.LAST_ENDPOINT)
    push = zmq_ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    if credential == "stranger_key":  # a valid CURVE client whose key is not in the allowed directory
        apply_client(push, keys["bad_secret"], keys["server_public"])
    monitor = push.get_monitor_socket()
    # Connect and queue the task before the server binds, so the frame is surely waiting when the handshake runs.
    # (Sent after a refusal it could not even be queued: libzmq drops the refused connection's pipe.)
    push.connect(ingest)
    push.send(encode_task(1, "vector_add", [a, a], reply_to=reply_to), zmq.NOBLOCK)
    with curve_server(ingest, keys) as server:
        event = _wait_refused(monitor)
        if credential == "stranger_key":
            assert event == zmq.EVENT_HANDSHAKE_FAILED_AUTH  # ZAP said no (400), not a protocol mix-up
        assert not reply.poll(NO_RESULT_WINDOW_MS), "a refused producer caused a result"
        assert server.receiver.frames == 0
        assert server.results_sent == 0
        push.disable_monitor()

        # the server is alive and still serves an allowed producer meanwhile
        with Client(server.receiver.endpoint, curve_secret=keys["good_secret"],
                    server_public=keys["server_public"]) as client:
            assert client.call("vector_add", a, a).status.value == "ok"
        assert server.receiver.frames == 1
    assert not reply.poll(0)


def test_keys_cli_creates_loadable_pair_and_refuses_overwrite(tmp_path, capsys):
    out = tmp_path / "new" / "dir"
    assert main(["keys", str(out), "--name", "producer"]) == 0
    public, secret = capsys.readouterr().out.split()
    assert (public, secret) == (str(out / "producer.key"), str(out / "producer.key_secret"))
    pub, sec = load_secret(secret)
    assert len(pub) == len(sec) == 40  # z85 of 32-byte keys
    assert zmq.auth.load_certificate(public) == (pub, None)
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
    assert sorted(os.listdir(out)) == ["producer.key", "producer.key_secret"]  # no scratch left behind

    before = (out / "producer.key_secret").read_bytes()
    assert main(["keys", str(out), "--name", "producer"]) == 1
    assert "refusing to overwrite" in capsys.readouterr().err
    assert (out / "producer.key_secret").read_bytes() == before
    assert load_secret(secret) == (pub, sec)


def test_config_needs_both_or_neither(keys):
    for half in (dict(curve_secret=keys["server_secret"]), dict(allowed_keys=keys["allowed"])):
        with pytest.raises(ValueError, match="go together"):
            build_config(**half)
        with pytest.raises(ValueError, match="needs both"):  # a Server given half never runs open
            Server(ServerConfig(backend="cpu", ingest="tcp://127.0.0.1:*", calibrate=False, **half))
    cfg = build_config(curve_secret=keys["server_secret"], allowed_keys=keys["allowed"])
    assert (cfg.curve_secret, cfg.allowed_keys) == (keys["server_secret"], keys["allowed"])


def test_serve_reports_bad_key_files_without_starting(keys, tmp_path, capsys):
    assert main(["serve", "--curve-secret", keys["server_secret"]]) == 2
    assert "go together" in capsys.readouterr().err
    assert main(["serve", "--curve-secret", keys["server_public"], "--allowed-keys", keys["allowed"]]) == 2
    assert "holds no secret key" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["serve", "--curve-secret", keys["server_secret"], "--allowed-keys", str(empty)]) == 2
    assert "holds no public certificate" in capsys.readouterr().err


def test_curve_server_errors_and_idempotent_close(keys, tmp_path, zmq_ctx):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_secret(tmp_path / "missing.key_secret")
    with pytest.raises(FileNotFoundError, match="allowed-keys directory"):
        CurveServer(zmq_ctx, keys["server_secret"], tmp_path / "nowhere")
    with CurveServer(zmq_ctx, keys["server_secret"], keys["allowed"]) as cs:
        with pytest.raises(RuntimeError, match="already has a ZAP handler"):
            CurveServer(zmq_ctx, keys["server_secret"], keys["allowed"])
        sock = zmq_ctx.socket(zmq.PULL)
        cs.apply(sock)
        assert sock.curve_server and sock.mechanism == zmq.CURVE
        sock.close(linger=0)
    assert cs.closed
    cs.close()


def test_loadgen_speaks_curve(keys, ipc_endpoint):
    from ingest.loadgen import LoadgenConfig, MixEntry, run_loadgen

    with curve_server(ipc_endpoint(), keys) as server:
        cfg = LoadgenConfig(server.receiver.endpoint, [MixEntry("vector_add", 64)], rate_hz=500, count=40, seed=3,
                            check_fraction=1.0, timeout_s=5, curve_secret=keys["good_secret"],
                            server_public=keys["server_public"])
        res = run_loadgen(cfg)
    assert set(res.status.tolist()) == {"ok"}
    with pytest.raises(ValueError, match="go together"):
        LoadgenConfig("ipc:///x", [MixEntry("vector_add", 64)], count=1, curve_secret=keys["good_secret"]).validate()
