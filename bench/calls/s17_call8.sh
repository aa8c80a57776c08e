# Final: the whole suite (--resident; round trip 7 alternating repeats) at this session's code; writes latest.json.
source .whl/env.sh; export OUT; source bench/_run.sh
stamp=$(mktemp)
TAIL=45 run suite 560 python3 bench/run_all.py --resident
tar czf "$OUT/results.tgz" $(find bench/results -newer "$stamp" -type f) "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
