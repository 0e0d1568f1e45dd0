/*
 * gqa_attention.cu - lesson 04, CUDA part: flash attention where the query heads of a group share
 * every K/V tile (bf16 in, fp32 accumulation, bf16 out, fp32 lse).
 *
 * The idea: for kv head g, the hpg = H / G query heads of its group all attend to the same keys.
 * Stack them: the "packed rows" of (b, g) are R = i * hpg + hh for query position i and head
 * h = g * hpg + hh, M * hpg rows in all. In memory they are already neighbours: q[b, i, g*hpg .. ]
 * is hpg * D contiguous values. A block of 128 packed rows is then lesson 03's block, except that
 * its rows belong to 128 / hpg positions of hpg heads, and one K/V tile in shared memory serves
 * all of them: K and V are read H / G times less often than by an MHA kernel.
 *
 * Parallelisation (lesson 03's, on packed rows)
 *   grid   one block per (packed row block, kv head), batch in grid.y; kv heads in chunks whose
 *          K/V fit in L2, inside a chunk the row blocks from last to first (longest causal first)
 *   block  4 warps, 128 packed rows; warp = 32 rows (two m16 tiles); lane = rows gid, gid + 8 of
 *          each m16 tile, column pair tig of each n8 tile
 *   shared Q [128][D], one K and one V tile [64][D], bf16, swizzled; cp.async as in lesson 03
 * The causal rule depends on the position i = R / hpg of each row: rows of one position share it.
 */
#include <cuda_runtime.h>
#include <math.h>

#include "attn_gpu.h"
#include "gqa_attention.h"
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
    gqa_attention_kernel(attn_shape sh, float scale_log2, int groups_per_chunk, const uint16_t *__restrict__ q,
                         const uint16_t *__restrict__ k, const uint16_t *__restrict__ v, uint16_t *__restrict__ o,
                         float *__restrict__ lse)
{
    constexpr int kDTiles = D / 8;
    constexpr int kRowBytes = D * 2;
    extern __shared__ __align__(128) uint8_t smem[];
    const uint32_t q_s = smem_addr(smem), k_s = q_s + kBr * kRowBytes, v_s = k_s + kBc * kRowBytes;

    /* TODO (about 170 lines): lesson 03's kernel on packed rows. What changes: the block's kv head g and packed row
     * range R0 .. R0 + 127 (of M * hpg); the Q copy (packed row R lives at q + ((b * M + R / hpg) * H
     * + g * hpg + R % hpg) * D); the causal bounds use the positions i = R / hpg of the block's first
     * and last rows; the mask, the o store and the lse index use each row's own i and h. */
}

template <int D>
int launch(const attn_shape *shape, float scale_log2, const uint16_t *q, const uint16_t *k, const uint16_t *v,
           uint16_t *o, float *lse, cudaStream_t stream)
{
    const int smem_bytes = (kBr + 2 * kBc) * D * 2;
    int st = attn_cuda_status(
        cudaFuncSetAttribute(gqa_attention_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes),
        "cudaFuncSetAttribute (shared memory)");
    int dev = 0, l2_bytes = 0;
    if (!st) st = attn_cuda_status(cudaGetDevice(&dev), "cudaGetDevice");
    if (!st) st = attn_cuda_status(cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, dev), "L2 size");
    if (st) return st;
    /* kv heads whose K and V fit in half of L2 together */
    const int groups_per_chunk = (int)fmax(1.0, fmin((double)shape->G, 0.5 * l2_bytes / (4.0 * shape->N * D)));
    const long packed_rows = (long)shape->M * (shape->H / shape->G);
    const dim3 grid((unsigned)((packed_rows + kBr - 1) / kBr) * (unsigned)shape->G, shape->B);
    gqa_attention_kernel<D><<<grid, kThreads, smem_bytes, stream>>>(*shape, scale_log2, groups_per_chunk, q, k, v, o, lse);
    return attn_cuda_launch_status("gqa_attention_kernel");
}

} // namespace

extern "C" int gqa_attention_cuda(const attn_shape *shape, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                                  uint16_t *o, float *lse, cudaStream_t stream)
{
    int st = attn_check_shape(shape);
    if (st) return st;
    if (!q || !k || !v || !o || !lse)
        return attn_fail(ATTN_ERR_NULL_POINTER, "gqa_attention_cuda: q, k, v, o and lse must not be NULL");
    if (shape->D != 64 && shape->D != 128)
        return attn_fail(ATTN_ERR_UNSUPPORTED_D, "gqa_attention_cuda: D=%d, this kernel supports 64 and 128", shape->D);
    if (((uintptr_t)q | (uintptr_t)k | (uintptr_t)v | (uintptr_t)o) % 16 != 0)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "gqa_attention_cuda: q, k, v and o must be 16-byte aligned");
    const double blocks = ceil((double)shape->M * (shape->H / shape->G) / kBr) * shape->G;
    if (shape->B > 65535 || blocks > 2147483647.0)
        return attn_fail(ATTN_ERR_BAD_SHAPE, "gqa_attention_cuda: B=%d must be <= 65535 and the grid < 2^31 blocks",
                         shape->B);
    const float scale_log2 = attn_softmax_scale(shape) * kLog2e;
    (void)scale_log2;

    /* TODO (about 5 lines): once the kernel body is written: launch<64>(...) or launch<128>(...) by shape->D. */
    return ATTN_ERR_NOT_IMPLEMENTED;
}
