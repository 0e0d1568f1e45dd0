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

/* TODO (about 120 lines): write the forward as a few small static helpers, one per line of the math, and call them from
 * nsa_forward_cpu in that order. The reference solution's: compress (lesson 07's nsa_compress_cpu: the
 * mean, or sum_{r,c} (x[r,c] + pos[r,c]) w[g, r*D + c, :] accumulated in double), cmp_row (one row's
 * compressed attention through row_begin/row_add/row_end, keeping each visible token's scaled score for
 * the importance), add_importance (token c hands p_cmp = expf(score - lse_cmp) to the blocks j its span
 * [c*d, c*d + l - 1] overlaps, attn_nsa_overlap(c, j, p) / d of it), top_n (lesson 08's nsa_topn_cpu:
 * forced blocks, then the best unchosen candidate with a strict >, ascending), is_listed (is block j on a
 * list, up to its first -1) and slc_swa_row (the selected and window branches of one row in one walk
 * over the keys, each key's score computed once; a key in both is added once to each). */

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

    /* TODO (about 50 lines): first compress k (with w_k and pos) and v (with w_v, no pos) into k_cmp, v_cmp [B, NC, G, D].
     * Then per (b, i), t = N - M + i: (1) every head's compressed attention over the attn_nsa_cmp_visible_count
     * visible tokens, o_cmp kept for the end, lse_cmp returned if asked, and its importance added to the
     * block scores of its list (g = h / (H/G) when heads share the selection, else h); (2) top-n per list,
     * into block_indices (b, i) when it is not NULL, else into a list of your own; (3) per head the selected
     * and window branches of the same walk, then o = g_cmp o_cmp + g_slc o_slc + g_swa o_swa with the gates
     * at [(b*M + i)*H + h]. Scratch: scores [NC], block scores [L, NB] (zeroed per (b, i)), o_cmp [H, D],
     * o_slc and o_swa [D], NB flags, L*n list entries. Compressed tensors are [B, NC, G, D]: batch b starts
     * NC tokens in, not N. Offsets in size_t. */
    return ATTN_ERR_NOT_IMPLEMENTED;
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

    /* TODO (about 35 lines): the branch's own lse first (lse_cmp, lse_slc or lse_swa, row [(b*H + h)*M + i]). Then each entry
     * of row i (t = N - M + i) is exp(scale * q[b,i,h] . key - lse) where the branch lets t see the key, else
     * 0; a row whose lse is -inf is all 0. CMP: compress the keys of batch b again (your compress helper on a
     * shape with B = 1 and k + b*N*G*D, w_k, pos), key c = token c of kv group g, visible iff c*d + l - 1 <= t.
     * SLC: key s visible iff s <= t and block s / l' is on list (b, i, g or h) of block_indices. SWA: visible
     * iff t - w + 1 <= s <= t. */
    return ATTN_ERR_NOT_IMPLEMENTED;
}

int nsa_cmp_weights_to_keys_cpu(const attn_shape *shape, const attn_nsa_params *p, const float *cmp_weights,
                                float *key_weights)
{
    int st = check_problem("nsa_cmp_weights_to_keys_cpu", shape, p);
    if (st) return st;
    if (!cmp_weights || !key_weights)
        return attn_fail(ATTN_ERR_NULL_POINTER, "nsa_cmp_weights_to_keys_cpu: cmp_weights and key_weights must not be NULL");

    /* TODO (about 10 lines): key s is covered by the tokens c with c*d <= s <= c*d + l - 1, i.e. c from ceil((s - l + 1) / d)
     * (at least 0) to floor(s / d) (below NC). key_weights[i, s] = the sum of their cmp_weights[i, c], / l. */
    return ATTN_ERR_NOT_IMPLEMENTED;
}

int nsa_weights_summary(const attn_shape *shape, const attn_nsa_params *p, int kind, int b, int h,
                        const float *weights, const float *gate, nsa_weights_stats *stats)
{
    int st = check_weights_args("nsa_weights_summary", shape, p, kind, NSA_WEIGHTS_CMP_KEYS, b, h, weights);
    if (st) return st;
    if (!gate || !stats) return attn_fail(ATTN_ERR_NULL_POINTER, "nsa_weights_summary: gate and stats must not be NULL");

    /* TODO (about 25 lines): cols = NC for CMP, N otherwise; M rows. One pass in double: sum, sum of squares, min, max, zeros,
     * and per row its sum and -sum w ln w over w > 0 (a row "sees a key" when its sum is > 0). std is the
     * population one, sqrt(E[w^2] - E[w]^2) (never below 0). gate_mean: the mean of gate[(b*M + i)*H + h]
     * over i. With no entries at all (NC = 0) every statistic but gate_mean is 0. */
    return ATTN_ERR_NOT_IMPLEMENTED;
}

int nsa_weights_check(const attn_shape *shape, const attn_nsa_params *p, int kind, int b, int h,
                      const int32_t *block_indices, const float *weights, double *worst)
{
    int st = check_weights_args("nsa_weights_check", shape, p, kind, NSA_WEIGHTS_CMP_KEYS, b, h, weights);
    if (st) return st;
    if (!worst) return attn_fail(ATTN_ERR_NULL_POINTER, "nsa_weights_check: worst must not be NULL");
    if (kind == NSA_WEIGHTS_SLC && !block_indices)
        return attn_fail(ATTN_ERR_NULL_POINTER, "nsa_weights_check: the selected branch needs block_indices");

    /* TODO (about 30 lines): for each row i (t = N - M + i) decide every column's visibility as nsa_weights_cpu does (CMP_KEYS:
     * the keys 0 .. (vis - 1)*d + l - 1 that the vis visible tokens cover). Track, in double, the row's sum over
     * the visible columns, the largest negative entry and the largest nonzero entry outside them; the row's
     * deviation is the largest of |sum - 1| (|sum| when nothing is visible) and those two. A NaN anywhere
     * makes *worst infinite (a comparison with NaN is false: test isnan). */
    return ATTN_ERR_NOT_IMPLEMENTED;
}
