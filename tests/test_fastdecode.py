"""The server's memoized decoder agrees with the full validator on every frame, valid or not."""

from __future__ import annotations

import math

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.fastdecode import TaskDecoder
from ingest.protocol import Limits, Rejection, decode_task
from zmqrt.kernels.registry import load_registry

REGISTRY = load_registry()
LIMITS = Limits(max_task_bytes=1 << 16, priority_levels=8)
_FIELDS = ("id", "kernel", "params", "priority", "deadline_us", "period_us", "reply_to", "sent_ns", "in_bytes",
           "out_bytes", "recv_ns", "deadline_ns", "seq")


def outcome(fn):
    try:
        task = fn()
    except Rejection as r:
        return ("rejected", r.task_id, r.code, r.message, r.reply_to)
    return ("task", tuple(getattr(task, f) for f in _FIELDS), task.spec.name, task.checked,
            tuple((a.dtype.str, a.shape, a.tobytes()) for a in task.inputs))


def base_task(i: int = 1, **changes) -> dict:
    a = np.arange(64, dtype=np.float32)
    msg = {"id": i, "kernel": "vector_add", "reply_to": "ipc:///tmp/zmqrt-test-reply",
           "inputs": [{"dtype": "float32", "shape": [64], "data": a.tobytes()}] * 2,
           "priority": 1, "deadline_us": 500.0}
    msg.update(changes)
    return {k: v for k, v in msg.items() if v is not _DROP}


_DROP = object()
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 10**6), st.floats(allow_nan=True),
                   st.sampled_from([math.inf, -1.0, 0, 7, 2**40, "x", "", b"\x00", [], {}]), st.just(_DROP))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(["id", "priority", "deadline_us", "period_us", "sent_ns", "reply_to", "params",
                              "kernel", "x_note", "deadline"]),
       value=VALUES, repeat=st.integers(1, 3))
def test_fast_path_agrees_with_full_validator(field, value, repeat):
    dec = TaskDecoder(REGISTRY, LIMITS)
    dec.decode(msgpack.packb(base_task(0)), 5, 0)  # teach it the form: later tasks of it take the fast path
    frame = msgpack.packb(base_task(9, **{field: value}))
    want = outcome(lambda: decode_task(frame, REGISTRY, LIMITS, 1000, 3))
    for _ in range(repeat):
        assert outcome(lambda: dec.decode(frame, 1000, 3)) == want


@pytest.mark.parametrize("mutate", [
    lambda m: m["inputs"].__setitem__(0, {"dtype": "float32", "shape": [64], "data": b"\0" * 255}),
    lambda m: m["inputs"].__setitem__(0, {"dtype": "float32", "shape": [True] * 1, "data": b"\0" * 256}),
    lambda m: m["inputs"].__setitem__(0, {"dtype": "float64", "shape": [64], "data": b"\0" * 512}),
    lambda m: m["inputs"].__setitem__(0, {"dtype": "float32", "shape": [8, 8], "data": b"\0" * 256}),
    lambda m: m["inputs"].append(m["inputs"][0]),
    lambda m: m.__setitem__("params", {"alpha": 2.0}),
])
def test_form_changes_take_the_full_path(mutate):
    dec = TaskDecoder(REGISTRY, LIMITS)
    dec.decode(msgpack.packb(base_task(0)), 5, 0)
    msg = base_task(2)
    msg["inputs"] = list(msg["inputs"])
    mutate(msg)
    frame = msgpack.packb(msg)
    assert outcome(lambda: dec.decode(frame, 7, 1)) == outcome(lambda: decode_task(frame, REGISTRY, LIMITS, 7, 1))


def test_repeated_form_uses_the_fast_path_and_sees_new_data():
    dec = TaskDecoder(REGISTRY, LIMITS)
    rng = np.random.default_rng()
    for i in range(5):
        a, b = rng.standard_normal(64).astype(np.float32), rng.standard_normal(64).astype(np.float32)
        msg = base_task(i)
        msg["inputs"] = [{"dtype": "float32", "shape": [64], "data": x.tobytes()} for x in (a, b)]
        task = dec.decode(msgpack.packb(msg), 100, i)
        np.testing.assert_array_equal(task.inputs[0], a)
        np.testing.assert_array_equal(task.inputs[1], b)
        assert task.id == i and task.deadline_ns == 100 + 500_000
    assert dec.fast == 1 and dec.templated == 3  # the first fast decode built the form's byte template


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(junk=st.binary(max_size=64), cut=st.integers(0, 400), extra=st.binary(min_size=1, max_size=8))
def test_undecodable_frames_are_rejected_alike_and_the_decoder_recovers(junk, cut, extra):
    """The decoder's own Unpacker rejects garbage, truncated frames and trailing bytes with decode_task's exact
    words, and the next good frame decodes (a failed frame never leaves bytes behind in its buffer)."""
    dec = TaskDecoder(REGISTRY, LIMITS)
    good = msgpack.packb(base_task(7))
    for frame in (junk, good[:cut], good + extra, msgpack.packb([1, 2])):
        assert outcome(lambda f=frame: dec.decode(f, 0, 1)) == outcome(lambda f=frame: decode_task(f, REGISTRY,
                                                                                                    LIMITS, 0, 1))
        assert outcome(lambda: dec.decode(good, 5, 2)) == outcome(lambda: decode_task(good, REGISTRY, LIMITS, 5, 2))
