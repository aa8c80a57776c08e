# The fan-out's I/O threads once more: two (the new default) against three, order io2, io3, io3, io2; then two with
# collector producers. Four engines on GPU 0 under MPS, loops pinned from CPU 2, 220k/s offered by 6 producers,
# --batch-max 64, 10 s. Each run prints its round trip per 100 ms window (is the tail a few bad moments or spread?).
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session17; mkdir -p bench/results/$R
mps_on
for sn in io2-1 io3-1 io3-2 io2-2 io2coll-1; do
  n=${sn%-*}; n=${n#io}; flag=""
  case $n in *coll) n=${n%coll}; flag="--collector";; esac
  TAIL=1 run "e4-$sn" 110 python3 bench/scaleout.py --configs 0,0,0,0 --rate 220000 --fanout-io-threads $n $flag \
    --processes 6 --seconds 10 --batch-max 64 --engine-cpu 2 --out "$R/call5-e4-$sn"
  grep -E "^devices|busy share|per 100 ms" "$OUT/e4-$sn.log"
done
mps_off
tar czf "$OUT/results.tgz" bench/results/$R/call5-* "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
