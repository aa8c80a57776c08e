# Call 5's suite had the executor at 1.36x the bare driver (19.4 untimed + 2.9 check against 16.3; 0.98x to 1.04x in
# every suite before). Nothing on that path changed this session; call 5 ran its suite right after an MPS run. The
# executor floor alone, twice, on a fresh machine with no MPS.
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session19; mkdir -p bench/results/$R
for sn in ef1 ef2; do
  TAIL=12 run "$sn" 120 python3 bench/executor_floor.py --n 20000
  for ext in json md; do cp bench/results/executor_floor-*.$ext "bench/results/$R/call6-$sn.$ext"; done
done
tar czf "$OUT/results.tgz" bench/results/$R/call6-* "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
