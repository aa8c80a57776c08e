"""A backlog decoded and answered as one batch (ingest/bulk.py): every row it takes decodes exactly as the per-task
decoder decodes that frame, every result row is the per-task encoder's frame, and the server answers each task of
a backlog once, through real sockets, with the rows it leaves (bad values, duplicates, infeasible deadlines) worded
by the per-task path."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import fields

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.bulk import _COLUMNS_FROM, _ENCODE_COLUMNS_FROM, NO_DEADLINE, BulkBatch, BulkForm, BulkResults, FrameBlock
from ingest.protocol import OkEncoder, decode_result, encode_task
from ingest.template import SLOT_KEYS
from tests.test_fastdecode import _DROP, LIMITS, base_task, outcome
from tests.test_template import SCALARS, warmed
from zmqrt.config import ServerConfig
from zmqrt.errors import Code
from zmqrt.latency.tracker import LatencyTracker, _record, new_histogram
from zmqrt.server import Server


def _bulk(frames: list[bytes], dec, recv_ns: int = 1000):
    form = BulkForm.of(dec.templates[0], LIMITS)
    assert form is not None
    rows = np.array([i for i, f in enumerate(frames) if len(f) == form.length], np.intp)
    batch, left = form.match(frames, rows, np.full(len(rows), recv_ns, np.int64))
    return form, rows, batch, left


def _same_as_decoder(dec, frames, batch, recv_ns: int = 1000) -> None:
    """Every row the batch took decodes to these values by the per-task decoder."""
    if batch is None:
        return
    for j, row in enumerate(batch.rows.tolist()):
        task = dec.decode(frames[row], recv_ns, row)
        assert task.id == batch.ids[j] and type(task.id) is type(batch.ids[j])
        assert task.priority == batch.priority[j]
        assert (task.deadline_ns if task.deadline_ns is not None else NO_DEADLINE) == batch.deadline_ns[j]
        assert task.sent_ns == (None if batch.sent_ns is None else batch.sent_ns[j])
        for a, b in zip(task.inputs, batch.inputs, strict=True):
            assert a.tobytes() == np.ascontiguousarray(b[j]).tobytes()
        assert msgpack.packb(task.id) == batch.id_raw[j].tobytes() or task.id == msgpack.unpackb(
            batch.id_raw[j].tobytes())


@pytest.mark.parametrize("ids", [lambda i: 1000 + i, lambda i: 2**40 + i, lambda i: f"p3-{100 + i}"])
def test_a_batch_of_one_form_decodes_as_the_per_task_decoder(ids):
    dec = warmed(id=ids(0), period_us=100.0, sent_ns=10**18)
    rng = np.random.default_rng()
    frames = []
    for i in range(40):
        msg = base_task(ids(i), priority=i % 8, deadline_us=[250.5, 10, 7.25e5, 0.0][i % 4], period_us=50.0 + i,
                        sent_ns=10**18 + i)
        msg["inputs"] = [{"dtype": "float32", "shape": [64], "data": rng.standard_normal(64).astype(np.float32)
                          .tobytes()} for _ in range(2)]
        frames.append(msgpack.packb(msg))
    form, rows, batch, left = _bulk(frames, dec)
    # An int deadline (10) has its own width, so another frame length: those frames are not the form's.
    assert len(rows) == len(batch) == 30 and not len(left)
    _same_as_decoder(dec, frames, batch)
    assert batch.inputs[0].shape == (30, 64)


def test_rows_whose_values_the_checks_refuse_are_left_to_the_per_task_path():
    dec = warmed(id=1000, sent_ns=5)
    good = [msgpack.packb(base_task(1000 + i, sent_ns=5)) for i in range(4)]
    bad = [msgpack.packb(base_task(1100, priority=9, sent_ns=5)),  # priority out of range, same width
           msgpack.packb(base_task(1101, deadline_us=math.nan, sent_ns=5)),
           msgpack.packb(base_task(1102, deadline_us=-1.0, sent_ns=5)),
           msgpack.packb(base_task(1103, kernel="vector_sub", sent_ns=5))]  # same length, other fixed bytes
    frames = good[:2] + bad + good[2:]
    _, _, batch, left = _bulk(frames, dec)
    assert batch.rows.tolist() == [0, 1, 6, 7] and sorted(left.tolist()) == [2, 3, 4, 5]
    _same_as_decoder(dec, frames, batch)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(["id", "priority", "deadline_us", "period_us", "sent_ns"]), value=SCALARS,
       single=st.booleans())
def test_any_slot_value_is_taken_only_as_the_decoder_takes_it(field, value, single):
    dec = warmed(period_us=100.0, sent_ns=12345)
    changes = {"period_us": 100.0, "sent_ns": 12345, field: value}
    single = single and not (isinstance(value, float) and abs(value) > 3e38)
    frames = [msgpack.packb(base_task(9, **{**changes, field: 7 if field != "id" else 8})),
              msgpack.packb(base_task(9, **changes), use_single_float=single)]
    _, _, batch, _ = _bulk(frames, dec)
    if batch is not None:
        for row in batch.rows.tolist():
            assert outcome(lambda r=row: dec.decode(frames[r], 1000, 0))[0] == "task"
    _same_as_decoder(dec, frames, batch)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_flipped_bytes_never_make_a_row_the_decoder_would_refuse(data):
    dec = warmed(id=2**20)
    frames, flipped = [], 0
    for i in range(4):
        frame = bytearray(msgpack.packb(base_task(2**20 + i)))
        for _ in range(data.draw(st.integers(0, 2))):
            frame[data.draw(st.integers(0, len(frame) - 1))] = data.draw(st.integers(0, 255))
            flipped += 1
        frames.append(bytes(frame))
    _, _, batch, _ = _bulk(frames, dec)
    if not flipped:
        assert len(batch) == 4
    if batch is not None:
        for row in batch.rows.tolist():
            assert outcome(lambda r=row: dec.decode(frames[r], 1000, 0))[0] == "task"
    _same_as_decoder(dec, frames, batch)


# -- the two readings of match: row by row in Python (few rows) and as columns -----------------------------------

# The form's own reply endpoint and two of its length (one frame layout, several producers), then a longer one.
ENDPOINTS = ["ipc:///tmp/zmqrt-test-reply", "ipc:///tmp/zmqrt-test-replz", "ipc:///tmp/zmqrt-test-reply"[::-1],
             "ipc:///tmp/zmqrt-test-reply-2"]
# A value of each slot type byte's width (msgpack packs an int in its smallest type), valid or not.
SAME_WIDTH = {0: st.integers(0, 127), 0xC0: st.none(), 0xCB: st.one_of(st.floats(0, 1e6), st.floats()),
              0xCC: st.integers(128, 255), 0xCD: st.integers(256, 2**16 - 1), 0xCE: st.integers(2**16, 2**32 - 1),
              0xCF: st.integers(2**32, 2**64 - 1), 0xD0: st.integers(-128, -33), 0xD1: st.integers(-(2**15), -129),
              0xD2: st.integers(-(2**31), -(2**15) - 1), 0xD3: st.integers(-(2**63), -(2**31) - 1)}
# Each slot's values at the edges of its checks (a width of their own or not), by slot kind.
EDGE_VALUES = [[0, 127, 2**63, -1, "p3-12\u00e9", None],
               [0, 7, 8, 127, 128, 255, -1, -33, None],
               [0, 0.0, -0.0, 0.0005, 0.0015, 2.5e-3, 1e12, 10**12, 10**12 + 1, -1.0, math.nan, math.inf,
                math.nextafter(1e12, math.inf), 2**64 - 1, None],
               [0, 1, 0.0, -0.0, 5e-324, -1.0, math.nan, math.inf, 2**64 - 1, None],
               [0, 2**63 - 1, 2**63, 2**64 - 1, -1, None]]
EDGES = [st.sampled_from(values) for values in EDGE_VALUES]
BYTES = [0x00, 0x7F, 0x80, 0xC0, 0xFF]  # what a changed byte becomes


def _spots(form: BulkForm) -> list[int]:
    """Where a changed byte matters: the slots' bytes, the endpoint's characters, the ends of each fixed run."""
    spots = [q for _, p, width, _ in form._slots for q in range(p, p + width)]
    spots += [] if form._reply is None else list(range(*form._reply))
    at = set(form._fixed_at.tolist())
    return spots + sorted(q for q in at if q - 1 not in at or q + 1 not in at)


def _same_array(a, b) -> bool:
    return type(a) is type(b) is np.ndarray and a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _assert_same(got, want) -> None:
    """Both paths' (batch, left): equal left rows and every batch field equal, arrays bit for bit."""
    (a, left_a), (b, left_b) = got, want
    assert _same_array(left_a, left_b)
    assert (a is None) == (b is None)
    if a is None:
        return
    for f in fields(BulkBatch):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if f.name == "inputs":
            assert len(x) == len(y) and all(_same_array(p, q) for p, q in zip(x, y, strict=True)), f.name
        elif isinstance(y, np.ndarray):
            assert _same_array(x, y), f.name
        elif isinstance(y, list):  # ids and replies: the same values of the same types
            assert x == y and [type(v) for v in x] == [type(v) for v in y], f.name
        else:  # the form record; sent_ns None
            assert x is y, f.name


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_rows_read_in_python_equal_the_columns(data):
    draw = data.draw
    # A form (the slots present, nil or not), then a layout: the widths of the first frame's values, as the server
    # takes it (which need not be valid: a priority of 200 is one more layout).
    form_of = {"priority": draw(st.sampled_from([_DROP, None, 1])),
               "deadline_us": draw(st.sampled_from([_DROP, None, 500.0, 10])),
               "period_us": draw(st.sampled_from([_DROP, None, 100.0])),
               "sent_ns": draw(st.sampled_from([_DROP, None, 12345])),
               "reply_to": draw(st.sampled_from([_DROP, ENDPOINTS[0]]))}
    dec = warmed(**form_of)
    tpl = dec.templates[0]
    first = {"id": draw(st.sampled_from([7, 2**40, -200, "p3-1234"]))}
    for key, v in form_of.items():
        if key != "reply_to" and v is not _DROP:
            first[key] = draw(st.sampled_from([v, v, 200, -100, 2**40, 1.5]))
    frame0 = msgpack.packb(base_task(**{**form_of, **first}))
    form = BulkForm.of(tpl, LIMITS, BulkForm.layout(tpl, frame0)) if tpl.match(frame0) is not None else None
    if form is None:  # a layout the columns cannot read (a float priority): the per-task path's
        return
    frames = [frame0]
    spots = _spots(form)
    for _ in range(draw(st.integers(0, 2 * _COLUMNS_FROM))):
        # The first frame's values and any id of its width, but for at most one slot, which takes any value of its
        # width or one at the edges of its check; then maybe a byte or two changed.
        wild = draw(st.sampled_from([None, *range(len(form._slots))]))
        values = dict(first)
        for k, (kind, _, width, tb) in enumerate(form._slots):
            same = st.text("abc-09", min_size=width - 1, max_size=width - 1) if 0xA1 <= tb <= 0xBF else SAME_WIDTH[tb]
            if k == wild:
                values[SLOT_KEYS[kind]] = draw(st.one_of(same, EDGES[kind]))
            elif kind == 0:
                values["id"] = draw(same)
        if form_of["reply_to"] is not _DROP:
            values["reply_to"] = draw(st.sampled_from(ENDPOINTS[:3] * 3 + ENDPOINTS[3:]))
        frame = bytearray(msgpack.packb(base_task(**{**form_of, **values})))
        for _ in range(draw(st.integers(0, 2)) if len(frame) == form.length else 0):  # a fixed byte, a type byte,
            q = draw(st.one_of(st.sampled_from(spots), st.integers(0, len(frame) - 1)))  # a value's, an endpoint's
            frame[q] = draw(st.sampled_from(BYTES))
        frames.append(bytes(frame))
    rows = np.array(draw(st.permutations([i for i, f in enumerate(frames) if len(f) == form.length])), np.intp)
    recv_ns = np.array(draw(st.lists(st.integers(0, 2**62), min_size=len(rows), max_size=len(rows))), np.int64)
    replies = draw(st.sets(st.sampled_from(ENDPOINTS)))
    src = frames
    if draw(st.booleans()):
        src = FrameBlock(b"".join(frames), np.array([len(f) for f in frames]))
    _assert_same(form._match_rows(src, rows, recv_ns, replies), form._match_columns(src, rows, recv_ns, replies))


@pytest.mark.parametrize("form_of", [
    {"id": 7}, {"id": 2**40, "deadline_us": 10, "period_us": 100.0, "sent_ns": 2**40},
    {"id": "p3-1234", "priority": None, "deadline_us": 2**32, "sent_ns": 12345, "reply_to": _DROP},
    {"id": -200, "priority": _DROP, "deadline_us": None, "period_us": 3, "sent_ns": None}])
def test_rows_read_in_python_equal_the_columns_at_every_edge(form_of):
    # Every edge value of every slot, every endpoint (one other allowed), and every byte that matters changed to
    # each of BYTES, in batches of 7.
    dec = warmed(**form_of)
    tpl = dec.templates[0]
    frame0 = msgpack.packb(base_task(**form_of))
    form = BulkForm.of(tpl, LIMITS, BulkForm.layout(tpl, frame0))
    frames = [msgpack.packb(base_task(**{**form_of, "reply_to": ep})) for ep in ENDPOINTS]
    for kind, _, _, _ in form._slots:
        frames += [msgpack.packb(base_task(**{**form_of, SLOT_KEYS[kind]: v})) for v in EDGE_VALUES[kind]]
    for q in _spots(form):
        for byte in BYTES:
            frame = bytearray(frame0)
            frame[q] = byte
            frames.append(bytes(frame))
    rows = np.array([i for i, f in enumerate(frames) if len(f) == form.length], np.intp)
    assert len(rows) > 5 * len(_spots(form))
    block = FrameBlock(b"".join(frames), np.array([len(f) for f in frames]))
    for lo in range(0, len(rows), 7):
        some = rows[lo:lo + 7]
        recv_ns = (lo + np.arange(len(some), dtype=np.int64)) * 10**9
        for src in (frames, block):
            _assert_same(form._match_rows(src, some, recv_ns, {ENDPOINTS[1]}),
                         form._match_columns(src, some, recv_ns, {ENDPOINTS[1]}))


def test_match_reads_few_rows_in_python_and_more_as_columns(monkeypatch):
    dec = warmed(id=1000)
    frames = [msgpack.packb(base_task(1000 + i)) for i in range(_COLUMNS_FROM)]
    form = BulkForm.of(dec.templates[0], LIMITS)

    def wrong(*args):
        raise AssertionError("the other path")

    for n, other in ((1, "_match_columns"), (_COLUMNS_FROM - 1, "_match_columns"), (_COLUMNS_FROM, "_match_rows")):
        with monkeypatch.context() as m:
            m.setattr(BulkForm, other, wrong)
            batch, left = form.match(frames, np.arange(n), np.zeros(n, np.int64))
        assert len(batch) == n and not len(left)


def test_a_layout_with_a_nil_id_is_left_to_the_per_task_path():
    dec = warmed(id=1000)
    tpl = dec.templates[0]
    frame = msgpack.packb(base_task(None))
    assert tpl.match(frame) is not None and BulkForm.of(tpl, LIMITS, BulkForm.layout(tpl, frame)) is None


@pytest.mark.parametrize("n", [1, 5, _ENCODE_COLUMNS_FROM - 1, _ENCODE_COLUMNS_FROM, 20])  # rows, then columns
@pytest.mark.parametrize("task_id", [7, 2**33, "a-123456"])
def test_result_rows_equal_the_per_task_encoder(task_id, n):
    rng = np.random.default_rng()
    # Outputs as the server hands them over: the first n rows of a padded launch's (larger) outputs.
    outputs = [rng.standard_normal((n + 3, 64)).astype(np.float32)[:n],
               rng.standard_normal((n + 3, 3, 2)).astype(np.complex64)[:n]]
    ids = [task_id] * n if isinstance(task_id, str) else [task_id + i for i in range(n)]
    raw = np.array([np.frombuffer(msgpack.packb(i), np.uint8) for i in ids])
    missed = rng.random(n) < 0.5
    queue_us, service_us = rng.random(n) * 100, rng.random(n) * 1000
    enc = BulkResults([o[0] for o in outputs], raw[0].tobytes())
    got = enc.encode(raw, outputs, missed, queue_us, service_us)
    assert len(got) == n * enc.length
    ok = OkEncoder([o[0] for o in outputs])
    for i in range(n):
        want = ok.encode(ids[i], [o[i] for o in outputs], bool(missed[i]), float(queue_us[i]), float(service_us[i]))
        assert got[i * enc.length:(i + 1) * enc.length] == want


def test_a_form_fits_exactly_the_frames_of_its_layout():
    """``BulkForm.fits`` (the server's first try for a backlog's form) agrees with the template's match and
    ``layout``: same length, fixed bytes and slot type bytes; any other layout or form does not fit."""
    dec = warmed(id=1000)
    tpl = dec.templates[0]
    frame = msgpack.packb(base_task(1001))
    form = BulkForm.of(tpl, LIMITS, BulkForm.layout(tpl, frame))
    assert form.fits(frame) and form.fits(msgpack.packb(base_task(1999)))
    wider = msgpack.packb(base_task(70000))  # uint32 id: another layout (and length)
    assert tpl.match(wider) is not None and BulkForm.layout(tpl, wider) != BulkForm.layout(tpl, frame)
    assert not form.fits(wider)
    other = bytearray(frame)
    other[frame.index(b"vector_add")] ^= 1  # another kernel name: another form
    assert not form.fits(bytes(other))
    assert not form.fits(frame[:-1])


@pytest.mark.parametrize("narrow", [False, True])  # narrow: one power-of-two bucket, the fast path
def test_record_many_equals_recording_one_at_a_time(narrow):
    rng = np.random.default_rng()
    values = (rng.integers(300_000, 500_000, 64) if narrow else
              np.concatenate([rng.integers(-5, 10**9, 5000), [0, 1, 2047, 2048, 60 * 10**9 + 5]]))
    tracker = LatencyTracker(interval_stage="service")
    tracker.record_many("k", 0, "service", values)
    one = new_histogram()
    for v in values.tolist():
        _record(one, v)
    h = tracker.histogram("k", 0, "service")
    assert list(h.counts) == list(one.counts)
    assert (h.total_count, h.min_value, h.max_value) == (one.total_count, one.min_value, one.max_value)
    assert tracker.take_interval().total_count == len(values)


# -- through the server, with real sockets --------------------------------------------------------------------

@pytest.fixture()
def sockets(tmp_path):
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    reply = f"ipc://{tmp_path}/reply"
    pull.bind(reply)
    yield ctx, pull, reply, f"ipc://{tmp_path}/in"
    pull.close(0)
    ctx.term()


def _results(pull, n: int) -> dict:
    got = {}
    while len(got) < n and pull.poll(5000):
        res = decode_result(pull.recv())
        assert res.id not in got, f"two results for {res.id}"
        got[res.id] = res
    return got


def test_the_server_runs_a_backlog_as_a_batch_and_words_what_it_leaves(sockets):
    ctx, pull, reply, ingest = sockets
    server = Server(ServerConfig(backend="cpu", ingest=ingest, lanes=2, calibrate=False, batch_max=64), ctx=ctx)
    try:
        rng = np.random.default_rng()
        pairs = [(rng.standard_normal(256).astype(np.float32), rng.standard_normal(256).astype(np.float32))
                 for _ in range(60)]

        def frame(i, **kw):
            a, b = pairs[i]
            return encode_task(1000 + i, "vector_add", [a, b], reply_to=reply, sent_ns=time.time_ns(), **kw)

        for i in range(3):  # the form's first frames: validated, then a byte template
            server._accept(frame(i, deadline_us=1e6))
            server._poll_lanes()
        frames = [frame(i, deadline_us=1e6) for i in range(3, 60)]
        frames[10] = frame(13, deadline_us=1e6, priority=99)  # refused: its own code
        frames[20] = frame(23, deadline_us=0.0)  # cannot be met: refused at admission
        server._accept_backlog(frames, [time.monotonic_ns()] * len(frames))
        while server._busy_lanes:
            server._poll_lanes()
        got = _results(pull, 60)
        assert len(got) == 60
        assert got[1013].code is Code.BAD_PRIORITY
        assert got[1023].code is Code.DEADLINE_INFEASIBLE
        for i in range(60):
            if 1000 + i not in (1013, 1023):
                res = got[1000 + i]
                assert res.ok, (res.code, res.message)
                np.testing.assert_array_equal(res.outputs[0], pairs[i][0] + pairs[i][1])
        assert server.bulk_tasks == 55  # the backlog but its two refused rows
        server._flush_books()
        assert server.tracker.ok == 58
        assert server.tracker.histogram("vector_add", 4, "service").total_count == 58
    finally:
        server.close()


def test_backlogs_of_two_layouts_in_turn_each_run_as_a_batch(sockets):
    """The server tries the last backlog's form first (``BulkForm.fits``): a backlog of another layout of the form
    (wider ids), one of the first again, and a mixed one each still run as batches, every task answered once."""
    ctx, pull, reply, ingest = sockets
    server = Server(ServerConfig(backend="cpu", ingest=ingest, lanes=2, calibrate=False, batch_max=64), ctx=ctx)
    try:
        rng = np.random.default_rng()
        x, y = rng.standard_normal((2, 256), dtype=np.float32)

        def frame(task_id):
            return encode_task(task_id, "vector_add", [x, y], reply_to=reply, deadline_us=1e6)

        for task_id in (1, 2, 3):
            server._accept(frame(task_id))
            server._poll_lanes()
        backlogs = [[frame(i) for i in range(10, 20)], [frame(70000 + i) for i in range(10)],
                    [frame(i) for i in range(20, 30)], [frame(i) for i in range(30, 35)] + [frame(80000 + i)
                                                                                             for i in range(5)]]
        sent = 3
        for frames in backlogs:
            before = server.bulk_tasks
            server._accept_backlog(frames, [time.monotonic_ns()] * len(frames))
            while server._busy_lanes:
                server._poll_lanes()
            assert server.bulk_tasks - before >= 5  # a batch, not the per-task path
            sent += len(frames)
        got = _results(pull, sent)
        assert len(got) == sent and all(r.ok for r in got.values())
        np.testing.assert_array_equal(got[70005].outputs[0], x + y)
    finally:
        server.close()


def test_bulk_latencies_are_held_then_recorded_together(sockets, monkeypatch):
    # A batch's latencies wait in the server until _BULK_HIST_VALUES of them are held, then go into the histograms
    # at once; a full flush (what every reader of the tracker runs first) records what is held.
    import zmqrt.server as server_mod

    monkeypatch.setattr(server_mod, "_BULK_HIST_VALUES", 40)
    ctx, pull, reply, ingest = sockets
    server = Server(ServerConfig(backend="cpu", ingest=ingest, lanes=2, calibrate=False, batch_max=64), ctx=ctx)
    try:
        x = np.ones(256, np.float32)

        def frames(lo, hi):
            return [encode_task(i, "vector_add", [x, x], reply_to=reply, sent_ns=time.time_ns()) for i in range(lo, hi)]

        for f in frames(0, 3):  # the form's first frames: validated, then a byte template
            server._accept(f)
            server._poll_lanes()
        server._flush_books()

        def run_batch(lo, hi):
            batch = frames(lo, hi)
            server._accept_backlog(batch, [time.monotonic_ns()] * len(batch))
            while server._busy_lanes:
                server._poll_lanes()

        def service_count():
            h = server.tracker.histogram("vector_add", 4, "service")
            return h.total_count if h is not None else 0

        run_batch(3, 33)  # 30 held, below the bound
        assert server.bulk_tasks == 30 and service_count() == 3
        run_batch(33, 63)  # 60 held: recorded together
        assert service_count() == 63 and server._bulk_hist_n == 0
        run_batch(63, 73)
        assert service_count() == 63
        server._flush_books()
        assert service_count() == 73
        assert server.tracker.histogram("vector_add", 4, "e2e").total_count == 73
        assert len(_results(pull, 73)) == 73
    finally:
        server.close()


def test_bulk_batches_are_traced_in_order_and_summarized(sockets, tmp_path):
    # With --trace, each bulk batch gets one row: its points in loop order, its size and lane, written beside the
    # task trace at close; summarize_batches weights the gaps by the batch's tasks.
    from zmqrt.trace import BATCH_COLUMNS, BATCH_STAGES, batch_trace_path, summarize_batches

    ctx, pull, reply, ingest = sockets
    path = tmp_path / "t.npy"
    server = Server(ServerConfig(backend="cpu", ingest=ingest, lanes=2, calibrate=False, batch_max=64,
                                 trace_path=str(path)), ctx=ctx)
    try:
        x = np.ones(256, np.float32)
        frames = [encode_task(i, "vector_add", [x, x], reply_to=reply) for i in range(40)]
        for f in frames[:3]:  # the form's first frames: validated, then a byte template
            server._accept(f)
            server._poll_lanes()
        for lo, hi in ((3, 13), (13, 40)):
            stamps = [time.monotonic_ns() for _ in range(lo, hi)]
            server._accept_backlog(frames[lo:hi], stamps)
            while server._busy_lanes:
                server._poll_lanes()
        assert len(_results(pull, 40)) == 40
    finally:
        server.close()
    rows = np.load(batch_trace_path(path))
    assert batch_trace_path(path).name == "t.batches.npy" and rows.shape == (2, len(BATCH_COLUMNS))
    assert rows[:, len(BATCH_STAGES)].tolist() == [10, 27]
    stages = rows[:, :len(BATCH_STAGES)]
    assert (stages > 0).all() and (np.diff(stages, axis=1) >= 0).all()
    assert rows[1, 0] >= rows[0, len(BATCH_STAGES) - 1]  # the second backlog was read after the first was sent
    s = summarize_batches(rows)
    assert s["batches"] == 2 and s["tasks"] == 37 and s["batch_size"]["max"] == 27
    total = (rows[:, len(BATCH_STAGES) - 1] - rows[:, 0]) / 1e3
    # Weighted by tasks: the median task is in the batch of 27, whichever batch took longer.
    assert s["first_recv->sent"]["p50"] == pytest.approx(total[1])
    assert s["first_recv->sent"]["p99"] == pytest.approx(total.max())
    assert 0 < s["loop_share"]["recv+match+submit"] <= 1 and s["match"]["max"] > 0


def test_rows_class_pads_a_batch_to_few_launch_sizes():
    from zmqrt.server import rows_class

    assert [rows_class(k, 128) for k in (1, 2, 3, 4, 5, 6, 7, 9, 13, 17, 25, 33, 49, 65, 97, 128)] == \
        [1, 2, 3, 4, 6, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 128]
    assert rows_class(100, 100) == 100  # never past what one launch holds
    for k in range(1, 300):
        c = rows_class(k, 1 << 20)
        assert k <= c < 2 * k or k <= 2
    assert sorted({rows_class(k, 128) for k in range(1, 129)}) == [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128]


def test_bulk_batches_run_as_launches_of_their_size_class_and_answer_only_their_rows(sockets):
    ctx, pull, reply, ingest = sockets
    server = Server(ServerConfig(backend="cpu", ingest=ingest, lanes=2, calibrate=False, batch_max=64), ctx=ctx)
    seen = []
    submit_rows = server.backend.submit_rows

    def spy(lane, spec, inputs, checked, rows):
        seen.append((len(inputs[0]), rows, checked.outputs[0][0]))
        submit_rows(lane, spec, inputs, checked, rows)

    server.backend.submit_rows = spy
    try:
        rng = np.random.default_rng()
        x = rng.standard_normal((40, 256)).astype(np.float32)
        frames = [encode_task(i, "vector_add", [x[i], x[i]], reply_to=reply) for i in range(40)]
        for f in frames[:3]:  # the form's first frames: validated, then a byte template
            server._accept(f)
            server._poll_lanes()
        at = 3
        for k in (5, 6, 7, 19):
            server._accept_backlog(frames[at:at + k], [time.monotonic_ns()] * k)
            at += k
            while server._busy_lanes:
                server._poll_lanes()
        got = _results(pull, 40)
        assert len(got) == 40
        for i in range(40):
            np.testing.assert_array_equal(got[i].outputs[0], 2 * x[i])
        assert seen == [(5, 6, (6, 256)), (6, 6, (6, 256)), (7, 8, (8, 256)), (19, 24, (24, 256))]
    finally:
        server.close()


def test_a_burst_through_real_sockets_gets_every_result_once(sockets):
    ctx, pull, reply, ingest = sockets
    server = Server(ServerConfig(backend="cpu", ingest=ingest, lanes=2, calibrate=False, batch_max=64), ctx=ctx)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    push = ctx.socket(zmq.PUSH)
    push.connect(ingest)
    try:
        rng = np.random.default_rng()
        n = 3000
        a = rng.standard_normal((n, 256)).astype(np.float32)
        b = rng.standard_normal((n, 256)).astype(np.float32)
        frames = [encode_task(f"t-{100000 + i}", "vector_add", [a[i], b[i]], reply_to=reply, deadline_us=5e6)
                  for i in range(n)]
        for f in frames:
            push.send(f)
        got = _results(pull, n)
        assert len(got) == n
        for i in range(n):
            res = got[f"t-{100000 + i}"]
            assert res.ok, (res.code, res.message)
            np.testing.assert_array_equal(res.outputs[0], a[i] + b[i])
        assert server.bulk_tasks > 0  # the loop fell behind a burst sent this fast, and read it in batches
    finally:
        push.close(0)
        server.stop()
        thread.join(10)
        server.close()


def _server(ingest: str, ctx, lanes: int = 2) -> Server:
    return Server(ServerConfig(backend="cpu", ingest=ingest, lanes=lanes, calibrate=False, batch_max=64), ctx=ctx)


def test_one_batch_takes_every_producer_of_a_form_and_each_gets_its_own_results(sockets, tmp_path):
    ctx, pull, reply, ingest = sockets
    others = []
    for name in ("replz", "reply"[::-1]):  # same length as "reply": same frame layout, other endpoint
        sock = ctx.socket(zmq.PULL)
        sock.bind(f"ipc://{tmp_path}/{name}")
        others.append((sock, f"ipc://{tmp_path}/{name}"))
    server = _server(ingest, ctx)
    try:
        rng = np.random.default_rng()
        endpoints = [reply] + [ep for _, ep in others]
        x = rng.standard_normal((90, 256)).astype(np.float32)
        frames = [encode_task(5000 + i, "vector_add", [x[i], x[i]], reply_to=endpoints[i % 3]) for i in range(90)]
        for i in range(9):  # each producer's first frames: its endpoint validated, its own byte template
            server._accept(frames[i])
            server._poll_lanes()
        server._accept_backlog(frames[9:], [time.monotonic_ns()] * 81)
        assert server.bulk_tasks == 81 and server.batches == 2  # 64 (--batch-max), then the 17 left
        server._poll_lanes()
        for k, sock in enumerate([pull] + [s for s, _ in others]):
            got = _results(sock, 30)
            assert sorted(got) == [5000 + i for i in range(k, 90, 3)]  # its own, each once
            for task_id, res in got.items():
                assert res.ok
                np.testing.assert_array_equal(res.outputs[0], 2 * x[task_id - 5000])
            assert not sock.poll(50)
    finally:
        server.close()
        for sock, _ in others:
            sock.close(0)


def test_a_row_with_an_endpoint_not_yet_validated_takes_the_per_task_path(sockets, tmp_path):
    ctx, pull, reply, ingest = sockets
    other = ctx.socket(zmq.PULL)
    other_ep = f"ipc://{tmp_path}/replz"
    other.bind(other_ep)
    server = _server(ingest, ctx)
    try:
        x = np.ones(256, np.float32)
        for i in range(3):
            server._accept(encode_task(i, "vector_add", [x, x], reply_to=reply))
            server._poll_lanes()
        frames = [encode_task(10 + i, "vector_add", [x, x], reply_to=reply if i != 4 else other_ep)
                  for i in range(8)]
        server._accept_backlog(frames, [time.monotonic_ns()] * 8)
        server._poll_lanes()
        assert server.bulk_tasks == 7
        assert sorted(_results(pull, 10)) == [0, 1, 2, 10, 11, 12, 13, 15, 16, 17]
        assert list(_results(other, 1)) == [14]
    finally:
        server.close()
        other.close(0)


def test_a_backlog_read_while_every_lane_is_busy_waits_as_one_pending_batch(sockets):
    ctx, pull, reply, ingest = sockets
    server = _server(ingest, ctx, lanes=1)
    try:
        x = np.arange(256, dtype=np.float32)
        for i in range(3):
            server._accept(encode_task(1000 + i, "vector_add", [x, x], reply_to=reply))
            server._poll_lanes()
        first = [encode_task(1100 + i, "vector_add", [x, x], reply_to=reply) for i in range(10)]
        second = [encode_task(1200 + i, "vector_add", [x, x], reply_to=reply) for i in range(10)]
        server._accept_backlog(first, [time.monotonic_ns()] * 10)  # takes the only lane
        server._accept_backlog(second, [time.monotonic_ns()] * 10)  # no lane: pending, not queued
        assert server._pending_bulk is not None and not len(server.sched)
        server._poll_lanes()
        server._start_pending_bulk()
        server._poll_lanes()
        got = _results(pull, 23)
        assert sorted(got) == [1000, 1001, 1002, *range(1100, 1110), *range(1200, 1210)]
        assert all(r.ok for r in got.values()) and server.bulk_tasks == 20
    finally:
        server.close()


def test_shutdown_answers_a_pending_batch(sockets):
    ctx, pull, reply, ingest = sockets
    server = _server(ingest, ctx, lanes=1)
    x = np.ones(256, np.float32)
    for i in range(3):
        server._accept(encode_task(1000 + i, "vector_add", [x, x], reply_to=reply))
        server._poll_lanes()
    server._accept_backlog([encode_task(1100 + i, "vector_add", [x, x], reply_to=reply) for i in range(5)],
                           [time.monotonic_ns()] * 5)
    server._accept_backlog([encode_task(1200 + i, "vector_add", [x, x], reply_to=reply) for i in range(5)],
                           [time.monotonic_ns()] * 5)
    assert server._pending_bulk is not None
    server.stop()
    server.serve_forever()  # stopped at once: drains, runs the pending batch, closes
    got = _results(pull, 13)
    assert len(got) == 13 and all(r.ok for r in got.values())


def test_rows_are_grouped_by_endpoint_exactly():
    dec = warmed(id=1000, reply_to="ipc:///tmp/zmqrt-test-reply")
    # Same length, one character apart, and the same characters in another order: three groups.
    eps = ["ipc:///tmp/zmqrt-test-reply", "ipc:///tmp/zmqrt-test-replz", "ipc:///tmp/zmqrt-test-reply"[::-1]]
    frames = [msgpack.packb(base_task(1000 + i, reply_to=eps[(i * 7) % 3])) for i in range(12)]
    form = BulkForm.of(dec.templates[0], LIMITS)
    batch, left = form.match(frames, np.arange(12), np.zeros(12, np.int64), set(eps))
    assert not len(left) and len(batch) == 12 and sorted(batch.replies) == sorted(eps)
    assert [batch.replies[g] for g in batch.reply_of.tolist()] == [eps[(i * 7) % 3] for i in range(12)]
    batch, left = form.match(frames, np.arange(12), np.zeros(12, np.int64), {eps[0]})  # the others not validated
    assert batch.rows.tolist() == [0, 3, 6, 9] and sorted(left.tolist()) == [1, 2, 4, 5, 7, 8, 10, 11]


def test_a_form_without_reply_to_is_answered_on_the_results_endpoint(sockets, tmp_path):
    ctx, _, _, ingest = sockets
    results = f"ipc://{tmp_path}/results"
    server = Server(ServerConfig(backend="cpu", ingest=ingest, results=results, lanes=2, calibrate=False,
                                 batch_max=64), ctx=ctx)
    pull = ctx.socket(zmq.PULL)
    pull.connect(results)
    try:
        x = np.arange(256, dtype=np.float32)
        time.sleep(0.1)  # the PULL connected before the first result
        for i in range(3):
            server._accept(encode_task(1000 + i, "vector_add", [x, x]))
            server._poll_lanes()
        server._accept_backlog([encode_task(1100 + i, "vector_add", [x, x]) for i in range(20)],
                               [time.monotonic_ns()] * 20)
        server._poll_lanes()
        got = _results(pull, 23)
        assert sorted(got) == [1000, 1001, 1002, *range(1100, 1120)] and server.bulk_tasks == 20
        np.testing.assert_array_equal(got[1105].outputs[0], 2 * x)
    finally:
        pull.close(0)
        server.close()


def test_the_batch_trace_ring_keeps_the_newest_rows_oldest_first():
    from zmqrt.trace import BATCH_COLUMNS, BatchTrace

    ring = BatchTrace(capacity=2)
    for i in range(3):
        ring.add(tuple(range(i, i + len(BATCH_COLUMNS))))
    rows = ring.to_numpy()
    assert rows[:, 0].tolist() == [1, 2] and rows.shape == (2, len(BATCH_COLUMNS))
    with pytest.raises(ValueError, match="capacity"):
        BatchTrace(capacity=0)
