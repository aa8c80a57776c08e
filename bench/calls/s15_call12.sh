# Issue 6's duration: three engines on GPU 0, 230k/s offered by 6 producers for 10 s, at the final code.
source .whl/env.sh; export OUT; source bench/_run.sh
TAIL=6 run so-10s 100 python3 bench/scaleout.py --configs 0,0,0 --rate 230000 --processes 6 --seconds 10 --batch-max 128 --out ab/session15/call12-so-10s
tar czf "$OUT/results.tgz" bench/results/ab/session15/call12-* "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
