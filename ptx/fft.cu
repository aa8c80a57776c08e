// fft: forward complex64 FFT along the last axis, no normalization, like np.fft.fft(x, axis=-1).
//
// ABI: (const float2* x, float2* out, int n, int log2n). x holds rows x n contiguous complex64 values
// (interleaved re, im = float2). Launch: one block per row, grid (rows, 1, 1), block (min(max(n/2, 1), 512)),
// n * 8 bytes of dynamic shared memory (n <= 4096, so <= 32 KiB).
//
// Algorithm: iterative radix-2 decimation in time, in place in shared memory. The row is loaded in
// bit-reversed order, then log2(n) butterfly stages run, each separated by a barrier. Twiddles come from
// sincospif, whose argument -k/half is exact (half is a power of two), so each twiddle is within about one
// ulp: the normwise error is then O(log2(n) * 2^-24) relative to ||X||_2, the textbook radix-2 bound.

extern "C" __global__ void fft(const float2* __restrict__ x, float2* __restrict__ out, int n, int log2n)
{
    extern __shared__ float2 buf[];
    const long long base = (long long)blockIdx.x * n;

    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        // __brev reverses all 32 bits; keep the top log2n. A shift by 32 is undefined, hence the n == 1 case.
        const int r = log2n > 0 ? (int)(__brev((unsigned int)i) >> (32 - log2n)) : 0;
        buf[r] = x[base + i];
    }
    __syncthreads();

    const int pairs = n >> 1;
    for (int s = 1; s <= log2n; ++s) {
        const int half = 1 << (s - 1);
        for (int j = threadIdx.x; j < pairs; j += blockDim.x) {
            const int k = j & (half - 1);
            const int i0 = ((j >> (s - 1)) << s) + k;
            const int i1 = i0 + half;
            // w = exp(-2*pi*i*k / (2*half)) = exp(-pi*i*k/half)
            float sn, cs;
            sincospif(-(float)k / (float)half, &sn, &cs);
            const float2 u = buf[i0];
            const float2 v = buf[i1];
            const float tr = cs * v.x - sn * v.y;
            const float ti = cs * v.y + sn * v.x;
            buf[i0] = make_float2(u.x + tr, u.y + ti);
            buf[i1] = make_float2(u.x - tr, u.y - ti);
        }
        __syncthreads();
    }

    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        out[base + i] = buf[i];
    }
}
