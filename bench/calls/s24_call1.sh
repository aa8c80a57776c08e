# Session 24, call 1: the resident block's layouts against each other (bench/resident_variants.py): one poller
# thread (the current layout) against 1, 2, 4, 8 and 16 warps that only poll, and fence.acq_rel.sys builds; the
# block's own split from clock64 stamps. Then the GPU tests (at the current layout, POLLER_WARPS = 0).
source .whl/env.sh; export OUT; source bench/_run.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv
TAIL=40 run variants 200 python3 bench/resident_variants.py --n 40000 --rounds 8 --acqrel --pollers 0,1,2,4,8,16
cp bench/results/resident_variants-* "$OUT"/ 2>/dev/null
TAIL=3 run gpu-tests 120 python3 -m pytest -m gpu -q -p no:cacheprovider
tar czf "$OUT/results.tgz" "$OUT"/*.log 2>/dev/null
rm -rf "$OUT"/*.log
