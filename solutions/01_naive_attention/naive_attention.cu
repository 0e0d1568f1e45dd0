/*
 * naive_attention.cu - lesson 01, CUDA part: one simple kernel per step.
 *
 *   scores_kernel   S = scale * Q K^T      one thread per score          S is B*H*M*N floats in memory
 *   mask_kernel     S[s] = -inf, s > t     one thread per score
 *   softmax_kernel  P = softmax(S)         one warp per row              in place
 *   pv_kernel       O = P V                one thread per output element
 *
 * Every kernel walks its elements with a grid-stride loop over a 64-bit flat index, so any
 * shape fits in a fixed-size grid. The score matrix makes this O(N^2) in memory and traffic:
 * lesson 02 removes it.
 */
#include <cuda_runtime.h>
#include <math.h>

#include "attn_gpu.h"
#include "naive_attention.h"

static const int kThreads = 256;

/* A grid that fills the GPU without exceeding the hardware limit; the kernels loop over the rest. */
static inline int grid_for(size_t work_items, int per_block)
{
    size_t blocks = (work_items + per_block - 1) / per_block;
    return (int)(blocks < 65535 ? (blocks > 0 ? blocks : 1) : 65535);
}

/* One thread per score S[b,h,i,j]: a dot product of a query row with a key row. */
static __global__ void scores_kernel(attn_shape sh, float scale, const float *__restrict__ q, const float *__restrict__ k,
                                     float *__restrict__ s)
{
    /* BEGIN SOLUTION */
    /* HINT: flat index idx over B*H*M*N in s's layout [B, H, M, N]; peel off j, i, h, b with % and /;
     * g = h / (H / G); dot product over d; loop idx += gridDim.x * blockDim.x. */
    const size_t total = (size_t)sh.B * sh.H * sh.M * sh.N;
    for (size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (size_t)gridDim.x * blockDim.x) {
        const int j = (int)(idx % sh.N);
        const int i = (int)((idx / sh.N) % sh.M);
        const int h = (int)((idx / ((size_t)sh.N * sh.M)) % sh.H);
        const int b = (int)(idx / ((size_t)sh.N * sh.M * sh.H));
        const int g = h / (sh.H / sh.G);
        const float *qi = q + (((size_t)b * sh.M + i) * sh.H + h) * sh.D;
        const float *kj = k + (((size_t)b * sh.N + j) * sh.G + g) * sh.D;
        float dot = 0.0f;
        for (int d = 0; d < sh.D; ++d) dot += qi[d] * kj[d];
        s[idx] = scale * dot;
    }
    /* END SOLUTION */
}

/* One thread per score: hide the keys a causal query must not see. */
static __global__ void mask_kernel(attn_shape sh, float *__restrict__ s)
{
    /* BEGIN SOLUTION */
    /* HINT: same flat index as scores_kernel; t = N - M + i; write -INFINITY where j > t. */
    const size_t total = (size_t)sh.B * sh.H * sh.M * sh.N;
    for (size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (size_t)gridDim.x * blockDim.x) {
        const long j = (long)(idx % sh.N);
        const int i = (int)((idx / sh.N) % sh.M);
        const long t = (long)sh.N - sh.M + i;
        if (j > t) s[idx] = -INFINITY;
    }
    /* END SOLUTION */
}

/* One warp per row of length n: the max and the sum are warp reductions with shuffles. */
static __global__ void softmax_kernel(float *__restrict__ x, long rows, int n)
{
    /* BEGIN SOLUTION */
    /* HINT: lane l handles entries l, l + 32, ...; reduce the max with __shfl_xor_sync, then the
     * sum of expf(x - max), then write expf(x - max) / sum. A row of all -inf gets zeros. */
    const int lane = threadIdx.x % 32;
    const long warps_per_grid = (long)gridDim.x * (blockDim.x / 32);
    for (long r = (long)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; r < rows; r += warps_per_grid) {
        float *row = x + (size_t)r * n;
        float mx = -INFINITY;
        for (int j = lane; j < n; j += 32) mx = fmaxf(mx, row[j]);
        for (int off = 16; off > 0; off /= 2) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
        if (mx == -INFINITY) {
            for (int j = lane; j < n; j += 32) row[j] = 0.0f;
            continue;
        }
        float sum = 0.0f;
        for (int j = lane; j < n; j += 32) sum += expf(row[j] - mx);
        for (int off = 16; off > 0; off /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, off);
        const float inv = 1.0f / sum;
        for (int j = lane; j < n; j += 32) row[j] = expf(row[j] - mx) * inv;
    }
    /* END SOLUTION */
}

/* One thread per output element o[b,i,h,d]: neighbouring threads take neighbouring d, so the
 * reads of a V row are coalesced; the P row is the same for all of them (a broadcast). */
static __global__ void pv_kernel(attn_shape sh, const float *__restrict__ p, const float *__restrict__ v,
                                 float *__restrict__ o)
{
    /* BEGIN SOLUTION */
    /* HINT: flat index over o's layout [B, M, H, D]; peel off d, h, i, b; sum over j of
     * p[b,h,i,j] * v[b,j,g,d]. */
    const size_t total = (size_t)sh.B * sh.M * sh.H * sh.D;
    for (size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (size_t)gridDim.x * blockDim.x) {
        const int d = (int)(idx % sh.D);
        const int h = (int)((idx / sh.D) % sh.H);
        const int i = (int)((idx / ((size_t)sh.D * sh.H)) % sh.M);
        const int b = (int)(idx / ((size_t)sh.D * sh.H * sh.M));
        const int g = h / (sh.H / sh.G);
        const float *prow = p + (((size_t)b * sh.H + h) * sh.M + i) * sh.N;
        const float *vcol = v + ((size_t)b * sh.N * sh.G + g) * sh.D + d;
        const size_t vstride = (size_t)sh.G * sh.D;
        float acc = 0.0f;
        for (int j = 0; j < sh.N; ++j) acc += prow[j] * vcol[j * vstride];
        o[idx] = acc;
    }
    /* END SOLUTION */
}

extern "C" size_t naive_attention_workspace_bytes(const attn_shape *shape)
{
    if (!shape) return 0;
    return (size_t)shape->B * shape->H * shape->M * shape->N * sizeof(float);
}

extern "C" int naive_attention_cuda(const attn_shape *shape, const float *q, const float *k, const float *v,
                                    float *o, float *workspace, cudaStream_t stream)
{
    int st = attn_check_shape(shape);
    if (st) return st;
    if (!q || !k || !v || !o || !workspace)
        return attn_fail(ATTN_ERR_NULL_POINTER, "naive_attention_cuda: q, k, v, o and workspace must not be NULL");
    const attn_shape sh = *shape;
    const float scale = attn_softmax_scale(shape);
    const size_t n_scores = (size_t)sh.B * sh.H * sh.M * sh.N;
    const long rows = (long)sh.B * sh.H * sh.M;
    (void)scale, (void)n_scores, (void)rows;

    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: launch the four kernels in order on `stream` with kThreads threads per block and
     * grid_for(...) blocks; softmax_kernel needs one warp (not one thread) per row. Check each
     * launch with attn_cuda_launch_status("name"). */
    scores_kernel<<<grid_for(n_scores, kThreads), kThreads, 0, stream>>>(sh, scale, q, k, workspace);
    if ((st = attn_cuda_launch_status("scores_kernel"))) return st;
    if (sh.causal) {
        mask_kernel<<<grid_for(n_scores, kThreads), kThreads, 0, stream>>>(sh, workspace);
        if ((st = attn_cuda_launch_status("mask_kernel"))) return st;
    }
    softmax_kernel<<<grid_for((size_t)rows, kThreads / 32), kThreads, 0, stream>>>(workspace, rows, sh.N);
    if ((st = attn_cuda_launch_status("softmax_kernel"))) return st;
    pv_kernel<<<grid_for(attn_q_elems(&sh), kThreads), kThreads, 0, stream>>>(sh, workspace, v, o);
    return attn_cuda_launch_status("pv_kernel");
    /* END SOLUTION */
}
