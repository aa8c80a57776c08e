# Issue 3's figure at this code: the round trip against the prototype and the echo, 7 alternating repeats per
# mode with --resident (the suite's setting), then 3 in block mode without it.
source .whl/env.sh; export OUT; source bench/_run.sh
TAIL=4 run rt7 400 python3 bench/roundtrip.py --modes block,spin --resident --n 10000 --warm 1000 --repeat 7 --out ab/session15/call7-rt-repeat7
TAIL=3 run rt3-launched 150 python3 bench/roundtrip.py --modes block --n 10000 --warm 1000 --repeat 3 --out ab/session15/call7-rt-launched-repeat3
tar czf "$OUT/results.tgz" bench/results/ab/session15/call7-* "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
