# Sourced by bench/resident_ab.sh and bench/suite_ab.sh: run NAME SECONDS CMD... runs CMD with a time limit,
# its output to $OUT/NAME.log, and prints the exit code and the log's last ${TAIL:-12} lines without the server's
# calibration and log lines.
run() { local name=$1 t=$2; shift 2; echo "=== $name"; timeout -k 5 "$t" "$@" >"$OUT/$name.log" 2>&1; echo "exit $?";
        grep -v calibrated "$OUT/$name.log" | grep -v "^\s*\[server\]" | tail -"${TAIL:-12}"; }
