"""A persistent-kernel floor: a task's GPU stage with no driver call per task.

One block of a kernel that never returns polls a mailbox in mapped pinned host memory. Per task the host copies
the two inputs into mapped memory, stores a new request number, and spins on the kernel's done number; the kernel
sees the request, reads the inputs over PCIe, writes the sum into mapped memory, fences, and publishes the done
number. Nothing is launched, recorded or queried per task.

Why measure it: on the H200 host the server loop's submit stage (which holds ``cuGraphLaunch``) is about 10 µs
and GPU + completion detection about 7.5 µs of a 40 µs service time (bench/NOTES.md 23). The launch and the
queries are driver calls from Python; this path has none. It is a floor for a future "resident lane", not
something the server does today.

Compared in the same run with the driver floors of ``bench/floors.py`` (graph replay + sync or event spin, launch
on mapped memory + event spin), interleaved in rounds. Every path's output is checked against numpy; here the
persistent path checks every task of a verification pass, on fresh random inputs with the output poisoned first.

Usage: python3 bench/persistent_floor.py [--n 20000] [--warm 2000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import card_name, environment, md_row, summarize, time_loop, write_results  # noqa: E402

NEL = 256  # 1 KiB of float32 per array, as in bench/floors.py
STOP = 0xFFFFFFFF

# ctrl[0]: request number (host writes), ctrl[1]: done number (kernel writes), ctrl[2]: stop (host writes).
# Thread 0 polls; __syncthreads hands the request to the block. volatile keeps every poll a read of host memory;
# __threadfence_system orders the output writes before the done number as the host sees them.
SRC = r"""
extern "C" __global__ void resident_vadd(volatile unsigned int* ctrl, const float* a, const float* b, float* c,
                                         int n) {
  __shared__ unsigned int req;
  unsigned int last = 0;
  for (;;) {
    if (threadIdx.x == 0) {
      unsigned int r;
      while ((r = ctrl[0]) == last && ctrl[2] == 0) { }
      req = ctrl[2] != 0 ? 0xFFFFFFFFu : r;
    }
    __syncthreads();
    unsigned int r = req;
    if (r == 0xFFFFFFFFu) return;
    __threadfence_system();
    const volatile float* va = a;
    const volatile float* vb = b;
    for (int i = threadIdx.x; i < n; i += blockDim.x) c[i] = va[i] + vb[i];
    __threadfence_system();
    __syncthreads();
    if (threadIdx.x == 0) ctrl[1] = r;
    last = r;
    __syncthreads();
  }
}
"""


class ResidentVadd:
    """The resident kernel on its own stream, with its mailbox and mapped input/output arrays.

    ``run(a, b)`` runs one task and returns a view of the output (valid until the next run); ``close()`` stops
    the kernel and frees everything (idempotent). ``timeout_s`` bounds each wait, so a kernel that never answers
    raises instead of hanging the benchmark."""

    def __init__(self, timeout_s: float = 1.0) -> None:
        from cuda.bindings import driver as cu

        from zmqrt.compiler import compile_source
        from zmqrt.cuda import Device, KernelArgs, Module, PinnedBuffer, Stream
        from zmqrt.cuda import check as cu_check

        self._closed = False
        self._timeout_ns = int(timeout_s * 1e9)
        self.seq = 0
        self.device = Device(0)
        self.ctx = self.device.retain_context()
        self.module = Module(compile_source(SRC, "resident.cu", self.device.info.arch).cubin, "resident cubin")
        self.stream = Stream(0)
        self.ctrl_buf = PinnedBuffer(64, mapped=True)
        self.io_buf = PinnedBuffer(3 * NEL * 4, mapped=True)
        self.ctrl = self.ctrl_buf.view.view(np.uint32)
        self.ctrl[:] = 0
        f32 = self.io_buf.view.view(np.float32)
        self.a, self.b, self.c = f32[:NEL], f32[NEL:2 * NEL], f32[2 * NEL:]
        args = KernelArgs(5)
        base = self.io_buf.device_ptr
        args.set_ptr(0, self.ctrl_buf.device_ptr)
        args.set_ptr(1, base)
        args.set_ptr(2, base + NEL * 4)
        args.set_ptr(3, base + 2 * NEL * 4)
        args.set_i32(4, NEL)
        self._args = args
        func = self.module.kernel("resident_vadd").func
        cu_check(cu.cuLaunchKernel(func, 1, 1, 1, 256, 1, 1, 0, self.stream.handle, args.address, 0),
                 "cuLaunchKernel(resident_vadd)")

    def run(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        self.a[...] = a
        self.b[...] = b
        self.seq = seq = self.seq + 1
        ctrl = self.ctrl
        ctrl[0] = seq  # after the inputs: x86 stores reach the device in program order
        spins, give_up_ns = 0, 0
        while ctrl[1] != seq:
            spins += 1
            if spins & 0xFFFF == 0:  # the clock only now and then: a wait normally ends within a few µs
                now = time.perf_counter_ns()
                if not give_up_ns:
                    give_up_ns = now + self._timeout_ns
                elif now > give_up_ns:
                    raise TimeoutError(f"resident kernel did not answer request {seq}")
        return self.c

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.ctrl[2] = 1  # the kernel returns at its next poll
        self.stream.synchronize()
        for obj in (self.io_buf, self.ctrl_buf, self.stream, self.module, self.ctx):
            obj.close()

    def __enter__(self) -> ResidentVadd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def verify(res: ResidentVadd, tasks: int, rng) -> int:
    """Run ``tasks`` tasks on fresh random inputs, the output poisoned first; return how many were wrong."""
    wrong = 0
    for _ in range(tasks):
        a = rng.standard_normal(NEL).astype(np.float32)
        b = rng.standard_normal(NEL).astype(np.float32)
        res.c[...] = np.nan
        out = res.run(a, b)
        if not np.allclose(out, a + b, rtol=1e-6):
            wrong += 1
    return wrong


def measure(n: int, warm: int) -> dict:
    from bench.floors import driver_floors

    rng = np.random.default_rng()
    results: dict = {"card": card_name(), "env": environment(), "n": n, "warm": warm,
                     "payload": "vector_add 2 x 256 float32 in, 256 out"}
    pool = [(rng.standard_normal(NEL).astype(np.float32), rng.standard_normal(NEL).astype(np.float32))
            for _ in range(64)]
    samples: list[int] = []
    driver: dict[str, list] = {}
    rounds = 5 if n >= 5000 else 1
    results["verify_tasks"], results["verify_wrong"] = 0, 0
    # Rounds alternate the resident kernel and the driver floors, so a drifting host weighs on both alike. The
    # resident kernel is stopped before the driver floors run: it would share an SM and the PCIe link with them.
    for r in range(rounds):
        with ResidentVadd() as res:
            tasks = 2000 if r == 0 else 200
            results["verify_tasks"] += tasks
            results["verify_wrong"] += verify(res, tasks, rng)
            i = 0

            def one(res=res) -> None:
                nonlocal i
                a, b = pool[i & 63]
                i += 1
                np.array(res.run(a, b))  # with the copy out that a result's encoding makes

            samples += time_loop(one, n // rounds, warm=warm // rounds)
        for name, row in driver_floors(n // rounds, max(1, warm // rounds)).items():
            driver.setdefault(name, []).append(row)
    results["resident_us"] = summarize(samples)
    results["driver_us"] = {name: {k: float(np.median([r[k] for r in rows])) for k in ("p50", "p99", "p999", "max")}
                            for name, rows in driver.items()}
    return results


def table(results: dict) -> str:
    r = results["resident_us"]
    lines = [f"# Persistent-kernel floor: {results['card']}", "",
             "One task = 1 KiB vector_add (2 x 256 float32 in, 256 out), host clock per task, µs. Resident: inputs "
             "copied into mapped memory, a request number stored, the done number polled, the output copied out; "
             "no driver call. Driver floors: bench/floors.py's paths in the same run (medians over its rounds).", "",
             md_row(["path", "p50", "p99", "p99.9", "max"]), md_row(["---"] * 5),
             md_row(["resident kernel, mapped memory, host polls", f"{r['p50']:.2f}", f"{r['p99']:.2f}",
                     f"{r['p999']:.2f}", f"{r['max']:.1f}"])]
    for name, row in results["driver_us"].items():
        lines.append(md_row([name, f"{row['p50']:.2f}", f"{row['p99']:.2f}", f"{row['p999']:.2f}",
                             f"{row['max']:.1f}"]))
    lines += ["", f"Verification: {results['verify_tasks']} tasks on fresh random inputs, output poisoned first: "
                  f"{results['verify_wrong']} wrong."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20000, help="timed tasks per path")
    ap.add_argument("--warm", type=int, default=2000, help="warm-up tasks per path, not timed")
    args = ap.parse_args()
    results = measure(args.n, args.warm)
    print(table(results), flush=True)
    if results["verify_wrong"]:
        print(f"resident kernel gave {results['verify_wrong']} wrong outputs", file=sys.stderr)
    print(f"wrote {write_results('persistent_floor', results, table(results))}")
    sys.exit(1 if results["verify_wrong"] else 0)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
