/*
 * decoding.h - lesson 11: decoding one token at a time against a KV cache, dense and NSA. The contract:
 * do not edit.
 *
 * THE CACHE. A batch of B sequences, each with room for L_max = shape->N tokens (common/README.md has
 * the layouts; every buffer is its own argument):
 *
 *   k_cache, v_cache          [B, L_max, G, D]    rows 0 .. lengths[b] - 1 hold sequence b's keys and values
 *   k_cmp_cache, v_cmp_cache  [B, NC_max, G, D]   NC_max = attn_nsa_num_cmp(L_max): rows 0 .. cmp_lengths[b] - 1
 *                                                 hold its NSA compressed tokens (lesson 07's phi, either mode)
 *   lengths, cmp_lengths      [B] int32           always cmp_lengths[b] = attn_nsa_num_cmp(lengths[b])
 *
 * Rows past a sequence's length are never read. An append of counts[b] tokens takes lengths[b] from L to
 * L' = L + counts[b]. The compressed cache gains token c = (L' - l) / d each time the length passes a
 * value L' >= l with (L' - l) % d == 0: its span [c d, c d + l - 1] = [L' - l, L' - 1] is then complete.
 * So a cache of length L holds max(0, floor((L - l) / d) + 1) compressed tokens, and an append of several
 * tokens can add several (or, with counts[b] < d, none).
 *
 * DECODING. Sequence b's newest token sits at position t = lengths[b] - 1 (it was appended first); its
 * query q[b] attends to the cache:
 *   dense  keys 0 .. t (all of them)
 *   NSA    lesson 10's three branches at position t: the compressed tokens (every one in the cache is
 *          visible from t: c d + l - 1 <= t for all c < NC), the top-n selection blocks by importance
 *          (block 0, the block holding t and the one before it forced), the window t - w + 1 .. t;
 *          o = g_cmp o_cmp + g_slc o_slc + g_swa o_swa
 * which is exactly the last row of the prefill of the same sequence (lesson 10's forward on its
 * lengths[b] tokens). A sequence of length 0 (an empty slot of the batch) sees nothing: o = 0, every
 * lse = -inf, its lists all -1.
 *
 * SHAPES. shape->B sequences, shape->N = L_max the cache's capacity, H, G, D, scale as everywhere, and
 * shape->causal = 1 (a cache is causal by construction). shape->M is the number of new tokens per
 * sequence: the decoding functions take one query per sequence, M = 1 (q, o [B, 1, H, D], lse [B, H, 1]);
 * an append takes up to M tokens per sequence (k_new, v_new [B, M, G, D], sequence b appending its first
 * counts[b] rows). attn_nsa_params p: NULL in an append keeps no compressed cache (dense decoding only;
 * the compressed arguments may then be NULL).
 *
 * BAD INPUT. Every function checks its arguments and returns a named error (an attn status with a detail
 * text). An append whose input is bad changes nothing: not a byte of the caches, lengths or cmp_lengths.
 * What it found wrong is also reported as kv_cache_problem {kind, b} in `problem` (int32 [2]); b is the
 * first sequence with a problem, -1 when there is none.
 */
#ifndef DECODING_H
#define DECODING_H

#include <cuda_runtime_api.h>

#include "attn.h"
#include "nsa.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    KV_CACHE_OK = 0,
    KV_CACHE_FULL = 1,         /* lengths[b] + counts[b] > L_max: no room for the new tokens */
    KV_CACHE_BAD_LENGTH = 2,   /* lengths[b] < 0 or > L_max: a position past the cache */
    KV_CACHE_CMP_MISMATCH = 3, /* cmp_lengths[b] != attn_nsa_num_cmp(lengths[b], p): the compressed cache
                                  disagrees with the length */
    KV_CACHE_BAD_COUNT = 4,    /* counts[b] < 0 or > M */
} kv_cache_problem;

/* Splits of the split-KV decode: a cache of capacity L_max in chunks of `chunk` keys (chunk <= 0: one). */
static inline int decode_num_splits(int L_max, int chunk) { return chunk > 0 ? (L_max + chunk - 1) / chunk : 1; }

/* ---------------------------------------------------------------- C part (host memory, fp32) */

/* Append counts[b] tokens to sequence b (counts NULL: M each): rows 0 .. counts[b] - 1 of k_new[b],
 * v_new[b] [B, M, G, D] go to rows lengths[b] .. of the caches, the compressed cache gains the tokens whose
 * spans the append completes (mode p->mode: mean, or linear with w_k, w_v [G, l*D, D] and pos [l, D] added
 * to the keys), and lengths, cmp_lengths grow. problem: NULL or int32 [2], receives {kind, b}. Bad input:
 * ATTN_ERR_BAD_ARGUMENT (the kv_cache_problem in `problem` and in the detail text), nothing changed. */
int kv_cache_append_cpu(const attn_shape *shape, const attn_nsa_params *p, const float *k_new, const float *v_new,
                        const int32_t *counts, const float *w_k, const float *w_v, const float *pos, float *k_cache,
                        float *v_cache, float *k_cmp_cache, float *v_cmp_cache, int32_t *lengths,
                        int32_t *cmp_lengths, int32_t *problem);

/* The split-KV partials of a dense decode: split u of sequence b covers keys [u chunk, min((u + 1) chunk,
 * lengths[b])), u < U = decode_num_splits(L_max, chunk); o_part [B, H, U, D] is attention over those keys
 * alone (normalised) and lse_part [B, H, U] its lse (natural log); a split with no key: o = 0, lse = -inf. */
int decode_split_cpu(const attn_shape *shape, int chunk, const float *q, const float *k_cache, const float *v_cache,
                     const int32_t *lengths, float *o_part, float *lse_part);

/* The combine: o [B, H, D] and lse [B, H] of `splits` partials each (o_part [B, H, splits, D], lse_part
 * [B, H, splits]), weighted by their lse: m = max_u lse_u, w_u = exp(lse_u - m), o = sum_u w_u o_u / sum_u
 * w_u, lse = m + log sum_u w_u. A row whose partials all have lse = -inf gets o = 0, lse = -inf. */
int decode_combine_cpu(const attn_shape *shape, int splits, const float *o_part, const float *lse_part, float *o,
                       float *lse);

/* Dense decode of one query per sequence, position t = lengths[b] - 1, over keys 0 .. t of the cache, as
 * decode_split_cpu then decode_combine_cpu (chunk <= 0: one split): o [B, 1, H, D], lse [B, H, 1]. */
int decode_dense_cpu(const attn_shape *shape, int chunk, const float *q, const float *k_cache, const float *v_cache,
                     const int32_t *lengths, float *o, float *lse);

/* NSA decode (lesson 10's forward at t = lengths[b] - 1, reading the caches): o [B, 1, H, D]; the gates
 * g_cmp, g_slc, g_swa [B, 1, H]; optional outputs (NULL: not returned) lse_cmp, lse_slc, lse_swa [B, H, 1]
 * and block_indices [B, 1, L, n] int32, L = G (heads_share_selection) or H. */
int decode_nsa_cpu(const attn_shape *shape, const attn_nsa_params *p, const float *q, const float *k_cache,
                   const float *v_cache, const float *k_cmp_cache, const float *v_cmp_cache, const int32_t *lengths,
                   const float *g_cmp, const float *g_slc, const float *g_swa, float *o, float *lse_cmp,
                   float *lse_slc, float *lse_swa, int32_t *block_indices);

/* ---------------------------------------------------------------- CUDA part (device memory, bf16)
 *
 * Every pointer is device memory; bf16 tensors 16-byte aligned, fp32 and int32 ones 4-byte aligned;
 * D = 64 or 128. Each function only enqueues work on `stream`: no allocation, no synchronisation, so a
 * whole decoding step (append, then decode) can be captured in a CUDA graph and replayed. */

/* kv_cache_append_cpu on the GPU (counts, lengths, cmp_lengths and problem [2] in device memory). The
 * cache's lengths live on the device, so the checks of kv_cache_problem run there: `problem` receives
 * {kind, b} once the work is done, and a bad append changes nothing else. What the host can check (the
 * shape, the pointers, the parameters) is returned as a status at once. Compressed tokens are rounded
 * to bf16 once; in linear mode each key row plus pos is rounded to bf16 before the map (lesson 07). */
int kv_cache_append_cuda(const attn_shape *shape, const attn_nsa_params *p, const uint16_t *k_new,
                         const uint16_t *v_new, const int32_t *counts, const uint16_t *w_k, const uint16_t *w_v,
                         const uint16_t *pos, uint16_t *k_cache, uint16_t *v_cache, uint16_t *k_cmp_cache,
                         uint16_t *v_cmp_cache, int32_t *lengths, int32_t *cmp_lengths, int32_t *problem,
                         cudaStream_t stream);

/* Bytes of workspace decode_dense_cuda needs (its split-KV partials); 0 for arguments it rejects. */
size_t decode_dense_workspace_bytes(const attn_shape *shape);

/* Split-KV ("flash-decoding") dense decode: the cache of each (b, kv head) is cut into chunks that
 * thread blocks read in parallel, each leaving a partial (o, lse), and a combine merges them by their
 * lse. Any H % G == 0. lse may be NULL. lengths are read on the device (values outside [0, L_max] are
 * clamped). workspace: decode_dense_workspace_bytes(shape) bytes, 16-byte aligned. */
int decode_dense_cuda(const attn_shape *shape, const uint16_t *q, const uint16_t *k_cache, const uint16_t *v_cache,
                      const int32_t *lengths, uint16_t *o, float *lse, void *workspace, size_t workspace_bytes,
                      cudaStream_t stream);

/* Bytes of workspace decode_nsa_cuda needs; 0 for arguments it rejects. */
size_t decode_nsa_workspace_bytes(const attn_shape *shape, const attn_nsa_params *p);

/* decode_nsa_cpu on the GPU, reading only the compressed cache, the selected blocks and the window.
 * H / G <= 16 (the heads of a kv group are the rows of one tensor-core tile); both modes (the compressed
 * cache is an input); shared and per-head selection. The importance ranks fp32 scores. lengths as in
 * decode_dense_cuda. workspace: decode_nsa_workspace_bytes(shape, p) bytes, 16-byte aligned. */
int decode_nsa_cuda(const attn_shape *shape, const attn_nsa_params *p, const uint16_t *q, const uint16_t *k_cache,
                    const uint16_t *v_cache, const uint16_t *k_cmp_cache, const uint16_t *v_cmp_cache,
                    const int32_t *lengths, const float *g_cmp, const float *g_slc, const float *g_swa, uint16_t *o,
                    float *lse_cmp, float *lse_slc, float *lse_swa, int32_t *block_indices, void *workspace,
                    size_t workspace_bytes, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
