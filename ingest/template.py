"""Byte templates of repeated task forms: a frame decoded without msgpack when it matches a known frame's bytes.

A producer sends one form over and over: the same keys in the same order, the same kernel, dtypes, shapes,
params and reply endpoint. Only a few values change: the id, priority, deadline, period, ``sent_ns`` and the
input data (whose length the form fixes). So once a frame of a form has passed the validator, its bytes are
split into fixed segments and variable slots (``FrameTemplate.build``). A later frame matches when every fixed
segment is byte-identical and every slot holds one msgpack scalar (or, for data, exactly the form's byte count)
and the frame ends where the template does; the slots' values are then what msgpack would have returned. Anything
else (another key order, a bool where an int was, an extra byte) is no match, and the frame takes the usual path,
which words any rejection.

Why: on the H200 host, unpacking a 1 KiB task into dicts and walking its form key cost about 8 µs of a 30 µs
service (``bench/NOTES.md`` 27). Matching compares a few byte ranges with ``bytes.startswith``, and the inputs
become ``np.frombuffer`` views of the frame itself, with no copy.

Two ways to take a frame: ``take`` decodes slot by slot (any frame of the template's form), and ``exact_take`` is
built for one frame's exact layout, in which every offset is fixed (two ``struct`` unpacks; 0.7 against 1.9 µs on
the dev VM), falling back to ``take`` for any other layout.

The decoder (``ingest.fastdecode.TaskDecoder``) applies the same per-task checks to the slot values as its dict
fast path, so both accept and refuse the same frames; ``tests/test_template.py`` checks that against
``decode_task`` on random and mutated frames.
"""

from __future__ import annotations

import math
import struct
from typing import Any, NamedTuple

import numpy as np

__all__ = ["FrameTemplate", "SLOT_KEYS", "SlotChecks", "compile_views"]

# The top-level keys whose values may differ between tasks of one form, in slot order.
SLOT_KEYS = ("id", "priority", "deadline_us", "period_us", "sent_ns")
_DATA = len(SLOT_KEYS)  # slot kinds >= _DATA: the data of input (kind - _DATA)
BAD = object()  # a slot that holds something other than a plain msgpack scalar
_frombuffer = np.frombuffer

_U16, _U32, _U64 = struct.Struct(">H").unpack_from, struct.Struct(">I").unpack_from, struct.Struct(">Q").unpack_from
_U8, _I8, _I16 = struct.Struct(">B").unpack_from, struct.Struct(">b").unpack_from, struct.Struct(">h").unpack_from
_I32, _I64 = struct.Struct(">i").unpack_from, struct.Struct(">q").unpack_from
_F32, _F64 = struct.Struct(">f").unpack_from, struct.Struct(">d").unpack_from


# type byte -> (struct unpack_from, bytes after the type byte) for msgpack's fixed-width numbers
_NUMBERS = {0xCB: (_F64, 8), 0xCF: (_U64, 8), 0xCE: (_U32, 4), 0xCD: (_U16, 2), 0xCC: (_U8, 1), 0xCA: (_F32, 4),
            0xD3: (_I64, 8), 0xD2: (_I32, 4), 0xD1: (_I16, 2), 0xD0: (_I8, 1)}
# type byte -> width of the length of a str8/16/32
_STR_LEN = {0xD9: 1, 0xDA: 2, 0xDB: 4}
# type byte -> (width of the length, kind) of every sized msgpack object: bin, str, array, map
_SIZED = {0xC4: (1, "raw"), 0xC5: (2, "raw"), 0xC6: (4, "raw"), **{b: (w, "raw") for b, w in _STR_LEN.items()},
          0xDC: (2, "array"), 0xDD: (4, "array"), 0xDE: (2, "map"), 0xDF: (4, "map")}


def scalar_at(buf: bytes, pos: int) -> tuple[Any, int]:
    """The msgpack scalar at ``pos`` as msgpack (raw=False) returns it, and the position after it; ``BAD`` for
    anything else (bool, bin, array, map, ext) or bytes that end too soon."""
    b = buf[pos]
    if b < 0x80:
        return b, pos + 1
    if b >= 0xE0:
        return b - 0x100, pos + 1
    number = _NUMBERS.get(b)
    if number is not None:
        return number[0](buf, pos + 1)[0], pos + 1 + number[1]
    if 0xA0 <= b <= 0xBF:
        start = pos + 1
        end = start + (b & 0x1F)
    elif b == 0xC0:
        return None, pos + 1
    else:
        width = _STR_LEN.get(b)
        if width is None:
            return BAD, pos
        start = pos + 1 + width
        end = start + int.from_bytes(buf[pos + 1:start], "big")
        if start > len(buf):
            return BAD, pos
    if end > len(buf):
        return BAD, pos
    return buf[start:end].decode(), end  # UnicodeDecodeError: the caller's no-match


# -- walking a frame's msgpack structure (template building only: a validated frame, once per form) --------------

def _header(buf: bytes, pos: int) -> tuple[str, int, int]:
    """(kind, count or length, position after the header) of the object at ``pos``."""
    b = buf[pos]
    if b < 0x80 or b >= 0xE0 or b in (0xC0, 0xC2, 0xC3):
        return "scalar", 0, pos + 1
    if b <= 0x8F:
        return "map", b & 0x0F, pos + 1
    if b <= 0x9F:
        return "array", b & 0x0F, pos + 1
    if b <= 0xBF:
        return "raw", b & 0x1F, pos + 1
    number = _NUMBERS.get(b)
    if number is not None:
        return "scalar", 0, pos + 1 + number[1]
    sized = _SIZED.get(b)
    if sized is not None:
        width, kind = sized
        return kind, int.from_bytes(buf[pos + 1:pos + 1 + width], "big"), pos + 1 + width
    raise ValueError(f"msgpack type 0x{b:02x} has no place in a task")  # ext types are refused at decode


def _skip(buf: bytes, pos: int) -> int:
    kind, n, pos = _header(buf, pos)
    if kind == "raw":
        return pos + n
    if kind == "array":
        for _ in range(n):
            pos = _skip(buf, pos)
    elif kind == "map":
        for _ in range(2 * n):
            pos = _skip(buf, pos)
    return pos


def _key(buf: bytes, pos: int) -> tuple[str, int]:
    value, end = scalar_at(buf, pos)
    if type(value) is not str:
        raise ValueError("a map key that is not a string")
    return value, end


def _slots(frame: bytes) -> list[tuple[int, int, int]]:
    """(start, end, kind) of every variable slot of ``frame``, in byte order."""
    kind, n, pos = _header(frame, 0)
    if kind != "map":
        raise ValueError("a task is a map")
    spans, seen = [], set()
    for _ in range(n):
        key, pos = _key(frame, pos)
        if key in seen:
            raise ValueError(f"duplicate key {key!r}")  # msgpack keeps the last: keep such frames off templates
        seen.add(key)
        end = _skip(frame, pos)
        if key in SLOT_KEYS:
            spans.append((pos, end, SLOT_KEYS.index(key)))
        elif key == "inputs":
            akind, count, ipos = _header(frame, pos)
            if akind != "array":
                raise ValueError("inputs is not an array")
            for i in range(count):
                mkind, m, ipos = _header(frame, ipos)
                if mkind != "map":
                    raise ValueError("an input is not a map")
                ikeys = set()
                for _ in range(m):
                    ikey, ipos = _key(frame, ipos)
                    if ikey in ikeys:
                        raise ValueError(f"duplicate key {ikey!r} in an input")
                    ikeys.add(ikey)
                    iend = _skip(frame, ipos)
                    if ikey == "data":
                        _, length, body = _header(frame, ipos)
                        spans.append((body, body + length, _DATA + i))
                    ipos = iend
        pos = end
    if pos != len(frame):
        raise ValueError("extra bytes after the task map")
    return spans


class FrameTemplate:
    """Fixed segments and slots of one form's frames. ``match(frame)`` -> ``(values, data_offsets)`` or None.

    ``values`` holds the five ``SLOT_KEYS`` values (None where the frame has no such key, as ``dict.get``);
    ``data_offsets`` the offset of each input's data in ``frame``, which is exactly ``nbytes[i]`` long.
    ``match`` is generated per template (straight-line code, the fixed bytes bound as default arguments, never
    written into the source): a loop over the segments cost twice as much."""

    __slots__ = ("match", "take", "form", "segments", "tbytes", "checks", "_exact")

    def __init__(self, segments: tuple, tail: bytes, form: Any, tbytes: tuple,
                 checks: SlotChecks | None = None) -> None:
        self.segments = segments + ((tail, len(tail), -1, 0),)
        self.form = form  # what the decoder attaches: the validated form these frames share
        self.tbytes = tbytes  # per slot: the type byte of its value in the template's frame (None for data)
        self.match = _compile(self.segments, tbytes + (None,))
        # ``take``: ``match`` and the per-task checks of the slot values in one generated function (with
        # ``checks``, else None). ``exact_take`` adds a faster path for one frame's layout.
        self.take = _compile(self.segments, tbytes + (None,), checks) if checks is not None else None
        self.checks = checks
        self._exact: dict[int, Any] = {}  # frame length -> exact_take built for it

    def exact_take(self, frame: bytes) -> Any:
        """``take`` with a fast path for frames laid out exactly as ``frame`` (a frame ``take`` accepted: the same
        fixed bytes, each slot in the same encoding and width), falling back to ``take``; ``take`` itself where
        that layout has no such path. A slot's width changes with its value (an int id past 127, a longer str
        id), and so the frame's length: the decoder keeps one per frame length. Built once per length (two forms
        whose frames share a length take turns in the decoder's hint, and must not rebuild it each time)."""
        built = self._exact.get(len(frame))
        if built is not None:
            return built
        split = _layout(frame)
        if split is None:
            return self.take
        segments, tbytes, tail = split
        if len(self._exact) >= 16:
            self._exact.clear()
        built = self._exact[len(frame)] = (_compile_exact(segments + ((tail, len(tail), -1, 0),), tbytes,
                                                          self.checks, self.take) or self.take)
        return built

    @classmethod
    def build(cls, frame: bytes, nbytes: tuple[int, ...], form: Any,
              checks: SlotChecks | None = None) -> FrameTemplate | None:
        """The template of ``frame`` (a frame that passed the validator), or None when it has none: duplicate
        keys, or data whose length is not the form's. ``nbytes``: each input's data length. With ``checks`` the
        template also gets ``take(frame, recv_ns)``, the decoder's per-task path: ``match`` with the checks of
        ``SlotChecks`` applied to the slot values, returning ``(id, priority, deadline_us, deadline_ns, period_us,
        sent_ns, offsets)`` (the inputs' data offsets in the frame, a tuple) or None. Views of the inputs are
        ``compile_views``'s work: a resident GPU lane copies the bytes without them."""
        split = _layout(frame)
        if split is None:
            return None
        segments, tbytes, tail = split
        if any(kind >= _DATA and (kind - _DATA >= len(nbytes) or size != nbytes[kind - _DATA])
               for _, _, kind, size in segments):
            return None
        return cls(segments, tail, form, tbytes, checks)


def _layout(frame: bytes) -> tuple[tuple, tuple, bytes] | None:
    """``frame`` split at its slots: ``(segments, tbytes, tail)``, each segment ``(fixed bytes before the slot, their
    length, slot kind, data length or 0)``, each tbyte the slot value's type byte (None for data); None when the
    frame has no such split (duplicate keys)."""
    try:
        spans = _slots(frame)
    except (ValueError, IndexError, UnicodeDecodeError):
        return None
    segments, tbytes, pos = [], [], 0
    for start, end, kind in spans:
        tbytes.append(None if kind >= _DATA else frame[start])
        segments.append((frame[pos:start], start - pos, kind, end - start if kind >= _DATA else 0))
        pos = end
    return tuple(segments), tuple(tbytes), frame[pos:]


def compile_views(views: tuple) -> Any:
    """``inputs(frame, offsets)``: the inputs of a frame of one form as ``np.frombuffer`` views of the frame (no
    copy), reshaped to their shapes; ``views``: per input ``(dtype, count, shape or None)``. Straight-line code, as
    the templates' own: a loop over the inputs cost about twice as much."""
    args, made = ["frame", "o", "_fb=_frombuffer"], []
    for j, (_, count, shape) in enumerate(views):
        args += [f"_D{j}=_views[{j}][0]", f"_C{j}={int(count)}"]
        view = f"_fb(frame, _D{j}, _C{j}, o[{j}])"
        if shape is not None:
            args.append(f"_S{j}=_views[{j}][2]")
            view += f".reshape(_S{j})"
        made.append(view)
    src = f"def inputs({', '.join(args)}):\n    return [{', '.join(made)}]\n"
    namespace = {"_views": views, "_frombuffer": _frombuffer}
    exec(compile(src, "<frame views>", "exec"), namespace)  # noqa: S102 - only ints and names in the source
    return namespace["inputs"]


class SlotChecks(NamedTuple):
    """The per-task checks of the slot values, as ``TaskDecoder._scalars`` applies them: with these a template's
    ``take`` checks the values inline (no call, no second tuple) and returns the absolute deadline too. Any value
    they refuse makes ``take`` return None, and the dict path then decides and words the rejection."""

    max_id_len: int
    default_priority: int
    priority_levels: int
    max_deadline_us: float


# Mirrors TaskDecoder._scalars (tests/test_template.py checks they agree on random and mutated frames). ``v0``..``v4``
# are the SLOT_KEYS values, ``dn`` the absolute deadline in ns.
_CHECK_ID = ("t = type(v0)",
             "if t is not int and (t is not str or not 0 < len(v0) <= _MAXID): return None")
_CHECK_PRIORITY = ("if v1 is None: v1 = _DEFPRIO",
                   "elif type(v1) is not int or not 0 <= v1 < _LEVELS: return None")
_CHECK_DEADLINE = ("dn = None",
                   "if v2 is not None:",
                   "    t = type(v2)",
                   "    if t is int:",
                   "        if not 0 <= v2 <= _MAXDL: return None",
                   "        dn = recv_ns + v2 * 1000",
                   "    elif t is float and 0 <= v2 <= _MAXDL:",
                   "        dn = recv_ns + round(v2 * 1000)",
                   "    else: return None")
_CHECK_PERIOD = ("if v3 is not None and ((type(v3) is not int and type(v3) is not float) or not 0 < v3 < _INF):",
                 "    return None")
_CHECK_SENT = ("if v4 is not None and (type(v4) is not int or v4 < 0): return None",)


# template type byte -> (test on frame[p], inline decode, bytes consumed). ``_n<byte>`` is _compile's argument
# bound to that type's unpack function.
_INLINE = {
    **{b: (f"frame[p] == {b}", f"_n{b}(frame, p + 1)[0]", 1 + width) for b, (_, width) in _NUMBERS.items()},
    **{b: ("frame[p] < 0x80", "frame[p]", 1) for b in range(0x80)},
}


def _compile(segments: tuple, tbytes: tuple, checks: SlotChecks | None = None) -> Any:
    """``match(frame)`` for ``segments`` (the last one the tail), as straight-line code; with ``checks``
    ``take(frame, recv_ns)`` instead (``FrameTemplate.build``). ``tbytes``: the type byte of each scalar slot in the
    template's own frame (None for data and the tail)."""
    take = checks is not None
    args = ["frame", *(["recv_ns"] if take else []), "_scalar=scalar_at", "_BAD=BAD",
            *(f"_n{b}=_NUMBERS[{b}][0]" for b in _NUMBERS)]
    if take:
        body = ["v0 = v1 = v2 = v3 = v4 = None"]
    else:
        body = ["values = [None, None, None, None, None]", "offsets = []"]
    body += ["startswith = frame.startswith", "p = 0"]
    for i, (_, n, kind, size) in enumerate(segments):
        args.append(f"_F{i}=_segments[{i}][0]")
        if kind == -1:  # the tail: it ends the frame exactly
            body.append(f"if len(frame) - p != {n} or not startswith(_F{i}, p): return None")
            continue
        body.append(f"if not startswith(_F{i}, p): return None")
        body.append(f"p += {n}")
        if kind >= _DATA:
            # take: the offset in a local, returned only once the whole frame matched (a short frame is no match)
            body.append(f"o{kind - _DATA} = p" if take else "offsets.append(p)")
            body.append(f"p += {size}")
        else:
            # The template's own encoding of this slot, decoded inline: a producer keeps one (a float64
            # deadline, a uint64 sent_ns, a short str id); any other goes through scalar_at.
            inline = _INLINE.get(tbytes[i]) if tbytes[i] is not None else None
            if inline is not None:
                test, decode, step = inline
                body.append(f"if {test}:")
                body.append(f"    v = {decode}")
                body.append(f"    p += {step}")
                body.append("else:")
                body.append("    v, p = _scalar(frame, p)")
                body.append("    if v is _BAD: return None")
            elif take and tbytes[i] is not None and 0xA0 <= tbytes[i] <= 0xBF:  # fixstr, as scalar_at reads it
                body.append("b = frame[p]")
                body.append("if 0xA0 <= b <= 0xBF:")
                body.append("    e = p + 1 + (b & 0x1F)")
                body.append("    if e > len(frame): return None")
                body.append("    v = frame[p + 1:e].decode()")
                body.append("    p = e")
                body.append("else:")
                body.append("    v, p = _scalar(frame, p)")
                body.append("    if v is _BAD: return None")
            else:
                body.append("v, p = _scalar(frame, p)")
                body.append("if v is _BAD: return None")
            body.append(f"v{kind} = v" if take else f"values[{kind}] = v")
    if take:
        n_data = sum(1 for _, _, kind, _ in segments if kind >= _DATA)
        offsets = "".join(f"o{j}, " for j in range(n_data))
        # A slot the template lacks keeps its None (its check is left out) and priority its default.
        present = {kind for _, _, kind, _ in segments if 0 <= kind < _DATA}
        lines = [*_CHECK_ID]
        lines += _CHECK_PRIORITY if 1 in present else ("v1 = _DEFPRIO",)
        lines += _CHECK_DEADLINE if 2 in present else ("dn = None",)
        lines += _CHECK_PERIOD if 3 in present else ()
        lines += _CHECK_SENT if 4 in present else ()
        args += [f"_MAXID={int(checks.max_id_len)}", f"_DEFPRIO={int(checks.default_priority)}",
                 f"_LEVELS={int(checks.priority_levels)}", "_MAXDL=_checks.max_deadline_us", "_INF=_inf"]
        ret = ("".join(f"    {line}\n" for line in lines)
               + f"    return v0, v1, v2, dn, v3, v4, ({offsets})\n")
    else:
        body.append("return values, offsets")
        ret = ""
    name = "take" if take else "match"
    src = (f"def {name}({', '.join(args)}):\n    try:\n"
           + "".join(f"        {line}\n" for line in body)
           + "    except (IndexError, _struct_error, UnicodeDecodeError):\n        return None\n" + ret)
    namespace = {"scalar_at": scalar_at, "BAD": BAD, "_segments": segments, "_struct_error": struct.error,
                 "_NUMBERS": _NUMBERS, "_checks": checks, "_inf": math.inf}
    exec(compile(src, "<frame template>", "exec"), namespace)  # noqa: S102 - only ints and names in the source
    return namespace[name]


# Scalar type byte -> (struct code of the bytes after it, Python type) for ``_compile_exact``; the fixints, nil and
# fixstr are handled there (the value is in, or its length given by, the type byte).
_EXACT = {0xCC: ("B", int), 0xCD: ("H", int), 0xCE: ("I", int), 0xCF: ("Q", int), 0xD0: ("b", int), 0xD1: ("h", int),
          0xD2: ("i", int), 0xD3: ("q", int), 0xCA: ("f", float), 0xCB: ("d", float)}
_EXACT_CODE: dict[str, Any] = {}  # generated source -> its code object: a new layout of a known shape costs no compile


def _exact_slot(tbyte: int, kind: int, checks: SlotChecks) -> tuple[bytes, str, type, str] | None:
    """A scalar slot's part of the exact layout: (its literal type byte, or b"" where the type byte is the value;
    the value's struct code, "" for nil; the value's Python type; a test that the value is still of the type
    byte's class, ``{v}`` standing for it, or ""), or None where ``take`` refuses every value of this encoding
    (the general path then answers alone)."""
    if tbyte < 0x80:  # positive fixint: the value is the type byte
        return b"", "B", int, "{v} < 0x80"
    if tbyte >= 0xE0:  # negative fixint
        return b"", "b", int, "-0x20 <= {v} < 0"  # 0xE0..0xFF as 'b'; any other byte is another type
    if tbyte == 0xC0:
        return b"\xc0", "", type(None), ""
    if 0xA0 <= tbyte <= 0xBF:  # fixstr of the template's length: only an id may be a str
        n = tbyte & 0x1F
        if kind != 0 or not 0 < n <= checks.max_id_len:
            return None
        return bytes([tbyte]), f"{n}s", str, ""
    got = _EXACT.get(tbyte)
    return None if got is None else (bytes([tbyte]), got[0], got[1], "")


def _compile_exact(segments: tuple, tbytes: tuple, checks: SlotChecks, general: Any) -> Any:
    """``take`` for frames laid out exactly as the one these segments came from (every slot in its encoding and
    width), else ``general(frame, recv_ns)``; None when that layout has no such path (a slot type that ``take``
    always refuses).

    Why: the general ``take`` decodes slot by slot in Python (six ``startswith``, per-slot type tests and
    unpacks: 1.9 µs a 1 KiB task on the dev VM). In one exact layout every offset is fixed: one ``unpack_from``
    reads every fixed byte range (type bytes included), compared as one tuple, and a second one every slot value:
    about 0.8 µs. Each value's type is then known, so only the range checks remain. Building one is cheap (two
    ``struct.Struct``s; the generated code is compiled once per shape of layout), so the decoder builds one per
    frame length as it first sees it: a slot's width changes with its value (an int id past 127, a longer str id)."""
    fixed_fmt, value_fmt, fixed, names, types, offsets = [">"], [">"], [], [], {}, []
    run, tests = b"", []  # run: fixed bytes not yet closed into a field

    def close_run() -> None:
        nonlocal run
        if run:
            fixed_fmt.append(f"{len(run)}s")
            fixed.append(run)
            value_fmt.append(f"{len(run)}x")
            run = b""

    for (seg, _, kind, size), tbyte in zip(segments, (*tbytes, None), strict=True):
        run += seg
        if kind == -1:
            break
        if kind >= _DATA:
            close_run()
            offsets.append(struct.calcsize("".join(value_fmt)))
            fixed_fmt.append(f"{size}x")
            value_fmt.append(f"{size}x")
            continue
        slot = _exact_slot(tbyte, kind, checks)
        if slot is None:
            return None
        literal, code, kind_type, test = slot
        run += literal
        types[kind] = kind_type
        if code:
            close_run()
            fixed_fmt.append(f"{struct.calcsize('>' + code)}x")
            value_fmt.append(code)
            names.append(f"v{kind}")
            if test:  # the byte is the value: is it still of the fixint class?
                tests.append(f"if not {test.format(v=f'v{kind}')}: return _general(frame, recv_ns)")
    close_run()
    total = struct.calcsize("".join(fixed_fmt))
    if total != struct.calcsize("".join(value_fmt)) or len(offsets) != sum(1 for seg in segments if seg[2] >= _DATA):
        return None
    body = ["if len(frame) != _TOTAL or _fixed(frame) != _FIXED: return _general(frame, recv_ns)"]
    if names:
        body.append(f"{', '.join(names)}{',' if len(names) == 1 else ''} = _values(frame)")
    body += tests
    # The checks of _CHECK_*, for the type each slot is known to have
    if types.get(0) is str:
        body += ["try: v0 = v0.decode()", "except UnicodeDecodeError: return None"]  # its length: _exact_slot's
    elif types.get(0) is not int:
        return None  # an id that is neither int nor str: refused by every take
    t1 = types.get(1)
    if t1 is int:
        body.append("if not 0 <= v1 < _LEVELS: return None")
    elif t1 is type(None) or 1 not in types:
        body.append("v1 = _DEFPRIO")
    else:
        return None
    t2 = types.get(2)
    if t2 is int:
        body += ["if not 0 <= v2 <= _MAXDL: return None", "dn = recv_ns + v2 * 1000"]
    elif t2 is float:
        body += ["if not 0 <= v2 <= _MAXDL: return None", "dn = recv_ns + round(v2 * 1000)"]
    else:
        body += ["v2 = None", "dn = None"]
    if types.get(3) in (int, float):
        body.append("if not 0 < v3 < _INF: return None")
    else:
        body.append("v3 = None")
    t4 = types.get(4)
    if t4 is int:
        body.append("if v4 < 0: return None")
    elif t4 is float:
        return None
    else:
        body.append("v4 = None")
    body.append("return v0, v1, v2, dn, v3, v4, _OFFSETS")
    args = ["frame", "recv_ns", "_fixed=_fixed", "_FIXED=_FIXED", "_values=_values", "_general=_general",
            "_TOTAL=_TOTAL", "_OFFSETS=_offsets", f"_DEFPRIO={int(checks.default_priority)}",
            f"_LEVELS={int(checks.priority_levels)}", "_MAXDL=_checks.max_deadline_us", "_INF=_inf"]
    src = f"def take({', '.join(args)}):\n" + "".join(f"    {line}\n" for line in body)
    code = _EXACT_CODE.get(src)
    if code is None:
        if len(_EXACT_CODE) >= 256:
            _EXACT_CODE.clear()
        code = _EXACT_CODE[src] = compile(src, "<exact frame template>", "exec")
    namespace = {"_fixed": struct.Struct("".join(fixed_fmt)).unpack_from, "_FIXED": tuple(fixed),
                 "_values": struct.Struct("".join(value_fmt)).unpack_from, "_general": general, "_TOTAL": total,
                 "_offsets": tuple(offsets), "_checks": checks, "_inf": math.inf}
    exec(code, namespace)  # noqa: S102 - only ints and names in the source
    return namespace["take"]
