# Session 25, call 5: GPU tests and the final suite at the final code (the deferred Task build reverted; the CPU
# latency option off by default, so the server path is calls 1 to 3's).
source .whl/env.sh; export OUT; source bench/_run.sh
stamp=$(mktemp)
TAIL=3 run gpu-tests 120 python3 -m pytest -m gpu -q -p no:cacheprovider
TAIL=45 run suite 420 python3 bench/run_all.py --resident
tar czf "$OUT/results.tgz" $(find bench/results -newer "$stamp" -type f) "$OUT"/*.log 2>/dev/null
rm -rf "$OUT"/*.log
