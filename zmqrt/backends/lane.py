"""One CUDA execution lane: a stream, pinned input/output slots, device buffers, events and kernel args.

Everything is allocated at construction. Per task the lane copies the inputs into its pinned slot (numpy
copy on a uint8 view: one memcpy per input), enqueues one H2D for all inputs, the launch, one D2H for all
outputs, and records events around each stage. Completion is an event query; nothing here blocks unless
``wait`` is called.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from cuda.bindings import driver as cu

from ..cuda import DeviceBuffer, Event, KernelArgs, PinnedBuffer, Stream
from ..cuda import check as cu_check
from ..cuda import query as cu_query
from .base import SLOT_ALIGN_BYTES, StageTimes


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
        self.args = KernelArgs()
        # Timing events bracket each stage; with timing off only the completion event is recorded.
        self.ev_start = Event(timing=timing)
        self.ev_h2d = Event(timing=timing)
        self.ev_kernel = Event(timing=timing)
        self.ev_done = Event(timing=timing)
        self._out_layout: list[tuple[int, int, tuple[int, ...], np.dtype]] = []
        self._stream_h = self.stream.handle
        self._in_view = self.h_in.view
        self._out_view = self.h_out.view
        self.busy = False

    def submit(self, kernel, plan, inputs: Sequence[np.ndarray], outputs: Sequence[tuple[tuple[int, ...], np.dtype]]
               ) -> None:
        """Enqueue one task. ``kernel`` is a loaded :class:`zmqrt.cuda.Kernel`; ``plan`` its LaunchPlan."""
        args = self.args
        in_view = self._in_view
        d_in = self.d_in.ptr
        off = 0
        slot = 0
        for a in inputs:
            n = a.nbytes
            in_view[off:off + n] = a.reshape(-1).view(np.uint8)
            args.set_ptr(slot, d_in + off)
            slot += 1
            off = -(-(off + n) // SLOT_ALIGN_BYTES) * SLOT_ALIGN_BYTES
        in_bytes = off
        d_out = self.d_out.ptr
        layout = self._out_layout
        layout.clear()
        off = 0
        for shape, dtype in outputs:
            n = int(np.prod(shape)) * dtype.itemsize
            layout.append((off, n, shape, dtype))
            args.set_ptr(slot, d_out + off)
            slot += 1
            off = -(-(off + n) // SLOT_ALIGN_BYTES) * SLOT_ALIGN_BYTES
        out_bytes = off
        for kind, value in plan.scalars:
            args.set_scalar(slot, kind, value)
            slot += 1
        s = self._stream_h
        if self.timing:
            cu_check(cu.cuEventRecord(self.ev_start.handle, s), "cuEventRecord")
        cu_check(cu.cuMemcpyHtoDAsync(self.d_in.handle, self.h_in.ptr, in_bytes, s), "cuMemcpyHtoDAsync")
        if self.timing:
            cu_check(cu.cuEventRecord(self.ev_h2d.handle, s), "cuEventRecord")
        g, b = plan.grid, plan.block
        err = cu.cuLaunchKernel(kernel.func, g[0], g[1], g[2], b[0], b[1], b[2], plan.shared_bytes, s,
                                args.address, 0)[0]
        if err:
            cu_check((err,), f"cuLaunchKernel({kernel.entry})")
        if self.timing:
            cu_check(cu.cuEventRecord(self.ev_kernel.handle, s), "cuEventRecord")
        cu_check(cu.cuMemcpyDtoHAsync(self.h_out.ptr, self.d_out.handle, out_bytes, s), "cuMemcpyDtoHAsync")
        cu_check(cu.cuEventRecord(self.ev_done.handle, s), "cuEventRecord")
        self.busy = True

    def poll(self) -> bool:
        return cu_query(cu.cuEventQuery(self.ev_done.handle), "cuEventQuery")

    def wait(self) -> None:
        cu_check(cu.cuEventSynchronize(self.ev_done.handle), "cuEventSynchronize")

    def spin(self) -> None:
        """Busy-wait on the completion event: lowest wake-up latency, burns a core."""
        done = self.ev_done.handle
        not_ready = cu.CUresult.CUDA_ERROR_NOT_READY
        while True:
            err = cu.cuEventQuery(done)[0]
            if not err:
                return
            if err != not_ready:
                cu_check((err,), "cuEventQuery")

    def collect(self) -> list[np.ndarray]:
        view = self._out_view
        self.busy = False
        return [view[off:off + n].view(dtype).reshape(shape) for off, n, shape, dtype in self._out_layout]

    def stage_times(self) -> StageTimes:
        if not self.timing:
            return StageTimes()
        h2d = self.ev_h2d.elapsed_ms(self.ev_start)
        ker = self.ev_kernel.elapsed_ms(self.ev_h2d)
        d2h = self.ev_done.elapsed_ms(self.ev_kernel)
        return StageTimes(int(h2d * 1e6), int(ker * 1e6), int(d2h * 1e6))

    def close(self) -> None:
        for res in (self.ev_start, self.ev_h2d, self.ev_kernel, self.ev_done, self.d_in, self.d_out, self.h_in,
                    self.h_out, self.stream):
            res.close()
