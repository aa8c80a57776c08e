# Session 26, call 3: call 2's two GPUs took all 220k tasks/s offered (1.47x one GPU's 149k): the ratio was capped
# by the load, not the engines. The same comparison at 330k/s offered by ten producers (5 s, so that one engine's
# backlog drains within the producers' timeout), one engine per GPU against one engine, twice.
source .whl/env.sh; export OUT; source bench/_run.sh
stamp=$(mktemp)
TAIL=30 run scaleout 300 python3 bench/scaleout.py --configs "0;0,1;0;0,1" --fanout direct --processes 10 \
  --rate 330000 --seconds 5 --warmup-s 1 --batch-max 128 --out scaleout-2gpu-330k
tar czf "$OUT/results.tgz" bench/results/scaleout-2gpu-330k-* "$OUT"/*.log 2>/dev/null
rm -rf "$OUT"/*.log
