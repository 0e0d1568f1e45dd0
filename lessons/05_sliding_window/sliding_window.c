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

    /* TODO (about 5 lines): w keys ending at t, clipped at key 0: the first is t - w + 1 or 0, the last is t. */
    return ATTN_ERR_NOT_IMPLEMENTED;
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

    /* TODO (about 25 lines): for each (b, i, h): t = N - M + i, window_key_range gives first..last; run the online
     * softmax (lesson 02) over those keys only; o = acc / l, lse = m + log(l). */
    return ATTN_ERR_NOT_IMPLEMENTED;
}
