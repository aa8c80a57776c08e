"""Resident lanes (``--resident``): small elementwise tasks without a driver call per task.

Each lane gets one block of ``ptx/resident.cu`` that never returns and serves a mailbox in mapped pinned host
memory. A task copies its inputs into the lane's mapped input slot and stores the two 8-byte mailbox words (each
carries the request number; with op, n and alpha), which the block reads in one 16-byte read; completion is the
kernel's done number read from host memory. No launch, no event, no stream query. On the H200 host the floor took
7.4 µs per 1 KiB ``vector_add`` against 18.3 µs for a graph replay plus sync (``persistent_floor-H200.md``); in
the server, submit + completion went from 19.6 to 13.8 µs and the service p50 from 39.7 to 31.0 µs
(``bench/NOTES.md`` 25). The block orders its work with one acquire load and one release store rather than a
system fence in every thread (``ptx/resident.cu``'s RESIDENT_FENCE): 0.85 of the time per task in
``bench/resident_variants.py``, 0.91 of the service p50 in the server (``bench/NOTES.md`` 39).

Driver calls that wait for the context's running kernels (freeing memory, module loads, and on the H200 graph
instantiation) would wait for ever behind the blocks: the backend builds everything before starting them, stops
them all before freeing anything (``stop_all``), and pauses them around a lane's graph capture or eviction.

Eligible: ``vector_add`` and ``saxpy`` of at most ``MAX_ELEMENTS`` elements (the kernel reads its inputs over PCIe,
which pays off only for small tasks), submitted untimed. Everything else takes the lane's usual path, so one lane
may alternate between the two; a task is on one path from submit to collect.

Costs: one SM and a stream per lane, and the blocks poll host memory over PCIe while idle. A resident block that
dies (a sticky error) never publishes its done number: ``poll`` checks the block's stream every
``_CHECK_EVERY`` polls and raises the error, which the server's fault path turns into GPU_FAULT and a restart.
"""

from __future__ import annotations

import math
import struct
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
_EXIT_OP = 255
_THREADS = 256
_CHECK_EVERY = 4096  # polls between checks that the resident block is still alive (one stream query)
_DONE_BYTE = 64  # the done number's own cache line: the host polls it while the device reads the mailbox
_SECOND_BYTE = MAX_ELEMENTS * 4  # the second input's place in the input slot (the kernel's second_offset)


def load_module(arch: str, cache: KernelCache | None) -> Module:
    compiled = compile_one("resident", SOURCE, arch, cache)
    return Module(compiled.cubin if compiled.cubin is not None else compiled.ptx + b"\0", "resident lane")


class ResidentLane:
    """One resident block, its stream and its mailbox. Not thread-safe: one loop drives it."""

    def __init__(self, module: Module, stream_priority: int = 0) -> None:
        self._closed = False
        self.running = False
        self.stream = Stream(stream_priority)
        self._ctrl_buf = PinnedBuffer(128, mapped=True)
        self._in_buf = PinnedBuffer(2 * MAX_ELEMENTS * 4, mapped=True)
        self._out_buf = PinnedBuffer(MAX_ELEMENTS * 4, mapped=True)
        self._ctrl_buf.view[:] = 0
        self._mbox = self._ctrl_buf.view[:16].view(np.uint64)  # words A and B of ptx/resident.cu
        self._done = self._ctrl_buf.view[_DONE_BYTE:_DONE_BYTE + 4].view(np.uint32)
        # The same word for poll: a memoryview item is a Python int (40 against 75 ns for a numpy scalar, per poll)
        self._done_word = memoryview(self._ctrl_buf.view)[_DONE_BYTE:_DONE_BYTE + 4].cast("I")
        self._in = self._in_buf.view.view(np.float32)
        self._in_bytes = memoryview(self._in_buf.view)  # submit_frame's copies: bytes to bytes
        self._out = self._out_buf.view.view(np.float32)
        self._args = KernelArgs(5)
        self._args.set_ptr(0, self._ctrl_buf.device_ptr)
        self._args.set_ptr(1, self._ctrl_buf.device_ptr + _DONE_BYTE)
        self._args.set_ptr(2, self._in_buf.device_ptr)
        self._args.set_ptr(3, self._out_buf.device_ptr)
        self._args.set_i32(4, MAX_ELEMENTS)  # the second input's element offset
        self._func = module.kernel("resident_lane").func
        self.seq = 0
        self._polls = 0
        self._outputs: list[np.ndarray] = []
        # (op, shape) -> (first input view, second input view, [output view], word A's upper half): built once
        # per task form, so a submit is two copies and two 8-byte stores.
        self._forms: dict[tuple[int, tuple[int, ...]], tuple] = {}

    @property
    def done_number(self) -> int:
        return int(self._done[0])

    def start(self) -> None:
        """Launch the block. Start every lane only after all are built: allocating after a block runs may wait."""
        self._polls = 0
        cu_check(cu.cuLaunchKernel(self._func, 1, 1, 1, _THREADS, 1, 1, 0, self.stream.handle, self._args.address,
                                   0), "cuLaunchKernel(resident_lane)")
        self.running = True

    @staticmethod
    def accepts(name: str, inputs: Sequence[np.ndarray]) -> bool:
        return name in OPS and inputs[0].size <= MAX_ELEMENTS

    def _form(self, op: int, shape: tuple[int, ...]) -> tuple:
        n = math.prod(shape)
        form = (self._in[:n].reshape(shape), self._in[MAX_ELEMENTS:MAX_ELEMENTS + n].reshape(shape),
                [self._out[:n].reshape(shape)], (n | op << 24) << 32)
        if len(self._forms) >= 256:
            self._forms.clear()
        self._forms[(op, shape)] = form
        return form

    def submit(self, name: str, inputs: Sequence[np.ndarray], checked) -> None:
        """Start one eligible task (``accepts`` said so) on this lane; the lane must be idle."""
        a, b = inputs
        op = OPS[name]
        form = self._forms.get((op, a.shape)) or self._form(op, a.shape)
        form[0][...] = a
        form[1][...] = b
        self._outputs = form[2]
        self.seq = seq = (self.seq + 1) & 0xFFFFFFFF or 1
        # _post, inline (a call less per task): word B first, word A last (see _post)
        mbox = self._mbox
        mbox[1] = seq | (_f32_bits(checked.params["alpha"]) << 32 if op == 2 else 0)
        mbox[0] = seq | form[3]

    def copy_frame(self, op: int, frame: bytes, offsets: Sequence[int], count: int,
                   shape: tuple[int, ...] | None) -> tuple:
        """The two inputs' bytes (``count`` float32 each, at ``offsets`` in ``frame``) into the input slot, as
        ``submit`` copies arrays; returns the form. Nothing is requested: alone, it is a warm-up."""
        form = self._forms.get((op, shape or (count,))) or self._form(op, shape or (count,))
        nbytes = count * 4
        src, dst = memoryview(frame), self._in_bytes
        o0, o1 = offsets
        dst[0:nbytes] = src[o0:o0 + nbytes]
        dst[_SECOND_BYTE:_SECOND_BYTE + nbytes] = src[o1:o1 + nbytes]
        return form

    def submit_frame(self, name: str, frame: bytes, offsets: Sequence[int], count: int,
                     shape: tuple[int, ...] | None, checked) -> None:
        """``submit`` of a task whose inputs are ``count`` float32 each at ``offsets`` in ``frame``: the lane must be
        idle; ``accepts`` must hold for those inputs."""
        op = OPS[name]
        form = self.copy_frame(op, frame, offsets, count, shape)
        self._outputs = form[2]
        self.seq = seq = (self.seq + 1) & 0xFFFFFFFF or 1
        mbox = self._mbox  # as in submit: word B first, word A last
        mbox[1] = seq | (_f32_bits(checked.params["alpha"]) << 32 if op == 2 else 0)
        mbox[0] = seq | form[3]

    def warm(self, name: str, inputs: Sequence[np.ndarray]) -> None:
        """``submit``'s copies without the request: the block reads the input slot only when a new request number
        arrives, so it sees nothing. The lane must be idle (its last task collected)."""
        a, b = inputs
        op = OPS[name]
        form = self._forms.get((op, a.shape)) or self._form(op, a.shape)
        form[0][...] = a
        form[1][...] = b

    def _post(self, seq: int, upper_a: int, alpha_bits: int) -> None:
        mbox = self._mbox
        mbox[1] = seq | alpha_bits << 32  # word B first: a read between the two stores sees unequal numbers
        mbox[0] = seq | upper_a  # last: the inputs are in host memory before the device can see the request

    def poll(self) -> bool:
        if self._done_word[0] == self.seq:
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
        """Post the exit request once the pending request (if any) is served; the block then returns."""
        if self.running:
            self.wait()
            self.seq = seq = (self.seq + 1) & 0xFFFFFFFF or 1
            self._post(seq, _EXIT_OP << 56, 0)

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
        try:
            self.stop()
            self.join()
        except Exception:  # a poisoned context: nothing left to stop
            pass
        self._in_bytes.release()  # no view of the pinned memory may outlive it
        self._done_word.release()
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


def _f32_bits(value: float) -> int:
    return _F32_TO_U32(_PACK_F32(value))[0]


_PACK_F32 = struct.Struct("<f").pack
_F32_TO_U32 = struct.Struct("<I").unpack
