# Session 23, call 3: an A/A null test of bench/paired.py at 40 rounds (call 1's had 6), spin, --resident, so that
# call 2's 0.965 (29 of 40 rounds lower) has its null distribution from the same tool; then the GPU tests and the
# final suite at the final code (slot checks compiled into take, the resident submit two calls shorter).
source .whl/env.sh; export OUT; source bench/_run.sh
stamp=$(mktemp)
mkdir -p "$OUT/r"
TAIL=8 run aa40-spin 170 python3 bench/paired.py --a . --b . --spin --resident --server-arg=--no-supervise \
  --rounds 40 --n 10000 --warm 2000 --out-dir "$OUT/r" --out aa40-spin
TAIL=3 run gpu-tests 120 python3 -m pytest -m gpu -q -p no:cacheprovider
TAIL=60 run suite 375 python3 bench/run_all.py --resident
tar czf "$OUT/results.tgz" $(find bench/results -newer "$stamp" -type f) "$OUT"/r "$OUT"/*.log 2>/dev/null
rm -rf "$OUT"/*.log "$OUT"/r
