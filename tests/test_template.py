"""Byte templates (ingest/template.py): a frame that matches a known form's bytes decodes exactly as the full
validator decodes it, and anything else (other values, other bytes, other structure) gets the same answer too."""

from __future__ import annotations

import math

import msgpack
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.fastdecode import TaskDecoder
from ingest.protocol import decode_task
from ingest.template import FrameTemplate, compile_views, scalar_at
from tests.test_fastdecode import _DROP, LIMITS, REGISTRY, base_task, outcome


def warmed(**changes) -> TaskDecoder:
    """A decoder that holds the byte template of base_task's form (with ``changes``)."""
    dec = TaskDecoder(REGISTRY, LIMITS)
    for i in range(3):
        dec.decode(msgpack.packb(base_task(i, **changes)), 5, i)
    assert len(dec._templates) == 1
    return dec


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=True),
                    st.text(max_size=300), st.sampled_from([math.inf, -1.0, 0, 7, 2**40, "", b"\x00", [], {}]),
                    st.just(_DROP))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(["id", "priority", "deadline_us", "period_us", "sent_ns"]), value=SCALARS,
       single=st.booleans())
def test_slot_values_agree_with_the_full_validator(field, value, single):
    dec = warmed(period_us=100.0, sent_ns=12345)  # every slot present in the template
    changes = {"period_us": 100.0, "sent_ns": 12345, field: value}
    single = single and not (isinstance(value, float) and abs(value) > 3e38)  # float32 has no room for it
    frame = msgpack.packb(base_task(9, **changes), use_single_float=single)
    want = outcome(lambda: decode_task(frame, REGISTRY, LIMITS, 1000, 3))
    before = dec.templated
    assert outcome(lambda: dec.decode(frame, 1000, 3)) == want
    if want[0] == "task" and not single and value is not _DROP:
        assert dec.templated == before + 1  # same structure, valid values: the template decoded it


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_frames_agree_with_the_full_validator(data):
    dec = warmed()
    frame = bytearray(msgpack.packb(base_task(data.draw(st.integers(0, 2**40)))))
    how = data.draw(st.sampled_from(["flip", "cut", "extend"]))
    if how == "flip":
        for _ in range(data.draw(st.integers(1, 3))):
            frame[data.draw(st.integers(0, len(frame) - 1))] = data.draw(st.integers(0, 255))
    elif how == "cut":
        del frame[data.draw(st.integers(0, len(frame) - 1)):]
    else:
        frame += data.draw(st.binary(min_size=1, max_size=8))
    frame = bytes(frame)
    want = outcome(lambda: decode_task(frame, REGISTRY, LIMITS, 50, 4))
    assert outcome(lambda: dec.decode(frame, 50, 4)) == want


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=SCALARS, how=st.sampled_from(["whole", "cut", "flip"]), at=st.integers(0, 40), byte=st.integers(0, 255))
def test_a_str_id_template_reads_every_id_as_the_full_validator(value, how, at, byte):
    """A template built from frames with a short str id decodes that slot inline (``take``'s fixstr path): any
    other id, a frame cut or changed in or near the id, gets the full validator's answer all the same."""
    dec = warmed(id="task-7")
    frame = bytearray(msgpack.packb(base_task(9, id=value)))
    if how == "cut":
        del frame[at:]
    elif how == "flip":
        frame[at % len(frame)] = byte
    frame = bytes(frame)
    want = outcome(lambda: decode_task(frame, REGISTRY, LIMITS, 70, 5))
    before = dec.templated
    assert outcome(lambda: dec.decode(frame, 70, 5)) == want
    if how == "whole" and type(value) is str and 0 < len(value.encode()) <= 31 and want[0] == "task":
        assert dec.templated == before + 1  # a fixstr id: the template took it


def mutated(data, frame: bytes, least: int = 0) -> bytes:
    """``frame`` with ``least`` to 2 bytes overwritten, then maybe cut short."""
    out = bytearray(frame)
    for _ in range(data.draw(st.integers(least, 2))):
        out[data.draw(st.integers(0, len(out) - 1))] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        del out[data.draw(st.integers(0, len(out))):]
    return bytes(out)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_take_is_match_and_the_checks(data):
    """``take`` (the decoder's, with the slot checks compiled in) against ``match`` and the decoder's ``_scalars``
    on its values: the same answer and the same data offsets on every frame, refusals included; the form's compiled
    views of those offsets are the inputs' bytes."""
    tid = data.draw(st.one_of(st.integers(0, 2**40), st.text(min_size=1, max_size=40)))
    dec = warmed(id=tid, period_us=100.0, sent_ns=12345)
    tpl = dec.templates[0]
    slots = {k: data.draw(SCALARS) if data.draw(st.booleans()) else v
             for k, v in (("priority", 3), ("deadline_us", 250.0), ("period_us", 100.0), ("sent_ns", 12345))}
    frame = mutated(data, msgpack.packb(base_task(0, id=data.draw(SCALARS), **slots)), 0)
    recv_ns = data.draw(st.integers(0, 2**62))
    took, matched = tpl.take(frame, recv_ns), tpl.match(frame)
    checked = dec._scalars(*matched[0], recv_ns) if matched is not None else None
    assert (took is None) == (checked is None)
    if checked is not None:
        values, offsets = matched
        assert [repr(v) for v in took[:6]] == [repr(v) for v in checked]  # repr: NaN equals NaN, 1 is not 1.0
        assert took[6] == tuple(offsets) and len(offsets) == 2
        views = tpl.form[5](frame, took[6])
        for view, off in zip(views, offsets, strict=True):
            assert view.base is frame and view.shape == (64,) and view.dtype == np.float32
            assert view.tobytes() == frame[off:off + 256]


def test_take_of_a_template_without_optional_slots_defaults_them():
    """A template whose frames carry no priority, period or sent_ns: its ``take`` leaves those checks out, gives the
    default priority and None for the others, and the absolute deadline from recv_ns."""
    msg = base_task(1)
    for key in ("priority", "period_us", "sent_ns"):
        msg.pop(key, None)
    dec = TaskDecoder(REGISTRY, LIMITS)
    for i in range(3):
        dec.decode(msgpack.packb({**msg, "id": i}), 5, i)
    tpl = dec.templates[0]
    took = tpl.take(msgpack.packb({**msg, "id": 77}), 1_000)
    assert took[:6] == (77, LIMITS.default_priority, msg["deadline_us"], 1_000 + round(msg["deadline_us"] * 1000),
                        None, None)
    assert tpl.take(msgpack.packb({**msg, "id": ""}), 1_000) is None  # an id the checks refuse


def test_inputs_are_views_of_the_frame_with_the_new_data():
    dec = warmed()
    before = dec.templated
    rng = np.random.default_rng()
    for i in range(20):
        a, b = rng.standard_normal(64).astype(np.float32), rng.standard_normal(64).astype(np.float32)
        msg = base_task(f"task-{i}" * (1 + i % 3), priority=i % 8, deadline_us=i * 10 if i % 2 else 250.5)
        msg["inputs"] = [{"dtype": "float32", "shape": [64], "data": x.tobytes()} for x in (a, b)]
        frame = msgpack.packb(msg)
        task = dec.decode(frame, 100, i)
        np.testing.assert_array_equal(task.inputs[0], a)
        np.testing.assert_array_equal(task.inputs[1], b)
        assert task.inputs[0].base is frame and not task.inputs[0].flags.writeable
        assert outcome(lambda f=frame, s=i: dec.decode(f, 100, s)) == \
            outcome(lambda f=frame, s=i: decode_task(f, REGISTRY, LIMITS, 100, s))
    assert dec.templated == before + 40


def test_no_template_for_duplicate_keys_or_other_data_lengths():
    dup = b"\x82\xa2id\x01\xa2id\x02"  # {"id": 1, "id": 2}: msgpack keeps the last
    assert FrameTemplate.build(dup, (), None) is None
    frame = msgpack.packb(base_task(1))
    assert FrameTemplate.build(frame, (256, 256), None) is not None
    assert FrameTemplate.build(frame, (256, 128), None) is None


@given(value=st.one_of(st.none(), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=False, width=32),
                       st.floats(allow_nan=False), st.text(max_size=70000)),
       single=st.booleans())
def test_scalar_at_reads_what_msgpack_reads(value, single):
    packed = msgpack.packb(value, use_single_float=single and not (isinstance(value, float) and abs(value) > 3e38))
    got, end = scalar_at(packed, 0)
    assert end == len(packed)
    assert got == msgpack.unpackb(packed, raw=False) and type(got) is type(msgpack.unpackb(packed, raw=False))


def test_compiled_views_reshape_each_input_to_its_shape():
    frame = bytes(range(256)) * 2
    views = ((np.dtype(np.float32), 16, (4, 4)), (np.dtype(np.complex64), 8, None))
    a, b = compile_views(views)(frame, (4, 100))
    assert a.shape == (4, 4) and a.dtype == np.float32 and a.tobytes() == frame[4:68]
    assert b.shape == (8,) and b.dtype == np.complex64 and b.tobytes() == frame[100:164]
    assert a.base.base is frame and b.base is frame and not a.flags.writeable  # views: no copy


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_exact_take_answers_as_take(data):
    """``exact_take`` (the fast path for one frame's layout, the decoder's per-length hint) against the template's
    ``take`` on the other frames: frames of the same layout with new slot values (every encoding msgpack picks for
    them, so some keep the layout and some do not), and mutated or cut frames. Same answer every time, refusals
    included."""
    tid = data.draw(st.one_of(st.integers(0, 2**40), st.text(min_size=1, max_size=40)))
    layout = {k: data.draw(SCALARS) if data.draw(st.booleans()) else v
              for k, v in (("priority", 3), ("deadline_us", 250.0), ("period_us", 100.0), ("sent_ns", 12345))}
    dec = warmed(id=tid, period_us=100.0, sent_ns=12345)
    tpl = dec.templates[0]
    first = msgpack.packb(base_task(0, id=data.draw(SCALARS), **layout))
    if tpl.take(first, 0) is None:
        return  # exact_take is built only from a frame that take accepted
    exact = tpl.exact_take(first)
    assert repr(exact(first, 7)) == repr(tpl.take(first, 7))
    for _ in range(5):
        slots = {k: data.draw(SCALARS) if data.draw(st.booleans()) else v for k, v in layout.items()}
        frame = mutated(data, msgpack.packb(base_task(0, id=data.draw(SCALARS), **slots)), 0)
        recv_ns = data.draw(st.integers(0, 2**62))
        assert repr(exact(frame, recv_ns)) == repr(tpl.take(frame, recv_ns))  # repr: NaN equals NaN, 1 is not 1.0


def test_exact_take_takes_its_fast_path_for_its_layout():
    """Frames of the first frame's layout (ids of the same width, any values in the same encodings) take the
    exact path, and answer as ``take``; a wider id falls back to ``take`` with the same answer."""
    dec = warmed(id="task-0000", period_us=100.0, sent_ns=12345)
    tpl = dec.templates[0]
    exact = tpl.exact_take(msgpack.packb(base_task(0, id="task-0001", period_us=100.0, sent_ns=2**40)))
    assert exact is not tpl.take
    assert tpl.exact_take(msgpack.packb(base_task(0, id="task-0002", period_us=100.0, sent_ns=2**40))) is exact  # once
    fixed, want, _, _, total = exact.__defaults__[:5]

    def fast(frame: bytes) -> bool:  # the exact path's own test, before it falls back to take
        return len(frame) == total and fixed(frame) == want
    rng = np.random.default_rng(5)
    for i in range(200):
        frame = msgpack.packb(base_task(int(rng.integers(1 << 30)), id=f"task-{i:04d}", priority=int(i % 8),
                                        deadline_us=float(rng.uniform(0, 1e6)), period_us=float(rng.uniform(1, 1e4)),
                                        sent_ns=int(rng.integers(2**32, 2**63))))
        assert fast(frame)
        assert exact(frame, i) == tpl.take(frame, i) is not None
    wide = msgpack.packb(base_task(0, id="task-000001", period_us=100.0, sent_ns=2**40))
    assert not fast(wide) and exact(wide, 3) == tpl.take(wide, 3) is not None
