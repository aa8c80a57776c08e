# Session 21, call 6: call 5's suite put the executor at 1.28x the bare driver and the launched path at 2.17x
# PyTorch / 2.81x CuPy, where session 20's had 0.96x and 4.15x / 6.03x; session 19's suite had the same drop once
# (NOTES 34). Nothing on that path changed this session. The two benchmarks alone on a fresh machine, twice each
# (each writes bench/results/NAME-H200.*, copied under ab/session21 as call6-NAMEi).
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session21; mkdir -p bench/results/$R
for i in 1 2; do
  TAIL=8 run "ef$i" 120 python3 bench/executor_floor.py --n 20000
  for x in json md; do cp bench/results/executor_floor-H200.$x bench/results/$R/call6-ef$i-H200.$x; done
  TAIL=10 run "peers$i" 150 python3 bench/peers.py --n 20000
  for x in json md; do cp bench/results/peers-H200.$x bench/results/$R/call6-peers$i-H200.$x; done
done
tar czf "$OUT/results.tgz" bench/results/$R/call6-* "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
