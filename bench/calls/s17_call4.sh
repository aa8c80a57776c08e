# The fan-out's ZeroMQ I/O threads, A/B: one (then the default) against two, with each
# fan-out thread's busy share printed. Four engines on GPU 0 under MPS, loops pinned from CPU 2, 220k/s offered by
# 6 producers, --batch-max 64, 10 s; order io1, io2, io2, io1. Results under bench/results/ab/session17/call4-e4-*.
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session17; mkdir -p bench/results/$R
mps_on
for sn in io1-1 io2-1 io2-2 io1-2; do
  n=${sn%-*}; n=${n#io}
  # As run, the count came from an environment variable (ZMQRT_FANOUT_IO_THREADS); it is now --fanout-io-threads.
  TAIL=1 run "e4-$sn" 110 python3 bench/scaleout.py --configs 0,0,0,0 --rate 220000 --fanout-io-threads $n \
    --processes 6 --seconds 10 --batch-max 64 --engine-cpu 2 --out "$R/call4-e4-$sn"
  grep -E "^devices|busy share" "$OUT/e4-$sn.log"
done
mps_off
tar czf "$OUT/results.tgz" bench/results/$R/call4-* "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
