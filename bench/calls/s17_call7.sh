# 1. The GPU tests at this tree. 2. Eight engines on GPU 0 under MPS (call 6's best), the fan-out's I/O threads two
# (the default) against one, order io2, io1. Loops pinned from CPU 2, 220k/s offered by 6 producers,
# --batch-max 64, 10 s.
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session17; mkdir -p bench/results/$R
TAIL=3 run gpu-tests 200 python3 -m pytest -m gpu -q -p no:cacheprovider
mps_on
for sn in e8-io2 e8-io1; do
  TAIL=1 run "$sn" 120 python3 bench/scaleout.py --configs 0,0,0,0,0,0,0,0 --rate 220000 --fanout-io-threads ${sn#e8-io} \
    --processes 6 --seconds 10 --batch-max 64 --engine-cpu 2 --out "$R/call7-$sn"
  grep -E "^devices|busy share|per 100 ms" "$OUT/$sn.log"
done
mps_off
tar czf "$OUT/results.tgz" bench/results/$R/call7-* "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
