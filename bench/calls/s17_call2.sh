# 1. Hidden hyperthread pairs of this microVM's vCPUs (bench/smt_probe.py) for the loop's CPU 31, its I/O CPU 30
# and CPU 0. 2. Why zmqrt's 10 kHz service p50 differs between server processes (call 1: 21.1, 29.6, 25.0 µs):
# three repeats of the spin, --resident round trip, 40,000 tasks each, with the loop trace and per-task dumps, to
# see whether a slow process is slow for its whole life and in which stage.
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session17
TAIL=4 run smt 120 python3 bench/smt_probe.py --target 31 --target 30 --target 0 --out $R/call2-smt
TAIL=3 run rt-trace 300 python3 bench/roundtrip.py --modes spin --resident --repeat 3 --n 40000 --trace --dump "$OUT/dump" --out "$R/call2-rt-trace"
grep -E "zmqrt \[spin\]  |prototype \[spin\]  " "$OUT/rt-trace.log"
tar czf "$OUT/results.tgz" bench/results/$R/call2-* "$OUT"/*.log "$OUT/dump" 2>/dev/null
rm -rf "$OUT"/*.log "$OUT/dump"
