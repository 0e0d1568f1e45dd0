/*
 * decoding.c - lesson 11, C part: a KV cache and its compressed cache on the host (fp32), the split-KV
 * dense decode with its combine by lse, and the NSA decode of one token per sequence.
 */
#include "decoding.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "online_row.h" /* row_begin, row_dot, row_add, row_end: lesson 02's streaming softmax, given */

/* ---------------------------------------------------------------- argument checks (given) */

/* What every function checks: the shape (a cache is causal by construction). */
static int check_cache_shape(const char *fn, const attn_shape *shape)
{
    int st = attn_check_shape(shape);
    if (st) return st;
    if (!shape->causal)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "%s: a KV cache is causal by construction, shape->causal must be 1", fn);
    return ATTN_OK;
}

/* The decoding functions take one query per sequence. */
static int check_decode_shape(const char *fn, const attn_shape *shape)
{
    int st = check_cache_shape(fn, shape);
    if (st) return st;
    if (shape->M != 1)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "%s: M=%d, a decoding step has one query per sequence (M = 1)", fn,
                         shape->M);
    return ATTN_OK;
}

/* Every sequence's length is a position in the cache (0 .. L_max). */
static int check_lengths(const char *fn, const attn_shape *shape, const int32_t *lengths)
{
    for (int b = 0; b < shape->B; ++b)
        if (lengths[b] < 0 || lengths[b] > shape->N)
            return attn_fail(ATTN_ERR_BAD_ARGUMENT,
                             "%s: lengths[%d] = %d lies outside the cache (0 .. L_max = %d): a position past the cache",
                             fn, b, (int)lengths[b], shape->N);
    return ATTN_OK;
}

static const char *const kProblemText[] = {
    "no problem",
    "the cache is full: lengths + counts > L_max",
    "the length lies outside the cache (a position past the cache)",
    "cmp_lengths disagrees with the length: the compressed cache must hold attn_nsa_num_cmp(length) tokens",
    "counts lies outside 0 .. M",
};

/* The first sequence whose append is impossible, as {kind, b}; {KV_CACHE_OK, -1} when there is none. */
static void find_problem(const attn_shape *shape, const attn_nsa_params *p, const int32_t *counts,
                         const int32_t *lengths, const int32_t *cmp_lengths, int32_t out[2])
{
    out[0] = KV_CACHE_OK, out[1] = -1;
    for (int b = 0; b < shape->B; ++b) {
        const long L = lengths[b], count = counts ? counts[b] : shape->M;
        int kind = KV_CACHE_OK;
        if (L < 0 || L > shape->N) kind = KV_CACHE_BAD_LENGTH;
        else if (count < 0 || count > shape->M) kind = KV_CACHE_BAD_COUNT;
        else if (p && cmp_lengths[b] != attn_nsa_num_cmp(L, p)) kind = KV_CACHE_CMP_MISMATCH;
        else if (L + count > shape->N) kind = KV_CACHE_FULL;
        if (kind != KV_CACHE_OK) {
            out[0] = kind, out[1] = b;
            return;
        }
    }
}

/* ---------------------------------------------------------------- the cache */

/* TODO (about 20 lines): one compressed token c of kv head g: phi over the l rows c*d .. c*d + l - 1 of the sequence's cache
 * (row s of (b, g) at seq + s * G * D), into out [D]. Mean: the sum of the rows / l. Linear: sum over the rows
 * r and columns col of (x[r][col] + pos[r][col]) * w[g][r*D + col][e] (w [G, l*D, D]; pos NULL for values).
 * Accumulate in double: a float sum of l*D = 4096 products drifts by ~1e-5, the C part's whole tolerance. */

int kv_cache_append_cpu(const attn_shape *shape, const attn_nsa_params *p, const float *k_new, const float *v_new,
                        const int32_t *counts, const float *w_k, const float *w_v, const float *pos, float *k_cache,
                        float *v_cache, float *k_cmp_cache, float *v_cmp_cache, int32_t *lengths,
                        int32_t *cmp_lengths, int32_t *problem)
{
    int st = check_cache_shape("kv_cache_append_cpu", shape);
    if (st) return st;
    if (p && (st = attn_nsa_check(p)) != ATTN_OK) return st;
    if (!k_new || !v_new || !k_cache || !v_cache || !lengths)
        return attn_fail(ATTN_ERR_NULL_POINTER, "kv_cache_append_cpu: k_new, v_new, k_cache, v_cache and lengths must "
                                                "not be NULL");
    if (p && (!k_cmp_cache || !v_cmp_cache || !cmp_lengths))
        return attn_fail(ATTN_ERR_NULL_POINTER, "kv_cache_append_cpu: with NSA parameters, k_cmp_cache, v_cmp_cache "
                                                "and cmp_lengths must not be NULL");
    if (p && p->mode == ATTN_NSA_LINEAR && (!w_k || !w_v || !pos))
        return attn_fail(ATTN_ERR_NULL_POINTER, "kv_cache_append_cpu: linear mode needs w_k, w_v [G, l*D, D] and pos [l, D]");
    int32_t found[2];
    find_problem(shape, p, counts, lengths, cmp_lengths, found);
    if (problem) problem[0] = found[0], problem[1] = found[1];
    if (found[0] != KV_CACHE_OK) {
        const int b = found[1];
        return attn_fail(ATTN_ERR_BAD_ARGUMENT,
                         "kv_cache_append_cpu: sequence %d (length %d, %d new, cmp_length %d, L_max %d): %s; nothing "
                         "was appended", b, (int)lengths[b], counts ? (int)counts[b] : shape->M,
                         p ? (int)cmp_lengths[b] : 0, shape->N, kProblemText[found[0]]);
    }

    /* TODO (about 25 lines): per sequence b, with L = lengths[b] and its count (counts[b], or M): copy rows 0 .. count - 1 of
     * (b) in k_new, v_new [B, M, G, D] (G*D floats each) to rows L .. L + count - 1 of (b) in k_cache, v_cache
     * [B, L_max, G, D]. With p: the compressed tokens c from attn_nsa_num_cmp(L) to attn_nsa_num_cmp(L + count)
     * - 1 are the ones whose spans the append completed: compress each for every kv head g (keys with w_k and
     * pos, values with w_v and no pos) into row c of (b) in the compressed caches [B, NC_max, G, D],
     * NC_max = attn_nsa_num_cmp(L_max). Then lengths[b] = L + count and cmp_lengths[b] = the new count. Every
     * offset in size_t. */
    return ATTN_ERR_NOT_IMPLEMENTED;
}

/* ---------------------------------------------------------------- dense decode: split-KV and the combine */

int decode_split_cpu(const attn_shape *shape, int chunk, const float *q, const float *k_cache, const float *v_cache,
                     const int32_t *lengths, float *o_part, float *lse_part)
{
    int st = check_decode_shape("decode_split_cpu", shape);
    if (st) return st;
    if (!q || !k_cache || !v_cache || !lengths || !o_part || !lse_part)
        return attn_fail(ATTN_ERR_NULL_POINTER, "decode_split_cpu: q, k_cache, v_cache, lengths, o_part and lse_part "
                                                "must not be NULL");
    if ((st = check_lengths("decode_split_cpu", shape, lengths)) != ATTN_OK) return st;

    /* TODO (about 25 lines): U = decode_num_splits(L_max, chunk) and a chunk of ch = chunk (or L_max when chunk <= 0) keys. For
     * every (b, h) (kv head g = h / (H/G), q row (b*H + h)*D since M = 1) and split u: one online row
     * (row_begin, row_add with scale * row_dot, row_end) over the keys s of [u*ch, (u+1)*ch) that the
     * sequence holds (s < lengths[b]); the last split that holds keys may be partial, and the splits after it
     * hold none (row_end gives lse = -inf and o = 0). Partial (b, h, u) at o_part + ((b*H + h)*U + u)*D and
     * lse_part[(b*H + h)*U + u]. */
    return ATTN_ERR_NOT_IMPLEMENTED;
}

int decode_combine_cpu(const attn_shape *shape, int splits, const float *o_part, const float *lse_part, float *o,
                       float *lse)
{
    int st = check_decode_shape("decode_combine_cpu", shape);
    if (st) return st;
    if (splits < 1) return attn_fail(ATTN_ERR_BAD_ARGUMENT, "decode_combine_cpu: splits=%d, at least 1", splits);
    if (!o_part || !lse_part || !o || !lse)
        return attn_fail(ATTN_ERR_NULL_POINTER, "decode_combine_cpu: o_part, lse_part, o and lse must not be NULL");

    /* TODO (about 20 lines): per row (b, h): m = the largest lse of its `splits` partials. m = -inf: nothing was seen, o = 0 and
     * lse = -inf. Otherwise every partial u weighs w_u = expf(lse_u - m) (0 for an empty split, never NaN: m is
     * finite), o[d] = sum_u w_u o_u[d] / sum_u w_u and lse = m + logf(sum_u w_u). Not the mean of the o_u: a
     * split whose keys score higher holds more of the row's probability. */
    return ATTN_ERR_NOT_IMPLEMENTED;
}

int decode_dense_cpu(const attn_shape *shape, int chunk, const float *q, const float *k_cache, const float *v_cache,
                     const int32_t *lengths, float *o, float *lse)
{
    int st = check_decode_shape("decode_dense_cpu", shape);
    if (st) return st;
    if (!q || !k_cache || !v_cache || !lengths || !o || !lse)
        return attn_fail(ATTN_ERR_NULL_POINTER, "decode_dense_cpu: q, k_cache, v_cache, lengths, o and lse must not be "
                                                "NULL");
    if ((st = check_lengths("decode_dense_cpu", shape, lengths)) != ATTN_OK) return st;

    /* TODO (about 10 lines): partials of your own (malloc: B*H*U*D and B*H*U floats, U = decode_num_splits(L_max, chunk)), then
     * decode_split_cpu and decode_combine_cpu; free them whatever happens. */
    return ATTN_ERR_NOT_IMPLEMENTED;
}

/* ---------------------------------------------------------------- NSA decode */

/* TODO (about 80 lines): lesson 10's helpers for one row, now reading the caches: cmp_row (the compressed attention of one
 * head over its `vis` tokens through row_begin/row_add/row_end, keeping each token's scaled score),
 * add_importance (token c hands expf(score - lse_cmp) to the blocks j its span [c*d, c*d + l - 1] overlaps,
 * attn_nsa_overlap(c, j, p) / d of it), top_n (the forced blocks, then the best remaining candidate with a
 * strict >, ascending, -1 padding), is_listed, and slc_swa_row (the listed blocks clipped at t, then the
 * window's keys in blocks that are not listed, each key's score computed once). */

int decode_nsa_cpu(const attn_shape *shape, const attn_nsa_params *p, const float *q, const float *k_cache,
                   const float *v_cache, const float *k_cmp_cache, const float *v_cmp_cache, const int32_t *lengths,
                   const float *g_cmp, const float *g_slc, const float *g_swa, float *o, float *lse_cmp,
                   float *lse_slc, float *lse_swa, int32_t *block_indices)
{
    int st = check_decode_shape("decode_nsa_cpu", shape);
    if (st) return st;
    if ((st = attn_nsa_check(p)) != ATTN_OK) return st;
    if (!q || !k_cache || !v_cache || !k_cmp_cache || !v_cmp_cache || !lengths || !o)
        return attn_fail(ATTN_ERR_NULL_POINTER, "decode_nsa_cpu: q, the four caches, lengths and o must not be NULL");
    if (!g_cmp || !g_slc || !g_swa)
        return attn_fail(ATTN_ERR_NULL_POINTER, "decode_nsa_cpu: the gates g_cmp, g_slc, g_swa must not be NULL (all 1 "
                                                "is the plain sum)");
    if ((st = check_lengths("decode_nsa_cpu", shape, lengths)) != ATTN_OK) return st;

    /* TODO (about 55 lines): per sequence b with L = lengths[b] (t = L - 1; L = 0: o = 0, every lse -inf, lists -1) and its
     * NC = attn_nsa_num_cmp(L) compressed tokens, all visible from t: (1) every head's compressed attention
     * over rows 0 .. NC - 1 of (b, g) in the compressed caches (batch b starts b*NC_max tokens in,
     * NC_max = attn_nsa_num_cmp(L_max): the cache's capacity, not this sequence's count), its importance added
     * to the block scores of its list (g when heads share the selection, else h); (2) top-n per list;
     * (3) per head the selected and window branches over the cache rows of (b, g), and the gated sum with the
     * gates at [b*H + h]. Lists into block_indices + (b*L + list)*n when it is not NULL. Scratch: scores [NC],
     * block scores [L, NB] zeroed per sequence, o_cmp [H, D], o_slc, o_swa [D], NB flags, L*n entries. */
    return ATTN_ERR_NOT_IMPLEMENTED;
}
