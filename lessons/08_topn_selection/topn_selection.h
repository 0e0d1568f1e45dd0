/*
 * topn_selection.h - lesson 08: NSA top-n block selection. The contract: do not edit.
 *
 * Native Sparse Attention's selected branch attends to the n key blocks (of l' keys each) that the
 * compressed branch (lesson 07) found most important. This lesson computes those block lists, in the
 * rules of common/nsa.h (lessons/07_compressed_attention/README.md explains them with pictures):
 *
 *   importance    p_cmp[t,h,i] = exp(scale * q[t,h] . k_cmp[i, g(h)] - lse_cmp[t,h])   visible i only
 *                 (compressed token i is visible from position t iff i*d + l - 1 <= t; none: all 0)
 *   block score   p_slc[t,h,j] = sum_i p_cmp[t,h,i] * overlap(i, j) / d
 *                 (overlap = keys shared by token i's span [i*d, i*d + l - 1] and block j's span
 *                 [j*l', (j+1)*l' - 1]; l = 32, d = 16, l' = 64 gives weights 1,2,2,2,1 on tokens
 *                 4j-1 .. 4j+3, and l = d = l' the identity)
 *   group sum     score[t,g,j] = sum over the H/G heads h of kv group g of p_slc[t,h,j]
 *                 (heads_share_selection = 1); score[t,h,j] = p_slc[t,h,j] per head (= 0)
 *   top-n         candidates j with j*l' <= t; block 0, the block holding t (t / l') and the one before
 *                 it are always chosen and count towards n; the rest by score, ties to the lower index;
 *                 fewer candidates than n: all of them, then -1; every list ascending
 *
 * Layouts (common/README.md, "Conventions"): q [B, M, H, D]; k_cmp [B, NC, G, D] with
 * NC = attn_nsa_num_cmp(N, p), N = shape->N the number of keys; lse_cmp [B, H, M] (natural log, from
 * lesson 07; -inf where a row sees no compressed token); scores [B, M, L, NB] and block lists
 * indices [B, M, L, n] int32, L = G (shared) or H (per head), NB = attn_nsa_num_blocks(N, p).
 * Query i sits at position t = N - M + i. NSA is causal: shape->causal must be 1.
 */
#ifndef TOPN_SELECTION_H
#define TOPN_SELECTION_H

#include <cuda_runtime_api.h>

#include "attn.h"
#include "nsa.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- C part (host memory, fp32) */

/* scores [B, M, L, NB]: the importance of every selection block for every (query, list), in fp32.
 * Blocks no visible token overlaps (past t, or every block of a row that sees no token) score 0. */
int nsa_block_scores_cpu(const attn_shape *shape, const attn_nsa_params *p, const float *q, const float *k_cmp,
                         const float *lse_cmp, float *scores);

/* indices [B, M, L, n] from scores [B, M, L, NB] by the top-n rule above (ranking in fp32). */
int nsa_topn_cpu(const attn_shape *shape, const attn_nsa_params *p, const float *scores, int32_t *indices);

/* Both: the block lists straight from q, k_cmp and lse_cmp. */
int nsa_select_cpu(const attn_shape *shape, const attn_nsa_params *p, const float *q, const float *k_cmp,
                   const float *lse_cmp, int32_t *indices);

/* ---------------------------------------------------------------- CUDA part (device memory) */

/* The block lists [B, M, L, n] on the GPU: scores recomputed from q . k_cmp on tensor cores and ranked
 * in fp32, never written to device memory. bf16 q and k_cmp, fp32 lse_cmp; D = 64 or 128. Supported
 * block ratios: l / d in {1, 2} and l' / d in {1, 4} (both defaults, and any l, d, l' in those
 * proportions); the NB scores of the lists a block ranks must fit in shared memory (N / l' up to a few
 * thousand; attn_error_detail() says when they do not). It tries nsa_select_g16_cuda first and serves
 * every call that returns ATTN_ERR_BAD_ARGUMENT or ATTN_ERR_NOT_IMPLEMENTED itself. */
int nsa_select_cuda(const attn_shape *shape, const attn_nsa_params *p, const uint16_t *q, const uint16_t *k_cmp,
                    const float *lse_cmp, int32_t *indices, cudaStream_t stream);

/* Optional: the fast path for H/G = 16 (topn_select_g16.cu). The same arguments and lists as
 * nsa_select_cuda, for shared lists (heads_share_selection = 1) with H/G = 16 and D = 128 whose block's
 * shared memory fits the GPU's limit per block (two K tiles, then Q or the score rows of 8 lists:
 * 32 KB + max(32 KB, 32 NB bytes), NB = attn_nsa_num_blocks(N, p); NB up to about 6000 on an H100):
 * a block ranks 8 positions and sums each position's 16 heads in registers. After the same argument
 * checks (and their codes) as nsa_select_cuda, any other call returns ATTN_ERR_BAD_ARGUMENT, launches
 * nothing and writes nothing; attn_error_detail() says what it does not take. The stub returns
 * ATTN_ERR_NOT_IMPLEMENTED for every call that passes the checks. */
int nsa_select_g16_cuda(const attn_shape *shape, const attn_nsa_params *p, const uint16_t *q, const uint16_t *k_cmp,
                        const float *lse_cmp, int32_t *indices, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
