#!/usr/bin/env bash
# A/B in one call (bench/NOTES.md 21): bookkeeping of sent tasks applied at once (ZMQRT_BOOKS_MAX=1, as before)
# against deferred to idle loop passes (default). Usage on the GPU machine, after `source .whl/env.sh`.
set -u
OUT=${OUT:-/tmp/zmqrt-out}
mkdir -p "$OUT" bench/results/ab
run() { local name=$1; shift; echo "=== $name"; "$@" >"$OUT/$name.log" 2>&1; echo "exit $?"; grep -v calibrated "$OUT/$name.log" | grep -v "^\s*\[server\]" | tail -${TAIL:-8}; }
run gpu-tests python3 -m pytest -m gpu -q -p no:cacheprovider
for books in ${BOOKS_ORDER:-1 256}; do
  ZMQRT_BOOKS_MAX=$books TAIL=24 run roundtrip-books$books python3 bench/roundtrip.py --n 10000 --warm 1000 \
      --modes spin --trace --out ab/roundtrip-books$books${SUFFIX:-}
  ZMQRT_BOOKS_MAX=$books run stream-books$books python3 bench/stream.py --seconds 10 --spin --out ab/stream-books$books${SUFFIX:-}
done
tar czf "$OUT/results.tgz" bench/results/ab "$OUT"/*.log 2>/dev/null
cd "$OUT" && rm -f ./*.log
