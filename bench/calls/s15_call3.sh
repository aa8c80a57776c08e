source .whl/env.sh; export OUT; source bench/_run.sh
mkdir -p bench/results/ab/session15
TAIL=30 run rt-gap 300 python3 bench/roundtrip.py --modes block,spin --resident --n 10000 --warm 1000 --repeat 3 --out ab/session15/rt-gap
TAIL=12 run rt-gap-trace 120 python3 bench/roundtrip.py --modes block --resident --n 20000 --warm 2000 --trace --dump $OUT/dump --out ab/session15/rt-gap-trace
TAIL=8 run stream-1 60 python3 bench/stream.py --seconds 10 --spin --resident --out ab/session15/stream-gap-1
TAIL=8 run stream-2 60 python3 bench/stream.py --seconds 10 --resident --out ab/session15/stream-gap-block
cp bench/results/ab/session15/* $OUT/ 2>/dev/null; true
