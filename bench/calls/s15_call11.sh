# A/B in one call: _base/ (before the held bulk latencies) against this tree: three engines on GPU 0, 230k/s
# offered by 6 producers, 5 s, order base, new, new, base; then the GPU tests at this tree.
source .whl/env.sh; export OUT; source bench/_run.sh
side() {
  local dir=. ; [ "$1" = base ] && dir=_base
  ( cd "$dir" && export PYTHONPATH="$PWD:/tmp/site" && mkdir -p bench/results/ab/session15 &&
    TAIL=6 run "so-$1-$2" 100 python3 bench/scaleout.py --configs 0,0,0 --rate 230000 --processes 6 --seconds 5 \
      --batch-max 128 --out "ab/session15/call11-so-$1-$2" )
}
side base 1; side new 1; side new 2; side base 2
TAIL=3 run gpu-tests 200 python3 -m pytest -m gpu -q -p no:cacheprovider
tar czf "$OUT/results.tgz" bench/results/ab/session15/call11-* _base/bench/results/ab/session15/call11-* "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
