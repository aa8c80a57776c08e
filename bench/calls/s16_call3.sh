# 1. The engine loop alone (--direct, b128), _base/ (match before 5718906) against this tree, alternating.
# 2. Four engines on GPU 0 under MPS, 220k/s offered by 6 producers, --batch-max 64, 6 s: loops unpinned against
#    pinned to CPUs 2..5 with the producers kept off them (--engine-cpu 2), order off, on, on, off.
# 3. Three engines, --batch-max 128, pinned.
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session16
for c in 0 1 2 3 4 5; do echo "cpu$c siblings $(cat /sys/devices/system/cpu/cpu$c/topology/thread_siblings_list)"; done
lscpu | grep -E "^(Model name|Thread|Core|Socket|NUMA node)" | head -8
alone() { local dir=. ; [ "$1" = base ] && dir=_base
  ( cd "$dir" && export PYTHONPATH="$PWD:/tmp/site" && mkdir -p bench/results/$R &&
    TAIL=2 run "alone-$1-$2" 60 python3 bench/relay_engine.py --direct --tasks 100000 --batch-max 128 --trace "$OUT/traces/alone-$1-$2" --out "$R/call3-alone-$1-$2" ) }
alone base 1; alone new 1; alone new 2; alone base 2
export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
mkdir -p $CUDA_MPS_PIPE_DIRECTORY $CUDA_MPS_LOG_DIRECTORY
CUDA_VISIBLE_DEVICES=0 nvidia-cuda-mps-control -d && echo "mps started" && sleep 1
four() { local pin=""; [ "$1" = on ] && pin="--engine-cpu 2"
  TAIL=7 run "four-$1-$2" 90 python3 bench/scaleout.py --configs 0,0,0,0 --rate 220000 --processes 6 --seconds 6 --batch-max 64 $pin --trace "$OUT/traces/four-$1-$2" --out "$R/call3-four-pin$1-$2"; }
four off 1; four on 1; four on 2; four off 2
TAIL=6 run three-on 90 python3 bench/scaleout.py --configs 0,0,0 --rate 230000 --processes 6 --seconds 6 --batch-max 128 --engine-cpu 2 --trace "$OUT/traces/three-on" --out "$R/call3-three-pinon"
echo quit | nvidia-cuda-mps-control; sleep 2
tar czf "$OUT/results.tgz" bench/results/$R/call3-* _base/bench/results/$R/call3-* "$OUT"/*.log 2>/dev/null
tar czf "$OUT/traces.tgz" -C $OUT traces 2>/dev/null; rm -rf $OUT/traces
rm -f "$OUT"/*.log
