// matmul: C[M,N] = A[M,K] @ B[K,N], float32, row-major (C order).
//
// ABI: (A, B, C, int M, int N, int K). Launch: block (TILE, TILE, 1), grid (ceil(N/TILE), ceil(M/TILE), 1),
// static shared memory only. Each block stages one TILE x TILE tile of A and of B per step of K; tiles that
// run past an edge are padded with zeros so any M, N, K (including 1 and non-multiples of TILE) is exact.
// Each output accumulates its K products in ascending k order with FMA, so the error is at most
// K * 2^-24 * (|A| @ |B|) per element, the classic dot-product bound.

#define TILE 16

extern "C" __global__ void matmul(const float* __restrict__ A, const float* __restrict__ B,
                                  float* __restrict__ C, int M, int N, int K)
{
    __shared__ float As[TILE][TILE];
    __shared__ float Bs[TILE][TILE];

    const int tx = threadIdx.x;
    const int ty = threadIdx.y;
    const int row = blockIdx.y * TILE + ty;
    const int col = blockIdx.x * TILE + tx;

    float acc = 0.0f;
    for (int k0 = 0; k0 < K; k0 += TILE) {
        const int ka = k0 + tx;
        const int kb = k0 + ty;
        As[ty][tx] = (row < M && ka < K) ? A[(long long)row * K + ka] : 0.0f;
        Bs[ty][tx] = (kb < K && col < N) ? B[(long long)kb * N + col] : 0.0f;
        __syncthreads();
        // Only the valid part of the last tile is summed, so padding adds no rounding step.
        const int kmax = min(TILE, K - k0);
        for (int k = 0; k < kmax; ++k) {
            acc = fmaf(As[ty][k], Bs[k][tx], acc);
        }
        __syncthreads();
    }
    if (row < M && col < N) {
        C[(long long)row * N + col] = acc;
    }
}
