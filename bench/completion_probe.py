"""How the lane's launch path and its completion test combine: submit-to-seen-done per 1 KiB ``vector_add``.

Launch: the three plain driver calls, or the captured graph (``cuGraphLaunch``). Completion: blocking
``cuStreamSynchronize``, spinning on ``cuStreamQuery``, or spinning on ``cuEventQuery`` of an event recorded
after the work. Tasks are spaced 100 µs apart (the 10 kHz stream) so each starts from an idle GPU, as in the
server. A diagnostic for bench/NOTES.md, not a target.

Usage: python3 bench/completion_probe.py [--n 5000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import card_name, environment, md_row, summarize, write_results  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--gap-us", type=float, default=100.0, help="idle time between tasks (default 100)")
    ap.add_argument("--sleep", action="store_true", help="sleep through the gap (as a blocking server does) "
                    "instead of spinning")
    args = ap.parse_args()
    from cuda.bindings import driver as cu

    import zmqrt.backends.lane as lane_mod
    from zmqrt.backends.cuda import CudaBackend
    from zmqrt.cuda import Event
    from zmqrt.kernels.registry import load_registry

    backend = CudaBackend(load_registry(), lanes=2, timing=False)
    spec = backend.registry.get("vector_add")
    rng = np.random.default_rng()
    a, b = rng.standard_normal(256).astype(np.float32), rng.standard_normal(256).astype(np.float32)
    checked = spec.check([a, b], {})
    ev = Event(timing=False)
    rows = {}
    pc = time.perf_counter_ns
    for launch in ("plain", "graph"):
        lane_mod._GRAPH_AFTER_USES = 2 if launch == "graph" else 1 << 60
        lane = 0 if launch == "plain" else 1  # fresh prepared table per launch path
        ln = backend.lane(lane)
        for completion in ("sync", "stream query spin", "event query spin"):
            spans = []
            for i in range(args.n + 100):
                t_next = pc() + int(args.gap_us * 1e3)
                t0 = pc()
                backend.submit(lane, spec, [a, b], checked, False)
                if completion == "sync":
                    backend.wait(lane)
                elif completion == "stream query spin":
                    while not backend.poll(lane):
                        pass
                else:
                    cu.cuEventRecord(ev.handle, ln.stream.handle)
                    while int(cu.cuEventQuery(ev.handle)[0]) != 0:
                        pass
                spans.append(pc() - t0)
                out = backend.collect(lane)[0]
                if i == 0 and not np.allclose(out, a + b):
                    raise SystemExit(f"{launch}/{completion}: wrong output")
                if args.sleep:
                    time.sleep(max(0.0, (t_next - pc()) / 1e9))
                while pc() < t_next:
                    pass
            rows[f"{launch} / {completion}"] = summarize(spans[100:])
            r = rows[f"{launch} / {completion}"]
            print(f"{launch:6s} {completion:18s} p50 {r['p50']:6.1f} p99 {r['p99']:6.1f} us", flush=True)
    ev.close()
    backend.close()
    gap = "sleeping" if args.sleep else "spinning"
    lines = [f"# Submit to seen-done, 1 KiB vector_add, tasks {args.gap_us:.0f} µs apart ({gap}): {card_name()}", "",
             md_row(["launch / completion", "p50 µs", "p99 µs"]), md_row(["---"] * 3)]
    lines += [md_row([k, f"{v['p50']:.1f}", f"{v['p99']:.1f}"]) for k, v in rows.items()]
    name = "completion_probe-sleep" if args.sleep else "completion_probe"
    path = write_results(name, {"card": card_name(), "env": environment(), "rows_us": rows, "gap": gap},
                         "\n".join(lines) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
