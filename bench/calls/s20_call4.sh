# Call 3's suite had the 10 kHz stream at 93% missed, 90% of it DEADLINE_INFEASIBLE in its first 6 s (ok tasks'
# service to done 170 to 200 µs), where call 1 had 0.5% to 0.7% at the same server code. The stream alone, this code
# against the code before the session (base f73e3cb, in _base/), order new, base, new, base, with each server's log.
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session20; mkdir -p bench/results/$R _base/bench/results/$R
for sn in new1 base1 new2 base2; do
  side=${sn%?}
  TAIL=8 in_tree $side run "st-$sn" 90 python3 bench/stream.py --seconds 10 --spin --resident --out "$R/call4-st-$sn"
  grep -c "Latency Stats" "$OUT/st-$sn.log"; grep "Latency Stats" "$OUT/st-$sn.log" | head -3
done
tar czf "$OUT/results.tgz" bench/results/$R/call4-* _base/bench/results/$R/call4-* "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
