# Session 21, call 9: the throughput setting with spinning engines (scaleout.py --spin; engines never sleep in recv,
# and warm their paths in idle passes) against the suite's blocking engines: twelve engines on GPU 0 under MPS,
# 220k/s offered, 10 s after 2 s, in the order block, spin, spin, block.
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session21; mkdir -p bench/results/$R
E12=0,0,0,0,0,0,0,0,0,0,0,0
for sn in block1 spin1 spin2 block2; do
  case $sn in spin*) opt="--spin";; *) opt="";; esac
  TAIL=1 run "tp-$sn" 100 python3 bench/scaleout.py --configs $E12 --fanout direct --processes 6 --rate 220000 \
    --warmup-s 2 --seconds 10 --batch-max 64 --engine-cpu 2 --mps $opt --out "$R/call9-tp-$sn"
  grep -E "^devices|per 100 ms|steal|\| 0," "$OUT/tp-$sn.log" | head -6
done
tar czf "$OUT/results.tgz" bench/results/$R/call9-* "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
