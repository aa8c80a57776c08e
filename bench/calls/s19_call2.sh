# GPU tests at the cheaper small bulk batch (BulkForm.fits first, row-by-row result encoding under 8 rows, fewer
# numpy calls per batch); then that change against the code before it (base: 52ad592, unpacked in _base/), twelve
# engines on GPU 0 under MPS (call 1's better count), --fanout direct, 2 s warm-up, 6 producers at 220k/s, 10 s,
# order base, new, new, base, each with the hypervisor's steal sampled beside the round trip's windows.
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session19; mkdir -p bench/results/$R _base/bench/results/$R
[ "${SKIP_TESTS:-0}" = 1 ] || TAIL=3 run gpu-tests 300 python3 -m pytest -m gpu -q -p no:cacheprovider
mps_on
E12=0,0,0,0,0,0,0,0,0,0,0,0
for sn in base1 new1 new2 base2; do
  side=${sn%?}
  TAIL=1 in_tree $side run "$sn" 150 python3 bench/scaleout.py --configs $E12 --fanout direct \
    --processes 6 --rate 220000 --warmup-s 2 --seconds 10 --batch-max 64 --engine-cpu 2 --out "$R/call2-$sn"
  grep -E "^devices|per 100 ms|per second|steal|behind" "$OUT/$sn.log"
done
mps_off
tar czf "$OUT/results.tgz" bench/results/$R/call2-* _base/bench/results/$R/call2-* "$OUT"/{gpu-tests,base?,new?}.log 2>/dev/null
rm -f "$OUT"/*.log
