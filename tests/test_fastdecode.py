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


def _counting(dec: TaskDecoder) -> dict:
    """Wrap each of the decoder's templates' ``take``, and each length hint's exact take, with a call counter:
    template -> calls (a try of the template in either way)."""
    calls: dict = {}

    def counted(inner, tpl):
        def take(frame, recv_ns):
            calls[tpl] += 1
            return inner(frame, recv_ns)
        return take

    for tpl in dec.templates:
        calls[tpl] = 0
        tpl.take = counted(tpl.take, tpl)
    for n, (tpl, exact) in list(dec._by_length.items()):
        dec._by_length[n] = (tpl, counted(exact, tpl))
    return calls


def _mix_frames(rng, n: int) -> list[bytes]:
    """Frames of three forms in turn, as the 10 kHz stream sends them (str ids, one reply endpoint)."""
    out = []
    for i in range(n):
        kernel, shape, dtype = (("vector_add", [256], "float32"), ("matmul", [16, 16], "float32"),
                                ("fft", [128], "complex64"))[i % 3]
        arr = rng.standard_normal(int(np.prod(shape))).astype(np.float32)
        if dtype == "complex64":
            arr = (arr + 1j * arr).astype(np.complex64)
        msg = {"id": f"s-{i}", "kernel": kernel, "reply_to": "ipc:///tmp/zmqrt-test-reply",
               "inputs": [{"dtype": dtype, "shape": shape, "data": arr.reshape(shape).tobytes()}]
               * (1 if kernel == "fft" else 2), "priority": 0, "deadline_us": 75.0}
        out.append(msgpack.packb(msg))
    return out


def test_a_mix_of_forms_tries_one_template_per_frame():
    """With several forms in turn, each frame goes first to the template that last matched a frame of its length,
    instead of the most recent template (another form's, in a mix): one ``take`` per frame once each length was
    seen, and every frame still decodes as the full validator does."""
    rng = np.random.default_rng(1)
    frames = _mix_frames(rng, 60)
    dec = TaskDecoder(REGISTRY, LIMITS)
    for i, frame in enumerate(frames[:30]):
        dec.decode(frame, 1000, i)
    assert len(dec.templates) == 3
    calls = _counting(dec)
    for i, frame in enumerate(frames[30:]):
        assert outcome(lambda f=frame, s=i: dec.decode(f, 1000, s)) == \
            outcome(lambda f=frame, s=i: decode_task(f, REGISTRY, LIMITS, 1000, s))
    assert sum(calls.values()) == 30  # one try per frame; the most-recent-first scan alone took two in three
    assert all(c == 10 for c in calls.values())


def test_a_frame_of_another_form_with_a_hinted_length_still_decodes_exactly():
    """Two forms whose frames have the same length (shape [256] against [16, 16], the id two bytes longer): the
    length hint names the other form's template half the time, its byte comparison fails, and the scan finds the
    right one. Each frame decodes to its own form's shape and data."""
    rng = np.random.default_rng(2)
    dec = TaskDecoder(REGISTRY, LIMITS)
    frames, want = [], []
    for i in range(40):
        a, b = rng.standard_normal((2, 256), dtype=np.float32)
        shape, tid = ([256], f"a{i:04d}") if i % 2 else ([16, 16], f"a{i:06d}")
        frames.append(msgpack.packb({"id": tid, "kernel": "vector_add", "reply_to": "ipc:///tmp/zmqrt-test-reply",
                                     "inputs": [{"dtype": "float32", "shape": shape, "data": x.tobytes()}
                                                for x in (a, b)]}))
        want.append((tuple(shape), a.reshape(shape)))
    assert len({len(f) for f in frames}) == 1  # one length for both forms
    for i, (frame, (shape, a)) in enumerate(zip(frames, want, strict=True)):
        task = dec.decode(frame, 1000, i)
        assert task.inputs[0].shape == shape
        np.testing.assert_array_equal(task.inputs[0], a)
        assert outcome(lambda f=frame, s=i: dec.decode(f, 1000, s)) == \
            outcome(lambda f=frame, s=i: decode_task(f, REGISTRY, LIMITS, 1000, s))
    assert dec.templated > 20  # the later frames matched templates (through the scan when the hint missed)


def test_length_hints_never_keep_an_evicted_template():
    """More forms than the decoder keeps templates for: every hint names a template still kept."""
    rng = np.random.default_rng(3)
    dec = TaskDecoder(REGISTRY, LIMITS)
    for i in range(200):
        n = 8 + 4 * (i % 20)  # twenty forms, in turn
        a = rng.standard_normal(n).astype(np.float32)
        frame = msgpack.packb({"id": i, "kernel": "vector_add", "reply_to": "ipc:///tmp/zmqrt-test-reply",
                               "inputs": [{"dtype": "float32", "shape": [n], "data": a.tobytes()}] * 2})
        dec.decode(frame, 1000, i)
        assert {hint[0] for hint in dec._by_length.values()} <= set(dec.templates)
