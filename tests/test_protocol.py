"""ingest.protocol: round trips, the exact code of every bad task, zero-copy read-only inputs, endpoint policy."""

from __future__ import annotations

import math

import msgpack
import numpy as np
import pytest

from ingest.protocol import (
    Limits,
    ProtocolError,
    Rejection,
    Result,
    Task,
    decode_result,
    decode_task,
    encode_result,
    encode_task,
    endpoint_allowed,
)
from zmqrt.errors import Code, Status, TaskError

LIMITS = Limits()
RECV_NS = 1_000_000_000


def arr(n: int = 4, dtype: str = "float32") -> np.ndarray:
    return np.arange(n, dtype=dtype)


def wire(a: np.ndarray, **over: object) -> dict:
    d = {"dtype": a.dtype.name, "shape": list(a.shape), "data": a.tobytes()}
    d.update(over)
    return d


def task_map(**over: object) -> dict:
    m = {"id": 7, "kernel": "vector_add", "inputs": [wire(arr()), wire(arr())]}
    m.update(over)
    return m


def decode(m: object, registry, limits: Limits = LIMITS) -> Task:
    return decode_task(msgpack.packb(m, use_bin_type=True), registry, limits, RECV_NS, 1)


def rejection(m: object, registry, limits: Limits = LIMITS) -> Rejection:
    with pytest.raises(Rejection) as info:
        decode(m, registry, limits)
    return info.value


# ---- happy path ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task_id", [0, 7, -3, 2**64 - 1, "a", "job-42/ü"])
def test_round_trip_task(fake_registry, task_id):
    a, b = arr(8), arr(8) * 2
    frame = encode_task(
        task_id,
        "saxpy",
        [a, b],
        params={"alpha": 2.5},
        priority=3,
        deadline_us=250.5,
        period_us=1000,
        reply_to="tcp://127.0.0.1:5999",
        sent_ns=123,
        x_trace="abc",
    )
    task = decode_task(frame, fake_registry, LIMITS, RECV_NS, 42)
    assert task.id == task_id
    assert task.kernel == "saxpy"
    assert task.params == {"alpha": 2.5}
    assert task.checked.params == {"alpha": 2.5}
    assert task.priority == 3
    assert task.deadline_us == 250.5
    assert task.deadline_ns == RECV_NS + 250_500
    assert task.period_us == 1000
    assert task.reply_to == "tcp://127.0.0.1:5999"
    assert task.sent_ns == 123
    assert task.recv_ns == RECV_NS
    assert task.seq == 42
    assert task.in_bytes == 64
    assert task.out_bytes == 32
    np.testing.assert_array_equal(task.inputs[0], a)
    np.testing.assert_array_equal(task.inputs[1], b)


def test_defaults(fake_registry):
    task = decode({"id": "x", "kernel": "reduce_sum", "inputs": [wire(arr(3))]}, fake_registry)
    assert task.priority == LIMITS.default_priority == 4
    assert task.deadline_us is None and task.deadline_ns is None
    assert task.period_us is None and task.reply_to is None and task.sent_ns is None
    assert task.params == {} and task.checked.params == {}
    assert task.out_bytes == 4


def test_nil_means_absent(fake_registry):
    task = decode(task_map(priority=None, deadline_us=None, params=None, reply_to=None, sent_ns=None), fake_registry)
    assert task.priority == 4 and task.deadline_ns is None and task.reply_to is None


def test_integer_deadline_is_exact(fake_registry):
    task = decode(task_map(deadline_us=999_999_999_999), fake_registry)
    assert task.deadline_ns == RECV_NS + 999_999_999_999 * 1000


def test_inputs_are_readonly_zero_copy(fake_registry):
    task = decode(task_map(), fake_registry)
    for a in task.inputs:
        assert a.flags.writeable is False
        owner = a
        while isinstance(owner, np.ndarray):
            owner = owner.base
        assert isinstance(owner, bytes)  # a view over the bytes msgpack made, not a copy
        with pytest.raises(ValueError):
            a[0] = 1


def test_multidim_and_complex_inputs_keep_shape_and_dtype():
    class Accept:
        def get(self, name):
            return self

        def check(self, inputs, params):
            class C:
                outputs = (((2, 3), np.dtype("complex64")),)

            return C()

    x = (np.arange(6) + 1j * np.arange(6)).astype(np.complex64).reshape(2, 3)
    scalar = np.array(5, dtype=np.int64)
    task = decode_task(encode_task(1, "fft", [x, scalar]), Accept(), LIMITS, 0, 0)
    assert task.inputs[0].dtype == np.complex64 and task.inputs[0].shape == (2, 3)
    np.testing.assert_array_equal(task.inputs[0], x)
    assert task.inputs[1].shape == () and task.inputs[1] == 5
    assert task.out_bytes == 48


def test_extension_fields_are_ignored(fake_registry):
    task = decode(task_map(x_trace={"span": 1}), fake_registry)
    assert task.id == 7


def test_real_registry_happy_path(registry):
    a = np.ones(16, np.float32)
    task = decode_task(encode_task(1, "vector_add", [a, a]), registry, LIMITS, 0, 0)
    np.testing.assert_array_equal(task.spec.reference(task.inputs, task.checked.params)[0], a + a)


# ---- every bad task, with its exact code ---------------------------------------------------------------------

BAD_TASKS = [
    # no readable id: task_id None
    ("not a map", [1, 2], Code.MALFORMED, None),
    ("no id", {"kernel": "vector_add"}, Code.MALFORMED, None),
    ("id float", task_map(id=1.5), Code.MALFORMED, None),
    ("id bool", task_map(id=True), Code.MALFORMED, None),
    ("id nil", task_map(id=None), Code.MALFORMED, None),
    ("id empty str", task_map(id=""), Code.MALFORMED, None),
    ("id too long", task_map(id="x" * 129), Code.MALFORMED, None),
    ("id bin", task_map(id=b"7"), Code.MALFORMED, None),
    # MALFORMED with id
    ("no kernel", {"id": 7}, Code.MALFORMED, 7),
    ("kernel int", task_map(kernel=3), Code.MALFORMED, 7),
    ("unknown field", task_map(deadline=5), Code.MALFORMED, 7),
    ("bin key", {**task_map(), b"k": 1}, Code.MALFORMED, 7),
    ("inputs map", task_map(inputs={"a": 1}), Code.MALFORMED, 7),
    ("input not map", task_map(inputs=[1, 2]), Code.MALFORMED, 7),
    ("input missing data", task_map(inputs=[{"dtype": "float32", "shape": [1]}]), Code.MALFORMED, 7),
    ("input extra key", task_map(inputs=[wire(arr(), extra=1), wire(arr())]), Code.MALFORMED, 7),
    ("input data str", task_map(inputs=[wire(arr(), data="abcd"), wire(arr())]), Code.MALFORMED, 7),
    ("input dtype int", task_map(inputs=[wire(arr(), dtype=5), wire(arr())]), Code.MALFORMED, 7),
    ("params list", task_map(params=[1]), Code.MALFORMED, 7),
    ("sent_ns float", task_map(sent_ns=1.0), Code.MALFORMED, 7),
    ("sent_ns negative", task_map(sent_ns=-1), Code.MALFORMED, 7),
    ("reply_to int", task_map(reply_to=5), Code.MALFORMED, 7),
    # BAD_REPLY_TO
    ("reply_to remote", task_map(reply_to="tcp://10.0.0.5:5555"), Code.BAD_REPLY_TO, 7),
    ("reply_to source prefix", task_map(reply_to="tcp://127.0.0.1:1;10.0.0.5:80"), Code.BAD_REPLY_TO, 7),
    # UNKNOWN_KERNEL
    ("unknown kernel", task_map(kernel="nope"), Code.UNKNOWN_KERNEL, 7),
    # TOO_LARGE
    ("too many inputs", task_map(inputs=[wire(arr())] * 9), Code.TOO_LARGE, 7),
    ("inputs too large", task_map(inputs=[wire(arr(1 << 17)), wire(arr((1 << 17) + 1))]), Code.TOO_LARGE, 7),
    # BAD_DTYPE (wire)
    ("dtype not wire", task_map(inputs=[wire(arr(), dtype="object"), wire(arr())]), Code.BAD_DTYPE, 7),
    ("dtype bool", task_map(inputs=[wire(arr(), dtype="bool"), wire(arr())]), Code.BAD_DTYPE, 7),
    # BAD_SHAPE
    ("shape not list", task_map(inputs=[wire(arr(), shape=4), wire(arr())]), Code.BAD_SHAPE, 7),
    ("shape negative", task_map(inputs=[wire(arr(), shape=[-4]), wire(arr())]), Code.BAD_SHAPE, 7),
    ("shape bool dim", task_map(inputs=[wire(arr(1), shape=[True]), wire(arr())]), Code.BAD_SHAPE, 7),
    ("shape float dim", task_map(inputs=[wire(arr(), shape=[4.0]), wire(arr())]), Code.BAD_SHAPE, 7),
    ("shape too many dims", task_map(inputs=[wire(arr(1), shape=[1] * 9), wire(arr())]), Code.BAD_SHAPE, 7),
    ("data too short", task_map(inputs=[wire(arr(), data=b"\0" * 15), wire(arr())]), Code.BAD_SHAPE, 7),
    ("data too long", task_map(inputs=[wire(arr(), shape=[3]), wire(arr())]), Code.BAD_SHAPE, 7),
    # BAD_PRIORITY
    ("priority negative", task_map(priority=-1), Code.BAD_PRIORITY, 7),
    ("priority too big", task_map(priority=8), Code.BAD_PRIORITY, 7),
    ("priority float", task_map(priority=1.0), Code.BAD_PRIORITY, 7),
    ("priority bool", task_map(priority=True), Code.BAD_PRIORITY, 7),
    ("priority str", task_map(priority="1"), Code.BAD_PRIORITY, 7),
    # BAD_DEADLINE
    ("deadline negative", task_map(deadline_us=-1), Code.BAD_DEADLINE, 7),
    ("deadline nan", task_map(deadline_us=math.nan), Code.BAD_DEADLINE, 7),
    ("deadline inf", task_map(deadline_us=math.inf), Code.BAD_DEADLINE, 7),
    ("deadline str", task_map(deadline_us="5"), Code.BAD_DEADLINE, 7),
    ("deadline bool", task_map(deadline_us=True), Code.BAD_DEADLINE, 7),
    ("period zero", task_map(period_us=0), Code.BAD_DEADLINE, 7),
    ("period nan", task_map(period_us=math.nan), Code.BAD_DEADLINE, 7),
    ("period -inf", task_map(period_us=-math.inf), Code.BAD_DEADLINE, 7),
    # BAD_PARAM (wire shape of params, then the spec)
    ("param value list", task_map(params={"alpha": [1]}), Code.BAD_PARAM, 7),
    ("param value nil", task_map(params={"alpha": None}), Code.BAD_PARAM, 7),
    ("too many params", task_map(params={f"p{i}": 1 for i in range(17)}), Code.BAD_PARAM, 7),
    ("unknown param", task_map(params={"beta": 1.0}), Code.BAD_PARAM, 7),
    ("param bool", task_map(kernel="saxpy", params={"alpha": True}), Code.BAD_PARAM, 7),
    # from the kernel spec
    ("arity", task_map(inputs=[wire(arr())]), Code.BAD_ARITY, 7),
    ("spec dtype", task_map(inputs=[wire(arr(4, "float64")), wire(arr(4, "float64"))]), Code.BAD_DTYPE, 7),
    ("spec shape", task_map(inputs=[wire(arr(4)), wire(arr(5))]), Code.BAD_SHAPE, 7),
]


@pytest.mark.parametrize(("what", "msg", "code", "task_id"), BAD_TASKS, ids=[t[0] for t in BAD_TASKS])
def test_bad_task_codes(fake_registry, what, msg, code, task_id):
    rej = rejection(msg, fake_registry)
    assert rej.code is code, rej.message
    assert rej.task_id == task_id
    assert type(rej.task_id) is type(task_id)
    assert rej.message
    assert rej.status is (Status.REJECTED if code is not Code.INTERNAL else Status.ERROR)


def test_undecodable_bytes_are_malformed_without_id(fake_registry):
    for frame in (b"", b"\xc1", b"\x81", msgpack.packb(task_map())[:-3], msgpack.packb(task_map()) + b"\x00"):
        with pytest.raises(Rejection) as info:
            decode_task(frame, fake_registry, LIMITS, 0, 0)
        assert info.value.code is Code.MALFORMED and info.value.task_id is None


def test_ext_types_are_refused(fake_registry):
    frame = msgpack.packb({"id": 1, "kernel": msgpack.ExtType(5, b"x")})
    assert pytest.raises(Rejection, decode_task, frame, fake_registry, LIMITS, 0, 0).value.task_id is None
    frame = msgpack.packb({"id": msgpack.Timestamp(1), "kernel": "vector_add"}, datetime=False)
    assert pytest.raises(Rejection, decode_task, frame, fake_registry, LIMITS, 0, 0).value.code is Code.MALFORMED


def test_frame_past_msgpack_bounds_is_undecodable(fake_registry):
    limits = Limits(max_str_len=16)
    rej = rejection(task_map(kernel="k" * 17), fake_registry, limits)
    assert rej.code is Code.MALFORMED and rej.task_id is None


def test_outputs_too_large(fake_registry):
    limits = Limits(max_task_bytes=64)  # 16 + 16 input bytes fit
    assert decode(task_map(), fake_registry, limits).out_bytes == 16

    class Big:
        def get(self, name):
            return self

        def check(self, inputs, params):
            class C:
                outputs = (((1000,), np.dtype("float32")),)

            return C()

    rej = rejection(task_map(), Big(), limits)
    assert rej.code is Code.TOO_LARGE and "outputs" in rej.message


def test_reply_to_survives_into_later_rejections(fake_registry):
    rej = rejection(task_map(kernel="nope", reply_to="ipc:///tmp/x"), fake_registry)
    assert rej.reply_to == "ipc:///tmp/x"
    rej = rejection(task_map(reply_to="tcp://8.8.8.8:1"), fake_registry)
    assert rej.code is Code.BAD_REPLY_TO and rej.reply_to is None  # never answer to a refused endpoint


def test_spec_bug_becomes_internal(fake_registry):
    class Broken:
        def get(self, name):
            return self

        def check(self, inputs, params):
            raise ZeroDivisionError

    rej = rejection(task_map(), Broken())
    assert rej.code is Code.INTERNAL and rej.task_id == 7 and rej.status is Status.ERROR


def test_allowed_dtypes_narrow_the_wire_set(fake_registry):
    rej = rejection(task_map(), fake_registry, Limits(allowed_dtypes=frozenset({"float64"})))
    assert rej.code is Code.BAD_DTYPE


def test_limits_validate():
    assert Limits().max_frame_bytes == (1 << 20) + (64 << 10)
    assert Limits(priority_levels=2).default_priority == 1
    with pytest.raises(ValueError):
        Limits(allowed_dtypes=frozenset({"object"}))
    with pytest.raises(ValueError):
        Limits(priority_levels=2, default_priority=2)


# ---- results -------------------------------------------------------------------------------------------------


def test_result_round_trip():
    out = [np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1 + 2j], np.complex64), np.float64(3.0)]
    frame = encode_result(
        "t1", Code.OK, outputs=out, missed_deadline=True, latency_us={"queue": 1.5, "service": 9}, sent_ns=5
    )
    res = decode_result(frame)
    assert isinstance(res, Result)
    assert res.id == "t1" and res.status is Status.OK and res.code is Code.OK and res.ok
    assert res.missed_deadline is True
    assert res.latency_us == {"queue": 1.5, "service": 9.0}
    assert res.extra == {"sent_ns": 5}
    assert len(res.outputs) == 3
    for got, want in zip(res.outputs, out, strict=True):
        assert got.dtype == np.asarray(want).dtype and got.shape == np.asarray(want).shape
        np.testing.assert_array_equal(got, want)
    assert res.raise_for_status() is res


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (Code.BAD_SHAPE, Status.REJECTED),
        (Code.QUEUE_FULL, Status.REJECTED),
        (Code.DEADLINE_INFEASIBLE, Status.REJECTED),
        (Code.EXPIRED, Status.EXPIRED),
        (Code.GPU_FAULT, Status.ERROR),
        (Code.INTERNAL, Status.ERROR),
    ],
)
def test_result_status_follows_code(code, status):
    res = decode_result(encode_result(3, code, "why"))
    assert res.status is status and res.code is code and res.message == "why" and res.outputs == []
    assert msgpack.unpackb(encode_result(3, code))["status"] == status.value
    with pytest.raises(TaskError) as info:
        res.raise_for_status()
    assert info.value.code is code


def test_result_for_unreadable_id_and_non_contiguous_big_endian_outputs():
    a = np.arange(12, dtype=">f8").reshape(3, 4)[:, ::2]
    res = decode_result(encode_result(None, Code.OK, outputs=[a]))
    assert res.id is None
    np.testing.assert_array_equal(res.outputs[0], a)
    assert res.outputs[0].dtype == np.dtype("<f8")


def test_encode_result_refuses_shadowing_extra():
    with pytest.raises(ValueError):
        encode_result(1, Code.OK, status="ok")  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "frame",
    [
        b"\xc1",
        msgpack.packb([1]),
        msgpack.packb({"id": 1, "status": "ok"}),
        msgpack.packb({"id": 1, "status": "fine", "code": "OK"}),
        msgpack.packb({"id": 1.5, "status": "ok", "code": "OK"}),
        msgpack.packb({"id": 1, "status": "ok", "code": "OK", "outputs": [{"dtype": "float32", "shape": [2]}]}),
        msgpack.packb(
            {"id": 1, "status": "ok", "code": "OK", "outputs": [{"dtype": "float32", "shape": [2], "data": b"1"}]}
        ),
    ],
)
def test_decode_result_refuses_bad_frames(frame):
    with pytest.raises(ProtocolError):
        decode_result(frame)


def test_encode_task_refuses_bad_extensions():
    with pytest.raises(ValueError):
        encode_task(1, "vector_add", trace="x")
    with pytest.raises(TypeError):
        encode_task(1, "vector_add", [np.array(["a"])])


# ---- endpoint policy -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "allowed"),
    [
        ("tcp://127.0.0.1:5555", True),
        ("tcp://localhost:1", True),
        ("tcp://[::1]:65535", True),
        ("ipc:///tmp/zmqrt/reply", True),
        ("ipc://@abstract", True),
        ("tcp://10.0.0.1:5555", False),
        ("tcp://127.0.0.1.evil.com:5555", False),
        ("tcp://127.0.0.1:*", False),
        ("tcp://127.0.0.1:0", False),
        ("tcp://127.0.0.1:70000", False),
        ("tcp://127.0.0.1:5555;10.0.0.1:80", False),
        ("tcp://127.0.0.1:5555 ", False),
        ("ipc://", False),
        ("inproc://x", False),
        ("udp://127.0.0.1:5", False),
        ("", False),
    ],
)
def test_endpoint_allowed_defaults(endpoint, allowed):
    assert endpoint_allowed(endpoint) is allowed


def test_endpoint_allowed_custom_patterns():
    assert endpoint_allowed("tcp://10.1.2.3:7000", ["tcp://10.1.*:*"])
    assert not endpoint_allowed("ipc:///tmp/x", ["tcp://10.1.*:*"])
    assert not endpoint_allowed(5, ["*"])  # type: ignore[arg-type]


def test_protocol_md_examples_are_exact():
    import pathlib
    import re

    text = (pathlib.Path(__file__).parent.parent / "ingest" / "PROTOCOL.md").read_text()
    blocks = [bytes.fromhex(b.replace("\n", " ")) for b in re.findall(r"```hex\n(.*?)```", text, re.S)]
    a, b = np.array([1, 2], np.float32), np.array([10, 20], np.float32)
    assert blocks == [
        encode_task(42, "vector_add", [a, b], priority=1, deadline_us=500, reply_to="tcp://127.0.0.1:5601"),
        encode_result(42, Code.OK, outputs=[a + b], latency_us={"queue": 3.5, "service": 21.0}),
        encode_result(43, Code.UNKNOWN_KERNEL, "no kernel named 'vec_add'"),
    ]


@pytest.mark.parametrize("shapes", [[(1,)], [(256,)], [(300,), (17, 3)], [(70000,)]])
@pytest.mark.parametrize("task_id", [0, 2**40, -5, "abc", "x" * 100])
def test_encode_ok_result_matches_encode_result(shapes, task_id):
    from ingest.protocol import encode_ok_result

    rng = np.random.default_rng()
    outputs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    for missed in (False, True):
        lat = {"queue": float(rng.uniform()), "service": 12.5}
        want = encode_result(task_id, Code.OK, "", outputs, missed, lat)
        for _ in range(2):  # the second call takes the cached heads
            assert encode_ok_result(task_id, outputs, missed, lat) == want
    outputs[0][...] = 7  # same objects, new data: the data is never cached
    assert encode_ok_result(task_id, outputs, False, {}) == encode_result(task_id, Code.OK, "", outputs, False, {})


@pytest.mark.parametrize("shapes", [[(1,)], [(256,)], [(300,), (17, 3)]])
@pytest.mark.parametrize("task_id", [0, 2**40, "abc"])
def test_ok_encoder_matches_encode_result(shapes, task_id):
    from ingest.protocol import OkEncoder

    rng = np.random.default_rng()
    dtypes = (np.float32, np.complex64, np.int32)
    outputs = [(rng.standard_normal(s) * 100).astype(dtypes[i % 3]) for i, s in enumerate(shapes)]
    enc = OkEncoder(outputs)
    for missed in (False, True):
        for queue_us, service_us in ((0.0, 12.5), (float(rng.uniform()), 1e9 / 3)):
            want = encode_result(task_id, Code.OK, "", outputs, missed, {"queue": queue_us, "service": service_us})
            assert enc.encode(task_id, outputs, missed, queue_us, service_us) == want
    outputs[0][...] = 3  # the data is read per call, never cached
    assert enc.encode(task_id, outputs, False, 1.0, 2.0) == encode_result(
        task_id, Code.OK, "", outputs, False, {"queue": 1.0, "service": 2.0})
