# Session 22, call 7: the final suite at the final code (idle poll, length hint), GPU tests first.

source .whl/env.sh; export OUT; source bench/_run.sh
stamp=$(mktemp)
R=ab/session22; mkdir -p bench/results/$R
TAIL=3 run gpu-tests 120 python3 -m pytest -m gpu -q -p no:cacheprovider
TAIL=60 run suite 470 python3 bench/run_all.py --resident
tar czf "$OUT/results.tgz" $(find bench/results -newer "$stamp" -type f) "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
