# Session 21, call 10: the stream (spin, --resident) with warming off and at its default, now that the admission
# margin is 1 (calls 1 to 3's stream A/B drowned in K=3's rejection bursts): off, on, on, off.
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session21; mkdir -p bench/results/$R
for sn in w0a wda wdb w0b; do
  case $sn in w0*) opt="--keep-warm-us 0";; *) opt="";; esac
  TAIL=6 run "st-$sn" 45 python3 bench/stream.py --seconds 10 --spin --resident $opt --out "$R/call10-st-$sn"
done
tar czf "$OUT/results.tgz" bench/results/$R/call10-* "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
