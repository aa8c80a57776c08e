# Session 23, call 2: call 1's A/A null test gave round ratios of 0.82 to 1.34 (slot 0 about 10% faster than slot 1,
# cancelled by the swaps), so 6 rounds cannot show a 3% change. Base (b28407e, in _base/) against new, 40 rounds each
# (a round is about 4 s): spin, then block (default idle poll); --resident, servers unsupervised.
source .whl/env.sh; export OUT; source bench/_run.sh
mkdir -p "$OUT/r"
P="--resident --server-arg=--no-supervise --rounds 40 --n 10000 --warm 2000 --out-dir $OUT/r"
TAIL=8 run bn40-spin 280 python3 bench/paired.py --a _base --b . --spin $P --out bn40-spin
TAIL=8 run bn40-block 280 python3 bench/paired.py --a _base --b . $P --out bn40-block
tar czf "$OUT/results.tgz" "$OUT"/r "$OUT"/*.log 2>/dev/null
rm -rf "$OUT"/*.log "$OUT"/r
