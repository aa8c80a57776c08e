# More engines on GPU 0 under MPS with the fan-out's two I/O threads: six, eight, and six with collector producers.
# Loops pinned from CPU 2, 220k/s offered by 6 producers, --batch-max 64, 10 s. Each run prints its round trip per
# 100 ms window and the fan-out threads' busy share.
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session17; mkdir -p bench/results/$R
mps_on
for sn in e6 e8 e6coll; do
  case $sn in e6) cfg=0,0,0,0,0,0; flag="";; e8) cfg=0,0,0,0,0,0,0,0; flag="";; e6coll) cfg=0,0,0,0,0,0; flag="--collector";; esac
  TAIL=1 run "$sn" 120 python3 bench/scaleout.py --configs $cfg --rate 220000 --fanout-io-threads 2 $flag \
    --processes 6 --seconds 10 --batch-max 64 --engine-cpu 2 --out "$R/call6-$sn"
  grep -E "^devices|busy share|per 100 ms" "$OUT/$sn.log"
done
mps_off
tar czf "$OUT/results.tgz" bench/results/$R/call6-* "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
