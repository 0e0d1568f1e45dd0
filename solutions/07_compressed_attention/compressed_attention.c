/*
 * compressed_attention.c - lesson 07, C part: how many compressed tokens there are and which ones a
 * position sees, the compression of keys and values into them, and attention over them.
 */
#include "compressed_attention.h"

#include <math.h>
#include <stdlib.h>

int nsa_cmp_counts(long N, long t, const attn_nsa_params *p, long *num_cmp, long *visible)
{
    int st = attn_nsa_check(p);
    if (st) return st;
    if (!num_cmp || !visible) return attn_fail(ATTN_ERR_NULL_POINTER, "nsa_cmp_counts: num_cmp and visible must not be NULL");
    if (N < 1) return attn_fail(ATTN_ERR_BAD_SHAPE, "nsa_cmp_counts: N=%ld must be >= 1", N);
    if (t < 0 || t >= N) return attn_fail(ATTN_ERR_BAD_ARGUMENT, "nsa_cmp_counts: t=%ld outside [0, %ld)", t, N);

    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: a token needs l keys, so there are none for N < l; then one every d keys. Token i ends at
     * key i*d + l - 1: count the i with an end <= t (none while t < l - 1), never more than NC. */
    const long nc = N < p->l ? 0 : (N - p->l) / p->d + 1;
    const long u = t - (p->l - 1); /* how far t is past the end of token 0 */
    const long seen = u < 0 ? 0 : u / p->d + 1;
    *num_cmp = nc;
    *visible = seen < nc ? seen : nc;
    return ATTN_OK;
    /* END SOLUTION */
}

int nsa_compress_cpu(const attn_shape *shape, const attn_nsa_params *p, const float *kv, const float *w,
                     const float *pos, float *kv_cmp)
{
    int st = attn_check_shape(shape);
    if (st) return st;
    if ((st = attn_nsa_check(p)) != ATTN_OK) return st;
    if (!kv || !kv_cmp) return attn_fail(ATTN_ERR_NULL_POINTER, "nsa_compress_cpu: kv and kv_cmp must not be NULL");
    if (p->mode == ATTN_NSA_LINEAR && !w)
        return attn_fail(ATTN_ERR_NULL_POINTER, "nsa_compress_cpu: linear mode needs the weights w [G, l*D, D]");

    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: NC = floor((N - l) / d) + 1 tokens (0 when N < l). For each (b, i, g) the token's rows are
     * x[r] = kv + ((b*N + i*d + r)*G + g)*D, r = 0 .. l-1. Mean: out = sum_r x[r] / l. Linear:
     * out[e] = sum_{r,c} (x[r][c] + pos[r*D + c]) * w[((g*l + r)*D + c)*D + e] (no pos when it is NULL);
     * accumulate that sum of l*D products in double. Offsets in size_t. */
    const int B = shape->B, N = shape->N, G = shape->G, D = shape->D, l = p->l, d = p->d;
    const long nc = N < l ? 0 : (N - l) / d + 1;
    double *acc = malloc((size_t)D * sizeof(double));
    if (!acc) return attn_fail(ATTN_ERR_OUT_OF_MEMORY, "nsa_compress_cpu: %d accumulators", D);
    for (int b = 0; b < B; ++b)
        for (long i = 0; i < nc; ++i)
            for (int g = 0; g < G; ++g) {
                float *out = kv_cmp + (((size_t)b * nc + i) * G + g) * D;
                for (int e = 0; e < D; ++e) acc[e] = 0.0;
                if (p->mode == ATTN_NSA_MEAN) {
                    for (int r = 0; r < l; ++r) { /* every key of the span, r = 0 .. l-1 */
                        const float *x = kv + (((size_t)b * N + i * d + r) * G + g) * D;
                        for (int e = 0; e < D; ++e) acc[e] += x[e];
                    }
                    for (int e = 0; e < D; ++e) out[e] = (float)(acc[e] / l);
                    continue;
                }
                /* linear: a float sum of l*D = 4096 products drifts by ~1e-5; double keeps it exact enough */
                for (int r = 0; r < l; ++r) {
                    const float *x = kv + (((size_t)b * N + i * d + r) * G + g) * D;
                    for (int c = 0; c < D; ++c) {
                        const double xc = (double)x[c] + (pos ? pos[(size_t)r * D + c] : 0.0f);
                        const float *wrow = w + (((size_t)g * l + r) * D + c) * D;
                        for (int e = 0; e < D; ++e) acc[e] += xc * wrow[e];
                    }
                }
                for (int e = 0; e < D; ++e) out[e] = (float)acc[e];
            }
    free(acc);
    return ATTN_OK;
    /* END SOLUTION */
}

int nsa_cmp_attention_cpu(const attn_shape *shape, const attn_nsa_params *p, const float *q, const float *k_cmp,
                          const float *v_cmp, float *o, float *lse)
{
    int st = attn_check_shape(shape);
    if (st) return st;
    if ((st = attn_nsa_check(p)) != ATTN_OK) return st;
    if (!shape->causal)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "nsa_cmp_attention_cpu: compressed attention is causal, set shape->causal");
    if (!q || !k_cmp || !v_cmp || !o || !lse)
        return attn_fail(ATTN_ERR_NULL_POINTER, "nsa_cmp_attention_cpu: q, k_cmp, v_cmp, o and lse must not be NULL");

    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: per (b, i, h): t = N - M + i, g = h / (H/G), and the row sees tokens j = 0 .. visible - 1
     * (nsa_cmp_counts). Softmax over their scores scale * q.k_cmp[j] (max first), o = sum p_j v_cmp[j],
     * lse = max + log(sum). visible == 0 is a row of its own: o = 0 and lse = -INFINITY, never 0 / 0.
     * Compressed tensors are [B, NC, G, D]: batch b starts at b * NC tokens, not b * N. */
    const int B = shape->B, M = shape->M, N = shape->N, H = shape->H, G = shape->G, D = shape->D;
    const float scale = attn_softmax_scale(shape);
    long nc = 0, visible = 0;
    if ((st = nsa_cmp_counts(N, N - 1, p, &nc, &visible)) != ATTN_OK) return st;
    float *score = malloc((size_t)(nc > 0 ? nc : 1) * sizeof(float));
    if (!score) return attn_fail(ATTN_ERR_OUT_OF_MEMORY, "nsa_cmp_attention_cpu: %ld scores", nc);
    for (int b = 0; b < B; ++b)
        for (int i = 0; i < M; ++i) {
            if ((st = nsa_cmp_counts(N, (long)N - M + i, p, &nc, &visible)) != ATTN_OK) {
                free(score);
                return st;
            }
            for (int h = 0; h < H; ++h) {
                const int g = h / (H / G);
                const float *qi = q + (((size_t)b * M + i) * H + h) * D;
                float *oi = o + (((size_t)b * M + i) * H + h) * D;
                float *lse_i = lse + ((size_t)b * H + h) * M + i;
                for (int e = 0; e < D; ++e) oi[e] = 0.0f;
                if (visible == 0) { /* sees no compressed token: o = 0, lse = -inf */
                    *lse_i = -INFINITY;
                    continue;
                }
                float mx = -INFINITY;
                for (long j = 0; j < visible; ++j) {
                    const float *kj = k_cmp + (((size_t)b * nc + j) * G + g) * D;
                    float dot = 0.0f;
                    for (int e = 0; e < D; ++e) dot += qi[e] * kj[e];
                    score[j] = scale * dot;
                    mx = fmaxf(mx, score[j]);
                }
                float sum = 0.0f;
                for (long j = 0; j < visible; ++j) {
                    const float pj = expf(score[j] - mx);
                    const float *vj = v_cmp + (((size_t)b * nc + j) * G + g) * D;
                    sum += pj;
                    for (int e = 0; e < D; ++e) oi[e] += pj * vj[e];
                }
                for (int e = 0; e < D; ++e) oi[e] /= sum;
                *lse_i = mx + logf(sum);
            }
        }
    free(score);
    return ATTN_OK;
    /* END SOLUTION */
}
