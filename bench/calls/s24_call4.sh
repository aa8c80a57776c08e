# Session 24, call 4: GPU tests at the exact-layout take; paired _mid (3f769b5, the release-store block) against
# this tree (the exact-layout take), 40 rounds spin and 30 rounds block, --resident.
source .whl/env.sh; export OUT; source bench/_run.sh
mkdir -p "$OUT/r"
TAIL=3 run gpu-tests 120 python3 -m pytest -m gpu -q -p no:cacheprovider
P="--resident --server-arg=--no-supervise --n 10000 --warm 2000 --out-dir $OUT/r"
TAIL=8 run exact-spin 200 python3 bench/paired.py --a _mid --b . --spin --rounds 40 $P --out exact-spin
TAIL=8 run exact-block 160 python3 bench/paired.py --a _mid --b . --rounds 30 $P --out exact-block
tar czf "$OUT/results.tgz" "$OUT"/r "$OUT"/*.log 2>/dev/null
rm -rf "$OUT"/*.log "$OUT"/r
