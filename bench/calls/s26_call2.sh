# Session 26, call 2: issue 7's "same latency targets" on two GPUs. The 10 kHz round trip with zmqrt serve
# --devices 0,1 as a path of its own beside the one-engine zmqrt and the floors (direct fan-out, 3 repeats; the
# proxy fan-out, 1 repeat), then one engine per GPU against one engine on one GPU at 220k tasks/s offered, twice.
source .whl/env.sh; export OUT; source bench/_run.sh
stamp=$(mktemp)
{ nproc; nvidia-smi -L; nvidia-smi topo -m; } > "$OUT/host.log" 2>&1
TAIL=3 run gpu-tests 120 python3 -m pytest -m gpu -q -p no:cacheprovider
TAIL=40 run rt_direct 240 python3 bench/roundtrip.py --resident --devices 0,1 --fanout direct --n 10000 --warm 1000 \
  --repeat 3 --out roundtrip-devices-direct
TAIL=25 run rt_proxy 120 python3 bench/roundtrip.py --resident --devices 0,1 --fanout proxy --n 10000 --warm 1000 \
  --out roundtrip-devices-proxy
TAIL=30 run scaleout 200 python3 bench/scaleout.py --configs "0;0,1;0;0,1" --fanout direct --processes 6 \
  --rate 220000 --seconds 10 --warmup-s 2 --batch-max 128 --out scaleout-2gpu
tar czf "$OUT/results.tgz" $(find bench/results -newer "$stamp" -type f) "$OUT"/*.log 2>/dev/null
rm -rf "$OUT"/*.log
