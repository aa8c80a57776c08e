# The peers with zmqrt's resident path beside the launched one (bench/peers.py "zmqrt --resident"), twice.
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session17; mkdir -p bench/results/$R
for i in 1 2; do
  TAIL=12 run peers-$i 200 python3 bench/peers.py
  for x in json md; do cp bench/results/peers-H200.$x bench/results/$R/call10-peers-$i-H200.$x; done
done
tar czf "$OUT/results.tgz" bench/results/$R/call10-* "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
