# The throughput setting twice more at the final code (direct fan-out, row-by-row small batches, producers
# with the collector off): eight engines, 2 s warm-up, 6 producers at 220k/s, 10 s. Are the first seconds' bad
# windows gone where the host is calm?
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session18; mkdir -p bench/results/$R
mps_on
for sn in tp6 tp7; do
  TAIL=1 run "$sn" 100 python3 bench/scaleout.py --configs 0,0,0,0,0,0,0,0 --fanout direct --processes 6 \
    --rate 220000 --warmup-s 2 --seconds 10 --batch-max 64 --engine-cpu 2 --out "$R/call9-$sn"
  grep -E "^devices|per 100 ms|per second|steal" "$OUT/$sn.log"
done
mps_off
tar czf "$OUT/results.tgz" bench/results/$R/call9-* "$OUT"/tp[67].log 2>/dev/null
rm -f "$OUT"/*.log
