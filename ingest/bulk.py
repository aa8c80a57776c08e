"""Many frames of one form at a time: a batch decoded and its results encoded with numpy, not per task in Python.

At a few thousand tasks a second the server decodes each frame as it comes (``ingest.template``: about 9 µs on
the H200 host) and encodes each result (about 3 µs). At 200,000 tasks a second that per-task Python is the whole
budget of several cores. When the loop is behind and batching is on (``--batch-max``), the frames it reads
together usually repeat one form: the same bytes but for the id, priority, deadline, period, ``sent_ns``, the
data and (between producers) the reply endpoint's characters. A byte template (``FrameTemplate``) plus the width
of each slot's value (``BulkForm.layout``) fixes where everything is, so every frame of that layout sits in one
``(n, length)`` byte matrix, and

- :class:`BulkForm` checks the fixed bytes and the slots' type bytes of all rows in a few array operations, reads
  the slot values as big-endian columns, applies the per-task checks of ``TaskDecoder._scalars`` to whole columns,
  and gives the inputs as ``(n, ...)`` strided views: the batch's stacked inputs with no per-task copy. A batch of
  few rows (the many engines' case at high rates) is read row by row in Python instead, which makes the same batch
  in a third to a half of the time at 1 to 8 rows (``_COLUMNS_FROM``);
- :class:`BulkResults` writes the ok results of a finished batch into one byte matrix (its row template, then the
  ids, data, missed flags and latencies as columns). Each row equals ``OkEncoder.encode``'s frame for that task.

A row that does not match, or whose values any check refuses, is left to the per-task path, which decodes or
words its rejection exactly as before. ``tests/test_bulk.py`` checks both directions against the per-task
decoder and encoder on random and mutated frames, and the two readings of a batch against each other.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Container
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
from numpy.lib.stride_tricks import as_strided

from .protocol import _LAT_QS, _LAT_QS_HEAD, _MISSED_KEY, _SERVICE_KEY, MAX_DEADLINE_US, Limits, OkEncoder
from .template import _DATA, _NUMBERS, FrameTemplate

__all__ = ["NO_DEADLINE", "BulkBatch", "BulkForm", "BulkResults", "FrameBlock"]

NO_DEADLINE = np.iinfo(np.int64).max  # deadline_ns of a task that has none
_U1 = np.uint8
# msgpack type byte -> struct code of the big-endian value that follows it, and its numpy dtype
_STRUCT = {0xCB: "d", 0xCA: "f", 0xCF: "Q", 0xCE: "I", 0xCD: "H", 0xCC: "B", 0xD3: "q", 0xD2: "i", 0xD1: "h", 0xD0: "b"}
_BE = {tb: np.dtype(">" + code) for tb, code in _STRUCT.items()}
_FLOATS = (0xCA, 0xCB)
_UNSIGNED = (0xCC, 0xCD, 0xCE, 0xCF) + tuple(range(0x80))  # never negative: no ">= 0" check to pay for
_INT64_MAX = np.iinfo(np.int64).max
# From this many rows on, match reads the frames as columns (_match_columns); below it, row by row in Python
# (_match_rows). Each numpy call costs a few µs whatever the rows, so the columns cost about 30 µs for one row and
# +0.3 µs a row; Python costs about 9 µs and +1.4 µs a row. Median µs (columns / rows) on the 2-core dev VM, 2 KiB
# vector_add frames with int ids: n=1 29.7 / 8.8, 8 35.5 / 19.5, 16 37.7 / 31.0, 20 37.0 / 35.9, 22 37.9 / 38.6,
# 24 38.3 / 41.4, 64 47.4 / 96.1. Even at 20 rows for a FrameBlock, at 24 for str ids and several endpoints.
_COLUMNS_FROM = 22
# From this many rows on, BulkResults.encode writes the results as columns of one byte matrix; below it, row by row
# (_encode_rows). µs (columns / rows) on the 2-core dev VM, 1 KiB vector_add results with int ids: n=1 9.0 / 4.1,
# 2 6.1 / 3.1, 4 6.3 / 4.1, 8 6.9 / 6.2, 12 7.1 / 9.9, 16 7.5 / 10.9.
_ENCODE_COLUMNS_FROM = 8


class FrameBlock:
    """Frames back to back in one buffer (a relay's message, ``zmqrt.relay``): ``block[i]`` is frame ``i`` as bytes,
    and ``matrix`` reads rows of one length without a per-frame copy in Python."""

    __slots__ = ("buf", "lengths", "starts")

    def __init__(self, buf: bytes | memoryview, lengths: np.ndarray) -> None:
        self.buf = np.frombuffer(buf, _U1)
        self.lengths = lengths.astype(np.int64)
        ends = np.cumsum(self.lengths)
        self.starts = ends - self.lengths
        if len(lengths) and (int(ends[-1]) != len(self.buf) or int(self.lengths.min()) < 0):
            raise ValueError("frame lengths do not add up to the block")

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int) -> bytes:
        a = int(self.starts[i])
        return self.buf[a:a + int(self.lengths[i])].tobytes()

    def matrix(self, rows: np.ndarray, length: int) -> np.ndarray:
        """``(len(rows), length)`` bytes of the frames ``rows`` (each ``length`` long): a view where they lie back to
        back in the block, else one gather."""
        starts = self.starts[rows]
        n = len(rows)
        if n and (np.diff(starts) == length).all():  # back to back, in order: a view
            a = int(starts[0])
            return self.buf[a:a + n * length].reshape(n, length)
        # Row i of this window view is buf[i:i + length]: taking rows `starts` copies each frame as one run (an
        # index per byte cost 25x as much).
        window = as_strided(self.buf, shape=(len(self.buf) - length + 1, length), strides=(1, 1), writeable=False)
        return window[starts]


@dataclass(slots=True, eq=False)
class BulkBatch:
    """Tasks of one form decoded together; row ``i`` of every column is one task."""

    rec: tuple  # the template's form record: (form, kernel, params, reply_to, views, inputs) (TaskDecoder.match)
    rows: np.ndarray  # indices of these tasks in the frame list given to BulkForm.match
    replies: list  # the reply endpoints of the batch (str, or None when the form sends none)...
    reply_of: np.ndarray  # ...and each row's index into it
    ids: list  # task ids (int or str), as msgpack would decode them
    id_raw: np.ndarray  # (n, w) uint8: each id's msgpack bytes, echoed into its result
    priority: np.ndarray  # int64
    deadline_ns: np.ndarray  # int64 absolute (monotonic); NO_DEADLINE where none
    sent_ns: np.ndarray | None  # int64 producer wall clock, or None when the form carries none
    recv_ns: np.ndarray  # int64 receipt times
    inputs: list[np.ndarray]  # (n, ...) per input: views of the batch's byte matrix

    def __len__(self) -> int:
        return len(self.ids)

    def keys(self) -> list[tuple[str | None, int | str]]:
        """Each row's ``(reply_to, id)``: the key the server keeps a task in flight under."""
        replies = self.replies
        return [(replies[g], i) for g, i in zip(self.reply_of.tolist(), self.ids)]  # noqa: B905 - one per row

    def take(self, keep: np.ndarray) -> BulkBatch:
        """The rows where ``keep`` (bool) is true."""
        ids = [i for i, k in zip(self.ids, keep.tolist()) if k]  # noqa: B905 - one flag per row
        return BulkBatch(self.rec, self.rows[keep], self.replies, self.reply_of[keep], ids, self.id_raw[keep],
                         self.priority[keep], self.deadline_ns[keep],
                         None if self.sent_ns is None else self.sent_ns[keep], self.recv_ns[keep],
                         [a[keep] for a in self.inputs])


class BulkForm:
    """The vectorized reading of one ``FrameTemplate``; ``of(template, limits)`` is None where a slot's width
    can vary (a str8 id, a bool) and the per-task path must read it."""

    __slots__ = ("template", "length", "_fixed_at", "_fixed", "_slots", "_data", "_limits", "_id_str", "_reply",
                 "_reply_bytes", "_runs", "_runs_of", "_values_of", "_checks", "_id_span", "_timed", "_row_values")

    def __init__(self, template: FrameTemplate, length: int, fixed_at: np.ndarray, fixed: np.ndarray,
                 slots: list, data: list, limits: Limits, id_str: bool, reply: tuple[int, int] | None) -> None:
        self.template = template
        self.length = length
        self._fixed_at, self._fixed = fixed_at, fixed
        self._slots, self._data = slots, data
        self._limits = limits
        self._id_str = id_str
        # The characters of the reply endpoint: a variable region, so that one batch takes the frames of every
        # producer of the form whose endpoint has the same length (each producer binds its own).
        self._reply = reply
        reply_to = template.form[3]
        self._reply_bytes = np.frombuffer(reply_to.encode(), _U1) if reply is not None else None
        # For the row-by-row path (_match_rows): one struct reads a row's fixed bytes and type bytes, as runs of
        # consecutive offsets compared as one tuple; another reads its slot values (numbers, a fixint's byte, a str
        # id's characters). Two C calls a row instead of a bytes.startswith per run and an unpack per slot.
        order = np.argsort(fixed_at, kind="stable")
        at, raw = fixed_at[order].tolist(), fixed[order].tobytes()
        cuts = [k for k in range(1, len(at)) if at[k] != at[k - 1] + 1]
        runs = [(at[lo], raw[lo:hi]) for lo, hi in zip([0, *cuts], [*cuts, len(at)], strict=True)]
        self._runs = tuple(run for _, run in runs)
        self._runs_of = _reader([(a, f"{len(run)}s", len(run)) for a, run in runs])
        values = [(kind, tb, (p, "B", 1) if tb < 0x80 else (p + 1, _STRUCT.get(tb, f"{width - 1}s"), width - 1))
                  for kind, p, width, tb in slots if tb != 0xC0]  # a nil has no value: as no slot
        self._values_of = _reader([field for _, _, field in values])
        self._checks = tuple((kind, tb) for kind, tb, _ in values)
        self._row_values = _compile_row_values(self._checks, id_str, limits.priority_levels)
        self._id_span = next((p, p + width) for kind, p, width, _ in slots if kind == 0)
        self._timed = tuple(any(k == kind for k, _ in self._checks) for kind in (2, 4))  # a deadline, a sent_ns

    @staticmethod
    def layout(template: FrameTemplate, frame: bytes) -> tuple[int, ...] | None:
        """The type byte of each scalar slot of ``frame``, a frame that matched ``template`` (fixints as 0: one
        width), or None where a slot's width is not in its type byte. A template matches every width of a slot
        (ids of any length), a ``BulkForm`` one layout: the frames of one layout have one length."""
        tbs = []
        p = 0
        try:
            for _seg, n, kind, size in template.segments:
                p += n
                if kind == -1:
                    return tuple(tbs) if p == len(frame) else None
                if kind >= _DATA:
                    p += size
                    continue
                tb = frame[p]
                width = _width(tb)
                if width is None:
                    return None
                tbs.append(0 if tb < 0x80 else tb)
                p += width
        except IndexError:
            return None
        return None

    @classmethod
    def of(cls, template: FrameTemplate, limits: Limits, layout: tuple[int, ...] | None = None) -> BulkForm | None:
        """The reader of ``template``'s frames of ``layout`` (``BulkForm.layout`` of one of them; default: the
        template's own frame's), or None where it cannot be read as columns."""
        tbytes = template.tbytes if layout is None else _merge(template, layout)
        fixed_at: list[int] = []
        fixed: list[bytes] = []
        slots, data = [], []
        type_at: list[int] = []
        type_bytes: list[int] = []
        p, id_str = 0, False
        views = template.form[4]
        for (seg, n, kind, size), tb in zip(template.segments, (*tbytes, None)):  # noqa: B905
            fixed_at.extend(range(p, p + n))
            fixed.append(seg)
            p += n
            if kind == -1:
                break
            if kind >= _DATA:
                dtype, count, shape = views[kind - _DATA]
                data.append((p, size, dtype, (count,) if shape is None else tuple(shape)))
                p += size
                continue
            width = _width(tb)
            if width is None:
                return None
            if 0xA1 <= tb <= 0xBF:  # a fixstr: only an id may be one
                if kind != 0 or width - 1 > limits.max_id_len:
                    return None
                id_str = True
            if tb in _FLOATS and kind in (0, 1, 4):  # a float id, priority or sent_ns: the validator refuses it
                return None
            if tb == 0xC0 and kind == 0:  # a nil id: refused by the per-task path, which words it
                return None
            slots.append((kind, p, width, tb))
            if tb >= 0x80:  # a type byte of one value: checked with the fixed bytes (a fixint's is any below 0x80)
                type_at.append(p)
                type_bytes.append(tb)
            p += width
        fixed_at_arr = np.asarray(fixed_at, np.intp)
        fixed_arr = np.frombuffer(b"".join(fixed), _U1)
        reply = None
        reply_to = template.form[3]
        if reply_to is not None:  # find the endpoint's characters in the fixed bytes: "reply_to" then its str
            chars = reply_to.encode()
            needle = b"\xa8reply_to" + msgpack.packb(reply_to)
            q = 0
            for seg, n, _, _ in template.segments:
                at = seg.find(needle)
                if at >= 0:
                    end = fixed_at[q + at + len(needle) - 1] + 1  # fixed_at maps fixed-byte order to frame offsets
                    reply = (end - len(chars), end)
                    break
                q += n
            if reply is not None:
                keep = (fixed_at_arr < reply[0]) | (fixed_at_arr >= reply[1])
                fixed_at_arr, fixed_arr = fixed_at_arr[keep], fixed_arr[keep]
        fixed_at_arr = np.concatenate((fixed_at_arr, np.asarray(type_at, np.intp)))
        fixed_arr = np.concatenate((fixed_arr, np.asarray(type_bytes, _U1)))
        return cls(template, p, fixed_at_arr, fixed_arr, slots, data, limits, id_str, reply)

    def fits(self, frame: bytes | memoryview) -> bool:
        """``frame`` has this form's length, fixed bytes and slot type bytes: the layout this form reads (one C
        call; the template's match and ``layout`` walk the frame in Python). Its values are checked by ``match``."""
        return len(frame) == self.length and self._runs_of(frame) == self._runs

    def match(self, frames: list[bytes] | FrameBlock, rows: np.ndarray, recv_ns: np.ndarray,
              replies: Container[str] = ()) -> tuple[BulkBatch | None, np.ndarray]:
        """The tasks among ``frames[rows]`` (all ``self.length`` long) that this form decodes, and the rows it
        leaves to the per-task path. ``recv_ns``: receipt time of each of ``rows``. ``replies``: the reply
        endpoints the validator has allowed (the template's own always is); a row naming another is left."""
        if len(rows) < _COLUMNS_FROM:
            return self._match_rows(frames, rows, recv_ns, replies)
        return self._match_columns(frames, rows, recv_ns, replies)

    def _match_columns(self, frames: list[bytes] | FrameBlock, rows: np.ndarray, recv_ns: np.ndarray,
                       replies: Container[str]) -> tuple[BulkBatch | None, np.ndarray]:
        """``match`` as array operations on the ``(n, length)`` byte matrix: a few dozen numpy calls whatever
        ``n``, then little per row."""
        n = len(rows)
        if isinstance(frames, FrameBlock):
            mat = frames.matrix(rows, self.length)
        else:
            mat = np.frombuffer(b"".join([frames[i] for i in rows.tolist()]), _U1).reshape(n, self.length)
        # Fixed bytes and the scalar slots' type bytes: one gather and compare. Every numpy call costs a few µs on
        # a busy host, and this runs once a batch (bench/NOTES.md 31): the fewer, the better.
        ok = (mat[:, self._fixed_at] == self._fixed).all(axis=1)
        reply_list: list = [self.template.form[3]]
        reply_of = np.zeros(n, np.intp)
        if self._reply is not None:
            a, b = self._reply
            chars = mat[:, a:b]
            if not (chars == self._reply_bytes).all():  # several producers: one group per endpoint
                reply_list, groups, refused = self._endpoints(
                    np.ascontiguousarray(chars).view(f"V{b - a}").ravel().tolist(), replies)
                reply_of = np.array(groups, np.intp)
                for g in refused:
                    ok &= reply_of != g
        lim = self._limits
        ids = id_raw = None
        priority = np.full(n, lim.default_priority if lim.default_priority is not None else lim.priority_levels // 2,
                           np.int64)
        deadline_ns = np.full(n, NO_DEADLINE, np.int64)
        sent_ns = None
        for kind, p, width, tb in self._slots:  # (type bytes >= 0x80 were checked with the fixed bytes)
            value: np.ndarray | None = None
            if tb < 0x80:
                col = mat[:, p]
                ok &= col < 0x80
                value = col.astype(np.int64)
            elif tb == 0xC0 or (kind == 0 and self._id_str):
                pass
            else:
                value = np.ascontiguousarray(mat[:, p + 1:p + width]).view(_BE[tb]).reshape(n)
            if kind == 0:
                id_raw = mat[:, p:p + width]
                if self._id_str:
                    body = mat[:, p + 1:p + width]
                    ok &= (body < 0x80).all(axis=1)  # ASCII: one byte per character, so the ids split evenly
                    ids = body
                else:
                    ids = value
            elif kind == 1 and value is not None:
                ok &= (value < lim.priority_levels) if tb in _UNSIGNED else (value >= 0) & (value < lim.priority_levels)
                priority = value.astype(np.int64)
            elif kind == 2 and value is not None:
                ok &= (value >= 0) & (value <= MAX_DEADLINE_US)  # NaN fails both
                if tb in _FLOATS:
                    ns = np.rint(np.where(ok, value, 0).astype(np.float64) * 1000.0)
                else:  # an int deadline is exact in integers: no float rounding, as the per-task path
                    ns = np.where(ok, value, 0).astype(np.int64) * 1000
                deadline_ns = recv_ns + ns.astype(np.int64)
            elif kind == 3 and value is not None:
                v = value.astype(np.float64)
                ok &= (v > 0) & (v < np.inf)
            elif kind == 4 and value is not None:
                if tb == 0xCF:
                    ok &= value <= _INT64_MAX  # beyond int64: rare, the per-task path keeps Python's int
                elif tb not in _UNSIGNED:
                    ok &= value >= 0
                sent_ns = value.astype(np.int64)
        if ok.all():  # the usual case: slices, no copies
            good, left = slice(None), rows[:0]
        else:
            good = np.flatnonzero(ok)
            left = rows[~ok]
            if not len(good):
                return None, left
        if self._id_str:
            width = ids.shape[1]
            text = np.ascontiguousarray(ids[good]).tobytes().decode("ascii")
            id_list = [text[i:i + width] for i in range(0, len(text), width)]
        else:
            id_list = ids[good].tolist()
        batch = BulkBatch(self.template.form, rows[good], reply_list, reply_of[good], id_list, id_raw[good],
                          priority[good], deadline_ns[good], None if sent_ns is None else sent_ns[good],
                          recv_ns[good], self._inputs(mat, good, len(id_list)))
        return batch, left

    def _match_rows(self, frames: list[bytes] | FrameBlock, rows: np.ndarray, recv_ns: np.ndarray,
                    replies: Container[str]) -> tuple[BulkBatch | None, np.ndarray]:
        """``match`` row by row in Python: the same checks and the same batch as ``_match_columns``, for few rows.
        Only the batch's own arrays are built with numpy, each from a list in one call."""
        if isinstance(frames, FrameBlock):  # views of the block: no bytes object made per frame (0.7 µs each)
            buf = memoryview(frames.buf)
            row_frames = [buf[a:a + self.length] for a in frames.starts[rows].tolist()]
        else:
            row_frames = [frames[i] for i in rows.tolist()]
        reply_list: list = [self.template.form[3]]
        groups: list[int] | None = None
        refused: set[int] = set()
        if self._reply is not None:
            a, b = self._reply
            keys = [bytes(f[a:b]) for f in row_frames]
            if keys.count(self._reply_bytes.tobytes()) != len(keys):  # several producers: one group per endpoint
                reply_list, groups, refused = self._endpoints(keys, replies)
        lim = self._limits
        default = lim.default_priority if lim.default_priority is not None else lim.priority_levels // 2
        runs, runs_of, values_of, row_values = self._runs, self._runs_of, self._values_of, self._row_values
        good: list[int] = []
        bad: list[int] = []
        values = []
        for j, f in enumerate(row_frames):
            v = None
            if (groups is None or groups[j] not in refused) and runs_of(f) == runs:
                v = row_values(values_of(f), default)
            if v is None:
                bad.append(j)
            else:
                good.append(j)
                values.append(v)
        m = len(good)
        if not bad:  # the usual case: slices, as the columns' path
            sel, left = slice(None), rows[:0]
        else:
            left = rows[bad]
            if not m:
                return None, left
            sel = good
        ids, priority, ns, sent_ns = zip(*values) if m else ((),) * 4  # noqa: B905 - four per row
        mat = np.frombuffer(b"".join([row_frames[j] for j in good]), _U1).reshape(m, self.length)
        recv = recv_ns[sel]
        a, b = self._id_span
        deadline, sent = self._timed
        batch = BulkBatch(self.template.form, rows[sel], reply_list,
                          np.zeros(m, np.intp) if groups is None else np.array([groups[j] for j in good], np.intp),
                          list(ids), mat[:, a:b], np.array(priority, np.int64),
                          recv + np.array(ns, np.int64) if deadline else np.full(m, NO_DEADLINE, np.int64),
                          np.array(sent_ns, np.int64) if sent else None, recv,
                          self._inputs(mat, slice(None), m))
        return batch, left

    def _endpoints(self, keys: list[bytes], replies: Container[str]) -> tuple[list, list[int], set[int]]:
        """Each row's reply endpoint characters (``keys``) grouped by a dict in order of first appearance: exact,
        and fewer calls than np.unique (a sort and a dozen array operations). Returns the endpoints (None where not
        UTF-8), each row's group, and the groups whose endpoint is not allowed."""
        index: dict[bytes, int] = {}
        setdefault = index.setdefault
        groups = [setdefault(k, len(index)) for k in keys]
        endpoints: list = []
        refused = set()
        own = self.template.form[3]
        for g, key in enumerate(index):
            try:
                endpoint = key.decode()
            except UnicodeDecodeError:
                endpoint = None
            if endpoint is None or (endpoint != own and endpoint not in replies):
                refused.add(g)
            endpoints.append(endpoint)
        return endpoints, groups, refused

    def _inputs(self, mat: np.ndarray, good: slice | np.ndarray, m: int) -> list[np.ndarray]:
        """The ``(m, ...)`` inputs of the rows ``good`` of the byte matrix."""
        return [mat[good, p:p + size].view(dtype).reshape((m, *shape)) for p, size, dtype, shape in self._data]


def _compile_row_values(checks: tuple, id_str: bool, levels: int) -> Any:
    """``row_values(values, priority)``: one row's ``(id, priority, deadline offset in ns or None, sent_ns or None)``
    from its slot values (``checks``: each value's (kind, type byte)), by the checks of ``_match_columns``; None
    where one refuses it. ``priority``: the default. Straight-line code per form, as ``ingest.template`` compiles
    its match: looping over the checks in Python cost 4.5 µs a row on the dev VM, most of a small batch's decode."""
    names = [f"v{i}" for i in range(len(checks))]
    body = [f"({', '.join(names)},) = values"] if names else []
    task_id, priority, ns, sent_ns = "None", "priority", "None", "None"
    for name, (kind, tb) in zip(names, checks):  # noqa: B905 - one name per check
        if tb < 0x80:  # a fixint slot: its byte is another type's above 0x7f
            body.append(f"if {name} >= 0x80: return None")
        if kind == 0:
            if id_str:  # one byte per character, as the columns' check
                body += [f"if not {name}.isascii(): return None", f"{name} = {name}.decode('ascii')"]
            task_id = name
        elif kind == 1:
            body.append(f"if not 0 <= {name} < {int(levels)}: return None")
            priority = name
        elif kind == 2:
            body.append(f"if not 0 <= {name} <= MAX_DEADLINE_US: return None")  # NaN fails
            # round() rounds half to even, as np.rint; an int deadline stays exact
            ns = f"round({name} * 1000.0)" if tb in _FLOATS else f"{name} * 1000"
        elif kind == 3:
            body.append(f"if not 0 < {name} < _INF: return None")
        else:  # sent_ns
            body.append(f"if not 0 <= {name} <= _INT64_MAX: return None")
            sent_ns = name
    body.append(f"return {task_id}, {priority}, {ns}, {sent_ns}")
    src = "def row_values(values, priority):\n" + "".join(f"    {line}\n" for line in body)
    namespace = {"MAX_DEADLINE_US": MAX_DEADLINE_US, "_INF": math.inf, "_INT64_MAX": int(_INT64_MAX)}
    exec(compile(src, "<bulk row values>", "exec"), namespace)  # noqa: S102 - only ints and names in the source
    return namespace["row_values"]


def _width(tb: int) -> int | None:
    """Bytes of the msgpack value whose type byte is ``tb``, where the type byte alone says: fixint, nil, the
    fixed-width numbers and a fixstr (1 to 31 bytes); None for anything else."""
    if tb < 0x80 or tb == 0xC0:
        return 1
    if tb in _BE:
        return 1 + _NUMBERS[tb][1]
    if 0xA1 <= tb <= 0xBF:
        return 1 + (tb & 0x1F)
    return None


def _reader(fields: list[tuple[int, str, int]]) -> Any:
    """``unpack_from`` of a struct that reads ``fields`` (offset, struct code, width; in offset order) of a frame."""
    fmt, p = [">"], 0
    for at, code, width in fields:
        fmt.append(f"{at - p}x{code}")
        p = at + width
    return struct.Struct("".join(fmt)).unpack_from


def _merge(template: FrameTemplate, layout: tuple[int, ...]) -> tuple:
    """``template.tbytes`` (None for data slots) with each scalar slot's type byte from ``layout``."""
    it = iter(layout)
    return tuple(None if tb is None else next(it) for tb in template.tbytes)


class BulkResults:
    """Ok results of one output form and id width, a batch at a time (row ``i``: task ``i``'s frame)."""

    __slots__ = ("length", "_row", "_id", "_data", "_missed", "_queue", "_service", "_head0", "_head1", "_out_heads")

    def __init__(self, row_outputs: list[np.ndarray], id_raw: bytes) -> None:
        # One frame from the per-task encoder, with placeholder values; then the byte range of each value in it.
        enc = OkEncoder(row_outputs)
        self._head0, self._head1, self._out_heads = enc._head0, enc._head1, enc._out_heads
        frame = enc.encode(0, row_outputs, False, 0.0, 0.0)
        head0 = len(enc._head0)
        self._id = (head0, head0 + len(id_raw))
        frame = frame[:head0] + id_raw + frame[head0 + 1:]  # the placeholder id 0 is one byte
        p = self._id[1] + len(enc._head1)
        data = []
        for head, arr in zip(enc._out_heads, row_outputs):  # noqa: B905 - one head per output
            p += len(head)
            data.append((p, arr.nbytes))
            p += arr.nbytes
        self._data = data
        self._missed = p + len(_MISSED_KEY)
        self._queue = p + len(_LAT_QS_HEAD[0])
        self._service = self._queue + 8 + len(_SERVICE_KEY)
        self.length = self._service + 8
        if self.length != len(frame):
            raise AssertionError("ok result layout changed: BulkResults must follow OkEncoder")
        self._row = np.frombuffer(frame, _U1)

    def encode(self, id_raw: np.ndarray, outputs: list[np.ndarray], missed: np.ndarray, queue_us: np.ndarray,
               service_us: np.ndarray) -> bytes:
        """Every row's result frame, back to back (``length`` bytes each)."""
        n = len(missed)
        if n < _ENCODE_COLUMNS_FROM:
            return self._encode_rows(id_raw, outputs, missed, queue_us, service_us)
        out = np.empty((n, self.length), _U1)
        out[:] = self._row
        out[:, self._id[0]:self._id[1]] = id_raw
        for (p, size), arr in zip(self._data, outputs):  # noqa: B905 - one slot per output
            out[:, p:p + size] = np.ascontiguousarray(arr).reshape(n, -1).view(_U1)
        out[:, self._missed] = np.where(missed, 0xC3, 0xC2)
        out[:, self._queue:self._queue + 8] = queue_us.astype(">f8").view(_U1).reshape(n, 8)
        out[:, self._service:self._service + 8] = service_us.astype(">f8").view(_U1).reshape(n, 8)
        return out.tobytes()

    def _encode_rows(self, id_raw: np.ndarray, outputs: list[np.ndarray], missed: np.ndarray, queue_us: np.ndarray,
                     service_us: np.ndarray) -> bytes:
        """``encode`` for few rows: each row's parts joined in Python, as ``OkEncoder.encode`` joins one frame, with
        the id's bytes and each output's row sliced from one copy of each column."""
        w = id_raw.shape[1]
        ids = memoryview(np.ascontiguousarray(id_raw).tobytes())
        cols = [(head, memoryview(np.ascontiguousarray(a).tobytes()), size)
                for head, a, (_, size) in zip(self._out_heads, outputs, self._data)]  # noqa: B905 - one per output
        head0, head1, heads, pack = self._head0, self._head1, _LAT_QS_HEAD, _LAT_QS.pack
        parts = []
        append = parts.append
        for i, (m, q, s) in enumerate(zip(missed.tolist(), queue_us.tolist(), service_us.tolist())):  # noqa: B905
            append(head0)
            append(ids[i * w:(i + 1) * w])
            append(head1)
            for head, col, size in cols:
                append(head)
                append(col[i * size:(i + 1) * size])
            append(heads[m])
            append(pack(q, _SERVICE_KEY, s))
        return b"".join(parts)

    @staticmethod
    def key(outputs: list[np.ndarray], id_width: int) -> tuple[Any, ...]:
        return (*[(a.dtype, a.shape[1:]) for a in outputs], id_width)
