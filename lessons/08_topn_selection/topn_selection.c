/*
 * topn_selection.c - lesson 08, C part: NSA block importance and top-n selection, in fp32, in the
 * order the math reads (common/nsa.h has the rules).
 */
#include <math.h>
#include <stdlib.h>

#include "topn_selection.h"

/* The checks every function of the lesson shares (given code). */
static int check_args(const char *fn, const attn_shape *shape, const attn_nsa_params *p)
{
    int st = attn_check_shape(shape);
    if (st) return st;
    st = attn_nsa_check(p);
    if (st) return st;
    if (!shape->causal)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "%s: NSA selection is causal by definition: shape->causal must be 1",
                         fn);
    return ATTN_OK;
}

int nsa_block_scores_cpu(const attn_shape *shape, const attn_nsa_params *p, const float *q, const float *k_cmp,
                         const float *lse_cmp, float *scores)
{
    int st = check_args("nsa_block_scores_cpu", shape, p);
    if (st) return st;
    if (!q || !lse_cmp || !scores)
        return attn_fail(ATTN_ERR_NULL_POINTER, "nsa_block_scores_cpu: q, lse_cmp and scores must not be NULL");
    const long NC = attn_nsa_num_cmp(shape->N, p);
    if (NC > 0 && !k_cmp)
        return attn_fail(ATTN_ERR_NULL_POINTER, "nsa_block_scores_cpu: k_cmp must not be NULL (NC = %ld)", NC);

    /* TODO (about 35 lines): for each (b, i): t = N - M + i and the visible count (attn_nsa_cmp_visible_count); zero the
     * row's L x NB scores; for each head h (kv group g = h / (H/G), list = g or h): p_cmp of the visible
     * tokens (expf(scale * q.k - lse)), then for each block j add sum_i p_cmp[i] * overlap(i, j) / d
     * (attn_nsa_overlap) to scores[b, i, list, j]. A row that sees no token computes no exp at all. */
    return ATTN_ERR_NOT_IMPLEMENTED;
}

int nsa_topn_cpu(const attn_shape *shape, const attn_nsa_params *p, const float *scores, int32_t *indices)
{
    int st = check_args("nsa_topn_cpu", shape, p);
    if (st) return st;
    if (!scores || !indices)
        return attn_fail(ATTN_ERR_NULL_POINTER, "nsa_topn_cpu: scores and indices must not be NULL");

    /* TODO (about 35 lines): per (b, i, list): cand = t / l' + 1 candidate blocks. cand <= n: write 0 .. cand-1, then -1.
     * Otherwise mark blocks 0, cur - 1 and cur (cur = t / l') chosen, then repeat: the unchosen candidate
     * with the largest score (strictly larger replaces the best so far, so ties keep the lower index);
     * finally write the chosen blocks in ascending order. */
    return ATTN_ERR_NOT_IMPLEMENTED;
}

int nsa_select_cpu(const attn_shape *shape, const attn_nsa_params *p, const float *q, const float *k_cmp,
                   const float *lse_cmp, int32_t *indices)
{
    int st = check_args("nsa_select_cpu", shape, p);
    if (st) return st;
    if (!q || !lse_cmp || !indices)
        return attn_fail(ATTN_ERR_NULL_POINTER, "nsa_select_cpu: q, lse_cmp and indices must not be NULL");

    /* TODO (about 10 lines): allocate the scores [B, M, L, NB], call the two functions above, free. */
    return ATTN_ERR_NOT_IMPLEMENTED;
}
