# Session 21, call 8: the decoder's template match and input views in one generated function (FrameTemplate.take,
# with short str ids decoded inline), against the code before it (base: dbee1f8, unpacked in _base/). GPU tests;
# the per-task path in one process (task_path.py, warming on), base, new; the 10 kHz round trip with --resident,
# block and spin, in the order base, new, new, base.
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session21; mkdir -p bench/results/$R _base/bench/results/$R
TAIL=3 run gpu-tests 120 python3 -m pytest -m gpu -q -p no:cacheprovider
for side in base new; do
  TAIL=3 in_tree $side run "tp-$side" 60 python3 bench/task_path.py --n 10000 --keep-warm-us 20 \
    --out "$R/call8-tp-$side"
done
for sn in base1 new1 new2 base2; do
  side=${sn%?}
  TAIL=4 in_tree $side run "rt-$sn" 120 python3 bench/roundtrip.py --n 10000 --warm 1000 --resident \
    --out "$R/call8-rt-$sn"
  grep -E "^zmqrt|^prototype" "$OUT/rt-$sn.log" | sed 's/RTT.*server p50 */server p50 /;s/ us | lost.*//'
done
tar czf "$OUT/results.tgz" bench/results/$R/call8-* _base/bench/results/$R/call8-* "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
