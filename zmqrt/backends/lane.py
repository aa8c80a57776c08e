"""One CUDA execution lane: a stream, pinned input/output slots, device buffers, events and kernel args.

Everything is allocated at construction. A task shape seen before is a *prepared launch* on this lane: its
kernel arguments (device pointers into this lane's buffers, then scalars) are already written into a
kernelParams array of its own, and typed numpy views of the pinned slots exist for every input and output.
Per task the lane then only copies the inputs into pinned memory (one numpy copy each), enqueues one H2D
for all inputs, the launch, one D2H for all outputs, and (with stage timing) records events around each
stage. Completion is a stream or event query; nothing here blocks unless ``wait`` is called.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from contextlib import nullcontext

import numpy as np
from cuda.bindings import driver as cu

from ..cuda import DeviceBuffer, Event, Graph, KernelArgs, PinnedBuffer, Stream
from ..cuda import check as cu_check
from ..cuda import query as cu_query
from .base import SLOT_ALIGN_BYTES, StageTimes

_PREPARED_PER_LANE = 256  # distinct (kernel, shapes, params) remembered per lane
# Untimed uses of a prepared launch before it is captured as a graph; ZMQRT_GRAPH_AFTER_USES=0 never captures
# (for A/B measurements: bench/NOTES.md).
_GRAPH_AFTER_USES = int(os.environ.get("ZMQRT_GRAPH_AFTER_USES", "2")) or (1 << 62)


def _align(n: int) -> int:
    return -(-n // SLOT_ALIGN_BYTES) * SLOT_ALIGN_BYTES


class Prepared:
    """A launch bound to one lane: arguments written, pinned views made. Built once per task shape."""

    __slots__ = ("func", "entry", "grid", "block", "shared_bytes", "args", "in_views", "out_views", "in_bytes",
                 "out_bytes", "uses", "graph", "graph_exec")

    def __init__(self, lane: Lane, kernel, plan, in_specs: Sequence[tuple[tuple[int, ...], np.dtype]],
                 out_specs: Sequence[tuple[tuple[int, ...], np.dtype]]) -> None:
        self.func = kernel.func
        self.entry = kernel.entry
        self.grid = plan.grid
        self.block = plan.block
        self.shared_bytes = plan.shared_bytes
        self.args = args = KernelArgs()
        slot = 0
        off = 0
        self.in_views = []
        for shape, dtype in in_specs:
            n = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            self.in_views.append(lane.h_in.view[off:off + n].view(dtype).reshape(shape))
            args.set_ptr(slot, lane.d_in.ptr + off)
            slot += 1
            off = _align(off + n)
        self.in_bytes = max(off, 1)
        off = 0
        self.out_views = []
        for shape, dtype in out_specs:
            n = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            self.out_views.append(lane.h_out.view[off:off + n].view(dtype).reshape(shape))
            args.set_ptr(slot, lane.d_out.ptr + off)
            slot += 1
            off = _align(off + n)
        self.out_bytes = max(off, 1)
        for kind, value in plan.scalars:
            args.set_scalar(slot, kind, value)
            slot += 1
        self.uses = 0
        self.graph: Graph | None = None
        self.graph_exec = None  # the raw executable handle, read once

    def close(self) -> None:
        if self.graph is not None:
            self.graph.close()
            self.graph = self.graph_exec = None


class Lane:
    def __init__(self, index: int, slot_bytes: int, stream_priority: int = 0, timing: bool = True) -> None:
        self.index = index
        self.slot_bytes = slot_bytes
        self.timing = timing
        self.stream = Stream(stream_priority)
        self.h_in = PinnedBuffer(slot_bytes)
        self.h_out = PinnedBuffer(slot_bytes)
        self.d_in = DeviceBuffer(slot_bytes)
        self.d_out = DeviceBuffer(slot_bytes)
        self.args = KernelArgs()  # scratch for callers that launch by hand (tests, graphs)
        # Timing events bracket each stage; with timing off no event is recorded at all and completion is a
        # stream query, exactly the calls of the bare floor.
        self.ev_start = Event(timing=timing)
        self.ev_h2d = Event(timing=timing)
        self.ev_kernel = Event(timing=timing)
        self.ev_done = Event(timing=timing)
        self._prepared: OrderedDict[tuple, Prepared] = OrderedDict()
        self.by_checked: dict[int, tuple[object, Prepared]] = {}  # id(checked) -> (checked, prepared launch)
        self._current: Prepared | None = None
        self._timed = False
        # Raw handles, read once: a property access per driver call would add up on the hot path.
        self._s = self.stream.handle
        self._d_in = self.d_in.handle
        self._d_out = self.d_out.handle
        self._h_in = self.h_in.ptr
        self._h_out = self.h_out.ptr
        self._ev = (self.ev_start.handle, self.ev_h2d.handle, self.ev_kernel.handle, self.ev_done.handle)
        self.busy = False
        # Wraps the driver calls that wait for the context's running kernels (the CUDA backend's resident lanes
        # pause their blocks around them).
        self.guard = nullcontext

    def prepared(self, key: tuple, kernel, plan_fn, inputs: Sequence[np.ndarray],
                 outputs: Sequence[tuple[tuple[int, ...], np.dtype]]) -> Prepared:
        """The prepared launch for ``key``, built (with ``plan_fn()``) on first use."""
        prep = self._prepared.get(key)
        if prep is None:
            prep = Prepared(self, kernel, plan_fn(), [(a.shape, a.dtype) for a in inputs], outputs)
            if len(self._prepared) >= _PREPARED_PER_LANE:
                with self.guard():  # destroying a graph may wait for running kernels
                    self._prepared.popitem(last=False)[1].close()
                self.by_checked.clear()  # it may point at the launch just closed
            self._prepared[key] = prep
        return prep

    def remember(self, checked: object, prep: Prepared) -> None:
        """Find ``prep`` by the identity of ``checked`` from now on (bounded like the prepared table)."""
        if len(self.by_checked) >= _PREPARED_PER_LANE:
            self.by_checked.clear()
        self.by_checked[id(checked)] = (checked, prep)

    def submit(self, prep: Prepared, inputs: Sequence[np.ndarray], timed: bool = True, rows: int | None = None
               ) -> None:
        """Enqueue one task whose launch is ``prep`` (from :meth:`prepared` on this lane).

        ``timed`` records the four stage events (when the lane was built with timing); otherwise no event is
        recorded and completion is a stream query: the same driver calls as the bare floor. ``rows``: the inputs
        fill only the first ``rows`` rows of a launch prepared for more (a padded batch, ``submit_rows``).
        """
        if rows is None:
            for view, a in zip(prep.in_views, inputs):  # noqa: B905 - same length by construction
                view[...] = a
        else:
            for view, a in zip(prep.in_views, inputs):  # noqa: B905
                view[:rows] = a
        s = self._s
        timing = self._timed = timed and self.timing
        if not timing:
            exe = prep.graph_exec
            if exe is None:
                prep.uses += 1
                if prep.uses >= _GRAPH_AFTER_USES:
                    exe = self._capture(prep)
            if exe is not None:
                err = cu.cuGraphLaunch(exe, s)[0]
                if err:
                    cu_check((err,), f"cuGraphLaunch({prep.entry})")
                self._current = prep
                self.busy = True
                return
        self._enqueue(prep, timing)
        self._current = prep
        self.busy = True

    def _enqueue(self, prep: Prepared, timing: bool) -> None:
        """H2D, launch, D2H on the lane's stream; with ``timing``, events around each."""
        s = self._s
        ev = self._ev
        if timing:
            cu_check(cu.cuEventRecord(ev[0], s), "cuEventRecord")
        err = cu.cuMemcpyHtoDAsync(self._d_in, self._h_in, prep.in_bytes, s)[0]
        if err:
            cu_check((err,), "cuMemcpyHtoDAsync")
        if timing:
            cu_check(cu.cuEventRecord(ev[1], s), "cuEventRecord")
        g, b = prep.grid, prep.block
        err = cu.cuLaunchKernel(prep.func, g[0], g[1], g[2], b[0], b[1], b[2], prep.shared_bytes, s,
                                prep.args.address, 0)[0]
        if err:
            cu_check((err,), f"cuLaunchKernel({prep.entry})")
        if timing:
            cu_check(cu.cuEventRecord(ev[2], s), "cuEventRecord")
        err = cu.cuMemcpyDtoHAsync(self._h_out, self._d_out, prep.out_bytes, s)[0]
        if err:
            cu_check((err,), "cuMemcpyDtoHAsync")
        if timing:
            cu_check(cu.cuEventRecord(ev[3], s), "cuEventRecord")

    def _capture(self, prep: Prepared):
        """Capture ``prep``'s untimed sequence as a graph on this lane's stream; its executable handle."""
        with self.guard(), Graph.capture(self.stream) as cap:  # instantiation may wait for running kernels
            self._enqueue(prep, False)
        prep.graph = cap.graph
        prep.graph_exec = cap.graph.handle
        return prep.graph_exec

    def poll(self) -> bool:
        if self._timed:
            return cu_query(cu.cuEventQuery(self._ev[3]), "cuEventQuery")
        return cu_query(cu.cuStreamQuery(self._s), "cuStreamQuery")

    def wait(self) -> None:
        if self._timed:
            cu_check(cu.cuEventSynchronize(self._ev[3]), "cuEventSynchronize")
        else:
            cu_check(cu.cuStreamSynchronize(self._s), "cuStreamSynchronize")

    def spin(self) -> None:
        """Busy-wait for completion: lowest wake-up latency, burns a core."""
        while not self.poll():
            pass

    def collect(self) -> list[np.ndarray]:
        """The outputs: views into pinned memory, valid until the next submit on this lane."""
        self.busy = False
        return self._current.out_views

    def stage_times(self) -> StageTimes | None:
        """GPU stage times of the last task, or None when it was not timed."""
        if not self._timed:
            return None
        ev = self._ev
        h2d = cu_check(cu.cuEventElapsedTime(ev[0], ev[1]), "cuEventElapsedTime")
        ker = cu_check(cu.cuEventElapsedTime(ev[1], ev[2]), "cuEventElapsedTime")
        d2h = cu_check(cu.cuEventElapsedTime(ev[2], ev[3]), "cuEventElapsedTime")
        return StageTimes(int(h2d * 1e6), int(ker * 1e6), int(d2h * 1e6))

    def close(self) -> None:
        for prep in self._prepared.values():
            prep.close()
        self._prepared.clear()
        self.by_checked.clear()
        self._current = None
        for res in (self.ev_start, self.ev_h2d, self.ev_kernel, self.ev_done, self.d_in, self.d_out, self.h_in,
                    self.h_out, self.stream):
            res.close()
