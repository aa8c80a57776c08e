# Session 21, call 2: warming extended to the input copy (an idle lane's slot, nothing started) and on by default
# with --spin (20 µs). GPU tests; then the 10 kHz round trip with --resident in spin mode at --keep-warm-us 0, 20
# and 10, alternating (0, 20, 10, 20, 0, 10), each with its floors; a traced run at the default; the per-task path
# in one process, off / on; the stream (spin, --resident), off, on, on, off.
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session21; mkdir -p bench/results/$R
TAIL=3 run gpu-tests 180 python3 -m pytest -m gpu -q -p no:cacheprovider
for sn in w0a w20a w10a w20b w0b w10b; do
  w=${sn#w}; w=${w%?}
  TAIL=3 run "rt-$sn" 120 python3 bench/roundtrip.py --n 10000 --warm 1000 --modes spin --resident \
    --keep-warm-us $w --out "$R/call2-rt-$sn"
done
TAIL=14 run rt-trace 120 python3 bench/roundtrip.py --n 10000 --warm 1000 --modes spin --resident --trace \
  --out "$R/call2-rt-trace"
for w in 0 20; do
  TAIL=3 run "tp-w$w" 60 python3 bench/task_path.py --n 10000 --keep-warm-us $w --out "$R/call2-tp-w$w"
done
for sn in w0a w20a w20b w0b; do
  w=${sn#w}; w=${w%?}
  TAIL=6 run "st-$sn" 60 python3 bench/stream.py --seconds 10 --spin --resident --keep-warm-us $w \
    --out "$R/call2-st-$sn"
done
tar czf "$OUT/results.tgz" bench/results/$R/call2-* "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
