/*
 * topn_selection.cu - lesson 08, CUDA part: NSA's block scores and top-n lists in one kernel. The
 * scores are recomputed from q . k_cmp on tensor cores (bf16 in, fp32 accumulators), turned into
 * importance with exp2 and a log2(e)-scaled lse, summed onto selection blocks and over the heads of a
 * group, and ranked in fp32; they live in shared memory only.
 *
 * The block mapping without a weight table. Cut the keys into stride units of d keys. Compressed token
 * i covers units i .. i + r - 1 (r = l / d), so unit c is covered by tokens c - r + 1 .. c and receives
 * u_c = p[c - r + 1] + ... + p[c], and
 * block j is the bs = l' / d units j*bs .. j*bs + bs - 1: score[j] = u_{j*bs} + ... + u_{j*bs+bs-1}.
 * For l = 32, d = 16, l' = 64 (r = 2, bs = 4) that is p[4j-1] + 2 p[4j] + 2 p[4j+1] + 2 p[4j+2] + p[4j+3],
 * the weights of nsa.h; for l = d = l' it is p[j]. r and bs are template parameters (1 or 2, 1 or 4).
 *
 * Parallelisation
 *   grid   one block per (chunk of packed rows, kv head g), batch in grid.y. Packed rows are lesson 04's
 *          R = i * hpg + hh (hpg = H / G heads of group g at position i). Shared lists: a chunk is P
 *          whole positions (P * hpg rows, P = floor(32 W / hpg)), one list each, so the group sum stays
 *          inside the block; per-head lists: 32 W rows, one list each. Chunks from last to first (the
 *          last positions see the most tokens).
 *   block  W warps (4, fewer when the lists' scores would not fit in shared memory); warp = 32 packed
 *          rows (two m16 tiles) against every 64-token tile of k_cmp its rows can see; lane = rows gid,
 *          gid + 8 of each m16 tile and 16 CONSECUTIVE tokens 16 tig .. 16 tig + 15 of the tile (the
 *          K tile's rows are stored permuted so that the mma's column pattern lands on them), so a
 *          lane sums its own units and blocks and needs only r - 1 tokens from its left neighbour.
 *   shared two K tiles [64][D] bf16 (cp.async, double-buffered, swizzled); Q [32 W][D] bf16 only until
 *          each warp holds its Q fragments in registers; the same bytes then hold a staging tile
 *          [32 W][64 / bs] fp32 (each row's block sums of one tile) and the score rows [lists][NB]
 *          fp32 that the top-n reads at the end. Nothing but the lists goes to device memory.
 *   top-n  a warp per list: forced blocks marked first, then n - 3 rounds of a warp argmax (ties to the
 *          lower index) that marks its winner; the marked blocks, read in order, are the ascending list.
 */
#include <cuda_runtime.h>
#include <limits.h>
#include <math.h>

#include "attn_gpu.h"
#include "ptx.cuh"
#include "topn_selection.h"

using namespace ptx;

namespace {

constexpr int kMaxWarps = 4;
constexpr int kTile = 64;  /* compressed tokens per K tile */
constexpr int kMTiles = 2; /* m16 tiles per warp: 32 packed rows */
constexpr int kNTiles = kTile / 8;
constexpr float kLog2e = 1.4426950408889634f;

/* Smem row c of a K tile holds token tok(c) of the tile: the m16n8 accumulator gives lane tig the
 * columns nt * 8 + 2 tig + e, which then are the consecutive tokens 16 tig + 2 nt + e. */
__device__ __forceinline__ int token_of_row(int c) { return 16 * ((c % 8) / 2) + 2 * (c / 8) + (c % 2); }

__device__ __forceinline__ long visible_count(long t, long NC, const attn_nsa_params &p)
{
    if (t < p.l - 1) return 0;
    const long c = (t - (p.l - 1)) / p.d + 1;
    return c < NC ? c : NC;
}

/* Copy tokens T0 .. T0 + 63 of kv head g into a swizzled, permuted tile (zeros past NC). */
template <int D>
__device__ __forceinline__ void load_k_tile(uint32_t tile, const uint16_t *k_bg, size_t stride, long T0, long NC)
{
    constexpr int kChunks = D / 8;
    for (int e = threadIdx.x; e < kTile * kChunks; e += blockDim.x) {
        const int r = e / kChunks, c = e % kChunks;
        const long u = T0 + token_of_row(r);
        const bool valid = u < NC;
        cp_async_16(tile + swizzle<D>(r, c), valid ? k_bg + (size_t)u * stride + c * 8 : k_bg, valid);
    }
}

/* The same copy when the block's thread count is known at compile time (select_g16_kernel): each thread
 * fills the same chunk column of rows r, r + step, r + 2 step, ... of every tile, so its swizzled offsets
 * and its tokens (tok(r + 8 k) = tok(r) + 2 k) are worked out once, in init, instead of for every
 * 16-byte copy of every tile: the plain loop above spends about 50 integer instructions per copy on
 * them, a third of what select_g16_kernel executes at the bar's shape. */
template <int D, int kThreadCount>
struct KTileCopy {
    static constexpr int kChunks = D / 8, kRowStep = kThreadCount / kChunks, kPasses = kTile / kRowStep;
    static_assert(kRowStep % 8 == 0 && kTile % kRowStep == 0, "rows r + k * step must keep r's swizzle and token pattern");
    static constexpr int kTokStep = 2 * (kRowStep / 8); /* tokens between the rows of two passes */
    uint32_t dst; /* swizzled byte offset of the thread's first chunk in a tile */
    int tok;      /* the token of its first row, within the tile */
    int col;      /* the first element of its chunk in a row of K */

    __device__ __forceinline__ void init()
    {
        const int r = threadIdx.x / kChunks, c = threadIdx.x % kChunks;
        dst = swizzle<D>(r, c), tok = token_of_row(r), col = c * 8;
    }

    /* load_k_tile(tile, k_bg, stride, T0, NC) */
    __device__ __forceinline__ void copy(uint32_t tile, const uint16_t *k_bg, size_t stride, long T0, long NC) const
    {
        const long left = NC - T0 - tok; /* tokens from the thread's first one to the end of k_cmp */
        const uint16_t *src = k_bg + (size_t)(T0 + tok) * stride + col;
#pragma unroll
        for (int it = 0; it < kPasses; ++it) {
            const bool valid = it * kTokStep < left;
            cp_async_16(tile + dst + it * kRowStep * D * 2, valid ? src + (size_t)(it * kTokStep) * stride : k_bg, valid);
        }
    }
};

/* Copy packed rows R0 .. R0 + rows_cap - 1 of kv head g (lesson 04's R = i * hpg + hh) into a swizzled
 * tile [rows_cap][D]; rows at or past R_end are zero-filled. */
template <int D>
__device__ __forceinline__ void load_q_rows(uint32_t q_s, const uint16_t *q, const attn_shape &sh, int b, int g,
                                            long R0, long R_end, int rows_cap)
{
    /* TODO (about 10 lines): packed row R is query i = R / hpg, head g * hpg + R % hpg: q + ((b * M + i) * H + head) * D.
     * One cp_async_16 per 8 bf16, every thread of the block taking a share, valid = (row < R_end). */
}

/* The warp's 32 packed rows of the swizzled Q tile (two m16 tiles from row warp_row0) as mma A
 * fragments, held in registers for the whole key loop. */
template <int D>
__device__ __forceinline__ void load_q_fragments(uint32_t (&qf)[kMTiles][D / 16][4], uint32_t q_s, int warp_row0,
                                                 int lane)
{
    /* TODO (about 10 lines): lesson 04's ldmatrix_x4 of an A operand: row warp_row0 + lane % 16 (+ 16 for the second
     * tile), 16-byte chunk 2 kk + lane / 16 of each k16 step, swizzled as the tile was stored. */
}

/* s = Q K^T of the warp's two m16 tiles against the 64 tokens of the K tile at k_buf (raw dot
 * products; s[mt][nt] is n8 tile nt, which the permuted tile turns into the lane's consecutive tokens). */
template <int D>
__device__ __forceinline__ void tile_scores(float (&s)[kMTiles][kNTiles][4], const uint32_t (&qf)[kMTiles][D / 16][4],
                                            uint32_t k_buf, int lane)
{
    /* TODO (about 20 lines): zero s; for each k16 step kk and pair of n8 tiles np, one ldmatrix_x4 of the K tile (rows
     * lane % 8 + (lane / 16) * 8 of the pair, chunk 2 kk + (lane / 8) % 2, swizzled) feeds two mma_bf16
     * for each m16 tile. */
}

/* The probabilities p = exp2(s * scale_log2 - lse2) of the lane's 16 tokens in one row (rr = 0: gid,
 * rr = 1: gid + 8) of an m16 tile of scores s[nt][*] = q . k: pv[x] is token 16 tig + x of the tile.
 * Only the first `lim` (0 to 16) are visible to the row, the others are 0; kAllVisible says all 16 are,
 * the common case, which then costs no compares. */
template <bool kAllVisible>
__device__ __forceinline__ void lane_probs(const float (&s)[kNTiles][4], int rr, int lim, float lse2, float scale_log2,
                                           float (&pv)[16])
{
    /* TODO (about 10 lines): token x = 2 nt + e of the lane is s[nt][2 rr + e] (the permuted K tile makes the lane's
     * columns consecutive tokens); fast_exp2(fmaf(s, scale_log2, -lse2)), 0 when x >= lim unless
     * kAllVisible. */
}

/* The lane's 16 probabilities pv (of one row, or a sum of rows that share the tokens) to its 16 / BS
 * block sums, ADDED to blk. Every lane of the warp must call it (it shuffles). carry holds the p of the
 * r - 1 tokens before the tile (for tig 0) and is updated for the next tile. */
template <int R, int BS>
__device__ __forceinline__ void lane_block_sums(const float (&pv)[16], float (&carry)[R > 1 ? R - 1 : 1], int lane,
                                                float (&blk)[16 / BS])
{
    /* TODO (about 40 lines): the r - 1 tokens before the lane's first from lane tig - 1 by __shfl_sync (tig 0: carry, and
     * every lane passes its last ones on: the next tile's carry); unit c = the r tokens ending at c,
     * block c / BS += unit, in the same order for every block. (Faster: each token of a block once, times
     * the number of its units that the block holds.) */
}

/* lane_probs for a row that sees `vis` tokens, from the tile at T0: the compare-free path when the row
 * sees the whole tile (T0 + 64 <= vis), else the lane's count of visible tokens. (A compressed token past
 * the visible count covers keys after t - l + 1 only, so it could only add to the forced blocks cur - 1
 * and cur or to blocks past t: for l <= 2 d and l' >= d, the configurations this kernel runs, the lists
 * would not change without the mask. It keeps the scores those of the definition, and costs one tile
 * per row.) */
__device__ __forceinline__ void row_probs(const float (&s)[kNTiles][4], int rr, int T0, int vis, float lse2,
                                          float scale_log2, int lane, float (&pv)[16])
{
    if (T0 + kTile <= vis)
        lane_probs<true>(s, rr, 16, lse2, scale_log2, pv);
    else
        lane_probs<false>(s, rr, min(max(vis - T0 - 16 * (lane % 4), 0), 16), lse2, scale_log2, pv);
}

/* Offer candidate (v, j) to a lane's best-first list (v: score bits, larger is better; among equal v the
 * entry that came first stays first, so a lane that offers its blocks in ascending order keeps ties
 * towards the lower index). Unrolled compare-and-swaps: the arrays stay in registers. */
template <int K>
__device__ __forceinline__ void offer(int (&v)[K], int (&j)[K], int cv, int cj)
{
#pragma unroll
    for (int k = 0; k < K; ++k)
        if (cv > v[k]) {
            const int tv = v[k], tj = j[k];
            v[k] = cv, j[k] = cj;
            cv = tv, cj = tj;
        }
}

/* One warp ranks one list: the score row `row` (shared memory, candidates 0 .. cur) becomes the n
 * ascending block indices at `out` (every candidate and -1 padding when there are at most n). The row
 * is overwritten: chosen blocks are marked by a score of -inf. */
__device__ __forceinline__ void rank_list(float *row, int cur, int n, int32_t *out, int lane)
{
    /* TODO (about 45 lines): cur + 1 <= n: write 0 .. cur, then -1. Otherwise mark the forced blocks (0, cur - 1, cur),
     * then n - 3 rounds of a warp argmax over the unmarked blocks (the largest score; among equal scores
     * the lowest index), each marking its winner. Simplest: every lane rescans its blocks j = lane,
     * lane + 32, ... each round. Then a ballot over the marked blocks, in order. */
}

template <int D, int R, int BS>
__global__ void __launch_bounds__(kMaxWarps * 32, 1)
    select_kernel(attn_shape sh, attn_nsa_params p, long NC, long NB, float scale_log2, int rows_per_block,
                  int lists_per_block, const uint16_t *__restrict__ q, const uint16_t *__restrict__ k_cmp,
                  const float *__restrict__ lse, int32_t *__restrict__ indices)
{
    constexpr int kRowBytes = D * 2;
    constexpr int kJT = kTile / BS;    /* blocks per K tile */
    constexpr int kSJ = kJT + 4;       /* staging row stride (floats), keeps float4 alignment */
    constexpr int kLaneBlocks = 16 / BS; /* blocks per lane per row */
    extern __shared__ __align__(128) uint8_t smem[];
    const int n_warps = blockDim.x / 32, rows_cap = 32 * n_warps;
    const uint32_t k_s = smem_addr(smem), q_s = k_s + 2 * kTile * kRowBytes;
    float *stg = reinterpret_cast<float *>(smem + 2 * kTile * kRowBytes); /* after Q is in registers */
    float *sc = stg + (size_t)rows_cap * kSJ;

    /* TODO (about 90 lines): 1. coordinates: kv head g, the block's packed rows R0 .. R_end - 1, each row's position t,
     *          visible count and lse * log2(e); the number of token tiles from the last row's count.
     * 2. load_q_rows and the first K tile (load_k_tile stores it permuted); wait, barrier, ldmatrix Q
     *    into registers, barrier, zero the score rows (they reuse Q's bytes).
     * 3. per tile: wait + barrier, prefetch the next tile, S = Q K^T (lesson 04's ldmatrix/mma loops),
     *    for each of the lane's rows row_probs then lane_block_sums, staging store, barrier, then a
     *    thread per (list, block) adds the list's rows in a fixed order to the score row.
     * 4. barrier, then a warp per list: rank_list. */
}

/* The fast path for the most common GQA shape, H/G = 16 heads per kv group with shared lists (H = 64,
 * G = 4 in the course's bar), D = 128: the 16 heads of one position are exactly the rows of one m16
 * tile. The group sum then needs no staging and no barrier: the two rows of a lane (heads gid and
 * gid + 8) are added, then a reduce-scatter of shuffles over the 8 lanes of one tig (lane bits 4, 3,
 * 2) leaves each lane with 2 (mean-pool) or 1 (paper) finished block scores of its position, which it
 * adds to the warp's own score row. Each warp owns its two positions' lists from the first tile to the
 * ranking, so the only barrier per tile is the one of the K pipeline, and the smaller shared memory
 * (no staging tile) lets three blocks share a multiprocessor. */
template <int D, int R, int BS>
__global__ void __launch_bounds__(kMaxWarps * 32, 3)
    select_g16_kernel(attn_shape sh, attn_nsa_params p, long NC, long NB, float scale_log2,
                      const uint16_t *__restrict__ q, const uint16_t *__restrict__ k_cmp,
                      const float *__restrict__ lse, int32_t *__restrict__ indices)
{
    constexpr int kRowBytes = D * 2;
    constexpr int kV = 16 / BS;                  /* block sums per lane per row, before the reduction */
    constexpr int kKeep = kV >= 8 ? kV / 8 : 1;  /* finished block scores per lane after it */
    constexpr int kRows = kMaxWarps * 32;        /* 8 positions x 16 heads */
    extern __shared__ __align__(128) uint8_t smem[];
    const uint32_t k_s = smem_addr(smem), q_s = k_s + 2 * kTile * kRowBytes;
    float *sc = reinterpret_cast<float *>(smem + 2 * kTile * kRowBytes); /* [8 lists][NB], after Q */

    /* TODO (about 105 lines): optional, after select_kernel works: the same pipeline with 8 positions per block, one per
     * m16 tile, and the group sum done in registers (the probabilities of rows gid and gid + 8 added
     * before lane_block_sums, then __shfl_xor_sync over lane masks 16, 8, 4, each step keeping half of
     * the values), straight into the warp's own score rows. */
}

/* Shared memory of a block of n_warps warps: two K tiles, then Q or (staging + score rows). */
template <int D, int BS>
size_t smem_bytes(int n_warps, int lists, long NB)
{
    const size_t rows = 32 * (size_t)n_warps, kv = 2 * (size_t)kTile * D * 2, q_bytes = rows * D * 2;
    const size_t work = (rows * (kTile / BS + 4) + (size_t)lists * NB) * sizeof(float);
    return kv + (q_bytes > work ? q_bytes : work);
}

template <int D, int R, int BS>
int launch(const attn_shape *sh, const attn_nsa_params *p, const uint16_t *q, const uint16_t *k_cmp,
           const float *lse_cmp, int32_t *indices, cudaStream_t stream)
{
    const long NC = attn_nsa_num_cmp(sh->N, p), NB = attn_nsa_num_blocks(sh->N, p);
    const int hpg = sh->H / sh->G;
    int dev = 0, max_smem = 0;
    int st = attn_cuda_status(cudaGetDevice(&dev), "cudaGetDevice");
    if (!st)
        st = attn_cuda_status(cudaDeviceGetAttribute(&max_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev),
                              "shared memory limit");
    if (st) return st;
    /* TODO (about 20 lines): optional, with select_g16_kernel: H/G = 16, shared lists and D = 128 go to it when its
     * shared memory (two K tiles, then Q or the 8 score rows) fits, with 128 threads per block. */
    /* the most warps whose lists' score rows fit */
    int n_warps = 0, rows = 0, lists = 0;
    size_t bytes = 0;
    for (int w = kMaxWarps; w >= 1 && !n_warps; w /= 2) {
        const int cap = 32 * w;
        const int l = p->heads_share_selection ? cap / hpg : cap;
        if (l < 1) continue;
        bytes = smem_bytes<D, BS>(w, l, NB);
        if (bytes <= (size_t)max_smem) n_warps = w, lists = l, rows = p->heads_share_selection ? l * hpg : cap;
    }
    if (!n_warps)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT,
                         "nsa_select_cuda: %ld selection blocks (N / l'): the score rows of one block's lists need "
                         "more than the %d bytes of shared memory this GPU gives a block (H/G = %d)",
                         NB, max_smem, hpg);
    const long chunks = ((long)sh->M * hpg + rows - 1) / rows;
    if (chunks * sh->G > 2147483647L || sh->B > 65535)
        return attn_fail(ATTN_ERR_BAD_SHAPE, "nsa_select_cuda: B=%d must be <= 65535 and the grid < 2^31 blocks",
                         sh->B);
    st = attn_cuda_status(cudaFuncSetAttribute(select_kernel<D, R, BS>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               (int)bytes),
                          "cudaFuncSetAttribute (shared memory)");
    if (st) return st;
    const dim3 grid((unsigned)(chunks * sh->G), (unsigned)sh->B);
    select_kernel<D, R, BS><<<grid, 32 * n_warps, bytes, stream>>>(
        *sh, *p, NC, NB, attn_softmax_scale(sh) * kLog2e, rows, lists, q, k_cmp, lse_cmp, indices);
    return attn_cuda_launch_status("select_kernel");
}

template <int D>
int launch_ratio(const attn_shape *sh, const attn_nsa_params *p, const uint16_t *q, const uint16_t *k_cmp,
                 const float *lse_cmp, int32_t *indices, cudaStream_t stream)
{
    const int r = p->l / p->d, bs = p->l_sel / p->d;
    if (r == 1 && bs == 1) return launch<D, 1, 1>(sh, p, q, k_cmp, lse_cmp, indices, stream);
    if (r == 1 && bs == 4) return launch<D, 1, 4>(sh, p, q, k_cmp, lse_cmp, indices, stream);
    if (r == 2 && bs == 1) return launch<D, 2, 1>(sh, p, q, k_cmp, lse_cmp, indices, stream);
    return launch<D, 2, 4>(sh, p, q, k_cmp, lse_cmp, indices, stream);
}

} // namespace

extern "C" int nsa_select_cuda(const attn_shape *shape, const attn_nsa_params *p, const uint16_t *q,
                               const uint16_t *k_cmp, const float *lse_cmp, int32_t *indices, cudaStream_t stream)
{
    int st = attn_check_shape(shape);
    if (st) return st;
    st = attn_nsa_check(p);
    if (st) return st;
    if (!shape->causal)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "nsa_select_cuda: NSA selection is causal: shape->causal must be 1");
    if (shape->D != 64 && shape->D != 128)
        return attn_fail(ATTN_ERR_UNSUPPORTED_D, "nsa_select_cuda: D=%d, this kernel supports 64 and 128", shape->D);
    const long NC = attn_nsa_num_cmp(shape->N, p);
    if (!q || !lse_cmp || !indices || (NC > 0 && !k_cmp))
        return attn_fail(ATTN_ERR_NULL_POINTER, "nsa_select_cuda: q, k_cmp, lse_cmp and indices must not be NULL");
    if (((uintptr_t)q | (uintptr_t)k_cmp) % 16 != 0)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "nsa_select_cuda: q and k_cmp must be 16-byte aligned");
    const int r = p->l / p->d, bs = p->l_sel / p->d;
    if ((r != 1 && r != 2) || (bs != 1 && bs != 4))
        return attn_fail(ATTN_ERR_BAD_ARGUMENT,
                         "nsa_select_cuda: l/d = %d and l'/d = %d; this kernel supports l/d in {1, 2} and l'/d in "
                         "{1, 4} (l=%d d=%d l'=%d)",
                         r, bs, p->l, p->d, p->l_sel);

    /* TODO (about 5 lines): once the kernel body is written: launch_ratio<64>(...) or launch_ratio<128>(...) by D. */
    return ATTN_ERR_NOT_IMPLEMENTED;
}
