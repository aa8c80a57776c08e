// scale_add: out[i] = x[i] * factor + y[i], float32. A user kernel: see scale_add.toml and README.md.
//
// ABI for user kernels: input pointers, the output pointer, int n (element count), then the params in the
// order the .toml lists them (f32 -> float, i32 -> int). Launch: 1-D, one thread per element.

extern "C" __global__ void scale_add(const float* __restrict__ x, const float* __restrict__ y,
                                     float* __restrict__ out, int n, float factor)
{
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        // Separately rounded multiply and add (no FMA contraction): bit-identical to numpy's x * factor + y.
        out[i] = __fadd_rn(__fmul_rn(x[i], factor), y[i]);
    }
}
