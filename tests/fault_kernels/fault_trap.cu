// fault_trap: a TEST-ONLY kernel that makes the GPU fault on request (tests/test_gpu_fault.py, bench/restart_time.py).
// Never put this directory in a production --kernels-dir.
//
// trap == 0: out = x (an ordinary copy, so loading and running it can be checked like any user kernel).
// trap != 0: every thread executes __trap(): the launch fails with CUDA_ERROR_LAUNCH_FAILED, a sticky error that
// poisons the context, so the engine answers GPU_FAULT, exits 3 (EXIT_GPU_FAULT) and the supervisor restarts it.
// User-kernel ABI: input pointers, output pointer, int n, then the params in .toml order (i32 -> int).

extern "C" __global__ void fault_trap(const float* __restrict__ x, float* __restrict__ out, int n, int trap)
{
    if (trap) {
        __trap();
    }
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        out[i] = x[i];
    }
}
