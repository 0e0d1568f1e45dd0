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

/* ---------------------------------------------------------------- the whole forward (lesson 10) */

/* The inputs of the whole NSA forward (float; bf16 lessons pass their rounded values). */
typedef struct {
    attn_shape shape;
    attn_nsa_params p;
    const float *q, *k, *v;            /* required */
    const float *w_k, *w_v, *pos;      /* linear mode: required; mean mode: ignored */
    const float *g_cmp, *g_slc, *g_swa; /* [B, M, H] each; NULL: every gate 1 */
    const int32_t *lists;              /* NULL: the selected branch attends the oracle's own top-n lists; else
                                          these [B, M, L, n] (the code under test's, once judged against the
                                          oracle's scores: near-tied blocks may be ranked either way) */
    int cmp_bf16;                      /* 1: round as the CUDA part does: each key row + pos to bf16 before
                                          the linear map, and the compressed k and v to bf16 */
} attn_oracle_nsa_in;

/* What the forward oracle writes (double; every field but o may be NULL). */
typedef struct {
    double *o;                         /* [B, M, H, D] the gated sum */
    double *o_cmp, *o_slc, *o_swa;     /* [B, M, H, D] the branches, ungated */
    double *lse_cmp, *lse_slc, *lse_swa; /* [B, H, M] */
    double *k_cmp, *v_cmp;             /* [B, NC, G, D] as the compressed branch used them */
    double *scores;                    /* [B, M, L, NB] the block scores (L = G shared, H per head) */
    int32_t *lists;                    /* [B, M, L, n] the oracle's own top-n lists */
} attn_oracle_nsa_out;

/* The NSA forward in double, composed from the references above and attn_oracle_forward (oracle.h):
 * compression, compressed attention (its lse feeds the scores), scores and top-n, selected attention
 * (attn_oracle_forward with the lists as per-query block lists of l' keys, causal), the window
 * (attn_oracle_forward with window w), and o = g_cmp o_cmp + g_slc o_slc + g_swa o_swa. */
int attn_oracle_nsa_forward(const attn_oracle_nsa_in *in, const attn_oracle_nsa_out *out);

#ifdef __cplusplus
}
#endif
#endif
