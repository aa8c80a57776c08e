# The producers with the garbage collector frozen and off while they send, against as before (base: the commit
# before it, unpacked in _base/), eight engines, --fanout direct, 2 s warm-up, 6 producers at 220k/s, 10 s,
# order base, new, new, base. Each run also samples the hypervisor's steal time beside the round trip's windows.
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session18; mkdir -p bench/results/$R _base/bench/results/$R
mps_on
for sn in base1 new1 new2 base2; do
  side=${sn%?}
  TAIL=1 in_tree $side run "$sn" 150 python3 bench/scaleout.py --configs 0,0,0,0,0,0,0,0 --fanout direct \
    --processes 6 --rate 220000 --warmup-s 2 --seconds 10 --batch-max 64 --engine-cpu 2 --out "$R/call6-$sn"
  grep -E "^devices|per 100 ms|per second|steal" "$OUT/$sn.log"
done
mps_off
tar czf "$OUT/results.tgz" bench/results/$R/call6-* _base/bench/results/$R/call6-* "$OUT"/{gpu-tests,base?,new?}.log 2>/dev/null
rm -f "$OUT"/*.log
