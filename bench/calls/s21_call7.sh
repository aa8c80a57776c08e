# Session 21, call 7: after the review (the floors' untimed tail shared, a test fixture): GPU tests and one short
# round trip with --resident in both modes, which runs all three floors (echo, prototype, resident prototype).
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session21; mkdir -p bench/results/$R
TAIL=3 run gpu-tests 120 python3 -m pytest -m gpu -q -p no:cacheprovider
TAIL=4 run rt 120 python3 bench/roundtrip.py --n 5000 --warm 1000 --resident --out "$R/call7-rt"
grep -E "RTT" "$OUT/rt.log" | sed 's/ lag.*//'
tar czf "$OUT/results.tgz" bench/results/$R/call7-* "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
