"""The zmqrt wire protocol: msgpack task and result maps (full spec: ``ingest/PROTOCOL.md``).

Contract:

* :func:`decode_task` turns one untrusted frame into a validated :class:`Task` or raises :class:`Rejection`,
  never anything else (an unexpected failure inside a kernel spec becomes ``Rejection(INTERNAL)``). The first
  failing check wins; the order is documented in PROTOCOL.md ("Validation order") and the codes are exact.
  A rejection with ``task_id is None`` means no id could be read: the caller counts and logs it, and sends no
  result. Every other rejection gets exactly one result.
* Input arrays are read-only numpy views (``np.frombuffer``) over the ``bytes`` msgpack made for each ``bin``:
  no copy beyond the one msgpack itself makes.
* :func:`encode_result` / :func:`decode_result` and :func:`encode_task` are the two other directions; clients
  use them, the server uses :func:`encode_result`.
* :func:`endpoint_allowed` is the reply-endpoint policy (loopback tcp and ipc by default).

The decode path runs once per task at well over 200k tasks/s: it does plain type checks and dict lookups only,
no regex, no deep copies. Cold paths (errors, messages) may be slow.
"""

from __future__ import annotations

import fnmatch
import functools
import logging
import math
import re
import struct
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

from zmqrt.dtypes import DTYPE_NAMES
from zmqrt.errors import Code, Status, TaskError, status_for

__all__ = [
    "DEFAULT_REPLY_PATTERNS",
    "MAX_DEADLINE_US",
    "TASK_FIELDS",
    "WIRE_DTYPES",
    "Limits",
    "ProtocolError",
    "Rejection",
    "Result",
    "Task",
    "decode_result",
    "decode_task",
    "unpack_task",
    "TaskUnpacker",
    "validate_task",
    "encode_array",
    "encode_ok_result",
    "OkEncoder",
    "encode_result",
    "encode_task",
    "endpoint_allowed",
]

log = logging.getLogger(__name__)

# Wire dtype names -> little-endian numpy dtypes. The wire is little-endian whatever the host is.
WIRE_DTYPES: dict[str, np.dtype] = {name: np.dtype(name).newbyteorder("<") for name in DTYPE_NAMES}

_WIRE_NAMES: dict[np.dtype, str] = {dt: name for name, dt in WIRE_DTYPES.items()}
_ZERO_COPY_BYTES = 64 << 10

TASK_FIELDS = frozenset(
    {"id", "kernel", "inputs", "params", "priority", "deadline_us", "period_us", "reply_to", "sent_ns"}
)
_ARRAY_FIELDS = frozenset({"dtype", "shape", "data"})
_RESULT_CORE_FIELDS = frozenset({"id", "status", "code", "message", "outputs", "missed_deadline", "latency_us"})
# Unknown task fields are MALFORMED (a typo such as "deadline" must not silently mean "no deadline"), except
# fields with this prefix, which are ignored: the extension point for producers and future versions.
EXTENSION_PREFIX = "x_"

# A deadline is at most about 11.6 days away: larger finite floats would overflow converting to ns.
MAX_DEADLINE_US = 1e12

# Loopback tcp on any port, and ipc. '[' must be escaped for fnmatch, hence "[[]::1]".
DEFAULT_REPLY_PATTERNS: tuple[str, ...] = (
    "tcp://127.0.0.1:*",
    "tcp://localhost:*",
    "tcp://[[]::1]:*",
    "ipc://*",
)


@dataclass(frozen=True)
class Limits:
    """Per-server bounds on what a task may carry. Sizes are in bytes of array data."""

    max_task_bytes: int = 1 << 20  # inputs total, and separately outputs total, must each fit
    max_frame_bytes: int | None = None  # whole msgpack frame (ZMQ_MAXMSGSIZE); None: max_task_bytes + 64 KiB
    max_inputs: int = 8
    max_ndim: int = 8
    priority_levels: int = 8  # valid priorities are 0 .. priority_levels - 1; 0 is the most urgent
    default_priority: int | None = None  # priority of a task that sends none; None: priority_levels // 2
    max_id_len: int = 128  # characters of a str id
    max_kernel_len: int = 64
    max_params: int = 16
    max_str_len: int = 1024  # any msgpack str (endpoints, names); bounds the decoder
    allowed_dtypes: frozenset[str] = frozenset(WIRE_DTYPES)
    reply_to_patterns: tuple[str, ...] = DEFAULT_REPLY_PATTERNS

    def __post_init__(self) -> None:
        if self.max_frame_bytes is None:
            object.__setattr__(self, "max_frame_bytes", self.max_task_bytes + (64 << 10))
        if self.default_priority is None:
            object.__setattr__(self, "default_priority", self.priority_levels // 2)
        if not 0 <= self.default_priority < self.priority_levels:
            raise ValueError(f"default_priority {self.default_priority} not in 0..{self.priority_levels - 1}")
        unknown = set(self.allowed_dtypes) - set(WIRE_DTYPES)
        if unknown:
            raise ValueError(f"dtypes not in the wire set: {sorted(unknown)}")
        object.__setattr__(self, "allowed_dtypes", frozenset(self.allowed_dtypes))
        object.__setattr__(self, "reply_to_patterns", tuple(self.reply_to_patterns))

    @functools.cached_property
    def _unpack_kwargs(self) -> dict[str, Any]:
        # Bounds checked by msgpack on each header before it allocates. They are generous on purpose: a value
        # past them makes the whole frame undecodable (no id, no result), while the checks in decode_task give
        # a precise code with the id.
        return {
            "raw": False,
            "strict_map_key": True,
            "max_bin_len": self.max_frame_bytes,
            "max_str_len": self.max_str_len,
            "max_array_len": max(256, 4 * self.max_inputs, 4 * self.max_ndim),
            "max_map_len": max(64, 4 * self.max_params),
            "max_ext_len": 0,
            "ext_hook": _reject_ext,
        }


class Rejection(Exception):
    """A task refused at decode. ``task_id`` is None when no id could be read (then no result is sent).

    ``reply_to`` is the task's reply endpoint when it was readable and allowed, else None (use the default).
    """

    def __init__(self, task_id: int | str | None, code: Code, message: str, reply_to: str | None = None) -> None:
        super().__init__(f"{code.value}: {message}")
        self.task_id = task_id
        self.code = code
        self.message = message
        self.reply_to = reply_to

    @property
    def status(self) -> Status:
        return status_for(self.code)


class ProtocolError(ValueError):
    """A result frame that does not follow the protocol (client side)."""


@dataclass(slots=True, eq=False)
class Task:
    """One validated task. ``inputs`` are read-only arrays; run with ``checked.params`` (defaults filled)."""

    id: int | str
    kernel: str
    inputs: list[np.ndarray]
    params: dict[str, Any]  # as sent by the producer
    priority: int
    deadline_us: float | None
    period_us: float | None
    reply_to: str | None
    sent_ns: int | None
    spec: Any  # zmqrt.kernels KernelSpec
    checked: Any  # zmqrt.kernels Checked: .params, .outputs
    in_bytes: int
    out_bytes: int
    recv_ns: int  # time.monotonic_ns() at receipt
    deadline_ns: int | None  # absolute, monotonic clock
    seq: int  # receipt order, given by the caller
    size_class: int = 0  # set by the server: the admission predictor's size bucket
    probe: bool = False  # set by the server: admitted against the prediction, to re-learn it
    trace_row: int = -1  # set by the server when stage tracing is on: the task's row in zmqrt.trace.StageTrace


@dataclass(slots=True, eq=False)
class Result:
    """A decoded result. ``extra`` holds the optional fields (see PROTOCOL.md)."""

    id: int | str | None
    status: Status
    code: Code
    message: str = ""
    outputs: list[np.ndarray] = field(default_factory=list)
    missed_deadline: bool = False
    latency_us: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.code is Code.OK

    def raise_for_status(self) -> Result:
        """Return self when ok, else raise TaskError(code, message)."""
        if self.code is not Code.OK:
            raise TaskError(self.code, self.message)
        return self


def _reject_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack ext type {code} is not allowed")


def _is_number(v: object) -> bool:
    # Exact type checks: bool is a subclass of int, but True is not a deadline (nor a priority, nor an id).
    return type(v) is int or type(v) is float


_SCALAR_TYPES = (int, float, bool, str)


# ---- endpoint policy ------------------------------------------------------------------------------------------

_TCP_HOSTPORT = re.compile(r"tcp://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.\-]+):([0-9]{1,5})")


@functools.lru_cache(maxsize=4096)
def _endpoint_allowed_cached(endpoint: str, patterns: tuple[str, ...]) -> bool:
    # Structural check first: zmq's "tcp://source;dest" syntax would let "tcp://127.0.0.1:1;10.0.0.5:80" match
    # a loopback pattern and connect elsewhere, so tcp endpoints must be exactly host:port.
    if any(c.isspace() or c == ";" for c in endpoint) or "\x00" in endpoint:
        return False
    if endpoint.startswith("tcp://"):
        m = _TCP_HOSTPORT.fullmatch(endpoint)
        if m is None or not 0 < int(m.group(2)) < 65536:
            return False
    elif endpoint.startswith("ipc://"):
        if len(endpoint) == len("ipc://") or "*" in endpoint:
            return False
    return any(fnmatch.fnmatchcase(endpoint, p) for p in patterns)


def endpoint_allowed(endpoint: str, patterns: Iterable[str] = DEFAULT_REPLY_PATTERNS) -> bool:
    """True when results may be sent to ``endpoint``: it matches one fnmatch ``patterns`` entry (case-sensitive).

    tcp endpoints must be ``tcp://host:port`` with a numeric port (no wildcard, no ``source;`` prefix); ipc
    endpoints must name a path. Answers are cached, so calling it per task costs a dict lookup.
    """
    if type(endpoint) is not str:
        return False
    return _endpoint_allowed_cached(endpoint, patterns if type(patterns) is tuple else tuple(patterns))


# ---- decode ---------------------------------------------------------------------------------------------------

class TaskUnpacker:
    """Unpacks task frames into their msgpack map, for one thread: ``unpack(frame) -> dict`` or
    ``Rejection(None, MALFORMED)`` (no id could be read).

    unpackb costs ~1 µs of per-call setup; a reused Unpacker costs ~0.1 µs but copies the frame into its buffer, so
    small frames go through this object's Unpacker and large ones through unpackb. The server's decoder owns one
    (``ingest.fastdecode``); :func:`unpack_task` keeps one per thread."""

    __slots__ = ("limits", "_unpacker")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._unpacker = self._new_unpacker()

    def _new_unpacker(self) -> msgpack.Unpacker:
        limits = self.limits
        return msgpack.Unpacker(max_buffer_size=max(_ZERO_COPY_BYTES, limits.max_frame_bytes),
                                **limits._unpack_kwargs)

    def unpack(self, frame: bytes) -> dict:
        n = len(frame)
        try:
            if n >= _ZERO_COPY_BYTES:
                msg = msgpack.unpackb(frame, **self.limits._unpack_kwargs)
            else:
                unpacker = self._unpacker
                start = unpacker.tell()
                try:
                    unpacker.feed(frame)
                    msg = unpacker.unpack()
                    used = unpacker.tell() - start
                    if used != n:
                        raise ValueError(f"{n - used} bytes of extra data after the task map")
                except BaseException:
                    self._unpacker = self._new_unpacker()  # partial data may be left in its buffer: never reuse it
                    raise
        except Exception as exc:  # untrusted bytes: msgpack raises ValueError, TypeError, StackError, ...
            raise Rejection(None, Code.MALFORMED, f"undecodable frame: {type(exc).__name__}: {exc}") from None
        if type(msg) is not dict:
            raise Rejection(None, Code.MALFORMED, f"a task is a map, got {type(msg).__name__}")
        return msg


_unpack_local = threading.local()


def decode_task(frame: bytes, registry: Any, limits: Limits, recv_ns: int, seq: int) -> Task:
    """Decode and validate one task frame; raise :class:`Rejection` with the exact code on the first failure."""
    return validate_task(unpack_task(frame, limits), registry, limits, recv_ns, seq)


def unpack_task(frame: bytes, limits: Limits) -> dict:
    """The frame's msgpack map, or ``Rejection(None, MALFORMED)`` (no id could be read), with this thread's
    :class:`TaskUnpacker` for ``limits``."""
    unpacker = getattr(_unpack_local, "unpacker", None)
    if unpacker is None or unpacker.limits is not limits:
        unpacker = _unpack_local.unpacker = TaskUnpacker(limits)
    return unpacker.unpack(frame)


def validate_task(msg: dict, registry: Any, limits: Limits, recv_ns: int, seq: int) -> Task:
    """Every check of :func:`decode_task` on an unpacked map, in the documented order."""
    # 1. id: without a readable id there is nobody to answer.
    task_id = msg.get("id")
    tid_type = type(task_id)
    if tid_type is str:
        if not 0 < len(task_id) <= limits.max_id_len:
            raise Rejection(None, Code.MALFORMED, f"id must be 1..{limits.max_id_len} characters")
    elif tid_type is not int:
        raise Rejection(None, Code.MALFORMED, "id (int or str) missing or of the wrong type")

    # 2. reply_to, read early so every later rejection can be routed to it.
    reply_to = msg.get("reply_to")
    if reply_to is not None:
        if type(reply_to) is not str:
            raise Rejection(task_id, Code.MALFORMED, "reply_to must be a str")
        if not endpoint_allowed(reply_to, limits.reply_to_patterns):
            raise Rejection(task_id, Code.BAD_REPLY_TO, f"reply_to {reply_to!r} is not an allowed endpoint")

    # 3. field presence and types (MALFORMED).
    if not TASK_FIELDS.issuperset(msg):
        bad = [k for k in msg if k not in TASK_FIELDS and not (type(k) is str and k.startswith(EXTENSION_PREFIX))]
        if bad:
            raise Rejection(task_id, Code.MALFORMED, f"unknown field(s) {sorted(map(repr, bad))}", reply_to)
    kernel = msg.get("kernel")
    if type(kernel) is not str or not 0 < len(kernel) <= limits.max_kernel_len:
        raise Rejection(task_id, Code.MALFORMED, "kernel (str) missing or of the wrong type", reply_to)
    raw_inputs = msg.get("inputs")
    if raw_inputs is None:
        raw_inputs = []
    elif type(raw_inputs) is not list:
        raise Rejection(task_id, Code.MALFORMED, "inputs must be a list", reply_to)
    params = msg.get("params")
    if params is None:
        params = {}
    elif type(params) is not dict:
        raise Rejection(task_id, Code.MALFORMED, "params must be a map", reply_to)
    sent_ns = msg.get("sent_ns")
    if sent_ns is not None and (type(sent_ns) is not int or sent_ns < 0):
        raise Rejection(task_id, Code.MALFORMED, "sent_ns must be a non-negative int", reply_to)

    # 4. kernel.
    try:
        spec = registry.get(kernel)
    except TaskError as exc:
        raise Rejection(task_id, exc.code, exc.message, reply_to) from None

    # 5. inputs: count, then each input's structure, dtype, shape and length, then the total.
    if len(raw_inputs) > limits.max_inputs:
        raise Rejection(task_id, Code.TOO_LARGE, f"{len(raw_inputs)} inputs, at most {limits.max_inputs}", reply_to)
    inputs = []
    in_bytes = 0
    allowed = limits.allowed_dtypes
    for i, item in enumerate(raw_inputs):
        if type(item) is not dict or len(item) != 3 or not _ARRAY_FIELDS.issuperset(item):
            raise Rejection(task_id, Code.MALFORMED, f"inputs[{i}] must be a map of dtype, shape, data", reply_to)
        dtype_name = item["dtype"]
        shape = item["shape"]
        data = item["data"]
        if type(dtype_name) is not str:
            raise Rejection(task_id, Code.MALFORMED, f"inputs[{i}].dtype must be a str", reply_to)
        if type(data) is not bytes:
            raise Rejection(task_id, Code.MALFORMED, f"inputs[{i}].data must be bin", reply_to)
        if dtype_name not in allowed:
            raise Rejection(task_id, Code.BAD_DTYPE, f"inputs[{i}].dtype {dtype_name!r} not accepted", reply_to)
        dtype = WIRE_DTYPES[dtype_name]
        if type(shape) is not list or len(shape) > limits.max_ndim:
            raise Rejection(
                task_id,
                Code.BAD_SHAPE,
                f"inputs[{i}].shape must be a list of at most {limits.max_ndim} ints",
                reply_to,
            )
        count = 1
        for dim in shape:
            if type(dim) is not int or dim < 0:
                raise Rejection(task_id, Code.BAD_SHAPE, f"inputs[{i}].shape {shape!r}: dims are ints >= 0", reply_to)
            count *= dim
        nbytes = len(data)
        if count * dtype.itemsize != nbytes:
            raise Rejection(
                task_id,
                Code.BAD_SHAPE,
                f"inputs[{i}]: shape {shape} of {dtype_name} needs {count * dtype.itemsize} bytes, got {nbytes}",
                reply_to,
            )
        in_bytes += nbytes
        array = np.frombuffer(data, dtype=dtype)
        inputs.append(array if len(shape) == 1 else array.reshape(shape))
    if in_bytes > limits.max_task_bytes:
        raise Rejection(
            task_id, Code.TOO_LARGE, f"inputs total {in_bytes} bytes, at most {limits.max_task_bytes}", reply_to
        )

    # 6. priority.
    priority = msg.get("priority")
    if priority is None:
        priority = limits.default_priority
    elif type(priority) is not int or not 0 <= priority < limits.priority_levels:
        raise Rejection(
            task_id, Code.BAD_PRIORITY, f"priority {priority!r} not an int in 0..{limits.priority_levels - 1}", reply_to
        )

    # 7. deadline and period.
    deadline_us = msg.get("deadline_us")
    deadline_ns = None
    if deadline_us is not None:
        if not _is_number(deadline_us) or not 0 <= deadline_us <= MAX_DEADLINE_US:  # NaN fails both comparisons
            raise Rejection(
                task_id, Code.BAD_DEADLINE, f"deadline_us {deadline_us!r} not a number in 0..{MAX_DEADLINE_US:.0e}",
                reply_to,
            )
        deadline_ns = recv_ns + (deadline_us * 1000 if type(deadline_us) is int else round(deadline_us * 1000))
    period_us = msg.get("period_us")
    if period_us is not None and (not _is_number(period_us) or not 0 < period_us < math.inf):
        raise Rejection(task_id, Code.BAD_DEADLINE, f"period_us {period_us!r} not a finite number > 0", reply_to)

    # 8. params (shape only; the kernel spec judges names and values).
    if params:
        if len(params) > limits.max_params:
            raise Rejection(task_id, Code.BAD_PARAM, f"{len(params)} params, at most {limits.max_params}", reply_to)
        for key, value in params.items():
            if type(key) is not str or not isinstance(value, _SCALAR_TYPES):
                raise Rejection(task_id, Code.BAD_PARAM, f"param {key!r}: names are str, values scalars", reply_to)

    # 9. the kernel's own rules.
    try:
        checked = spec.check(inputs, params)
    except TaskError as exc:
        raise Rejection(task_id, exc.code, exc.message, reply_to) from None
    except Exception as exc:  # a bug in a spec must still give exactly one result, not kill the receiver
        log.exception("kernel spec %r check failed unexpectedly", kernel)
        raise Rejection(task_id, Code.INTERNAL, f"kernel check failed: {type(exc).__name__}", reply_to) from None

    # 10. outputs size.
    out_bytes = 0
    for shape, dtype in checked.outputs:
        count = 1
        for dim in shape:
            count *= dim
        out_bytes += count * dtype.itemsize  # KernelSpec outputs carry np.dtype objects
    if out_bytes > limits.max_task_bytes:
        raise Rejection(
            task_id, Code.TOO_LARGE, f"outputs total {out_bytes} bytes, at most {limits.max_task_bytes}", reply_to
        )

    return Task(
        task_id,
        kernel,
        inputs,
        params,
        priority,
        deadline_us,
        period_us,
        reply_to,
        sent_ns,
        spec,
        checked,
        in_bytes,
        out_bytes,
        recv_ns,
        deadline_ns,
        seq,
    )


# ---- encode ---------------------------------------------------------------------------------------------------

# msgpack.packb builds a Packer (and its buffer) per call; one Packer per thread halves the cost.
_local = threading.local()


def _packer() -> msgpack.Packer:
    p = getattr(_local, "packer", None)
    if p is None:
        p = _local.packer = msgpack.Packer(use_bin_type=True, autoreset=True)
    return p


def encode_array(arr: np.ndarray) -> dict[str, Any]:
    """The wire map of one array: little-endian, C order. Copies only small arrays (cheaper than a view)."""
    if type(arr) is not np.ndarray:
        arr = np.asarray(arr)
    # dtype.name costs ~2 us; a dict keyed by the dtype itself costs 0.05 us.
    name = _WIRE_NAMES.get(arr.dtype)
    if name is None or not arr.flags.c_contiguous:
        name = arr.dtype.name
        if name not in WIRE_DTYPES or arr.dtype.kind not in "fciu":
            raise TypeError(f"dtype {arr.dtype} has no wire encoding")
        arr = np.ascontiguousarray(arr, dtype=WIRE_DTYPES[name])
    # tobytes beats a memoryview for small arrays; big ones go zero-copy (msgpack reads the buffer).
    data = arr.tobytes() if arr.nbytes < _ZERO_COPY_BYTES or not arr.ndim else arr.data
    return {"dtype": name, "shape": list(arr.shape), "data": data}


def encode_result(
    task_id: int | str | None,
    code: Code,
    message: str = "",
    outputs: Sequence[np.ndarray] = (),
    missed_deadline: bool = False,
    latency_us: Mapping[str, float] | None = None,
    **extra: Any,
) -> bytes:
    """One result frame. ``status`` follows from ``code``; ``extra`` adds the optional fields of PROTOCOL.md."""
    msg = {
        "id": task_id,
        "status": status_for(code).value,
        "code": code.value,
        "message": message,
        "outputs": [encode_array(a) for a in outputs],
        "missed_deadline": bool(missed_deadline),
        "latency_us": dict(latency_us) if latency_us else {},
    }
    if extra:
        clash = _RESULT_CORE_FIELDS.intersection(extra)
        if clash:
            raise ValueError(f"extra fields shadow core fields: {sorted(clash)}")
        msg.update(extra)
    return _packer().pack(msg)


_OK_CACHE_MAX = 1024
_ok_heads: dict[tuple, list[bytes]] = {}  # (dtype, shape) per output -> packed heads


def _bin_header(n: int) -> bytes:
    if n < 0x100:
        return b"\xc4" + n.to_bytes(1, "big")
    if n < 0x10000:
        return b"\xc5" + n.to_bytes(2, "big")
    return b"\xc6" + n.to_bytes(4, "big")


# The fixed parts of an ok result, in order: these bytes, the id, the status fields, the outputs array, then
# _LAT_QS_HEAD's missed flag and latencies (ingest.bulk.BulkResults and ingest.openloop.fast_ok read them too).
_OK_ID_HEAD = b"\x87\xa2id"  # fixmap(7), fixstr "id"
_OK_STATUS = b"".join(msgpack.packb(x) for x in ("status", "ok", "code", "OK", "message", "", "outputs"))


def _ok_heads_for(outputs: Sequence[np.ndarray]) -> list[bytes]:
    packer = msgpack.Packer(use_bin_type=True, autoreset=True)
    heads = [_OK_ID_HEAD, _OK_STATUS + packer.pack_array_header(len(outputs))]
    for arr in outputs:
        name = _WIRE_NAMES[arr.dtype]
        heads.append(packer.pack_map_header(3) + packer.pack("dtype") + packer.pack(name) + packer.pack("shape")
                     + packer.pack(list(arr.shape)) + packer.pack("data") + _bin_header(arr.nbytes))
    return heads


_MISSED_KEY = msgpack.packb("missed_deadline")  # the bool follows it
_MISSED = (_MISSED_KEY + msgpack.packb(False) + msgpack.packb("latency_us"),
           _MISSED_KEY + msgpack.packb(True) + msgpack.packb("latency_us"))


def encode_ok_result(task_id: int | str, outputs: Sequence[np.ndarray], missed_deadline: bool,
                     latency_us: Mapping[str, float]) -> bytes:
    """``encode_result(task_id, Code.OK, "", outputs, missed_deadline, latency_us)``, byte for byte, for the
    server's hot path: everything but the id, the data and the latencies is packed once per output dtypes and
    shapes, and the frame is one ``bytes.join``.

    ``outputs`` must be C-contiguous arrays of wire dtypes (lane views are)."""
    key = tuple([(a.dtype, a.shape) for a in outputs])
    heads = _ok_heads.get(key)
    if heads is None:
        if len(_ok_heads) >= _OK_CACHE_MAX:
            _ok_heads.clear()
        heads = _ok_heads[key] = _ok_heads_for(outputs)
    pack = _packer().pack
    parts = [heads[0], pack(task_id), heads[1]]
    for head, arr in zip(heads[2:], outputs):  # noqa: B905 - same length: the key has one entry each
        parts.append(head)
        parts.append(arr.tobytes())
    parts.append(_MISSED[1 if missed_deadline else 0])
    parts.append(pack(latency_us))
    return b"".join(parts)


# The latency map the server sends with an untimed ok result, {"queue": q, "service": s}, packed by one struct
# call: fixmap(2), fixstr "queue", float64, fixstr "service", float64 (msgpack packs a Python float as float64).
_LAT_QS_HEAD = (_MISSED[0] + b"\x82\xa5queue\xcb", _MISSED[1] + b"\x82\xa5queue\xcb")
_LAT_QS = struct.Struct(">d9sd")
_SERVICE_KEY = b"\xa7service\xcb"


class OkEncoder:
    """Ok results of one output form (dtypes and shapes), packed ahead of time: per task only the id is packed,
    the data copied once and the two latencies packed by one struct call.

    ``encode(task_id, outputs, missed, queue_us, service_us)`` equals ``encode_ok_result(task_id, outputs, missed,
    {"queue": queue_us, "service": service_us})`` byte for byte (floats for the latencies). The server keeps one per
    task form; it saves about 0.7 µs of 1.6 per result here (the form key, the latency dict and its packing).

    An encoder has its own msgpack packer (no thread-local lookup per result): use one from one thread at a time,
    as the server's loop does."""

    __slots__ = ("_head0", "_head1", "_out_heads", "_one", "_pack")

    def __init__(self, outputs: Sequence[np.ndarray]) -> None:
        heads = _ok_heads_for(outputs)
        self._head0, self._head1 = heads[0], heads[1]
        self._out_heads = tuple(heads[2:])
        # One output (every builtin kernel): the frame's parts as one tuple, no list built per result
        self._one = self._out_heads[0] if len(self._out_heads) == 1 else None
        self._pack = msgpack.Packer(use_bin_type=True, autoreset=True).pack

    def encode(self, task_id: int | str, outputs: Sequence[np.ndarray], missed_deadline: bool, queue_us: float,
               service_us: float) -> bytes:
        if self._one is not None:
            return b"".join((self._head0, self._pack(task_id), self._head1, self._one, outputs[0],
                             _LAT_QS_HEAD[1 if missed_deadline else 0], _LAT_QS.pack(queue_us, _SERVICE_KEY,
                                                                                        service_us)))
        parts = [self._head0, self._pack(task_id), self._head1]
        for head, arr in zip(self._out_heads, outputs):  # noqa: B905 - the form fixes the number of outputs
            parts.append(head)
            parts.append(arr)  # C-contiguous: join copies its buffer, no tobytes() copy first
        parts.append(_LAT_QS_HEAD[1 if missed_deadline else 0])
        parts.append(_LAT_QS.pack(queue_us, _SERVICE_KEY, service_us))
        return b"".join(parts)


def encode_task(
    task_id: int | str,
    kernel: str,
    inputs: Sequence[np.ndarray] = (),
    params: Mapping[str, Any] | None = None,
    priority: int | None = None,
    deadline_us: float | None = None,
    period_us: float | None = None,
    reply_to: str | None = None,
    sent_ns: int | None = None,
    **extensions: Any,
) -> bytes:
    """One task frame. Optional fields left as None are omitted; ``extensions`` keys must start with ``x_``."""
    msg: dict[str, Any] = {"id": task_id, "kernel": kernel, "inputs": [encode_array(a) for a in inputs]}
    if params:
        msg["params"] = dict(params)
    if priority is not None:
        msg["priority"] = priority
    if deadline_us is not None:
        msg["deadline_us"] = deadline_us
    if period_us is not None:
        msg["period_us"] = period_us
    if reply_to is not None:
        msg["reply_to"] = reply_to
    if sent_ns is not None:
        msg["sent_ns"] = sent_ns
    for key, value in extensions.items():
        if not key.startswith(EXTENSION_PREFIX):
            raise ValueError(f"extension field {key!r} must start with {EXTENSION_PREFIX!r}")
        msg[key] = value
    return _packer().pack(msg)


def _decode_array(item: Any) -> np.ndarray:
    if type(item) is not dict or not _ARRAY_FIELDS.issubset(item):
        raise ProtocolError("an output is a map of dtype, shape, data")
    dtype = WIRE_DTYPES.get(item["dtype"]) if type(item["dtype"]) is str else None
    if dtype is None:
        raise ProtocolError(f"output dtype {item['dtype']!r} not in the wire set")
    shape, data = item["shape"], item["data"]
    if type(shape) is not list or not all(type(d) is int and d >= 0 for d in shape) or type(data) is not bytes:
        raise ProtocolError("output shape must be a list of ints >= 0 and data bin")
    if math.prod(shape) * dtype.itemsize != len(data):
        raise ProtocolError(f"output shape {shape} does not match {len(data)} bytes of {item['dtype']}")
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def decode_result(frame: bytes) -> Result:
    """Decode one result frame (outputs become read-only numpy arrays); raise :class:`ProtocolError` if invalid."""
    try:
        msg = msgpack.unpackb(frame, raw=False, strict_map_key=True, ext_hook=_reject_ext)
    except Exception as exc:
        raise ProtocolError(f"undecodable result: {type(exc).__name__}: {exc}") from None
    if type(msg) is not dict:
        raise ProtocolError("a result is a map")
    try:
        code = Code(msg["code"])
        status = Status(msg["status"])
    except (KeyError, ValueError, TypeError) as exc:
        raise ProtocolError(f"result status/code missing or unknown: {exc}") from None
    task_id = msg.get("id")
    if task_id is not None and type(task_id) not in (int, str):
        raise ProtocolError("result id must be int, str or nil")
    outputs = msg.get("outputs") or []
    if type(outputs) is not list:
        raise ProtocolError("outputs must be a list")
    latency = msg.get("latency_us") or {}
    if type(latency) is not dict or not all(type(k) is str and _is_number(v) for k, v in latency.items()):
        raise ProtocolError("latency_us must be a map of str to number")
    message = msg.get("message", "")
    return Result(
        id=task_id,
        status=status,
        code=code,
        message=message if type(message) is str else str(message),
        outputs=[_decode_array(o) for o in outputs],
        missed_deadline=bool(msg.get("missed_deadline", False)),
        latency_us={k: float(v) for k, v in latency.items()},
        extra={k: v for k, v in msg.items() if k not in _RESULT_CORE_FIELDS},
    )
