source .whl/env.sh; export OUT; source bench/_run.sh
mkdir -p bench/results/ab/session15
TAIL=40 run rt-trace 200 python3 bench/roundtrip.py --modes block,spin --resident --n 20000 --warm 2000 --trace --dump $OUT/dump --out ab/session15/rt-trace
cp bench/results/ab/session15/* $OUT/ 2>/dev/null; true
