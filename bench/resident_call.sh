#!/usr/bin/env bash
# One GPU call for the resident-lanes branch: probe which driver calls wait for a resident block, the resident
# GPU tests, then an A/B of the round trip and the 10 kHz stream with and without --resident (order off, on, on,
# off), then all GPU tests. Usage on the GPU machine after `source .whl/env.sh`: bash bench/resident_call.sh
set -u
OUT=${OUT:-/tmp/zmqrt-out}
TAG=${TAG:-resident}
mkdir -p "$OUT" bench/results/ab
run() { local name=$1 t=$2; shift 2; echo "=== $name"; timeout -k 5 "$t" "$@" >"$OUT/$name.log" 2>&1; echo "exit $?";
        grep -v calibrated "$OUT/$name.log" | grep -v "^\s*\[server\]" | tail -"${TAIL:-12}"; }
[ "${PROBE:-0}" = 1 ] && TAIL=30 run probe 400 python3 bench/resident_probe.py --timeout 20
[ -f bench/_diag_resident.py ] && run diag 70 python3 bench/_diag_resident.py
run gpu-resident 180 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu_resident.py -x
if [ "${SKIP_AB:-0}" != 1 ]; then
  for step in off-1 on-1 on-2 off-2; do
    flag=""; [ "${step%-*}" = on ] && flag=--resident
    TAIL=25 run "rt-$step" 120 python3 bench/roundtrip.py --n 10000 --warm 1000 --modes spin --repeat 2 $flag \
      --out "ab/rt-$TAG-$step"
  done
  run stream-on 60 python3 bench/stream.py --seconds 10 --spin --resident --out "ab/stream-$TAG-on"
  run stream-off 60 python3 bench/stream.py --seconds 10 --spin --out "ab/stream-$TAG-off"
fi
[ "${SKIP_TESTS:-0}" = 1 ] || run gpu-tests 240 python3 -m pytest -m gpu -q -p no:cacheprovider
tar czf "$OUT/results.tgz" bench/results/ab/*"$TAG"* "$OUT"/*.log 2>/dev/null
