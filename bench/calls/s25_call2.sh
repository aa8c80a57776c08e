# Session 25, call 2: call 1 showed the GPU host has no cpuidle driver (a CPU latency request changes nothing). What
# do halted CPUs cost a ZeroMQ hop there? The bare echo with SCHED_IDLE spinners on every CPU (no CPU halts) and
# with the echo on one CPU (its I/O thread's wake-ups local), then the round trip paths as the suite runs them:
# as is, under spinners, and with each server on one CPU, in the order A B C C B A.
source .whl/env.sh; export OUT; source bench/_run.sh
stamp=$(mktemp)
{ whoami; nproc; uname -r; cat /proc/cmdline; lscpu; cat /sys/devices/system/cpu/cpuidle/current_driver
  grep -H . /sys/devices/system/cpu/cpu*/topology/thread_siblings_list | head -40; } > "$OUT/host.log" 2>&1
TAIL=40 run idle_wake 150 python3 bench/idle_wake.py --n 3000 --rounds 3 --gaps-us 0,100 \
  --conditions none,keep_awake,one_cpu --out-dir "$OUT/r"
for arm in none awake one one awake none; do
  case $arm in none) pre=(); extra=();; awake) pre=(python3 bench/keep_awake.py --); extra=();;
               one) pre=(); extra=(--server-one-cpu);; esac
  TAIL=14 run "rt_$arm" 100 "${pre[@]}" python3 bench/roundtrip.py --resident --n 10000 --warm 1000 --repeat 2 \
    "${extra[@]}" --out "rt-$arm-$RANDOM"
done
tar czf "$OUT/results.tgz" $(find bench/results "$OUT/r" -newer "$stamp" -type f) "$OUT"/*.log 2>/dev/null
rm -rf "$OUT"/*.log
