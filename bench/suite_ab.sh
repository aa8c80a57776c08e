#!/usr/bin/env bash
# The whole suite twice in one GPU call: without --resident (its per-benchmark files and report saved under
# $OUT/launched/), then with --resident (written to bench/results as usual, latest.json included), then two more
# 10 kHz streams of each, alternating. Usage on the GPU machine after `source .whl/env.sh`:
#   bash bench/suite_ab.sh            # logs and the launched suite's files under $OUT
set -u
OUT=${OUT:-/tmp/zmqrt-out}
mkdir -p "$OUT/launched" bench/results/ab
source "$(dirname "$0")/_run.sh"
[ "${SKIP_TESTS:-0}" = 1 ] || run gpu-tests 240 python3 -m pytest -m gpu -q -p no:cacheprovider
stamp=$(mktemp); TAIL=40 run suite-launched 280 python3 bench/run_all.py --out-dir "$OUT/launched"
find bench/results -maxdepth 1 -name '*.json' -newer "$stamp" -exec cp {} "$OUT/launched/" \;
find bench/results -maxdepth 1 -name '*.md' -newer "$stamp" -exec cp {} "$OUT/launched/" \;
TAIL=40 run suite-resident 280 python3 bench/run_all.py --resident
for i in 1 2; do
  run "stream-launched-$i" 60 python3 bench/stream.py --seconds 10 --spin --out "ab/stream-suite-launched-$i"
  run "stream-resident-$i" 60 python3 bench/stream.py --seconds 10 --spin --resident --out "ab/stream-suite-resident-$i"
done
tar czf "$OUT/results.tgz" $(find bench/results -type f -newer "$stamp") "$OUT/launched" 2>/dev/null; rm -rf "$stamp" "$OUT/launched"
