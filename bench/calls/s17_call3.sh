# Producers with a collector process each (--collector) against the usual single-thread producers: four engines on
# GPU 0 under MPS, loops pinned from CPU 2, 220k/s offered by 6 producers, --batch-max 64, 10 s; order plain,
# collector, collector, plain. Results under bench/results/ab/session17/call3-e4-*.
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session17; mkdir -p bench/results/$R
mps_on
for sn in plain-1 coll-1 coll-2 plain-2; do
  flag=""; [ "${sn%-*}" = coll ] && flag="--collector"
  TAIL=1 run "e4-$sn" 110 python3 bench/scaleout.py --configs 0,0,0,0 --rate 220000 --processes 6 \
    --seconds 10 --batch-max 64 --engine-cpu 2 $flag --out "$R/call3-e4-$sn"
  grep -E "^devices" "$OUT/e4-$sn.log"
done
mps_off
tar czf "$OUT/results.tgz" bench/results/$R/call3-* "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
