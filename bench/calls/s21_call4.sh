# Session 21, call 4: the admission margin on a noisy host (NOTES 26 left it unmeasured there). The stream (spin,
# --resident, warming at its default), server --admission-margin 3 (default), 1 and 0, in the order 3, 1, 0, 0, 1,
# 3, 3, 1: misses split into late and infeasible.
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session21; mkdir -p bench/results/$R
i=0
for k in 3 1 0 0 1 3 3 1; do
  i=$((i + 1))
  TAIL=6 run "st-k$k-$i" 60 python3 bench/stream.py --seconds 10 --spin --resident --admission-margin $k \
    --out "$R/call4-st-k$k-$i"
done
tar czf "$OUT/results.tgz" bench/results/$R/call4-* "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
