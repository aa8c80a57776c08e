# Session 21, call 5: the final code (cache warming on by default with --spin, admission margin 1). GPU tests, the
# suite (its round trip now also runs the prototype with the resident GPU stage), and one traced round trip in spin
# mode for the stage split with warming.
source .whl/env.sh; export OUT; source bench/_run.sh
stamp=$(mktemp)
R=ab/session21; mkdir -p bench/results/$R
TAIL=3 run gpu-tests 120 python3 -m pytest -m gpu -q -p no:cacheprovider
TAIL=60 run suite 470 python3 bench/run_all.py --resident
TAIL=14 run rt-trace 90 python3 bench/roundtrip.py --n 10000 --warm 1000 --modes spin --resident --trace \
  --out "$R/call5-rt-trace"
tar czf "$OUT/results.tgz" $(find bench/results -newer "$stamp" -type f) "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
