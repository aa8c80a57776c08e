"""The server's task decoder: the full validator once per task *form*, a memoized fast path after that.

Real-time producers send the same form over and over: the same kernel, dtypes, shapes and params, with only
the id, the data and the deadline changing. :func:`ingest.protocol.validate_task` checks everything, in the
documented order, with exact codes; once a form has passed it, everything that depends on the form alone
(kernel spec, dtypes, byte counts, the kernel's shape rule and coerced params, output sizes) is a dict lookup.

The fast path still checks, per task, every field that may differ between tasks of one form: the id, each
input's ``data`` length, priority, deadline, period and ``sent_ns``. Anything it does not recognize, including
any invalid value, goes to the full validator, so a rejection is always the full validator's, word for word.
``tests/test_fastdecode.py`` checks the two paths agree.

Why: the full validator is about 8 µs per 1 KiB task on the H200 host and 24 µs inside the loop (cold caches
between tasks); the service-time target is 20 µs for the whole task.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .protocol import MAX_DEADLINE_US, TASK_FIELDS, Limits, Task, TaskUnpacker, validate_task
from .template import FrameTemplate, SlotChecks, compile_views

__all__ = ["TaskDecoder"]

_MEMO_MAX = 1024  # distinct task forms remembered (a producer repeats a few)
_BUILDS_AT_ONCE = 4  # byte templates a form gets at its first untemplated decodes (then every 64th)
_TEMPLATES_MAX = 8  # byte templates tried per frame, most recently matched first (each miss costs ~0.2 µs)
_BY_LENGTH_MAX = 256  # frame lengths remembered with the template that last matched one of that length
_REPLY_MAX = 4096  # distinct allowed reply endpoints remembered
_INF = math.inf
_frombuffer = np.frombuffer
_SCALARS = frozenset({int, float, bool, str})


class _Form:
    """What a task form determines: filled in from a task that passed the full validator."""

    __slots__ = ("spec", "inputs", "in_bytes", "checked", "out_bytes", "untemplated", "builds")

    def __init__(self, task: Task) -> None:
        self.spec = task.spec
        # (dtype, shape or None for 1-D, byte count) per input
        self.inputs = tuple((a.dtype, None if a.ndim == 1 else a.shape, a.nbytes) for a in task.inputs)
        self.in_bytes = task.in_bytes
        self.checked = task.checked
        self.out_bytes = task.out_bytes
        self.untemplated = 0  # dict-path decodes of this form (no template matched them)
        self.builds = 0  # byte templates built for it: one per producer for the first few, then now and then


def _form_key(msg: dict) -> tuple | None:
    """The form of ``msg`` as a hashable key, or None when it is not a plain well-typed form.

    Types are part of the key where Python hashing would merge values (``1 == 1.0 == True``)."""
    kernel = msg.get("kernel")
    if type(kernel) is not str:
        return None
    key: list[Any] = [kernel]
    raw = msg.get("inputs")
    if type(raw) is not list:
        return None
    for item in raw:
        if type(item) is not dict or len(item) != 3:
            return None
        shape = item.get("shape")
        if type(shape) is not list:
            return None
        for dim in shape:
            if type(dim) is not int:
                return None
        dtype = item.get("dtype")
        if type(dtype) is not str:
            return None
        key.append(dtype)
        key.append(len(shape))
        key.extend(shape)
    params = msg.get("params")
    if params:
        if type(params) is not dict:
            return None
        for name, value in params.items():
            if type(value) not in _SCALARS:
                return None
            key.append(name)
            key.append(type(value))
            key.append(value)
    elif params is not None and type(params) is not dict:
        return None
    return tuple(key)  # hashable: str, int and scalar types only, checked above


class TaskDecoder:
    """``decode(frame, recv_ns, seq) -> Task`` or ``Rejection``: same contract as ``protocol.decode_task``."""

    def __init__(self, registry: Any, limits: Limits) -> None:
        self.registry = registry
        self.limits = limits
        self._forms: dict[tuple, _Form] = {}
        self._replies: set[str] = set()
        self.fast = 0  # tasks decoded by the fast path (diagnostics)
        # The limits the fast path reads per task, as plain attributes (a frozen dataclass read costs more).
        # Its own unpacker (one thread decodes with it: the server loop): 1.5 µs against 2.0 per 1 KiB task here,
        # the thread-local lookup of unpack_task saved.
        self._unpack = TaskUnpacker(limits).unpack
        self._max_id_len = limits.max_id_len
        self._default_priority = limits.default_priority
        self._priority_levels = limits.priority_levels
        # The same checks, compiled into each byte template's ``take`` (ingest.template.SlotChecks).
        self._checks = SlotChecks(limits.max_id_len, limits.default_priority, limits.priority_levels,
                                  MAX_DEADLINE_US)
        self._templates: list[FrameTemplate] = []  # most recently matched first
        # Frame length -> the template that last matched a frame of that length, tried before the others. A mix of
        # forms (the 10 kHz stream: vector_add, matmul, fft in turn) otherwise tries the other forms' templates
        # first on every frame: a vector_add match in that mix took 1.4 times as long as alone on the dev VM, and
        # as long with the hint (bench/NOTES.md 37; on the H200 host's stream no effect showed beyond its drift).
        # A frame of another form that happens to have that length fails the hint's byte comparison and takes the
        # scan. The hint is (template, its exact take for the layout of the first frame of that length:
        # FrameTemplate.exact_take), which falls back to the template's take for any other layout.
        self._by_length: dict[int, tuple] = {}
        self.templated = 0  # tasks decoded from a byte template (diagnostics)

    @property
    def templates(self) -> list[FrameTemplate]:
        """The byte templates, most recently matched first (``ingest.bulk`` matches a batch against them)."""
        return self._templates

    @property
    def replies(self) -> set[str]:
        """The reply endpoints the full validator has allowed (its fast paths accept only these)."""
        return self._replies

    def _add_template(self, frame: bytes, form: _Form, task: Task) -> None:
        views = tuple((dtype, nbytes // dtype.itemsize, shape) for dtype, shape, nbytes in form.inputs)
        tpl = FrameTemplate.build(frame, tuple(nbytes for _, _, nbytes in form.inputs),
                                  (form, task.kernel, task.params, task.reply_to, views, compile_views(views)),
                                  self._checks)
        if tpl is None:
            return
        templates = self._templates
        templates.insert(0, tpl)
        if len(templates) > _TEMPLATES_MAX:
            templates.pop()
            self._by_length.clear()  # no hint may keep an evicted template in use

    def _scalars(self, task_id, priority, deadline_us, period_us, sent_ns, recv_ns: int) -> tuple | None:
        """The per-task values checked as the full validator would accept them (with priority defaulted and the
        absolute deadline), or None to let the full validator decide. The dict fast path's; the byte templates'
        ``take`` has the same checks compiled in (``SlotChecks``)."""
        tid_type = type(task_id)
        if tid_type is not int and (tid_type is not str or not 0 < len(task_id) <= self._max_id_len):
            return None
        if priority is None:
            priority = self._default_priority
        elif type(priority) is not int or not 0 <= priority < self._priority_levels:
            return None
        deadline_ns = None
        if deadline_us is not None:
            dtype_ = type(deadline_us)
            if dtype_ is int:
                if not 0 <= deadline_us <= MAX_DEADLINE_US:
                    return None
                deadline_ns = recv_ns + deadline_us * 1000
            elif dtype_ is float and 0 <= deadline_us <= MAX_DEADLINE_US:
                deadline_ns = recv_ns + round(deadline_us * 1000)
            else:
                return None
        if period_us is not None and ((type(period_us) is not int and type(period_us) is not float)
                                      or not 0 < period_us < _INF):
            return None
        if sent_ns is not None and (type(sent_ns) is not int or sent_ns < 0):
            return None
        return task_id, priority, deadline_us, deadline_ns, period_us, sent_ns

    def match(self, frame: bytes, recv_ns: int) -> tuple | None:
        """A frame that matches a byte template, its per-task values checked as ``_fast`` checks them:
        ``(rec, values)``, or None, and then ``decode`` takes it (no template matched, or a value the checks
        refuse: the dict path words the rejection).

        ``rec`` is the template's ``(form, kernel, params, reply_to, views, inputs)``: ``views`` per input ``(dtype,
        count, shape or None)``, and ``inputs(frame, offsets)`` makes them (``template.compile_views``). ``values``
        is ``(id, priority, deadline_us, deadline_ns, period_us, sent_ns, offsets)``: ``_scalars``'s tuple and the
        inputs' data offsets in the frame. The server reads this much before it starts the task (a resident GPU
        lane copies the inputs' bytes from the frame, no view made), and builds the Task (``task``) while the GPU
        runs."""
        # ``take``: the checked slot values and the inputs' offsets, or None
        hit = self._by_length.get(len(frame))  # (template, its exact take for this frame length)
        got = hit[1](frame, recv_ns) if hit is not None else None
        if got is None:
            templates = self._templates
            for i, tpl in enumerate(templates):
                got = tpl.take(frame, recv_ns)
                if got is not None:
                    if i:  # most recent first: a producer's template is found at once
                        templates.insert(0, templates.pop(i))
                    by_length = self._by_length
                    if len(by_length) >= _BY_LENGTH_MAX:
                        by_length.clear()
                    by_length[len(frame)] = (tpl, tpl.exact_take(frame))
                    break
            else:
                return None
        else:
            tpl = hit[0]
        self.templated += 1
        return tpl.form, got

    def rehearse(self, frame: bytes, recv_ns: int) -> tuple | None:
        """``match``'s work without its lasting effects (the ``templated`` count, the templates' order; a length
        hint it records names a template that matches frames of that length, as a real match would): the server's
        cache warming runs it on a recent frame in idle time."""
        templates = self._templates
        first = templates[0] if templates else None
        matched = self.match(frame, recv_ns)
        if matched is not None:  # match counted it, and moved its template first: undo both
            self.templated -= 1
            if templates[0] is not first:
                templates.remove(first)
                templates.insert(0, first)
        return matched

    @staticmethod
    def task(matched: tuple, frame: bytes, recv_ns: int, seq: int) -> Task:
        """The Task of a ``match`` result of ``frame``."""
        (form, kernel, params, reply_to, _, inputs), (task_id, priority, deadline_us, deadline_ns, period_us, sent_ns,
                                                      offsets) = matched
        return Task(task_id, kernel, inputs(frame, offsets), params, priority, deadline_us, period_us, reply_to,
                    sent_ns, form.spec, form.checked, form.in_bytes, form.out_bytes, recv_ns, deadline_ns, seq)

    def decode(self, frame: bytes, recv_ns: int, seq: int) -> Task:
        matched = self.match(frame, recv_ns)
        if matched is not None:
            return self.task(matched, frame, recv_ns, seq)
        return self.decode_unmatched(frame, recv_ns, seq)

    def decode_unmatched(self, frame: bytes, recv_ns: int, seq: int) -> Task:
        """``decode`` of a frame that ``match`` returned None for (the templates are not tried again)."""
        msg = self._unpack(frame)
        key = _form_key(msg)
        if key is not None:
            form = self._forms.get(key)
            if form is not None:
                task = self._fast(msg, form, recv_ns, seq)
                if task is not None:
                    self.fast += 1
                    form.untemplated += 1
                    # A frame no template matched: build its own (each producer of the form gets one at once),
                    # but after a few builds only every 64th time, so forms that never repeat cost little.
                    if form.builds < _BUILDS_AT_ONCE or form.untemplated & 63 == 0:
                        form.builds += 1
                        self._add_template(frame, form, task)
                    return task
        task = validate_task(msg, self.registry, self.limits, recv_ns, seq)  # raises the exact Rejection
        if key is not None:
            forms = self._forms
            if len(forms) >= _MEMO_MAX:
                forms.clear()
            forms[key] = _Form(task)
        if task.reply_to is not None:
            if len(self._replies) >= _REPLY_MAX:
                self._replies.clear()
            self._replies.add(task.reply_to)
        return task

    def _fast(self, msg: dict, form: _Form, recv_ns: int, seq: int) -> Task | None:
        """The task, or None to let the full validator decide (and word any rejection)."""
        get = msg.get
        reply_to = get("reply_to")
        if reply_to is not None and (type(reply_to) is not str or reply_to not in self._replies):
            return None
        if not TASK_FIELDS.issuperset(msg):  # x_ extension fields: the full path handles them
            return None
        inputs = []
        for item, (dtype, shape, nbytes) in zip(get("inputs"), form.inputs):  # noqa: B905 - same form, same count
            data = item.get("data")
            if type(data) is not bytes or len(data) != nbytes:
                return None
            array = _frombuffer(data, dtype)  # dtype as a keyword costs twice as much
            inputs.append(array if shape is None else array.reshape(shape))
        checked = self._scalars(get("id"), get("priority"), get("deadline_us"), get("period_us"), get("sent_ns"),
                                recv_ns)
        if checked is None:
            return None
        task_id, priority, deadline_us, deadline_ns, period_us, sent_ns = checked
        params = get("params")
        return Task(task_id, msg["kernel"], inputs, params if params is not None else {}, priority, deadline_us,
                    period_us, reply_to, sent_ns, form.spec, form.checked, form.in_bytes, form.out_bytes, recv_ns,
                    deadline_ns, seq)

