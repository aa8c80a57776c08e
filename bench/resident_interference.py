"""Do resident blocks slow the launched path beside them? The executor alone, no ZeroMQ, no producer.

Per task, on the host clock: ``CudaBackend.submit`` + ``wait`` + ``collect``, untimed, for launched tasks (fft of
1024 complex64, matmul 32x32, vector_add of 8192 elements: too large for a resident lane) on lane 1, and for a
1 KiB vector_add (resident when the backend has resident lanes). Backends with and without ``resident=True``
alternate (off, on, on, off), so a drift of the host weighs on both alike. The resident blocks poll host memory
over PCIe all the while; if that slows copies or launches, the launched rows differ between the two.

Usage: python3 bench/resident_interference.py [--n 5000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import card_name, environment, md_row, summarize, time_loop, write_results  # noqa: E402


def _tasks(registry, rng):
    c = (rng.standard_normal(1024) + 1j * rng.standard_normal(1024)).astype(np.complex64)
    m = rng.standard_normal((32, 32)).astype(np.float32)
    big = [rng.standard_normal(8192).astype(np.float32) for _ in range(2)]
    small = [rng.standard_normal(256).astype(np.float32) for _ in range(2)]
    return {"fft 1024 (launched)": ("fft", [c], {}), "matmul 32x32 (launched)": ("matmul", [m, m], {}),
            "vector_add 32 KiB (launched)": ("vector_add", big, {}),
            "vector_add 1 KiB (resident when on)": ("vector_add", small, {})}


def measure(resident: bool, n: int, rng) -> dict:
    from zmqrt.backends.cuda import CudaBackend
    from zmqrt.kernels.registry import load_registry

    registry = load_registry()
    out = {}
    with CudaBackend(registry, lanes=4, resident=resident) as be:
        for label, (name, inputs, params) in _tasks(registry, rng).items():
            spec = registry.get(name)
            checked = spec.check(inputs, params)
            want = spec.reference(inputs, checked.params)[0]

            def once(spec=spec, inputs=inputs, checked=checked):
                be.submit(1, spec, inputs, checked, False)
                be.wait(1)
                return be.collect(1)

            got = once()[0]
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)
            out[label] = summarize(time_loop(once, n, warm=500))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=5000, help="timed tasks per kind and side (default 5000)")
    args = ap.parse_args()
    rng = np.random.default_rng()
    runs = {"off": [], "on": []}
    for side in ("off", "on", "on", "off"):
        runs[side].append(measure(side == "on", args.n, rng))
        print(f"{side}: " + "; ".join(f"{k} p50 {v['p50']:.2f} p99 {v['p99']:.2f}" for k, v in runs[side][-1].items()),
              flush=True)
    card = card_name()
    labels = list(runs["off"][0])
    med = {side: {k: {q: float(np.median([r[k][q] for r in rs])) for q in ("p50", "p99")} for k in labels}
           for side, rs in runs.items()}
    lines = [f"# Resident blocks beside the launched path: {card}", "",
             "submit + wait + collect on lane 1, µs, median of two runs each (order off, on, on, off).", "",
             md_row(["task", "off p50", "on p50", "off p99", "on p99"]), md_row(["---"] * 5)]
    for k in labels:
        lines.append(md_row([k, f"{med['off'][k]['p50']:.2f}", f"{med['on'][k]['p50']:.2f}",
                             f"{med['off'][k]['p99']:.2f}", f"{med['on'][k]['p99']:.2f}"]))
    table = "\n".join(lines) + "\n"
    print(table)
    write_results("resident_interference", {"card": card, "env": environment(), "n": args.n, "runs": runs,
                                            "median": med}, table)


if __name__ == "__main__":
    main()
