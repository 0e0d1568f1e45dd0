/*
 * sparsity.cu - lesson 06, CUDA part: the same flash-attention machinery driven two ways.
 *
 *   masked_attention_kernel        a token keep-mask. Every key tile of the causal range is loaded
 *                                  and multiplied; the mask only changes the scores (log k_s added,
 *                                  -inf for deleted keys). Deleting 90% of the tokens saves nothing.
 *   block_sparse_attention_kernel  a block list. A block of queries walks the key tiles its list
 *                                  names and no others: the work, and the time, follow the list.
 *
 * Both are lesson 04's kernel (packed GQA rows, K/V tiles shared by the H/G heads of a group,
 * cp.async double buffering of K and V, mma.sync m16n8k16, online softmax in base 2), built from the
 * steps of one key tile in common/flash_tile.cuh (flash::scores, OnlineSoftmax::update, ::accumulate,
 * ::store), so that the two loops read side by side.
 *
 * Parallelisation (both kernels): a block of 4 warps owns 128 packed rows of one (b, kv head g)
 * (flash::PackedRows); a packed row R is query i = R / hpg of head g * hpg + R % hpg (hpg = H / G).
 * Each warp owns 32 rows, each thread the mma fragments of two 16-row tiles. Shared memory holds the
 * Q rows, one K tile and one V tile (64 keys each, XOR-swizzled), and for the mask kernel the log2
 * keep weights of the tile's 64 keys.
 * A key block of a block list is exactly one key tile (SPARSE_KEY_BLOCK = 64), and the 128 * hpg rows
 * of a query block (SPARSE_QUERY_BLOCK = 128 queries) are a whole number of row blocks, so every row of
 * a thread block reads the same list.
 */
#include <cuda_runtime.h>
#include <math.h>

#include "attn_gpu.h"
#include "flash_tile.cuh"
#include "ptx.cuh"
#include "sparsity.h"

using namespace ptx;

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kBr = 128;                   /* packed rows per block */
constexpr int kBc = SPARSE_KEY_BLOCK;      /* keys per tile: one key block */
constexpr int kRowsPerWarp = kBr / kWarps; /* 32 */
constexpr int kMTiles = kRowsPerWarp / 16;
constexpr int kNTiles = kBc / 8;
constexpr float kLog2e = flash::kLog2e;
static_assert(kBc == 64, "the tile loops below assume 64-key tiles");
static_assert(SPARSE_QUERY_BLOCK % kBr == 0, "a row block must not straddle two query blocks");

using Rows = flash::PackedRows<kBr>;

/* ---------------------------------------------------------------- token keep-mask */

/* log2 of the keep weight of retention r: 0 (kept), log2 r (soft delete) or -inf (deleted).
 * Device data cannot be checked: an r above 1 counts as 1, a negative or NaN r deletes the key. */
__device__ __forceinline__ float keep_log2_weight(int mode, float threshold, float r)
{
    /* BEGIN SOLUTION stub="return 0.0f;" */
    /* HINT: KEEP_SOFT: r > 0 ? log2f(fminf(r, 1)) : -INFINITY. KEEP_HARD: r >= threshold ? 0 : -INFINITY.
     * Written with `r > 0` and `r >= threshold`, a NaN falls on the deleting side by itself. */
    if (mode == KEEP_SOFT) return r > 0.f ? log2f(fminf(r, 1.f)) : -INFINITY;
    if (mode == KEEP_HARD) return r >= threshold ? 0.f : -INFINITY;
    return 0.f;
    /* END SOLUTION */
}

/* Retention of key `key` of this kv head, read early (a plain load: its latency hides behind a
 * tile's work); keys past the end, and KEEP_BASELINE (retention may be NULL), read nothing. */
__device__ __forceinline__ float load_retention(const float *retention, size_t offset_bg, int mode, int G, long key,
                                                long N)
{
    return mode != KEEP_BASELINE && key < N ? __ldg(retention + offset_bg + (size_t)key * G) : 1.f;
}

template <int D>
__global__ void __launch_bounds__(kThreads, 2)
    masked_attention_kernel(attn_shape sh, int mode, float threshold, float scale_log2, int groups_per_chunk,
                            const float *__restrict__ retention, const uint16_t *__restrict__ q,
                            const uint16_t *__restrict__ k, const uint16_t *__restrict__ v, uint16_t *__restrict__ o,
                            float *__restrict__ lse)
{
    extern __shared__ __align__(128) uint8_t smem[];
    const uint32_t q_s = smem_addr(smem), k_s = q_s + kBr * D * 2, v_s = k_s + kBc * D * 2;
    /* w2_s[c]: log2 of the keep weight of key s0 + c of the current tile, -inf past the end of the keys */
    float *w2_s = reinterpret_cast<float *>(smem + (kBr + 2 * kBc) * D * 2);
    const Rows w(sh, groups_per_chunk);
    const size_t kv_stride = (size_t)sh.G * D;
    const uint16_t *k_bg = k + ((size_t)w.b * sh.N * sh.G + w.g) * D;
    const uint16_t *v_bg = v + ((size_t)w.b * sh.N * sh.G + w.g) * D;
    const size_t retention_bg = (size_t)w.b * sh.N * sh.G + w.g; /* offset of (b, key 0, g) */
    const long last_key = sh.causal ? w.t_last : sh.N - 1;
    const int n_tiles = (int)(last_key / kBc) + 1; /* every tile of the causal range: the mask skips nothing */

    const int warp_row0 = (threadIdx.x / 32) * kRowsPerWarp; /* the warp's first row of the block */
    const flash::Operand<D> q_op = flash::Operand<D>::a(q_s, warp_row0), k_op = flash::Operand<D>::k(k_s, 0),
                            v_op = flash::Operand<D>::v(v_s, 0);
    flash::OnlineSoftmax<D, kMTiles> acc; /* O, m, l of this thread's rows */
    flash::load_rows<D, kBr, kThreads>(q_s, w.R0, [&](long R) { return w.q_row<D>(sh, q, R); }, q);
    flash::load_tile<D, kBc, kThreads>(k_s, k_bg, kv_stride, 0, sh.N);
    cp_async_commit();
    /* threads 0..63 each own one key of a tile: its weight is computed once and shared through w2_s */
    if (threadIdx.x < kBc) {
        const long key = threadIdx.x;
        const float r = load_retention(retention, retention_bg, mode, sh.G, key, sh.N);
        w2_s[threadIdx.x] = key < sh.N ? keep_log2_weight(mode, threshold, r) : -INFINITY;
    }

    for (int j = 0; j < n_tiles; ++j) {
        const long s0 = (long)j * kBc;
        cp_async_wait_all();
        __syncthreads(); /* K_j and w2_j are there for everyone; nobody still reads V_{j-1} */
        flash::load_tile<D, kBc, kThreads>(v_s, v_bg, kv_stride, s0, sh.N);
        cp_async_commit();
        const long next_key = s0 + kBc + threadIdx.x; /* this thread's key of tile j + 1 */
        const float r_next = threadIdx.x < kBc ? load_retention(retention, retention_bg, mode, sh.G, next_key, sh.N) : 0.f;

        float s[kMTiles][kNTiles][4];
        flash::scores(s, q_op, k_op);

        /* BEGIN SOLUTION */
        /* HINT: every score becomes x = s * scale_log2 + w2 (one fmaf), w2 = w2_s[column] the log2 keep
         * weight of its key (-inf for a deleted key or one past N, so fmaf gives -inf by itself). This
         * thread holds rows warp_row0 + flash::frag_row(mt, rr) and columns flash::frag_col(nt, e) of
         * s[mt][nt][2 * rr + e] (common/flash_tile.cuh; lesson 03's fragments): columns 2 (lane % 4) + e
         * of each n8 tile, one float2 of w2_s. Tiles that cross the causal diagonal also need -INFINITY
         * past each row's position t = w.pos(row) (lesson 04's test). */
        const int gid = (threadIdx.x % 32) / 4, tig = threadIdx.x % 4;
        const bool diagonal = sh.causal && s0 + kBc - 1 > w.t_first;
        int last_col[kMTiles][2]; /* each row's last visible column of this tile (< 0: none) */
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
            for (int rr = 0; rr < 2; ++rr) {
                const long t = w.pos(w.R0 + warp_row0 + mt * 16 + gid + rr * 8);
                last_col[mt][rr] = diagonal ? (int)max(-1L, min((long)kBc - 1, t - s0)) : kBc - 1;
            }
#pragma unroll
        for (int nt = 0; nt < kNTiles; ++nt) {
            const float2 w2 = *reinterpret_cast<const float2 *>(w2_s + nt * 8 + tig * 2); /* same for all rows */
#pragma unroll
            for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
                for (int rr = 0; rr < 2; ++rr) {
                    float &x0 = s[mt][nt][2 * rr], &x1 = s[mt][nt][2 * rr + 1];
                    x0 = fmaf(x0, scale_log2, w2.x);
                    x1 = fmaf(x1, scale_log2, w2.y);
                    if (diagonal) {
                        if (nt * 8 + tig * 2 > last_col[mt][rr]) x0 = -INFINITY;
                        if (nt * 8 + tig * 2 + 1 > last_col[mt][rr]) x1 = -INFINITY;
                    }
                }
        }
        /* END SOLUTION */
        uint32_t p[kMTiles][kNTiles][2];
        acc.update(s, p, 1.0f); /* the scores are in base-2 units now */

        cp_async_wait_all();
        __syncthreads(); /* V_j has landed for everyone; nobody still reads K_j or w2_j */
        if (j + 1 < n_tiles) {
            flash::load_tile<D, kBc, kThreads>(k_s, k_bg, kv_stride, s0 + kBc, sh.N);
            cp_async_commit();
            if (threadIdx.x < kBc)
                w2_s[threadIdx.x] = next_key < sh.N ? keep_log2_weight(mode, threshold, r_next) : -INFINITY;
        }
        acc.accumulate(p, v_op);
    }
    /* scores were in base-2 units: m * 1 is already log2 */
    acc.store(1.0f, w.R0 + warp_row0, [&](long R) { return w.dst<D>(sh, o, lse, R); });
}

/* ---------------------------------------------------------------- block list */

/* Index of the first usable entry of list[from .. T): the list ends at a negative entry; blocks
 * past `last_block` (no key this row block may see) are skipped. T when none is left. */
__device__ __forceinline__ int next_listed(const int32_t *list, int from, int T, int last_block)
{
    /* BEGIN SOLUTION stub="return T;" */
    /* HINT: walk from `from`: a negative entry ends the list (return T); an entry <= last_block is
     * the answer; anything larger is skipped. */
    for (int n = from; n < T; ++n) {
        const int j = list[n];
        if (j < 0) return T;
        if (j <= last_block) return n;
    }
    return T;
    /* END SOLUTION */
}

template <int D>
__global__ void __launch_bounds__(kThreads, 2)
    block_sparse_attention_kernel(attn_shape sh, const int32_t *__restrict__ block_indices, int T, float scale_log2,
                                  int groups_per_chunk, const uint16_t *__restrict__ q, const uint16_t *__restrict__ k,
                                  const uint16_t *__restrict__ v, uint16_t *__restrict__ o, float *__restrict__ lse)
{
    extern __shared__ __align__(128) uint8_t smem[];
    const uint32_t q_s = smem_addr(smem), k_s = q_s + kBr * D * 2, v_s = k_s + kBc * D * 2;
    const Rows w(sh, groups_per_chunk);
    const size_t kv_stride = (size_t)sh.G * D;
    const uint16_t *k_bg = k + ((size_t)w.b * sh.N * sh.G + w.g) * D;
    const uint16_t *v_bg = v + ((size_t)w.b * sh.N * sh.G + w.g) * D;
    const int warp_row0 = (threadIdx.x / 32) * kRowsPerWarp; /* the warp's first row of the block */
    flash::load_rows<D, kBr, kThreads>(q_s, w.R0, [&](long R) { return w.q_row<D>(sh, q, R); }, q);
    const flash::Operand<D> q_op = flash::Operand<D>::a(q_s, warp_row0), k_op = flash::Operand<D>::k(k_s, 0),
                            v_op = flash::Operand<D>::v(v_s, 0);
    flash::OnlineSoftmax<D, kMTiles> acc; /* O, m, l of this thread's rows */

    /* BEGIN SOLUTION */
    /* HINT: the list of this block's rows is (b, qb = (R0 / hpg) / SPARSE_QUERY_BLOCK, g). The last
     * block any row may see is t_last / kBc (causal) or the last key block. Walk the list with
     * next_listed: load K of the first usable block before the loop, and while processing entry n,
     * load K of entry n_next after the middle barrier - the loop of masked_attention_kernel with
     * `j + 1` replaced by "the next listed block". Mask only the tiles that cross the end of the keys
     * or (causal) the diagonal, as lesson 04 does: flash::mask(s, w.R0 + warp_row0, s0, predicate
     * (R, key) -> is key at most the last key of packed row R, w.pos(R) if causal, else N - 1). */
    const int qb = (int)((w.R0 / w.hpg) / SPARSE_QUERY_BLOCK);
    const int32_t *list = block_indices + (((size_t)w.b * ((sh.M + SPARSE_QUERY_BLOCK - 1) / SPARSE_QUERY_BLOCK) + qb) * sh.G + w.g) * T;
    const int last_block = (int)((sh.causal ? w.t_last : sh.N - 1) / kBc);

    int n = next_listed(list, 0, T, last_block);
    if (n < T) flash::load_tile<D, kBc, kThreads>(k_s, k_bg, kv_stride, (long)list[n] * kBc, sh.N);
    cp_async_commit();

    while (n < T) {
        const long s0 = (long)list[n] * kBc;
        const int n_next = next_listed(list, n + 1, T, last_block);
        cp_async_wait_all();
        __syncthreads(); /* K_j has landed for everyone; nobody still reads the previous V */
        flash::load_tile<D, kBc, kThreads>(v_s, v_bg, kv_stride, s0, sh.N);
        cp_async_commit();

        float s[kMTiles][kNTiles][4];
        flash::scores(s, q_op, k_op);
        if (s0 + kBc > sh.N || (sh.causal && s0 + kBc - 1 > w.t_first))
            flash::mask(s, w.R0 + warp_row0, s0, [&](long R, long key) {
                const long t = w.pos(R); /* outside the condition: one division per row, not per key */
                return key <= (sh.causal ? t : sh.N - 1);
            });
        uint32_t p[kMTiles][kNTiles][2];
        acc.update(s, p, scale_log2);

        cp_async_wait_all();
        __syncthreads(); /* V_j has landed for everyone; nobody still reads K_j */
        if (n_next < T) {
            flash::load_tile<D, kBc, kThreads>(k_s, k_bg, kv_stride, (long)list[n_next] * kBc, sh.N);
            cp_async_commit();
        }
        acc.accumulate(p, v_op);
        n = n_next;
    }
    /* END SOLUTION */
    acc.store(scale_log2, w.R0 + warp_row0, [&](long R) { return w.dst<D>(sh, o, lse, R); });
}

/* ---------------------------------------------------------------- host side */

int l2_groups_per_chunk(const attn_shape *shape, int D, int *groups)
{
    int dev = 0, l2_bytes = 0;
    int st = attn_cuda_status(cudaGetDevice(&dev), "cudaGetDevice");
    if (!st) st = attn_cuda_status(cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, dev), "L2 size");
    /* kv heads whose K and V fit in half of L2 together */
    *groups = (int)fmax(1.0, fmin((double)shape->G, 0.5 * l2_bytes / (4.0 * shape->N * D)));
    return st;
}

dim3 grid_of(const attn_shape *shape)
{
    const long packed_rows = (long)shape->M * (shape->H / shape->G);
    return dim3((unsigned)((packed_rows + kBr - 1) / kBr) * (unsigned)shape->G, shape->B);
}

template <int D>
int launch_masked(const attn_shape *shape, int mode, float threshold, float scale_log2, const float *retention,
                  const uint16_t *q, const uint16_t *k, const uint16_t *v, uint16_t *o, float *lse, cudaStream_t stream)
{
    const int smem_bytes = (kBr + 2 * kBc) * D * 2 + kBc * (int)sizeof(float);
    int groups = 1;
    int st = attn_cuda_status(
        cudaFuncSetAttribute(masked_attention_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes),
        "cudaFuncSetAttribute (shared memory)");
    if (!st) st = l2_groups_per_chunk(shape, D, &groups);
    if (st) return st;
    masked_attention_kernel<D><<<grid_of(shape), kThreads, smem_bytes, stream>>>(*shape, mode, threshold, scale_log2,
                                                                                 groups, retention, q, k, v, o, lse);
    return attn_cuda_launch_status("masked_attention_kernel");
}

template <int D>
int launch_block_sparse(const attn_shape *shape, const int32_t *block_indices, int T, float scale_log2, const uint16_t *q,
                        const uint16_t *k, const uint16_t *v, uint16_t *o, float *lse, cudaStream_t stream)
{
    const int smem_bytes = (kBr + 2 * kBc) * D * 2;
    int groups = 1;
    int st = attn_cuda_status(cudaFuncSetAttribute(block_sparse_attention_kernel<D>,
                                                   cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes),
                              "cudaFuncSetAttribute (shared memory)");
    if (!st) st = l2_groups_per_chunk(shape, D, &groups);
    if (st) return st;
    block_sparse_attention_kernel<D><<<grid_of(shape), kThreads, smem_bytes, stream>>>(*shape, block_indices, T, scale_log2,
                                                                                       groups, q, k, v, o, lse);
    return attn_cuda_launch_status("block_sparse_attention_kernel");
}

/* The checks both entry points share. */
int check_common(const char *fn, const attn_shape *shape, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                 const uint16_t *o, const float *lse)
{
    int st = attn_check_shape(shape);
    if (st) return st;
    if (!q || !k || !v || !o || !lse) return attn_fail(ATTN_ERR_NULL_POINTER, "%s: q, k, v, o and lse must not be NULL", fn);
    if (shape->D != 64 && shape->D != 128)
        return attn_fail(ATTN_ERR_UNSUPPORTED_D, "%s: D=%d, this kernel supports 64 and 128", fn, shape->D);
    if (((uintptr_t)q | (uintptr_t)k | (uintptr_t)v | (uintptr_t)o) % 16 != 0)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "%s: q, k, v and o must be 16-byte aligned", fn);
    const double blocks = ceil((double)shape->M * (shape->H / shape->G) / kBr) * shape->G;
    if (shape->B > 65535 || blocks > 2147483647.0)
        return attn_fail(ATTN_ERR_BAD_SHAPE, "%s: B=%d must be <= 65535 and the grid < 2^31 blocks", fn, shape->B);
    return ATTN_OK;
}

} // namespace

extern "C" int masked_attention_cuda(const attn_shape *shape, keep_mode mode, float threshold, const float *retention,
                                     const uint16_t *q, const uint16_t *k, const uint16_t *v, uint16_t *o, float *lse,
                                     cudaStream_t stream)
{
    int st = check_common("masked_attention_cuda", shape, q, k, v, o, lse);
    if (st) return st;
    if (mode != KEEP_BASELINE && mode != KEEP_SOFT && mode != KEEP_HARD)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "masked_attention_cuda: unknown keep mode %d", (int)mode);
    if (mode == KEEP_HARD && !(threshold >= 0.0f && threshold <= 1.0f))
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "masked_attention_cuda: threshold %g must lie in [0, 1]", threshold);
    if (!retention && mode != KEEP_BASELINE)
        return attn_fail(ATTN_ERR_NULL_POINTER, "masked_attention_cuda: retention must not be NULL (mode %d)", (int)mode);
    if ((uintptr_t)retention % 4 != 0)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "masked_attention_cuda: retention must be 4-byte aligned");
    const float scale_log2 = attn_softmax_scale(shape) * kLog2e;
    (void)scale_log2;

    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: once the kernel's mask step is written: launch_masked<64> or <128> by shape->D. */
    if (shape->D == 64) return launch_masked<64>(shape, mode, threshold, scale_log2, retention, q, k, v, o, lse, stream);
    return launch_masked<128>(shape, mode, threshold, scale_log2, retention, q, k, v, o, lse, stream);
    /* END SOLUTION */
}

extern "C" int block_sparse_attention_cuda(const attn_shape *shape, const int32_t *block_indices, int T,
                                           const uint16_t *q, const uint16_t *k, const uint16_t *v, uint16_t *o,
                                           float *lse, cudaStream_t stream)
{
    int st = check_common("block_sparse_attention_cuda", shape, q, k, v, o, lse);
    if (st) return st;
    if (!block_indices) return attn_fail(ATTN_ERR_NULL_POINTER, "block_sparse_attention_cuda: block_indices must not be NULL");
    if (T < 1) return attn_fail(ATTN_ERR_BAD_ARGUMENT, "block_sparse_attention_cuda: T=%d must be >= 1", T);
    if ((uintptr_t)block_indices % 4 != 0)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "block_sparse_attention_cuda: block_indices must be 4-byte aligned");
    const float scale_log2 = attn_softmax_scale(shape) * kLog2e;
    (void)scale_log2;

    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: once the kernel's list walk is written: launch_block_sparse<64> or <128> by shape->D. */
    if (shape->D == 64) return launch_block_sparse<64>(shape, block_indices, T, scale_log2, q, k, v, o, lse, stream);
    return launch_block_sparse<128>(shape, block_indices, T, scale_log2, q, k, v, o, lse, stream);
    /* END SOLUTION */
}
