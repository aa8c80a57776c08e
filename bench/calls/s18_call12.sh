# The throughput setting once more, with the producers also starting their schedules together (each started
# after its own encoding before: 10 s of load spread over 11.4 s in call 11). Eight
# engines, direct, 2 s warm-up, 6 producers at 220k/s, 10 s.
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session18; mkdir -p bench/results/$R
mps_on
for sn in tp10; do
  TAIL=1 run "$sn" 100 python3 bench/scaleout.py --configs 0,0,0,0,0,0,0,0 --fanout direct --processes 6 \
    --rate 220000 --warmup-s 2 --seconds 10 --batch-max 64 --engine-cpu 2 --out "$R/call12-$sn"
  grep -E "^devices|per 100 ms|per second|steal|behind" "$OUT/$sn.log"
done
mps_off
tar czf "$OUT/results.tgz" bench/results/$R/call12-* "$OUT"/tp10.log 2>/dev/null
rm -f "$OUT"/*.log
