# Does the guest idle the vCPUs in a way that costs wake-ups? What cpuidle says, then a PM QoS request of 0 µs
# (/dev/cpu_dma_latency held open, as tuned's latency profiles and cyclictest do) against none: the 10 kHz round
# trip in block mode (--resident; off, on, on, off) and one throughput run each (off, on).
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session20; mkdir -p bench/results/$R
for f in /sys/devices/system/cpu/cpuidle/current_driver /sys/devices/system/cpu/cpuidle/current_governor_ro \
         /sys/devices/system/cpu/cpuidle/current_governor /proc/cmdline /sys/module/haltpoll/parameters/*; do
  [ -e "$f" ] && echo "$f: $(cat "$f" 2>&1)"; done
ls /sys/devices/system/cpu/cpu0/cpuidle 2>&1 | head; ls -l /dev/cpu_dma_latency
for d in /sys/devices/system/cpu/cpu0/cpuidle/state*; do [ -d "$d" ] && echo "$d $(cat $d/name) latency $(cat $d/latency) usage $(cat $d/usage)"; done
qos_on() { exec 3>/dev/cpu_dma_latency && printf '\0\0\0\0' >&3 && echo "pm qos 0 held"; }
qos_off() { exec 3>&-; echo "pm qos released"; }
for sn in off1 on1 on2 off2; do
  [ "${sn%?}" = on ] && qos_on
  TAIL=3 run "rt-$sn" 100 python3 bench/roundtrip.py --n 10000 --warm 1000 --modes block --resident --out "$R/call6-rt-$sn"
  [ "${sn%?}" = on ] && qos_off
done
E12=0,0,0,0,0,0,0,0,0,0,0,0
for sn in off on; do
  [ "$sn" = on ] && qos_on
  TAIL=1 run "tp-$sn" 100 python3 bench/scaleout.py --configs $E12 --fanout direct --processes 6 --rate 220000 \
    --warmup-s 2 --seconds 10 --batch-max 64 --engine-cpu 2 --mps --out "$R/call6-tp-$sn"
  grep -E "^devices|per 100 ms|steal" "$OUT/tp-$sn.log"
  [ "$sn" = on ] && qos_off
done
for d in /sys/devices/system/cpu/cpu0/cpuidle/state*; do [ -d "$d" ] && echo "$d $(cat $d/name) usage $(cat $d/usage)"; done
tar czf "$OUT/results.tgz" bench/results/$R/call6-* "$OUT"/*.log 2>/dev/null
rm -f "$OUT"/*.log
