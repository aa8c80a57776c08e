# The producers' draining while behind schedule: one result per send (the rule until now) against up to 64. Eight
# engines, --fanout direct, 2 s warm-up, 6 producers at 220k/s, 10 s; order 1, 64, 64, 1.
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session18; mkdir -p bench/results/$R
mps_on
for sn in d1a d64a d64b d1b; do
  d=${sn#d}; d=${d%?}
  TAIL=1 run "$sn" 150 python3 bench/scaleout.py --configs 0,0,0,0,0,0,0,0 --fanout direct --processes 6 \
    --rate 220000 --warmup-s 2 --drain-per-send $d --seconds 10 --batch-max 64 --engine-cpu 2 --out "$R/call3-$sn"
  grep -E "^devices|warm-up|per 100 ms|per second" "$OUT/$sn.log"
done
mps_off
tar czf "$OUT/results.tgz" bench/results/$R/call3-* "$OUT"/d*.log 2>/dev/null
rm -f "$OUT"/*.log
