"""CUDA MPS around a benchmark: several engine processes on one GPU share it as one context's streams.

Without MPS, the contexts of several processes on one GPU are time-sliced: a batch waited 0.5 ms p50 for the GPU
with three engines, 0.1 to 0.15 ms under MPS (bench/NOTES.md 30 and 31). ``mps(devices)`` starts an MPS control
daemon as a user process, with its own pipe and log folders, sets the variables that route this process's
children (the engines) to it, and stops it on exit. Where ``nvidia-cuda-mps-control`` is missing or will not
start, it says so and yields False: the run goes on without MPS, and its results record that.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

_CONTROL = "nvidia-cuda-mps-control"
_VARS = ("CUDA_MPS_PIPE_DIRECTORY", "CUDA_MPS_LOG_DIRECTORY")
_START_S = 1.0  # the daemon's first client would otherwise race its start
_STOP_S = 2.0  # after "quit": the server process exits and frees the GPU


@contextmanager
def mps(devices: Sequence[int]) -> Iterator[bool]:
    """MPS for ``devices`` while the block runs (the engines must be started inside it); True when it runs."""
    control = shutil.which(_CONTROL)
    if control is None:
        print(f"MPS: {_CONTROL} not found; engines on one GPU are time-sliced", flush=True)
        yield False
        return
    base = tempfile.mkdtemp(prefix="zmqrt-mps-")
    dirs = {"CUDA_MPS_PIPE_DIRECTORY": os.path.join(base, "pipe"), "CUDA_MPS_LOG_DIRECTORY": os.path.join(base, "log")}
    for d in dirs.values():
        os.makedirs(d)
    # The daemon sees only the run's GPUs (as bench/_run.sh's mps_on did for GPU 0).
    env = {**os.environ, **dirs, "CUDA_VISIBLE_DEVICES": ",".join(map(str, sorted(set(devices))))}
    started = subprocess.run([control, "-d"], env=env, capture_output=True, text=True, timeout=30)
    if started.returncode != 0:
        print(f"MPS: {_CONTROL} -d failed ({started.returncode}: {(started.stderr or started.stdout).strip()}); "
              "engines on one GPU are time-sliced", flush=True)
        shutil.rmtree(base, ignore_errors=True)
        yield False
        return
    saved = {k: os.environ.get(k) for k in _VARS}
    os.environ.update(dirs)
    print(f"MPS: started for GPU {env['CUDA_VISIBLE_DEVICES']} ({base})", flush=True)
    time.sleep(_START_S)
    try:
        yield True
    finally:
        subprocess.run([control], input="quit\n", env=env, capture_output=True, text=True, timeout=30)
        time.sleep(_STOP_S)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(base, ignore_errors=True)
