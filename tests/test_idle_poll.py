"""The idle poll (``idle_poll_us``): without spin, the loop polls on for a while after its last piece of work and
only then sleeps in recv. While it polls it warms (cache warming); once it sleeps, nothing runs until a frame or
the idle timeout wakes it."""

from __future__ import annotations

import math
import time

import msgpack
import numpy as np
import pytest

from ingest.protocol import encode_task
from tests.server_support import running_server
from zmqrt.config import IDLE_POLL_DEFAULT_US, ServerConfig, idle_poll_us, validate


def test_idle_poll_defaults():
    assert idle_poll_us(ServerConfig()) == IDLE_POLL_DEFAULT_US > 0
    assert idle_poll_us(ServerConfig(spin=True)) == math.inf  # spin never sleeps
    assert idle_poll_us(ServerConfig(spin=True, idle_poll_us=0.0)) == math.inf
    assert idle_poll_us(ServerConfig(fifo_priority=10)) == 0  # a SCHED_FIFO loop sleeps at once by default
    assert idle_poll_us(ServerConfig(fifo_priority=10, idle_poll_us=30.0)) == 30.0
    assert idle_poll_us(ServerConfig(idle_poll_us=0.0)) == 0


@pytest.mark.parametrize("bad", [-1.0, math.inf, math.nan])
def test_idle_poll_must_be_finite_and_not_negative(bad):
    with pytest.raises(ValueError, match="idle_poll_us"):
        validate(ServerConfig(idle_poll_us=bad))


def test_idle_poll_is_a_serve_option():
    from zmqrt.cli import build_parser

    args = build_parser().parse_args(["serve", "--idle-poll-us", "75"])
    assert args.idle_poll_us == 75.0


def _one_task(push, pull, reply_to: str, i: int, rng) -> None:
    a, b = rng.standard_normal((2, 256), dtype=np.float32)
    push.send(encode_task(f"t{i}", "vector_add", [a, b], priority=0, deadline_us=50_000.0, reply_to=reply_to))
    assert pull.poll(5000), "no result"
    res = msgpack.unpackb(pull.recv(), raw=False)
    assert res["id"] == f"t{i}" and res["status"] == "ok", res
    np.testing.assert_array_equal(np.frombuffer(res["outputs"][0]["data"], np.float32), a + b)


def test_the_loop_polls_and_warms_for_the_idle_poll_then_sleeps(producer):
    """A 300 ms idle poll with a warm pass every ms: right after a task the loop keeps warming (the count grows),
    and once the poll is over it sleeps (the count stays put)."""
    rng = np.random.default_rng()
    ingest, push, pull, reply_to = producer
    with running_server(ingest, idle_poll_us=300_000.0, keep_warm_us=1000.0, stage_timing_every=0) as server:
        push.connect(ingest)
        for i in range(3):  # the first frames build the template the warm pass runs
            _one_task(push, pull, reply_to, i, rng)
        done = time.monotonic()
        time.sleep(0.05)
        early = server.warm_passes
        time.sleep(0.05)
        assert server.warm_passes > early, "no warm pass while the loop polls"
        time.sleep(max(0.0, done + 0.6 - time.monotonic()))  # twice the idle poll after the last task
        asleep = server.warm_passes
        time.sleep(0.3)
        assert server.warm_passes == asleep, "the loop kept polling after its idle poll"
        _one_task(push, pull, reply_to, 3, rng)  # and a frame wakes it
        time.sleep(0.05)
        assert server.warm_passes > asleep, "no idle poll after the next task"


def test_without_an_idle_poll_the_loop_sleeps_at_once(producer):
    rng = np.random.default_rng()
    ingest, push, pull, reply_to = producer
    with running_server(ingest, idle_poll_us=0.0, stage_timing_every=0) as server:
        push.connect(ingest)
        for i in range(3):
            _one_task(push, pull, reply_to, i, rng)
        time.sleep(0.1)
        assert server.warm_passes == 0 and server._warm_ns == 0
