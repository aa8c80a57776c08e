#!/usr/bin/env bash
# One batched GPU session: GPU tests, per-call costs, the whole bench suite, the demo. Logs under $OUT and the
# results as one archive (the device tool returns a limited number of files).
# Usage on the GPU machine (after `source .whl/env.sh`): bash bench/gpu_session.sh [--quick]
set -u
OUT=${OUT:-/tmp/zmqrt-out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv >"$OUT/nvidia-smi.txt" 2>&1
run() { local name=$1; shift; echo "=== $name"; "$@" >"$OUT/$name.log" 2>&1; echo "exit $?"; grep -v calibrated "$OUT/$name.log" | tail -30; }
run gpu-tests python3 -m pytest -m gpu -q -p no:cacheprovider
run call-costs python3 bench/call_costs.py
run run-all python3 bench/run_all.py "$@"
[ -n "${WITH_PROBE:-}" ] && run completion-probe python3 bench/completion_probe.py --n 3000
run roundtrip-trace python3 bench/roundtrip.py --n 10000 --warm 1000 --modes block,spin --trace
if [ "$(nvidia-smi -L | wc -l)" -ge 2 ]; then run scaleout python3 bench/scaleout.py; fi
# The stream with batching on, same mode as the suite's (spin, pinned): what batching costs the stream.
run stream-batch32 python3 bench/stream.py --seconds 10 --spin --batch-max 32 --out ab/stream-spin-batch32
# One engine, batching off and on, offered twice what it can do unbatched (bench/NOTES.md 17).
for bm in 1 32; do
  run throughput-batch$bm python3 bench/scaleout.py --configs 0 --rate 40000 --processes 4 --seconds 5 \
      --batch-max $bm --out ab/throughput-batch$bm
done
# Several engines sharing one GPU (issue 6's "several ingest workers"), offered 200k tasks/s by 8 producers.
run scaleout-engines python3 bench/scaleout.py --configs "0,0,0,0;0,0,0,0,0,0;0,0,0,0,0,0,0,0" --rate 200000 --processes 8 \
    --seconds 5 --out scaleout-engines
run demo python3 -m zmqrt.cli demo --json "$OUT/demo.json"
tar czf "$OUT/results.tgz" bench/results "$OUT"/*.log "$OUT"/demo.json 2>/dev/null
cd "$OUT" && rm -f ./*.log ./demo.json
