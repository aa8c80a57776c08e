# Session 23, call 5: the result encode without a per-result list and with its own packer, the done word as a Python
# int, two calls inline before the GPU starts. GPU tests, then paired base (fdc1f00, call 4's suite code, in _base/)
# against new: 40 rounds spin, 30 rounds block (the device time left), --resident.
source .whl/env.sh; export OUT; source bench/_run.sh
mkdir -p "$OUT/r"
TAIL=3 run gpu-tests 100 python3 -m pytest -m gpu -q -p no:cacheprovider
P="--resident --server-arg=--no-supervise --n 10000 --warm 2000 --out-dir $OUT/r"
TAIL=8 run bn5-spin 170 python3 bench/paired.py --a _base --b . --spin --rounds 40 $P --out bn5-spin
TAIL=8 run bn5-block 130 python3 bench/paired.py --a _base --b . --rounds 30 $P --out bn5-block
tar czf "$OUT/results.tgz" "$OUT"/r "$OUT"/*.log 2>/dev/null
rm -rf "$OUT"/*.log "$OUT"/r
