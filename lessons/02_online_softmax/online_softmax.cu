/*
 * online_softmax.cu - lesson 02, CUDA part: fused attention with the online softmax (fp32).
 *
 * Parallelisation
 *   block  = 4 warps; owns a tile of Br = 16 query rows of one (b, h); grid (ceil(M/Br), H, B)
 *   warp   = 4 of those rows; lane l computes the score of key l of the current K tile for each
 *            of its 4 rows, and owns output dims d = l, l + 32, ... of the accumulator
 *   shared = the Q tile (pre-scaled), and one tile of Bc = 32 keys of K and V at a time
 *
 * For each K/V tile: scores (dot products out of shared memory), the online softmax update
 * per row (a warp max, one exp per score, the accumulator rescaled by alpha = 2^(m - m_new)),
 * then P V with each p broadcast across the warp by a shuffle. The N x N matrix never exists:
 * each score lives in one register for one tile. Scores are kept in base 2 (q is pre-multiplied
 * by scale * log2(e)) so that each exponential is one exp2f; lse is turned back into natural log.
 */
#include <cuda_runtime.h>
#include <math.h>

#include "attn_gpu.h"
#include "online_softmax.h"

namespace {

constexpr int kWarps = 4;
constexpr int kRowsPerWarp = 4;
constexpr int kBr = kWarps * kRowsPerWarp; /* query rows per block */
constexpr int kBc = 32;                    /* keys per tile: one per lane */
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

__device__ __forceinline__ float warp_max(float x)
{
    for (int off = 16; off > 0; off /= 2) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, off));
    return x;
}

__device__ __forceinline__ float warp_sum(float x)
{
    for (int off = 16; off > 0; off /= 2) x += __shfl_xor_sync(0xffffffffu, x, off);
    return x;
}

template <int D>
__global__ void __launch_bounds__(kWarps * 32) online_attention_kernel(attn_shape sh, float scale_log2,
                                                                      const float *__restrict__ q,
                                                                      const float *__restrict__ k,
                                                                      const float *__restrict__ v,
                                                                      float *__restrict__ o, float *__restrict__ lse)
{
    constexpr int kPad = D + 4; /* K rows padded by 16 bytes: lane l's float4 reads hit distinct banks */
    constexpr int kDimsPerLane = D / 32;
    __shared__ __align__(16) float q_s[kBr][D];
    __shared__ __align__(16) float k_s[kBc][kPad];
    __shared__ __align__(16) float v_s[kBc][D];

    /* TODO (about 95 lines): (1) load the block's Q tile into q_s, scaled by scale_log2, zero rows past M;
     * (2) for each tile of 32 keys (stop after the last key any row of the block can see): load K
     * and V into shared memory (zeros past N: 0 * garbage can be NaN), __syncthreads, each lane
     * scores its key for the warp's 4 rows, mask (s >= N, or s > t when causal) to -inf, update m,
     * l and the accumulator with alpha = exp2f(m - m_new), then accumulate p * V with p taken from
     * lane j by __shfl_sync; __syncthreads before the next load. (3) o = acc / l, lse = (m +
     * log2(l)) * ln 2. Keep l as a per-lane partial sum and reduce it across the warp once at the end. */
}

} // namespace

extern "C" int online_attention_cuda(const attn_shape *shape, const float *q, const float *k, const float *v,
                                     float *o, float *lse, cudaStream_t stream)
{
    int st = attn_check_shape(shape);
    if (st) return st;
    if (!q || !k || !v || !o || !lse)
        return attn_fail(ATTN_ERR_NULL_POINTER, "online_attention_cuda: q, k, v, o and lse must not be NULL");
    if (shape->D != 64 && shape->D != 128)
        return attn_fail(ATTN_ERR_UNSUPPORTED_D, "online_attention_cuda: D=%d, this kernel supports 64 and 128",
                         shape->D);
    if (shape->H > 65535 || shape->B > 65535)
        return attn_fail(ATTN_ERR_BAD_SHAPE, "online_attention_cuda: H=%d and B=%d must be <= 65535", shape->H,
                         shape->B);
    const float scale_log2 = attn_softmax_scale(shape) * kLog2e;
    (void)scale_log2;

    /* TODO (about 5 lines): grid (ceil(M / kBr), H, B), kWarps * 32 threads; pick online_attention_kernel<64> or
     * <128> by shape->D; return attn_cuda_launch_status("online_attention_kernel"). */
    return ATTN_ERR_NOT_IMPLEMENTED;
}
