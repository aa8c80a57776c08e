# Raw traces for the tail: the round trip (block and spin) and the stream (spin), --resident, at this code.
source .whl/env.sh; export OUT; source bench/_run.sh
mkdir -p bench/results/ab/session15
TAIL=3 run rt-dump 150 python3 bench/roundtrip.py --modes block,spin --resident --n 20000 --warm 2000 --trace --dump $OUT/dump --out ab/session15/call6-rt-trace
TAIL=6 run stream-dump 60 python3 bench/stream.py --seconds 10 --spin --resident --dump $OUT/dump --out ab/session15/call6-stream-trace
tar czf "$OUT/results.tgz" $OUT/dump bench/results/ab/session15/call6-* "$OUT"/*.log 2>/dev/null
rm -rf "$OUT"/*.log "$OUT"/dump
