# Session 22, call 6: the decoder's length hint (a frame tries the template that last matched its length first)
# in the 10 kHz stream, where three forms alternate: base (the code before it, in _base/) against new, alternating
# base, new, new, base; the suite's stream settings (spin, --resident). Then one traced stream at the new code, and
# the GPU tests.
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session22; mkdir -p bench/results/$R
i=0
for side in base new new base; do
  i=$((i+1))
  TAIL=5 in_tree $side run "st-$side-$i" 90 python3 bench/stream.py --seconds 10 --spin --resident \
    --out "$R/call6-st-$side-$i"
done
[ -d _base/bench/results/$R ] && cp _base/bench/results/$R/call6-* bench/results/$R/
TAIL=5 run st-dump 90 python3 bench/stream.py --seconds 10 --spin --resident --dump "$OUT/dump" --out "$R/call6-st-dump"
TAIL=3 run gpu-tests 120 python3 -m pytest -m gpu -q -p no:cacheprovider
tar czf "$OUT/results.tgz" bench/results/$R/call6-* "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
