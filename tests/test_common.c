/*
 * Tests of the harness itself: the oracle on cases computed by hand and on properties that must
 * hold for any input, bf16 rounding, the comparison's diagnostics and the speed score.
 * If the oracle were wrong, every lesson's grade would be wrong, so it is tested first.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attn.h"
#include "check.h"
#include "oracle.h"

#define NEAR(got, want, what) \
    cr_assert(fabs((double)(got) - (double)(want)) < 1e-12, "%s: got %.15g, expected %.15g", what, (double)(got), (double)(want))

/* q = 1, k = (0, ln 3), scale 1: scores (0, ln 3), P = (1/4, 3/4), v = (4, 8) -> o = 7, lse = ln 4. */
Test(oracle, two_keys_by_hand)
{
    attn_shape sh = attn_make_shape(1, 1, 2, 1, 1, 1, 0);
    sh.scale = 1.0f;
    const float q[1] = {1.0f}, k[2] = {0.0f, (float)log(3.0)}, v[2] = {4.0f, 8.0f};
    double o[1], lse[1], p[2];
    attn_oracle_opts opts = attn_oracle_dense(&sh);
    cr_assert_eq(attn_oracle_forward(&opts, q, k, v, o, lse, p), ATTN_OK);
    /* k[1] is ln 3 rounded to float: recompute the exact expectation from it */
    const double e = exp((double)k[1]);
    NEAR(p[0], 1.0 / (1.0 + e), "p[0]");
    NEAR(p[1], e / (1.0 + e), "p[1]");
    NEAR(o[0], (4.0 + 8.0 * e) / (1.0 + e), "o");
    NEAR(lse[0], log(1.0 + e), "lse");
}

/* The same keys, causal, M = N = 2: query 0 (t = 0) sees only key 0. */
Test(oracle, causal_by_hand)
{
    attn_shape sh = attn_make_shape(1, 2, 2, 1, 1, 1, 1);
    sh.scale = 1.0f;
    const float q[2] = {1.0f, 1.0f}, k[2] = {0.0f, (float)log(3.0)}, v[2] = {4.0f, 8.0f};
    double o[2], lse[2];
    attn_oracle_opts opts = attn_oracle_dense(&sh);
    cr_assert_eq(attn_oracle_forward(&opts, q, k, v, o, lse, NULL), ATTN_OK);
    const double e = exp((double)k[1]);
    NEAR(o[0], 4.0, "o[t=0]");
    NEAR(lse[0], 0.0, "lse[t=0]");
    NEAR(o[1], (4.0 + 8.0 * e) / (1.0 + e), "o[t=1]");
    /* M = 1 < N = 2: the single query is the LAST position (t = 1) and sees both keys */
    sh.M = 1;
    opts = attn_oracle_dense(&sh);
    cr_assert_eq(attn_oracle_forward(&opts, q, k, v, o, lse, NULL), ATTN_OK);
    NEAR(o[0], (4.0 + 8.0 * e) / (1.0 + e), "o[M=1, t=1]");
}

/* H = 4 query heads, G = 2 kv heads, one key: o[h] = v[h / 2]. */
Test(oracle, gqa_head_mapping)
{
    attn_shape sh = attn_make_shape(1, 1, 1, 4, 2, 1, 0);
    const float q[4] = {1, 2, 3, 4}, k[2] = {1, 1}, v[2] = {10.0f, 20.0f};
    double o[4];
    attn_oracle_opts opts = attn_oracle_dense(&sh);
    cr_assert_eq(attn_oracle_forward(&opts, q, k, v, o, NULL, NULL), ATTN_OK);
    NEAR(o[0], 10.0, "o[h=0]");
    NEAR(o[1], 10.0, "o[h=1]");
    NEAR(o[2], 20.0, "o[h=2]");
    NEAR(o[3], 20.0, "o[h=3]");
}

/* q = 0: every visible key gets the same weight, so o is the mean of the visible values and
 * lse = log(number visible). Window w = 2: query t sees keys t-1 and t. */
Test(oracle, window_by_hand)
{
    attn_shape sh = attn_make_shape(1, 4, 4, 1, 1, 1, 1);
    const float q[4] = {0}, k[4] = {1, 2, 3, 4}, v[4] = {1, 2, 3, 4};
    double o[4], lse[4];
    attn_oracle_opts opts = attn_oracle_dense(&sh);
    opts.window = 2;
    cr_assert_eq(attn_oracle_forward(&opts, q, k, v, o, lse, NULL), ATTN_OK);
    const double want[4] = {1.0, 1.5, 2.5, 3.5};
    for (int t = 0; t < 4; ++t) {
        NEAR(o[t], want[t], "o");
        NEAR(lse[t], log(t == 0 ? 1.0 : 2.0), "lse");
    }
}

/* Block list: blocks of 2 keys, query 7 (t = 7) lists blocks {0, 2, -1}: keys 0, 1, 4, 5. */
Test(oracle, block_list_by_hand)
{
    attn_shape sh = attn_make_shape(1, 1, 8, 1, 1, 1, 1);
    float q[1] = {0}, k[8], v[8];
    for (int s = 0; s < 8; ++s) k[s] = 1.0f, v[s] = (float)s;
    const int32_t blocks[3] = {0, 2, -1};
    double o[1], p[8];
    attn_oracle_opts opts = attn_oracle_dense(&sh);
    opts.block_indices = blocks, opts.num_blocks = 3, opts.block_size = 2;
    cr_assert_eq(attn_oracle_forward(&opts, q, k, v, o, NULL, p), ATTN_OK);
    NEAR(o[0], (0 + 1 + 4 + 5) / 4.0, "o");
    for (int s = 0; s < 8; ++s) NEAR(p[s], (s < 2 || s == 4 || s == 5) ? 0.25 : 0.0, "p");
}

/* Key weights (lesson 06): q = 0, so every score is 0 and P is the normalised weights. Weights
 * (1, 0, 2, 1) over v = (0, 1, 2, 3): P = (1/4, 0, 1/2, 1/4), o = 7/4, lse = ln 4; weight 0 hides key 1. */
Test(oracle, key_weights_by_hand)
{
    attn_shape sh = attn_make_shape(1, 1, 4, 2, 2, 1, 0);
    const float q[2] = {0, 0}, k[8] = {1, 1, 1, 1, 1, 1, 1, 1}, v[8] = {0, 5, 1, 5, 2, 5, 3, 5};
    const float w[8] = {1, 1, 0, 1, 2, 1, 1, 1}; /* [N, G]: kv head 0 gets (1, 0, 2, 1), head 1 all ones */
    double o[2], lse[2], p[8];
    attn_oracle_opts opts = attn_oracle_dense(&sh);
    opts.key_weights = w;
    cr_assert_eq(attn_oracle_forward(&opts, q, k, v, o, lse, p), ATTN_OK);
    NEAR(p[0], 0.25, "p[h=0, s=0]");
    NEAR(p[1], 0.0, "p[h=0, s=1] (weight 0)");
    NEAR(p[2], 0.5, "p[h=0, s=2]");
    NEAR(p[3], 0.25, "p[h=0, s=3]");
    NEAR(o[0], 1.75, "o[h=0]");
    NEAR(lse[0], log(4.0), "lse[h=0]");
    NEAR(o[1], 5.0, "o[h=1]");
    NEAR(lse[1], log(4.0), "lse[h=1]");
    cr_assert(!attn_oracle_visible(&opts, 0, 0, 0, 1), "a key of weight 0 must be invisible");
    cr_assert(attn_oracle_visible(&opts, 0, 1, 0, 1), "kv head 1's key 1 has weight 1");
}

static int even_keys_only(void *ctx, int b, int h, int i, long t, long s)
{
    (void)ctx, (void)b, (void)h, (void)i, (void)t;
    return s % 2 == 0;
}
static int nothing_visible(void *ctx, int b, int h, int i, long t, long s)
{
    (void)ctx, (void)b, (void)h, (void)i, (void)t, (void)s;
    return 0;
}

Test(oracle, callback_mask_gates_and_empty_rows)
{
    attn_shape sh = attn_make_shape(1, 1, 4, 2, 1, 1, 0);
    const float q[2] = {0, 0}, k[4] = {1, 1, 1, 1}, v[4] = {1, 2, 3, 4}, gates[2] = {0.5f, 1.0f};
    double o[2], lse[2];
    attn_oracle_opts opts = attn_oracle_dense(&sh);
    opts.visible = even_keys_only;
    opts.gates = gates;
    cr_assert_eq(attn_oracle_forward(&opts, q, k, v, o, lse, NULL), ATTN_OK);
    NEAR(o[0], 0.5 * 2.0, "gated o[h=0]"); /* mean of v0, v2 = 2, gate 0.5 */
    NEAR(o[1], 2.0, "o[h=1]");
    opts.visible = nothing_visible;
    cr_assert_eq(attn_oracle_forward(&opts, q, k, v, o, lse, NULL), ATTN_OK);
    NEAR(o[0], 0.0, "empty row o");
    cr_assert(lse[0] == -INFINITY, "empty row: lse = %g, expected -inf", lse[0]);
}

/* Properties on random inputs: rows of P sum to 1, P is 0 on invisible keys, lse = log sum exp
 * of the scores, and o = P V. */
Test(oracle, properties_on_random_inputs)
{
    attn_rng rng;
    attn_rng_seed(&rng, attn_test_seed());
    attn_shape sh = attn_make_shape(2, 5, 9, 4, 2, 8, 1);
    const size_t nq = attn_q_elems(&sh), nkv = attn_kv_elems(&sh), np = (size_t)2 * 4 * 5 * 9;
    float *q = attn_alloc_f32(nq), *k = attn_alloc_f32(nkv), *v = attn_alloc_f32(nkv);
    double *o = attn_alloc_f64(nq), *lse = attn_alloc_f64(attn_lse_elems(&sh)), *p = attn_alloc_f64(np),
           *s = attn_alloc_f64(np);
    attn_fill_random(q, nq, 8, 2.0f, &rng);
    attn_fill_random(k, nkv, 8, 2.0f, &rng);
    attn_fill_random(v, nkv, 8, 1.0f, &rng);
    attn_oracle_opts opts = attn_oracle_dense(&sh);
    opts.window = 3;
    cr_assert_eq(attn_oracle_forward(&opts, q, k, v, o, lse, p), ATTN_OK);
    cr_assert_eq(attn_oracle_scores(&opts, q, k, s), ATTN_OK);
    for (int b = 0; b < 2; ++b)
        for (int h = 0; h < 4; ++h)
            for (int i = 0; i < 5; ++i) {
                const size_t row = (((size_t)b * 4 + h) * 5 + i) * 9;
                double sum = 0.0, sum_exp = 0.0;
                for (int j = 0; j < 9; ++j) {
                    const int vis = attn_oracle_visible(&opts, b, h, i, j);
                    cr_assert(vis || p[row + j] == 0.0, "masked key %d has weight %g", j, p[row + j]);
                    cr_assert(vis == (s[row + j] > -INFINITY), "score/visibility disagree at key %d", j);
                    sum += p[row + j];
                    if (vis) sum_exp += exp(s[row + j]);
                }
                cr_assert(fabs(sum - 1.0) < 1e-12, "row b=%d h=%d i=%d sums to %.15g", b, h, i, sum);
                const double l = lse[((size_t)b * 4 + h) * 5 + i];
                cr_assert(fabs(l - log(sum_exp)) < 1e-12, "lse %.15g != log sum exp %.15g", l, log(sum_exp));
                for (int d = 0; d < 8; ++d) {
                    double want = 0.0;
                    for (int j = 0; j < 9; ++j) want += p[row + j] * v[(((size_t)b * 9 + j) * 2 + h / 2) * 8 + d];
                    NEAR(o[(((size_t)b * 5 + i) * 4 + h) * 8 + d], want, "o = P V");
                }
            }
    free(q), free(k), free(v), free(o), free(lse), free(p), free(s);
}

Test(oracle, rejects_bad_options)
{
    attn_shape sh = attn_make_shape(1, 2, 2, 3, 2, 4, 0);
    float x[64] = {0};
    double o[64];
    attn_oracle_opts opts = attn_oracle_dense(&sh);
    cr_assert_eq(attn_oracle_forward(&opts, x, x, x, o, NULL, NULL), ATTN_ERR_HEADS_NOT_DIVISIBLE);
    sh.H = 2;
    opts = attn_oracle_dense(&sh);
    opts.window = -1;
    cr_assert_eq(attn_oracle_forward(&opts, x, x, x, o, NULL, NULL), ATTN_ERR_BAD_ARGUMENT);
    opts.window = 0;
    cr_assert_eq(attn_oracle_forward(&opts, NULL, x, x, o, NULL, NULL), ATTN_ERR_NULL_POINTER);
}

/* ---------------------------------------------------------------- bf16, errors, scoring */

Test(harness, bf16_round_to_nearest_even)
{
    /* 1 + 2^-8 lies exactly between bf16 1.0 and 1.0078125: ties go to the even mantissa (1.0) */
    cr_assert_eq(attn_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);
    /* 1 + 3*2^-8 lies between 1.0078125 (odd) and 1.015625 (even): rounds up */
    cr_assert_eq(attn_f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);
    cr_assert_eq(attn_f32_to_bf16(1.0f + 0x1p-8f + 0x1p-16f), 0x3f81); /* above the tie: up */
    cr_assert_eq(attn_f32_to_bf16(-2.0f), 0xc000);
    cr_assert_eq(attn_f32_to_bf16(INFINITY), 0x7f80);
    cr_assert_eq(attn_f32_to_bf16(3.4028235e38f), 0x7f80, "the largest float rounds to inf in bf16");
    cr_assert(isnan(attn_bf16_to_f32(attn_f32_to_bf16(NAN))), "NaN must stay NaN");
    for (int i = 0; i < 65536; ++i) { /* every finite bf16 converts to float and back unchanged */
        const uint16_t x = (uint16_t)i;
        if ((x & 0x7f80) == 0x7f80 && (x & 0x7f)) continue;
        cr_assert_eq(attn_f32_to_bf16(attn_bf16_to_f32(x)), x, "round trip of 0x%04x", i);
    }
}

Test(harness, every_status_has_a_message)
{
    for (int st = 0; st < ATTN_ERR_COUNT; ++st) {
        cr_assert(attn_strerror(st) && strlen(attn_strerror(st)) > 0, "status %d has no message", st);
        cr_assert(strncmp(attn_status_name(st), "ATTN_", 5) == 0, "status %d has no name", st);
    }
    cr_assert_str_eq(attn_strerror(ATTN_ERR_COUNT + 5), "unknown status code");
    cr_assert_eq(attn_fail(ATTN_ERR_M_GT_N, "M=%d", 9), ATTN_ERR_M_GT_N);
    cr_assert_str_eq(attn_error_detail(), "M=9");
}

Test(harness, compare_reports_unwritten_and_hints)
{
    attn_shape sh = attn_make_shape(1, 4, 4, 1, 1, 2, 1);
    double ref[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    float got[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    attn_cmp r;
    cr_assert(attn_compare_f32(&r, "o", ATTN_LAYOUT_BMHD, &sh, 0, got, ref, ATTN_TOL_F32), "%s", r.message);
    attn_poison(&got[5], sizeof(float)); /* b=0 i=2 h=0 d=1 never written */
    cr_assert(!attn_compare_f32(&r, "o", ATTN_LAYOUT_BMHD, &sh, 0, got, ref, ATTN_TOL_F32));
    cr_assert_eq(r.n_unwritten, 1);
    cr_assert(r.coord[0] == 0 && r.coord[1] == 2 && r.coord[2] == 0 && r.coord[3] == 1, "coordinates %d %d %d %d",
              r.coord[0], r.coord[1], r.coord[2], r.coord[3]);
    cr_assert(strstr(r.message, "never written") && strstr(r.message, "i=2"), "message: %s", r.message);
    /* wrong early rows only, the last row right: the causal hint */
    got[5] = 6;
    got[0] = 1.5f, got[2] = 2.5f, got[4] = 4.5f; /* rows t = 0, 1, 2 wrong */
    cr_assert(!attn_compare_f32(&r, "o", ATTN_LAYOUT_BMHD, &sh, 0, got, ref, ATTN_TOL_F32));
    cr_assert(strstr(r.message, "causal mask"), "message: %s", r.message);
    /* one element of many slightly off: rounding, not a logic error */
    attn_shape big = attn_make_shape(1, 8, 8, 2, 2, 8, 0);
    double ref_big[128];
    float got_big[128];
    for (int e = 0; e < 128; ++e) ref_big[e] = got_big[e] = (float)e;
    got_big[77] += 0.01f;
    cr_assert(!attn_compare_f32(&r, "o", ATTN_LAYOUT_BMHD, &big, 0, got_big, ref_big, ATTN_TOL_F32));
    cr_assert(strstr(r.message, "rounding"), "message: %s", r.message);
    /* -inf must be matched exactly */
    double ref_inf[1] = {-INFINITY};
    float got_inf[1] = {-1e30f};
    attn_shape one = attn_make_shape(1, 1, 1, 1, 1, 1, 0);
    cr_assert(!attn_compare_f32(&r, "lse", ATTN_LAYOUT_BHM, &one, 0, got_inf, ref_inf, ATTN_TOL_F32));
}

Test(harness, speed_score_partial_credit)
{
    cr_assert_float_eq(attn_speed_score(10.0, 5.0), 1.0, 1e-12);
    cr_assert_float_eq(attn_speed_score(5.0, 5.0), 1.0, 1e-12);
    cr_assert_float_eq(attn_speed_score(3.75, 5.0), 0.5, 1e-12);
    cr_assert_float_eq(attn_speed_score(2.5, 5.0), 0.0, 1e-12);
    cr_assert_float_eq(attn_speed_score(1.0, 5.0), 0.0, 1e-12);
}

Test(harness, visible_pairs_and_flops)
{
    attn_shape sh = attn_make_shape(2, 3, 5, 4, 2, 8, 1); /* t = 2, 3, 4: 3 + 4 + 5 = 12 pairs per head */
    cr_assert_float_eq(attn_visible_pairs(&sh), 12.0 * 2 * 4, 1e-9);
    sh.causal = 0;
    cr_assert_float_eq(attn_flops(&sh), 4.0 * 8 * 15 * 2 * 4, 1e-9);
}

/* M = N = 6, query blocks of 4, key blocks of 2, causal, B = 1, H = 2, G = 1.
 * Query block 0 (t = 0..3) lists key blocks 0 and 1: 1 + 2 + 3 + 4 = 10 pairs (keys 0..3).
 * Query block 1 (t = 4, 5) lists key block 2 (keys 4, 5): 1 + 2 = 3 pairs. 13 per head, 26 in all. */
Test(harness, block_list_pairs)
{
    const attn_shape sh = attn_make_shape(1, 6, 6, 2, 1, 8, 1);
    const int32_t lists[2 * 3] = {0, 1, -1, 2, -1, -1};
    cr_assert_float_eq(attn_block_list_pairs(&sh, lists, 3, 4, 2), 26.0, 1e-9);
    attn_shape full = sh;
    full.causal = 0; /* every listed key: 4 queries x 4 keys + 2 queries x 2 keys = 20 per head */
    cr_assert_float_eq(attn_block_list_pairs(&full, lists, 3, 4, 2), 40.0, 1e-9);
    const int32_t all[2 * 3] = {0, 1, 2, 0, 1, 2}; /* every block: the dense count */
    cr_assert_float_eq(attn_block_list_pairs(&sh, all, 3, 4, 2), attn_visible_pairs(&sh), 1e-9);
}
