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

    /* TODO (about 5 lines): a token needs l keys, so there are none for N < l; then one every d keys. Token i ends at
     * key i*d + l - 1: count the i with an end <= t (none while t < l - 1), never more than NC. */
    return ATTN_ERR_NOT_IMPLEMENTED;
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

    /* TODO (about 30 lines): NC = floor((N - l) / d) + 1 tokens (0 when N < l). For each (b, i, g) the token's rows are
     * x[r] = kv + ((b*N + i*d + r)*G + g)*D, r = 0 .. l-1. Mean: out = sum_r x[r] / l. Linear:
     * out[e] = sum_{r,c} (x[r][c] + pos[r*D + c]) * w[((g*l + r)*D + c)*D + e] (no pos when it is NULL);
     * accumulate that sum of l*D products in double. Offsets in size_t. */
    return ATTN_ERR_NOT_IMPLEMENTED;
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

    /* TODO (about 45 lines): per (b, i, h): t = N - M + i, g = h / (H/G), and the row sees tokens j = 0 .. visible - 1
     * (nsa_cmp_counts). Softmax over their scores scale * q.k_cmp[j] (max first), o = sum p_j v_cmp[j],
     * lse = max + log(sum). visible == 0 is a row of its own: o = 0 and lse = -INFINITY, never 0 / 0.
     * Compressed tensors are [B, NC, G, D]: batch b starts at b * NC tokens, not b * N. */
    return ATTN_ERR_NOT_IMPLEMENTED;
}
