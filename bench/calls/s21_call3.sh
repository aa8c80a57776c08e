# Session 21, call 3: warming now keeps every recent form warm in turn (one form a pass; the template order is
# restored). GPU tests; the stream (spin, --resident: three kernels alternating) with warming off and at the default,
# alternating off, on, on, off, off, on; then the 10 kHz round trip with --resident in spin mode, off, on, on, off.
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session21; mkdir -p bench/results/$R
TAIL=3 run gpu-tests 180 python3 -m pytest -m gpu -q -p no:cacheprovider
for sn in w0a wda wdb w0b w0c wdc; do
  case $sn in w0*) opt="--keep-warm-us 0";; *) opt="";; esac
  TAIL=6 run "st-$sn" 60 python3 bench/stream.py --seconds 10 --spin --resident $opt --out "$R/call3-st-$sn"
done
for sn in w0a wda wdb w0b; do
  case $sn in w0*) opt="--keep-warm-us 0";; *) opt="";; esac
  TAIL=3 run "rt-$sn" 120 python3 bench/roundtrip.py --n 10000 --warm 1000 --modes spin --resident $opt \
    --out "$R/call3-rt-$sn"
done
tar czf "$OUT/results.tgz" bench/results/$R/call3-* "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
