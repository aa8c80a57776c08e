// Elementwise float32 kernels: vector_add and saxpy.
//
// ABI (zmqrt/kernels/spec.py): input pointers, output pointers, then the scalars the LaunchPlan lists.
// Both kernels use a grid-stride loop, so any grid is correct; the plan launches one thread per element.
// The arithmetic is written with explicit round-to-nearest intrinsics so that NVRTC cannot contract
// alpha*x + y into an FMA: the result is then bit-identical to numpy's two separately rounded operations.

extern "C" __global__ void vector_add(const float* __restrict__ a, const float* __restrict__ b,
                                      float* __restrict__ out, int n)
{
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        out[i] = __fadd_rn(a[i], b[i]);
    }
}

extern "C" __global__ void saxpy(const float* __restrict__ x, const float* __restrict__ y,
                                 float* __restrict__ out, int n, float alpha)
{
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        out[i] = __fadd_rn(__fmul_rn(alpha, x[i]), y[i]);
    }
}
