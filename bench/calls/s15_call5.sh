# A/B in one call: _base/ (8f2434b: the suite's code) against this tree (fused decode, lane watch), order
# base, new, new, base; round trip (block and spin, --resident, loop trace) and the stream (spin, --resident).
source .whl/env.sh; export OUT; source bench/_run.sh
stamp=$(mktemp)
TAIL=4 run gpu-tests 200 python3 -m pytest -m gpu -q -p no:cacheprovider
side() {
  local dir=. ; [ "$1" = base ] && dir=_base
  ( cd "$dir" && export PYTHONPATH="$PWD:/tmp/site" && mkdir -p bench/results/ab/session15 &&
    TAIL=3 run "rt-$1-$2" 150 python3 bench/roundtrip.py --n 10000 --warm 1000 --modes block,spin --resident --trace \
      --out "ab/session15/ab5-rt-$1-$2" &&
    TAIL=2 run "stream-$1-$2" 60 python3 bench/stream.py --seconds 10 --spin --resident --out "ab/session15/ab5-stream-$1-$2" )
}
side base 1; side new 1; side new 2; side base 2
tar czf "$OUT/results.tgz" bench/results/ab/session15/ab5-* _base/bench/results/ab/session15/ab5-* "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
