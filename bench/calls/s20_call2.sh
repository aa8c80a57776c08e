# 1. The 10 kHz round trip with the loop trace at the early start (stage breakdown, --resident, spin and block).
# 2. Twelve engines on GPU 0 under MPS with --resident (batches of up to 16 rows on each lane's resident block, no
#    launch per batch) against the same without, order plain, resident, plain, resident; --fanout direct, 6
#    producers at 220k/s, 2 s warm-up, 10 s. A resident run that fails stops the loop (a hang under MPS would
#    leave the daemon unusable for the next run).
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session20; mkdir -p bench/results/$R
TAIL=30 run trace 150 python3 bench/roundtrip.py --n 10000 --warm 1000 --modes spin,block --trace --resident \
  --out "$R/call2-trace"
mps_on; ls -l "$CUDA_MPS_PIPE_DIRECTORY"
python3 -c "from zmqrt.supervisor import mps_running; print('mps_running', mps_running())"; mps_off
E12=0,0,0,0,0,0,0,0,0,0,0,0
for sn in plain1 res1 plain2 res2; do
  flag=""; [ "${sn%?}" = res ] && flag=--resident
  TAIL=3 run "$sn" 150 python3 bench/scaleout.py --configs $E12 --fanout direct --processes 6 --rate 220000 \
    --warmup-s 2 --seconds 10 --batch-max 64 --engine-cpu 2 --mps $flag --out "$R/call2-$sn"
  rc=$(grep -c "^devices" "$OUT/$sn.log")
  grep -E "^devices|per 100 ms|steal" "$OUT/$sn.log"
  if [ "$rc" = 0 ]; then tail -30 "$OUT/$sn.log"; nvidia-smi; break; fi
done
tar czf "$OUT/results.tgz" bench/results/$R/call2-* "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
