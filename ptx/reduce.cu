// reduce_sum: out[0] = sum(x), float32, in a single launch of a single block.
//
// ABI: (const float* x, float* out, int n). Launch: grid (1, 1, 1), block (1024, 1, 1) (any multiple of 32
// up to 1024 works), no dynamic shared memory. Because exactly one block writes out[0] once, the output
// needs no pre-zeroing and no atomics, and the result is deterministic run to run.
//
// Each thread sums its grid-stride share in float (ceil(n/1024) terms), then a warp-shuffle tree and a
// tree over the 32 warp sums finish: depth ceil(n/1024) + 10, so |error| <= (ceil(n/1024) + 10) * 2^-24 * sum|x|.

extern "C" __global__ void reduce_sum(const float* __restrict__ x, float* __restrict__ out, int n)
{
    __shared__ float warp_sums[32];
    // A second block would race on out[0]; the plan never launches one, this makes misuse harmless.
    if (blockIdx.x != 0) {
        return;
    }

    float acc = 0.0f;
    for (long long i = threadIdx.x; i < n; i += blockDim.x) {
        acc += x[i];
    }
    for (int offset = 16; offset > 0; offset >>= 1) {
        acc += __shfl_down_sync(0xffffffffu, acc, offset);
    }

    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    if (lane == 0) {
        warp_sums[warp] = acc;
    }
    __syncthreads();

    if (warp == 0) {
        const int nwarps = (blockDim.x + 31) >> 5;
        acc = lane < nwarps ? warp_sums[lane] : 0.0f;
        for (int offset = 16; offset > 0; offset >>= 1) {
            acc += __shfl_down_sync(0xffffffffu, acc, offset);
        }
        if (lane == 0) {
            out[0] = acc;
        }
    }
}
