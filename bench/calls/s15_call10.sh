# Final: GPU tests and the whole suite (--resident; its round trip now 7 alternating repeats) at the final code.
source .whl/env.sh; export OUT; source bench/_run.sh
stamp=$(mktemp)
TAIL=3 run gpu-tests 200 python3 -m pytest -m gpu -q -p no:cacheprovider
TAIL=45 run suite 450 python3 bench/run_all.py --resident
tar czf "$OUT/results.tgz" $(find bench/results -newer "$stamp" -type f) "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
