# The final suite at this session's code (early start; service now receipt to result sent, from the server's own
# histogram of the measured tasks), then bench/task_path.py (the per-task path's CPU cost in one process, back to
# back and spaced at 10 kHz), then three more runs of the suite's throughput setting.
source .whl/env.sh; export OUT; source bench/_run.sh
stamp=$(mktemp)
R=ab/session20; mkdir -p bench/results/$R
TAIL=50 run suite 450 python3 bench/run_all.py --resident
TAIL=4 run task_path 60 python3 bench/task_path.py --n 20000 --out "$R/call3-task-path"
E12=0,0,0,0,0,0,0,0,0,0,0,0
for sn in tp1 tp2 tp3; do
  TAIL=1 run "$sn" 100 python3 bench/scaleout.py --configs $E12 --fanout direct --processes 6 --rate 220000 \
    --warmup-s 2 --seconds 10 --batch-max 64 --engine-cpu 2 --mps --out "$R/call3-$sn"
  grep -E "^devices|per 100 ms|steal" "$OUT/$sn.log"
done
tar czf "$OUT/results.tgz" $(find bench/results -newer "$stamp" -type f) "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
