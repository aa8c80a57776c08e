set -u
export ZMQRT_PROFILE=$OUT/server-profile.txt
python3 bench/roundtrip.py --n 10000 --warm 1000 --modes block > $OUT/rt.log 2>&1
unset ZMQRT_PROFILE
grep -v calibrated $OUT/rt.log | tail -12
python3 - <<'PY'
import json
d=json.load(open("bench/results/roundtrip-H200.json"))
z=d["paths"]["zmqrt [block]"]["server_side_us"]
for k,v in z["stages"].items(): print(k, {a:round(b,1) for a,b in v.items()})
print("tracker", z.get("tracker_receipt_to_sent"))
PY
head -80 $OUT/server-profile.txt
