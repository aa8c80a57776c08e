# Several engines on one GPU (3 contexts, time-sliced) with and without CUDA MPS (one shared context on the GPU).
# The MPS control daemon is a user process with its own pipe and log folders; it is stopped at the end.
source .whl/env.sh; export OUT; source bench/_run.sh
command -v nvidia-cuda-mps-control || { echo "no nvidia-cuda-mps-control"; ls /usr/bin | grep -i mps; }
nvidia-smi --query-gpu=index,name,compute_mode --format=csv
SO="python3 bench/scaleout.py --configs 0,0,0 --rate 230000 --processes 6 --seconds 5 --batch-max 128"
TAIL=14 run so-off-1 120 $SO --out ab/session15/call8-mps-off-1
export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
mkdir -p $CUDA_MPS_PIPE_DIRECTORY $CUDA_MPS_LOG_DIRECTORY
CUDA_VISIBLE_DEVICES=0 nvidia-cuda-mps-control -d && echo "mps started" && sleep 1
TAIL=14 run so-on-1 120 $SO --out ab/session15/call8-mps-on-1
echo quit | nvidia-cuda-mps-control; sleep 2; cat /tmp/mps-log/control.log 2>/dev/null | tail -5
unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
TAIL=14 run so-off-2 120 $SO --out ab/session15/call8-mps-off-2
tar czf "$OUT/results.tgz" bench/results/ab/session15/call8-* "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
