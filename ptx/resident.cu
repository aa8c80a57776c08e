// The resident lane (zmqrt/backends/resident.py): one block that never returns, serving small elementwise tasks
// from a mailbox in mapped pinned host memory, so that a task costs no driver call (no launch, no query).
//
// Every read of host memory is a PCIe round trip of about a microsecond, so a request is one 16-byte read:
//   word A (u64): request number (bits 0..31), n (bits 32..55), op (bits 56..63)
//   word B (u64): request number (bits 0..31), alpha as float bits (bits 32..63)
// The host stores B, then A (aligned 8-byte stores, each atomic); a read that caught it between the two shows
// two different request numbers and is simply repeated. The inputs are written before either word, and x86 keeps
// stores in program order, so a request seen here has its inputs in host memory. The done number goes to a
// separate cache line, which the host polls. Op RESIDENT_EXIT returns (after publishing its number, so that a
// restarted block, which starts from the done number, does not see it again).
//
// Two layouts, chosen by the launch's block size (the host picks it: resident.py's POLLER_WARPS):
// - RESIDENT_WORKERS threads: thread 0 polls and __syncthreads hands the request to the block.
// - More: the first (blockDim.x - RESIDENT_WORKERS) / 32 warps are pollers (lane 0 of each polls; they do no
//   arithmetic) and the last RESIDENT_WORKERS threads are workers, which wait on shared memory. One poller's read
//   is in flight at a time, so a request stored just after a read left waits most of a round trip for the next
//   one; several pollers, out of phase, each with its own read in flight, see it sooner. The first to see a
//   request claims it (an atomicCAS on the successor of the last claimed number, so a late poller can neither
//   publish it twice nor publish an older one) and publishes it; workers never wait for a poller's read.
//
// RESIDENT_STAMPS (bench/resident_variants.py only): worker 0 records clock64 at four points of each request in
// resident_stamps, by request number, to split the GPU stage.
//
// The arithmetic is ptx/elementwise.cu's, with the same round-to-nearest intrinsics, so results are bit-identical
// to the launched kernels and to numpy (tests/test_gpu_resident.py checks both).

#define RESIDENT_VECTOR_ADD 1u
#define RESIDENT_SAXPY 2u
#define RESIDENT_EXIT 255u
#define RESIDENT_WORKERS 256

#ifdef RESIDENT_STAMPS
#define RESIDENT_STAMP_SLOTS 4096
__device__ unsigned long long resident_stamps[RESIDENT_STAMP_SLOTS * 4];
#define STAMP(r, k) if (threadIdx.x == blockDim.x - RESIDENT_WORKERS) \
    resident_stamps[((r) % RESIDENT_STAMP_SLOTS) * 4 + (k)] = clock64()
#else
#define STAMP(r, k)
#endif

// The release before the done number (and the acquire after a request is seen): membar.sys by default.
#ifdef RESIDENT_FENCE_ACQREL
#define SYSTEM_FENCE() asm volatile("fence.acq_rel.sys;" ::: "memory")
#else
#define SYSTEM_FENCE() __threadfence_system()
#endif

__device__ __forceinline__ void read_mbox(const unsigned long long* mbox, unsigned long long& a, unsigned long long& b)
{
    asm volatile("ld.volatile.v2.u64 {%0, %1}, [%2];" : "=l"(a), "=l"(b) : "l"(mbox) : "memory");
}

__device__ __forceinline__ void serve(unsigned int op, unsigned int n, float alpha, const float* in, float* out,
                                      unsigned int second_offset, unsigned int first, unsigned int step)
{
    const volatile float* x = in;
    const volatile float* y = in + second_offset;
    if (op == RESIDENT_VECTOR_ADD) {
        for (unsigned int i = first; i < n; i += step) out[i] = __fadd_rn(x[i], y[i]);
    } else if (op == RESIDENT_SAXPY) {
        for (unsigned int i = first; i < n; i += step) out[i] = __fadd_rn(__fmul_rn(alpha, x[i]), y[i]);
    }
}

__device__ __forceinline__ unsigned int next_request(unsigned int r)
{
    return r == 0xFFFFFFFFu ? 1u : r + 1u;  // the host's numbering: 32 bits, never 0
}

extern "C" __global__ void resident_lane(const unsigned long long* mbox, volatile unsigned int* done,
                                         const float* in, float* out, unsigned int second_offset)
{
    __shared__ unsigned int req, op, n;
    __shared__ float alpha;
    __shared__ unsigned int claimed;
    __shared__ volatile unsigned int exiting;
    // The done number, not 0: the host stops and restarts the block around driver calls that wait for running
    // kernels (graph instantiation), and a restarted block must not serve the last request again.
    unsigned int last = done[0];
    if (blockDim.x <= RESIDENT_WORKERS) {  // one poller: thread 0
        for (;;) {
            if (threadIdx.x == 0) {
                unsigned long long a, b;
                for (;;) {
                    read_mbox(mbox, a, b);
                    const unsigned int r = (unsigned int)a;
                    if (r != last && r == (unsigned int)b) break;
                }
                req = (unsigned int)a;
                n = (unsigned int)(a >> 32) & 0xFFFFFFu;
                op = (unsigned int)(a >> 56);
                alpha = __uint_as_float((unsigned int)(b >> 32));
            }
            __syncthreads();
            const unsigned int r = req;
            last = r;
            STAMP(r, 0);
            if (op == RESIDENT_EXIT) {
                if (threadIdx.x == 0) done[0] = r;
                return;
            }
            SYSTEM_FENCE();
            STAMP(r, 1);
            serve(op, n, alpha, in, out, second_offset, threadIdx.x, blockDim.x);
            STAMP(r, 2);
            SYSTEM_FENCE();
            __syncthreads();
            STAMP(r, 3);
            if (threadIdx.x == 0) done[0] = r;
            __syncthreads();
        }
    }

    volatile unsigned int* vreq = &req;
    volatile unsigned int* vop = &op;
    volatile unsigned int* vn = &n;
    volatile float* valpha = &alpha;
    if (threadIdx.x == 0) {
        req = claimed = last;
        exiting = 0;
    }
    __syncthreads();  // the only barrier of the whole block: from here pollers and workers never wait for each other
    const unsigned int pollers = blockDim.x - RESIDENT_WORKERS;
    if (threadIdx.x < pollers) {
        if (threadIdx.x % 32 != 0) return;
        // Out of phase from the start; reads of different lengths keep them so.
        __nanosleep(threadIdx.x / 32 * 300);
        for (;;) {
            unsigned long long a, b;
            read_mbox(mbox, a, b);
            if (exiting) return;
            const unsigned int r = (unsigned int)a;
            if (r == (unsigned int)b && r != last) {
                last = r;
                // Only the successor of the last claimed request, once: another poller may have seen it first,
                // and a read that left before the last claim may return an older request.
                const unsigned int prev = *(volatile unsigned int*)&claimed;
                if (r == next_request(prev) && atomicCAS(&claimed, prev, r) == prev) {
                    *vn = (unsigned int)(a >> 32) & 0xFFFFFFu;
                    *vop = (unsigned int)(a >> 56);
                    *valpha = __uint_as_float((unsigned int)(b >> 32));
                    __threadfence_block();
                    *vreq = r;  // last: a worker that sees it sees the request's fields
                    if ((unsigned int)(a >> 56) == RESIDENT_EXIT) {
                        exiting = 1;
                        return;
                    }
                }
            }
        }
    }
    const unsigned int w = threadIdx.x - pollers;  // this worker's index
    for (;;) {
        unsigned int r;
        while ((r = *vreq) == last) { }
        __threadfence_block();
        last = r;
        STAMP(r, 0);
        const unsigned int o = *vop;
        if (o == RESIDENT_EXIT) {
            if (w == 0) done[0] = r;
            return;
        }
        SYSTEM_FENCE();
        STAMP(r, 1);
        serve(o, *vn, *valpha, in, out, second_offset, w, RESIDENT_WORKERS);
        STAMP(r, 2);
        SYSTEM_FENCE();
        asm volatile("bar.sync 1, %0;" :: "r"(RESIDENT_WORKERS) : "memory");  // the workers only
        STAMP(r, 3);
        if (w == 0) done[0] = r;
    }
}
