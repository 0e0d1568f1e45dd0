/*
 * oracle_nsa.h - the double-precision references of NSA's branches (lessons 07 on), for the grader.
 * The rules they follow are in common/nsa.h.
 */
#ifndef ATTN_ORACLE_NSA_H
#define ATTN_ORACLE_NSA_H

#include <stdint.h>

#include "attn.h"
#include "nsa.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Slow and obvious, straight from the rules of nsa.h; they share no code with any solution. Inputs are
 * float (bf16 lessons convert theirs first), outputs double. Each returns ATTN_OK or an error. */

/* Compression of k or v [B, N, G, D] into out [B, NC, G, D]. Mean mode: w and pos are NULL. Linear
 * mode: w [G, l*D, D] (out[e] = sum_{r,c} x[r,c] * w[g, r*D + c, e]) and pos [l, D] (added to the
 * keys first; pass NULL for values). */
int attn_oracle_nsa_compress(const attn_shape *s, const attn_nsa_params *p, const float *kv, const float *w,
                             const float *pos, double *out);

/* Compressed attention: o [B, M, H, D], lse [B, H, M] (optional) of q over the visible compressed
 * tokens k_cmp, v_cmp [B, NC, G, D]. Rows that see none: o = 0, lse = -inf. */
int attn_oracle_nsa_cmp_attention(const attn_shape *s, const attn_nsa_params *p, const float *q,
                                  const float *k_cmp, const float *v_cmp, double *o, double *lse);

/* Selection scores [B, M, L, NB] (L = G shared, H per head; NB = attn_nsa_num_blocks(N)): the group sum
 * (or per-head value) of p_slc. lse_cmp [B, H, M] as the kernel under test produced it (or the oracle's). */
int attn_oracle_nsa_scores(const attn_shape *s, const attn_nsa_params *p, const float *q, const float *k_cmp,
                           const double *lse_cmp, double *scores);

/* Top-n block lists [B, M, L, n] from scores [B, M, L, NB]: forced blocks, then by score with ties
 * towards the lower index, ascending, padded with -1. */
int attn_oracle_nsa_topn(const attn_shape *s, const attn_nsa_params *p, const double *scores, int32_t *indices);

#ifdef __cplusplus
}
#endif
#endif
