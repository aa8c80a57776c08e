#!/usr/bin/env bash
# A/B in one call: this tree against an older commit unpacked under _base/ (git archive REV | tar -x -C _base;
# git-ignored, so the device call carries it: carry [".whl", "_base"]),
# round trip with the stage trace (spin) and the 10 kHz stream (spin), in the order base, new, new, base so that a
# drift of the host during the call weighs on both sides alike. AB_ARGS: more flags for both scripts (e.g.
# --resident). Usage on the GPU machine, from the project root,
# after `source .whl/env.sh`; results go to bench/results/ab/ (new) and _base/bench/results/ab/ (base).
set -u
OUT=${OUT:-/tmp/zmqrt-out}
TAG=${TAG:-fastpath}
mkdir -p "$OUT" bench/results/ab _base/bench/results/ab
SITE=/tmp/site
run() { local name=$1; shift; echo "=== $name"; "$@" >"$OUT/$name.log" 2>&1; echo "exit $?"; grep -v calibrated "$OUT/$name.log" | grep -v "^\s*\[server\]" | tail -${TAIL:-8}; }
side() {  # side base|new N
  local dir=. ; [ "$1" = base ] && dir=_base
  ( cd "$dir" && export PYTHONPATH="$PWD:$SITE" &&
    TAIL=30 run "rt-$1-$2" python3 bench/roundtrip.py --n 10000 --warm 1000 --modes spin --trace ${AB_ARGS:-} \
      --out "ab/rt-$TAG-$1-$2" &&
    run "stream-$1-$2" python3 bench/stream.py --seconds 10 --spin ${AB_ARGS:-} --out "ab/stream-$TAG-$1-$2" )
}
[ "${SKIP_TESTS:-0}" = 1 ] || run gpu-tests python3 -m pytest -m gpu -q -p no:cacheprovider
side base 1; side new 1; side new 2; side base 2
tar czf "$OUT/results.tgz" bench/results/ab/*"$TAG"* _base/bench/results/ab/*"$TAG"* "$OUT"/*.log 2>/dev/null
cd "$OUT" && rm -f ./*.log
