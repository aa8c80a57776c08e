# GPU tests at the early start (a templated task on a free lane submitted before its Task is built, 532fd07); then
# that change against the code before it (base: f73e3cb, unpacked in _base/): 10 kHz round trip with --resident,
# block and spin, two alternating repeats per run, and the 10 kHz stream with --resident (spin), in the order base,
# new, new, base.
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session20; mkdir -p bench/results/$R _base/bench/results/$R
[ "${SKIP_TESTS:-0}" = 1 ] || TAIL=3 run gpu-tests 300 python3 -m pytest -m gpu -q -p no:cacheprovider
for sn in base1 new1 new2 base2; do
  side=${sn%?}
  TAIL=16 in_tree $side run "rt-$sn" 200 python3 bench/roundtrip.py --n 10000 --warm 1000 --repeat 2 --resident \
    --out "$R/call1-rt-$sn"
  TAIL=6 in_tree $side run "st-$sn" 90 python3 bench/stream.py --seconds 10 --spin --resident --out "$R/call1-st-$sn"
done
tar czf "$OUT/results.tgz" bench/results/$R/call1-* _base/bench/results/$R/call1-* "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
