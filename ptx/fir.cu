// fir: out[i] = sum_{j=0}^{min(t-1, i)} taps[j] * signal[i - j], i.e. np.convolve(signal, taps)[:n], float32.
//
// ABI: (const float* signal, const float* taps, float* out, int n, int t). Launch: block (256, 1, 1),
// grid (ceil(n/256), 1, 1), t * 4 bytes of dynamic shared memory (t <= 4096, so <= 16 KiB).
// Every block stages all taps in shared memory once: each tap is then read from shared memory by all
// threads of the block, and the signal reads of neighbouring threads coalesce.
// Each output is a dot product of at most t terms accumulated with FMA in ascending j order:
// |error| <= min(t, i+1) * 2^-24 * sum_j |taps[j]| |signal[i-j]|.

extern "C" __global__ void fir(const float* __restrict__ signal, const float* __restrict__ taps,
                               float* __restrict__ out, int n, int t)
{
    extern __shared__ float s_taps[];
    for (int j = threadIdx.x; j < t; j += blockDim.x) {
        s_taps[j] = taps[j];
    }
    // Every thread reaches this barrier: the bounds check comes after it.
    __syncthreads();

    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const int jmax = i < (long long)(t - 1) ? (int)i : t - 1;
        float acc = 0.0f;
        for (int j = 0; j <= jmax; ++j) {
            acc = fmaf(s_taps[j], signal[i - j], acc);
        }
        out[i] = acc;
    }
}
