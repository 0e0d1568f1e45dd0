// baselines_flash.cu - FROZEN copy of lesson 03's flash attention kernel (bf16, mma.sync), the
// "dense flash" speed baseline of lessons 04 and later, plus the K/V repeat of the "repeat K/V to
// H heads, then dense flash" baseline of lesson 04. Do not tune: see baselines.cu.
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "attn_gpu.h"
#include "baselines.h"
#include "ptx.cuh"

namespace flash {

using namespace ptx;

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kBr = 128;                   /* query rows per block */
constexpr int kBc = 64;                    /* keys per tile */
constexpr int kRowsPerWarp = kBr / kWarps; /* 32 */
constexpr int kMTiles = kRowsPerWarp / 16; /* m16 tiles per warp */
constexpr int kNTiles = kBc / 8;           /* n8 tiles of S per m16 tile */
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

/* Copy rows [first, first + ROWS) of a [*, stride] bf16 matrix into a swizzled shared tile;
 * rows at or past `limit` become zeros (0 * garbage could be NaN in P V). Thread t copies chunk
 * t % (D/8) of rows t / (D/8), + 128 / (D/8), ...: the loop has a compile-time trip count, and as
 * the row step is a multiple of 8 the swizzled chunk is the same in every iteration. */
template <int D, int ROWS>
__device__ __forceinline__ void load_tile(uint32_t tile, const uint16_t *base, size_t stride, long first, long limit)
{
    constexpr int kChunks = D / 8, kRowStep = kThreads / kChunks;
    static_assert(kRowStep % 8 == 0 && ROWS % kRowStep == 0, "tile shape");
    const int r0 = threadIdx.x / kChunks, c = threadIdx.x % kChunks;
    const uint32_t dst = tile + swizzle<D>(r0, c);
    const uint16_t *src = base + (size_t)(first + r0) * stride + c * 8;
#pragma unroll
    for (int it = 0; it < ROWS / kRowStep; ++it) {
        const bool valid = first + r0 + it * kRowStep < limit;
        cp_async_16(dst + it * kRowStep * D * 2, valid ? src + (size_t)it * kRowStep * stride : base, valid);
    }
}

template <int D>
__global__ void __launch_bounds__(kThreads, 2)
    baseline_flash_kernel(attn_shape sh, float scale_log2, int heads_per_chunk, const uint16_t *__restrict__ q,
                           const uint16_t *__restrict__ k, const uint16_t *__restrict__ v, uint16_t *__restrict__ o,
                           float *__restrict__ lse)
{
    constexpr int kDTiles = D / 8;      /* n8 tiles of the output per m16 tile */
    constexpr int kRowBytes = D * 2;    /* one bf16 row of a shared tile */
    extern __shared__ __align__(128) uint8_t smem[];
    const uint32_t q_s = smem_addr(smem), k_s = q_s + kBr * D * 2, v_s = k_s + kBc * D * 2;

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int gid = lane / 4, tig = lane % 4; /* row within an m16 tile, column pair */
    const int row_blocks = (sh.M + kBr - 1) / kBr;
    const int chunk = blockIdx.x / (row_blocks * heads_per_chunk), rem = blockIdx.x % (row_blocks * heads_per_chunk);
    const int heads_here = min(heads_per_chunk, sh.H - chunk * heads_per_chunk);
    const int h = chunk * heads_per_chunk + rem % heads_here, b = blockIdx.y;
    const int i0 = (row_blocks - 1 - rem / heads_here) * kBr;
    const int g = h / (sh.H / sh.G);
    const long offset = (long)sh.N - sh.M; /* query i sits at position offset + i */
    const size_t q_stride = (size_t)sh.H * D, kv_stride = (size_t)sh.G * D;
    const uint16_t *q_blk = q + ((size_t)b * sh.M * sh.H + h) * D;
    const uint16_t *k_bg = k + ((size_t)b * sh.N * sh.G + g) * D;
    const uint16_t *v_bg = v + ((size_t)b * sh.N * sh.G + g) * D;

    const int rows_here = min(kBr, sh.M - i0);
    const long last_key = sh.causal ? offset + i0 + rows_here - 1 : (long)sh.N - 1;
    const int n_tiles = (int)(last_key / kBc) + 1;

    load_tile<D, kBr>(q_s, q_blk, q_stride, i0, sh.M);
    load_tile<D, kBc>(k_s, k_bg, kv_stride, 0, sh.N);
    cp_async_commit();

    float o_acc[kMTiles][kDTiles][4];
    float m_i[kMTiles][2], l_i[kMTiles][2]; /* rows gid and gid + 8 of each m16 tile */
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
        for (int dt = 0; dt < kDTiles; ++dt) o_acc[mt][dt][0] = o_acc[mt][dt][1] = o_acc[mt][dt][2] = o_acc[mt][dt][3] = 0.f;
        m_i[mt][0] = m_i[mt][1] = -INFINITY;
        l_i[mt][0] = l_i[mt][1] = 0.f;
    }
    const int warp_row0 = warp * kRowsPerWarp;

    /* ldmatrix addresses. Every row a lane points at has row % 8 == lane % 8, so the swizzled
     * chunk of k16 slice kk depends on the lane and on kk % 4 only; kk / 4, the m16/n8 tile and
     * the key slice are compile-time byte offsets added to one of four per-lane addresses. */
    uint32_t q_addr[4], k_addr[4], v_addr[4];
#pragma unroll
    for (int c = 0; c < 4; ++c) {
        q_addr[c] = q_s + (warp_row0 + lane % 16) * kRowBytes + (((2 * c + lane / 16) ^ (lane % 8)) * 16);
        k_addr[c] = k_s + (lane % 8 + (lane / 16) * 8) * kRowBytes + (((2 * c + (lane / 8) % 2) ^ (lane % 8)) * 16);
        v_addr[c] = v_s + (lane % 8 + ((lane / 8) % 2) * 8) * kRowBytes + (((2 * c + lane / 16) ^ (lane % 8)) * 16);
    }

    for (int j = 0; j < n_tiles; ++j) {
        const long s0 = (long)j * kBc;
        cp_async_wait_all();
        __syncthreads(); /* K_j (and Q) have landed for everyone; nobody still reads V_{j-1} */
        load_tile<D, kBc>(v_s, v_bg, kv_stride, s0, sh.N);
        cp_async_commit();

        /* S = Q K_j^T: for each k16 slice of D, the Q fragments of both m16 tiles and the K
         * fragments of two n8 tiles per ldmatrix.x4. */
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

        /* Mask only the tiles that need it: past the last key, or crossing the causal diagonal
         * of this block's first row. */
        if (s0 + kBc > sh.N || (sh.causal && s0 + kBc - 1 > offset + i0)) {
#pragma unroll
            for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
                for (int nt = 0; nt < kNTiles; ++nt)
#pragma unroll
                    for (int e = 0; e < 4; ++e) {
                        const long key = s0 + nt * 8 + tig * 2 + (e & 1);
                        const long t = offset + i0 + warp_row0 + mt * 16 + gid + (e >= 2 ? 8 : 0);
                        if (key >= sh.N || (sh.causal && key > t)) s[mt][nt][e] = -INFINITY;
                    }
        }

        uint32_t p[kMTiles][kNTiles][2]; /* P in bf16, packed in pairs */

        /* Online softmax, base 2: p = 2^(s * scale_log2 - m * scale_log2). m stays in raw score
         * units. A row holds 2 values per n8 tile in each thread and is spread over the 4 threads
         * of a quad, hence the two xor-shuffles. */
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
            for (int rr = 0; rr < 2; ++rr) {
                float mx = m_i[mt][rr];
#pragma unroll
                for (int nt = 0; nt < kNTiles; ++nt) mx = fmaxf(mx, fmaxf(s[mt][nt][2 * rr], s[mt][nt][2 * rr + 1]));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                /* a row with nothing visible yet keeps m = -inf: use 0 so that no -inf - -inf appears */
                const float m_scaled = mx == -INFINITY ? 0.f : mx * scale_log2;
                const float alpha = fast_exp2(m_i[mt][rr] * scale_log2 - m_scaled);
                m_i[mt][rr] = mx;
                float row_sum = 0.f;
#pragma unroll
                for (int nt = 0; nt < kNTiles; ++nt) {
                    const float p0 = fast_exp2(fmaf(s[mt][nt][2 * rr], scale_log2, -m_scaled));
                    const float p1 = fast_exp2(fmaf(s[mt][nt][2 * rr + 1], scale_log2, -m_scaled));
                    row_sum += p0 + p1;
                    p[mt][nt][rr] = pack_bf16(p0, p1); /* row rr's two columns, as the P V operand */
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
            load_tile<D, kBc>(k_s, k_bg, kv_stride, s0 + kBc, sh.N);
            cp_async_commit();
        }

        /* O += P V_j: P's A fragments are S's accumulator tiles (now bf16), V's B fragments come
         * from ldmatrix.trans (V is [key][dim] in shared memory, the mma wants it dim-major). */
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

    /* Epilogue: complete l over the quad, o = acc / l in bf16, lse = m * scale + ln(l). */
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
        for (int rr = 0; rr < 2; ++rr) {
            float l = l_i[mt][rr];
            l += __shfl_xor_sync(0xffffffffu, l, 1);
            l += __shfl_xor_sync(0xffffffffu, l, 2);
            const int i = i0 + warp_row0 + mt * 16 + gid + rr * 8;
            if (i >= sh.M) continue;
            const float inv_l = l > 0.f ? 1.f / l : 0.f;
            uint16_t *o_row = o + (((size_t)b * sh.M + i) * sh.H + h) * D;
#pragma unroll
            for (int dt = 0; dt < kDTiles; ++dt)
                *reinterpret_cast<uint32_t *>(o_row + dt * 8 + tig * 2) =
                    pack_bf16(o_acc[mt][dt][2 * rr] * inv_l, o_acc[mt][dt][2 * rr + 1] * inv_l);
            if (tig == 0)
                lse[((size_t)b * sh.H + h) * sh.M + i] =
                    l > 0.f ? (m_i[mt][rr] * scale_log2 + log2f(l)) * kLn2 : -INFINITY;
        }
}

template <int D>
int launch(const attn_shape *shape, float scale_log2, const uint16_t *q, const uint16_t *k, const uint16_t *v,
           uint16_t *o, float *lse, cudaStream_t stream)
{
    const int smem_bytes = (kBr + 2 * kBc) * D * 2;
    int st = attn_cuda_status(cudaFuncSetAttribute(baseline_flash_kernel<D>,
                                                   cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes),
                              "cudaFuncSetAttribute (shared memory)");
    if (st) return st;
    /* heads whose K and V fit in half of L2 together */
    int dev = 0, l2_bytes = 0;
    st = attn_cuda_status(cudaGetDevice(&dev), "cudaGetDevice");
    if (!st) st = attn_cuda_status(cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, dev), "L2 size");
    if (st) return st;
    const double kv_bytes_per_head = 4.0 * shape->N * D; /* K and V, bf16 */
    const int heads_per_chunk = (int)fmax(1.0, fmin((double)shape->H, 0.5 * l2_bytes / kv_bytes_per_head));
    const dim3 grid((unsigned)((shape->M + kBr - 1) / kBr) * (unsigned)shape->H, shape->B);
    baseline_flash_kernel<D><<<grid, kThreads, smem_bytes, stream>>>(*shape, scale_log2, heads_per_chunk, q, k, v, o,
                                                                      lse);
    return attn_cuda_launch_status("baseline_flash_kernel");
}

} // namespace flash

extern "C" int attn_baseline_flash_bf16(const attn_shape *shape, const uint16_t *q, const uint16_t *k,
                                    const uint16_t *v, uint16_t *o, float *lse, cudaStream_t stream)
{
    int st = attn_check_shape(shape);
    if (st) return st;
    if (!q || !k || !v || !o || !lse)
        return attn_fail(ATTN_ERR_NULL_POINTER, "attn_baseline_flash_bf16: q, k, v, o and lse must not be NULL");
    if (shape->D != 64 && shape->D != 128)
        return attn_fail(ATTN_ERR_UNSUPPORTED_D, "attn_baseline_flash_bf16: D=%d, this kernel supports 64 and 128",
                         shape->D);
    if (((uintptr_t)q | (uintptr_t)k | (uintptr_t)v | (uintptr_t)o) % 16 != 0)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "attn_baseline_flash_bf16: q, k, v and o must be 16-byte aligned");
    if (shape->B > 65535 || (double)((shape->M + flash::kBr - 1) / flash::kBr) * shape->H > 2147483647.0)
        return attn_fail(ATTN_ERR_BAD_SHAPE, "attn_baseline_flash_bf16: B=%d must be <= 65535 and ceil(M/%d)*H < 2^31",
                         shape->B, flash::kBr);
    const float scale_log2 = attn_softmax_scale(shape) * flash::kLog2e;
    if (shape->D == 64) return flash::launch<64>(shape, scale_log2, q, k, v, o, lse, stream);
    return flash::launch<128>(shape, scale_log2, q, k, v, o, lse, stream);
}

// ---------------------------------------------------------------- K/V repeat (lesson 04's baseline)
namespace repeat {

// kv_rep [B, N, H, D] = kv [B, N, G, D] with each kv head copied to its H / G query heads; one
// thread per 16 bytes of output.
__global__ void repeat_kv_kernel(int B, int N, int H, int G, int D, const uint4 *__restrict__ kv, uint4 *__restrict__ out)
{
    const int vecs = D / 8; // 8 bf16 per uint4
    const size_t total = (size_t)B * N * H * vecs;
    for (size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += (size_t)gridDim.x * blockDim.x) {
        const int c = (int)(idx % vecs);
        const int h = (int)((idx / vecs) % H);
        const size_t bs = idx / ((size_t)vecs * H); // b * N + s
        out[idx] = kv[(bs * G + h / (H / G)) * vecs + c];
    }
}

} // namespace repeat

extern "C" int attn_baseline_repeat_kv_bf16(const attn_shape *shape, const uint16_t *kv, uint16_t *kv_rep,
                                            cudaStream_t stream)
{
    int st = attn_check_shape(shape);
    if (st) return st;
    if (!kv || !kv_rep) return attn_fail(ATTN_ERR_NULL_POINTER, "attn_baseline_repeat_kv_bf16: NULL pointer");
    if (shape->D % 8) return attn_fail(ATTN_ERR_UNSUPPORTED_D, "attn_baseline_repeat_kv_bf16: D=%d", shape->D);
    const size_t total = (size_t)shape->B * shape->N * shape->H * (shape->D / 8);
    const int blocks = (int)((total + 255) / 256 < 65535 * 4 ? (total + 255) / 256 : 65535 * 4);
    repeat::repeat_kv_kernel<<<blocks, 256, 0, stream>>>(shape->B, shape->N, shape->H, shape->G, shape->D,
                                                          (const uint4 *)kv, (uint4 *)kv_rep);
    return attn_cuda_launch_status("baseline repeat_kv_kernel");
}
