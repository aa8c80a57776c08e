# Final: the whole suite (--resident; round trip 7 alternating repeats) at this session's code (the 10 kHz path is
# unchanged since session 18's suite; the load generator's start fixes are new to it); writes latest.json. Then the
# throughput setting at this code: twelve engines, --fanout direct, 2 s warm-up, 6 producers at 220k/s, 10 s: one
# run with the engines' stage and batch traces (where the engines' p99 goes), two plain.
source .whl/env.sh; export OUT; source bench/_run.sh
stamp=$(mktemp)
R=ab/session19; mkdir -p bench/results/$R
TAIL=45 run suite 380 python3 bench/run_all.py --resident
mps_on
E12=0,0,0,0,0,0,0,0,0,0,0,0
for sn in trace tp1 tp2; do
  extra=""; [ $sn = trace ] && extra="--trace /tmp/s19trace"
  TAIL=1 run "$sn" 150 python3 bench/scaleout.py --configs $E12 --fanout direct --processes 6 \
    --rate 220000 --warmup-s 2 --seconds 10 --batch-max 64 --engine-cpu 2 --out "$R/call3-$sn" $extra
  grep -E "^devices|per 100 ms|per second|steal|behind" "$OUT/$sn.log"
done
grep -E "engine [0-9]+ (batches|busy)|gap|p50" "$OUT/trace.log" | head -40
mps_off
tar czf "$OUT/results.tgz" $(find bench/results -newer "$stamp" -type f) "$OUT"/{suite,trace,tp1,tp2}.log 2>/dev/null
rm -f "$OUT"/*.log
