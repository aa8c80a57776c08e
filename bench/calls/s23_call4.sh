# Session 23, call 4: the resident path straight from the frame (take gives offsets, a resident lane copies the
# inputs' bytes, no views), Backend.finish, the warm record after the send. GPU tests first (a new one for the frame
# copies), then paired base (1f69232, call 2's "new" and call 3's suite, in _base/) against new at 40 rounds, spin,
# --resident; then the final suite at this code.
source .whl/env.sh; export OUT; source bench/_run.sh
stamp=$(mktemp)
mkdir -p "$OUT/r"
TAIL=3 run gpu-tests 120 python3 -m pytest -m gpu -q -p no:cacheprovider
TAIL=8 run bn4-spin 170 python3 bench/paired.py --a _base --b . --spin --resident --server-arg=--no-supervise \
  --rounds 40 --n 10000 --warm 2000 --out-dir "$OUT/r" --out bn4-spin
TAIL=60 run suite 360 python3 bench/run_all.py --resident
tar czf "$OUT/results.tgz" $(find bench/results -newer "$stamp" -type f) "$OUT"/r "$OUT"/*.log 2>/dev/null
rm -rf "$OUT"/*.log "$OUT"/r
