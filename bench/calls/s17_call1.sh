# 1. The host's topology: NUMA nodes, GPUs' PCI bus ids and local CPUs. 2. The 10 kHz round trip (spin,
# --resident, with the prototype) with the server's loop on GPU 0's NUMA node against the other node, alternating
# (local, remote, remote, local), 3 repeats each. 3. The 10 kHz stream on each placement.
source .whl/env.sh; export OUT; source bench/_run.sh
R=ab/session17
{ lscpu; echo; numactl -H 2>&1; echo; nvidia-smi topo -m 2>&1; echo; cat /proc/cmdline; } > "$OUT/topology.log" 2>&1
grep -E "^(NUMA|Model name|Socket|Thread|Core|CPU\(s\))" "$OUT/topology.log"; grep -A4 "GPU0" "$OUT/topology.log" | head -5
python3 - > "$OUT/cpus.env" <<'PY'
import os
from bench._common import gpu_cpus
from zmqrt.cuda import pci_bus_id, device_count
for i in range(device_count()):
    print(f"# GPU {i} {pci_bus_id(i)} local CPUs {sorted(gpu_cpus(i))}")
near = gpu_cpus(0)
avail = sorted(os.sched_getaffinity(0))
far = [c for c in avail if c not in near]
print(f"LOCAL={max(near) if near else avail[-1]}")
print(f"REMOTE={max(far) if far and near else ''}")
PY
cat "$OUT/cpus.env"; source "$OUT/cpus.env"
rt() { TAIL=3 run "rt-$1-$2" 170 python3 bench/roundtrip.py --modes spin --resident --repeat 3 --loop-cpu $3 --out "$R/call1-rt-$1-$2";
       grep -E "zmqrt \[spin\]  |prototype \[spin\]  " "$OUT/rt-$1-$2.log" | sed -E 's/^(\w+).*RTT p50 +([0-9.]+) p99 +([0-9.]+).*server p50 +([0-9.]+) p99 +([0-9.]+).*/\1 rt \2\/\3 srv \4\/\5/' | tr '\n' ';'; echo; }
if [ -n "$REMOTE" ]; then
  rt local 1 $LOCAL; rt remote 1 $REMOTE; rt remote 2 $REMOTE; rt local 2 $LOCAL
  TAIL=6 run stream-local 60 python3 bench/stream.py --spin --resident --loop-cpu $LOCAL --out $R/call1-stream-local
  TAIL=6 run stream-remote 60 python3 bench/stream.py --spin --resident --loop-cpu $REMOTE --out $R/call1-stream-remote
else
  echo "no NUMA split known: one placement only"; rt local 1 $LOCAL
fi
tar czf "$OUT/results.tgz" bench/results/$R/call1-* "$OUT"/*.log "$OUT/cpus.env" 2>/dev/null
rm -f "$OUT"/*.log
