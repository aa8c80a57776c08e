# Session 22, call 5: where the stream's late vector_adds lose their time. The suite's stream (spin, --resident,
# 10 s at 10 kHz) twice with the loop trace and the producer's records dumped (stream.py --dump), for offline
# analysis of the late tasks' stages.
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session22; mkdir -p bench/results/$R
for i in 1 2; do
  TAIL=6 run "st-dump-$i" 120 python3 bench/stream.py --seconds 10 --spin --resident --dump "$OUT/dump$i" \
    --out "$R/call5-st-dump-$i"
done
tar czf "$OUT/results.tgz" bench/results/$R/call5-* "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
