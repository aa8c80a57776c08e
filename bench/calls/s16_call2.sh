# A/B in one call: _base/ (bulk loop: read, decode and launch a backlog, then poll the lanes) against this tree
# (poll the lanes between the backlog's recv and its decode). Three engines on GPU 0 under MPS, 230k/s offered by
# 6 producers, 6 s, order base, new, new, base, every engine traced; then four engines (new) and the loop alone.
source .whl/env.sh; export OUT; source bench/_run.sh
mps_on
side() {
  local dir=. ; [ "$1" = base ] && dir=_base
  ( cd "$dir" && export PYTHONPATH="$PWD:/tmp/site" && mkdir -p bench/results/ab/session16 &&
    TAIL=5 run "so-$1-$2" 90 python3 bench/scaleout.py --configs 0,0,0 --rate 230000 --processes 6 --seconds 6 \
      --batch-max 128 --trace "$OUT/traces/$1-$2" --out "ab/session16/call2-so-$1-$2" )
}
side base 1; side new 1; side new 2; side base 2
TAIL=6 run four-new 90 python3 bench/scaleout.py --configs 0,0,0,0 --rate 230000 --processes 6 --seconds 6 --batch-max 64 --trace $OUT/traces/four --out ab/session16/call2-four
mps_off
TAIL=4 run alone 60 python3 bench/relay_engine.py --direct --tasks 100000 --batch-max 128 --trace $OUT/traces/alone --out ab/session16/call2-alone
tar czf "$OUT/results.tgz" bench/results/ab/session16/call2-* _base/bench/results/ab/session16/call2-* "$OUT"/*.log 2>/dev/null
tar czf "$OUT/traces.tgz" -C $OUT traces 2>/dev/null; rm -rf $OUT/traces
rm -f "$OUT"/*.log
