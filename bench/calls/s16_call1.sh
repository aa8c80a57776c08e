# Where a bulk batch's time goes on the GPU host: the engine loop alone (--direct), one engine at a rate it sustains,
# three engines on GPU 0 at 230k/s offered, without and with MPS; every engine traced (zmqrt.trace BatchTrace).
source .whl/env.sh; export OUT; source bench/_run.sh
R=bench/results/ab/session16; T=$OUT/traces
nproc; nvidia-smi --query-gpu=index,name --format=csv,noheader
TAIL=8 run alone 120 python3 bench/relay_engine.py --direct --tasks 150000 --batch-max 64,128,256 --trace $T/alone --out ab/session16/call1-alone
TAIL=8 run one-90k 60 python3 bench/scaleout.py --configs 0 --rate 90000 --processes 4 --seconds 5 --batch-max 128 --trace $T/one --out ab/session16/call1-one-90k
SO="python3 bench/scaleout.py --configs 0,0,0 --rate 230000 --processes 6 --seconds 6 --batch-max 128"
TAIL=12 run three-off 90 $SO --trace $T/three-off --out ab/session16/call1-three-off
export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
mkdir -p $CUDA_MPS_PIPE_DIRECTORY $CUDA_MPS_LOG_DIRECTORY
CUDA_VISIBLE_DEVICES=0 nvidia-cuda-mps-control -d && echo "mps started" && sleep 1
TAIL=12 run three-mps 90 $SO --trace $T/three-mps --out ab/session16/call1-three-mps
echo quit | nvidia-cuda-mps-control; sleep 2
unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
tar czf "$OUT/results.tgz" $R/call1-* "$OUT"/*.log 2>/dev/null
tar czf "$OUT/traces.tgz" -C $OUT traces 2>/dev/null; rm -rf $T
rm -f "$OUT"/*.log
