#!/usr/bin/env bash
# Resident lanes A/B in one GPU call: the resident GPU tests, then the round trip with the loop trace and the 10 kHz
# stream, with and without --resident, in the order on, off, off, on (a drift of the host weighs on both alike).
# Usage on the GPU machine after `source .whl/env.sh`: TAG=name bash bench/resident_ab.sh; results go to
# bench/results/ab/ and the logs to $OUT.
set -u
OUT=${OUT:-/tmp/zmqrt-out}
TAG=${TAG:-resident}
mkdir -p "$OUT" bench/results/ab
source "$(dirname "$0")/_run.sh"
run gpu-resident 180 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu_resident.py -x
for step in on-1 off-1 off-2 on-2; do
  flag=""; [ "${step%-*}" = on ] && flag=--resident
  TAIL=${RT_TAIL:-14} run "rt-$step" 120 python3 bench/roundtrip.py --n 10000 --warm 1000 --modes spin --trace $flag \
    --out "ab/rt-$TAG-$step"
  [ "${STREAM:-1}" = 1 ] && run "stream-$step" 60 python3 bench/stream.py --seconds 10 --spin $flag \
    --out "ab/stream-$TAG-$step"
done
tar czf "$OUT/results.tgz" bench/results/ab/*"$TAG"* 2>/dev/null
