# Session 22, call 1: GPU tests at the session's start code (b4f3cbd: the review of the warm pass, not yet run on a
# GPU), then the throughput setting with spinning engines against blocking ones again, on whatever host this is
# (session 21's call 9 met a very noisy one): twelve engines on GPU 0 under MPS, 220k/s offered, 10 s after 2 s,
# in the order block, spin, spin, block. Then one round trip with --resident (spin and block).
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session22; mkdir -p bench/results/$R
TAIL=3 run gpu-tests 120 python3 -m pytest -m gpu -q -p no:cacheprovider
E12=0,0,0,0,0,0,0,0,0,0,0,0
for sn in block1 spin1 spin2 block2; do
  case $sn in spin*) opt="--spin";; *) opt="";; esac
  TAIL=1 run "tp-$sn" 100 python3 bench/scaleout.py --configs $E12 --fanout direct --processes 6 --rate 220000 \
    --warmup-s 2 --seconds 10 --batch-max 64 --engine-cpu 2 --mps $opt --out "$R/call1-tp-$sn"
  grep -E "^devices|per 100 ms|steal|\| 0," "$OUT/tp-$sn.log" | head -6
done
TAIL=14 run rt 150 python3 bench/roundtrip.py --n 10000 --warm 1000 --resident --out "$R/call1-rt"
tar czf "$OUT/results.tgz" bench/results/$R/call1-* "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
