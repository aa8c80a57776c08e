# Final: the whole suite (--resident; round trip 7 alternating repeats) at this session's code, now with the peers
# against the resident path too; writes latest.json. Then the throughput setting twice at this code: eight engines,
# --fanout direct, 2 s warm-up, 6 producers at 220k/s, 10 s.
source .whl/env.sh; export OUT; source bench/_run.sh
stamp=$(mktemp)
R=ab/session18; mkdir -p bench/results/$R
TAIL=45 run suite 380 python3 bench/run_all.py --resident
mps_on
for sn in tp1 tp2; do
  TAIL=1 run "$sn" 100 python3 bench/scaleout.py --configs 0,0,0,0,0,0,0,0 --fanout direct --processes 6 \
    --rate 220000 --warmup-s 2 --seconds 10 --batch-max 64 --engine-cpu 2 --out "$R/call7-$sn"
  grep -E "^devices|per 100 ms|per second|steal" "$OUT/$sn.log"
done
mps_off
tar czf "$OUT/results.tgz" $(find bench/results -newer "$stamp" -type f) "$OUT"/{suite,tp1,tp2}.log 2>/dev/null
rm -f "$OUT"/*.log
