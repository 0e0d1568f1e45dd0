/*
 * topn_common.cuh - lesson 08: the device functions that both CUDA files of the lesson use, and the
 * argument checks of their entry points.
 *
 *   topn_selection.cu    the general kernel (select_kernel): every shape
 *   topn_select_g16.cu   the optional fast path for H/G = 16 (select_g16_kernel)
 *
 * Each .cu file is compiled on its own (no device code is linked across files), so the pieces both
 * kernels are built from live here, once: the packed Q rows and their fragments, Q K^T on tensor cores,
 * the probabilities, the block sums and the ranking. Six of them are yours (the TODOs); the rest is
 * given. Everything is in an anonymous namespace: each file gets its own copy.
 */
#ifndef TOPN_COMMON_CUH
#define TOPN_COMMON_CUH

#include <cuda_runtime.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>

#include "attn_gpu.h"
#include "nsa_tiles.cuh" /* token_of_row, and topn_select_g16.cu's KTileCopy */
#include "ptx.cuh"
#include "topn_selection.h"

namespace {

using namespace ptx;
using nsa::token_of_row; /* smem row c of a permuted K tile holds token token_of_row(c) of the tile */

constexpr int kMaxWarps = 4;
constexpr int kTile = 64;  /* compressed tokens per K tile */
constexpr int kMTiles = 2; /* m16 tiles per warp: 32 packed rows */
constexpr int kNTiles = kTile / 8;
constexpr float kLog2e = 1.4426950408889634f;
static_assert(nsa::kKTile == kTile, "the permuted K tiles of common/nsa_tiles.cuh are this lesson's K tiles");

__device__ __forceinline__ long visible_count(long t, long NC, const attn_nsa_params &p)
{
    if (t < p.l - 1) return 0;
    const long c = (t - (p.l - 1)) / p.d + 1;
    return c < NC ? c : NC;
}

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

/* The argument checks of nsa_select_cuda and nsa_select_g16_cuda (fn names the caller in the
 * messages): the shape, the parameters, causal, D = 64 or 128, no NULL pointer, the alignments, and the
 * block ratios the kernels are built for. */
static inline int check_arguments(const char *fn, const attn_shape *shape, const attn_nsa_params *p,
                                  const uint16_t *q, const uint16_t *k_cmp, const float *lse_cmp,
                                  const int32_t *indices)
{
    int st = attn_check_shape(shape);
    if (st) return st;
    st = attn_nsa_check(p);
    if (st) return st;
    if (!shape->causal)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "%s: NSA selection is causal: shape->causal must be 1", fn);
    if (shape->D != 64 && shape->D != 128)
        return attn_fail(ATTN_ERR_UNSUPPORTED_D, "%s: D=%d, this kernel supports 64 and 128", fn, shape->D);
    const long NC = attn_nsa_num_cmp(shape->N, p);
    if (!q || !lse_cmp || !indices || (NC > 0 && !k_cmp))
        return attn_fail(ATTN_ERR_NULL_POINTER, "%s: q, k_cmp, lse_cmp and indices must not be NULL", fn);
    if (((uintptr_t)q | (uintptr_t)k_cmp) % 16 != 0)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "%s: q and k_cmp must be 16-byte aligned", fn);
    const int r = p->l / p->d, bs = p->l_sel / p->d;
    if ((r != 1 && r != 2) || (bs != 1 && bs != 4))
        return attn_fail(ATTN_ERR_BAD_ARGUMENT,
                         "%s: l/d = %d and l'/d = %d; this kernel supports l/d in {1, 2} and l'/d in {1, 4} "
                         "(l=%d d=%d l'=%d)",
                         fn, r, bs, p->l, p->d, p->l_sel);
    return ATTN_OK;
}

/* The shared memory this GPU gives one block (opt-in), in *max_smem. */
static inline int smem_limit(int *max_smem)
{
    int dev = 0;
    int st = attn_cuda_status(cudaGetDevice(&dev), "cudaGetDevice");
    if (!st)
        st = attn_cuda_status(cudaDeviceGetAttribute(max_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev),
                              "shared memory limit");
    return st;
}

} // namespace

#endif
