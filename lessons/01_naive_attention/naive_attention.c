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

    /* TODO (about 15 lines): four loops b, h, i, j and a dot product over d; q is [B, M, H, D], k is [B, N, G, D],
     * s is [B, H, M, N]; query head h reads kv head g = h / (H / G); use size_t offsets. */
    return ATTN_ERR_NOT_IMPLEMENTED;
}

int naive_mask_cpu(const attn_shape *shape, float *s)
{
    int st = attn_check_shape(shape);
    if (st) return st;
    if (!s) return attn_fail(ATTN_ERR_NULL_POINTER, "naive_mask_cpu: s must not be NULL");

    /* TODO (about 10 lines): nothing to do unless shape->causal; query i sits at position t = N - M + i and may see
     * keys j <= t, so set s[b,h,i,j] = -INFINITY for j > t. */
    return ATTN_ERR_NOT_IMPLEMENTED;
}

int naive_softmax_cpu(float *x, long rows, int n)
{
    if (!x) return attn_fail(ATTN_ERR_NULL_POINTER, "naive_softmax_cpu: x must not be NULL");
    if (rows < 1 || n < 1) return attn_fail(ATTN_ERR_BAD_SHAPE, "naive_softmax_cpu: rows=%ld n=%d", rows, n);

    /* TODO (about 15 lines): three passes per row: the max, the sum of exp(x - max), then divide. Subtracting the max
     * keeps exp from overflowing (exp(89) is already inf in float). A row of all -inf has
     * max = -inf: write zeros instead of computing exp(-inf - -inf) = NaN. */
    return ATTN_ERR_NOT_IMPLEMENTED;
}

int naive_pv_cpu(const attn_shape *shape, const float *p, const float *v, float *o)
{
    int st = attn_check_shape(shape);
    if (st) return st;
    if (!p || !v || !o) return attn_fail(ATTN_ERR_NULL_POINTER, "naive_pv_cpu: p, v and o must not be NULL");

    /* TODO (about 15 lines): o[b,i,h,:] = sum over j of p[b,h,i,j] * v[b,j,g,:] with g = h / (H / G);
     * clear the output row first, then accumulate. */
    return ATTN_ERR_NOT_IMPLEMENTED;
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
