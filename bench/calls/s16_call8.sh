# A/B of the producers' collector (ingest/openloop.py): _base/ (collector on) against this tree (off while
# sending), base, new, new. (As run, this script spelled out what s16_e4_ab.sh does.)
bash bench/calls/s16_e4_ab.sh call8 base-1 new-1 new-2
