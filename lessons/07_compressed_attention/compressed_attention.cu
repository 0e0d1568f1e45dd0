/*
 * compressed_attention.cu - lesson 07, CUDA part: NSA's compressed branch on the GPU (bf16 in, fp32
 * accumulation, bf16 out, fp32 lse).
 *
 *   compress_mean_kernel     mean of the l keys (values) of each span: memory-bound, one thread per
 *                            16 bytes of output
 *   compress_linear_kernel   the learned map [l*D] -> [D] per kv head: a GEMM [NC, l*D] x [l*D, D] on
 *                            tensor cores, where row i of the left matrix is the span of token i read
 *                            straight from kv (never materialised)
 *   cmp_attention_kernel     lesson 04's packed-GQA flash kernel (its tile step from common/flash_tile.cuh)
 *                            over the compressed tokens, with the compressed causal rule: row t sees
 *                            tokens 0 .. visible(t) - 1
 */
#include <cuda_runtime.h>
#include <math.h>

#include "attn_gpu.h"
#include "compressed_attention.h"
#include "flash_tile.cuh"
#include "ptx.cuh"

using namespace ptx;

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr float kLog2e = flash::kLog2e;

/* ---------------------------------------------------------------- bf16 helpers */

/* The two bf16 halves of a 32-bit word as floats (element 0 is the low half). */
__device__ __forceinline__ float bf16_lo(uint32_t u) { return __uint_as_float(u << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t u) { return __uint_as_float(u & 0xffff0000u); }

/* ---------------------------------------------------------------- mean compression
 *
 * Parallelisation: one thread per 8 output elements (16 bytes) of kv_cmp [B, NC, G, D], in the
 * layout's order, so that neighbouring threads read neighbouring 16-byte pieces of each key row and
 * write neighbouring pieces of the output; a grid-stride loop covers any size. No shared memory: each
 * input row is read l / d times in all (once per token whose span holds it), and L2 serves the repeats.
 */
template <int D>
__global__ void __launch_bounds__(256) compress_mean_kernel(attn_shape sh, int l, int d, long nc,
                                                            const uint16_t *__restrict__ kv,
                                                            uint16_t *__restrict__ out)
{
    /* TODO (about 25 lines): flat index e over B * NC * G * (D / 8) pieces: c = e % (D/8), then g, then i, then b.
     * Sum the l rows kv + ((b*N + i*d + r)*G + g)*D + 8c (one uint4 = 8 bf16 each, in fp32), multiply
     * by 1/l, and store 8 bf16 at out + 8e. Every offset in size_t: B*N*G*D passes 2^31. */
}

/* ---------------------------------------------------------------- linear compression
 *
 * out[i, :] = X_i W_g with X_i = the l rows of token i's span laid end to end ([l*D], plus pos on
 * keys) and W_g = w[g] ([l*D, D]): per kv head a GEMM [NC, l*D] x [l*D, D]. It is compute-bound
 * (2 l D^2 FLOPs per token and head: 1 MFLOP at l = 32, D = 128), so it runs on tensor cores with
 * lesson 03's fragments: X plays Q (row-major A operand), W plays V (row-major [k][n] B operand, read
 * with ldmatrix.trans).
 *
 * Parallelisation: one block per (64 tokens, kv head g, batch b); 4 warps, warp w owns tokens
 * 16w .. 16w + 15 and all D outputs (D/8 m16n8 accumulator tiles per thread). The reduction over
 * l*D runs in steps of 64: shared memory holds two X tiles [64 tokens][64] and two W tiles [64][D]
 * (double buffered, XOR-swizzled). W arrives by cp.async. X goes through registers instead, because
 * the position embedding must be added on the way; its global loads are issued before a step's mmas
 * and stored to shared memory after them, so their latency hides behind the math.
 * Column block k0 of X_i is key row i*d + k0 / D, dims k0 % D .. + 63 (64 divides D): a strided
 * gather of rows, which is why X is never written out.
 */
constexpr int kLinTokens = 64; /* tokens per block */
constexpr int kLinK = 64;      /* reduction step */
constexpr int kLinABytes = kLinTokens * kLinK * 2;

template <int D>
__global__ void __launch_bounds__(kThreads) compress_linear_kernel(attn_shape sh, int l, int d, long nc,
                                                                   const uint16_t *__restrict__ kv,
                                                                   const uint16_t *__restrict__ w,
                                                                   const uint16_t *__restrict__ pos,
                                                                   uint16_t *__restrict__ out)
{
    constexpr int kDTiles = D / 8;
    constexpr int kBBytes = kLinK * D * 2;
    extern __shared__ __align__(128) uint8_t smem[];
    const uint32_t a_s = smem_addr(smem), b_s = a_s + 2 * kLinABytes; /* [2][64][64], [2][64][D] */

    /* TODO (about 90 lines): block (blockIdx.x, g = blockIdx.y, b = blockIdx.z) owns tokens i0 = 64 blockIdx.x ..
     * i0 + 63 of (b, g). Thread tid stages 16-byte piece c = tid % 8 of X rows tid / 8 + 16 it
     * (it = 0..3): in step s (k0 = 64 s) that is kv + ((b*N + i*d + k0/D)*G + g)*D + k0%D + 8c, zeros
     * for tokens >= NC, plus pos[(k0/D)*D + k0%D + 8c] when pos is not NULL. W rows k0 .. k0+63 of
     * w + g*l*D*D go by cp.async. Loop: wait + barrier; issue step s+1's loads; mma on step s's
     * buffers (X: ldmatrix like Q, W: ldmatrix.trans like V); store step s+1's X to the other buffer.
     * Epilogue: each thread's accumulator rows gid, gid + 8 of its warp's 16 tokens, columns
     * 8 nt + 2 tig, +1, as bf16 pairs. */
}

/* ---------------------------------------------------------------- compressed attention
 *
 * Lesson 04's kernel with compressed tokens as the keys, built from the tile step of
 * common/flash_tile.cuh. Parallelisation (lesson 04's):
 *   grid   one block per (packed row block, kv head), batch in grid.y; kv heads in chunks whose
 *          compressed K/V fit in L2, inside a chunk the row blocks from last to first (the rows that
 *          see the most tokens start first): flash::PackedRows
 *   block  4 warps, 128 packed rows (R = i * hpg + hh: position i, head g * hpg + hh); warp = 32 rows
 *          (two m16 tiles); lane = rows gid, gid + 8 of each m16 tile, column pair tig of each n8 tile
 *   shared Q [128][D], one K and one V tile [64 tokens][D], bf16, swizzled; cp.async double buffering
 * What changes: row t sees the first visible(t) tokens (not t + 1 keys), so the key range of a block
 * is visible(t_last) tokens and a tile needs the mask when it reaches past visible(t_first). A row
 * that sees nothing keeps m = -inf and l = 0 and is written as o = 0, lse = -inf.
 */
constexpr int kBr = 128;                   /* packed rows per block */
constexpr int kBc = 64;                    /* compressed tokens per tile */
constexpr int kRowsPerWarp = kBr / kWarps; /* 32 */
constexpr int kMTiles = kRowsPerWarp / 16;
constexpr int kNTiles = kBc / 8;

/* Compressed tokens visible from position t: those whose span ends at or before t, i.e. the i with
 * i*d + l - 1 <= t, never more than NC. */
__device__ __forceinline__ long cmp_visible(long t, int l, int d, long nc)
{
    /* TODO (about 5 lines): none while t < l - 1; then one more every d positions: (t - (l - 1)) / d + 1, capped at NC. */
    return 0;
}

template <int D>
__global__ void __launch_bounds__(kThreads, 2)
    cmp_attention_kernel(attn_shape sh, int l, int d, long nc, float scale_log2, int groups_per_chunk,
                         const uint16_t *__restrict__ q, const uint16_t *__restrict__ k,
                         const uint16_t *__restrict__ v, uint16_t *__restrict__ o, float *__restrict__ lse)
{
    extern __shared__ __align__(128) uint8_t smem[];
    const uint32_t q_s = smem_addr(smem), k_s = q_s + kBr * D * 2, v_s = k_s + kBc * D * 2;
    const flash::PackedRows<kBr> w(sh, groups_per_chunk); /* lesson 04's block: rows R0 .. R0 + 127 of (b, g) */
    const size_t kv_stride = (size_t)sh.G * D;
    const int warp_row0 = (threadIdx.x / 32) * kRowsPerWarp; /* the warp's first row of the block */

    /* TODO (about 40 lines): lesson 04's loop with the step of common/flash_tile.cuh, and three changes. (1) The
     * compressed K/V of (b, g) start at ((b * NC) * G + g) * D: batch b is NC tokens further, not N.
     * (2) The block's tiles: n_tiles = ceil(cmp_visible(t_last) / 64) (possibly 0: then load no K at
     * all), and a tile needs the mask when s0 + 64 > cmp_visible(t_first); NC is the limit of every
     * tile load. (3) The mask, flash::mask with a predicate (R, token) -> token * d + l - 1 <= t, the
     * position t = w.pos(R) of packed row R (in 32-bit int: the host checks that the ends fit). Rows
     * that see nothing end with l = 0, and acc.store writes o = 0, lse = -inf for them; every row
     * must be stored, even in a block with no tile. Before acc.store, cp_async_wait_all(): with no
     * tile, the Q copy is still in flight. */
}

/* ---------------------------------------------------------------- host side */

template <int D>
int launch_compress(const attn_shape *shape, const attn_nsa_params *p, long nc, const uint16_t *kv, const uint16_t *w,
                    const uint16_t *pos, uint16_t *kv_cmp, cudaStream_t stream)
{
    if (p->mode == ATTN_NSA_MEAN) {
        const size_t pieces = (size_t)shape->B * nc * shape->G * (D / 8);
        const unsigned blocks = (unsigned)fmin((double)((pieces + 255) / 256), 65536.0 * 8);
        compress_mean_kernel<D><<<blocks, 256, 0, stream>>>(*shape, p->l, p->d, nc, kv, kv_cmp);
        return attn_cuda_launch_status("compress_mean_kernel");
    }
    const int smem_bytes = 2 * kLinABytes + 2 * kLinK * D * 2;
    int st = attn_cuda_status(
        cudaFuncSetAttribute(compress_linear_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes),
        "cudaFuncSetAttribute (shared memory)");
    if (st) return st;
    const dim3 grid((unsigned)((nc + kLinTokens - 1) / kLinTokens), shape->G, shape->B);
    compress_linear_kernel<D><<<grid, kThreads, smem_bytes, stream>>>(*shape, p->l, p->d, nc, kv, w, pos, kv_cmp);
    return attn_cuda_launch_status("compress_linear_kernel");
}

template <int D>
int launch_attention(const attn_shape *shape, const attn_nsa_params *p, long nc, float scale_log2, const uint16_t *q,
                     const uint16_t *k, const uint16_t *v, uint16_t *o, float *lse, cudaStream_t stream)
{
    const int smem_bytes = (kBr + 2 * kBc) * D * 2;
    int st = attn_cuda_status(
        cudaFuncSetAttribute(cmp_attention_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes),
        "cudaFuncSetAttribute (shared memory)");
    int dev = 0, l2_bytes = 0;
    if (!st) st = attn_cuda_status(cudaGetDevice(&dev), "cudaGetDevice");
    if (!st) st = attn_cuda_status(cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, dev), "L2 size");
    if (st) return st;
    /* kv heads whose compressed K and V fit in half of L2 together */
    const double cmp_bytes = 4.0 * (double)(nc > 0 ? nc : 1) * D;
    const int groups_per_chunk = (int)fmax(1.0, fmin((double)shape->G, 0.5 * l2_bytes / cmp_bytes));
    const long packed_rows = (long)shape->M * (shape->H / shape->G);
    const dim3 grid((unsigned)((packed_rows + kBr - 1) / kBr) * (unsigned)shape->G, shape->B);
    cmp_attention_kernel<D><<<grid, kThreads, smem_bytes, stream>>>(*shape, p->l, p->d, nc, scale_log2,
                                                                     groups_per_chunk, q, k, v, o, lse);
    return attn_cuda_launch_status("cmp_attention_kernel");
}

/* The checks both entry points share: shape, NSA parameters, D. */
int check_common(const char *fn, const attn_shape *shape, const attn_nsa_params *p)
{
    int st = attn_check_shape(shape);
    if (st) return st;
    if ((st = attn_nsa_check(p)) != ATTN_OK) return st;
    if (shape->D != 64 && shape->D != 128)
        return attn_fail(ATTN_ERR_UNSUPPORTED_D, "%s: D=%d, this kernel supports 64 and 128", fn, shape->D);
    if (shape->B > 65535) return attn_fail(ATTN_ERR_BAD_SHAPE, "%s: B=%d must be <= 65535", fn, shape->B);
    return ATTN_OK;
}

} // namespace

extern "C" int nsa_compress_cuda(const attn_shape *shape, const attn_nsa_params *p, const uint16_t *kv,
                                 const uint16_t *w, const uint16_t *pos, uint16_t *kv_cmp, cudaStream_t stream)
{
    int st = check_common("nsa_compress_cuda", shape, p);
    if (st) return st;
    if (!kv || !kv_cmp) return attn_fail(ATTN_ERR_NULL_POINTER, "nsa_compress_cuda: kv and kv_cmp must not be NULL");
    if (p->mode == ATTN_NSA_LINEAR && !w)
        return attn_fail(ATTN_ERR_NULL_POINTER, "nsa_compress_cuda: linear mode needs the weights w [G, l*D, D]");
    if (((uintptr_t)kv | (uintptr_t)w | (uintptr_t)pos | (uintptr_t)kv_cmp) % 16 != 0)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "nsa_compress_cuda: kv, w, pos and kv_cmp must be 16-byte aligned");
    const long nc = attn_nsa_num_cmp(shape->N, p);
    if ((nc + kLinTokens - 1) / kLinTokens > 2147483647L)
        return attn_fail(ATTN_ERR_BAD_SHAPE, "nsa_compress_cuda: NC=%ld compressed tokens is too many", nc);

    /* TODO (about 5 lines): with NC = 0 there is nothing to write (and a grid of 0 blocks is an error): return ATTN_OK.
     * Otherwise launch_compress<64> or <128> by shape->D. */
    return ATTN_ERR_NOT_IMPLEMENTED;
}

extern "C" int nsa_cmp_attention_cuda(const attn_shape *shape, const attn_nsa_params *p, const uint16_t *q,
                                      const uint16_t *k_cmp, const uint16_t *v_cmp, uint16_t *o, float *lse,
                                      cudaStream_t stream)
{
    int st = check_common("nsa_cmp_attention_cuda", shape, p);
    if (st) return st;
    if (!shape->causal)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "nsa_cmp_attention_cuda: compressed attention is causal, set shape->causal");
    if (!q || !k_cmp || !v_cmp || !o || !lse)
        return attn_fail(ATTN_ERR_NULL_POINTER, "nsa_cmp_attention_cuda: q, k_cmp, v_cmp, o and lse must not be NULL");
    if (((uintptr_t)q | (uintptr_t)k_cmp | (uintptr_t)v_cmp | (uintptr_t)o) % 16 != 0)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "nsa_cmp_attention_cuda: q, k_cmp, v_cmp and o must be 16-byte aligned");
    const double blocks = ceil((double)shape->M * (shape->H / shape->G) / kBr) * shape->G;
    if (blocks > 2147483647.0)
        return attn_fail(ATTN_ERR_BAD_SHAPE, "nsa_cmp_attention_cuda: the grid must have < 2^31 blocks");
    if ((double)shape->N + (double)kBc * p->d + p->l > 2147483647.0)
        return attn_fail(ATTN_ERR_BAD_SHAPE, "nsa_cmp_attention_cuda: N=%d with d=%d, l=%d: token ends pass 2^31",
                         shape->N, p->d, p->l);
    const long nc = attn_nsa_num_cmp(shape->N, p);
    const float scale_log2 = attn_softmax_scale(shape) * kLog2e;
    (void)nc, (void)scale_log2;

    /* TODO (about 5 lines): once the kernel body is written: launch_attention<64> or <128> by shape->D. Every row is
     * written, even when NC = 0 (o = 0, lse = -inf), so always launch. */
    return ATTN_ERR_NOT_IMPLEMENTED;
}
