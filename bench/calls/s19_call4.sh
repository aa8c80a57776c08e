# The throughput setting at the final code (row checks compiled per form, after call 3): twelve engines on GPU 0
# under MPS, --fanout direct, 2 s warm-up, 6 producers at 220k/s, 10 s, three runs; then the GPU tests.
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session19; mkdir -p bench/results/$R
mps_on
E12=0,0,0,0,0,0,0,0,0,0,0,0
for sn in tp1 tp2 tp3; do
  TAIL=1 run "$sn" 150 python3 bench/scaleout.py --configs $E12 --fanout direct --processes 6 \
    --rate 220000 --warmup-s 2 --seconds 10 --batch-max 64 --engine-cpu 2 --out "$R/call4-$sn"
  grep -E "^devices|per 100 ms|per second|steal|behind" "$OUT/$sn.log"
done
mps_off
TAIL=3 run gpu-tests 300 python3 -m pytest -m gpu -q -p no:cacheprovider
tar czf "$OUT/results.tgz" bench/results/$R/call4-* "$OUT"/{tp1,tp2,tp3,gpu-tests}.log 2>/dev/null
rm -f "$OUT"/*.log
