# A/B of the fan-out queue per engine: _base/ (1000 frames each way) against this tree (64), new, base, new.
# (As run, this script spelled out what s16_e4_ab.sh does.)
bash bench/calls/s16_e4_ab.sh call9 new-1 base-1 new-2
