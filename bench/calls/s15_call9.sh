# Four engines on one GPU, --batch-max 64, with and without CUDA MPS (order on, off, on), 6 s each.
source .whl/env.sh; export OUT; source bench/_run.sh
SO="python3 bench/scaleout.py --configs 0,0,0,0 --rate 220000 --processes 6 --seconds 6 --batch-max 64"
mps_on() { export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
  mkdir -p $CUDA_MPS_PIPE_DIRECTORY $CUDA_MPS_LOG_DIRECTORY; CUDA_VISIBLE_DEVICES=0 nvidia-cuda-mps-control -d; sleep 1; }
mps_off() { echo quit | nvidia-cuda-mps-control; sleep 2; unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY; }
mps_on; TAIL=5 run so4-on-1 120 $SO --out ab/session15/call9-4e-mps-on-1; mps_off
TAIL=5 run so4-off-1 120 $SO --out ab/session15/call9-4e-mps-off-1
mps_on; TAIL=5 run so4-on-2 120 $SO --out ab/session15/call9-4e-mps-on-2; mps_off
pgrep -fa nvidia-cuda-mps || echo "no MPS process left"
tar czf "$OUT/results.tgz" bench/results/ab/session15/call9-* "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
