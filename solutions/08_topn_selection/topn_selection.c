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

    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: for each (b, i): t = N - M + i and the visible count (attn_nsa_cmp_visible_count); zero the
     * row's L x NB scores; for each head h (kv group g = h / (H/G), list = g or h): p_cmp of the visible
     * tokens (expf(scale * q.k - lse)), then for each block j add sum_i p_cmp[i] * overlap(i, j) / d
     * (attn_nsa_overlap) to scores[b, i, list, j]. A row that sees no token computes no exp at all. */
    const int B = shape->B, M = shape->M, H = shape->H, G = shape->G, D = shape->D, hpg = H / G;
    const int L = p->heads_share_selection ? G : H;
    const long NB = attn_nsa_num_blocks(shape->N, p);
    const float scale = attn_softmax_scale(shape);
    float *pc = (float *)malloc((size_t)(NC > 0 ? NC : 1) * sizeof(float));
    if (!pc) return attn_fail(ATTN_ERR_OUT_OF_MEMORY, "nsa_block_scores_cpu: %ld floats", NC);
    for (int b = 0; b < B; ++b)
        for (int i = 0; i < M; ++i) {
            const long t = attn_query_pos(shape, i);
            const long vis = attn_nsa_cmp_visible_count(t, NC, p);
            float *row = scores + ((size_t)b * M + i) * L * NB;
            for (long e = 0; e < (long)L * NB; ++e) row[e] = 0.0f;
            for (int h = 0; h < H; ++h) {
                const int g = h / hpg;
                const int list = p->heads_share_selection ? g : h;
                const float *qh = q + (((size_t)b * M + i) * H + h) * D;
                const float lse = lse_cmp[((size_t)b * H + h) * M + i];
                /* importance of each visible compressed token */
                for (long c = 0; c < vis; ++c) {
                    const float *kc = k_cmp + (((size_t)b * NC + c) * G + g) * D;
                    float dot = 0.0f;
                    for (int e = 0; e < D; ++e) dot += qh[e] * kc[e];
                    pc[c] = expf(scale * dot - lse);
                }
                /* onto selection blocks: each token shares overlap(c, j) of its keys with block j */
                for (long j = 0; j < NB; ++j) {
                    float acc = 0.0f;
                    for (long c = 0; c < vis; ++c) {
                        const long ov = attn_nsa_overlap(c, j, p);
                        if (ov) acc += pc[c] * ((float)ov / (float)p->d);
                    }
                    row[(size_t)list * NB + j] += acc;
                }
            }
        }
    free(pc);
    return ATTN_OK;
    /* END SOLUTION */
}

int nsa_topn_cpu(const attn_shape *shape, const attn_nsa_params *p, const float *scores, int32_t *indices)
{
    int st = check_args("nsa_topn_cpu", shape, p);
    if (st) return st;
    if (!scores || !indices)
        return attn_fail(ATTN_ERR_NULL_POINTER, "nsa_topn_cpu: scores and indices must not be NULL");

    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: per (b, i, list): cand = t / l' + 1 candidate blocks. cand <= n: write 0 .. cand-1, then -1.
     * Otherwise mark blocks 0, cur - 1 and cur (cur = t / l') chosen, then repeat: the unchosen candidate
     * with the largest score (strictly larger replaces the best so far, so ties keep the lower index);
     * finally write the chosen blocks in ascending order. */
    const int B = shape->B, M = shape->M, n = p->n;
    const int L = attn_nsa_list_heads(shape, p);
    const long NB = attn_nsa_num_blocks(shape->N, p);
    char *chosen = (char *)malloc((size_t)NB);
    if (!chosen) return attn_fail(ATTN_ERR_OUT_OF_MEMORY, "nsa_topn_cpu: %ld flags", NB);
    for (int b = 0; b < B; ++b)
        for (int i = 0; i < M; ++i)
            for (int list = 0; list < L; ++list) {
                const size_t r = ((size_t)b * M + i) * L + list;
                const float *row = scores + r * NB;
                int32_t *out = indices + r * n;
                const long t = attn_query_pos(shape, i), cur = t / p->l_sel;
                const long cand = t / p->l_sel + 1; /* blocks j with j * l' <= t */
                if (cand <= n) {
                    for (int k = 0; k < n; ++k) out[k] = k < cand ? (int32_t)k : -1;
                    continue;
                }
                for (long j = 0; j < cand; ++j) chosen[j] = 0;
                const long forced[3] = {0, cur - 1, cur};
                int count = 0;
                for (int f = 0; f < 3; ++f)
                    if (!chosen[forced[f]]) chosen[forced[f]] = 1, ++count;
                for (; count < n; ++count) {
                    long best = -1;
                    float best_s = 0.0f;
                    for (long j = 0; j < cand; ++j) {
                        const float sj = row[j];
                        if (!chosen[j] && (best < 0 || sj > best_s)) best = j, best_s = sj;
                    }
                    chosen[best] = 1;
                }
                int k = 0;
                for (long j = 0; j < cand; ++j)
                    if (chosen[j]) out[k++] = (int32_t)j;
            }
    free(chosen);
    return ATTN_OK;
    /* END SOLUTION */
}

int nsa_select_cpu(const attn_shape *shape, const attn_nsa_params *p, const float *q, const float *k_cmp,
                   const float *lse_cmp, int32_t *indices)
{
    int st = check_args("nsa_select_cpu", shape, p);
    if (st) return st;
    if (!q || !lse_cmp || !indices)
        return attn_fail(ATTN_ERR_NULL_POINTER, "nsa_select_cpu: q, lse_cmp and indices must not be NULL");

    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: allocate the scores [B, M, L, NB], call the two functions above, free. */
    const size_t n_scores = (size_t)shape->B * shape->M * attn_nsa_list_heads(shape, p) *
                            (size_t)attn_nsa_num_blocks(shape->N, p);
    float *scores = (float *)malloc((n_scores ? n_scores : 1) * sizeof(float));
    if (!scores) return attn_fail(ATTN_ERR_OUT_OF_MEMORY, "nsa_select_cpu: %zu scores", n_scores);
    st = nsa_block_scores_cpu(shape, p, q, k_cmp, lse_cmp, scores);
    if (!st) st = nsa_topn_cpu(shape, p, scores, indices);
    free(scores);
    return st;
    /* END SOLUTION */
}
