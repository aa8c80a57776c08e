# Where in a run the producers' bad windows are: eight engines, --fanout direct, as call 1, without and with a 3 s
# warm-up at the same load on the same engines (first launches and graph captures of every batch size paid before
# the measured 10 s); then 8 producers at 215k/s with the warm-up (less lag per producer).
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session18; mkdir -p bench/results/$R
mps_on
for sn in cold warm warm8p; do
  case $sn in cold) extra="--processes 6 --rate 220000";; warm) extra="--processes 6 --rate 220000 --warmup-s 3";;
              warm8p) extra="--processes 8 --rate 215000 --warmup-s 3";; esac
  TAIL=1 run "$sn" 150 python3 bench/scaleout.py --configs 0,0,0,0,0,0,0,0 --fanout direct $extra \
    --seconds 10 --batch-max 64 --engine-cpu 2 --out "$R/call2-$sn"
  grep -E "^devices|warm-up|per 100 ms|per second" "$OUT/$sn.log"
done
mps_off
tar czf "$OUT/results.tgz" bench/results/$R/call2-* "$OUT"/{cold,warm,warm8p}.log 2>/dev/null
rm -f "$OUT"/*.log
