"""zmqrt's executor against CuPy and PyTorch doing the same per-task work, in one run.

Per task: 1 KiB ``vector_add``, two numpy float32 arrays of 256 in, the 256-element sum back as numpy:
- zmqrt: ``CudaBackend.submit`` + ``wait`` + ``collect`` + a copy of the output (one lane, no stage-timing events),
  with the task's ``checked`` form computed once, as the server's decoder memoizes it per task form
  (``ingest.fastdecode``: kernel, dtypes, shapes and params are validated once per form, not per task);
  "zmqrt+check" also runs ``spec.check`` on every task (a form never seen before), reported beside it;
  "zmqrt --resident" is the same on a backend with resident lanes (``zmqrt serve --resident``: a small vector_add
  runs on a kernel resident on its lane, fed through mapped memory, no driver call). Its block is stopped while the
  other paths are timed, so its polling of host memory never weighs on them;
- CuPy: ``(cp.asarray(a) + cp.asarray(b)).get()``;
- PyTorch: ``(torch.from_numpy(a).cuda() + torch.from_numpy(b).cuda()).cpu().numpy()``.
A peer that does not import (or finds no device) is skipped with the reason recorded. The paths run
interleaved in rounds so drift hits all alike; each path's output is checked against numpy once.
Ratios are peer / zmqrt (how many times faster zmqrt is). Target (issue 6): zmqrt p50 at least 2x faster than
PyTorch and 4x faster than CuPy.

Usage: python3 bench/peers.py [--n 20000]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import card_name, environment, md_row, summarize, time_loop, write_results  # noqa: E402

TARGETS = {"torch": 2.0, "cupy": 4.0}  # zmqrt p50 at least this many times faster


def _zmqrt_path(a: np.ndarray, b: np.ndarray, check_per_task: bool = False, resident: bool = False):
    from zmqrt.backends.cuda import CudaBackend
    from zmqrt.kernels.registry import load_registry

    registry = load_registry()
    backend = CudaBackend(registry, lanes=1, max_task_bytes=1 << 16, resident=resident)
    spec = registry.get("vector_add")
    inputs = [a, b]
    form = spec.check(inputs, {})
    submit, wait, collect = backend.submit, backend.wait, backend.collect

    def once():
        checked = spec.check(inputs, {}) if check_per_task else form
        submit(0, spec, inputs, checked, False)
        wait(0)
        return collect(0)[0].copy()  # a fresh array, as the peers return: the lane's pinned view is reused

    # While other paths are timed, a resident block is stopped (what the backend does around driver calls that
    # wait for running kernels): it polls host memory over PCIe all the time, which would cost the others.
    return once, backend.close, (backend._paused if resident else None)


def _cupy_path(a: np.ndarray, b: np.ndarray):
    import cupy as cp

    cp.cuda.runtime.getDeviceCount()

    def once():
        return (cp.asarray(a) + cp.asarray(b)).get()

    return once, None, None


def _torch_path(a: np.ndarray, b: np.ndarray):
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("torch.cuda.is_available() is False")
    from_numpy = torch.from_numpy

    def once():
        return (from_numpy(a).cuda() + from_numpy(b).cuda()).cpu().numpy()

    return once, None, None


BUILDERS: dict[str, Callable] = {"zmqrt": _zmqrt_path,
                                 "zmqrt+check": lambda a, b: _zmqrt_path(a, b, check_per_task=True),
                                 "zmqrt --resident": lambda a, b: _zmqrt_path(a, b, resident=True),
                                 "cupy": _cupy_path, "torch": _torch_path}


def ratios(paths: dict[str, dict], base: str = "zmqrt") -> dict[str, dict]:
    """``{peer: {"p50": peer_p50 / base_p50, "p99": ..., "target_p50": x, "met": bool}}`` for each measured path
    but ``base`` (a zmqrt path)."""
    z = paths[base]
    out = {}
    for name, row in paths.items():
        if name == base:
            continue
        r = {"p50": row["p50"] / z["p50"], "p99": row["p99"] / z["p99"]}
        if name in TARGETS:
            r["target_p50"] = TARGETS[name]
            r["met"] = bool(r["p50"] >= TARGETS[name])
        out[name] = r
    return out


def measure(n: int = 20000, warm: int = 1000, peers: tuple[str, ...] = ("cupy", "torch")) -> dict:
    rng = np.random.default_rng()
    a = rng.standard_normal(256).astype(np.float32)
    b = rng.standard_normal(256).astype(np.float32)
    want = a + b
    fns: dict[str, Callable] = {}
    closers = []
    quiet: dict[str, Callable] = {}  # path -> what holds it still while the other paths are timed
    skipped: dict[str, str] = {}
    # The resident backend is built last: its block never ends, and a module load (CuPy's and PyTorch's first call
    # load theirs) waits for running kernels, so built before them it hung the run (session 17, call 10).
    for name in ("zmqrt", "zmqrt+check", *peers, "zmqrt --resident"):
        try:
            fn, close, still = BUILDERS[name](a, b)
            got = np.asarray(fn())
            np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=f"{name} vector_add")
        except Exception as e:  # not importable, no device, or a CUDA runtime that fails at first use
            if name.startswith("zmqrt") or isinstance(e, AssertionError):
                raise  # zmqrt must run, and a wrong answer is a failure, not a skip
            skipped[name] = f"{type(e).__name__}: {e}"
            print(f"{name}: skipped ({skipped[name]})", flush=True)
            continue
        fns[name] = fn
        if close is not None:
            closers.append(close)
        if still is not None:
            quiet[name] = still
    samples: dict[str, list[int]] = {k: [] for k in fns}
    rounds = 10 if n >= 10000 else 2
    for _ in range(rounds):
        for name, fn in fns.items():
            with contextlib.ExitStack() as stack:
                for other, still in quiet.items():
                    if other != name:
                        stack.enter_context(still())
                samples[name] += time_loop(fn, n // rounds, warm=max(1, warm // rounds))
    paths = {name: summarize(v) for name, v in samples.items()}
    for close in reversed(closers):  # the resident backend first: no other context work while its block runs
        close()
    results = {"card": card_name(), "env": environment(), "n": n,
               "work": "vector_add 2 x 256 float32 from numpy, result to numpy", "paths_us": paths,
               "skipped": skipped, "ratios_peer_over_zmqrt": ratios(paths), "targets_p50": TARGETS}
    if "zmqrt --resident" in paths:
        results["ratios_peer_over_zmqrt_resident"] = ratios(paths, "zmqrt --resident")
    for mod in ("cupy", "torch"):
        if mod in fns:
            results["env"][f"{mod}_version"] = sys.modules[mod].__version__
    return results


def table(results: dict) -> str:
    z = results["paths_us"]["zmqrt"]
    lines = [f"# zmqrt executor vs CuPy and PyTorch: {results['card']}", "",
             "1 KiB vector_add per task, numpy in and out (host clock), µs; ratio = peer / zmqrt (zmqrt is that "
             "many times faster).", "",
             md_row(["path", "p50", "p99", "p99.9", "ratio p50", "ratio p99", "target p50", "met"]),
             md_row(["---"] * 8)]
    for name, row in results["paths_us"].items():
        r = results["ratios_peer_over_zmqrt"].get(name, {"p50": 1.0, "p99": 1.0})
        target = f">= {r['target_p50']:.0f}x" if "target_p50" in r else ""
        met = ("yes" if r["met"] else "NO") if "met" in r else ""
        lines.append(md_row([name, f"{row['p50']:.2f}", f"{row['p99']:.2f}", f"{row['p999']:.2f}",
                             f"{r['p50']:.2f}", f"{r['p99']:.2f}", target, met]))
    for name, why in results["skipped"].items():
        lines.append(md_row([name, "skipped", why, "", "", "", "", ""]))
    res = results.get("ratios_peer_over_zmqrt_resident")
    if res:
        lines += ["", "The same peers against zmqrt's resident lanes (`zmqrt serve --resident`):", "",
                  md_row(["path", "ratio p50", "ratio p99", "target p50", "met"]), md_row(["---"] * 5)]
        for name, r in res.items():
            if name.startswith("zmqrt"):
                continue
            target = f">= {r['target_p50']:.0f}x" if "target_p50" in r else ""
            met = ("yes" if r["met"] else "NO") if "met" in r else ""
            lines.append(md_row([name, f"{r['p50']:.2f}", f"{r['p99']:.2f}", target, met]))
    lines += ["", f"zmqrt p50 {z['p50']:.2f} µs. Target (issue 6): >= 2x faster than PyTorch, >= 4x than CuPy.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20000, help="timed iterations per path (default 20000)")
    ap.add_argument("--warm", type=int, default=1000, help="warm-up iterations per path")
    ap.add_argument("--peers", default="cupy,torch", help="comma list of peers to try (cupy, torch)")
    args = ap.parse_args()
    results = measure(args.n, args.warm, tuple(p for p in args.peers.split(",") if p))
    for name, row in results["paths_us"].items():
        r = results["ratios_peer_over_zmqrt"].get(name)
        extra = f"  ({r['p50']:.2f}x zmqrt at p50)" if r else ""
        rr = results.get("ratios_peer_over_zmqrt_resident", {}).get(name)
        if rr and not name.startswith("zmqrt"):
            extra += f", {rr['p50']:.2f}x zmqrt --resident"
        print(f"{name:8s} p50 {row['p50']:7.2f} us  p99 {row['p99']:7.2f} us{extra}", flush=True)
    print(f"wrote {write_results('peers', results, table(results))}")


if __name__ == "__main__":
    main()
