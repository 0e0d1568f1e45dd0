/*
 * sliding_window.c - lesson 05, C part: the window's loop bounds, and attention that stays inside them.
 */
#include "sliding_window.h"

#include <math.h>

int window_key_range(long t, int w, long N, long *first, long *last)
{
    if (!first || !last) return attn_fail(ATTN_ERR_NULL_POINTER, "window_key_range: first and last must not be NULL");
    if (w < 1 || t < 0 || N < 1 || t >= N)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "window_key_range: t=%ld, w=%d, N=%ld (need w >= 1, 0 <= t < N)", t,
                         w, N);

    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: w keys ending at t, clipped at key 0: the first is t - w + 1 or 0, the last is t. */
    *first = t - w + 1 > 0 ? t - w + 1 : 0;
    *last = t;
    return ATTN_OK;
    /* END SOLUTION */
}

int window_attention_cpu(const attn_shape *shape, int w, const float *q, const float *k, const float *v, float *o,
                         float *lse)
{
    int st = attn_check_shape(shape);
    if (st) return st;
    if (!q || !k || !v || !o || !lse)
        return attn_fail(ATTN_ERR_NULL_POINTER, "window_attention_cpu: q, k, v, o and lse must not be NULL");
    if (w < 1) return attn_fail(ATTN_ERR_BAD_ARGUMENT, "window_attention_cpu: window=%d must be >= 1", w);
    if (!shape->causal)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "window_attention_cpu: a sliding window is causal (shape->causal = 0)");

    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: for each (b, i, h): t = N - M + i, window_key_range gives first..last; run the online
     * softmax (lesson 02) over those keys only; o = acc / l, lse = m + log(l). */
    const int B = shape->B, M = shape->M, N = shape->N, H = shape->H, G = shape->G, D = shape->D;
    const float scale = attn_softmax_scale(shape);
    for (int b = 0; b < B; ++b)
        for (int i = 0; i < M; ++i)
            for (int h = 0; h < H; ++h) {
                const int g = h / (H / G);
                long first = 0, last = -1;
                st = window_key_range((long)N - M + i, w, N, &first, &last);
                if (st) return st;
                const float *qi = q + (((size_t)b * M + i) * H + h) * D;
                float *oi = o + (((size_t)b * M + i) * H + h) * D;
                float m = -INFINITY, l = 0.0f;
                for (int d = 0; d < D; ++d) oi[d] = 0.0f;
                for (long s = first; s <= last; ++s) {
                    const float *ks = k + (((size_t)b * N + s) * G + g) * D, *vs = v + (((size_t)b * N + s) * G + g) * D;
                    float dot = 0.0f;
                    for (int d = 0; d < D; ++d) dot += qi[d] * ks[d];
                    const float x = scale * dot, m_new = fmaxf(m, x);
                    const float alpha = expf(m - m_new), p = expf(x - m_new);
                    l = l * alpha + p;
                    for (int d = 0; d < D; ++d) oi[d] = oi[d] * alpha + p * vs[d];
                    m = m_new;
                }
                for (int d = 0; d < D; ++d) oi[d] /= l;
                lse[((size_t)b * H + h) * M + i] = m + logf(l);
            }
    return ATTN_OK;
    /* END SOLUTION */
}
