# How many engines on one GPU (MPS, loops pinned from CPU 2, --batch-max 64, 220k/s offered, 10 s): 4, 6, 5, and 6
# with 8 producers. At a fixed per-batch cost F and per-task cost c, an engine's cycle is F / (1 - c r): more engines
# lower each one's rate r (bench/NOTES.md 31).
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session16
mps_on
so() { TAIL=3 run "$1" 100 python3 bench/scaleout.py --configs "$2" --rate 220000 --processes "$3" --seconds 10 --batch-max 64 --engine-cpu 2 --trace "$OUT/traces/$1" --out "$R/call5-$1"; grep -E "^devices|after" "$OUT/$1.log" | head -3; }
so e4 0,0,0,0 6
so e6 0,0,0,0,0,0 6
so e5 0,0,0,0,0 6
so e6p8 0,0,0,0,0,0 8
mps_off
for d in $OUT/traces/*/*/; do python3 bench/batch_trace.py $d/engine.*.batches.npy | grep -E "after|batches,"; done > $OUT/batch_traces.txt 2>&1
tail -40 $OUT/batch_traces.txt
tar czf "$OUT/results.tgz" bench/results/$R/call5-* "$OUT"/*.log "$OUT"/batch_traces.txt 2>/dev/null
rm -rf $OUT/traces; rm -f "$OUT"/*.log
