source .whl/env.sh; export OUT; source bench/_run.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1; nproc
stamp=$(mktemp)
TAIL=6 run gpu-tests 240 python3 -m pytest -m gpu -q -p no:cacheprovider
TAIL=45 run suite 330 python3 bench/run_all.py --resident
tar czf "$OUT/results.tgz" $(find bench/results -newer "$stamp" -type f) "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
