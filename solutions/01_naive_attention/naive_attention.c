/*
 * naive_attention.c - lesson 01, C part: attention in plain loops, in the order the math reads.
 *
 * Each function validates its arguments first (given), then does one step of
 *     S = scale * Q K^T,  mask,  P = softmax(S),  O = P V.
 */
#include "naive_attention.h"

#include <math.h>

int naive_scores_cpu(const attn_shape *shape, const float *q, const float *k, float *s)
{
    int st = attn_check_shape(shape);
    if (st) return st;
    if (!q || !k || !s) return attn_fail(ATTN_ERR_NULL_POINTER, "naive_scores_cpu: q, k and s must not be NULL");

    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: four loops b, h, i, j and a dot product over d; q is [B, M, H, D], k is [B, N, G, D],
     * s is [B, H, M, N]; query head h reads kv head g = h / (H / G); use size_t offsets. */
    const int B = shape->B, M = shape->M, N = shape->N, H = shape->H, G = shape->G, D = shape->D;
    const float scale = attn_softmax_scale(shape);
    for (int b = 0; b < B; ++b)
        for (int h = 0; h < H; ++h) {
            const int g = h / (H / G);
            for (int i = 0; i < M; ++i) {
                const float *qi = q + (((size_t)b * M + i) * H + h) * D;
                float *srow = s + (((size_t)b * H + h) * M + i) * N;
                for (int j = 0; j < N; ++j) {
                    const float *kj = k + (((size_t)b * N + j) * G + g) * D;
                    float dot = 0.0f;
                    for (int d = 0; d < D; ++d) dot += qi[d] * kj[d];
                    srow[j] = scale * dot;
                }
            }
        }
    return ATTN_OK;
    /* END SOLUTION */
}

int naive_mask_cpu(const attn_shape *shape, float *s)
{
    int st = attn_check_shape(shape);
    if (st) return st;
    if (!s) return attn_fail(ATTN_ERR_NULL_POINTER, "naive_mask_cpu: s must not be NULL");

    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: nothing to do unless shape->causal; query i sits at position t = N - M + i and may see
     * keys j <= t, so set s[b,h,i,j] = -INFINITY for j > t. */
    if (!shape->causal) return ATTN_OK;
    const int M = shape->M, N = shape->N;
    const long rows = (long)shape->B * shape->H * M;
    for (long r = 0; r < rows; ++r) {
        const int i = (int)(r % M);
        const long t = (long)N - M + i;
        float *srow = s + (size_t)r * N;
        for (long j = t + 1; j < N; ++j) srow[j] = -INFINITY;
    }
    return ATTN_OK;
    /* END SOLUTION */
}

int naive_softmax_cpu(float *x, long rows, int n)
{
    if (!x) return attn_fail(ATTN_ERR_NULL_POINTER, "naive_softmax_cpu: x must not be NULL");
    if (rows < 1 || n < 1) return attn_fail(ATTN_ERR_BAD_SHAPE, "naive_softmax_cpu: rows=%ld n=%d", rows, n);

    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: three passes per row: the max, the sum of exp(x - max), then divide. Subtracting the max
     * keeps exp from overflowing (exp(89) is already inf in float). A row of all -inf has
     * max = -inf: write zeros instead of computing exp(-inf - -inf) = NaN. */
    for (long r = 0; r < rows; ++r) {
        float *row = x + (size_t)r * n;
        float mx = -INFINITY;
        for (int j = 0; j < n; ++j) mx = fmaxf(mx, row[j]);
        if (mx == -INFINITY) {
            for (int j = 0; j < n; ++j) row[j] = 0.0f;
            continue;
        }
        float sum = 0.0f;
        for (int j = 0; j < n; ++j) {
            row[j] = expf(row[j] - mx);
            sum += row[j];
        }
        const float inv = 1.0f / sum;
        for (int j = 0; j < n; ++j) row[j] *= inv;
    }
    return ATTN_OK;
    /* END SOLUTION */
}

int naive_pv_cpu(const attn_shape *shape, const float *p, const float *v, float *o)
{
    int st = attn_check_shape(shape);
    if (st) return st;
    if (!p || !v || !o) return attn_fail(ATTN_ERR_NULL_POINTER, "naive_pv_cpu: p, v and o must not be NULL");

    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: o[b,i,h,:] = sum over j of p[b,h,i,j] * v[b,j,g,:] with g = h / (H / G);
     * clear the output row first, then accumulate. */
    const int B = shape->B, M = shape->M, N = shape->N, H = shape->H, G = shape->G, D = shape->D;
    for (int b = 0; b < B; ++b)
        for (int i = 0; i < M; ++i)
            for (int h = 0; h < H; ++h) {
                const int g = h / (H / G);
                const float *prow = p + (((size_t)b * H + h) * M + i) * N;
                float *oi = o + (((size_t)b * M + i) * H + h) * D;
                for (int d = 0; d < D; ++d) oi[d] = 0.0f;
                for (int j = 0; j < N; ++j) {
                    const float *vj = v + (((size_t)b * N + j) * G + g) * D;
                    for (int d = 0; d < D; ++d) oi[d] += prow[j] * vj[d];
                }
            }
    return ATTN_OK;
    /* END SOLUTION */
}

int naive_attention_cpu(const attn_shape *shape, const float *q, const float *k, const float *v, float *o,
                        float *s)
{
    int st = naive_scores_cpu(shape, q, k, s);
    if (!st) st = naive_mask_cpu(shape, s);
    if (!st) st = naive_softmax_cpu(s, (long)shape->B * shape->H * shape->M, shape->N);
    if (!st) st = naive_pv_cpu(shape, s, v, o);
    return st;
}
