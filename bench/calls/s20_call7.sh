# After the review's refactor of the accept path (one template match per frame, shared admission helpers; no
# change in behaviour): GPU tests, then the 10 kHz round trip (--resident, block and spin, one repeat) and the stream
# at this final code.
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session20; mkdir -p bench/results/$R
TAIL=3 run gpu-tests 120 python3 -m pytest -m gpu -q -p no:cacheprovider
TAIL=4 run rt 100 python3 bench/roundtrip.py --n 10000 --warm 1000 --resident --out "$R/call7-rt"
grep -E "^zmqrt|ratios" "$OUT/rt.log"
TAIL=6 run st 60 python3 bench/stream.py --seconds 10 --spin --resident --out "$R/call7-st"
tar czf "$OUT/results.tgz" bench/results/$R/call7-* "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
