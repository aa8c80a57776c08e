# After the suite (call 8) met a noisy moment (stream 1.2%, CuPy 2.95x): the stream twice and the peers once more,
# by their own scripts, to see the host's spread.
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session17; mkdir -p bench/results/$R
TAIL=4 run stream-1 60 python3 bench/stream.py --spin --resident --out $R/call9-stream-1
TAIL=8 run peers 200 python3 bench/peers.py
for x in json md; do cp bench/results/peers-H200.$x bench/results/$R/call9-peers-H200.$x; done
TAIL=4 run stream-2 60 python3 bench/stream.py --spin --resident --out $R/call9-stream-2
tar czf "$OUT/results.tgz" bench/results/$R/call9-* "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
