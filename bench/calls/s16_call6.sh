# 1. --warm-us A/B (spin, --resident, 10 kHz): the round trip against the prototype, warm 0 / 20 / 50 / 0 / 20,
#    each 3 alternating repeats; then the 10 kHz stream, warm 0, 20, 20, 0.
# 2. Throughput again with the producers' round trip from the actual send: 6 and 4 engines, MPS, 10 s.
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session16
rt() { TAIL=4 run "rt-w$1-$2" 120 python3 bench/roundtrip.py --modes spin --resident --repeat 3 --warm-us $1 --out "$R/call6-rt-w$1-$2"; }
rt 0 1; rt 20 1; rt 50 1; rt 0 2; rt 20 2
st() { TAIL=4 run "st-w$1-$2" 60 python3 bench/stream.py --spin --resident --seconds 6 --warm-us $1 --out "$R/call6-st-w$1-$2"; }
st 0 1; st 20 1; st 20 2; st 0 2
mps_on
so() { TAIL=2 run "$1" 100 python3 bench/scaleout.py --configs "$2" --rate 220000 --processes 6 --seconds 10 --batch-max 64 --engine-cpu 2 --out "$R/call6-$1"; grep -E "^devices" "$OUT/$1.log"; }
so e6 0,0,0,0,0,0
so e4 0,0,0,0
mps_off
tar czf "$OUT/results.tgz" bench/results/$R/call6-* "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
