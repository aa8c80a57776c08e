# A/B in one call: _base/ (a launch per bulk batch size) against this tree (a launch per size class, rows_class).
# Four engines on GPU 0 under MPS, loops on CPUs 2..5, 220k/s offered by 6 producers, --batch-max 64, 6 s, order
# base, new, new, base, traced; then this tree for 10 s untraced, and the GPU batching tests.
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session16
mps_on
side() { local dir=. ; [ "$1" = base ] && dir=_base
  ( cd "$dir" && export PYTHONPATH="$PWD:/tmp/site" && mkdir -p bench/results/$R &&
    TAIL=6 run "four-$1-$2" 90 python3 bench/scaleout.py --configs 0,0,0,0 --rate 220000 --processes 6 --seconds 6 \
      --batch-max 64 --engine-cpu 2 --trace "$OUT/traces/$1-$2" --out "$R/call4-four-$1-$2" ) }
side base 1; side new 1; side new 2; side base 2
TAIL=6 run four-10s 90 python3 bench/scaleout.py --configs 0,0,0,0 --rate 220000 --processes 6 --seconds 10 --batch-max 64 --engine-cpu 2 --out $R/call4-four-10s
mps_off
TAIL=3 run gpu-batching 200 python3 -m pytest -m gpu -q -p no:cacheprovider tests/test_gpu_batching.py
tar czf "$OUT/results.tgz" bench/results/$R/call4-* _base/bench/results/$R/call4-* "$OUT"/*.log 2>/dev/null
tar czf "$OUT/traces.tgz" -C $OUT traces 2>/dev/null; rm -rf $OUT/traces
rm -f "$OUT"/*.log
