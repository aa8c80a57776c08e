#!/usr/bin/env bash
# A/B in one call (bench/NOTES.md 16): the loop's CPU cleared of the process's other threads, spin against block,
# and the stream with and without separate cores; then engines sharing one GPU at a load they can carry.
# Usage on the GPU machine (after `source .whl/env.sh`): bash bench/ab_placement.sh
set -u
OUT=${OUT:-/tmp/zmqrt-out}
mkdir -p "$OUT" bench/results/ab
run() { local name=$1; shift; echo "=== $name"; "$@" >"$OUT/$name.log" 2>&1; echo "exit $?"; grep -v calibrated "$OUT/$name.log" | tail -${TAIL:-14}; }
run gpu-tests python3 -m pytest -m gpu -q -p no:cacheprovider
TAIL=40 run roundtrip-trace python3 bench/roundtrip.py --n 10000 --warm 1000 --modes block,spin --trace
run stream-pinned-block python3 bench/stream.py --seconds 10 --out ab/stream-pinned-block
run stream-pinned-spin python3 bench/stream.py --seconds 10 --spin --out ab/stream-pinned-spin
run stream-shared-block python3 bench/stream.py --seconds 10 --no-pin --out ab/stream-shared-block
run scaleout-engines python3 bench/scaleout.py --configs "0;0,0;0,0,0,0" --rate 60000 --processes 4 --seconds 5 \
    --out scaleout-engines
tar czf "$OUT/results.tgz" bench/results "$OUT"/*.log 2>/dev/null
cd "$OUT" && rm -f ./*.log
