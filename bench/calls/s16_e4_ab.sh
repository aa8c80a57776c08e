# A/B runs of four engines on GPU 0 under MPS, loops pinned from CPU 2, 220k/s offered by 6 producers, --batch-max
# 64, 10 s: bash bench/calls/s16_e4_ab.sh CALL SIDE-N... (SIDE base: the commit unpacked in _base/; new: this tree),
# in the order given. Results under bench/results/ab/session16/CALL-e4-SIDE-N*.
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session16; CALL=$1; shift
mps_on
for sn in "$@"; do
  in_tree "${sn%-*}" mkdir -p "bench/results/$R"
  TAIL=1 in_tree "${sn%-*}" run "e4-$sn" 100 python3 bench/scaleout.py --configs 0,0,0,0 --rate 220000 --processes 6 \
    --seconds 10 --batch-max 64 --engine-cpu 2 --out "$R/$CALL-e4-$sn"
  grep -E "^devices" "$OUT/e4-$sn.log"
done
mps_off
tar czf "$OUT/results.tgz" bench/results/$R/"$CALL"-* _base/bench/results/$R/"$CALL"-* "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
