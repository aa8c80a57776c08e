# How many engines and producers: eight, twelve and sixteen engines on GPU 0 under MPS (shorter batch cycles), six
# or ten producers (each lighter), direct fan-out, 2 s warm-up, 220k/s offered, 10 s. Same call, alternating.
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session19; mkdir -p bench/results/$R
mps_on
zeros() { python3 -c "print(','.join(['0']*$1))"; }
for sn in e8p6 e12p6 e16p6 e12p10 e8p6b e12p6b e16p6b; do
  e=${sn#e}; e=${e%%p*}; p=${sn#*p}; p=${p%b}
  TAIL=1 run "$sn" 120 python3 bench/scaleout.py --configs "$(zeros $e)" --fanout direct --processes "$p" \
    --rate 220000 --warmup-s 2 --seconds 10 --batch-max 64 --engine-cpu 2 --out "$R/call1-$sn"
  grep -E "^devices|ok/s|per 100 ms|steal|behind|receipt|actual send|intended" "$OUT/$sn.log" | head -14
done
mps_off
tar czf "$OUT/results.tgz" bench/results/$R/call1-* "$OUT"/*.log 2>/dev/null
