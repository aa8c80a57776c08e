# Session 26, call 6: the suite's throughput setting (twelve engines on GPU 0 under MPS, bulk batches, 220k/s
# offered) with one resident lane per engine (12 polling blocks; session 20 tried four lanes each, 48 blocks, and
# found it slower) and with one launched lane per engine, against the setting as is: A B C C B A.
source .whl/env.sh; export OUT; source bench/_run.sh
E=$(python3 -c "import os; print(','.join(['0'] * max(1, min(12, os.cpu_count() - 20))))")
common=(--configs "$E" --fanout direct --processes 6 --engine-cpu 2 --mps --rate 220000 --seconds 10 --warmup-s 2
        --batch-max 64)
for arm in bulk res1 lane1 lane1 res1 bulk; do
  case $arm in bulk) extra=();; res1) extra=(--lanes 1 --resident);; lane1) extra=(--lanes 1);; esac
  TAIL=9 run "tp_${arm}_$RANDOM" 90 python3 bench/scaleout.py "${common[@]}" "${extra[@]}" --out "tp6-$arm-$RANDOM"
done
tar czf "$OUT/results.tgz" bench/results/tp6-* "$OUT"/tp_*.log 2>/dev/null
rm -rf "$OUT"/*.log
