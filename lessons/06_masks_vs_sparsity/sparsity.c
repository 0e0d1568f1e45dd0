/*
 * sparsity.c - lesson 06, C part: keep weights from retention, attention under a token keep-mask,
 * and block-sparse attention that walks a block list.
 */
#include "sparsity.h"

#include <math.h>
#include <stdlib.h>

#include "online_row.h" /* row_begin, row_dot, row_add, row_end: lesson 02's streaming softmax, given */

int keep_weights_cpu(keep_mode mode, float threshold, const float *retention, size_t count, float *keep)
{
    if (!retention || !keep) return attn_fail(ATTN_ERR_NULL_POINTER, "keep_weights_cpu: retention and keep must not be NULL");
    if (mode != KEEP_BASELINE && mode != KEEP_SOFT && mode != KEEP_HARD)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "keep_weights_cpu: unknown keep mode %d", (int)mode);
    if (mode == KEEP_HARD && !(threshold >= 0.0f && threshold <= 1.0f))
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "keep_weights_cpu: threshold %g must lie in [0, 1]", threshold);

    /* TODO (about 5 lines): reject a retention value outside [0, 1] (NaN included: every comparison with NaN is
     * false) with ATTN_ERR_BAD_ARGUMENT; then keep = 1, r, or (r >= threshold ? 1 : 0). */
    return ATTN_ERR_NOT_IMPLEMENTED;
}

int masked_attention_cpu(const attn_shape *shape, keep_mode mode, float threshold, const float *retention,
                         const float *q, const float *k, const float *v, float *o, float *lse)
{
    int st = attn_check_shape(shape);
    if (st) return st;
    if (!q || !k || !v || !o || !lse || (!retention && mode != KEEP_BASELINE))
        return attn_fail(ATTN_ERR_NULL_POINTER, "masked_attention_cpu: q, k, v, o, lse and retention must not be NULL");

    /* TODO (about 30 lines): compute the keep weights of all B*N*G keys once (keep_weights_cpu). Then per (b, i, h):
     * row_begin, row_add for each visible key with weight > 0 (score: scale * row_dot(q, k) plus
     * log(weight)), and lse = row_end. A row whose keys are all deleted gets o = 0, lse = -inf. */
    return ATTN_ERR_NOT_IMPLEMENTED;
}

int block_list_check(const attn_shape *shape, const int32_t *block_indices, int T)
{
    int st = attn_check_shape(shape);
    if (st) return st;
    if (!block_indices) return attn_fail(ATTN_ERR_NULL_POINTER, "block_list_check: block_indices must not be NULL");
    if (T < 1) return attn_fail(ATTN_ERR_BAD_ARGUMENT, "block_list_check: T=%d must be >= 1", T);

    /* TODO (about 20 lines): for every list (b, qb, g): entries strictly increase and lie in [0, ceil(N/64)) until the
     * first -1; after it, only -1. Name the offending entry in the message. */
    return ATTN_ERR_NOT_IMPLEMENTED;
}

int block_sparse_attention_cpu(const attn_shape *shape, const int32_t *block_indices, int T, const float *q,
                               const float *k, const float *v, float *o, float *lse)
{
    int st = attn_check_shape(shape);
    if (st) return st;
    if (!q || !k || !v || !o || !lse || !block_indices)
        return attn_fail(ATTN_ERR_NULL_POINTER,
                         "block_sparse_attention_cpu: q, k, v, o, lse and block_indices must not be NULL");
    if ((st = block_list_check(shape, block_indices, T)) != ATTN_OK) return st;

    /* TODO (about 25 lines): query i of head h reads list (b, i / 128, h / (H/G)). For each listed block j (stop at
     * -1), row_add keys 64 j .. min(64 j + 63, N - 1, t if causal), between row_begin and row_end. */
    return ATTN_ERR_NOT_IMPLEMENTED;
}
