/*
 * nsa.h - Native Sparse Attention (NSA): the parameters and index rules lessons 07-11 share. Plain C11.
 * The double-precision references the tests grade them against are the grader's (common/grading/oracle_nsa.h).
 *
 * NSA (DeepSeek, 2025) replaces one dense attention by three branches over the same keys, mixed by
 * gates per (b, t, h):  o = g_cmp * o_cmp + g_slc * o_slc + g_swa * o_swa.
 *   compressed  attention over compressed tokens: token i summarises keys [i*d, i*d + l - 1]
 *   selected    attention over the n selection blocks (of l' keys) that the compressed scores rank highest
 *   window      attention over the last w keys, [t - w + 1, t] (lesson 05)
 * The rules, exactly (lessons/07_compressed_attention/README.md explains them with pictures):
 *   NC = max(0, floor((N - l) / d) + 1) compressed tokens; token i is visible from position t iff
 *   i*d + l - 1 <= t (its whole span is in the past). A row that sees none has o_cmp = 0, lse_cmp = -inf.
 *   Importance: p_cmp[t,h,i] = exp(q.k_cmp_i * scale - lse_cmp[t,h]) on visible tokens, else 0.
 *   Selection block j covers keys [j*l', (j+1)*l' - 1];
 *   p_slc[t,h,j] = sum_i p_cmp[t,h,i] * overlap(i, j) / d, overlap = keys shared by the two spans.
 *   score[t,g,j] = sum over the heads h of group g of p_slc[t,h,j] (heads_share_selection = 1), or
 *   p_slc[t,h,j] per head (heads_share_selection = 0).
 *   Candidates: blocks j with j*l' <= t. Forced: block 0, the block holding t and the one before it
 *   (they count towards n). The rest by score, ties towards the lower index. Fewer candidates than n:
 *   take all and pad with -1. Lists are ascending.
 *   Selected attention: the keys of the listed blocks, with the causal rule s <= t.
 *
 * Layouts (as everywhere in the course): q [B, M, H, D], k, v [B, N, G, D], compressed k/v
 * [B, NC, G, D], lse [B, H, M], block lists [B, M, G, n] (or [B, M, H, n] per head), gates [B, M, H].
 */
#ifndef ATTN_NSA_H
#define ATTN_NSA_H

#include <stdint.h>

#include "attn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    ATTN_NSA_MEAN = 0,   /* phi = mean of the l keys (values) of the block */
    ATTN_NSA_LINEAR = 1, /* phi = a learned linear map of the concatenated block [l*D] -> [D] per kv head,
                            with a learned position embedding [l, D] added to the keys first */
} attn_nsa_compress_mode;

typedef struct {
    int l;     /* compression block: keys per compressed token */
    int d;     /* compression stride; d divides l and l' */
    int l_sel; /* selection block l' (keys per selected block) */
    int n;     /* selected blocks per query, >= 3 (block 0, the current block and the one before) */
    int w;     /* sliding window, >= 1 */
    int mode;  /* attn_nsa_compress_mode */
    int heads_share_selection; /* 1 (the paper's default): one list per (t, kv group); 0: per query head */
} attn_nsa_params;

/* The paper's defaults: l = 32, d = 16, l' = 64, n = 16, w = 512, mean pooling, shared selection. */
attn_nsa_params attn_nsa_paper_defaults(void);
/* Mean-pool mode (what flash-linear-attention's Triton NSA computes): l = d = l' = 64, n = 16, w = 512. */
attn_nsa_params attn_nsa_mean_pool(void);

/* ATTN_OK, or ATTN_ERR_BAD_ARGUMENT with a detail message: l, d, l', w >= 1; d divides l and l';
 * n >= 3 (the forced blocks); a known mode; heads_share_selection 0 or 1. */
int attn_nsa_check(const attn_nsa_params *p);

/* Number of compressed tokens of N keys: max(0, floor((N - l) / d) + 1). */
static inline long attn_nsa_num_cmp(long N, const attn_nsa_params *p)
{
    return N < p->l ? 0 : (N - p->l) / p->d + 1;
}
/* Number of selection blocks of N keys: ceil(N / l'). */
static inline long attn_nsa_num_blocks(long N, const attn_nsa_params *p) { return (N + p->l_sel - 1) / p->l_sel; }
/* Compressed token i is visible from position t iff its whole span lies in the past. */
static inline int attn_nsa_cmp_visible(long i, long t, const attn_nsa_params *p)
{
    return i * p->d + p->l - 1 <= t;
}
/* Visible compressed tokens from position t: the count of i with i*d + l - 1 <= t. */
static inline long attn_nsa_cmp_visible_count(long t, long NC, const attn_nsa_params *p)
{
    if (t < p->l - 1) return 0;
    long c = (t - (p->l - 1)) / p->d + 1;
    return c < NC ? c : NC;
}
/* Keys shared by compressed token i's span [i*d, i*d + l - 1] and selection block j's span. */
static inline long attn_nsa_overlap(long i, long j, const attn_nsa_params *p)
{
    long lo = i * p->d, hi = i * p->d + p->l - 1, blo = j * p->l_sel, bhi = (j + 1) * (long)p->l_sel - 1;
    if (blo > lo) lo = blo;
    if (bhi < hi) hi = bhi;
    return hi >= lo ? hi - lo + 1 : 0;
}
/* Entries per block list: heads_share_selection ? G : H lists of n per query. */
static inline int attn_nsa_list_heads(const attn_shape *s, const attn_nsa_params *p)
{
    return p->heads_share_selection ? s->G : s->H;
}

#ifdef __cplusplus
}
#endif
#endif
