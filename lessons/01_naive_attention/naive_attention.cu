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
    /* TODO (about 15 lines): flat index idx over B*H*M*N in s's layout [B, H, M, N]; peel off j, i, h, b with % and /;
     * g = h / (H / G); dot product over d; loop idx += gridDim.x * blockDim.x. */
}

/* One thread per score: hide the keys a causal query must not see. */
static __global__ void mask_kernel(attn_shape sh, float *__restrict__ s)
{
    /* TODO (about 10 lines): same flat index as scores_kernel; t = N - M + i; write -INFINITY where j > t. */
}

/* One warp per row of length n: the max and the sum are warp reductions with shuffles. */
static __global__ void softmax_kernel(float *__restrict__ x, long rows, int n)
{
    /* TODO (about 15 lines): lane l handles entries l, l + 32, ...; reduce the max with __shfl_xor_sync, then the
     * sum of expf(x - max), then write expf(x - max) / sum. A row of all -inf gets zeros. */
}

/* One thread per output element o[b,i,h,d]: neighbouring threads take neighbouring d, so the
 * reads of a V row are coalesced; the P row is the same for all of them (a broadcast). */
static __global__ void pv_kernel(attn_shape sh, const float *__restrict__ p, const float *__restrict__ v,
                                 float *__restrict__ o)
{
    /* TODO (about 15 lines): flat index over o's layout [B, M, H, D]; peel off d, h, i, b; sum over j of
     * p[b,h,i,j] * v[b,j,g,d]. */
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

    /* TODO (about 10 lines): launch the four kernels in order on `stream` with kThreads threads per block and
     * grid_for(...) blocks; softmax_kernel needs one warp (not one thread) per row. Check each
     * launch with attn_cuda_launch_status("name"). */
    return ATTN_ERR_NOT_IMPLEMENTED;
}
