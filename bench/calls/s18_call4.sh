# The peers with zmqrt's resident path, its backend now built after CuPy's and PyTorch's first calls (session 17's
# call 10 hung when it was built before them). A hard time limit: a hang costs 4 minutes, not the session.
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session18; mkdir -p bench/results/$R
for k in 1 2; do
  TAIL=10 run peers-$k 200 python3 bench/peers.py
  for x in json md; do cp bench/results/peers-H200.$x bench/results/$R/call4-peers-$k-H200.$x; done
done
tar czf "$OUT/results.tgz" bench/results/$R/call4-* "$OUT"/peers-?.log 2>/dev/null
rm -f "$OUT"/*.log
