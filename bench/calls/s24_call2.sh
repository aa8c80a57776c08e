# Session 24, call 2: the resident block's orderings (bench/resident_variants.py, RESIDENT_FENCE modes 0 to 3 and
# the unsafe 9), the GPU tests at the new default (mode 2: the mailbox read as ld.acquire.sys, one release fence
# by thread 0 after the barrier), then paired base (a2b0b5b, every thread fencing, in _base/) against new, 40
# rounds spin, --resident.
source .whl/env.sh; export OUT; source bench/_run.sh
mkdir -p "$OUT/r"
TAIL=30 run variants 150 python3 bench/resident_variants.py --n 40000 --rounds 8
cp bench/results/resident_variants-* "$OUT"/ 2>/dev/null
TAIL=3 run gpu-tests 120 python3 -m pytest -m gpu -q -p no:cacheprovider
P="--resident --server-arg=--no-supervise --n 10000 --warm 2000 --out-dir $OUT/r"
TAIL=8 run fence-spin 200 python3 bench/paired.py --a _base --b . --spin --rounds 40 $P --out fence-spin
tar czf "$OUT/results.tgz" "$OUT"/r "$OUT"/*.log 2>/dev/null
rm -rf "$OUT"/*.log "$OUT"/r
