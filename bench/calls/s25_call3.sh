# Session 25, call 3: where zmqrt's service time goes now (the loop trace, both modes), to choose the next cut.
source .whl/env.sh; export OUT; source bench/_run.sh
stamp=$(mktemp)
TAIL=80 run rt_trace 200 python3 bench/roundtrip.py --resident --trace --n 10000 --warm 1000 --repeat 2
tar czf "$OUT/results.tgz" $(find bench/results -newer "$stamp" -type f) "$OUT"/*.log 2>/dev/null
rm -rf "$OUT"/*.log
