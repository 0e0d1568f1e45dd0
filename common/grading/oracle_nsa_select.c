/*
 * oracle_nsa_select.c - double-precision references of NSA's block selection (see nsa.h): the block
 * scores and the top-n lists. Slow and obvious, straight from the rules; no code shared with lesson 08.
 */
#include <math.h>
#include <stdlib.h>

#include "oracle_nsa.h"

static int check_common(const char *fn, const attn_shape *s, const attn_nsa_params *p)
{
    if (!s) return attn_fail(ATTN_ERR_NULL_POINTER, "%s: shape is NULL", fn);
    int st = attn_check_shape(s);
    if (st) return st;
    st = attn_nsa_check(p);
    if (st) return st;
    if (!s->causal) return attn_fail(ATTN_ERR_BAD_ARGUMENT, "%s: NSA selection is causal: shape->causal must be 1", fn);
    return ATTN_OK;
}

int attn_oracle_nsa_scores(const attn_shape *s, const attn_nsa_params *p, const float *q, const float *k_cmp,
                           const double *lse_cmp, double *scores)
{
    int st = check_common("attn_oracle_nsa_scores", s, p);
    if (st) return st;
    const long NC = attn_nsa_num_cmp(s->N, p), NB = attn_nsa_num_blocks(s->N, p);
    if (!q || !lse_cmp || !scores || (NC > 0 && !k_cmp))
        return attn_fail(ATTN_ERR_NULL_POINTER, "attn_oracle_nsa_scores: q, k_cmp, lse_cmp and scores must not be NULL");
    const int L = attn_nsa_list_heads(s, p), hpg = s->H / s->G, D = s->D;
    const double scale = s->scale != 0.0f ? (double)s->scale : 1.0 / sqrt((double)D);
    for (size_t e = 0; e < (size_t)s->B * s->M * L * NB; ++e) scores[e] = 0.0;
    for (int b = 0; b < s->B; ++b)
        for (int i = 0; i < s->M; ++i) {
            const long t = (long)s->N - s->M + i;
            for (int h = 0; h < s->H; ++h) {
                const int g = h / hpg, list = p->heads_share_selection ? g : h;
                const float *qh = q + (((size_t)b * s->M + i) * s->H + h) * D;
                const double lse = lse_cmp[((size_t)b * s->H + h) * s->M + i];
                double *row = scores + (((size_t)b * s->M + i) * L + list) * NB;
                for (long c = 0; c < NC; ++c) {
                    if (!attn_nsa_cmp_visible(c, t, p)) continue;
                    const float *kc = k_cmp + (((size_t)b * NC + c) * s->G + g) * D;
                    double dot = 0.0;
                    for (int e = 0; e < D; ++e) dot += (double)qh[e] * (double)kc[e];
                    const double pc = exp(scale * dot - lse);
                    for (long j = 0; j < NB; ++j) row[j] += pc * (double)attn_nsa_overlap(c, j, p) / p->d;
                }
            }
        }
    return ATTN_OK;
}

int attn_oracle_nsa_topn(const attn_shape *s, const attn_nsa_params *p, const double *scores, int32_t *indices)
{
    int st = check_common("attn_oracle_nsa_topn", s, p);
    if (st) return st;
    if (!scores || !indices)
        return attn_fail(ATTN_ERR_NULL_POINTER, "attn_oracle_nsa_topn: scores and indices must not be NULL");
    const int L = attn_nsa_list_heads(s, p), n = p->n;
    const long NB = attn_nsa_num_blocks(s->N, p);
    char *taken = (char *)calloc((size_t)NB + 1, 1);
    if (!taken) return attn_fail(ATTN_ERR_OUT_OF_MEMORY, "attn_oracle_nsa_topn: %ld flags", NB);
    for (int b = 0; b < s->B; ++b)
        for (int i = 0; i < s->M; ++i)
            for (int list = 0; list < L; ++list) {
                const size_t r = ((size_t)b * s->M + i) * L + list;
                const double *row = scores + r * NB;
                int32_t *out = indices + r * n;
                const long t = (long)s->N - s->M + i, cur = t / p->l_sel;
                long count = 0;
                for (long j = 0; j < NB; ++j) taken[j] = 0;
                /* forced blocks first (block 0, the one before the current block, the current block) */
                const long forced[3] = {0, cur - 1, cur};
                for (int f = 0; f < 3; ++f)
                    if (forced[f] >= 0 && forced[f] <= cur && !taken[forced[f]] && count < n)
                        taken[forced[f]] = 1, ++count;
                /* then the best remaining candidate j <= cur, ties to the lower index, until n or none left */
                while (count < n) {
                    long best = -1;
                    for (long j = 0; j <= cur; ++j)
                        if (!taken[j] && (best < 0 || row[j] > row[best])) best = j;
                    if (best < 0) break;
                    taken[best] = 1, ++count;
                }
                long k = 0;
                for (long j = 0; j <= cur; ++j)
                    if (taken[j]) out[k++] = (int32_t)j;
                while (k < n) out[k++] = -1;
            }
    free(taken);
    return ATTN_OK;
}
