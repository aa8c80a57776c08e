# Sourced by bench/resident_ab.sh and bench/suite_ab.sh: run NAME SECONDS CMD... runs CMD with a time limit,
# its output to $OUT/NAME.log, and prints the exit code and the log's last ${TAIL:-12} lines without the server's
# calibration and log lines.
run() { local name=$1 t=$2; shift 2; echo "=== $name"; timeout -k 5 "$t" "$@" >"$OUT/$name.log" 2>&1; echo "exit $?";
        grep -v calibrated "$OUT/$name.log" | grep -v "^\s*\[server\]" | tail -"${TAIL:-12}"; }
# mps_on / mps_off: CUDA MPS for GPU 0, its control daemon started as a user process with its own pipe and log
# folders, and stopped (bench/NOTES.md 30 and 31).
mps_on() { export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
           mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
           CUDA_VISIBLE_DEVICES=0 nvidia-cuda-mps-control -d && echo "mps started" && sleep 1; }
mps_off() { echo quit | nvidia-cuda-mps-control; sleep 2; unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY; }
# in_tree SIDE CMD...: run CMD in _base/ (SIDE "base": an older commit unpacked there) or in this tree, with that
# tree first on PYTHONPATH.
in_tree() { local dir=. ; [ "$1" = base ] && dir=_base; shift
            ( cd "$dir" && export PYTHONPATH="$PWD:/tmp/site" && "$@" ); }
