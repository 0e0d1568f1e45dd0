/*
 * Tests of the NSA part of the harness (common/nsa.h, common/nsa.c, common/grading/oracle_nsa_cmp.c,
 * common/grading/oracle_nsa_forward.c): the parameters and their checks, the index rules, the
 * compressed-branch references and the whole forward, on cases computed by hand. Every NSA lesson is graded against these, so they are tested first.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn.h"
#include "nsa.h"
#include "timing.h"
#include "oracle.h"
#include "oracle_nsa.h"
#include "random.h"

#define NEAR(got, want, what) \
    cr_assert(fabs((double)(got) - (double)(want)) < 1e-12, "%s: got %.15g, expected %.15g", what, (double)(got), (double)(want))

static attn_nsa_params params(int l, int d, int l_sel)
{
    attn_nsa_params p = attn_nsa_paper_defaults();
    p.l = l, p.d = d, p.l_sel = l_sel;
    return p;
}

Test(nsa, defaults)
{
    const attn_nsa_params p = attn_nsa_paper_defaults(), m = attn_nsa_mean_pool();
    cr_assert(p.l == 32 && p.d == 16 && p.l_sel == 64 && p.n == 16 && p.w == 512 && p.mode == ATTN_NSA_MEAN &&
                  p.heads_share_selection == 1,
              "paper defaults are l=32 d=16 l'=64 n=16 w=512, mean, shared");
    cr_assert(m.l == 64 && m.d == 64 && m.l_sel == 64 && m.n == 16 && m.w == 512 && m.mode == ATTN_NSA_MEAN,
              "mean-pool is l=d=l'=64 n=16 w=512");
    cr_assert_eq(attn_nsa_check(&p), ATTN_OK);
    cr_assert_eq(attn_nsa_check(&m), ATTN_OK);
}

Test(nsa, check_rejects_bad_parameters)
{
    const attn_nsa_params ok = attn_nsa_paper_defaults();
    struct {
        attn_nsa_params p;
        const char *why;
    } bad[8];
    for (int c = 0; c < 8; ++c) bad[c].p = ok;
    bad[0].p.l = 0, bad[0].why = "l = 0";
    bad[1].p.d = 0, bad[1].why = "d = 0";
    bad[2].p.d = 5, bad[2].why = "d = 5 does not divide l = 32";
    bad[3].p.l_sel = 72, bad[3].p.d = 16, bad[3].why = "l' = 72 is not a multiple of d = 16";
    bad[4].p.n = 2, bad[4].why = "n = 2 < 3 forced blocks";
    bad[5].p.w = 0, bad[5].why = "w = 0";
    bad[6].p.mode = 2, bad[6].why = "mode 2";
    bad[7].p.heads_share_selection = 2, bad[7].why = "heads_share_selection = 2";
    for (int c = 0; c < 8; ++c) {
        attn_clear_error();
        const int st = attn_nsa_check(&bad[c].p);
        cr_assert(st == ATTN_ERR_BAD_ARGUMENT, "%s: attn_nsa_check returned %s", bad[c].why, attn_status_name(st));
        cr_assert(strlen(attn_error_detail()) > 0, "%s: no detail message", bad[c].why);
    }
    cr_assert_eq(attn_nsa_check(NULL), ATTN_ERR_NULL_POINTER);
    attn_nsa_params one = params(1, 1, 1);
    cr_assert_eq(attn_nsa_check(&one), ATTN_OK, "l = d = l' = 1 is legal");
}

/* N = 10, l = 4, d = 2, l' = 4 (the lesson-07 README's example): tokens [0,3] [2,5] [4,7] [6,9];
 * selection blocks [0,3] [4,7] [8,11]. */
Test(nsa, index_rules_by_hand)
{
    const attn_nsa_params p = params(4, 2, 4);
    cr_assert_eq(attn_nsa_num_cmp(10, &p), 4);
    cr_assert_eq(attn_nsa_num_cmp(11, &p), 4, "key 10 alone does not complete token 4 ([8, 11])");
    cr_assert_eq(attn_nsa_num_cmp(12, &p), 5);
    cr_assert_eq(attn_nsa_num_cmp(4, &p), 1);
    cr_assert_eq(attn_nsa_num_cmp(3, &p), 0);
    cr_assert_eq(attn_nsa_num_blocks(10, &p), 3);
    cr_assert_eq(attn_nsa_num_blocks(12, &p), 3);
    cr_assert_eq(attn_nsa_num_blocks(13, &p), 4);
    const long want_visible[10] = {0, 0, 0, 1, 1, 2, 2, 3, 3, 4};
    for (long t = 0; t < 10; ++t) {
        cr_assert_eq(attn_nsa_cmp_visible_count(t, 4, &p), want_visible[t], "t=%ld: visible count", t);
        for (long i = 0; i < 4; ++i)
            cr_assert_eq(attn_nsa_cmp_visible(i, t, &p), i < want_visible[t], "token %ld from t=%ld", i, t);
    }
    cr_assert_eq(attn_nsa_cmp_visible_count(9, 2, &p), 2, "capped at NC");
    /* overlap(i, j): keys shared by token i and block j */
    const long want_overlap[4][3] = {{4, 0, 0}, {2, 2, 0}, {0, 4, 0}, {0, 2, 2}};
    for (long i = 0; i < 4; ++i)
        for (long j = 0; j < 3; ++j)
            cr_assert_eq(attn_nsa_overlap(i, j, &p), want_overlap[i][j], "overlap(%ld, %ld)", i, j);
    /* the paper's l = 32, d = 16, l' = 64: token 3 spans [48, 79], half in block 0 and half in block 1 */
    const attn_nsa_params paper = attn_nsa_paper_defaults();
    cr_assert_eq(attn_nsa_overlap(3, 0, &paper), 16);
    cr_assert_eq(attn_nsa_overlap(3, 1, &paper), 16);
    cr_assert_eq(attn_nsa_overlap(2, 0, &paper), 32);
    cr_assert_eq(attn_nsa_num_cmp(65536, &paper), 4095);
    cr_assert_eq(attn_nsa_cmp_visible_count(31, 4095, &paper), 1);
    cr_assert_eq(attn_nsa_cmp_visible_count(30, 4095, &paper), 0);
    attn_shape sh = attn_make_shape(1, 1, 1, 8, 2, 64, 1);
    cr_assert_eq(attn_nsa_list_heads(&sh, &paper), 2);
    attn_nsa_params per_head = paper;
    per_head.heads_share_selection = 0;
    cr_assert_eq(attn_nsa_list_heads(&sh, &per_head), 8);
}

Test(oracle_nsa, compress_mean_by_hand)
{
    /* N = 5, l = 2, d = 1: tokens [0,1] [1,2] [2,3] [3,4]; G = 2 heads, D = 1; batch 2 */
    attn_nsa_params p = params(2, 1, 2);
    const attn_shape sh = attn_make_shape(2, 5, 5, 2, 2, 1, 1);
    float kv[2 * 5 * 2];
    for (int b = 0; b < 2; ++b)
        for (int s = 0; s < 5; ++s) kv[(b * 5 + s) * 2 + 0] = (float)(s + 1 + 100 * b), kv[(b * 5 + s) * 2 + 1] = (float)(10 * s);
    double out[2 * 4 * 2];
    cr_assert_eq(attn_oracle_nsa_compress(&sh, &p, kv, NULL, NULL, out), ATTN_OK);
    for (int b = 0; b < 2; ++b)
        for (int i = 0; i < 4; ++i) {
            char what[60];
            snprintf(what, sizeof what, "b=%d token %d head 0", b, i);
            NEAR(out[(b * 4 + i) * 2 + 0], i + 1.5 + 100 * b, what);
            snprintf(what, sizeof what, "b=%d token %d head 1", b, i);
            NEAR(out[(b * 4 + i) * 2 + 1], 10.0 * i + 5.0, what);
        }
    /* the paper's l = 32, d = 16 on 40 keys: token 0 = mean of keys 0..31 = 15.5, then none (NC = 1) */
    p = attn_nsa_paper_defaults();
    const attn_shape sh40 = attn_make_shape(1, 1, 40, 1, 1, 1, 1);
    float ramp[40];
    for (int s = 0; s < 40; ++s) ramp[s] = (float)s;
    double one = -1.0;
    cr_assert_eq(attn_oracle_nsa_compress(&sh40, &p, ramp, NULL, NULL, &one), ATTN_OK);
    NEAR(one, 15.5, "paper token 0");
}

Test(oracle_nsa, compress_linear_by_hand)
{
    /* l = 2, d = 2, D = 2, G = 1, N = 4: token 0 = keys 0, 1 laid end to end = (1, 2, 3, 4), token 1 =
     * (5, 6, 7, 8). w [l*D = 4, D = 2] = ((1, 2), (3, 4), (5, 6), (7, 8)): out[e] = sum_k x[k] w[k, e]. */
    attn_nsa_params p = params(2, 2, 2);
    p.mode = ATTN_NSA_LINEAR;
    const attn_shape sh = attn_make_shape(1, 4, 4, 1, 1, 2, 1);
    const float kv[8] = {1, 2, 3, 4, 5, 6, 7, 8}, w[8] = {1, 2, 3, 4, 5, 6, 7, 8}, pos[4] = {1, 0, 0, -1};
    double out[4];
    cr_assert_eq(attn_oracle_nsa_compress(&sh, &p, kv, w, NULL, out), ATTN_OK);
    NEAR(out[0], 1 * 1 + 2 * 3 + 3 * 5 + 4 * 7, "token 0, e=0");
    NEAR(out[1], 1 * 2 + 2 * 4 + 3 * 6 + 4 * 8, "token 0, e=1");
    NEAR(out[2], 5 * 1 + 6 * 3 + 7 * 5 + 8 * 7, "token 1, e=0");
    NEAR(out[3], 5 * 2 + 6 * 4 + 7 * 6 + 8 * 8, "token 1, e=1");
    /* keys: pos (1, 0, 0, -1) is added to every token before the map: + (1*1 - 7, 1*2 - 8) = (-6, -6) */
    cr_assert_eq(attn_oracle_nsa_compress(&sh, &p, kv, w, pos, out), ATTN_OK);
    NEAR(out[0], 50 - 6, "token 0 with pos, e=0");
    NEAR(out[1], 60 - 6, "token 0 with pos, e=1");
    NEAR(out[2], 114 - 6, "token 1 with pos, e=0");
    cr_assert_eq(attn_oracle_nsa_compress(&sh, &p, kv, NULL, NULL, out), ATTN_ERR_NULL_POINTER, "linear without w");
    p.d = 3;
    cr_assert_eq(attn_oracle_nsa_compress(&sh, &p, kv, w, NULL, out), ATTN_ERR_BAD_ARGUMENT, "d = 3 does not divide l");
}

Test(oracle_nsa, cmp_attention_by_hand)
{
    /* N = 4, l = 2, d = 1: tokens [0,1] [1,2] [2,3], visible from t iff i + 1 <= t. scale 1, D = 1,
     * q = 1, k_cmp = (0, ln 3, 0), v_cmp = (4, 8, 2).
     *   t = 0: nothing (o = 0, lse = -inf)   t = 1: token 0 (o = 4, lse = 0)
     *   t = 2: weights (1, 3): o = 7, lse = ln 4   t = 3: weights (1, 3, 1): o = 6, lse = ln 5 */
    const attn_nsa_params p = params(2, 1, 2);
    attn_shape sh = attn_make_shape(1, 4, 4, 1, 1, 1, 1);
    sh.scale = 1.0f;
    const float q[4] = {1, 1, 1, 1}, k[3] = {0.0f, (float)log(3.0), 0.0f}, v[3] = {4, 8, 2};
    const double e = exp((double)k[1]);
    double o[4], lse[4];
    cr_assert_eq(attn_oracle_nsa_cmp_attention(&sh, &p, q, k, v, o, lse), ATTN_OK);
    NEAR(o[0], 0.0, "o[t=0]");
    cr_assert(isinf(lse[0]) && lse[0] < 0, "lse[t=0] = %g, expected -inf", lse[0]);
    NEAR(o[1], 4.0, "o[t=1]");
    NEAR(lse[1], 0.0, "lse[t=1]");
    NEAR(o[2], (4.0 + 8.0 * e) / (1.0 + e), "o[t=2]");
    NEAR(lse[2], log(1.0 + e), "lse[t=2]");
    NEAR(o[3], (4.0 + 8.0 * e + 2.0) / (2.0 + e), "o[t=3]");
    NEAR(lse[3], log(2.0 + e), "lse[t=3]");
    /* M = 1: the one query is the last position, t = 3 */
    sh.M = 1;
    cr_assert_eq(attn_oracle_nsa_cmp_attention(&sh, &p, q, k, v, o, lse), ATTN_OK);
    NEAR(o[0], (4.0 + 8.0 * e + 2.0) / (2.0 + e), "o[M=1]");
    /* GQA: H = 2, G = 1 -> both heads read the one kv head; q of head 1 is 0: uniform weights */
    attn_shape gqa = attn_make_shape(1, 1, 4, 2, 1, 1, 1);
    gqa.scale = 1.0f;
    const float q2[2] = {1, 0};
    double o2[2], lse2[2];
    cr_assert_eq(attn_oracle_nsa_cmp_attention(&gqa, &p, q2, k, v, o2, lse2), ATTN_OK);
    NEAR(o2[1], (4.0 + 8.0 + 2.0) / 3.0, "head 1, q = 0");
    NEAR(lse2[1], log(3.0), "head 1 lse");
    /* N < l: no token; k_cmp and v_cmp are never read */
    const attn_shape tiny = attn_make_shape(1, 1, 1, 1, 1, 1, 1);
    cr_assert_eq(attn_oracle_nsa_cmp_attention(&tiny, &p, q, NULL, NULL, o, lse), ATTN_OK);
    NEAR(o[0], 0.0, "o with N < l");
    cr_assert(isinf(lse[0]) && lse[0] < 0, "lse with N < l = %g, expected -inf", lse[0]);
}

/* ---------------------------------------------------------------- the whole forward (lesson 10) */

/* N = 10 keys, D = 1, scale 1, one query at t = 9; l = d = l' = 2 (token c = block c = keys 2c, 2c + 1),
 * n = 4, w = 3, mean mode. k = (0 0 ln2 ln2 0 0 0 0 0 0), v = (0 1 .. 9):
 *   k_cmp = (0 ln2 0 0 0), v_cmp = (.5 2.5 4.5 6.5 8.5): weights (1 2 1 1 1) / 6, o_cmp = 25/6, lse_cmp = ln 6
 *   scores p_slc = p_cmp = (1 2 1 1 1) / 6; forced 0, 3, 4 (t = 9 is in block 4), then block 1 (2/6 > 1/6)
 *   selected keys 0 1 2 3 6 7 8 9 with weights 1 1 2 2 1 1 1 1: o_slc = 41/10, lse_slc = ln 10
 *   window keys 7 8 9: o_swa = 8, lse_swa = ln 3
 *   gates (0.5, 0.25, 2): o = 25/12 + 41/40 + 16 */
Test(oracle_nsa, forward_by_hand)
{
    attn_shape sh = attn_make_shape(1, 1, 10, 1, 1, 1, 1);
    sh.scale = 1.0f;
    attn_nsa_params p = params(2, 2, 2);
    p.n = 4, p.w = 3;
    const float l2 = (float)log(2.0);
    float q[1] = {1}, k[10] = {0, 0, l2, l2, 0, 0, 0, 0, 0, 0}, v[10], gc[1] = {0.5f}, gs[1] = {0.25f}, gw[1] = {2.0f};
    for (int s = 0; s < 10; ++s) v[s] = (float)s;
    double o, o_cmp, o_slc, o_swa, lse_cmp, lse_slc, lse_swa, k_cmp[5], v_cmp[5], scores[5];
    int32_t lists[4];
    attn_oracle_nsa_in in = {sh, p, q, k, v, NULL, NULL, NULL, gc, gs, gw, NULL, 0};
    attn_oracle_nsa_out out = {&o, &o_cmp, &o_slc, &o_swa, &lse_cmp, &lse_slc, &lse_swa, k_cmp, v_cmp, scores, lists};
    cr_assert_eq(attn_oracle_nsa_forward(&in, &out), ATTN_OK, "%s", attn_error_detail());
    const double e2 = exp((double)l2); /* 2, up to float rounding of ln 2 */
    NEAR(k_cmp[1], (double)l2, "k_cmp[1]");
    NEAR(v_cmp[4], 8.5, "v_cmp[4]");
    NEAR(o_cmp, (0.5 + 2.5 * e2 + 4.5 + 6.5 + 8.5) / (4 + e2), "o_cmp");
    NEAR(lse_cmp, log(4 + e2), "lse_cmp");
    NEAR(scores[1], e2 / (4 + e2), "score of block 1");
    NEAR(scores[2], 1 / (4 + e2), "score of block 2");
    const int32_t want[4] = {0, 1, 3, 4};
    for (int e = 0; e < 4; ++e) cr_assert_eq(lists[e], want[e], "list entry %d: %d, expected %d", e, lists[e], want[e]);
    NEAR(o_slc, (0 + 1 + 2 * e2 + 3 * e2 + 6 + 7 + 8 + 9) / (6 + 2 * e2), "o_slc");
    NEAR(lse_slc, log(6 + 2 * e2), "lse_slc");
    NEAR(o_swa, 8.0, "o_swa");
    NEAR(lse_swa, log(3.0), "lse_swa");
    NEAR(o, 0.5 * o_cmp + 0.25 * o_slc + 2.0 * 8.0, "o, the gated sum");
    cr_assert(fabs(o - (25.0 / 12 + 41.0 / 40 + 16)) < 1e-6, "o = %.9g, expected 25/12 + 41/40 + 16", o);
    /* given lists replace the oracle's in the selected branch only: {0, 2, 3, 4} */
    const int32_t given[4] = {0, 2, 3, 4};
    in.lists = given;
    cr_assert_eq(attn_oracle_nsa_forward(&in, &out), ATTN_OK);
    NEAR(o_slc, (0 + 1 + 4 + 5 + 6 + 7 + 8 + 9) / 8.0, "o_slc on the given lists");
    for (int e = 0; e < 4; ++e) cr_assert_eq(lists[e], want[e], "the oracle's own lists still come out");
    /* linear mode needs its weights; NSA is causal */
    in.p.mode = ATTN_NSA_LINEAR;
    cr_assert_eq(attn_oracle_nsa_forward(&in, &out), ATTN_ERR_NULL_POINTER, "linear mode without w_k, w_v, pos");
    in.p.mode = ATTN_NSA_MEAN, in.shape.causal = 0;
    cr_assert_eq(attn_oracle_nsa_forward(&in, &out), ATTN_ERR_BAD_ARGUMENT, "causal = 0");
}

/* With every gate 1 the forward is the sum of the three branch references, composed here by hand. */
Test(oracle_nsa, forward_is_the_sum_of_the_branches)
{
    for (int mode = 0; mode < 2; ++mode) {
        const attn_shape sh = attn_make_shape(2, 30, 150, 4, 2, 8, 1);
        attn_nsa_params p = params(8, 4, 16);
        p.n = 4, p.w = 20, p.mode = mode;
        const long NC = attn_nsa_num_cmp(sh.N, &p), NB = attn_nsa_num_blocks(sh.N, &p);
        const size_t nq = attn_q_elems(&sh), nkv = attn_kv_elems(&sh), ncmp = (size_t)sh.B * NC * sh.G * sh.D;
        const size_t nw = (size_t)sh.G * p.l * sh.D * sh.D, nl = attn_lse_elems(&sh);
        attn_rng rng;
        attn_rng_seed(&rng, 1234 + mode);
        float *q = attn_alloc_f32(nq), *k = attn_alloc_f32(nkv), *v = attn_alloc_f32(nkv), *wk = attn_alloc_f32(nw),
              *wv = attn_alloc_f32(nw), *pos = attn_alloc_f32((size_t)p.l * sh.D);
        attn_fill_random(q, nq, sh.D, 1.0f, &rng), attn_fill_random(k, nkv, sh.D, 1.0f, &rng);
        attn_fill_random(v, nkv, sh.D, 1.0f, &rng), attn_fill_random(wk, nw, sh.D, 0.1f, &rng);
        attn_fill_random(wv, nw, sh.D, 0.1f, &rng), attn_fill_random(pos, (size_t)p.l * sh.D, sh.D, 0.5f, &rng);
        const int lin = mode == ATTN_NSA_LINEAR;
        /* the branches by hand */
        double *kc = attn_alloc_f64(ncmp), *vc = attn_alloc_f64(ncmp), *o_c = attn_alloc_f64(nq), *o_s = attn_alloc_f64(nq);
        double *o_w = attn_alloc_f64(nq), *lse = attn_alloc_f64(nl), *sc = attn_alloc_f64((size_t)sh.B * sh.M * sh.G * NB);
        float *kcf = attn_alloc_f32(ncmp), *vcf = attn_alloc_f32(ncmp);
        int32_t *lists = attn_alloc_i32((size_t)sh.B * sh.M * sh.G * p.n);
        cr_assert_eq(attn_oracle_nsa_compress(&sh, &p, k, lin ? wk : NULL, lin ? pos : NULL, kc), ATTN_OK);
        cr_assert_eq(attn_oracle_nsa_compress(&sh, &p, v, lin ? wv : NULL, NULL, vc), ATTN_OK);
        for (size_t e = 0; e < ncmp; ++e) kcf[e] = (float)kc[e], vcf[e] = (float)vc[e];
        cr_assert_eq(attn_oracle_nsa_cmp_attention(&sh, &p, q, kcf, vcf, o_c, lse), ATTN_OK);
        cr_assert_eq(attn_oracle_nsa_scores(&sh, &p, q, kcf, lse, sc), ATTN_OK);
        cr_assert_eq(attn_oracle_nsa_topn(&sh, &p, sc, lists), ATTN_OK);
        attn_oracle_opts sel = attn_oracle_dense(&sh), win = attn_oracle_dense(&sh);
        sel.block_indices = lists, sel.num_blocks = p.n, sel.block_size = p.l_sel;
        win.window = p.w;
        cr_assert_eq(attn_oracle_forward(&sel, q, k, v, o_s, NULL, NULL), ATTN_OK);
        cr_assert_eq(attn_oracle_forward(&win, q, k, v, o_w, NULL, NULL), ATTN_OK);
        /* the forward, gates NULL (every gate 1) */
        double *o = attn_alloc_f64(nq);
        attn_oracle_nsa_in in = {sh, p, q, k, v, wk, wv, pos, NULL, NULL, NULL, NULL, 0};
        attn_oracle_nsa_out out = {o, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
        cr_assert_eq(attn_oracle_nsa_forward(&in, &out), ATTN_OK, "%s", attn_error_detail());
        for (size_t e = 0; e < nq; ++e)
            cr_assert(fabs(o[e] - (o_c[e] + o_s[e] + o_w[e])) < 1e-12, "%s mode, element %zu: the forward %.15g, the sum "
                      "of the branches %.15g", lin ? "linear" : "mean", e, o[e], o_c[e] + o_s[e] + o_w[e]);
        /* cmp_bf16: the compressed tokens come out as bf16 values */
        in.cmp_bf16 = 1, out.k_cmp = kc;
        cr_assert_eq(attn_oracle_nsa_forward(&in, &out), ATTN_OK);
        for (size_t e = 0; e < ncmp; ++e)
            cr_assert((double)attn_bf16_to_f32(attn_f32_to_bf16((float)kc[e])) == kc[e], "cmp_bf16: k_cmp[%zu] = %.9g is "
                      "not a bf16 value", e, kc[e]);
        free(q), free(k), free(v), free(wk), free(wv), free(pos), free(kc), free(vc), free(o_c), free(o_s), free(o_w);
        free(lse), free(sc), free(kcf), free(vcf), free(lists), free(o);
    }
}
