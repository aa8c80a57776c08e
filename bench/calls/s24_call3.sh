# Session 24, call 3: GPU tests at a4ceff1; paired base (a2b0b5b, in _base/) against the release-store block
# (3f769b5, in _mid/), then _mid against the spin_done loop (this tree); 40 rounds each, spin, --resident.
source .whl/env.sh; export OUT; source bench/_run.sh
mkdir -p "$OUT/r"
TAIL=3 run gpu-tests 120 python3 -m pytest -m gpu -q -p no:cacheprovider
P="--resident --server-arg=--no-supervise --n 10000 --warm 2000 --out-dir $OUT/r"
TAIL=8 run release-spin 200 python3 bench/paired.py --a _base --b _mid --spin --rounds 40 $P --out release-spin
TAIL=8 run spindone-spin 200 python3 bench/paired.py --a _mid --b . --spin --rounds 40 $P --out spindone-spin
tar czf "$OUT/results.tgz" "$OUT"/r "$OUT"/*.log 2>/dev/null
rm -rf "$OUT"/*.log "$OUT"/r
