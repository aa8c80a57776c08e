# Session 25, call 1: does an idle vCPU's halt cost the ZeroMQ hop on the GPU host, and does a CPU latency request
# (PM QoS 0 µs: idle CPUs poll instead of halting) give it back? The host's idle set-up, the bare echo against the
# idle gap (bench/idle_wake.py), then the round trip suite's paths without and with the request, ABBA.
source .whl/env.sh; export OUT; source bench/_run.sh
stamp=$(mktemp)
echo "=== host"; whoami; nproc; uname -r; cat /proc/cmdline
cat /sys/devices/system/cpu/cpuidle/current_driver /sys/devices/system/cpu/cpuidle/current_governor_ro 2>&1
grep -H . /sys/module/haltpoll/parameters/* 2>&1; ls -l /dev/cpu_dma_latency
for s in /sys/devices/system/cpu/cpu2/cpuidle/state*; do echo "$s $(cat $s/name $s/latency $s/usage)"; done
lscpu | grep -i "model name\|hypervisor\|^CPU(s)\|NUMA node"
TAIL=20 run gpu_tests 120 python3 -m pytest -m gpu -q -p no:cacheprovider
TAIL=60 run idle_wake 200 python3 bench/idle_wake.py --n 3000 --rounds 3 --out-dir "$OUT/r"
for arm in none qos qos none; do
  extra=(); [ "$arm" = qos ] && extra=(--cpu-latency-us 0)
  TAIL=30 run "rt_$arm" 170 python3 bench/roundtrip.py --resident --n 10000 --warm 1000 --repeat 3 "${extra[@]}" \
    --out "rt-$arm-$RANDOM"
done
tar czf "$OUT/results.tgz" $(find bench/results "$OUT/r" -newer "$stamp" -type f) "$OUT"/*.log 2>/dev/null
rm -rf "$OUT"/*.log
