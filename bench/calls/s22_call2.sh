# Session 22, call 2: the idle poll (server --idle-poll-us, default 200 µs without --spin). GPU tests at the new code,
# then block-mode round trips at 10 kHz with --resident, idle poll 0 (the loop sleeps in recv at once, as before)
# against the default 200 (it polls, and warms, between tasks), alternating 0, 200, 200, 0, 0, 200; then the 10 kHz
# stream in block mode, 0, 200, 200, 0.
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session22; mkdir -p bench/results/$R
TAIL=3 run gpu-tests 120 python3 -m pytest -m gpu -q -p no:cacheprovider
i=0
for ip in 0 200 200 0 0 200; do
  i=$((i+1))
  TAIL=3 run "rt-ip$ip-$i" 90 python3 bench/roundtrip.py --n 10000 --warm 1000 --modes block --resident \
    --idle-poll-us $ip --out "$R/call2-rt-ip$ip-$i"
done
i=0
for ip in 0 200 200 0; do
  i=$((i+1))
  TAIL=4 run "st-ip$ip-$i" 90 python3 bench/stream.py --seconds 10 --idle-poll-us $ip --out "$R/call2-st-ip$ip-$i"
done
tar czf "$OUT/results.tgz" bench/results/$R/call2-* "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
