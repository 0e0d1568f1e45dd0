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

    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: reject a retention value outside [0, 1] (NaN included: every comparison with NaN is
     * false) with ATTN_ERR_BAD_ARGUMENT; then keep = 1, r, or (r >= threshold ? 1 : 0). */
    for (size_t e = 0; e < count; ++e) {
        const float r = retention[e];
        if (!(r >= 0.0f && r <= 1.0f))
            return attn_fail(ATTN_ERR_BAD_ARGUMENT, "keep_weights_cpu: retention[%zu] = %g is outside [0, 1]", e, r);
        keep[e] = mode == KEEP_BASELINE ? 1.0f : mode == KEEP_SOFT ? r : (r >= threshold ? 1.0f : 0.0f);
    }
    return ATTN_OK;
    /* END SOLUTION */
}

int masked_attention_cpu(const attn_shape *shape, keep_mode mode, float threshold, const float *retention,
                         const float *q, const float *k, const float *v, float *o, float *lse)
{
    int st = attn_check_shape(shape);
    if (st) return st;
    if (!q || !k || !v || !o || !lse || (!retention && mode != KEEP_BASELINE))
        return attn_fail(ATTN_ERR_NULL_POINTER, "masked_attention_cpu: q, k, v, o, lse and retention must not be NULL");

    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: compute the keep weights of all B*N*G keys once (keep_weights_cpu). Then per (b, i, h):
     * row_begin, row_add for each visible key with weight > 0 (score: scale * row_dot(q, k) plus
     * log(weight)), and lse = row_end. A row whose keys are all deleted gets o = 0, lse = -inf. */
    const int B = shape->B, M = shape->M, N = shape->N, H = shape->H, G = shape->G, D = shape->D;
    const size_t n_keys = (size_t)B * N * G;
    float *keep = attn_alloc_f32(n_keys);
    if (!keep) return attn_fail(ATTN_ERR_OUT_OF_MEMORY, "masked_attention_cpu: %zu keep weights", n_keys);
    if (mode == KEEP_BASELINE)
        for (size_t e = 0; e < n_keys; ++e) keep[e] = 1.0f;
    else if ((st = keep_weights_cpu(mode, threshold, retention, n_keys, keep)) != ATTN_OK) {
        free(keep);
        return st;
    }
    const float scale = attn_softmax_scale(shape);
    for (int b = 0; b < B; ++b)
        for (int i = 0; i < M; ++i)
            for (int h = 0; h < H; ++h) {
                const int g = h / (H / G);
                const long t = (long)N - M + i, last = shape->causal ? t : N - 1;
                const float *qi = q + (((size_t)b * M + i) * H + h) * D;
                online_row row;
                row_begin(&row, o + (((size_t)b * M + i) * H + h) * D, D);
                for (long s = 0; s <= last; ++s) {
                    const size_t key = ((size_t)b * N + s) * G + g;
                    const float w = keep[key];
                    if (w == 0.0f) continue; /* deleted: contributes nothing, not even to the max */
                    row_add(&row, scale * row_dot(qi, k + key * D, D) + logf(w), v + key * D);
                }
                lse[((size_t)b * H + h) * M + i] = row_end(&row);
            }
    free(keep);
    return ATTN_OK;
    /* END SOLUTION */
}

int block_list_check(const attn_shape *shape, const int32_t *block_indices, int T)
{
    int st = attn_check_shape(shape);
    if (st) return st;
    if (!block_indices) return attn_fail(ATTN_ERR_NULL_POINTER, "block_list_check: block_indices must not be NULL");
    if (T < 1) return attn_fail(ATTN_ERR_BAD_ARGUMENT, "block_list_check: T=%d must be >= 1", T);

    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: for every list (b, qb, g): entries strictly increase and lie in [0, ceil(N/64)) until the
     * first -1; after it, only -1. Name the offending entry in the message. */
    const int QB = sparse_query_blocks(shape->M), KB = sparse_key_blocks(shape->N);
    for (int b = 0; b < shape->B; ++b)
        for (int qb = 0; qb < QB; ++qb)
            for (int g = 0; g < shape->G; ++g) {
                const int32_t *list = block_indices + (((size_t)b * QB + qb) * shape->G + g) * T;
                int ended = 0;
                for (int n = 0; n < T; ++n) {
                    const int32_t j = list[n];
                    const int ok = ended ? j == -1 : (j == -1 || (j >= 0 && j < KB && (n == 0 || j > list[n - 1])));
                    if (!ok)
                        return attn_fail(ATTN_ERR_BAD_ARGUMENT,
                                         "block list (b=%d, query block %d, g=%d) entry %d is %d: lists hold ascending "
                                         "key blocks in [0, %d) without repeats, then -1 padding",
                                         b, qb, g, n, (int)j, KB);
                    if (j == -1) ended = 1;
                }
            }
    return ATTN_OK;
    /* END SOLUTION */
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

    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: query i of head h reads list (b, i / 128, h / (H/G)). For each listed block j (stop at
     * -1), row_add keys 64 j .. min(64 j + 63, N - 1, t if causal), between row_begin and row_end. */
    const int B = shape->B, M = shape->M, N = shape->N, H = shape->H, G = shape->G, D = shape->D;
    const int QB = sparse_query_blocks(M);
    const float scale = attn_softmax_scale(shape);
    for (int b = 0; b < B; ++b)
        for (int i = 0; i < M; ++i)
            for (int h = 0; h < H; ++h) {
                const int g = h / (H / G);
                const long t = (long)N - M + i;
                const int32_t *list = block_indices + (((size_t)b * QB + i / SPARSE_QUERY_BLOCK) * G + g) * T;
                const float *qi = q + (((size_t)b * M + i) * H + h) * D;
                online_row row;
                row_begin(&row, o + (((size_t)b * M + i) * H + h) * D, D);
                for (int n = 0; n < T && list[n] >= 0; ++n) {
                    const long first = (long)list[n] * SPARSE_KEY_BLOCK;
                    long last = first + SPARSE_KEY_BLOCK - 1;
                    if (last > N - 1) last = N - 1;
                    if (shape->causal && last > t) last = t;
                    for (long s = first; s <= last; ++s) {
                        const size_t key = ((size_t)b * N + s) * G + g;
                        row_add(&row, scale * row_dot(qi, k + key * D, D), v + key * D);
                    }
                }
                lse[((size_t)b * H + h) * M + i] = row_end(&row);
            }
    return ATTN_OK;
    /* END SOLUTION */
}
