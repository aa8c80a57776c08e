# Session 23, call 1: bench/paired.py on the 2-GPU host (both arms at once, each on its own GPU and CPUs, placements
# swapped every round). First an A/A null test (the noise floor of a round's ratio), then base (b28407e, in _base/)
# against new (the slot checks compiled into take, the resident submit two calls shorter), spin and block
# (default idle poll), --resident as in the suite, servers unsupervised as roundtrip.py runs them. GPU tests first.
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session23/call1; mkdir -p "$OUT/r"
nvidia-smi --query-gpu=index,name --format=csv,noheader
TAIL=3 run gpu-tests 150 python3 -m pytest -m gpu -q -p no:cacheprovider
P="--resident --server-arg=--no-supervise --rounds 6 --n 10000 --warm 2000 --out-dir $OUT/r"
TAIL=16 run aa-spin 150 python3 bench/paired.py --a . --b . --spin $P --out aa-spin
TAIL=16 run bn-spin 150 python3 bench/paired.py --a _base --b . --spin $P --out bn-spin
TAIL=16 run bn-block 150 python3 bench/paired.py --a _base --b . $P --out bn-block
tar czf "$OUT/results.tgz" "$OUT"/r "$OUT"/*.log 2>/dev/null
rm -rf "$OUT"/*.log "$OUT"/r
