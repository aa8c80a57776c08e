# Session 22, call 3: the 10 kHz stream with vector_add on the resident lanes (--resident) against the launched
# path, spin mode as in the suite, alternating launched, resident, resident, launched; then the resident stream in
# block mode (the default idle poll) once.
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session22; mkdir -p bench/results/$R
i=0
for arm in launched resident resident launched; do
  i=$((i+1))
  case $arm in resident) opt="--resident";; *) opt="";; esac
  TAIL=5 run "st-$arm-$i" 90 python3 bench/stream.py --seconds 10 --spin $opt --out "$R/call3-st-$arm-$i"
done
TAIL=5 run "st-resident-block" 90 python3 bench/stream.py --seconds 10 --resident --out "$R/call3-st-resident-block"
tar czf "$OUT/results.tgz" bench/results/$R/call3-* "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
