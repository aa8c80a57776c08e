"""decode_task is total: any bytes give a Task or a Rejection, never another exception (hypothesis)."""

from __future__ import annotations

import msgpack
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.protocol import (
    TASK_FIELDS,
    WIRE_DTYPES,
    Limits,
    ProtocolError,
    Rejection,
    Task,
    decode_result,
    decode_task,
)
from zmqrt.errors import Code

LIMITS = Limits(max_task_bytes=4096)
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_total(frame: bytes, registry) -> None:
    try:
        task = decode_task(frame, registry, LIMITS, 0, 0)
    except Rejection as rej:
        assert isinstance(rej.code, Code)
        assert rej.code is not Code.INTERNAL
        assert rej.task_id is None or type(rej.task_id) in (int, str)
        assert isinstance(rej.message, str) and rej.message
        return
    assert isinstance(task, Task)
    assert all(not a.flags.writeable for a in task.inputs)


@FUZZ
@given(st.binary(max_size=512))
def test_any_bytes(fake_registry, frame):
    check_total(frame, fake_registry)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.binary(max_size=8),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


@FUZZ
@given(values)
def test_any_msgpack_value(fake_registry, value):
    check_total(msgpack.packb(value, use_bin_type=True), fake_registry)


@st.composite
def wire_array(draw):
    dtype = draw(st.sampled_from([*WIRE_DTYPES, "bool", "float8", ""]))
    shape = draw(st.lists(st.integers(min_value=-2, max_value=6), max_size=3) | st.just([4]) | values)
    itemsize = WIRE_DTYPES[dtype].itemsize if dtype in WIRE_DTYPES else 4
    good_len = (
        int(np.prod(shape)) * itemsize
        if isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
        else 0
    )
    n = draw(st.sampled_from([good_len, max(good_len - 1, 0), good_len + 1]))
    item = {"dtype": dtype, "shape": shape, "data": bytes(min(n, 8192))}
    if draw(st.booleans()):
        key = draw(st.sampled_from(["dtype", "shape", "data"]))
        item[key] = draw(values)
    return item


@st.composite
def near_valid_task(draw):
    m = {
        "id": draw(st.one_of(st.integers(min_value=-(2**63), max_value=2**64 - 1), st.text(max_size=4), values)),
        "kernel": draw(st.sampled_from(["vector_add", "saxpy", "reduce_sum", "nope", ""]) | values),
        "inputs": draw(st.lists(wire_array(), max_size=3) | values),
    }
    for key in ("params", "priority", "deadline_us", "period_us", "reply_to", "sent_ns"):
        if draw(st.booleans()):
            m[key] = draw(
                {
                    "params": st.dictionaries(st.sampled_from(["alpha", "beta"]), scalars, max_size=2) | values,
                    "priority": st.integers(min_value=-2, max_value=9) | scalars,
                    "deadline_us": st.floats() | st.integers(min_value=-5, max_value=2**64 - 1) | scalars,
                    "period_us": st.floats() | st.integers(min_value=-5, max_value=10**6) | scalars,
                    "reply_to": st.sampled_from(["ipc:///tmp/r", "tcp://127.0.0.1:1", "tcp://1.2.3.4:5"]) | scalars,
                    "sent_ns": st.integers(min_value=-5, max_value=2**64 - 1) | scalars,
                }[key]
            )
    if draw(st.booleans()):
        m[draw(st.sampled_from(["x_ext", "bogus", *TASK_FIELDS]))] = draw(values)
    if draw(st.booleans()):
        del m[draw(st.sampled_from(["id", "kernel", "inputs"]))]
    return m


@FUZZ
@given(near_valid_task())
def test_near_valid_tasks(fake_registry, m):
    check_total(msgpack.packb(m, use_bin_type=True), fake_registry)


@FUZZ
@given(near_valid_task())
def test_near_valid_tasks_real_registry(registry, m):
    # The kernel specs' own check() must raise only TaskError too (an INTERNAL here is a spec bug).
    check_total(msgpack.packb(m, use_bin_type=True), registry)


@FUZZ
@given(near_valid_task(), st.integers(min_value=0, max_value=64), st.integers(min_value=0, max_value=255))
def test_bit_flipped_tasks(fake_registry, m, pos, byte):
    frame = bytearray(msgpack.packb(m, use_bin_type=True))
    if frame:
        frame[pos % len(frame)] = byte
    check_total(bytes(frame), fake_registry)


@FUZZ
@given(st.binary(max_size=256) | values.map(lambda v: msgpack.packb(v, use_bin_type=True)))
def test_decode_result_raises_only_protocol_error(frame):
    try:
        decode_result(frame)
    except ProtocolError:
        pass


@FUZZ
@given(
    st.fixed_dictionaries(
        {"status": st.sampled_from(["ok", "error"]) | values, "code": st.sampled_from(["OK", "INTERNAL"]) | values},
        optional={
            "id": values,
            "message": values,
            "outputs": st.lists(wire_array(), max_size=2) | values,
            "missed_deadline": values,
            "latency_us": st.dictionaries(st.text(max_size=3), scalars, max_size=3) | values,
        },
    )
)
def test_near_valid_results_raise_only_protocol_error(m):
    try:
        decode_result(msgpack.packb(m, use_bin_type=True))
    except ProtocolError:
        pass
