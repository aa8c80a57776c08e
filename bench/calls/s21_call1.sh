# Session 21, call 1. (a) The host: clock source and the cost of a clock read from Python. (b) Cache warming
# (server --keep-warm-us 20, spin): the per-task path in one process (task_path.py, spaced 100 µs, off / on), then
# the 10 kHz round trip with --resident in spin mode, off, on, on, off, each with the floors, which now include the
# prototype with the resident GPU stage (its server side: the floor of a Python server on zmqrt's GPU path); a
# traced run with warming on; the stream, off / on. (c) The resident prototype in block mode as well.
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session21; mkdir -p bench/results/$R
{ echo "clocksource: $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
  echo "available: $(cat /sys/devices/system/clocksource/clocksource0/available_clocksource)"
  python3 --version; nproc; grep -m1 "model name" /proc/cpuinfo
  python3 -m timeit -s "import time; f = time.monotonic_ns" "f()"
  python3 -m timeit -s "import time; f = time.perf_counter_ns" "f()"; } > "$OUT/host.log" 2>&1; cat "$OUT/host.log"
for w in 0 20; do
  TAIL=3 run "tp-w$w" 60 python3 bench/task_path.py --n 10000 --keep-warm-us $w --out "$R/call1-tp-w$w"
done
for sn in w0a w20a w20b w0b; do
  w=${sn#w}; w=${w%?}
  TAIL=12 run "rt-$sn" 120 python3 bench/roundtrip.py --n 10000 --warm 1000 --modes spin --resident \
    --keep-warm-us $w --out "$R/call1-rt-$sn"
done
TAIL=14 run rt-trace 120 python3 bench/roundtrip.py --n 10000 --warm 1000 --modes spin --resident --trace \
  --keep-warm-us 20 --out "$R/call1-rt-trace-w20"
TAIL=10 run rt-block 150 python3 bench/roundtrip.py --n 10000 --warm 1000 --modes block --resident --repeat 2 \
  --out "$R/call1-rt-block"
for w in 0 20; do
  TAIL=6 run "st-w$w" 60 python3 bench/stream.py --seconds 10 --spin --resident --keep-warm-us $w \
    --out "$R/call1-st-w$w"
done
tar czf "$OUT/results.tgz" bench/results/$R/call1-* "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
