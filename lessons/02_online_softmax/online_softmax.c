/*
 * online_softmax.c - lesson 02, C part: the online softmax and streaming attention for one query.
 */
#include "online_softmax.h"

#include <math.h>

int online_softmax_cpu(const float *x, int n, float *y, float *lse)
{
    if (!x || !y) return attn_fail(ATTN_ERR_NULL_POINTER, "online_softmax_cpu: x and y must not be NULL");
    if (n < 1) return attn_fail(ATTN_ERR_BAD_SHAPE, "online_softmax_cpu: n=%d must be >= 1", n);

    /* TODO (about 15 lines): start with m = -INFINITY, l = 0; for each x_j: m_new = max(m, x_j), rescale l by
     * exp(m - m_new) (skip that while m_new is still -inf: exp(-inf - -inf) is NaN), add
     * exp(x_j - m_new). Then a second loop writes y. */
    return ATTN_ERR_NOT_IMPLEMENTED;
}

int online_attend_query_cpu(const float *q, const float *k, const float *v, long n_keys, int D, long stride,
                            float scale, float *o, float *lse)
{
    if (!q || !k || !v || !o || !lse)
        return attn_fail(ATTN_ERR_NULL_POINTER, "online_attend_query_cpu: q, k, v, o and lse must not be NULL");
    if (D < 1 || D > ATTN_MAX_D)
        return attn_fail(ATTN_ERR_UNSUPPORTED_D, "online_attend_query_cpu: D=%d not in [1, %d]", D, ATTN_MAX_D);
    if (n_keys < 0 || stride < D)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "online_attend_query_cpu: n_keys=%ld, stride=%ld (D=%d)", n_keys,
                         stride, D);

    /* TODO (about 20 lines): o doubles as the accumulator: clear it; for each key j compute s = scale * q . k_j,
     * m_new = max(m, s), alpha = exp(m - m_new), p = exp(s - m_new); l = l * alpha + p;
     * o = o * alpha + p * v_j; m = m_new. At the end divide o by l and set lse = m + log(l). */
    return ATTN_ERR_NOT_IMPLEMENTED;
}

int online_attention_cpu(const attn_shape *shape, const float *q, const float *k, const float *v, float *o,
                         float *lse)
{
    int st = attn_check_shape(shape);
    if (st) return st;
    if (!q || !k || !v || !o || !lse)
        return attn_fail(ATTN_ERR_NULL_POINTER, "online_attention_cpu: q, k, v, o and lse must not be NULL");
    const int B = shape->B, M = shape->M, N = shape->N, H = shape->H, G = shape->G, D = shape->D;
    const float scale = attn_softmax_scale(shape);
    for (int b = 0; b < B; ++b)
        for (int i = 0; i < M; ++i)
            for (int h = 0; h < H; ++h) {
                const int g = h / (H / G);
                const long t = (long)N - M + i;
                const long n_keys = shape->causal ? t + 1 : N;
                const float *kb = k + ((size_t)b * N * G + g) * D, *vb = v + ((size_t)b * N * G + g) * D;
                st = online_attend_query_cpu(q + (((size_t)b * M + i) * H + h) * D, kb, vb, n_keys, D,
                                             (long)G * D, scale, o + (((size_t)b * M + i) * H + h) * D,
                                             lse + ((size_t)b * H + h) * M + i);
                if (st) return st;
            }
    return ATTN_OK;
}
