#!/usr/bin/env bash
# Where zmqrt's round-trip tail comes from (bench/NOTES.md 22): the round trip split per task (bench/roundtrip.py
# segments) with the server's thread report, then the same without the stats endpoint and without idle GC passes.
# Usage on the GPU machine, from the project root, after `source .whl/env.sh`.
set -u
OUT=${OUT:-/tmp/zmqrt-out}
mkdir -p "$OUT" bench/results/ab
run() { local name=$1; shift; echo "=== $name"; "$@" >"$OUT/$name.log" 2>&1; echo "exit $?";
        grep -E "RTT p50| p99.9 |zmqrt \[spin\] \||prototype \[spin\] \||thread [0-9]+ " "$OUT/$name.log" | tail -${TAIL:-40}; }
rt() { python3 bench/roundtrip.py --n 10000 --warm 1000 --modes spin --trace "$@"; }
run diag-default rt --out ab/diag-default
run diag-nostats rt --no-stats --out ab/diag-nostats
ZMQRT_GC_IDLE_THRESHOLD=1000000000 run diag-nogc rt --out ab/diag-nogc
run diag-default2 rt --out ab/diag-default2
tar czf "$OUT/results.tgz" bench/results/ab/diag-* "$OUT"/*.log 2>/dev/null
cd "$OUT" && rm -f ./*.log
