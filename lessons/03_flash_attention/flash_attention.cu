/*
 * flash_attention.cu - lesson 03, CUDA part: FlashAttention-2 forward on tensor cores (bf16 in,
 * fp32 accumulation, bf16 out, fp32 lse).
 *
 * Parallelisation
 *   grid   one block per (row block, head), batch in grid.y. Launch order: heads in chunks small
 *          enough that the chunk's K and V fit in L2 (the blocks running at the same time then
 *          share them: each head's K/V is read from memory about once); inside a chunk, the
 *          row blocks from last to first (the last rows see the most causal keys, so the long
 *          blocks start first and the short ones fill the tail), the chunk's heads interleaved
 *   block  4 warps, Br = 128 query rows of one (b, h); each warp owns 32 rows (two m16 tiles)
 *   loop   over tiles of Bc = 64 keys: S = Q K^T (mma.sync m16n8k16), mask if the tile crosses
 *          the causal diagonal or the end of the keys, online softmax in registers, O += P V
 *   shared Q [Br][D] (loaded once), one K tile and one V tile [Bc][D], all bf16, rows swizzled
 *          (16-byte chunk c of row r stored at chunk c ^ (r % 8)) so that ldmatrix reads of 8
 *          rows at the same column hit 8 different bank groups
 *   copies cp.async, overlapped as in FlashAttention-2: V_j is loaded while S = Q K_j^T is
 *          computed, K_{j+1} while O += P V_j is
 *
 * Register fragments follow the PTX ISA's m16n8k16 layouts: with lane = 4 * gid + tig, an
 * accumulator tile holds (row gid, cols 2 tig, 2 tig + 1) in c0, c1 and (row gid + 8, same cols)
 * in c2, c3. Two neighbouring n8 accumulator tiles of S are exactly the A operand (m16 x k16) of
 * the P V product, so P never leaves registers.
 */
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "attn_gpu.h"
#include "flash_attention.h"

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kBr = 128;                   /* query rows per block */
constexpr int kBc = 64;                    /* keys per tile */
constexpr int kRowsPerWarp = kBr / kWarps; /* 32 */
constexpr int kMTiles = kRowsPerWarp / 16; /* m16 tiles per warp */
constexpr int kNTiles = kBc / 8;           /* n8 tiles of S per m16 tile */
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

/* ---------------------------------------------------------------- PTX wrappers */

__device__ __forceinline__ uint32_t smem_addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

/* 16-byte asynchronous copy global -> shared; src_bytes = 0 writes zeros (rows past the end). */
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void *src, bool valid)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::); }

__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], uint32_t addr)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], uint32_t addr)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

/* c += a * b for one m16n8k16 tile: bf16 operands, fp32 accumulators. */
__device__ __forceinline__ void mma_bf16(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                 "{%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi)
{
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi); /* .x (low half) = lo */
    return *reinterpret_cast<uint32_t *>(&v);
}

/* 2^x with the hardware's approximate exponential (one MUFU.EX2; relative error ~2^-22). */
__device__ __forceinline__ float fast_exp2(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

/* Byte offset of 16-byte chunk `chunk` of row `row` in a swizzled [rows][D] bf16 tile. */
template <int D>
__device__ __forceinline__ uint32_t swizzle(int row, int chunk)
{
    return (uint32_t)(row * (D / 8) + (chunk ^ (row & 7))) * 16u;
}

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
    flash_attention_kernel(attn_shape sh, float scale_log2, int heads_per_chunk, const uint16_t *__restrict__ q,
                           const uint16_t *__restrict__ k, const uint16_t *__restrict__ v, uint16_t *__restrict__ o,
                           float *__restrict__ lse)
{
    constexpr int kDTiles = D / 8;      /* n8 tiles of the output per m16 tile */
    constexpr int kRowBytes = D * 2;    /* one bf16 row of a shared tile */
    extern __shared__ __align__(128) uint8_t smem[];
    const uint32_t q_s = smem_addr(smem), k_s = q_s + kBr * D * 2, v_s = k_s + kBc * D * 2;

    /* TODO (about 160 lines): follow the numbered steps of the README: (1) block coordinates and base pointers,
     * number of key tiles (causal: up to the last row's position); (2) cp.async Q and K_0, zero
     * the accumulators, m = -inf; (3) per key tile: wait + __syncthreads, start V_j, S = Q K_j^T
     * with ldmatrix + mma, mask when the tile crosses the diagonal or N, online softmax with
     * quad shuffles (__shfl_xor_sync 1 and 2), wait + __syncthreads, start K_{j+1}, O += P V_j
     * with ldmatrix.trans; (4) reduce l over the quad, write o / l as bf16 and lse. */
}

template <int D>
int launch(const attn_shape *shape, float scale_log2, const uint16_t *q, const uint16_t *k, const uint16_t *v,
           uint16_t *o, float *lse, cudaStream_t stream)
{
    const int smem_bytes = (kBr + 2 * kBc) * D * 2;
    int st = attn_cuda_status(cudaFuncSetAttribute(flash_attention_kernel<D>,
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
    flash_attention_kernel<D><<<grid, kThreads, smem_bytes, stream>>>(*shape, scale_log2, heads_per_chunk, q, k, v, o,
                                                                      lse);
    return attn_cuda_launch_status("flash_attention_kernel");
}

} // namespace

extern "C" int flash_attention_cuda(const attn_shape *shape, const uint16_t *q, const uint16_t *k,
                                    const uint16_t *v, uint16_t *o, float *lse, cudaStream_t stream)
{
    int st = attn_check_shape(shape);
    if (st) return st;
    if (!q || !k || !v || !o || !lse)
        return attn_fail(ATTN_ERR_NULL_POINTER, "flash_attention_cuda: q, k, v, o and lse must not be NULL");
    if (shape->D != 64 && shape->D != 128)
        return attn_fail(ATTN_ERR_UNSUPPORTED_D, "flash_attention_cuda: D=%d, this kernel supports 64 and 128",
                         shape->D);
    if (((uintptr_t)q | (uintptr_t)k | (uintptr_t)v | (uintptr_t)o) % 16 != 0)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "flash_attention_cuda: q, k, v and o must be 16-byte aligned");
    if (shape->B > 65535 || (double)((shape->M + kBr - 1) / kBr) * shape->H > 2147483647.0)
        return attn_fail(ATTN_ERR_BAD_SHAPE, "flash_attention_cuda: B=%d must be <= 65535 and ceil(M/%d)*H < 2^31",
                         shape->B, kBr);
    const float scale_log2 = attn_softmax_scale(shape) * kLog2e;
    (void)scale_log2;

    /* TODO (about 5 lines): once the kernel body is written: launch<64>(...) or launch<128>(...) by shape->D. */
    return ATTN_ERR_NOT_IMPLEMENTED;
}
