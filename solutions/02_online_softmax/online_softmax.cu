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

    /* BEGIN SOLUTION */
    /* HINT: (1) load the block's Q tile into q_s, scaled by scale_log2, zero rows past M;
     * (2) for each tile of 32 keys (stop after the last key any row of the block can see): load K
     * and V into shared memory (zeros past N: 0 * garbage can be NaN), __syncthreads, each lane
     * scores its key for the warp's 4 rows, mask (s >= N, or s > t when causal) to -inf, update m,
     * l and the accumulator with alpha = exp2f(m - m_new), then accumulate p * V with p taken from
     * lane j by __shfl_sync; __syncthreads before the next load. (3) o = acc / l, lse = (m +
     * log2(l)) * ln 2. Keep l as a per-lane partial sum and reduce it across the warp once at the end. */
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    /* Heaviest causal tiles (the last rows) first, so the long blocks do not start last. */
    const int i0 = (gridDim.x - 1 - blockIdx.x) * kBr;
    const int h = blockIdx.y, b = blockIdx.z, g = h / (sh.H / sh.G);
    const long offset = (long)sh.N - sh.M; /* query i sits at position t = offset + i */
    const size_t kv_row = (size_t)sh.G * D;
    const float *k_bg = k + (size_t)b * sh.N * kv_row + (size_t)g * D;
    const float *v_bg = v + (size_t)b * sh.N * kv_row + (size_t)g * D;

    for (int e = threadIdx.x; e < kBr * D / 4; e += blockDim.x) {
        const int r = e / (D / 4), c = e % (D / 4);
        float4 x = make_float4(0.f, 0.f, 0.f, 0.f);
        if (i0 + r < sh.M) x = reinterpret_cast<const float4 *>(q + (((size_t)b * sh.M + i0 + r) * sh.H + h) * D)[c];
        x.x *= scale_log2, x.y *= scale_log2, x.z *= scale_log2, x.w *= scale_log2;
        reinterpret_cast<float4 *>(&q_s[r][0])[c] = x;
    }

    float m[kRowsPerWarp], l[kRowsPerWarp], acc[kRowsPerWarp][kDimsPerLane];
    long t[kRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
        m[r] = -INFINITY;
        l[r] = 0.f;
#pragma unroll
        for (int c = 0; c < kDimsPerLane; ++c) acc[r][c] = 0.f;
        const int i = min(i0 + warp * kRowsPerWarp + r, sh.M - 1); /* rows past M: computed, not stored */
        t[r] = offset + i;
    }
    const long last_key = sh.causal ? offset + min(i0 + kBr, sh.M) - 1 : (long)sh.N - 1;

    for (long s0 = 0; s0 <= last_key; s0 += kBc) {
        __syncthreads(); /* everyone is done with the previous K/V tile */
        for (int e = threadIdx.x; e < kBc * D / 4; e += blockDim.x) {
            const int j = e / (D / 4), c = e % (D / 4);
            float4 kx = make_float4(0.f, 0.f, 0.f, 0.f), vx = kx;
            if (s0 + j < sh.N) {
                kx = reinterpret_cast<const float4 *>(k_bg + (size_t)(s0 + j) * kv_row)[c];
                vx = reinterpret_cast<const float4 *>(v_bg + (size_t)(s0 + j) * kv_row)[c];
            }
            reinterpret_cast<float4 *>(&k_s[j][0])[c] = kx;
            reinterpret_cast<float4 *>(&v_s[j][0])[c] = vx;
        }
        __syncthreads(); /* the tile is in shared memory */

        /* Scores of key s = s0 + lane for the warp's rows (base-2 logits). */
        float p[kRowsPerWarp];
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r) p[r] = 0.f;
#pragma unroll 8
        for (int d = 0; d < D; d += 4) {
            const float4 kk = *reinterpret_cast<const float4 *>(&k_s[lane][d]);
#pragma unroll
            for (int r = 0; r < kRowsPerWarp; ++r) {
                const float4 qq = *reinterpret_cast<const float4 *>(&q_s[warp * kRowsPerWarp + r][d]);
                p[r] = fmaf(qq.x, kk.x, fmaf(qq.y, kk.y, fmaf(qq.z, kk.z, fmaf(qq.w, kk.w, p[r]))));
            }
        }

        const long s = s0 + lane;
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r) {
            const bool visible = s < sh.N && (!sh.causal || s <= t[r]);
            const float x = visible ? p[r] : -INFINITY;
            const float m_new = fmaxf(m[r], warp_max(x));
            /* A row that has seen nothing but masked keys keeps m = -inf: exp2f(-inf - -inf) would
             * be NaN, so such a row rescales by 1 and adds 0. */
            const float alpha = m_new == -INFINITY ? 1.f : exp2f(m[r] - m_new);
            p[r] = m_new == -INFINITY ? 0.f : exp2f(x - m_new);
            l[r] = l[r] * alpha + p[r];
#pragma unroll
            for (int c = 0; c < kDimsPerLane; ++c) acc[r][c] *= alpha;
            m[r] = m_new;
        }

        /* acc += P V: key j's probability comes from lane j. */
#pragma unroll 4
        for (int j = 0; j < kBc; ++j) {
            float pj[kRowsPerWarp];
#pragma unroll
            for (int r = 0; r < kRowsPerWarp; ++r) pj[r] = __shfl_sync(0xffffffffu, p[r], j);
#pragma unroll
            for (int c = 0; c < kDimsPerLane; ++c) {
                const float vv = v_s[j][lane + 32 * c];
#pragma unroll
                for (int r = 0; r < kRowsPerWarp; ++r) acc[r][c] = fmaf(pj[r], vv, acc[r][c]);
            }
        }
    }

#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
        const int i = i0 + warp * kRowsPerWarp + r;
        const float l_row = warp_sum(l[r]);
        if (i >= sh.M) continue;
        const float inv_l = l_row > 0.f ? 1.f / l_row : 0.f;
        float *o_row = o + (((size_t)b * sh.M + i) * sh.H + h) * D;
#pragma unroll
        for (int c = 0; c < kDimsPerLane; ++c) o_row[lane + 32 * c] = acc[r][c] * inv_l;
        if (lane == 0) lse[((size_t)b * sh.H + h) * sh.M + i] = l_row > 0.f ? (m[r] + log2f(l_row)) * kLn2 : -INFINITY;
    }
    /* END SOLUTION */
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

    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: grid (ceil(M / kBr), H, B), kWarps * 32 threads; pick online_attention_kernel<64> or
     * <128> by shape->D; return attn_cuda_launch_status("online_attention_kernel"). */
    const dim3 grid((shape->M + kBr - 1) / kBr, shape->H, shape->B), block(kWarps * 32);
    if (shape->D == 64)
        online_attention_kernel<64><<<grid, block, 0, stream>>>(*shape, scale_log2, q, k, v, o, lse);
    else
        online_attention_kernel<128><<<grid, block, 0, stream>>>(*shape, scale_log2, q, k, v, o, lse);
    return attn_cuda_launch_status("online_attention_kernel");
    /* END SOLUTION */
}
