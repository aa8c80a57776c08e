# The fan-out hop against none: eight engines on GPU 0 under MPS, the supervisor's proxy (two I/O threads) against
# --fanout direct (each producer connected to every engine). Loops pinned from CPU 2, 220k/s offered by 6 producers,
# --batch-max 64, 10 s. Order proxy, direct, direct, proxy: the host's phases show as a spread within a kind.
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session18; mkdir -p bench/results/$R
mps_on
for sn in proxy1 direct1 direct2 proxy2; do
  TAIL=1 run "$sn" 120 python3 bench/scaleout.py --configs 0,0,0,0,0,0,0,0 --rate 220000 --fanout ${sn%?} \
    --processes 6 --seconds 10 --batch-max 64 --engine-cpu 2 --out "$R/call1-$sn"
  grep -E "^devices|busy share|per 100 ms" "$OUT/$sn.log"
done
mps_off
tar czf "$OUT/results.tgz" bench/results/$R/call1-* "$OUT"/{proxy,direct}?.log 2>/dev/null
rm -f "$OUT"/*.log
