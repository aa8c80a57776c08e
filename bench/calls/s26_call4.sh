# Session 26, call 4: call 3's two GPUs were capped by what ten producers could send on the host (210k to 226k/s),
# not by the engines. So the comparison at engine settings whose one-GPU capacity sits well below the producers':
# per task (--batch-max 1, the setting of the first 2.05x, at 60k/s offered) and small batches (--batch-max 16, at
# 220k/s offered); one engine per GPU against one engine, twice each.
source .whl/env.sh; export OUT; source bench/_run.sh
stamp=$(mktemp)
for bm in 1 16; do
  rate=60000; [ $bm = 16 ] && rate=220000
  TAIL=30 run "scaleout_bm$bm" 200 python3 bench/scaleout.py --configs "0;0,1;0;0,1" --fanout direct --processes 6 \
    --rate $rate --seconds 5 --warmup-s 1 --batch-max $bm --out "scaleout-2gpu-bm$bm"
done
tar czf "$OUT/results.tgz" bench/results/scaleout-2gpu-bm* "$OUT"/*.log 2>/dev/null
rm -rf "$OUT"/*.log
