/*
 * fused_nsa.c - lesson 10, C part: the whole NSA forward on the CPU in fp32, in the order the math
 * reads (compression, compressed attention, importance and top-n, selected and window attention, the
 * gated sum), and the attention-weights inspection helpers.
 */
#include "fused_nsa.h"

#include <math.h>
#include <stdlib.h>

#include "online_row.h" /* row_begin, row_dot, row_add, row_end: lesson 02's streaming softmax, given */

/* ---------------------------------------------------------------- argument checks (given) */

/* What every function of the lesson checks: the shape, the parameters, causal. */
static int check_problem(const char *fn, const attn_shape *shape, const attn_nsa_params *p)
{
    int st = attn_check_shape(shape);
    if (st) return st;
    if ((st = attn_nsa_check(p)) != ATTN_OK) return st;
    if (!shape->causal)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "%s: NSA is causal by definition, shape->causal must be 1", fn);
    return ATTN_OK;
}

/* The weights helpers' (kind, b, h) and matrix. */
static int check_weights_args(const char *fn, const attn_shape *shape, const attn_nsa_params *p, int kind,
                              int max_kind, int b, int h, const float *weights)
{
    int st = check_problem(fn, shape, p);
    if (st) return st;
    if (kind < 0 || kind > max_kind)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "%s: kind %d is not one of 0 .. %d (nsa_weights_kind)", fn, kind,
                         max_kind);
    if (b < 0 || b >= shape->B || h < 0 || h >= shape->H)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "%s: (b=%d, h=%d) outside B=%d, H=%d", fn, b, h, shape->B, shape->H);
    if (!weights) return attn_fail(ATTN_ERR_NULL_POINTER, "%s: weights must not be NULL", fn);
    return ATTN_OK;
}

/* ---------------------------------------------------------------- the forward, piece by piece */

/* BEGIN SOLUTION */
/* HINT: write the forward as a few small static helpers, one per line of the math, and call them from
 * nsa_forward_cpu in that order. The reference solution's: compress (lesson 07's nsa_compress_cpu: the
 * mean, or sum_{r,c} (x[r,c] + pos[r,c]) w[g, r*D + c, :] accumulated in double), cmp_row (one row's
 * compressed attention through row_begin/row_add/row_end, keeping each visible token's scaled score for
 * the importance), add_importance (token c hands p_cmp = expf(score - lse_cmp) to the blocks j its span
 * [c*d, c*d + l - 1] overlaps, attn_nsa_overlap(c, j, p) / d of it), top_n (lesson 08's nsa_topn_cpu:
 * forced blocks, then the best unchosen candidate with a strict >, ascending), is_listed (is block j on a
 * list, up to its first -1) and slc_swa_row (the selected and window branches of one row in one walk
 * over the keys, each key's score computed once; a key in both is added once to each). */

/* kv_cmp [B, NC, G, D] = phi(kv): the mean of each token's l rows, or the linear map w [G, l*D, D] of its
 * rows laid end to end (pos [l, D] added first; NULL for values). Double accumulators: a float sum of
 * l*D = 4096 products drifts by ~1e-5, the C part's whole tolerance. */
static int compress(const attn_shape *shape, const attn_nsa_params *p, const float *kv, const float *w,
                    const float *pos, float *kv_cmp)
{
    const int B = shape->B, N = shape->N, G = shape->G, D = shape->D, l = p->l, d = p->d;
    const long NC = attn_nsa_num_cmp(N, p);
    double *acc = malloc((size_t)D * sizeof(double));
    if (!acc) return attn_fail(ATTN_ERR_OUT_OF_MEMORY, "nsa_forward_cpu: %d accumulators", D);
    for (int b = 0; b < B; ++b)
        for (long c = 0; c < NC; ++c)
            for (int g = 0; g < G; ++g) {
                for (int e = 0; e < D; ++e) acc[e] = 0.0;
                for (int r = 0; r < l; ++r) { /* row r of the token's span: key c*d + r */
                    const float *x = kv + (((size_t)b * N + (size_t)c * d + r) * G + g) * D;
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
                float *out = kv_cmp + (((size_t)b * NC + c) * G + g) * D;
                for (int e = 0; e < D; ++e) out[e] = (float)(p->mode == ATTN_NSA_MEAN ? acc[e] / l : acc[e]);
            }
    free(acc);
    return ATTN_OK;
}

/* Compressed attention of one row over its `vis` visible tokens (token c of the row's kv group at
 * k_cmp + c * stride): o_cmp [D], and score[c] = scale * q.k_cmp[c] for the importance. Returns lse_cmp
 * (-inf, with o_cmp = 0, when vis = 0: row_end handles the empty row). */
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

/* One head's p_slc added to its list's block scores: p_cmp of token c goes to every block its span
 * overlaps, in proportion to the keys they share. A visible token ends at or before t < N, so every
 * block it reaches exists. */
static void add_importance(const float *score, long vis, float lse_cmp, const attn_nsa_params *p, float *block_score)
{
    for (long c = 0; c < vis; ++c) {
        const float p_cmp = expf(score[c] - lse_cmp);
        const long first = c * p->d, last = c * p->d + p->l - 1; /* the token's span */
        for (long j = first / p->l_sel; j <= last / p->l_sel; ++j)
            block_score[j] += p_cmp * ((float)attn_nsa_overlap(c, j, p) / (float)p->d);
    }
}

/* The list of one (position t, group or head) from its block scores: the forced blocks (block 0, the
 * block holding t and the one before it), then the best remaining candidate j*l' <= t until n, ties to
 * the lower index; ascending, -1 padding. `chosen` is scratch of NB flags. */
static void top_n(const float *block_score, long t, const attn_nsa_params *p, char *chosen, int32_t *list)
{
    const int n = p->n;
    const long cur = t / p->l_sel, cand = cur + 1; /* blocks 0 .. cur have started by t */
    if (cand <= n) { /* room for every candidate */
        for (int e = 0; e < n; ++e) list[e] = e < cand ? (int32_t)e : -1;
        return;
    }
    for (long j = 0; j < cand; ++j) chosen[j] = 0;
    const long forced[3] = {0, cur - 1, cur}; /* cand > n >= 3, so cur >= 3: three different blocks */
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

/* Whether block j is on a list (its entries up to the first -1). */
static int is_listed(const int32_t *list, int n, long j)
{
    for (int e = 0; e < n && list[e] >= 0; ++e)
        if (list[e] == j) return 1;
    return 0;
}

/* The selected and window branches of one row (query qh at position t, keys and values of its kv group
 * at k, v + s * stride) in one walk: first the keys of the listed blocks up to t, each added to o_slc and,
 * inside the window, to o_swa too; then the window's keys in blocks that are not listed (the others were
 * just added). Every key's score is computed once, and none is added twice to a branch. */
static void slc_swa_row(const float *qh, const float *k, const float *v, size_t stride, int D, float scale, long t,
                        const int32_t *list, const attn_nsa_params *p, float *o_slc, float *o_swa, float *lse_slc,
                        float *lse_swa)
{
    const long l_sel = p->l_sel, lo = t - p->w + 1 > 0 ? t - p->w + 1 : 0; /* the window: keys lo .. t */
    online_row slc, swa;
    row_begin(&slc, o_slc, D);
    row_begin(&swa, o_swa, D);
    for (int e = 0; e < p->n && list[e] >= 0; ++e) { /* -1 ends the list */
        const long first = (long)list[e] * l_sel;
        const long last = first + l_sel - 1 < t ? first + l_sel - 1 : t; /* the token causal rule */
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

int nsa_forward_cpu(const attn_shape *shape, const attn_nsa_params *p, const float *q, const float *k,
                    const float *v, const float *w_k, const float *w_v, const float *pos, const float *g_cmp,
                    const float *g_slc, const float *g_swa, float *o, float *lse_cmp, float *lse_slc,
                    float *lse_swa, int32_t *block_indices)
{
    int st = check_problem("nsa_forward_cpu", shape, p);
    if (st) return st;
    if (!q || !k || !v || !o)
        return attn_fail(ATTN_ERR_NULL_POINTER, "nsa_forward_cpu: q, k, v and o must not be NULL");
    if (!g_cmp || !g_slc || !g_swa)
        return attn_fail(ATTN_ERR_NULL_POINTER, "nsa_forward_cpu: the gates g_cmp, g_slc, g_swa must not be NULL "
                                                "(all 1 is the plain sum)");
    if (p->mode == ATTN_NSA_LINEAR && (!w_k || !w_v || !pos))
        return attn_fail(ATTN_ERR_NULL_POINTER,
                         "nsa_forward_cpu: linear mode needs w_k, w_v [G, l*D, D] and pos [l, D]");

    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: first compress k (with w_k and pos) and v (with w_v, no pos) into k_cmp, v_cmp [B, NC, G, D].
     * Then per (b, i), t = N - M + i: (1) every head's compressed attention over the attn_nsa_cmp_visible_count
     * visible tokens, o_cmp kept for the end, lse_cmp returned if asked, and its importance added to the
     * block scores of its list (g = h / (H/G) when heads share the selection, else h); (2) top-n per list,
     * into block_indices (b, i) when it is not NULL, else into a list of your own; (3) per head the selected
     * and window branches of the same walk, then o = g_cmp o_cmp + g_slc o_slc + g_swa o_swa with the gates
     * at [(b*M + i)*H + h]. Scratch: scores [NC], block scores [L, NB] (zeroed per (b, i)), o_cmp [H, D],
     * o_slc and o_swa [D], NB flags, L*n list entries. Compressed tensors are [B, NC, G, D]: batch b starts
     * NC tokens in, not N. Offsets in size_t. */
    const int B = shape->B, M = shape->M, N = shape->N, H = shape->H, G = shape->G, D = shape->D, n = p->n;
    const int L = attn_nsa_list_heads(shape, p), hpg = H / G;
    const long NC = attn_nsa_num_cmp(N, p), NB = attn_nsa_num_blocks(N, p);
    const float scale = attn_softmax_scale(shape);
    const size_t n_cmp = (size_t)B * NC * G * D, stride = (size_t)G * D; /* stride: one token (key) to the next */
    float *k_cmp = malloc((n_cmp ? n_cmp : 1) * sizeof(float)), *v_cmp = malloc((n_cmp ? n_cmp : 1) * sizeof(float));
    float *score = malloc((size_t)(NC ? NC : 1) * sizeof(float)), *block_score = malloc((size_t)L * NB * sizeof(float));
    float *o_cmp = malloc((size_t)H * D * sizeof(float)), *o_slc = malloc((size_t)D * sizeof(float));
    float *o_swa = malloc((size_t)D * sizeof(float));
    char *chosen = malloc((size_t)NB);
    int32_t *own_lists = malloc((size_t)L * n * sizeof(int32_t));
    if (!k_cmp || !v_cmp || !score || !block_score || !o_cmp || !o_slc || !o_swa || !chosen || !own_lists) {
        st = attn_fail(ATTN_ERR_OUT_OF_MEMORY, "nsa_forward_cpu: scratch for NC=%ld tokens, NB=%ld blocks", NC, NB);
        goto done;
    }

    /* compression: k_cmp = phi(k + pos), v_cmp = phi(v) */
    if ((st = compress(shape, p, k, w_k, p->mode == ATTN_NSA_LINEAR ? pos : NULL, k_cmp)) != ATTN_OK) goto done;
    if ((st = compress(shape, p, v, w_v, NULL, v_cmp)) != ATTN_OK) goto done;

    for (int b = 0; b < B; ++b)
        for (int i = 0; i < M; ++i) {
            const long t = attn_query_pos(shape, i), vis = attn_nsa_cmp_visible_count(t, NC, p);
            int32_t *lists = block_indices ? block_indices + ((size_t)b * M + i) * L * n : own_lists;

            /* compressed attention and importance, head by head */
            for (long e = 0; e < (long)L * NB; ++e) block_score[e] = 0.0f;
            for (int h = 0; h < H; ++h) {
                const int g = h / hpg, list = p->heads_share_selection ? g : h;
                const float *qh = q + (((size_t)b * M + i) * H + h) * D;
                const size_t kv0 = (size_t)b * NC * stride + (size_t)g * D; /* token 0 of (b, g) */
                const float lse = cmp_row(qh, k_cmp + kv0, v_cmp + kv0, stride, vis, D, scale, score, o_cmp + (size_t)h * D);
                if (lse_cmp) lse_cmp[((size_t)b * H + h) * M + i] = lse;
                add_importance(score, vis, lse, p, block_score + (size_t)list * NB);
            }

            /* top-n: one list per kv group (or per head) */
            for (int list = 0; list < L; ++list) top_n(block_score + (size_t)list * NB, t, p, chosen, lists + (size_t)list * n);

            /* selected and window attention, and the gated sum */
            for (int h = 0; h < H; ++h) {
                const int g = h / hpg, list = p->heads_share_selection ? g : h;
                const size_t row = ((size_t)b * M + i) * H + h;
                const size_t kv0 = (size_t)b * N * stride + (size_t)g * D; /* key 0 of (b, g) */
                float ls, lw;
                slc_swa_row(q + row * D, k + kv0, v + kv0, stride, D, scale, t, lists + (size_t)list * n, p, o_slc,
                            o_swa, &ls, &lw);
                if (lse_slc) lse_slc[((size_t)b * H + h) * M + i] = ls;
                if (lse_swa) lse_swa[((size_t)b * H + h) * M + i] = lw;
                for (int e = 0; e < D; ++e)
                    o[row * D + e] = g_cmp[row] * o_cmp[(size_t)h * D + e] + g_slc[row] * o_slc[e] + g_swa[row] * o_swa[e];
            }
        }
done:
    free(k_cmp), free(v_cmp), free(score), free(block_score), free(o_cmp), free(o_slc), free(o_swa), free(chosen);
    free(own_lists);
    return st;
    /* END SOLUTION */
}

/* ---------------------------------------------------------------- attention weights */

int nsa_weights_cpu(const attn_shape *shape, const attn_nsa_params *p, int kind, int b, int h, const float *q,
                    const float *k, const float *w_k, const float *pos, const int32_t *block_indices,
                    const float *lse_cmp, const float *lse_slc, const float *lse_swa, float *weights)
{
    int st = check_weights_args("nsa_weights_cpu", shape, p, kind, NSA_WEIGHTS_SWA, b, h, weights);
    if (st) return st;
    if (!q || !k) return attn_fail(ATTN_ERR_NULL_POINTER, "nsa_weights_cpu: q and k must not be NULL");
    if ((kind == NSA_WEIGHTS_CMP && !lse_cmp) || (kind == NSA_WEIGHTS_SLC && !lse_slc) ||
        (kind == NSA_WEIGHTS_SWA && !lse_swa))
        return attn_fail(ATTN_ERR_NULL_POINTER, "nsa_weights_cpu: the lse of branch %d must not be NULL", kind);
    if (kind == NSA_WEIGHTS_SLC && !block_indices)
        return attn_fail(ATTN_ERR_NULL_POINTER, "nsa_weights_cpu: the selected branch needs block_indices");
    if (kind == NSA_WEIGHTS_CMP && p->mode == ATTN_NSA_LINEAR && (!w_k || !pos))
        return attn_fail(ATTN_ERR_NULL_POINTER, "nsa_weights_cpu: linear mode needs w_k and pos to compress the keys");

    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: the branch's own lse first (lse_cmp, lse_slc or lse_swa, row [(b*H + h)*M + i]). Then each entry
     * of row i (t = N - M + i) is exp(scale * q[b,i,h] . key - lse) where the branch lets t see the key, else
     * 0; a row whose lse is -inf is all 0. CMP: compress the keys of batch b again (your compress helper on a
     * shape with B = 1 and k + b*N*G*D, w_k, pos), key c = token c of kv group g, visible iff c*d + l - 1 <= t.
     * SLC: key s visible iff s <= t and block s / l' is on list (b, i, g or h) of block_indices. SWA: visible
     * iff t - w + 1 <= s <= t. */
    const int M = shape->M, N = shape->N, H = shape->H, G = shape->G, D = shape->D, g = h / (H / G);
    const long NC = attn_nsa_num_cmp(N, p), cols = kind == NSA_WEIGHTS_CMP ? NC : N;
    const float scale = attn_softmax_scale(shape);
    const float *lse = kind == NSA_WEIGHTS_CMP ? lse_cmp : kind == NSA_WEIGHTS_SLC ? lse_slc : lse_swa;
    const size_t stride = (size_t)G * D;
    const float *keys = k + (size_t)b * N * stride + (size_t)g * D; /* key s of (b, g) at keys + s * stride */
    float *k_cmp = NULL;
    if (kind == NSA_WEIGHTS_CMP) {
        attn_shape one = *shape;
        one.B = 1;
        k_cmp = malloc((size_t)(NC ? NC : 1) * stride * sizeof(float));
        if (!k_cmp) return attn_fail(ATTN_ERR_OUT_OF_MEMORY, "nsa_weights_cpu: %ld compressed keys", NC);
        if ((st = compress(&one, p, k + (size_t)b * N * stride, w_k, p->mode == ATTN_NSA_LINEAR ? pos : NULL, k_cmp))) {
            free(k_cmp);
            return st;
        }
        keys = k_cmp + (size_t)g * D;
    }
    const int L = attn_nsa_list_heads(shape, p);
    for (int i = 0; i < M; ++i) {
        const long t = attn_query_pos(shape, i);
        const float row_lse = lse[((size_t)b * H + h) * M + i];
        const float *qh = q + (((size_t)b * M + i) * H + h) * D;
        const int32_t *list = kind == NSA_WEIGHTS_SLC
                                  ? block_indices + (((size_t)b * M + i) * L + (p->heads_share_selection ? g : h)) * p->n
                                  : NULL;
        for (long s = 0; s < cols; ++s) {
            int visible;
            if (kind == NSA_WEIGHTS_CMP) visible = attn_nsa_cmp_visible(s, t, p);
            else if (kind == NSA_WEIGHTS_SLC) visible = s <= t && is_listed(list, p->n, s / p->l_sel);
            else visible = s <= t && s >= t - p->w + 1;
            weights[(size_t)i * cols + s] =
                visible && row_lse > -INFINITY ? expf(scale * row_dot(qh, keys + (size_t)s * stride, D) - row_lse) : 0.0f;
        }
    }
    free(k_cmp);
    return ATTN_OK;
    /* END SOLUTION */
}

int nsa_cmp_weights_to_keys_cpu(const attn_shape *shape, const attn_nsa_params *p, const float *cmp_weights,
                                float *key_weights)
{
    int st = check_problem("nsa_cmp_weights_to_keys_cpu", shape, p);
    if (st) return st;
    if (!cmp_weights || !key_weights)
        return attn_fail(ATTN_ERR_NULL_POINTER, "nsa_cmp_weights_to_keys_cpu: cmp_weights and key_weights must not be NULL");

    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: key s is covered by the tokens c with c*d <= s <= c*d + l - 1, i.e. c from ceil((s - l + 1) / d)
     * (at least 0) to floor(s / d) (below NC). key_weights[i, s] = the sum of their cmp_weights[i, c], / l. */
    const int M = shape->M, N = shape->N, l = p->l, d = p->d;
    const long NC = attn_nsa_num_cmp(N, p);
    for (int i = 0; i < M; ++i)
        for (long s = 0; s < N; ++s) {
            const long c_lo = s - l + 1 > 0 ? (s - l + 1 + d - 1) / d : 0, c_hi = s / d < NC - 1 ? s / d : NC - 1;
            float sum = 0.0f;
            for (long c = c_lo; c <= c_hi; ++c) sum += cmp_weights[(size_t)i * NC + c];
            key_weights[(size_t)i * N + s] = sum / (float)l;
        }
    return ATTN_OK;
    /* END SOLUTION */
}

int nsa_weights_summary(const attn_shape *shape, const attn_nsa_params *p, int kind, int b, int h,
                        const float *weights, const float *gate, nsa_weights_stats *stats)
{
    int st = check_weights_args("nsa_weights_summary", shape, p, kind, NSA_WEIGHTS_CMP_KEYS, b, h, weights);
    if (st) return st;
    if (!gate || !stats) return attn_fail(ATTN_ERR_NULL_POINTER, "nsa_weights_summary: gate and stats must not be NULL");

    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: cols = NC for CMP, N otherwise; M rows. One pass in double: sum, sum of squares, min, max, zeros,
     * and per row its sum and -sum w ln w over w > 0 (a row "sees a key" when its sum is > 0). std is the
     * population one, sqrt(E[w^2] - E[w]^2) (never below 0). gate_mean: the mean of gate[(b*M + i)*H + h]
     * over i. With no entries at all (NC = 0) every statistic but gate_mean is 0. */
    const int M = shape->M, H = shape->H;
    const long cols = kind == NSA_WEIGHTS_CMP ? attn_nsa_num_cmp(shape->N, p) : shape->N;
    const double count = (double)M * cols;
    double sum = 0.0, sq = 0.0, mn = INFINITY, mx = -INFINITY, zeros = 0.0, ent = 0.0, gsum = 0.0;
    long seeing = 0;
    for (int i = 0; i < M; ++i) {
        double row_sum = 0.0, row_ent = 0.0;
        for (long s = 0; s < cols; ++s) {
            const double x = weights[(size_t)i * cols + s];
            sum += x, sq += x * x, row_sum += x;
            mn = x < mn ? x : mn, mx = x > mx ? x : mx;
            if (x == 0.0) zeros += 1.0;
            if (x > 0.0) row_ent -= x * log(x);
        }
        if (row_sum > 0.0) ent += row_ent, ++seeing;
        gsum += gate[((size_t)b * M + i) * H + h];
    }
    nsa_weights_stats r = {0};
    if (count > 0) {
        const double mean = sum / count, var = sq / count - mean * mean;
        r.mean = mean, r.std = var > 0.0 ? sqrt(var) : 0.0, r.min = mn, r.max = mx, r.sparsity = zeros / count;
        r.entropy = seeing ? ent / seeing : 0.0;
    }
    r.gate_mean = gsum / M;
    *stats = r;
    return ATTN_OK;
    /* END SOLUTION */
}

int nsa_weights_check(const attn_shape *shape, const attn_nsa_params *p, int kind, int b, int h,
                      const int32_t *block_indices, const float *weights, double *worst)
{
    int st = check_weights_args("nsa_weights_check", shape, p, kind, NSA_WEIGHTS_CMP_KEYS, b, h, weights);
    if (st) return st;
    if (!worst) return attn_fail(ATTN_ERR_NULL_POINTER, "nsa_weights_check: worst must not be NULL");
    if (kind == NSA_WEIGHTS_SLC && !block_indices)
        return attn_fail(ATTN_ERR_NULL_POINTER, "nsa_weights_check: the selected branch needs block_indices");

    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: for each row i (t = N - M + i) decide every column's visibility as nsa_weights_cpu does (CMP_KEYS:
     * the keys 0 .. (vis - 1)*d + l - 1 that the vis visible tokens cover). Track, in double, the row's sum over
     * the visible columns, the largest negative entry and the largest nonzero entry outside them; the row's
     * deviation is the largest of |sum - 1| (|sum| when nothing is visible) and those two. A NaN anywhere
     * makes *worst infinite (a comparison with NaN is false: test isnan). */
    const int M = shape->M, N = shape->N, H = shape->H, G = shape->G;
    const long NC = attn_nsa_num_cmp(N, p), cols = kind == NSA_WEIGHTS_CMP ? NC : N;
    const int L = attn_nsa_list_heads(shape, p), list_of = p->heads_share_selection ? h / (H / G) : h;
    double w_max = 0.0;
    for (int i = 0; i < M; ++i) {
        const long t = attn_query_pos(shape, i), vis = attn_nsa_cmp_visible_count(t, NC, p);
        const int32_t *list = kind == NSA_WEIGHTS_SLC ? block_indices + (((size_t)b * M + i) * L + list_of) * p->n : NULL;
        double sum = 0.0, dev = 0.0;
        int any = 0;
        for (long s = 0; s < cols; ++s) {
            int visible;
            if (kind == NSA_WEIGHTS_CMP) visible = s < vis;
            else if (kind == NSA_WEIGHTS_CMP_KEYS) visible = vis > 0 && s <= (vis - 1) * p->d + p->l - 1;
            else if (kind == NSA_WEIGHTS_SLC) visible = s <= t && is_listed(list, p->n, s / p->l_sel);
            else visible = s <= t && s >= t - p->w + 1;
            const double x = weights[(size_t)i * cols + s];
            if (isnan(x)) {
                *worst = INFINITY;
                return ATTN_OK;
            }
            if (x < 0.0 && -x > dev) dev = -x;
            if (visible) sum += x, any = 1;
            else if (fabs(x) > dev) dev = fabs(x);
        }
        const double off = fabs(sum - (any ? 1.0 : 0.0));
        if (off > dev) dev = off;
        if (dev > w_max) w_max = dev;
    }
    *worst = w_max;
    return ATTN_OK;
    /* END SOLUTION */
}
