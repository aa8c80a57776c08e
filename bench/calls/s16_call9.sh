# A/B of the fan-out queue per engine: _base/ (1000 frames each way) against this tree (64). Four engines on
# GPU 0, MPS, loops pinned from CPU 2, 220k/s offered by 6 producers, 10 s, new, base, new.
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session16
export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
mkdir -p $CUDA_MPS_PIPE_DIRECTORY $CUDA_MPS_LOG_DIRECTORY
CUDA_VISIBLE_DEVICES=0 nvidia-cuda-mps-control -d && echo "mps started" && sleep 1
side() { local dir=. ; [ "$1" = base ] && dir=_base
  ( cd "$dir" && export PYTHONPATH="$PWD:/tmp/site" && mkdir -p bench/results/$R &&
    TAIL=1 run "e4-$1-$2" 100 python3 bench/scaleout.py --configs 0,0,0,0 --rate 220000 --processes 6 --seconds 10 \
      --batch-max 64 --engine-cpu 2 --out "$R/call9-e4-$1-$2"; grep -E "^devices" "$OUT/e4-$1-$2.log" ) }
side new 1; side base 1; side new 2
echo quit | nvidia-cuda-mps-control; sleep 2
tar czf "$OUT/results.tgz" bench/results/$R/call9-* _base/bench/results/$R/call9-* "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
