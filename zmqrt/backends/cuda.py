"""The CUDA backend: one retained primary context, the registry's kernels loaded once, N lanes.

Startup compiles (or loads from the cache) every kernel source for the device's exact ``sm_XY`` and loads the
CUBIN. The PTX is the fallback, taken only when the driver is at least as new as NVRTC, because a PTX from a
newer NVRTC fails to load (CUDA_ERROR_UNSUPPORTED_PTX_VERSION).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from cuda.bindings import driver as cu

from ..compiler import KernelCache, compile_registry, nvrtc_version
from ..cuda import CudaError, Device, Module, check
from .base import Backend, StageTimes, rows_like
from .lane import Lane, Prepared
from .resident import MAX_ELEMENTS, OPS, ResidentLane, load_module, stop_all

log = logging.getLogger(__name__)


def stream_priority_for(lane: int, lanes: int, least: int, greatest: int) -> int:
    """Spread lanes over the device's priority range: lane 0 gets the most urgent stream priority."""
    span = least - greatest
    if lanes <= 1 or span == 0:
        return greatest
    return greatest + round(lane * span / (lanes - 1))


class CudaBackend(Backend):
    name = "cuda"

    def __init__(self, registry, device: int = 0, lanes: int = 4, max_task_bytes: int = 1 << 20,
                 cache: KernelCache | None = None, timing: bool = True, resident: bool = False) -> None:
        if lanes < 1:
            raise ValueError("lanes must be >= 1")
        t0 = time.perf_counter()
        self.registry = registry
        self.lanes = lanes
        self.max_task_bytes = max_task_bytes
        self._lanes: list[Lane] = []
        self._modules: list[Module] = []
        self._timing = timing
        # Resident lanes (zmqrt.backends.resident): one per lane, or None. _on_resident[i]: lane i's current task
        # runs on its resident block.
        self._resident: list[ResidentLane] | None = None
        self._on_resident = [False] * lanes
        self.pauses = 0  # times the resident blocks were stopped for a cold-path driver call
        self.device = Device(device)
        self.context = self.device.retain_context()
        info = self.device.info
        try:
            self.compile_seconds, self.load_seconds = self._load_kernels(cache)
            least, greatest = self.context.stream_priority_range()
            self._lanes = [Lane(i, self.slot_bytes, stream_priority_for(i, lanes, least, greatest), timing)
                           for i in range(lanes)]
            if resident:
                # Load every kernel now. With CUDA's lazy loading, the first launch of a kernel loads it, and a
                # load may wait for the context's running kernels: the resident blocks never finish, so a lazy
                # load after they start would hang the launch for ever.
                for kernel in self._kernels.values():
                    check(cu.cuFuncLoad(kernel.func), f"cuFuncLoad({kernel.entry})")
                module = load_module(info.arch, cache if cache is not None else KernelCache())
                self._modules.append(module)
                self._resident = []
                for i in range(lanes):
                    self._resident.append(ResidentLane(module, stream_priority_for(i, lanes, least, greatest)))
                for res in self._resident:  # last: no allocation or load may follow a running block
                    res.start()
                for ln in self._lanes:
                    ln.guard = self._paused
        except BaseException:
            self.close()
            raise
        self.startup_seconds = time.perf_counter() - t0
        self.description = (f"cuda device {device}: {info.name} ({info.arch}, {info.total_mem_bytes >> 30} GiB, "
                            f"driver {info.driver_version // 1000}.{info.driver_version % 1000 // 10})"
                            + (", resident lanes" if resident else ""))

    def _load_kernels(self, cache: KernelCache | None) -> tuple[float, float]:
        info = self.device.info
        t0 = time.perf_counter()
        compiled = compile_registry(self.registry, info.arch, cache if cache is not None else KernelCache())
        t1 = time.perf_counter()
        nv_major, nv_minor = nvrtc_version()
        ptx_ok = info.driver_version >= nv_major * 1000 + nv_minor * 10
        by_path: dict[str, Module] = {}
        for source_id, comp in compiled.items():
            module = None
            if comp.cubin is not None:
                try:
                    module = Module(comp.cubin, f"{source_id} cubin {comp.arch}")
                except CudaError as exc:
                    log.warning("CUBIN for %s did not load (%s); trying PTX", source_id, exc)
            if module is None:
                if not ptx_ok:
                    raise RuntimeError(f"no loadable image for {source_id}: CUBIN failed and NVRTC "
                                       f"{nv_major}.{nv_minor} is newer than the driver ({info.driver_version})")
                module = Module(comp.ptx + b"\0", f"{source_id} ptx")
            self._modules.append(module)
            by_path[str(Path(comp.path).resolve())] = module  # specs may name it relatively
        self._kernels = {}
        for spec in self.registry:
            kernel = by_path[str(spec.source_path.resolve())].kernel(spec.entry)
            self._kernels[spec.name] = kernel
        return t1 - t0, time.perf_counter() - t1

    @contextmanager
    def _paused(self):
        """The resident blocks stopped around a driver call that waits for running kernels (a lane's graph
        capture or eviction: a cold path, once per task shape and lane). Pending resident tasks finish first."""
        running = stop_all(self._resident or ())
        try:
            yield
        finally:
            for res in running:
                res.start()
            self.pauses += 1

    def bind_thread(self) -> None:
        # Launches and copies name their stream, but graph capture and instantiation use the calling thread's
        # current context: a server loop run in a thread of its own failed cuGraphInstantiate with
        # CUDA_ERROR_INVALID_CONTEXT until it made the context current.
        self.context.set_current()

    def kernel(self, name: str):
        return self._kernels[name]

    def submit(self, lane: int, spec, inputs: Sequence[np.ndarray], checked, timed: bool = True) -> None:
        if self._resident is not None:
            # _resident_took and ResidentLane.accepts, inline: the per-task path to the GPU is two calls shorter
            on = self._on_resident[lane] = (not (timed and self._timing) and spec.name in OPS
                                            and inputs[0].size <= MAX_ELEMENTS)
            if on:
                self._resident[lane].submit(spec.name, inputs, checked)
                return
        ln = self._lanes[lane]
        # Tasks of one form share one ``checked`` object (ingest.fastdecode memoizes it), so its identity finds
        # the prepared launch without building the shape key (~1.5 µs). The entry keeps ``checked`` alive, so
        # an id is never reused while it is in the table.
        entry = ln.by_checked.get(id(checked))
        prep = entry[1] if entry is not None and entry[0] is checked else self._prepare(ln, spec, inputs, checked)
        ln.submit(prep, inputs, timed)

    def submit_rows(self, lane: int, spec, inputs: Sequence[np.ndarray], checked, rows: int) -> None:
        if self._resident is not None and self._resident_took(lane, spec, inputs, checked, False):
            return
        ln = self._lanes[lane]
        entry = ln.by_checked.get(id(checked))
        if entry is not None and entry[0] is checked:
            prep = entry[1]
        else:  # shapes of `rows` rows: views of the first row, for the plan and the pinned views (never read)
            prep = self._prepare(ln, spec, rows_like(inputs, rows), checked)
        ln.submit(prep, inputs, False, len(inputs[0]) if rows != len(inputs[0]) else None)

    def submit_frame(self, lane: int, spec, frame: bytes, offsets: Sequence[int], views: Sequence[tuple], checked,
                     timed: bool = True) -> bool:
        # The resident path only: its two input copies straight from the frame's bytes into mapped memory cost less
        # than two numpy views of the frame and two array copies (0.4 against 0.9 µs on the dev VM).
        if self._resident is None or (timed and self._timing) or spec.name not in OPS:
            return False
        count, shape = views[0][1], views[0][2]
        if count > MAX_ELEMENTS:
            return False
        self._on_resident[lane] = True
        self._resident[lane].submit_frame(spec.name, frame, offsets, count, shape, checked)
        return True

    def warm_frame(self, lane: int, spec, frame: bytes, offsets: Sequence[int], views: Sequence[tuple],
                   checked) -> bool:
        if self._resident is None or spec.name not in OPS or views[0][1] > MAX_ELEMENTS:
            return False
        self._resident[lane].copy_frame(OPS[spec.name], frame, offsets, views[0][1], views[0][2])
        return True

    def warm(self, lane: int, spec, inputs: Sequence[np.ndarray], checked) -> None:
        """``submit``'s input copy, on the path an untimed task of this form would take, with nothing started: no
        request for a resident block (it reads its slot only for a new request number), no launch. Never prepares
        or captures anything; a form not yet prepared on this lane is left alone. The lane must be idle."""
        if self._resident is not None and ResidentLane.accepts(spec.name, inputs):
            self._resident[lane].warm(spec.name, inputs)
            return
        entry = self._lanes[lane].by_checked.get(id(checked))
        if entry is not None and entry[0] is checked:
            for view, a in zip(entry[1].in_views, inputs):  # noqa: B905 - same length by construction
                view[...] = a

    def _resident_took(self, lane: int, spec, inputs: Sequence[np.ndarray], checked, timed: bool) -> bool:
        """An untimed small elementwise task goes to the lane's resident block: no driver call at all."""
        on = self._on_resident[lane] = (not (timed and self._timing) and ResidentLane.accepts(spec.name, inputs))
        if on:
            self._resident[lane].submit(spec.name, inputs, checked)
        return on

    def _prepare(self, ln: Lane, spec, inputs: Sequence[np.ndarray], checked) -> Prepared:
        """The lane's prepared launch for ``inputs``' shapes (built on first use), found by ``checked`` from now on."""
        params = checked.params
        key = (spec.name, tuple([(a.shape, a.dtype.num) for a in inputs]),
               tuple(params.values()) if params else ())
        prep = ln._prepared.get(key)
        if prep is None:  # first task of this shape on this lane: the cold path
            self.check_fits(inputs, checked)
            prep = ln.prepared(key, self._kernels[spec.name],
                               lambda: spec.plan([a.shape for a in inputs], params), inputs, checked.outputs)
        ln.remember(checked, prep)
        return prep

    def poll(self, lane: int) -> bool:
        if self._on_resident[lane]:
            return self._resident[lane].poll()
        return self._lanes[lane].poll()

    def wait(self, lane: int) -> None:
        if self._on_resident[lane]:
            self._resident[lane].wait()
        else:
            self._lanes[lane].wait()

    def spin(self, lane: int) -> None:
        if self._on_resident[lane]:
            self._resident[lane].wait()
        else:
            self._lanes[lane].spin()

    def collect(self, lane: int) -> list[np.ndarray]:
        if self._on_resident[lane]:
            return self._resident[lane].collect()
        return self._lanes[lane].collect()

    def stage_times(self, lane: int) -> StageTimes | None:
        if self._on_resident[lane]:
            return None  # no events on the resident path
        return self._lanes[lane].stage_times()

    def finish(self, lane: int) -> tuple[list[np.ndarray], StageTimes | None]:
        if self._on_resident[lane]:
            return self._resident[lane].collect(), None
        ln = self._lanes[lane]
        return ln.collect(), ln.stage_times()

    def lane(self, index: int) -> Lane:
        return self._lanes[index]

    def close(self) -> None:
        # First, and all at once: freeing memory waits for every running kernel, resident blocks included.
        try:
            stop_all(self._resident or ())
        except Exception:  # a poisoned context: each close frees what it can
            pass
        for res in self._resident or ():
            res.close()
        self._resident = None
        self._on_resident = [False] * len(self._on_resident)
        for lane in self._lanes:
            lane.close()
        self._lanes = []
        self._kernels = {}
        for module in self._modules:
            module.close()
        self._modules = []
        ctx = getattr(self, "context", None)
        if ctx is not None:
            ctx.close()
