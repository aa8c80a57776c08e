# Session 24, call 5: GPU tests at the struct-only exact take; paired _mid (3f769b5, the release-store block)
# against this tree, 30 rounds spin, --resident (call 4 measured the regex version; this one builds in 70 µs, not
# 1 ms: the late task a round should be gone); then the final suite at this code.
source .whl/env.sh; export OUT; source bench/_run.sh
stamp=$(mktemp)
mkdir -p "$OUT/r"
TAIL=3 run gpu-tests 120 python3 -m pytest -m gpu -q -p no:cacheprovider
TAIL=8 run exact2-spin 150 python3 bench/paired.py --a _mid --b . --spin --resident --server-arg=--no-supervise \
  --rounds 30 --n 10000 --warm 2000 --out-dir "$OUT/r" --out exact2-spin
TAIL=60 run suite 380 python3 bench/run_all.py --resident
tar czf "$OUT/results.tgz" $(find bench/results -newer "$stamp" -type f) "$OUT"/r "$OUT"/*.log 2>/dev/null
rm -rf "$OUT"/*.log "$OUT"/r
