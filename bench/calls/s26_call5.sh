# Session 26, call 5: the two-GPU round trip again, 5 alternating repeats (direct fan-out), to firm up call 2's
# three: zmqrt serve --devices 0,1 beside the one-engine zmqrt and the floors at 10 kHz.
source .whl/env.sh; export OUT; source bench/_run.sh
TAIL=12 run rt_direct5 300 python3 bench/roundtrip.py --resident --devices 0,1 --fanout direct --n 10000 \
  --warm 1000 --repeat 5 --out roundtrip-devices-direct5
tar czf "$OUT/results.tgz" bench/results/roundtrip-devices-direct5-* "$OUT"/rt_direct5.log 2>/dev/null
rm -rf "$OUT"/*.log
