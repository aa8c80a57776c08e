// The resident lane (zmqrt/backends/resident.py): one block that never returns, serving small elementwise tasks
// from a mailbox in mapped pinned host memory, so that a task costs no driver call (no launch, no query).
//
// Mailbox (unsigned int words): [0] request number (host), [1] done number (this kernel), [2] stop (host: return
// once no request is pending),
// [3] op, [4] n, [5] alpha (float bits), [6] element offset of the second input. The host writes the inputs and
// words 3..6 before word 0; x86 stores reach the device in program order. Thread 0 polls word 0 (volatile: each
// poll reads host memory), __syncthreads hands the request to the block, __threadfence_system orders the output
// writes before the done number as the host sees them.
//
// The arithmetic is ptx/elementwise.cu's, with the same round-to-nearest intrinsics, so results are bit-identical
// to the launched kernels and to numpy (tests/test_gpu_resident.py checks both).

#define RESIDENT_VECTOR_ADD 1u
#define RESIDENT_SAXPY 2u
#define RESIDENT_EXIT 0xFFFFFFFFu

extern "C" __global__ void resident_lane(volatile unsigned int* ctrl, const float* in, float* out)
{
    __shared__ unsigned int req, op, n, off;
    __shared__ float alpha;
    // The done number, not 0: the host stops and restarts the block around driver calls that wait for running
    // kernels (graph instantiation), and a restarted block must not serve the last request again.
    unsigned int last = ctrl[1];
    for (;;) {
        if (threadIdx.x == 0) {
            unsigned int r;
            // A pending request is served before a stop is obeyed: the host may stop a lane with a task in flight.
            while ((r = ctrl[0]) == last && ctrl[2] == 0u) { }
            if (r == last) {
                req = RESIDENT_EXIT;
            } else {
                __threadfence_system();
                req = r;
                op = ctrl[3];
                n = ctrl[4];
                alpha = __uint_as_float(ctrl[5]);
                off = ctrl[6];
            }
        }
        __syncthreads();
        const unsigned int r = req;
        if (r == RESIDENT_EXIT) return;
        __threadfence_system();
        const volatile float* a = in;
        const volatile float* b = in + off;
        if (op == RESIDENT_VECTOR_ADD) {
            for (unsigned int i = threadIdx.x; i < n; i += blockDim.x) out[i] = __fadd_rn(a[i], b[i]);
        } else if (op == RESIDENT_SAXPY) {
            for (unsigned int i = threadIdx.x; i < n; i += blockDim.x) out[i] = __fadd_rn(__fmul_rn(alpha, a[i]), b[i]);
        }
        __threadfence_system();
        __syncthreads();
        if (threadIdx.x == 0) ctrl[1] = r;
        last = r;
        __syncthreads();
    }
}
