# 1. The GPU tests at this tree. 2. --warm-us A/B again (spin, --resident, 10 kHz, round trip with the prototype),
# 5 alternating repeats per run, order w0, w20, w20, w0. 3. Four engines on GPU 0, MPS, 10 s, once more.
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session16
TAIL=3 run gpu-tests 300 python3 -m pytest -m gpu -q -p no:cacheprovider
rt() { TAIL=3 run "rt-w$1-$2" 150 python3 bench/roundtrip.py --modes spin --resident --repeat 5 --warm-us $1 --out "$R/call7-rt-w$1-$2";
       grep -E "zmqrt \[spin\]  " "$OUT/rt-w$1-$2.log" | sed -E 's/.*server p50 +([0-9.]+) p99 +([0-9.]+).*/\1\/\2/' | tr '\n' ' '; echo; }
rt 0 1; rt 20 1; rt 20 2; rt 0 2
mps_on
TAIL=1 run e4 100 python3 bench/scaleout.py --configs 0,0,0,0 --rate 220000 --processes 6 --seconds 10 --batch-max 64 --engine-cpu 2 --out $R/call7-e4
grep -E "^devices" "$OUT/e4.log"
mps_off
tar czf "$OUT/results.tgz" bench/results/$R/call7-* "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
