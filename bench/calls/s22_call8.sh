# Session 22, call 8: cache warming of the form expected next, in the 10 kHz stream (three forms in turn), where
# warming in turn left each form cold two passes in three. Base (the code before, in _base/) against new,
# alternating base, new, new, base, each traced (--dump) for the stages of each kind; spin, --resident, as in the
# suite. GPU tests first.
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session22; mkdir -p bench/results/$R
TAIL=3 run gpu-tests 120 python3 -m pytest -m gpu -q -p no:cacheprovider
i=0
for side in base new new base; do
  i=$((i+1))
  TAIL=5 in_tree $side run "st-$side-$i" 90 python3 bench/stream.py --seconds 10 --spin --resident \
    --dump "$OUT/dump-$side-$i" --out "$R/call8-st-$side-$i"
done
[ -d _base/bench/results/$R ] && cp _base/bench/results/$R/call8-* bench/results/$R/
tar czf "$OUT/results.tgz" bench/results/$R/call8-* "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
