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

/* BEGIN SOLUTION */
/* HINT: one compressed token c of kv head g: phi over the l rows c*d .. c*d + l - 1 of the sequence's cache
 * (row s of (b, g) at seq + s * G * D), into out [D]. Mean: the sum of the rows / l. Linear: sum over the rows
 * r and columns col of (x[r][col] + pos[r][col]) * w[g][r*D + col][e] (w [G, l*D, D]; pos NULL for values).
 * Accumulate in double: a float sum of l*D = 4096 products drifts by ~1e-5, the C part's whole tolerance. */
static int compress_token(const attn_shape *shape, const attn_nsa_params *p, const float *seq, long c, int g,
                          const float *w, const float *pos, float *out)
{
    const int G = shape->G, D = shape->D, l = p->l;
    double *acc = calloc((size_t)D, sizeof(double));
    if (!acc) return attn_fail(ATTN_ERR_OUT_OF_MEMORY, "kv_cache_append_cpu: %d accumulators", D);
    for (int r = 0; r < l; ++r) {
        const float *x = seq + (((size_t)c * p->d + r) * G + g) * D; /* key c*d + r */
        if (p->mode == ATTN_NSA_MEAN) {
            for (int e = 0; e < D; ++e) acc[e] += x[e];
            continue;
        }
        for (int col = 0; col < D; ++col) {
            const double xc = (double)x[col] + (pos ? pos[(size_t)r * D + col] : 0.0f);
            const float *wrow = w + (((size_t)g * l + r) * D + col) * D; /* row r*D + col of w[g] */
            for (int e = 0; e < D; ++e) acc[e] += xc * wrow[e];
        }
    }
    for (int e = 0; e < D; ++e) out[e] = (float)(p->mode == ATTN_NSA_MEAN ? acc[e] / l : acc[e]);
    free(acc);
    return ATTN_OK;
}
/* END SOLUTION */

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

    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: per sequence b, with L = lengths[b] and its count (counts[b], or M): copy rows 0 .. count - 1 of
     * (b) in k_new, v_new [B, M, G, D] (G*D floats each) to rows L .. L + count - 1 of (b) in k_cache, v_cache
     * [B, L_max, G, D]. With p: the compressed tokens c from attn_nsa_num_cmp(L) to attn_nsa_num_cmp(L + count)
     * - 1 are the ones whose spans the append completed: compress each for every kv head g (keys with w_k and
     * pos, values with w_v and no pos) into row c of (b) in the compressed caches [B, NC_max, G, D],
     * NC_max = attn_nsa_num_cmp(L_max). Then lengths[b] = L + count and cmp_lengths[b] = the new count. Every
     * offset in size_t. */
    const int B = shape->B, M = shape->M, G = shape->G, D = shape->D;
    const size_t L_max = (size_t)shape->N, row = (size_t)G * D; /* one token of every kv head */
    const size_t NC_max = p ? (size_t)attn_nsa_num_cmp(shape->N, p) : 0;
    const int linear = p && p->mode == ATTN_NSA_LINEAR;
    for (int b = 0; b < B; ++b) {
        const long L = lengths[b], count = counts ? counts[b] : M;
        memcpy(k_cache + ((size_t)b * L_max + L) * row, k_new + (size_t)b * M * row, (size_t)count * row * sizeof(float));
        memcpy(v_cache + ((size_t)b * L_max + L) * row, v_new + (size_t)b * M * row, (size_t)count * row * sizeof(float));
        if (!p) {
            lengths[b] = (int32_t)(L + count);
            continue;
        }
        const long nc_old = attn_nsa_num_cmp(L, p), nc_new = attn_nsa_num_cmp(L + count, p);
        for (long c = nc_old; c < nc_new; ++c) /* spans [c d, c d + l - 1] that this append completed */
            for (int g = 0; g < G; ++g) {
                const size_t at = ((size_t)b * NC_max + c) * row + (size_t)g * D;
                if ((st = compress_token(shape, p, k_cache + (size_t)b * L_max * row, c, g, w_k, linear ? pos : NULL,
                                         k_cmp_cache + at)) != ATTN_OK)
                    return st;
                if ((st = compress_token(shape, p, v_cache + (size_t)b * L_max * row, c, g, w_v, NULL, v_cmp_cache + at)))
                    return st;
            }
        lengths[b] = (int32_t)(L + count);
        cmp_lengths[b] = (int32_t)nc_new;
    }
    return ATTN_OK;
    /* END SOLUTION */
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

    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: U = decode_num_splits(L_max, chunk) and a chunk of ch = chunk (or L_max when chunk <= 0) keys. For
     * every (b, h) (kv head g = h / (H/G), q row (b*H + h)*D since M = 1) and split u: one online row
     * (row_begin, row_add with scale * row_dot, row_end) over the keys s of [u*ch, (u+1)*ch) that the
     * sequence holds (s < lengths[b]); the last split that holds keys may be partial, and the splits after it
     * hold none (row_end gives lse = -inf and o = 0). Partial (b, h, u) at o_part + ((b*H + h)*U + u)*D and
     * lse_part[(b*H + h)*U + u]. */
    const int B = shape->B, H = shape->H, G = shape->G, D = shape->D;
    const int U = decode_num_splits(shape->N, chunk);
    const long ch = chunk > 0 ? chunk : shape->N;
    const float scale = attn_softmax_scale(shape);
    const size_t stride = (size_t)G * D; /* one key to the next */
    for (int b = 0; b < B; ++b) {
        const long L = lengths[b];
        const long used = (L + ch - 1) / ch; /* the splits that hold keys: the last may be partial */
        for (int h = 0; h < H; ++h) {
            const int g = h / (H / G);
            const float *qh = q + ((size_t)b * H + h) * D;
            const float *kb = k_cache + (size_t)b * shape->N * stride + (size_t)g * D;
            const float *vb = v_cache + (size_t)b * shape->N * stride + (size_t)g * D;
            for (int u = 0; u < U; ++u) {
                const size_t part = ((size_t)b * H + h) * U + u;
                online_row row;
                row_begin(&row, o_part + part * D, D);
                const long first = (long)u * ch, last = first + ch < L ? first + ch : L; /* [first, last) */
                if (u < used)
                    for (long s = first; s < last; ++s)
                        row_add(&row, scale * row_dot(qh, kb + (size_t)s * stride, D), vb + (size_t)s * stride);
                lse_part[part] = row_end(&row);
            }
        }
    }
    return ATTN_OK;
    /* END SOLUTION */
}

int decode_combine_cpu(const attn_shape *shape, int splits, const float *o_part, const float *lse_part, float *o,
                       float *lse)
{
    int st = check_decode_shape("decode_combine_cpu", shape);
    if (st) return st;
    if (splits < 1) return attn_fail(ATTN_ERR_BAD_ARGUMENT, "decode_combine_cpu: splits=%d, at least 1", splits);
    if (!o_part || !lse_part || !o || !lse)
        return attn_fail(ATTN_ERR_NULL_POINTER, "decode_combine_cpu: o_part, lse_part, o and lse must not be NULL");

    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: per row (b, h): m = the largest lse of its `splits` partials. m = -inf: nothing was seen, o = 0 and
     * lse = -inf. Otherwise every partial u weighs w_u = expf(lse_u - m) (0 for an empty split, never NaN: m is
     * finite), o[d] = sum_u w_u o_u[d] / sum_u w_u and lse = m + logf(sum_u w_u). Not the mean of the o_u: a
     * split whose keys score higher holds more of the row's probability. */
    const int D = shape->D;
    const size_t rows = (size_t)shape->B * shape->H;
    for (size_t r = 0; r < rows; ++r) {
        const float *lr = lse_part + r * splits, *orow = o_part + r * splits * D;
        float m = -INFINITY;
        for (int u = 0; u < splits; ++u) m = lr[u] > m ? lr[u] : m;
        if (m == -INFINITY) {
            for (int d = 0; d < D; ++d) o[r * D + d] = 0.0f;
            lse[r] = -INFINITY;
            continue;
        }
        float wsum = 0.0f;
        for (int d = 0; d < D; ++d) o[r * D + d] = 0.0f;
        for (int u = 0; u < splits; ++u) {
            const float w = expf(lr[u] - m); /* a partial's share of the row's softmax denominator */
            wsum += w;
            for (int d = 0; d < D; ++d) o[r * D + d] += w * orow[(size_t)u * D + d];
        }
        for (int d = 0; d < D; ++d) o[r * D + d] /= wsum;
        lse[r] = m + logf(wsum);
    }
    return ATTN_OK;
    /* END SOLUTION */
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

    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: partials of your own (malloc: B*H*U*D and B*H*U floats, U = decode_num_splits(L_max, chunk)), then
     * decode_split_cpu and decode_combine_cpu; free them whatever happens. */
    const int U = decode_num_splits(shape->N, chunk);
    const size_t rows = (size_t)shape->B * shape->H;
    float *o_part = malloc(rows * U * shape->D * sizeof(float)), *lse_part = malloc(rows * U * sizeof(float));
    if (!o_part || !lse_part) st = attn_fail(ATTN_ERR_OUT_OF_MEMORY, "decode_dense_cpu: partials of %d splits", U);
    if (!st) st = decode_split_cpu(shape, chunk, q, k_cache, v_cache, lengths, o_part, lse_part);
    if (!st) st = decode_combine_cpu(shape, U, o_part, lse_part, o, lse);
    free(o_part), free(lse_part);
    return st;
    /* END SOLUTION */
}

/* ---------------------------------------------------------------- NSA decode */

/* BEGIN SOLUTION */
/* HINT: lesson 10's helpers for one row, now reading the caches: cmp_row (the compressed attention of one
 * head over its `vis` tokens through row_begin/row_add/row_end, keeping each token's scaled score),
 * add_importance (token c hands expf(score - lse_cmp) to the blocks j its span [c*d, c*d + l - 1] overlaps,
 * attn_nsa_overlap(c, j, p) / d of it), top_n (the forced blocks, then the best remaining candidate with a
 * strict >, ascending, -1 padding), is_listed, and slc_swa_row (the listed blocks clipped at t, then the
 * window's keys in blocks that are not listed, each key's score computed once). */

/* Compressed attention of one head over its `vis` tokens (token c at k_cmp + c * stride): o_cmp [D], and
 * score[c] = scale * q.k_cmp[c] for the importance. Returns lse_cmp (-inf, o_cmp = 0, when vis = 0). */
static float cmp_row(const float *qh, const float *k_cmp, const float *v_cmp, size_t stride, long vis, int D,
                     float scale, float *score, float *o_cmp)
{
    online_row row;
    row_begin(&row, o_cmp, D);
    for (long c = 0; c < vis; ++c) {
        score[c] = scale * row_dot(qh, k_cmp + (size_t)c * stride, D);
        row_add(&row, score[c], v_cmp + (size_t)c * stride);
    }
    return row_end(&row);
}

/* One head's p_slc added to its list's block scores: p_cmp of token c goes to every block its span overlaps,
 * in proportion to the keys they share. */
static void add_importance(const float *score, long vis, float lse_cmp, const attn_nsa_params *p, float *block_score)
{
    for (long c = 0; c < vis; ++c) {
        const float p_cmp = expf(score[c] - lse_cmp);
        const long first = c * p->d, last = c * p->d + p->l - 1; /* the token's span */
        for (long j = first / p->l_sel; j <= last / p->l_sel; ++j)
            block_score[j] += p_cmp * ((float)attn_nsa_overlap(c, j, p) / (float)p->d);
    }
}

/* The list of one (t, group or head): the forced blocks (0, the block holding t, the one before it), then
 * the best remaining candidates j*l' <= t until n, ties to the lower index; ascending, -1 padding. */
static void top_n(const float *block_score, long t, const attn_nsa_params *p, char *chosen, int32_t *list)
{
    const int n = p->n;
    const long cur = t / p->l_sel, cand = cur + 1;
    if (cand <= n) { /* room for every candidate */
        for (int e = 0; e < n; ++e) list[e] = e < cand ? (int32_t)e : -1;
        return;
    }
    for (long j = 0; j < cand; ++j) chosen[j] = 0;
    const long forced[3] = {0, cur - 1, cur}; /* cand > n >= 3: three different blocks */
    for (int f = 0; f < 3; ++f) chosen[forced[f]] = 1;
    for (int count = 3; count < n; ++count) {
        long best = -1;
        for (long j = 0; j < cand; ++j) /* strictly larger replaces: a tie keeps the lower index */
            if (!chosen[j] && (best < 0 || block_score[j] > block_score[best])) best = j;
        chosen[best] = 1;
    }
    int e = 0;
    for (long j = 0; j < cand; ++j)
        if (chosen[j]) list[e++] = (int32_t)j;
}

static int is_listed(const int32_t *list, int n, long j)
{
    for (int e = 0; e < n && list[e] >= 0; ++e)
        if (list[e] == j) return 1;
    return 0;
}

/* The selected and window branches of one head at position t (its kv head's keys and values at k, v +
 * s * stride) in one walk: the listed blocks' keys up to t, each added to o_slc and, inside the window, to
 * o_swa; then the window's keys in blocks that are not listed. */
static void slc_swa_row(const float *qh, const float *k, const float *v, size_t stride, int D, float scale, long t,
                        const int32_t *list, const attn_nsa_params *p, float *o_slc, float *o_swa, float *lse_slc,
                        float *lse_swa)
{
    const long l_sel = p->l_sel, lo = t - p->w + 1 > 0 ? t - p->w + 1 : 0; /* the window: keys lo .. t */
    online_row slc, swa;
    row_begin(&slc, o_slc, D);
    row_begin(&swa, o_swa, D);
    for (int e = 0; e < p->n && list[e] >= 0; ++e) {
        const long first = (long)list[e] * l_sel;
        const long last = first + l_sel - 1 < t ? first + l_sel - 1 : t; /* no key after t: the cache ends there */
        for (long s = first; s <= last; ++s) {
            const float x = scale * row_dot(qh, k + (size_t)s * stride, D);
            row_add(&slc, x, v + (size_t)s * stride);
            if (s >= lo) row_add(&swa, x, v + (size_t)s * stride);
        }
    }
    for (long j = lo / l_sel; j <= t / l_sel; ++j) {
        if (is_listed(list, p->n, j)) continue; /* its window keys are in o_swa already */
        const long first = j * l_sel > lo ? j * l_sel : lo, last = j * l_sel + l_sel - 1 < t ? j * l_sel + l_sel - 1 : t;
        for (long s = first; s <= last; ++s)
            row_add(&swa, scale * row_dot(qh, k + (size_t)s * stride, D), v + (size_t)s * stride);
    }
    *lse_slc = row_end(&slc);
    *lse_swa = row_end(&swa);
}
/* END SOLUTION */

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

    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: per sequence b with L = lengths[b] (t = L - 1; L = 0: o = 0, every lse -inf, lists -1) and its
     * NC = attn_nsa_num_cmp(L) compressed tokens, all visible from t: (1) every head's compressed attention
     * over rows 0 .. NC - 1 of (b, g) in the compressed caches (batch b starts b*NC_max tokens in,
     * NC_max = attn_nsa_num_cmp(L_max): the cache's capacity, not this sequence's count), its importance added
     * to the block scores of its list (g when heads share the selection, else h); (2) top-n per list;
     * (3) per head the selected and window branches over the cache rows of (b, g), and the gated sum with the
     * gates at [b*H + h]. Lists into block_indices + (b*L + list)*n when it is not NULL. Scratch: scores [NC],
     * block scores [L, NB] zeroed per sequence, o_cmp [H, D], o_slc, o_swa [D], NB flags, L*n entries. */
    const int B = shape->B, H = shape->H, G = shape->G, D = shape->D, n = p->n, hpg = H / G;
    const int L_lists = attn_nsa_list_heads(shape, p);
    const long NC_max = attn_nsa_num_cmp(shape->N, p), NB = attn_nsa_num_blocks(shape->N, p);
    const float scale = attn_softmax_scale(shape);
    const size_t stride = (size_t)G * D; /* one token (key) to the next */
    float *score = malloc((size_t)(NC_max ? NC_max : 1) * sizeof(float));
    float *block_score = malloc((size_t)L_lists * NB * sizeof(float));
    float *o_cmp = malloc((size_t)H * D * sizeof(float)), *o_slc = malloc((size_t)D * sizeof(float));
    float *o_swa = malloc((size_t)D * sizeof(float));
    char *chosen = malloc((size_t)NB);
    int32_t *own_lists = malloc((size_t)L_lists * n * sizeof(int32_t));
    if (!score || !block_score || !o_cmp || !o_slc || !o_swa || !chosen || !own_lists) {
        st = attn_fail(ATTN_ERR_OUT_OF_MEMORY, "decode_nsa_cpu: scratch for NC_max=%ld tokens, NB=%ld blocks", NC_max, NB);
        goto done;
    }
    for (int b = 0; b < B; ++b) {
        const long L = lengths[b], t = L - 1;
        int32_t *lists = block_indices ? block_indices + (size_t)b * L_lists * n : own_lists;
        if (L == 0) { /* an empty slot: nothing to attend to */
            for (int h = 0; h < H; ++h) {
                const size_t row = (size_t)b * H + h;
                for (int e = 0; e < D; ++e) o[row * D + e] = 0.0f;
                if (lse_cmp) lse_cmp[row] = -INFINITY;
                if (lse_slc) lse_slc[row] = -INFINITY;
                if (lse_swa) lse_swa[row] = -INFINITY;
            }
            for (int e = 0; e < L_lists * n; ++e) lists[e] = -1;
            continue;
        }
        const long NC = attn_nsa_num_cmp(L, p); /* every token in the cache is visible from t = L - 1 */

        /* compressed attention and importance, head by head */
        for (long e = 0; e < (long)L_lists * NB; ++e) block_score[e] = 0.0f;
        for (int h = 0; h < H; ++h) {
            const int g = h / hpg, list = p->heads_share_selection ? g : h;
            const size_t row = (size_t)b * H + h, kv0 = (size_t)b * NC_max * stride + (size_t)g * D;
            const float lse = cmp_row(q + row * D, k_cmp_cache + kv0, v_cmp_cache + kv0, stride, NC, D, scale, score,
                                      o_cmp + (size_t)h * D);
            if (lse_cmp) lse_cmp[row] = lse;
            add_importance(score, NC, lse, p, block_score + (size_t)list * NB);
        }
        for (int list = 0; list < L_lists; ++list) top_n(block_score + (size_t)list * NB, t, p, chosen, lists + (size_t)list * n);

        /* selected and window attention over the cache, and the gated sum */
        for (int h = 0; h < H; ++h) {
            const int g = h / hpg, list = p->heads_share_selection ? g : h;
            const size_t row = (size_t)b * H + h, kv0 = (size_t)b * shape->N * stride + (size_t)g * D;
            float ls, lw;
            slc_swa_row(q + row * D, k_cache + kv0, v_cache + kv0, stride, D, scale, t, lists + (size_t)list * n, p,
                        o_slc, o_swa, &ls, &lw);
            if (lse_slc) lse_slc[row] = ls;
            if (lse_swa) lse_swa[row] = lw;
            for (int e = 0; e < D; ++e)
                o[row * D + e] = g_cmp[row] * o_cmp[(size_t)h * D + e] + g_slc[row] * o_slc[e] + g_swa[row] * o_swa[e];
        }
    }
done:
    free(score), free(block_score), free(o_cmp), free(o_slc), free(o_swa), free(chosen), free(own_lists);
    return st;
    /* END SOLUTION */
}
