# Call 3's suite met a slow host (round trip 101 µs against 75 to 82 in earlier suites, the stream collapsed for its
# first 6 s, three throughput runs at 1.4 to 3.4 ms p99). The final code again: GPU tests, the suite, and two more
# runs of the suite's throughput setting.
source .whl/env.sh; export OUT; source bench/_run.sh
stamp=$(mktemp)
R=ab/session20; mkdir -p bench/results/$R
TAIL=3 run gpu-tests 300 python3 -m pytest -m gpu -q -p no:cacheprovider
TAIL=50 run suite 450 python3 bench/run_all.py --resident
E12=0,0,0,0,0,0,0,0,0,0,0,0
for sn in tp1 tp2; do
  TAIL=1 run "$sn" 100 python3 bench/scaleout.py --configs $E12 --fanout direct --processes 6 --rate 220000 \
    --warmup-s 2 --seconds 10 --batch-max 64 --engine-cpu 2 --mps --out "$R/call5-$sn"
  grep -E "^devices|per 100 ms|steal" "$OUT/$sn.log"
done
tar czf "$OUT/results.tgz" $(find bench/results -newer "$stamp" -type f) "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
