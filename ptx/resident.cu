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
// Ordering (RESIDENT_FENCE, 3 unless the build says; bench/resident_variants.py times the modes against each other):
//   0: every thread runs __threadfence_system after the request is seen and again after its output writes.
//   1: thread 0 alone: a system fence after it sees the request (before the barrier that hands it to the block),
//      and one after the barrier that follows the output writes, before the done number. Fences are cumulative:
//      what other threads wrote before a barrier is ordered by thread 0's fence after it (the pattern of
//      cooperative groups' grid sync).
//   2: as 1, with the mailbox read as ld.acquire.sys instead of the first fence.
//   3: as 2, with the done number stored as st.release.sys instead of the second fence.
//   9: as 2 without any release: NOT safe (a host may see the done number before the output); timing only.
//
// RESIDENT_STAMPS (bench/resident_variants.py only): thread 0 records clock64 at four points of each request in
// resident_stamps, by request number, to split the GPU stage.
//
// The arithmetic is ptx/elementwise.cu's, with the same round-to-nearest intrinsics, so results are bit-identical
// to the launched kernels and to numpy (tests/test_gpu_resident.py checks both).

#define RESIDENT_VECTOR_ADD 1u
#define RESIDENT_SAXPY 2u
#define RESIDENT_EXIT 255u

#ifndef RESIDENT_FENCE
#define RESIDENT_FENCE 3
#endif

#ifdef RESIDENT_STAMPS
#define RESIDENT_STAMP_SLOTS 4096
__device__ unsigned long long resident_stamps[RESIDENT_STAMP_SLOTS * 4];
#define STAMP(r, k) if (threadIdx.x == 0) resident_stamps[((r) % RESIDENT_STAMP_SLOTS) * 4 + (k)] = clock64()
#else
#define STAMP(r, k)
#endif

extern "C" __global__ void resident_lane(const unsigned long long* mbox, volatile unsigned int* done,
                                         const float* in, float* out, unsigned int second_offset)
{
    __shared__ unsigned int req, op, n;
    __shared__ float alpha;
    // The done number, not 0: the host stops and restarts the block around driver calls that wait for running
    // kernels (graph instantiation), and a restarted block must not serve the last request again.
    unsigned int last = done[0];
    for (;;) {
        if (threadIdx.x == 0) {
            unsigned long long a, b;
            for (;;) {
#if RESIDENT_FENCE >= 2
                asm volatile("ld.acquire.sys.global.v2.u64 {%0, %1}, [%2];" : "=l"(a), "=l"(b) : "l"(mbox) : "memory");
#else
                asm volatile("ld.volatile.global.v2.u64 {%0, %1}, [%2];" : "=l"(a), "=l"(b) : "l"(mbox) : "memory");
#endif
                const unsigned int r = (unsigned int)a;
                if (r != last && r == (unsigned int)b) break;
            }
#if RESIDENT_FENCE == 1
            __threadfence_system();
#endif
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
#if RESIDENT_FENCE == 0
        __threadfence_system();
#endif
        STAMP(r, 1);
        const volatile float* x = in;
        const volatile float* y = in + second_offset;
        if (op == RESIDENT_VECTOR_ADD) {
            for (unsigned int i = threadIdx.x; i < n; i += blockDim.x) out[i] = __fadd_rn(x[i], y[i]);
        } else if (op == RESIDENT_SAXPY) {
            for (unsigned int i = threadIdx.x; i < n; i += blockDim.x) out[i] = __fadd_rn(__fmul_rn(alpha, x[i]), y[i]);
        }
        STAMP(r, 2);
#if RESIDENT_FENCE == 0
        __threadfence_system();
        __syncthreads();
        STAMP(r, 3);
        if (threadIdx.x == 0) done[0] = r;
#else
        __syncthreads();
        if (threadIdx.x == 0) {
#if RESIDENT_FENCE == 3
            STAMP(r, 3);
            asm volatile("st.release.sys.global.u32 [%0], %1;" :: "l"(done), "r"(r) : "memory");
#else
#if RESIDENT_FENCE != 9
            __threadfence_system();
#endif
            STAMP(r, 3);
            done[0] = r;
#endif
        }
#endif
        __syncthreads();
    }
}
