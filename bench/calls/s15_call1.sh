source .whl/env.sh; export OUT; source bench/_run.sh
nproc; nvidia-smi --query-gpu=name --format=csv,noheader
RT="python3 bench/roundtrip.py --modes block --resident --n 10000 --warm 1000 --repeat 2"
TAIL=6 run rt-pinned-1 150 $RT --out ab/session15/rt-pinned-1
TAIL=6 run rt-free-1 150 $RT --free-loop --out ab/session15/rt-free-1
TAIL=6 run rt-free-2 150 $RT --free-loop --out ab/session15/rt-free-2
TAIL=6 run rt-pinned-2 150 $RT --out ab/session15/rt-pinned-2
TAIL=30 run stream-1 60 python3 bench/stream.py --seconds 10 --spin --resident --out ab/session15/stream-1
mkdir -p $OUT/res; cp bench/results/ab/session15/* $OUT/res/; cp $OUT/*.log $OUT/res/ 2>/dev/null; true
