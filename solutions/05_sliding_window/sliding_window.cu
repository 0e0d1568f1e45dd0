/*
 * sliding_window.cu - lesson 05, CUDA part: sliding-window attention. Query t sees the w keys
 * t - w + 1 .. t (its own position included). Tiles wholly outside that band are never loaded,
 * so the cost is O(N w) instead of O(N^2).
 *
 * Lesson 04's kernel (packed GQA rows, shared K/V tiles) with two changes:
 *   - the key loop starts at the tile holding the block's first visible key, t_first - w + 1,
 *     instead of at key 0;
 *   - a tile is masked when it crosses the causal diagonal (s > t), the lower window edge
 *     (s < t - w + 1) or the end of the keys; every other tile runs unmasked.
 * A block of 128 packed rows covers 128 / hpg positions, so it walks about (w + 128 / hpg) / 64
 * key tiles whatever N is.
 */
#include <cuda_runtime.h>
#include <math.h>

#include "attn_gpu.h"
#include "sliding_window.h"
#include "ptx.cuh"

using namespace ptx;

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kBr = 128;                   /* packed rows per block */
constexpr int kBc = 64;                    /* keys per tile */
constexpr int kRowsPerWarp = kBr / kWarps; /* 32 */
constexpr int kMTiles = kRowsPerWarp / 16;
constexpr int kNTiles = kBc / 8;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

/* Copy K or V rows [first, first + kBc) of kv head g into a swizzled tile (zeros past `limit`). */
template <int D>
__device__ __forceinline__ void load_kv_tile(uint32_t tile, const uint16_t *base, size_t stride, long first, long limit)
{
    constexpr int kChunks = D / 8, kRowStep = kThreads / kChunks;
    const int r0 = threadIdx.x / kChunks, c = threadIdx.x % kChunks;
    const uint32_t dst = tile + swizzle<D>(r0, c);
    const uint16_t *src = base + (size_t)(first + r0) * stride + c * 8;
#pragma unroll
    for (int it = 0; it < kBc / kRowStep; ++it) {
        const bool valid = first + r0 + it * kRowStep < limit;
        cp_async_16(dst + it * kRowStep * D * 2, valid ? src + (size_t)it * kRowStep * stride : base, valid);
    }
}

template <int D>
__global__ void __launch_bounds__(kThreads, 2)
    window_attention_kernel(attn_shape sh, int window, float scale_log2, int groups_per_chunk, const uint16_t *__restrict__ q,
                         const uint16_t *__restrict__ k, const uint16_t *__restrict__ v, uint16_t *__restrict__ o,
                         float *__restrict__ lse)
{
    constexpr int kDTiles = D / 8;
    constexpr int kRowBytes = D * 2;
    extern __shared__ __align__(128) uint8_t smem[];
    const uint32_t q_s = smem_addr(smem), k_s = q_s + kBr * kRowBytes, v_s = k_s + kBc * kRowBytes;

    /* BEGIN SOLUTION */
    /* HINT: lesson 04's kernel. What changes: the first key tile is the one holding t_first - w + 1
     * (K_j of that tile is the first copy, not K_0); the mask also applies when a tile starts before
     * t_last - w + 1, and hides keys s < t - w + 1 of each row. */
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int gid = lane / 4, tig = lane % 4;
    const int hpg = sh.H / sh.G;                      /* query heads per kv head */
    const long packed_rows = (long)sh.M * hpg;        /* rows of one (b, g) */
    const int row_blocks = (int)((packed_rows + kBr - 1) / kBr);
    const int chunk = blockIdx.x / (row_blocks * groups_per_chunk);
    const int rem = blockIdx.x % (row_blocks * groups_per_chunk);
    const int groups_here = min(groups_per_chunk, sh.G - chunk * groups_per_chunk);
    const int g = chunk * groups_per_chunk + rem % groups_here, b = blockIdx.y;
    const long R0 = (long)(row_blocks - 1 - rem / groups_here) * kBr;
    const long offset = (long)sh.N - sh.M;
    const size_t kv_stride = (size_t)sh.G * D;
    const uint16_t *q_bg = q + ((size_t)b * sh.M * sh.H + (size_t)g * hpg) * D; /* packed row R at (R/hpg)*H*D + (R%hpg)*D */
    uint16_t *o_bg = o + ((size_t)b * sh.M * sh.H + (size_t)g * hpg) * D;
    const uint16_t *k_bg = k + ((size_t)b * sh.N * sh.G + g) * D;
    const uint16_t *v_bg = v + ((size_t)b * sh.N * sh.G + g) * D;

    const long R_last = min(R0 + kBr, packed_rows) - 1;
    const long t_first = offset + R0 / hpg, t_last = offset + R_last / hpg;
    const long last_key = t_last; /* a window is causal */
    const int n_tiles = (int)(last_key / kBc) + 1;
    const long first_key = max(0L, t_first - window + 1);
    const int first_tile = (int)(first_key / kBc);

    { /* Q: thread copies chunk c of packed rows r0, r0 + kRowStep, ... */
        constexpr int kChunks = D / 8, kRowStep = kThreads / kChunks;
        const int r0 = threadIdx.x / kChunks, c = threadIdx.x % kChunks;
#pragma unroll
        for (int it = 0; it < kBr / kRowStep; ++it) {
            const long R = R0 + r0 + it * kRowStep;
            const bool valid = R < packed_rows;
            const uint16_t *src = valid ? q_bg + ((size_t)(R / hpg) * sh.H + R % hpg) * D + c * 8 : q;
            cp_async_16(q_s + swizzle<D>(r0 + it * kRowStep, c), src, valid);
        }
    }
    load_kv_tile<D>(k_s, k_bg, kv_stride, (long)first_tile * kBc, sh.N);
    cp_async_commit();

    float o_acc[kMTiles][kDTiles][4];
    float m_i[kMTiles][2], l_i[kMTiles][2];
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
        for (int dt = 0; dt < kDTiles; ++dt) o_acc[mt][dt][0] = o_acc[mt][dt][1] = o_acc[mt][dt][2] = o_acc[mt][dt][3] = 0.f;
        m_i[mt][0] = m_i[mt][1] = -INFINITY;
        l_i[mt][0] = l_i[mt][1] = 0.f;
    }
    const int warp_row0 = warp * kRowsPerWarp;
    uint32_t q_addr[4], k_addr[4], v_addr[4];
#pragma unroll
    for (int c = 0; c < 4; ++c) {
        q_addr[c] = q_s + (warp_row0 + lane % 16) * kRowBytes + (((2 * c + lane / 16) ^ (lane % 8)) * 16);
        k_addr[c] = k_s + (lane % 8 + (lane / 16) * 8) * kRowBytes + (((2 * c + (lane / 8) % 2) ^ (lane % 8)) * 16);
        v_addr[c] = v_s + (lane % 8 + ((lane / 8) % 2) * 8) * kRowBytes + (((2 * c + lane / 16) ^ (lane % 8)) * 16);
    }

    for (int j = first_tile; j < n_tiles; ++j) {
        const long s0 = (long)j * kBc;
        cp_async_wait_all();
        __syncthreads(); /* K_j (and Q) have landed for everyone; nobody still reads V_{j-1} */
        load_kv_tile<D>(v_s, v_bg, kv_stride, s0, sh.N);
        cp_async_commit();

        float s[kMTiles][kNTiles][4];
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
            for (int nt = 0; nt < kNTiles; ++nt) s[mt][nt][0] = s[mt][nt][1] = s[mt][nt][2] = s[mt][nt][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
            uint32_t a[kMTiles][4];
#pragma unroll
            for (int mt = 0; mt < kMTiles; ++mt) ldmatrix_x4(a[mt], q_addr[kk % 4] + mt * 16 * kRowBytes + (kk / 4) * 128);
#pragma unroll
            for (int np = 0; np < kNTiles / 2; ++np) {
                uint32_t bk[4];
                ldmatrix_x4(bk, k_addr[kk % 4] + np * 16 * kRowBytes + (kk / 4) * 128);
#pragma unroll
                for (int mt = 0; mt < kMTiles; ++mt) {
                    mma_bf16(s[mt][2 * np], a[mt], bk[0], bk[1]);
                    mma_bf16(s[mt][2 * np + 1], a[mt], bk[2], bk[3]);
                }
            }
        }

        /* Mask the tiles past the last key, crossing the causal diagonal of the block's first
         * position, or starting before the window of its last position; each row's own position
         * is R / hpg. */
        if (s0 + kBc > sh.N || s0 + kBc - 1 > t_first || s0 < t_last - window + 1) {
#pragma unroll
            for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
                for (int rr = 0; rr < 2; ++rr) {
                    const long t = offset + (R0 + warp_row0 + mt * 16 + gid + rr * 8) / hpg;
#pragma unroll
                    for (int nt = 0; nt < kNTiles; ++nt)
#pragma unroll
                        for (int e = 0; e < 2; ++e) {
                            const long key = s0 + nt * 8 + tig * 2 + e;
                            if (key >= sh.N || key > t || key < t - window + 1) s[mt][nt][2 * rr + e] = -INFINITY;
                        }
                }
        }

        uint32_t p[kMTiles][kNTiles][2];
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
            for (int rr = 0; rr < 2; ++rr) {
                float mx = m_i[mt][rr];
#pragma unroll
                for (int nt = 0; nt < kNTiles; ++nt) mx = fmaxf(mx, fmaxf(s[mt][nt][2 * rr], s[mt][nt][2 * rr + 1]));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                const float m_scaled = mx == -INFINITY ? 0.f : mx * scale_log2;
                const float alpha = fast_exp2(m_i[mt][rr] * scale_log2 - m_scaled);
                m_i[mt][rr] = mx;
                float row_sum = 0.f;
#pragma unroll
                for (int nt = 0; nt < kNTiles; ++nt) {
                    const float p0 = fast_exp2(fmaf(s[mt][nt][2 * rr], scale_log2, -m_scaled));
                    const float p1 = fast_exp2(fmaf(s[mt][nt][2 * rr + 1], scale_log2, -m_scaled));
                    row_sum += p0 + p1;
                    p[mt][nt][rr] = pack_bf16(p0, p1);
                }
                l_i[mt][rr] = l_i[mt][rr] * alpha + row_sum;
#pragma unroll
                for (int dt = 0; dt < kDTiles; ++dt) {
                    o_acc[mt][dt][2 * rr] *= alpha;
                    o_acc[mt][dt][2 * rr + 1] *= alpha;
                }
            }

        cp_async_wait_all();
        __syncthreads(); /* V_j has landed for everyone; nobody still reads K_j */
        if (j + 1 < n_tiles) {
            load_kv_tile<D>(k_s, k_bg, kv_stride, s0 + kBc, sh.N);
            cp_async_commit();
        }

#pragma unroll
        for (int kk = 0; kk < kBc / 16; ++kk) {
            uint32_t a[kMTiles][4];
#pragma unroll
            for (int mt = 0; mt < kMTiles; ++mt) {
                a[mt][0] = p[mt][2 * kk][0], a[mt][1] = p[mt][2 * kk][1];
                a[mt][2] = p[mt][2 * kk + 1][0], a[mt][3] = p[mt][2 * kk + 1][1];
            }
#pragma unroll
            for (int dp = 0; dp < D / 16; ++dp) {
                uint32_t bv[4];
                ldmatrix_x4_trans(bv, v_addr[dp % 4] + kk * 16 * kRowBytes + (dp / 4) * 128);
#pragma unroll
                for (int mt = 0; mt < kMTiles; ++mt) {
                    mma_bf16(o_acc[mt][2 * dp], a[mt], bv[0], bv[1]);
                    mma_bf16(o_acc[mt][2 * dp + 1], a[mt], bv[2], bv[3]);
                }
            }
        }
    }

#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
        for (int rr = 0; rr < 2; ++rr) {
            float l = l_i[mt][rr];
            l += __shfl_xor_sync(0xffffffffu, l, 1);
            l += __shfl_xor_sync(0xffffffffu, l, 2);
            const long R = R0 + warp_row0 + mt * 16 + gid + rr * 8;
            if (R >= packed_rows) continue;
            const long i = R / hpg;
            const int h = g * hpg + (int)(R % hpg);
            const float inv_l = l > 0.f ? 1.f / l : 0.f;
            uint16_t *o_row = o_bg + ((size_t)i * sh.H + R % hpg) * D;
#pragma unroll
            for (int dt = 0; dt < kDTiles; ++dt)
                *reinterpret_cast<uint32_t *>(o_row + dt * 8 + tig * 2) =
                    pack_bf16(o_acc[mt][dt][2 * rr] * inv_l, o_acc[mt][dt][2 * rr + 1] * inv_l);
            if (tig == 0)
                lse[((size_t)b * sh.H + h) * sh.M + i] = l > 0.f ? (m_i[mt][rr] * scale_log2 + log2f(l)) * kLn2 : -INFINITY;
        }
    /* END SOLUTION */
}

template <int D>
int launch(const attn_shape *shape, int window, float scale_log2, const uint16_t *q, const uint16_t *k, const uint16_t *v,
           uint16_t *o, float *lse, cudaStream_t stream)
{
    const int smem_bytes = (kBr + 2 * kBc) * D * 2;
    int st = attn_cuda_status(
        cudaFuncSetAttribute(window_attention_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes),
        "cudaFuncSetAttribute (shared memory)");
    int dev = 0, l2_bytes = 0;
    if (!st) st = attn_cuda_status(cudaGetDevice(&dev), "cudaGetDevice");
    if (!st) st = attn_cuda_status(cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, dev), "L2 size");
    if (st) return st;
    /* kv heads whose K and V fit in half of L2 together */
    const int groups_per_chunk = (int)fmax(1.0, fmin((double)shape->G, 0.5 * l2_bytes / (4.0 * shape->N * D)));
    const long packed_rows = (long)shape->M * (shape->H / shape->G);
    const dim3 grid((unsigned)((packed_rows + kBr - 1) / kBr) * (unsigned)shape->G, shape->B);
    window_attention_kernel<D><<<grid, kThreads, smem_bytes, stream>>>(*shape, window, scale_log2, groups_per_chunk, q, k, v, o,
                                                                          lse);
    return attn_cuda_launch_status("window_attention_kernel");
}

} // namespace

extern "C" int window_attention_cuda(const attn_shape *shape, int window, const uint16_t *q, const uint16_t *k,
                                     const uint16_t *v, uint16_t *o, float *lse, cudaStream_t stream)
{
    int st = attn_check_shape(shape);
    if (st) return st;
    if (!q || !k || !v || !o || !lse)
        return attn_fail(ATTN_ERR_NULL_POINTER, "window_attention_cuda: q, k, v, o and lse must not be NULL");
    if (shape->D != 64 && shape->D != 128)
        return attn_fail(ATTN_ERR_UNSUPPORTED_D, "window_attention_cuda: D=%d, this kernel supports 64 and 128", shape->D);
    if (((uintptr_t)q | (uintptr_t)k | (uintptr_t)v | (uintptr_t)o) % 16 != 0)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "window_attention_cuda: q, k, v and o must be 16-byte aligned");
    const double blocks = ceil((double)shape->M * (shape->H / shape->G) / kBr) * shape->G;
    if (shape->B > 65535 || blocks > 2147483647.0)
        return attn_fail(ATTN_ERR_BAD_SHAPE, "window_attention_cuda: B=%d must be <= 65535 and the grid < 2^31 blocks",
                         shape->B);
    if (window < 1) return attn_fail(ATTN_ERR_BAD_ARGUMENT, "window_attention_cuda: window=%d must be >= 1", window);
    if (!shape->causal)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "window_attention_cuda: a sliding window is causal (shape->causal = 0)");
    const float scale_log2 = attn_softmax_scale(shape) * kLog2e;
    (void)scale_log2;

    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: once the kernel body is written: launch<64>(...) or launch<128>(...) by shape->D. */
    if (shape->D == 64) return launch<64>(shape, window, scale_log2, q, k, v, o, lse, stream);
    return launch<128>(shape, window, scale_log2, q, k, v, o, lse, stream);
    /* END SOLUTION */
}
