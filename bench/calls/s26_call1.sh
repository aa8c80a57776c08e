# Session 26, call 1: can twelve engines serve 220k tasks/s task by task on resident lanes (no batching, one lane
# each) with a shorter tail than the suite's bulk setting? Arms in the order A B C C B A: bulk (the suite's
# throughput_engines), pt (--batch-max 1 --lanes 1 --resident), pts (pt with --spin).
source .whl/env.sh; export OUT; source bench/_run.sh
stamp=$(mktemp)
{ nproc; nvidia-smi -L; } > "$OUT/host.log" 2>&1
E=$(python3 -c "import os; print(','.join(['0'] * max(1, min(12, os.cpu_count() - 20))))")
common=(--configs "$E" --fanout direct --processes 6 --engine-cpu 2 --mps --rate 220000 --seconds 10 --warmup-s 2)
for arm in bulk pt pts pts pt bulk; do
  case $arm in bulk) extra=(--batch-max 64);; pt) extra=(--batch-max 1 --lanes 1 --resident);;
               pts) extra=(--batch-max 1 --lanes 1 --resident --spin);; esac
  TAIL=10 run "tp_$arm" 90 python3 bench/scaleout.py "${common[@]}" "${extra[@]}" --out "tp-$arm-$RANDOM"
done
tar czf "$OUT/results.tgz" $(find bench/results -newer "$stamp" -type f) "$OUT"/*.log 2>/dev/null
rm -rf "$OUT"/*.log
