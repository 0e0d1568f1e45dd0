/*
 * Tests of the NSA selection references: the double-precision oracle (attn_oracle_nsa_scores,
 * attn_oracle_nsa_topn in common/grading/oracle_nsa_select.c) on cases computed by hand, and the slow GPU
 * reference of common/grading/nsa_select_ref.cu against the oracle (skipped without a GPU).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attn_gpu.h"
#include "nsa.h"
#include "nsa_select_ref.h"
#include "timing.h"
#include "oracle_nsa.h"
#include "random.h"

static attn_nsa_params cfg(int l, int d, int l_sel, int n, int share)
{
    attn_nsa_params p = attn_nsa_paper_defaults();
    p.l = l, p.d = d, p.l_sel = l_sel, p.n = n, p.heads_share_selection = share;
    return p;
}

/* l = d = l' = 4, N = 12 keys: 3 compressed tokens, 3 blocks, the identity mapping. One query (t = 11) sees
 * all three. D = 1, scale 1: head 0 has q = 1, head 1 has q = 2; k_cmp = 0, ln 2, ln 3, so the logits are
 * (0, ln 2, ln 3) and (0, 2 ln 2, 2 ln 3): exp 1, 2, 3 (lse ln 6) and 1, 4, 9 (lse ln 14).
 *   p_cmp head 0 = 1/6, 2/6, 3/6; head 1 = 1/14, 4/14, 9/14; group sum = 10/42, 26/42, 48/42. */
Test(nsa_oracle, scores_identity_mapping_by_hand)
{
    attn_shape s = attn_make_shape(1, 1, 12, 2, 1, 1, 1);
    s.scale = 1.0f;
    const float q[2] = {1.0f, 2.0f}, k[3] = {0.0f, (float)log(2.0), (float)log(3.0)};
    double lse[2];
    /* lse from the float keys, so that p sums to 1 exactly in double */
    for (int h = 0; h < 2; ++h) {
        double sum = 0;
        for (int c = 0; c < 3; ++c) sum += exp((double)q[h] * k[c]);
        lse[h] = log(sum);
    }
    const double shared[3] = {10.0 / 42, 26.0 / 42, 48.0 / 42}, per_head[6] = {1.0 / 6, 2.0 / 6, 3.0 / 6,
                                                                                1.0 / 14, 4.0 / 14, 9.0 / 14};
    attn_nsa_params p = cfg(4, 4, 4, 3, 1);
    double got[6];
    cr_assert_eq(attn_oracle_nsa_scores(&s, &p, q, k, lse, got), ATTN_OK, "%s", attn_error_detail());
    for (int j = 0; j < 3; ++j)
        cr_assert(fabs(got[j] - shared[j]) < 1e-6, "shared block %d: %.9f, expected %.9f", j, got[j], shared[j]);
    p.heads_share_selection = 0;
    cr_assert_eq(attn_oracle_nsa_scores(&s, &p, q, k, lse, got), ATTN_OK, "%s", attn_error_detail());
    for (int e = 0; e < 6; ++e)
        cr_assert(fabs(got[e] - per_head[e]) < 1e-6, "head %d block %d: %.9f, expected %.9f", e / 3, e % 3, got[e],
                  per_head[e]);
}

/* l = 8, d = 4, l' = 16 (the paper's proportions), N = 40: 9 tokens with spans [4i, 4i + 7], 3 blocks.
 * q = 0 makes every visible token equally important: p = 1/9 with lse = ln 9 at t = 39. Overlaps:
 *   block 0 (keys 0-15):  tokens 0, 1, 2 share 8 keys (weight 2), token 3 shares 4 (weight 1)   -> 7/9
 *   block 1 (keys 16-31): token 3 (1), tokens 4, 5, 6 (2), token 7 (1)                         -> 8/9
 *   block 2 (keys 32-39): token 7 (1), token 8 (2)                                             -> 3/9
 * They sum to l/d = 2: every token's keys land in some block. */
Test(nsa_oracle, scores_overlap_weights_by_hand)
{
    const attn_shape s = attn_make_shape(1, 1, 40, 1, 1, 1, 1);
    const attn_nsa_params p = cfg(8, 4, 16, 3, 1);
    float q[1] = {0.0f}, k[9];
    for (int c = 0; c < 9; ++c) k[c] = (float)c;
    const double lse[1] = {log(9.0)}, want[3] = {7.0 / 9, 8.0 / 9, 3.0 / 9};
    double got[3];
    cr_assert_eq(attn_oracle_nsa_scores(&s, &p, q, k, lse, got), ATTN_OK, "%s", attn_error_detail());
    for (int j = 0; j < 3; ++j)
        cr_assert(fabs(got[j] - want[j]) < 1e-12, "block %d: %.12f, expected %.12f", j, got[j], want[j]);
}

/* Rows that see no compressed token (t < l - 1) have lse = -inf and score 0 everywhere, never NaN. */
Test(nsa_oracle, rows_without_tokens_score_zero)
{
    const attn_shape s = attn_make_shape(1, 40, 40, 1, 1, 1, 1);
    const attn_nsa_params p = cfg(32, 16, 64, 3, 1);
    float q[40], k[1] = {1.0f};
    for (int i = 0; i < 40; ++i) q[i] = 1.0f;
    double lse[40], got[40];
    for (int i = 0; i < 40; ++i) lse[i] = i >= 31 ? 1.0 : -INFINITY; /* token 0 ends at key 31 */
    cr_assert_eq(attn_oracle_nsa_scores(&s, &p, q, k, lse, got), ATTN_OK, "%s", attn_error_detail());
    for (int i = 0; i < 40; ++i) {
        const double want = i >= 31 ? 2.0 * exp(1.0 - 1.0) : 0.0; /* token 0 lies in block 0: weight 32/16 */
        cr_assert(got[i] == want, "t=%d: score %g, expected %g", i, got[i], want);
    }
}

/* Top-n by hand: N = 32, l' = 4 (8 blocks), t = 31: block 7 holds t, block 6 before it, n = 5. */
Test(nsa_oracle, topn_rules_by_hand)
{
    const attn_shape s = attn_make_shape(1, 1, 32, 1, 1, 1, 1);
    const attn_nsa_params p = cfg(4, 4, 4, 5, 1);
    const double rows[][8] = {{0, 9, 1, 8, 2, 7, 0, 0}, {0, 5, 5, 5, 5, 0, 0, 0}, {9, 1, 1, 3, 3, 3, 9, 9}};
    const int32_t want[][5] = {{0, 1, 3, 6, 7}, {0, 1, 2, 6, 7}, {0, 3, 4, 6, 7}};
    for (int c = 0; c < 3; ++c) {
        int32_t got[5];
        cr_assert_eq(attn_oracle_nsa_topn(&s, &p, rows[c], got), ATTN_OK, "%s", attn_error_detail());
        cr_assert(memcmp(got, want[c], sizeof got) == 0, "case %d: got %d %d %d %d %d, expected %d %d %d %d %d", c,
                  got[0], got[1], got[2], got[3], got[4], want[c][0], want[c][1], want[c][2], want[c][3], want[c][4]);
    }
    /* M = 3 queries at t = 29, 30, 31 of N = 32 with l' = 16: t / l' = 1, two candidates, padded */
    const attn_shape s3 = attn_make_shape(1, 3, 32, 1, 1, 1, 1);
    const attn_nsa_params p3 = cfg(4, 4, 16, 4, 1);
    const double sc[3 * 2] = {1, 2, 3, 4, 5, 6};
    int32_t got[12];
    const int32_t want3[12] = {0, 1, -1, -1, 0, 1, -1, -1, 0, 1, -1, -1};
    cr_assert_eq(attn_oracle_nsa_topn(&s3, &p3, sc, got), ATTN_OK, "%s", attn_error_detail());
    cr_assert(memcmp(got, want3, sizeof got) == 0, "two candidates, n = 4: expected 0 1 -1 -1 for every row");
    /* t = 0 (N = M = 1): only block 0 */
    const attn_shape s1 = attn_make_shape(1, 1, 1, 1, 1, 1, 1);
    const double one[1] = {0};
    int32_t got1[4];
    cr_assert_eq(attn_oracle_nsa_topn(&s1, &p3, one, got1), ATTN_OK, "%s", attn_error_detail());
    cr_assert(got1[0] == 0 && got1[1] == -1 && got1[2] == -1 && got1[3] == -1, "N = 1: expected 0 -1 -1 -1");
}

Test(nsa_oracle, bad_input_is_rejected)
{
    const attn_shape non_causal = attn_make_shape(1, 1, 8, 1, 1, 1, 0), ok = attn_make_shape(1, 1, 8, 1, 1, 1, 1);
    attn_nsa_params p = cfg(4, 4, 4, 3, 1), bad = cfg(4, 3, 4, 3, 1);
    float x[8] = {0};
    double lse[1] = {0}, scores[8];
    int32_t idx[3];
    cr_assert_eq(attn_oracle_nsa_scores(&non_causal, &p, x, x, lse, scores), ATTN_ERR_BAD_ARGUMENT);
    cr_assert_eq(attn_oracle_nsa_scores(&ok, &bad, x, x, lse, scores), ATTN_ERR_BAD_ARGUMENT);
    cr_assert_eq(attn_oracle_nsa_scores(&ok, &p, x, NULL, lse, scores), ATTN_ERR_NULL_POINTER);
    cr_assert_eq(attn_oracle_nsa_topn(&ok, &p, NULL, idx), ATTN_ERR_NULL_POINTER);
}

/* The GPU reference against the oracle on a random problem (both list modes). */
Test(nsa_gpu_reference, matches_the_oracle)
{
    char why[256];
    if (!attn_gpu_available(why, sizeof why)) cr_skip_test("%s", why);
    const attn_shape s = attn_make_shape(1, 300, 1500, 8, 2, 64, 1);
    for (int share = 0; share <= 1; ++share) {
        const attn_nsa_params p = cfg(32, 16, 64, 8, share);
        const long NC = attn_nsa_num_cmp(s.N, &p), NB = attn_nsa_num_blocks(s.N, &p);
        const int L = attn_nsa_list_heads(&s, &p);
        const size_t nq = attn_q_elems(&s), nk = (size_t)NC * s.G * s.D, nl = attn_lse_elems(&s);
        const size_t ns = (size_t)s.M * L * NB, ni = (size_t)s.M * L * p.n;
        attn_rng rng;
        attn_rng_seed(&rng, 1234 + share);
        float *q = attn_alloc_f32(nq), *k = attn_alloc_f32(nk), *lse = attn_alloc_f32(nl), *sc = attn_alloc_f32(ns);
        uint16_t *qb = attn_alloc_bf16(nq), *kb = attn_alloc_bf16(nk);
        double *lse64 = attn_alloc_f64(nl), *want = attn_alloc_f64(ns);
        int32_t *idx = attn_alloc_bytes(ni * 4), *want_idx = attn_alloc_bytes(ni * 4);
        attn_fill_random(q, nq, s.D, 1.0f, &rng), attn_fill_random(k, nk, s.D, 1.0f, &rng);
        attn_f32_to_bf16_array(q, qb, nq), attn_f32_to_bf16_array(k, kb, nk);
        attn_bf16_to_f32_array(qb, q, nq), attn_bf16_to_f32_array(kb, k, nk);
        uint16_t *dq, *dk;
        float *dl, *ds;
        int32_t *di;
        cr_assert_eq(attn_dalloc((void **)&dq, nq * 2), ATTN_OK);
        cr_assert_eq(attn_dalloc((void **)&dk, nk * 2), ATTN_OK);
        cr_assert_eq(attn_dalloc((void **)&dl, nl * 4), ATTN_OK);
        cr_assert_eq(attn_dalloc((void **)&ds, ns * 4), ATTN_OK);
        cr_assert_eq(attn_dalloc((void **)&di, ni * 4), ATTN_OK);
        attn_h2d(dq, qb, nq * 2), attn_h2d(dk, kb, nk * 2);
        cr_assert_eq(attn_ref_nsa_lse_cmp(&s, &p, dq, dk, dl, 0), ATTN_OK, "%s", attn_error_detail());
        cr_assert_eq(attn_ref_nsa_select(&s, &p, dq, dk, dl, ds, di, 0), ATTN_OK, "%s", attn_error_detail());
        cr_assert_eq(attn_dsync(), ATTN_OK, "%s", attn_error_detail());
        attn_d2h(lse, dl, nl * 4), attn_d2h(sc, ds, ns * 4), attn_d2h(idx, di, ni * 4);
        /* lse against the definition in double */
        const double scale = 1.0 / sqrt((double)s.D);
        for (int h = 0; h < s.H; ++h)
            for (int i = 0; i < s.M; ++i) {
                const long t = attn_query_pos(&s, i), vis = attn_nsa_cmp_visible_count(t, NC, &p);
                double m = -INFINITY, sum = 0;
                for (int pass = 0; pass < 2; ++pass)
                    for (long c = 0; c < vis; ++c) {
                        double dot = 0;
                        for (int e = 0; e < s.D; ++e) dot += (double)q[((size_t)i * s.H + h) * s.D + e] * k[((size_t)c * s.G + h / 4) * s.D + e];
                        if (pass == 0) m = fmax(m, scale * dot);
                        else sum += exp(scale * dot - m);
                    }
                const double ref = vis ? m + log(sum) : -INFINITY;
                const float got = lse[(size_t)h * s.M + i];
                cr_assert(isinf(ref) ? got == ref : fabs(got - ref) < 1e-4 + 1e-5 * fabs(ref),
                          "lse h=%d i=%d: %g, expected %g", h, i, got, ref);
            }
        for (size_t e = 0; e < nl; ++e) lse64[e] = lse[e];
        cr_assert_eq(attn_oracle_nsa_scores(&s, &p, q, k, lse64, want), ATTN_OK, "%s", attn_error_detail());
        cr_assert_eq(attn_oracle_nsa_topn(&s, &p, want, want_idx), ATTN_OK, "%s", attn_error_detail());
        for (size_t e = 0; e < ns; ++e)
            cr_assert(fabs(sc[e] - want[e]) <= 1e-7 + 1e-4 * want[e], "score %zu (share %d): %.9g, expected %.9g", e,
                      share, sc[e], want[e]);
        /* lists: equal, or different only where the oracle's scores tie within 2e-4 */
        for (size_t r = 0; r < (size_t)s.M * L; ++r)
            for (int e = 0; e < p.n; ++e) {
                if (idx[r * p.n + e] == want_idx[r * p.n + e]) continue;
                const int32_t a = idx[r * p.n + e], b = want_idx[r * p.n + e];
                cr_assert(a >= 0 && b >= 0 && fabs(want[r * NB + a] - want[r * NB + b]) <= 2e-4 * want[r * NB + b],
                          "list %zu entry %d (share %d): block %d, the oracle's %d", r, e, share, a, b);
            }
        attn_dfree(dq), attn_dfree(dk), attn_dfree(dl), attn_dfree(ds), attn_dfree(di);
        free(q), free(k), free(lse), free(sc), free(qb), free(kb), free(lse64), free(want), free(idx), free(want_idx);
    }
}
