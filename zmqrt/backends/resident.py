"""Resident lanes (``--resident``): small elementwise tasks without a driver call per task.

Each lane gets one block of ``ptx/resident.cu`` that never returns and serves a mailbox in mapped pinned host
memory. A task copies its inputs into the lane's mapped input slot, writes op, size and parameters, and stores a
new request number; completion is the kernel's done number read from host memory. No launch, no event, no
stream query: on the H200 host that path took 7.4 µs per 1 KiB ``vector_add`` against 18.3 µs for a graph replay
plus sync in the same run (``bench/results/persistent_floor-H200.md``).

Eligible: ``vector_add`` and ``saxpy`` of at most ``MAX_ELEMENTS`` elements (the kernel reads its inputs over PCIe,
which pays off only for small tasks), submitted untimed. Everything else takes the lane's usual path, so one lane
may alternate between the two; a task is on one path from submit to collect.

Costs: one SM and a stream per lane, and the blocks poll host memory over PCIe while idle. A resident block that
dies (a sticky error) never publishes its done number: ``poll`` checks the block's stream every
``_CHECK_EVERY`` polls and raises the error, which the server's fault path turns into GPU_FAULT and a restart.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from cuda.bindings import driver as cu

from ..compiler import KernelCache, compile_one
from ..cuda import KernelArgs, Module, PinnedBuffer, Stream
from ..cuda import check as cu_check
from ..cuda._check import error_for

SOURCE = Path(__file__).resolve().parents[2] / "ptx" / "resident.cu"
MAX_ELEMENTS = 4096  # per input (16 KiB of float32)
OPS = {"vector_add": 1, "saxpy": 2}  # kernel name -> op code of ptx/resident.cu
_EXIT = 0xFFFFFFFF
_THREADS = 256
_CHECK_EVERY = 4096  # polls between checks that the resident block is still alive (one stream query)
_REQ, _DONE, _STOP, _OP, _N, _ALPHA, _OFF = range(7)


def load_module(arch: str, cache: KernelCache | None) -> Module:
    compiled = compile_one("resident", SOURCE, arch, cache)
    return Module(compiled.cubin if compiled.cubin is not None else compiled.ptx + b"\0", "resident lane")


class ResidentLane:
    """One resident block, its stream and its mailbox. Not thread-safe: one loop drives it."""

    def __init__(self, module: Module, stream_priority: int = 0) -> None:
        self._closed = False
        self.stream = Stream(stream_priority)
        self._ctrl_buf = PinnedBuffer(64, mapped=True)
        self._in_buf = PinnedBuffer(2 * MAX_ELEMENTS * 4, mapped=True)
        self._out_buf = PinnedBuffer(MAX_ELEMENTS * 4, mapped=True)
        self.ctrl = self._ctrl_buf.view.view(np.uint32)
        self.ctrl[:] = 0
        self._ctrl_f32 = self._ctrl_buf.view.view(np.float32)
        self._in = self._in_buf.view.view(np.float32)
        self._out = self._out_buf.view.view(np.float32)
        self.ctrl[_OFF] = MAX_ELEMENTS  # the second input's slot
        self._args = KernelArgs(3)
        self._args.set_ptr(0, self._ctrl_buf.device_ptr)
        self._args.set_ptr(1, self._in_buf.device_ptr)
        self._args.set_ptr(2, self._out_buf.device_ptr)
        self.seq = 0
        self._polls = 0
        self._outputs: list[np.ndarray] = []
        self._func = module.kernel("resident_lane").func
        self.running = False

    def start(self) -> None:
        """Launch the block. Start every lane only after all are built: allocating after a block runs may wait."""
        self.ctrl[_STOP] = 0
        self._polls = 0
        cu_check(cu.cuLaunchKernel(self._func, 1, 1, 1, _THREADS, 1, 1, 0, self.stream.handle, self._args.address,
                                   0), "cuLaunchKernel(resident_lane)")
        self.running = True

    @staticmethod
    def accepts(name: str, inputs: Sequence[np.ndarray]) -> bool:
        return name in OPS and inputs[0].size <= MAX_ELEMENTS

    def submit(self, name: str, inputs: Sequence[np.ndarray], checked) -> None:
        """Start one eligible task (``accepts`` said so) on this lane; the lane must be idle."""
        n = inputs[0].size
        self._in[:n] = inputs[0].reshape(-1)
        self._in[MAX_ELEMENTS:MAX_ELEMENTS + n] = inputs[1].reshape(-1)
        ctrl = self.ctrl
        ctrl[_OP] = OPS[name]
        ctrl[_N] = n
        if name == "saxpy":
            self._ctrl_f32[_ALPHA] = checked.params["alpha"]
        shape = checked.outputs[0][0]
        self._outputs = [self._out[:n].reshape(shape)]
        self.seq = seq = (self.seq + 1) & 0x7FFFFFFF or 1  # never 0 (the initial done number) nor _EXIT
        ctrl[_REQ] = seq  # last: the inputs and the words above are in host memory before the device sees it

    def poll(self) -> bool:
        if self.ctrl[_DONE] == self.seq:
            return True
        self._polls += 1
        if self._polls >= _CHECK_EVERY:
            self._polls = 0
            self._check_alive()
        return False

    def _check_alive(self) -> None:
        err = cu.cuStreamQuery(self.stream.handle)[0]
        if err == cu.CUresult.CUDA_ERROR_NOT_READY:
            return  # still running, as it should
        if err:
            raise error_for("resident lane", err)
        # Returned without being asked: nothing will answer this lane's tasks any more.
        raise error_for("resident lane (block exited)", cu.CUresult.CUDA_ERROR_LAUNCH_FAILED)

    def wait(self) -> None:
        while not self.poll():
            pass

    def collect(self) -> list[np.ndarray]:
        """The outputs: views into mapped memory, valid until the next submit on this lane."""
        return self._outputs

    def stop(self) -> None:
        """Ask the block to return once it has served any pending request; no wait, no driver call."""
        if self.running:
            self.ctrl[_STOP] = 1

    def join(self) -> None:
        """Wait for a stopped block to return (raises the context's sticky error, if any)."""
        if self.running:
            self.running = False
            self.stream.synchronize()

    def close(self) -> None:
        """Stop the block and free the lane (idempotent). After a sticky error the stream reports it at once.

        Freeing pinned memory (cuMemFreeHost) waits for every running kernel of the context, so with several
        lanes call ``stop_all`` first: closing one lane while another's block still runs hangs
        (``bench/resident_probe.py``)."""
        if self._closed:
            return
        self._closed = True
        self.stop()
        try:
            self.join()
        except Exception:  # a poisoned context: nothing left to stop
            pass
        for res in (self._out_buf, self._in_buf, self._ctrl_buf, self.stream):
            res.close()


def stop_all(lanes: Sequence[ResidentLane]) -> list[ResidentLane]:
    """Stop every running block, then wait for each; the lanes that were running, to ``start`` again.

    All stop before any is waited for, so the pause costs one block's exit, not one per lane. Needed before any
    driver call that waits for running kernels: freeing memory, and (measured on the H200) graph instantiation."""
    running = [lane for lane in lanes if lane.running]
    for lane in running:
        lane.stop()
    for lane in running:
        lane.join()
    return running
