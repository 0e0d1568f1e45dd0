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
#include "timing.h"
#include "oracle_nsa.h"
#include "random.h"

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

/* ---------------------------------------------------------------- hints that name the mistake
 *
 * Each known mistake's output is built here independently of check.c (the oracle under a rule
 * written out below, or by hand), fed to the comparison, and the message must name the mistake and
 * must not point elsewhere. */

typedef enum { MISTAKE_QUERY_AT_I, MISTAKE_OWN_KEY_HIDDEN, MISTAKE_NEXT_KEY, MISTAKE_WINDOW_PLUS_ONE } mask_mistake;

typedef struct {
    mask_mistake what;
    int window; /* 0: causal only */
} mistake_rule;

static int mistaken_visible(void *ctx, int b, int h, int i, long t, long s)
{
    const mistake_rule *m = ctx;
    (void)b, (void)h;
    const long pos = m->what == MISTAKE_QUERY_AT_I ? (long)i : t;
    const long last = m->what == MISTAKE_OWN_KEY_HIDDEN ? pos - 1 : m->what == MISTAKE_NEXT_KEY ? pos + 1 : pos;
    const long first = m->window <= 0 ? 0 : pos - m->window + 1 - (m->what == MISTAKE_WINDOW_PLUS_ONE);
    return s <= last && s >= first;
}

/* Random inputs, the true reference under `opts`, and room for a wrong output. */
typedef struct {
    attn_oracle_opts opts;
    float *q, *k, *v, *o, *lse;
    double *o_ref, *lse_ref, *o_wrong, *lse_wrong;
} hint_case;

static void hint_case_init(hint_case *c, const attn_oracle_opts *opts, uint64_t seed)
{
    memset(c, 0, sizeof *c);
    c->opts = *opts;
    const attn_shape *sh = &opts->shape;
    const size_t nq = attn_q_elems(sh), nkv = attn_kv_elems(sh), nl = attn_lse_elems(sh);
    attn_rng rng;
    attn_rng_seed(&rng, seed);
    c->q = attn_alloc_f32(nq), c->k = attn_alloc_f32(nkv), c->v = attn_alloc_f32(nkv);
    c->o = attn_alloc_f32(nq), c->lse = attn_alloc_f32(nl);
    c->o_ref = attn_alloc_f64(nq), c->lse_ref = attn_alloc_f64(nl);
    c->o_wrong = attn_alloc_f64(nq), c->lse_wrong = attn_alloc_f64(nl);
    cr_assert(c->q && c->k && c->v && c->o && c->lse && c->o_ref && c->lse_ref && c->o_wrong && c->lse_wrong);
    attn_fill_random(c->q, nq, (size_t)sh->D, 1.0f, &rng);
    attn_fill_random(c->k, nkv, (size_t)sh->D, 1.0f, &rng);
    attn_fill_random(c->v, nkv, (size_t)sh->D, 1.0f, &rng);
    cr_assert_eq(attn_oracle_forward(&c->opts, c->q, c->k, c->v, c->o_ref, c->lse_ref, NULL), ATTN_OK);
}

/* The learner's float o and lse from the wrong reference; a row that sees no key gets what a kernel
 * without the empty-row check writes: exp(-inf - (-inf)) = NaN. */
static void hint_case_wrong_to_float(hint_case *c, int nan_for_empty_rows)
{
    const attn_shape *sh = &c->opts.shape;
    for (int b = 0; b < sh->B; ++b)
        for (int i = 0; i < sh->M; ++i)
            for (int h = 0; h < sh->H; ++h) {
                const size_t l = ((size_t)b * sh->H + h) * sh->M + i, row = (((size_t)b * sh->M + i) * sh->H + h);
                const int empty = c->lse_wrong[l] == -INFINITY && nan_for_empty_rows;
                c->lse[l] = empty ? NAN : (float)c->lse_wrong[l];
                for (int d = 0; d < sh->D; ++d) c->o[row * sh->D + d] = empty ? NAN : (float)c->o_wrong[row * sh->D + d];
            }
}

/* o and lse under a wrong mask rule (the true causal and window rules switched off). */
static void hint_case_mask_mistake(hint_case *c, mistake_rule *m, int nan_for_empty_rows)
{
    attn_oracle_opts wrong = c->opts;
    wrong.shape.causal = 0, wrong.window = 0;
    wrong.visible = mistaken_visible, wrong.visible_ctx = m;
    cr_assert_eq(attn_oracle_forward(&wrong, c->q, c->k, c->v, c->o_wrong, c->lse_wrong, NULL), ATTN_OK);
    hint_case_wrong_to_float(c, nan_for_empty_rows);
}

static void hint_case_free(hint_case *c)
{
    free(c->q), free(c->k), free(c->v), free(c->o), free(c->lse);
    free(c->o_ref), free(c->lse_ref), free(c->o_wrong), free(c->lse_wrong);
}

static void expect_hint(const attn_cmp *r, attn_wrong_rule rule, const char *want, const char *not1, const char *not2)
{
    cr_assert(!r->ok, "a wrong output passed: %s", r->message);
    cr_assert_eq(r->wrong, rule, "matched rule %d, expected %d: %s", r->wrong, rule, r->message);
    cr_assert(strstr(r->message, want), "no \"%s\" in: %s", want, r->message);
    cr_assert(!not1 || !strstr(r->message, not1), "misleading \"%s\" in: %s", not1, r->message);
    cr_assert(!not2 || !strstr(r->message, not2), "misleading \"%s\" in: %s", not2, r->message);
}

/* Lesson 01's classic with M < N: the mask placed at t = i. Every row loses keys, so the failure
 * looks global; it must not read as an overflow or a wrong scale. */
Test(hints, query_at_i_is_named)
{
    const attn_shape shapes[] = {attn_make_shape(1, 5, 9, 2, 1, 16, 1), attn_make_shape(2, 4, 11, 4, 2, 8, 1),
                                 attn_make_shape(1, 1, 6, 2, 2, 8, 1)};
    for (int s = 0; s < 3; ++s) {
        const attn_oracle_opts opts = attn_oracle_dense(&shapes[s]);
        hint_case c;
        hint_case_init(&c, &opts, attn_test_seed() + s);
        mistake_rule m = {MISTAKE_QUERY_AT_I, 0};
        hint_case_mask_mistake(&c, &m, 1);
        attn_cmp r;
        attn_cmp_source src = {&c.opts, c.q, c.k, c.v, ATTN_QTY_DEFAULT};
        attn_compare_f32_src(&r, "o", ATTN_LAYOUT_BMHD, &src, c.o, c.o_ref, ATTN_TOL_F32);
        expect_hint(&r, ATTN_WRONG_QUERY_AT_I, "t = N - M + i", "exp overflows", "softmax scale");
        attn_compare_f32_src(&r, "lse", ATTN_LAYOUT_BHM, &src, c.lse, c.lse_ref, ATTN_TOL_F32);
        expect_hint(&r, ATTN_WRONG_QUERY_AT_I, "query i at position i", "exp overflows", "softmax scale");
        /* without the inputs, the pattern alone must still point at the offset first */
        attn_compare_f32(&r, "o", ATTN_LAYOUT_BMHD, &c.opts.shape, 0, c.o, c.o_ref, ATTN_TOL_F32);
        expect_hint(&r, ATTN_WRONG_NONE, "N - M + i", "exp overflows", "softmax scale");
        hint_case_free(&c);
    }
}

/* The same mistake in lesson 01's mask step: -inf on keys i < s <= N - M + i is a mask, not an overflow. */
Test(hints, query_at_i_in_masked_scores)
{
    const attn_shape sh = attn_make_shape(2, 5, 9, 4, 2, 16, 1);
    const attn_oracle_opts opts = attn_oracle_dense(&sh);
    hint_case c;
    hint_case_init(&c, &opts, attn_test_seed());
    const size_t n = (size_t)2 * 4 * 5 * 9;
    double *ref = attn_alloc_f64(n), *wrong64 = attn_alloc_f64(n);
    float *got = attn_alloc_f32(n);
    mistake_rule m = {MISTAKE_QUERY_AT_I, 0};
    attn_oracle_opts wrong = opts;
    wrong.shape.causal = 0, wrong.visible = mistaken_visible, wrong.visible_ctx = &m;
    cr_assert_eq(attn_oracle_scores(&opts, c.q, c.k, ref), ATTN_OK);
    cr_assert_eq(attn_oracle_scores(&wrong, c.q, c.k, wrong64), ATTN_OK);
    for (size_t e = 0; e < n; ++e) got[e] = (float)wrong64[e];
    attn_cmp r;
    attn_cmp_source src = {&c.opts, c.q, c.k, NULL, ATTN_QTY_SCORES};
    attn_compare_f32_src(&r, "masked scores", ATTN_LAYOUT_BHMN, &src, got, ref, ATTN_TOL_F32);
    expect_hint(&r, ATTN_WRONG_QUERY_AT_I, "t = N - M + i", "exp overflows", "softmax scale");
    attn_compare_f32(&r, "masked scores", ATTN_LAYOUT_BHMN, &sh, 0, got, ref, ATTN_TOL_F32);
    expect_hint(&r, ATTN_WRONG_NONE, "not i", "exp overflows", "softmax scale");
    free(ref), free(wrong64), free(got);
    hint_case_free(&c);
}

Test(hints, causal_off_by_one_both_ways)
{
    const attn_shape sh = attn_make_shape(1, 7, 7, 2, 2, 16, 1);
    const attn_oracle_opts opts = attn_oracle_dense(&sh);
    hint_case c;
    hint_case_init(&c, &opts, attn_test_seed());
    attn_cmp_source src = {&c.opts, c.q, c.k, c.v, ATTN_QTY_DEFAULT};
    attn_cmp r;
    /* s < t: query 0 sees nothing and, without the empty-row check, gives NaN */
    mistake_rule m = {MISTAKE_OWN_KEY_HIDDEN, 0};
    hint_case_mask_mistake(&c, &m, 1);
    attn_compare_f32_src(&r, "o", ATTN_LAYOUT_BMHD, &src, c.o, c.o_ref, ATTN_TOL_F32);
    expect_hint(&r, ATTN_WRONG_OWN_KEY_HIDDEN, "s < t", "exp overflows", NULL);
    attn_compare_f32(&r, "o", ATTN_LAYOUT_BMHD, &sh, 0, c.o, c.o_ref, ATTN_TOL_F32);
    expect_hint(&r, ATTN_WRONG_NONE, "no key", "exp overflows", NULL);
    m.what = MISTAKE_NEXT_KEY;
    hint_case_mask_mistake(&c, &m, 1);
    attn_compare_f32_src(&r, "o", ATTN_LAYOUT_BMHD, &src, c.o, c.o_ref, ATTN_TOL_F32);
    expect_hint(&r, ATTN_WRONG_NEXT_KEY, "s <= t + 1", NULL, NULL);
    attn_compare_f32_src(&r, "lse", ATTN_LAYOUT_BHM, &src, c.lse, c.lse_ref, ATTN_TOL_F32);
    expect_hint(&r, ATTN_WRONG_NEXT_KEY, "s <= t + 1", NULL, NULL);
    hint_case_free(&c);
}

Test(hints, window_and_missing_or_extra_masks)
{
    const attn_shape sh = attn_make_shape(1, 6, 10, 2, 2, 8, 1);
    attn_oracle_opts opts = attn_oracle_dense(&sh);
    opts.window = 3;
    hint_case c;
    hint_case_init(&c, &opts, attn_test_seed());
    attn_cmp_source src = {&c.opts, c.q, c.k, c.v, ATTN_QTY_O};
    attn_cmp r;
    mistake_rule m = {MISTAKE_WINDOW_PLUS_ONE, 3};
    hint_case_mask_mistake(&c, &m, 1);
    attn_compare_f32_src(&r, "o", ATTN_LAYOUT_BMHD, &src, c.o, c.o_ref, ATTN_TOL_F32);
    expect_hint(&r, ATTN_WRONG_WINDOW_PLUS_ONE, "w + 1", NULL, NULL);
    m.what = MISTAKE_QUERY_AT_I;
    hint_case_mask_mistake(&c, &m, 1);
    attn_compare_f32_src(&r, "o", ATTN_LAYOUT_BMHD, &src, c.o, c.o_ref, ATTN_TOL_F32);
    expect_hint(&r, ATTN_WRONG_QUERY_AT_I, "s >= t - w + 1", NULL, NULL);
    /* the window forgotten: plain causal attention */
    attn_oracle_opts causal_only = opts;
    causal_only.window = 0;
    cr_assert_eq(attn_oracle_forward(&causal_only, c.q, c.k, c.v, c.o_wrong, c.lse_wrong, NULL), ATTN_OK);
    hint_case_wrong_to_float(&c, 0);
    attn_compare_f32_src(&r, "o", ATTN_LAYOUT_BMHD, &src, c.o, c.o_ref, ATTN_TOL_F32);
    expect_hint(&r, ATTN_WRONG_NO_WINDOW, "no window", NULL, NULL);
    hint_case_free(&c);

    /* the causal mask forgotten, and a causal mask where none was asked for */
    attn_oracle_opts causal = attn_oracle_dense(&sh), dense = causal;
    dense.shape.causal = 0;
    hint_case_init(&c, &causal, attn_test_seed() + 1);
    cr_assert_eq(attn_oracle_forward(&dense, c.q, c.k, c.v, c.o_wrong, c.lse_wrong, NULL), ATTN_OK);
    hint_case_wrong_to_float(&c, 0);
    src = (attn_cmp_source){&c.opts, c.q, c.k, c.v, ATTN_QTY_DEFAULT};
    attn_compare_f32_src(&r, "o", ATTN_LAYOUT_BMHD, &src, c.o, c.o_ref, ATTN_TOL_F32);
    expect_hint(&r, ATTN_WRONG_NO_CAUSAL, "without the causal mask", NULL, NULL);
    hint_case_free(&c);
    hint_case_init(&c, &dense, attn_test_seed() + 2);
    cr_assert_eq(attn_oracle_forward(&causal, c.q, c.k, c.v, c.o_wrong, c.lse_wrong, NULL), ATTN_OK);
    hint_case_wrong_to_float(&c, 0);
    src = (attn_cmp_source){&c.opts, c.q, c.k, c.v, ATTN_QTY_DEFAULT};
    attn_compare_f32_src(&r, "lse", ATTN_LAYOUT_BHM, &src, c.lse, c.lse_ref, ATTN_TOL_F32);
    expect_hint(&r, ATTN_WRONG_MASK_NOT_ASKED, "NOT causal", NULL, NULL);
    hint_case_free(&c);
}

/* h % G built by hand: every query head gets its own copy of kv head h % G (G becomes H). */
static void gqa_modulo_output(const hint_case *c, double *o)
{
    const attn_shape *sh = &c->opts.shape;
    attn_shape wide = *sh;
    wide.G = sh->H;
    const size_t n = (size_t)sh->B * sh->N * sh->H * sh->D;
    float *k = attn_alloc_f32(n), *v = attn_alloc_f32(n);
    for (int b = 0; b < sh->B; ++b)
        for (int s = 0; s < sh->N; ++s)
            for (int h = 0; h < sh->H; ++h)
                for (int d = 0; d < sh->D; ++d) {
                    const size_t to = (((size_t)b * sh->N + s) * sh->H + h) * sh->D + d;
                    const size_t from = (((size_t)b * sh->N + s) * sh->G + h % sh->G) * sh->D + d;
                    k[to] = c->k[from], v[to] = c->v[from];
                }
    const attn_oracle_opts opts = attn_oracle_dense(&wide);
    cr_assert_eq(attn_oracle_forward(&opts, c->q, k, v, o, NULL, NULL), ATTN_OK);
    free(k), free(v);
}

Test(hints, gqa_modulo_in_f32_and_bf16)
{
    const attn_shape sh = attn_make_shape(2, 4, 6, 6, 2, 16, 0);
    const attn_oracle_opts opts = attn_oracle_dense(&sh);
    hint_case c;
    hint_case_init(&c, &opts, attn_test_seed());
    const size_t nq = attn_q_elems(&sh), nkv = attn_kv_elems(&sh);
    /* bf16 inputs, so that one set of inputs serves both comparisons */
    for (size_t e = 0; e < nq; ++e) c.q[e] = attn_bf16_to_f32(attn_f32_to_bf16(c.q[e]));
    for (size_t e = 0; e < nkv; ++e)
        c.k[e] = attn_bf16_to_f32(attn_f32_to_bf16(c.k[e])), c.v[e] = attn_bf16_to_f32(attn_f32_to_bf16(c.v[e]));
    cr_assert_eq(attn_oracle_forward(&c.opts, c.q, c.k, c.v, c.o_ref, c.lse_ref, NULL), ATTN_OK);
    gqa_modulo_output(&c, c.o_wrong);
    uint16_t *o16 = attn_alloc_bf16(nq);
    for (size_t e = 0; e < nq; ++e) c.o[e] = (float)c.o_wrong[e], o16[e] = attn_f32_to_bf16(c.o[e]);
    attn_cmp_source src = {&c.opts, c.q, c.k, c.v, ATTN_QTY_DEFAULT};
    attn_cmp r;
    attn_compare_f32_src(&r, "o", ATTN_LAYOUT_BMHD, &src, c.o, c.o_ref, ATTN_TOL_F32);
    expect_hint(&r, ATTN_WRONG_GQA_MODULO, "h / (H/G)", NULL, NULL);
    attn_compare_bf16_src(&r, "o", ATTN_LAYOUT_BMHD, &src, o16, c.o_ref, ATTN_TOL_BF16);
    expect_hint(&r, ATTN_WRONG_GQA_MODULO, "h % G", NULL, NULL);
    free(o16);
    hint_case_free(&c);
}

Test(hints, scale_mistakes)
{
    attn_shape sh = attn_make_shape(1, 5, 8, 2, 1, 16, 1);
    const float wrong_scales[2] = {1.0f, 1.0f / 16.0f};
    const attn_wrong_rule rules[2] = {ATTN_WRONG_SCALE_ONE, ATTN_WRONG_SCALE_1_OVER_D};
    for (int w = 0; w < 2; ++w) {
        const attn_oracle_opts opts = attn_oracle_dense(&sh);
        hint_case c;
        hint_case_init(&c, &opts, attn_test_seed() + w);
        attn_oracle_opts wrong = opts;
        wrong.shape.scale = wrong_scales[w];
        cr_assert_eq(attn_oracle_forward(&wrong, c.q, c.k, c.v, c.o_wrong, c.lse_wrong, NULL), ATTN_OK);
        hint_case_wrong_to_float(&c, 0);
        attn_cmp_source src = {&c.opts, c.q, c.k, c.v, ATTN_QTY_DEFAULT};
        attn_cmp r;
        attn_compare_f32_src(&r, "o", ATTN_LAYOUT_BMHD, &src, c.o, c.o_ref, ATTN_TOL_F32);
        expect_hint(&r, rules[w], "1/sqrt(D)", "exp overflows", "t = N - M + i");
        hint_case_free(&c);
    }
    /* the shape's own scale ignored */
    sh.scale = 0.5f;
    const attn_oracle_opts opts = attn_oracle_dense(&sh);
    hint_case c;
    hint_case_init(&c, &opts, attn_test_seed());
    attn_oracle_opts wrong = opts;
    wrong.shape.scale = 0.0f;
    cr_assert_eq(attn_oracle_forward(&wrong, c.q, c.k, c.v, c.o_wrong, c.lse_wrong, NULL), ATTN_OK);
    hint_case_wrong_to_float(&c, 0);
    attn_cmp_source src = {&c.opts, c.q, c.k, c.v, ATTN_QTY_DEFAULT};
    attn_cmp r;
    attn_compare_f32_src(&r, "lse", ATTN_LAYOUT_BHM, &src, c.lse, c.lse_ref, ATTN_TOL_F32);
    expect_hint(&r, ATTN_WRONG_SCALE_DEFAULT, "attn_softmax_scale", NULL, NULL);
    hint_case_free(&c);
}

/* NaN in every row (an overflow, no known rule) keeps the overflow hint; a passing comparison and a
 * shape above the size limit never touch the inputs. */
Test(hints, overflow_fallback_and_cost)
{
    const attn_shape sh = attn_make_shape(1, 5, 9, 2, 1, 16, 1);
    const attn_oracle_opts opts = attn_oracle_dense(&sh);
    hint_case c;
    hint_case_init(&c, &opts, attn_test_seed());
    const size_t nq = attn_q_elems(&sh);
    for (size_t e = 0; e < nq; ++e) c.o[e] = (e / sh.D) % 2 ? NAN : (float)c.o_ref[e];
    attn_cmp_source src = {&c.opts, c.q, c.k, c.v, ATTN_QTY_DEFAULT};
    attn_cmp r;
    attn_compare_f32_src(&r, "o", ATTN_LAYOUT_BMHD, &src, c.o, c.o_ref, ATTN_TOL_F32);
    expect_hint(&r, ATTN_WRONG_NONE, "exp overflows", NULL, NULL);
    /* unwritten elements come first, before any recomputation */
    for (size_t e = 0; e < nq; ++e) c.o[e] = (float)c.o_ref[e];
    attn_poison(c.o, sizeof(float) * sh.D);
    attn_compare_f32_src(&r, "o", ATTN_LAYOUT_BMHD, &src, c.o, c.o_ref, ATTN_TOL_F32);
    expect_hint(&r, ATTN_WRONG_NONE, "never written", NULL, NULL);
    /* passing: the inputs are not even looked at */
    for (size_t e = 0; e < nq; ++e) c.o[e] = (float)c.o_ref[e];
    attn_cmp_source no_inputs = {&c.opts, NULL, NULL, NULL, ATTN_QTY_DEFAULT};
    cr_assert(attn_compare_f32_src(&r, "o", ATTN_LAYOUT_BMHD, &no_inputs, c.o, c.o_ref, ATTN_TOL_F32), "%s",
              r.message);
    /* above the size limit the search gives up at once (these arrays are far too small to be read) */
    const attn_oracle_opts huge = attn_oracle_dense(&(attn_shape){4, 4096, 4096, 32, 8, 128, 0.0f, 1});
    attn_cmp_source big = {&huge, c.q, c.k, c.v, ATTN_QTY_DEFAULT};
    cr_assert_eq(attn_match_known_wrong(&big, ATTN_LAYOUT_BMHD, c.o, NULL, ATTN_TOL_F32), ATTN_WRONG_NONE);
    hint_case_free(&c);
}

/* A bare softmax matrix: rows and columns, no b/h/i; hints about the row max and the row sum. */
Test(hints, rows_layout)
{
    enum { R = 4, C = 5 };
    float x[R * C], y[R * C];
    double ref[R * C];
    for (int e = 0; e < R * C; ++e) x[e] = (float)(e % 7) * 0.3f;
    for (int j = 0; j < C; ++j) x[2 * C + j] = -INFINITY;
    attn_oracle_softmax_rows(x, R, C, ref, NULL);
    for (int e = 0; e < R * C; ++e) y[e] = (float)ref[e];
    attn_cmp r;
    cr_assert(attn_compare_rows_f32(&r, "softmax", R, C, y, ref, ATTN_TOL_F32), "%s", r.message);
    /* the all -inf row as NaN */
    for (int j = 0; j < C; ++j) y[2 * C + j] = NAN;
    cr_assert(!attn_compare_rows_f32(&r, "softmax", R, C, y, ref, ATTN_TOL_F32));
    cr_assert(strstr(r.message, "row 2, column 0") && strstr(r.message, "all -inf"), "message: %s", r.message);
    cr_assert(!strstr(r.message, "b=") && !strstr(r.message, "i=") && !strstr(r.message, "h="), "message: %s",
              r.message);
    /* an overflow in row 1 */
    for (int j = 0; j < C; ++j) y[2 * C + j] = 0.0f, y[1 * C + j] = NAN;
    cr_assert(!attn_compare_rows_f32(&r, "softmax", R, C, y, ref, ATTN_TOL_F32));
    cr_assert(strstr(r.message, "row 1,") && strstr(r.message, "subtract the row max"), "message: %s", r.message);
    /* a wrong normaliser: rows that do not sum to 1 */
    for (int e = 0; e < R * C; ++e) y[e] = (float)ref[e] * 0.8f;
    cr_assert(!attn_compare_rows_f32(&r, "softmax", R, C, y, ref, ATTN_TOL_F32));
    cr_assert(strstr(r.message, "do not sum to 1"), "message: %s", r.message);
    /* values off, sums right */
    for (int e = 0; e < R * C; ++e) y[e] = (float)ref[e];
    y[0] += 0.1f, y[1] -= 0.1f, y[C + 3] += 0.05f, y[C + 4] -= 0.05f;
    cr_assert(!attn_compare_rows_f32(&r, "softmax", R, C, y, ref, ATTN_TOL_F32));
    cr_assert(strstr(r.message, "sum to 1 but"), "message: %s", r.message);
}

Test(hints, singular_and_plural)
{
    const double ref[1] = {1.0};
    float got[1] = {1.0f};
    attn_cmp r;
    cr_assert(attn_compare_rows_f32(&r, "x", 1, 1, got, ref, ATTN_TOL_F32));
    cr_assert(strstr(r.message, "the 1 element is within"), "message: %s", r.message);
    got[0] = 2.0f;
    cr_assert(!attn_compare_rows_f32(&r, "x", 1, 1, got, ref, ATTN_TOL_F32));
    cr_assert(strstr(r.message, "1 of 1 element out") && !strstr(r.message, "1 elements"), "message: %s", r.message);
    const attn_shape sh = attn_make_shape(1, 2, 2, 1, 1, 1, 0);
    const double ref2[2] = {1.0, 2.0};
    float got2[2] = {1.0f, 2.0f};
    cr_assert(attn_compare_f32(&r, "o", ATTN_LAYOUT_BMHD, &sh, 0, got2, ref2, ATTN_TOL_F32));
    cr_assert(strstr(r.message, "all 2 elements are within"), "message: %s", r.message);
}

/* A source that does not describe the reference names nothing: here the reference is non-causal but
 * the source says causal, and the output is the source's rules with t = i, which the search would
 * otherwise report. */
Test(hints, source_must_reproduce_the_reference)
{
    const attn_shape sh = attn_make_shape(1, 4, 9, 2, 1, 8, 1);
    const attn_oracle_opts causal = attn_oracle_dense(&sh);
    attn_oracle_opts dense = causal;
    dense.shape.causal = 0;
    hint_case c;
    hint_case_init(&c, &dense, attn_test_seed());
    mistake_rule m = {MISTAKE_QUERY_AT_I, 0};
    hint_case_mask_mistake(&c, &m, 1);
    attn_cmp_source wrong_src = {&causal, c.q, c.k, c.v, ATTN_QTY_DEFAULT};
    cr_assert_eq(attn_match_known_wrong(&wrong_src, ATTN_LAYOUT_BMHD, c.o, NULL, ATTN_TOL_F32), ATTN_WRONG_QUERY_AT_I);
    attn_cmp r;
    attn_compare_f32_src(&r, "o", ATTN_LAYOUT_BMHD, &wrong_src, c.o, c.o_ref, ATTN_TOL_F32);
    cr_assert(!r.ok && r.wrong == ATTN_WRONG_NONE && !strstr(r.message, "position i"), "message: %s", r.message);
    hint_case_free(&c);
}

/* ---------------------------------------------------------------- each lesson's own rule
 *
 * A hint about which keys a query sees states the rule of the lesson whose output failed, not the
 * dense causal s <= t: compressed tokens (lesson 07), a window (lesson 05), a block list (lesson 09). */

static void expect_rule(const attn_cmp *r, const char *want, const char *not1, const char *not2)
{
    cr_assert(!r->ok, "a wrong output passed: %s", r->message);
    cr_assert(strstr(r->message, want), "no \"%s\" in: %s", want, r->message);
    cr_assert(!not1 || !strstr(r->message, not1), "misleading \"%s\" in: %s", not1, r->message);
    cr_assert(!not2 || !strstr(r->message, not2), "misleading \"%s\" in: %s", not2, r->message);
}

/* Lesson 07's off-by-one (`i*d + l - 1 <= t + 1`, the known-wrong variants' mistake), made by the NSA
 * oracle itself: with l = 4, d = 2 both N = 12 and N = 13 have 5 compressed tokens, and with M = 12
 * queries the shape N = 13 puts query i at t + 1. The last row sees every token either way. */
Test(hints, compressed_rule_is_stated)
{
    const attn_shape sh = attn_make_shape(1, 12, 12, 2, 1, 8, 1), late = attn_make_shape(1, 12, 13, 2, 1, 8, 1);
    attn_nsa_params p = attn_nsa_paper_defaults();
    p.l = 4, p.d = 2, p.l_sel = 64, p.mode = ATTN_NSA_MEAN;
    const long nc = attn_nsa_num_cmp(sh.N, &p);
    cr_assert_eq(nc, 5);
    cr_assert_eq(attn_nsa_num_cmp(late.N, &p), nc);
    const size_t nq = attn_q_elems(&sh), nl = attn_lse_elems(&sh), ncmp = (size_t)nc * sh.G * sh.D;
    float *q = attn_alloc_f32(nq), *k = attn_alloc_f32(ncmp), *v = attn_alloc_f32(ncmp);
    float *o = attn_alloc_f32(nq), *lse = attn_alloc_f32(nl);
    double *o_ref = attn_alloc_f64(nq), *lse_ref = attn_alloc_f64(nl), *o_bad = attn_alloc_f64(nq),
           *lse_bad = attn_alloc_f64(nl);
    uint16_t *o16 = attn_alloc_bf16(nq);
    cr_assert(q && k && v && o && lse && o_ref && lse_ref && o_bad && lse_bad && o16);
    attn_rng rng;
    attn_rng_seed(&rng, attn_test_seed());
    attn_fill_random(q, nq, (size_t)sh.D, 1.0f, &rng);
    attn_fill_random(k, ncmp, (size_t)sh.D, 1.0f, &rng);
    attn_fill_random(v, ncmp, (size_t)sh.D, 1.0f, &rng);
    cr_assert_eq(attn_oracle_nsa_cmp_attention(&sh, &p, q, k, v, o_ref, lse_ref), ATTN_OK);
    cr_assert_eq(attn_oracle_nsa_cmp_attention(&late, &p, q, k, v, o_bad, lse_bad), ATTN_OK);
    for (size_t e = 0; e < nq; ++e) o[e] = (float)o_bad[e], o16[e] = attn_f32_to_bf16((float)o_bad[e]);
    for (size_t e = 0; e < nl; ++e) lse[e] = (float)lse_bad[e];

    const attn_rule rule = attn_rule_compressed(p.l, p.d);
    attn_cmp r;
    attn_compare_f32_rule(&r, "o", ATTN_LAYOUT_BMHD, &sh, &rule, o, o_ref, ATTN_TOL_F32);
    expect_rule(&r, "i*d + l - 1 <= t", "s <= t", "causal mask");
    expect_rule(&r, "l = 4, d = 2", NULL, NULL);
    attn_compare_bf16_rule(&r, "o", ATTN_LAYOUT_BMHD, &sh, &rule, o16, o_ref, ATTN_TOL_BF16);
    expect_rule(&r, "i*d + l - 1 <= t", "s <= t", "causal mask");
    attn_compare_f32_rule(&r, "lse", ATTN_LAYOUT_BHM, &sh, &rule, lse, lse_ref, ATTN_TOL_F32);
    expect_rule(&r, "i*d + l - 1 <= t", "s <= t", NULL);
    /* without the rule the same failure reads as a dense causal mask: why lesson 07's tests pass it */
    attn_compare_f32(&r, "o", ATTN_LAYOUT_BMHD, &sh, 0, o, o_ref, ATTN_TOL_F32);
    expect_rule(&r, "s <= t", "i*d + l - 1", NULL);
    attn_compare_f32_rule(&r, "o", ATTN_LAYOUT_BMHD, &sh, NULL, o, o_ref, ATTN_TOL_F32);
    expect_rule(&r, "s <= t", "i*d + l - 1", NULL);

    /* NaN in the rows that see no token (t < l - 1): 0 / 0 after a softmax over nothing */
    for (size_t e = 0; e < nq; ++e) o[e] = (float)o_ref[e];
    for (int i = 0; i < p.l - 1; ++i)
        for (int h = 0; h < sh.H; ++h)
            for (int d = 0; d < sh.D; ++d) o[((size_t)i * sh.H + h) * sh.D + d] = NAN;
    attn_compare_f32_rule(&r, "o", ATTN_LAYOUT_BMHD, &sh, &rule, o, o_ref, ATTN_TOL_F32);
    expect_rule(&r, "no compressed token", "s <= t", NULL);
    expect_rule(&r, "i*d + l - 1 <= t", NULL, NULL);

    char words[320];
    attn_visibility_rule_text(&sh, 0, NULL, &rule, words, sizeof words);
    cr_assert(strstr(words, "i*d + l - 1 <= t") && strstr(words, "t < l - 1 = 3"), "%s", words);
    free(q), free(k), free(v), free(o), free(lse), free(o_ref), free(lse_ref), free(o_bad), free(lse_bad), free(o16);
}

/* Lesson 05: rows wrong but the last one right, with a window: the window's rule, not s <= t alone. */
Test(hints, window_rule_is_stated)
{
    const attn_shape sh = attn_make_shape(1, 4, 4, 1, 1, 2, 1);
    double ref[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    float got[8] = {1.5f, 2, 3.5f, 4, 5.5f, 6, 7, 8}; /* rows t = 0, 1, 2 wrong, t = 3 right */
    attn_cmp r;
    attn_compare_f32(&r, "o", ATTN_LAYOUT_BMHD, &sh, 2, got, ref, ATTN_TOL_F32);
    expect_rule(&r, "t - w + 1 <= s <= t (w = 2)", "sees every key", NULL);
    char words[320];
    attn_oracle_opts opts = attn_oracle_dense(&sh);
    opts.window = 2;
    cr_assert_str_eq(attn_visibility_rule_text(&sh, 0, &opts, NULL, words, sizeof words),
                     "key s is visible iff t - w + 1 <= s <= t (w = 2), with t = N - M + i");
    cr_assert_str_eq(attn_visibility_rule_text(&sh, 0, NULL, NULL, words, sizeof words),
                     "key s is visible iff s <= t, with t = N - M + i");
}

/* Lesson 09: a block list. The pattern hint and the hint of a known mistake (no causal mask) both
 * state that a key must lie in a listed block. */
Test(hints, block_list_rule_is_stated)
{
    const attn_shape sh = attn_make_shape(1, 8, 8, 2, 1, 8, 1);
    static const int32_t lists[8 * 2] = {0, -1, 0, -1, 0, -1, 0, -1, 0, 1, 0, 1, 0, 1, 0, 1};
    attn_oracle_opts opts = attn_oracle_dense(&sh);
    opts.block_indices = lists, opts.num_blocks = 2, opts.block_size = 4;
    hint_case c;
    hint_case_init(&c, &opts, attn_test_seed());
    attn_cmp_source src = {&c.opts, c.q, c.k, c.v, ATTN_QTY_DEFAULT};
    attn_cmp r;
    /* the causal mask forgotten: keys after t in the listed blocks are seen */
    attn_oracle_opts open = opts;
    open.shape.causal = 0;
    cr_assert_eq(attn_oracle_forward(&open, c.q, c.k, c.v, c.o_wrong, c.lse_wrong, NULL), ATTN_OK);
    hint_case_wrong_to_float(&c, 0);
    attn_compare_f32_src(&r, "o", ATTN_LAYOUT_BMHD, &src, c.o, c.o_ref, ATTN_TOL_F32);
    expect_hint(&r, ATTN_WRONG_NO_CAUSAL, "without the causal mask", NULL, NULL);
    expect_rule(&r, "lies in a block listed for its query (block j holds keys j*4 .. j*4 + 3) and s <= t", NULL, NULL);
    /* early rows wrong, the last right, no known mistake: the pattern hint */
    for (size_t e = 0; e < attn_q_elems(&sh); ++e) c.o[e] = (float)c.o_ref[e];
    for (int i = 0; i < 6; ++i)
        for (int h = 0; h < sh.H; ++h) c.o[((size_t)i * sh.H + h) * sh.D] += 0.5f;
    attn_compare_f32_src(&r, "o", ATTN_LAYOUT_BMHD, &src, c.o, c.o_ref, ATTN_TOL_F32);
    cr_assert_eq(r.wrong, ATTN_WRONG_NONE, "%s", r.message);
    expect_rule(&r, "block listed for its query", "sees every key", NULL);
    hint_case_free(&c);
}
