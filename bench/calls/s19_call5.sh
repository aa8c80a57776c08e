# The compiled row checks (this code) against the code before them (base: 423d012, call 3's code), twelve
# engines on GPU 0 under MPS, --fanout direct, 2 s warm-up, 6 producers at 220k/s, 10 s, order base, new, new,
# base. Then the final suite at this code, now with its several-engine throughput run (writes latest.json).
source .whl/env.sh; export OUT; source bench/_run.sh
stamp=$(mktemp)
R=ab/session19; mkdir -p bench/results/$R _base/bench/results/$R
mps_on
E12=0,0,0,0,0,0,0,0,0,0,0,0
for sn in base1 new1 new2 base2; do
  side=${sn%?}
  TAIL=1 in_tree $side run "$sn" 150 python3 bench/scaleout.py --configs $E12 --fanout direct \
    --processes 6 --rate 220000 --warmup-s 2 --seconds 10 --batch-max 64 --engine-cpu 2 --out "$R/call5-$sn"
  grep -E "^devices|per 100 ms|steal" "$OUT/$sn.log"
done
mps_off
TAIL=50 run suite 420 python3 bench/run_all.py --resident
tar czf "$OUT/results.tgz" $(find bench/results _base/bench/results -newer "$stamp" -type f) "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
