/*
 * oracle_nsa_cmp.c - double-precision references of NSA's compressed branch (see nsa.h): the
 * compression of keys or values into compressed tokens, and attention over the compressed tokens a
 * query may see. Slow and obvious, straight from the rules; no code shared with any solution.
 */
#include <math.h>
#include <stdlib.h>

#include "oracle_nsa.h"

/* The checks both references share: the shape (positions N, M <= N), the NSA parameters. */
static int check_common(const attn_shape *s, const attn_nsa_params *p)
{
    int st = attn_check_shape(s);
    return st ? st : attn_nsa_check(p);
}

int attn_oracle_nsa_compress(const attn_shape *s, const attn_nsa_params *p, const float *kv, const float *w,
                             const float *pos, double *out)
{
    int st = check_common(s, p);
    if (st) return st;
    if (!kv || !out) return attn_fail(ATTN_ERR_NULL_POINTER, "attn_oracle_nsa_compress: kv and out must not be NULL");
    if (p->mode == ATTN_NSA_LINEAR && !w)
        return attn_fail(ATTN_ERR_NULL_POINTER, "attn_oracle_nsa_compress: linear mode needs the weights w");
    const long N = s->N, NC = attn_nsa_num_cmp(N, p);
    const int G = s->G, D = s->D, l = p->l;
    for (int b = 0; b < s->B; ++b)
        for (long i = 0; i < NC; ++i)
            for (int g = 0; g < G; ++g) {
                double *o = out + (((size_t)b * NC + i) * G + g) * D;
                for (int e = 0; e < D; ++e) o[e] = 0.0;
                /* x[r, c] = kv[b, i*d + r, g, c] (+ pos[r, c]): the l rows of the token's span */
                for (int r = 0; r < l; ++r) {
                    const float *x = kv + (((size_t)b * N + i * p->d + r) * G + g) * D;
                    if (p->mode == ATTN_NSA_MEAN) {
                        for (int e = 0; e < D; ++e) o[e] += x[e];
                        continue;
                    }
                    for (int c = 0; c < D; ++c) {
                        const double xc = (double)x[c] + (pos ? (double)pos[(size_t)r * D + c] : 0.0);
                        const float *wk = w + ((size_t)g * l * D + (size_t)r * D + c) * D; /* row r*D + c of w[g] */
                        for (int e = 0; e < D; ++e) o[e] += xc * wk[e];
                    }
                }
                if (p->mode == ATTN_NSA_MEAN)
                    for (int e = 0; e < D; ++e) o[e] /= l;
            }
    return ATTN_OK;
}

int attn_oracle_nsa_cmp_attention(const attn_shape *s, const attn_nsa_params *p, const float *q,
                                  const float *k_cmp, const float *v_cmp, double *o, double *lse)
{
    int st = check_common(s, p);
    if (st) return st;
    const long NC = attn_nsa_num_cmp(s->N, p);
    if (!q || !o || (NC > 0 && (!k_cmp || !v_cmp)))
        return attn_fail(ATTN_ERR_NULL_POINTER, "attn_oracle_nsa_cmp_attention: q, k_cmp, v_cmp and o must not be NULL");
    const int M = s->M, H = s->H, G = s->G, D = s->D;
    const double scale = attn_softmax_scale(s);
    double *score = malloc((size_t)(NC > 0 ? NC : 1) * sizeof(double));
    if (!score) return attn_fail(ATTN_ERR_OUT_OF_MEMORY, "attn_oracle_nsa_cmp_attention: %ld scores", NC);
    for (int b = 0; b < s->B; ++b)
        for (int i = 0; i < M; ++i)
            for (int h = 0; h < H; ++h) {
                const int g = h / (H / G);
                const long t = (long)s->N - M + i;
                const float *qi = q + (((size_t)b * M + i) * H + h) * D;
                double *oi = o + (((size_t)b * M + i) * H + h) * D;
                /* the visible tokens, from the rule itself (not from a count formula) */
                double mx = -INFINITY;
                for (long j = 0; j < NC; ++j) {
                    score[j] = -INFINITY;
                    if (!(j * p->d + p->l - 1 <= t)) continue;
                    const float *kj = k_cmp + (((size_t)b * NC + j) * G + g) * D;
                    double dot = 0.0;
                    for (int e = 0; e < D; ++e) dot += (double)qi[e] * kj[e];
                    score[j] = dot * scale;
                    if (score[j] > mx) mx = score[j];
                }
                for (int e = 0; e < D; ++e) oi[e] = 0.0;
                if (mx == -INFINITY) { /* sees no compressed token */
                    if (lse) lse[((size_t)b * H + h) * M + i] = -INFINITY;
                    continue;
                }
                double sum = 0.0;
                for (long j = 0; j < NC; ++j) {
                    if (score[j] == -INFINITY) continue;
                    const double pj = exp(score[j] - mx);
                    const float *vj = v_cmp + (((size_t)b * NC + j) * G + g) * D;
                    sum += pj;
                    for (int e = 0; e < D; ++e) oi[e] += pj * vj[e];
                }
                for (int e = 0; e < D; ++e) oi[e] /= sum;
                if (lse) lse[((size_t)b * H + h) * M + i] = mx + log(sum);
            }
    free(score);
    return ATTN_OK;
}
