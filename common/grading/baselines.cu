// baselines.cu - FROZEN copies of earlier lessons' reference kernels, used as speed baselines.
//
// A speed test times the learner's kernel against one of these in the same process. They are
// copies, not links to solutions/, so that a change to a solution (or to a learner's lesson
// file) can never move a baseline. Do not tune them: a faster baseline silently raises every
// later lesson's bar. Lesson 01's naive kernels and lesson 02's fused kernel, as first written.
#include <cuda_runtime.h>
#include <math.h>

#include "attn_gpu.h"
#include "baselines.h"

// ---------------------------------------------------------------- lesson 01: naive, four kernels
namespace naive {

const int kThreads = 256;

/* A grid that fills the GPU without exceeding the hardware limit; the kernels loop over the rest. */
inline int grid_for(size_t work_items, int per_block)
{
    size_t blocks = (work_items + per_block - 1) / per_block;
    return (int)(blocks < 65535 ? (blocks > 0 ? blocks : 1) : 65535);
}

/* One thread per score S[b,h,i,j]: a dot product of a query row with a key row. */
__global__ void naive_scores_kernel(attn_shape sh, float scale, const float *__restrict__ q, const float *__restrict__ k,
                              float *__restrict__ s)
{
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
}

/* One thread per score: hide the keys a causal query must not see. */
__global__ void naive_mask_kernel(attn_shape sh, float *__restrict__ s)
{
    const size_t total = (size_t)sh.B * sh.H * sh.M * sh.N;
    for (size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (size_t)gridDim.x * blockDim.x) {
        const long j = (long)(idx % sh.N);
        const int i = (int)((idx / sh.N) % sh.M);
        const long t = (long)sh.N - sh.M + i;
        if (j > t) s[idx] = -INFINITY;
    }
}

/* One warp per row of length n: the max and the sum are warp reductions with shuffles. */
__global__ void naive_softmax_kernel(float *__restrict__ x, long rows, int n)
{
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
}

/* One thread per output element o[b,i,h,d]: neighbouring threads take neighbouring d, so the
 * reads of a V row are coalesced; the P row is the same for all of them (a broadcast). */
__global__ void naive_pv_kernel(attn_shape sh, const float *__restrict__ p, const float *__restrict__ v,
                          float *__restrict__ o)
{
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
}

} // namespace naive

extern "C" size_t attn_baseline_naive_workspace_bytes(const attn_shape *shape)
{
    if (!shape) return 0;
    return (size_t)shape->B * shape->H * shape->M * shape->N * sizeof(float);
}

extern "C" int attn_baseline_naive_f32(const attn_shape *shape, const float *q, const float *k, const float *v,
                                    float *o, float *workspace, cudaStream_t stream)
{
    int st = attn_check_shape(shape);
    if (st) return st;
    if (!q || !k || !v || !o || !workspace)
        return attn_fail(ATTN_ERR_NULL_POINTER, "attn_baseline_naive_f32: q, k, v, o and workspace must not be NULL");
    const attn_shape sh = *shape;
    const float scale = attn_softmax_scale(shape);
    const size_t n_scores = (size_t)sh.B * sh.H * sh.M * sh.N;
    const long rows = (long)sh.B * sh.H * sh.M;
    naive::naive_scores_kernel<<<naive::grid_for(n_scores, naive::kThreads), naive::kThreads, 0, stream>>>(sh, scale, q, k, workspace);
    if ((st = attn_cuda_launch_status("baseline naive scores_kernel"))) return st;
    if (sh.causal) {
        naive::naive_mask_kernel<<<naive::grid_for(n_scores, naive::kThreads), naive::kThreads, 0, stream>>>(sh, workspace);
        if ((st = attn_cuda_launch_status("baseline naive mask_kernel"))) return st;
    }
    naive::naive_softmax_kernel<<<naive::grid_for((size_t)rows, naive::kThreads / 32), naive::kThreads, 0, stream>>>(workspace, rows, sh.N);
    if ((st = attn_cuda_launch_status("baseline naive softmax_kernel"))) return st;
    naive::naive_pv_kernel<<<naive::grid_for(attn_q_elems(&sh), naive::kThreads), naive::kThreads, 0, stream>>>(sh, workspace, v, o);
    return attn_cuda_launch_status("baseline naive pv_kernel");
}

// ---------------------------------------------------------------- lesson 02: fused online softmax
namespace online {


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
__global__ void __launch_bounds__(kWarps * 32) baseline_online_kernel(attn_shape sh, float scale_log2,
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
}

} // namespace online

extern "C" int attn_baseline_online_f32(const attn_shape *shape, const float *q, const float *k, const float *v,
                                     float *o, float *lse, cudaStream_t stream)
{
    int st = attn_check_shape(shape);
    if (st) return st;
    if (!q || !k || !v || !o || !lse)
        return attn_fail(ATTN_ERR_NULL_POINTER, "attn_baseline_online_f32: q, k, v, o and lse must not be NULL");
    if (shape->D != 64 && shape->D != 128)
        return attn_fail(ATTN_ERR_UNSUPPORTED_D, "attn_baseline_online_f32: D=%d, this kernel supports 64 and 128",
                         shape->D);
    if (shape->H > 65535 || shape->B > 65535)
        return attn_fail(ATTN_ERR_BAD_SHAPE, "attn_baseline_online_f32: H=%d and B=%d must be <= 65535", shape->H,
                         shape->B);
    const float scale_log2 = attn_softmax_scale(shape) * online::kLog2e;
    const dim3 grid((shape->M + online::kBr - 1) / online::kBr, shape->H, shape->B), block(online::kWarps * 32);
    if (shape->D == 64)
        online::baseline_online_kernel<64><<<grid, block, 0, stream>>>(*shape, scale_log2, q, k, v, o, lse);
    else
        online::baseline_online_kernel<128><<<grid, block, 0, stream>>>(*shape, scale_log2, q, k, v, o, lse);
    return attn_cuda_launch_status("baseline online_attention_kernel");
}
