#!/usr/bin/env bash
# One batched GPU session: GPU tests, then every benchmark, logs and results under $OUT.
# Usage on the GPU machine (after `source .whl/env.sh`): bash bench/gpu_session.sh [quick]
set -u
OUT=${OUT:-/tmp/zmqrt-out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv >"$OUT/nvidia-smi.txt" 2>&1
step() { echo "=== $1"; shift; "$@" 2>&1 | tee "$OUT/$1.log" | tail -40; }
run() { local name=$1; shift; echo "=== $name"; "$@" >"$OUT/$name.log" 2>&1; echo "exit $?"; tail -25 "$OUT/$name.log"; }
run gpu-tests python3 -m pytest -m gpu -q -p no:cacheprovider
run call-costs python3 bench/call_costs.py
run executor-floor python3 bench/executor_floor.py --n 20000
run sched-overhead python3 bench/sched_overhead.py --n 100000
run roundtrip python3 bench/roundtrip.py --n 10000 --warm 1000
run stream python3 bench/stream.py --seconds 5
run demo python3 -m zmqrt.cli demo --json "$OUT/demo.json"
run run-all python3 bench/run_all.py --quick
cp -r bench/results "$OUT/results"
