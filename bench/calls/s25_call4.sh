# Session 25, call 4: GPU tests at the deferred Task build; paired _base (HEAD~1: the Task built before the done
# number is polled) against this tree, 30 rounds spin and 30 block, --resident; then the loop trace of this tree
# (call 3's submitted -> seen_done gap was 8 to 9 µs against the probe's 6.4: the bookkeeping overran the GPU?).
source .whl/env.sh; export OUT; source bench/_run.sh
stamp=$(mktemp)
mkdir -p "$OUT/r"
TAIL=3 run gpu-tests 120 python3 -m pytest -m gpu -q -p no:cacheprovider
TAIL=8 run defer-spin 170 python3 bench/paired.py --a _base --b . --spin --resident --server-arg=--no-supervise \
  --rounds 30 --n 10000 --warm 2000 --out-dir "$OUT/r" --out defer-spin
TAIL=8 run defer-block 170 python3 bench/paired.py --a _base --b . --resident --server-arg=--no-supervise \
  --rounds 30 --n 10000 --warm 2000 --out-dir "$OUT/r" --out defer-block
TAIL=24 run rt_trace 100 python3 bench/roundtrip.py --resident --trace --n 10000 --warm 1000 --modes spin,block
tar czf "$OUT/results.tgz" $(find bench/results -newer "$stamp" -type f) "$OUT"/r "$OUT"/*.log 2>/dev/null
rm -rf "$OUT"/*.log "$OUT"/r
