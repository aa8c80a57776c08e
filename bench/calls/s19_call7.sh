# The final code's throughput setting three more times on call 6's machine (twelve engines on GPU 0 under MPS
# started by scaleout.py --mps, as the suite runs it; --fanout direct, 2 s warm-up, 6 producers at 220k/s, 10 s).
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session19; mkdir -p bench/results/$R
E12=0,0,0,0,0,0,0,0,0,0,0,0
for sn in tp1 tp2 tp3; do
  TAIL=1 run "$sn" 150 python3 bench/scaleout.py --configs $E12 --fanout direct --processes 6 --rate 220000 \
    --warmup-s 2 --seconds 10 --batch-max 64 --engine-cpu 2 --mps --out "$R/call7-$sn"
  grep -E "^MPS|^devices|per 100 ms|steal" "$OUT/$sn.log"
done
tar czf "$OUT/results.tgz" bench/results/$R/call7-* "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
