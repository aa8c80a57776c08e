# How much of the producers' tail is the producers' own: six producer processes against ten at the same 220k/s (each
# ten's 22k/s against 36.7k/s: less time in its send loop before it reads a result), twelve engines on GPU 0 under
# MPS (scaleout.py --mps), --fanout direct, 2 s warm-up, 10 s; order p6, p10, p10, p6.
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session19; mkdir -p bench/results/$R
E12=0,0,0,0,0,0,0,0,0,0,0,0
for sn in p6a p10a p10b p6b; do
  p=${sn#p}; p=${p%?}
  TAIL=1 run "$sn" 150 python3 bench/scaleout.py --configs $E12 --fanout direct --processes "$p" --rate 220000 \
    --warmup-s 2 --seconds 10 --batch-max 64 --engine-cpu 2 --mps --out "$R/call8-$sn"
  grep -E "^devices|per 100 ms|steal" "$OUT/$sn.log"
done
tar czf "$OUT/results.tgz" bench/results/$R/call8-* "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
