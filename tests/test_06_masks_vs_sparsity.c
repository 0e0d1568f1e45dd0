/*
 * Tests of lesson 06, token masks vs block sparsity. Built twice: against lessons/ and solutions/.
 *
 *   c_part     keep weights of the three modes, masked attention and block-sparse attention on the
 *              CPU against the oracle, the block-list checker
 *   cuda_part  masked_attention_cuda and block_sparse_attention_cuda against the oracle
 *   speed      both kernels against the frozen dense causal flash kernel (lesson 03)
 *   errors     bad input gets a named error code, never a crash
 *
 * The oracle knows nothing of keep modes or query blocks: each test turns retention into keep
 * weights itself (the table in sparsity.h) and copies each query block's list to its 128 queries.
 */
#include "baselines.h"
#include "sparsity.h"
#include "test_util.h"

/* Token mask (hard, 90% of the keys deleted) vs dense causal flash: a token mask saves nothing, so
 * the target only asks that it cost little (calibrated on an H100, see the README). */
#define SPEED_TARGET_MASK ATTN_TARGET_TOKEN_MASK_VS_DENSE /* lesson.json */
/* Block-sparse with 10% of the visible key blocks listed vs dense causal flash (ideal 10x). */
#define SPEED_TARGET_BLOCKS ATTN_TARGET_BLOCK_SPARSE_VS_DENSE

static const char *kModeNames[] = {"baseline", "soft delete", "hard mask"};

/* ================================================================ inputs */

/* Retention [B, N, G] uniform in [0, 1), with about a tenth of exact zeros when `zeros`. */
static float *random_retention(const attn_shape *sh, int zeros, attn_rng *rng)
{
    const size_t n = (size_t)sh->B * sh->N * sh->G;
    float *r = attn_alloc_f32(n);
    cr_assert(r, "out of host memory");
    for (size_t e = 0; e < n; ++e) {
        r[e] = (float)attn_rng_uniform(rng);
        if (zeros && attn_rng_uniform(rng) < 0.1) r[e] = 0.0f;
    }
    return r;
}

/* The keep weights from the definition, for the oracle (independent of keep_weights_cpu). */
static float *keep_from_definition(keep_mode mode, float threshold, const float *r, size_t n)
{
    float *w = attn_alloc_f32(n);
    cr_assert(w, "out of host memory");
    for (size_t e = 0; e < n; ++e)
        w[e] = mode == KEEP_BASELINE ? 1.0f : mode == KEEP_SOFT ? r[e] : (r[e] >= threshold ? 1.0f : 0.0f);
    return w;
}

/* Random block lists [B, QB, G, T]: each key block a query block may see (causal: up to its last
 * query's position) is listed with probability `density`; with `beyond`, blocks past the diagonal
 * are listed too (legal; they must add nothing). T = number of key blocks + `pad`. */
static int32_t *random_block_lists(const attn_shape *sh, double density, int beyond, int pad, attn_rng *rng, int *T)
{
    const int QB = sparse_query_blocks(sh->M), KB = sparse_key_blocks(sh->N);
    *T = KB + pad;
    int32_t *lists = (int32_t *)attn_alloc_bytes((size_t)sh->B * QB * sh->G * *T * sizeof(int32_t));
    cr_assert(lists, "out of host memory");
    for (int b = 0; b < sh->B; ++b)
        for (int qb = 0; qb < QB; ++qb)
            for (int g = 0; g < sh->G; ++g) {
                int32_t *list = lists + (((size_t)b * QB + qb) * sh->G + g) * *T;
                int last_q = (qb + 1) * SPARSE_QUERY_BLOCK - 1;
                if (last_q > sh->M - 1) last_q = sh->M - 1;
                const long t_last = (long)sh->N - sh->M + last_q;
                const int last_block = sh->causal && !beyond ? (int)(t_last / SPARSE_KEY_BLOCK) : KB - 1;
                int n = 0;
                for (int j = 0; j <= last_block; ++j)
                    if (attn_rng_uniform(rng) < density) list[n++] = j;
                while (n < *T) list[n++] = -1;
            }
    return lists;
}

/* Each query's copy of its query block's list: [B, M, G, T], what the oracle takes. */
static int32_t *per_query_lists(const attn_shape *sh, const int32_t *lists, int T)
{
    const int QB = sparse_query_blocks(sh->M);
    int32_t *out = (int32_t *)attn_alloc_bytes((size_t)sh->B * sh->M * sh->G * T * sizeof(int32_t));
    cr_assert(out, "out of host memory");
    for (int b = 0; b < sh->B; ++b)
        for (int i = 0; i < sh->M; ++i)
            memcpy(out + ((size_t)b * sh->M + i) * sh->G * T,
                   lists + ((size_t)b * QB + i / SPARSE_QUERY_BLOCK) * sh->G * T, (size_t)sh->G * T * sizeof(int32_t));
    return out;
}

/* ================================================================ C part */

/* Host o [B, M, H, D] and lse [B, H, M], poisoned (NaN) so that an unwritten element shows. */
static void poisoned_outputs(const attn_shape *sh, float **o, float **lse)
{
    *o = attn_alloc_f32(attn_q_elems(sh)), *lse = attn_alloc_f32(attn_lse_elems(sh));
    cr_assert(*o && *lse, "out of host memory");
    attn_poison(*o, attn_q_elems(sh) * 4), attn_poison(*lse, attn_lse_elems(sh) * 4);
}

/* A C-part result against the problem's reference, fp32 tolerance. */
static void expect_o_and_lse_f32(const problem *p, const float *o, const float *lse, const char *ctx)
{
    attn_cmp c;
    attn_compare_f32(&c, "o", ATTN_LAYOUT_BMHD, &p->sh, 0, o, p->o_ref, ATTN_TOL_F32);
    cr_assert(c.ok, "%s [%s]", c.message, ctx);
    attn_compare_f32(&c, "lse", ATTN_LAYOUT_BHM, &p->sh, 0, lse, p->lse_ref, ATTN_TOL_F32);
    cr_assert(c.ok, "%s [%s]", c.message, ctx);
}

ATTN_TEST(c_part, keep_weights)
{
    const float r[] = {0.0f, 0.005f, 0.00999f, 0.01f, 0.2f, 0.5f, 0.99f, 1.0f};
    ATTN_SHARE(r);
    const int n = 8;
    struct {
        keep_mode mode;
        float threshold;
        float want[8];
    } cases[] = {
        {KEEP_BASELINE, 0.01f, {1, 1, 1, 1, 1, 1, 1, 1}},
        {KEEP_SOFT, 0.01f, {0.0f, 0.005f, 0.00999f, 0.01f, 0.2f, 0.5f, 0.99f, 1.0f}},
        {KEEP_HARD, 0.01f, {0, 0, 0, 1, 1, 1, 1, 1}}, /* r >= threshold is kept: 0.01 itself stays */
        {KEEP_HARD, 0.5f, {0, 0, 0, 0, 0, 1, 1, 1}},
        {KEEP_HARD, 0.0f, {1, 1, 1, 1, 1, 1, 1, 1}},
        {KEEP_HARD, 1.0f, {0, 0, 0, 0, 0, 0, 0, 1}},
    };
    /* your part of the checking: a retention outside [0, 1], or NaN, is rejected */
    const float bad_r[][2] = {{0.5f, 1.5f}, {0.5f, -0.25f}, {NAN, 0.5f}};
    ATTN_SHARE(bad_r);
    for (int c = 0; c < 3; ++c) {
        float w[2];
        ATTN_SHARE(w);
        char ctx[80];
        snprintf(ctx, sizeof ctx, "retention (%g, %g)", bad_r[c][0], bad_r[c][1]);
        assert_status(keep_weights_cpu(KEEP_SOFT, 0.01f, bad_r[c], 2, w), ATTN_ERR_BAD_ARGUMENT, ctx);
    }
    for (int c = 0; c < (int)(sizeof cases / sizeof cases[0]); ++c) {
        float got[8];
        ATTN_SHARE(got);
        for (int e = 0; e < n; ++e) got[e] = NAN;
        char ctx[80];
        snprintf(ctx, sizeof ctx, "mode %s, threshold %g", kModeNames[cases[c].mode], cases[c].threshold);
        assert_ok(keep_weights_cpu(cases[c].mode, cases[c].threshold, r, n, got), ctx);
        for (int e = 0; e < n; ++e)
            cr_assert(got[e] == cases[c].want[e], "%s: retention %g gave keep weight %g, expected %g", ctx, r[e], got[e],
                      cases[c].want[e]);
    }
}

static void check_masked_cpu(attn_shape sh, keep_mode mode, float threshold, int zeros)
{
    problem p;
    problem_fill(&p, sh, 1.0f, 0, attn_test_seed());
    attn_rng rng;
    attn_rng_seed(&rng, p.seed * 31 + 7);
    float *r = random_retention(&sh, zeros, &rng);
    float *w = keep_from_definition(mode, threshold, r, (size_t)sh.B * sh.N * sh.G);
    attn_oracle_opts opts = attn_oracle_dense(&sh);
    opts.key_weights = w;
    problem_reference(&p, &opts);
    float *o, *lse;
    poisoned_outputs(&sh, &o, &lse);
    char ctx[400];
    snprintf(ctx, sizeof ctx, "mode %s, threshold %g%s, %s", kModeNames[mode], threshold,
             zeros ? ", some retention exactly 0" : "", p.ctx);
    assert_ok(masked_attention_cpu(&sh, mode, threshold, r, p.q, p.k, p.v, o, lse), ctx);
    expect_o_and_lse_f32(&p, o, lse, ctx);
    free(o), free(lse), free(r), free(w);
    problem_free(&p);
}

ATTN_TEST(c_part, masked_attention)
{
    const attn_shape shapes[] = {{1, 20, 20, 2, 1, 16, 0.0f, 1}, {2, 9, 30, 4, 2, 32, 0.27f, 1},
                                 {1, 13, 40, 2, 2, 64, 0.0f, 0}, {1, 33, 33, 4, 4, 128, 0.0f, 1}};
    for (int c = 0; c < 4; ++c) {
        check_masked_cpu(shapes[c], KEEP_BASELINE, KEEP_DEFAULT_THRESHOLD, 0);
        check_masked_cpu(shapes[c], KEEP_SOFT, KEEP_DEFAULT_THRESHOLD, 0);
        check_masked_cpu(shapes[c], KEEP_SOFT, KEEP_DEFAULT_THRESHOLD, 1);
        check_masked_cpu(shapes[c], KEEP_HARD, KEEP_DEFAULT_THRESHOLD, 1);
        check_masked_cpu(shapes[c], KEEP_HARD, 0.5f, 0);
        check_masked_cpu(shapes[c], KEEP_HARD, 0.95f, 0); /* early causal rows lose every key */
    }
}

ATTN_TEST(c_part, block_list_check)
{
    const attn_shape sh = attn_make_shape(1, 200, 200, 2, 2, 64, 1); /* QB = 2, key blocks 0..3 */
    const int T = 4;
    int32_t good[2 * 2 * 4] = {0, 1, 2, 3, /**/ 1, -1, -1, -1, /**/ -1, -1, -1, -1, /**/ 0, 3, -1, -1};
    ATTN_SHARE(good);
    assert_ok(block_list_check(&sh, good, T), "valid lists (one of them empty)");
    struct {
        int entry;
        int32_t value;
        const char *why;
    } bad[] = {
        {1, 0, "a repeat (0, 0)"},        {5, 4, "block 4 of 4 key blocks"}, {14, 2, "descending (0, 3, 2)"},
        {2, -1, "-1, then block 3"},      {4, -2, "-2"},                     {14, 3, "3, 3"},
    };
    for (int c = 0; c < (int)(sizeof bad / sizeof bad[0]); ++c) {
        int32_t lists[16];
        memcpy(lists, good, sizeof good);
        ATTN_SHARE(lists);
        lists[bad[c].entry] = bad[c].value;
        attn_clear_error();
        const int st = block_list_check(&sh, lists, T);
        cr_assert(st == ATTN_ERR_BAD_ARGUMENT, "block_list_check accepted a list with %s (returned %s)", bad[c].why,
                  attn_status_name(st));
    }
    /* block_sparse_attention_cpu checks its list before using it */
    const attn_shape tiny = attn_make_shape(1, 4, 4, 4, 2, 64, 1); /* N = 4: one key block; G = 2 lists */
    int32_t out_of_range[8] = {1, -1, -1, -1, -1, -1, -1, -1};
    float x[4 * 4 * 64] = {0}, o[4 * 4 * 64], lse[16];
    ATTN_SHARE(out_of_range);
    ATTN_SHARE(x);
    ATTN_SHARE(o);
    ATTN_SHARE(lse);
    assert_status(block_sparse_attention_cpu(&tiny, out_of_range, 4, x, x, x, o, lse), ATTN_ERR_BAD_ARGUMENT,
                  "block_sparse_attention_cpu with block 1 of 1 listed");
}

/* The checker over every batch entry, query block and kv head, and over the whole of a list: lists longer
 * than the number of key blocks (T = 7 > 4) whose bad entry sits past position 4, in the last batch entry's
 * last list; full lists without -1 (T = 4 and T = 3 < the number of blocks) are valid. */
ATTN_TEST(c_part, block_list_check_batches_and_long_lists)
{
    const attn_shape sh = attn_make_shape(2, 200, 200, 4, 2, 64, 1); /* B = 2, QB = 2, G = 2: 8 lists; 4 key blocks */
    const int T = 7, n_lists = 8;
    int32_t good[8 * 7];
    ATTN_SHARE(good);
    const int32_t rows[8][7] = {
        {0, 1, 2, 3, -1, -1, -1}, {1, -1, -1, -1, -1, -1, -1}, {-1, -1, -1, -1, -1, -1, -1}, {0, 3, -1, -1, -1, -1, -1},
        {2, 3, -1, -1, -1, -1, -1}, {0, 1, 2, 3, -1, -1, -1}, {3, -1, -1, -1, -1, -1, -1},   {0, 2, -1, -1, -1, -1, -1},
    };
    memcpy(good, rows, sizeof good);
    assert_ok(block_list_check(&sh, good, T), "B=2 M=200 N=200 H=4 G=2: T = 7 > 4 key blocks, valid lists");
    struct {
        int list, entry;
        int32_t value;
        const char *why;
    } bad[] = {
        {7, 5, 1, "block 1 after the -1 padding, at entry 5 (past the 4 key blocks) of the last list of batch 1"},
        {7, 6, 3, "block 3 at the last entry (6) of the last list of batch 1, after the padding"},
        {5, 4, 4, "block 4 of 4 key blocks at entry 4 of a full list of batch 1"},
        {6, 6, -2, "-2 at the last entry of a list of batch 1"},
        {4, 1, 2, "a repeat (2, 2) in batch 1"},
        {7, 2, 1, "descending (0, 2, 1) in the last list of batch 1"},
    };
    for (int c = 0; c < (int)(sizeof bad / sizeof bad[0]); ++c) {
        int32_t lists[8 * 7];
        ATTN_SHARE(lists);
        memcpy(lists, good, sizeof good);
        cr_assert(bad[c].list < n_lists && bad[c].entry < T, "bad case %d is outside the lists", c);
        lists[bad[c].list * T + bad[c].entry] = bad[c].value;
        attn_clear_error();
        const int st = block_list_check(&sh, lists, T);
        cr_assert(st == ATTN_ERR_BAD_ARGUMENT,
                  "block_list_check accepted %s (list %d = (b=%d, query block %d, g=%d), T=%d; returned %s) [B=2 M=200 "
                  "N=200 H=4 G=2 causal, 4 key blocks]",
                  bad[c].why, bad[c].list, bad[c].list / 4, bad[c].list / 2 % 2, bad[c].list % 2, T,
                  attn_status_name(st));
    }
    /* full lists without any -1: T = 4 (every key block) and T = 3 (fewer entries than key blocks) */
    int32_t full4[8 * 4], full3[8 * 3];
    ATTN_SHARE(full4);
    ATTN_SHARE(full3);
    for (int l = 0; l < n_lists; ++l) {
        for (int e = 0; e < 4; ++e) full4[l * 4 + e] = e;
        for (int e = 0; e < 3; ++e) full3[l * 3 + e] = e + (l % 2); /* 0 1 2 or 1 2 3 */
    }
    assert_ok(block_list_check(&sh, full4, 4), "B=2 G=2: every list 0 1 2 3, T = 4, no -1");
    assert_ok(block_list_check(&sh, full3, 3), "B=2 G=2: lists 0 1 2 and 1 2 3, T = 3, no -1");
    full3[8 * 3 - 1] = 4; /* the last list of batch 1: 1 2 4 */
    assert_status(block_list_check(&sh, full3, 3), ATTN_ERR_BAD_ARGUMENT,
                  "B=2 G=2, T = 3: block 4 of 4 key blocks at the last entry of the last list");
}

/* Retention exactly on the threshold is kept (r >= threshold), one float below is deleted, one above kept,
 * also inside masked_attention_cpu (B = 2, G = 2, N = 1000, a scale of 1/3); and KEEP_BASELINE takes
 * retention = NULL (sparsity.h: ignored, may be NULL). */
static void check_masked_cpu_special(attn_shape sh, keep_mode mode, float threshold, int null_retention)
{
    problem p;
    problem_fill(&p, sh, 1.0f, 0, attn_test_seed());
    attn_rng rng;
    attn_rng_seed(&rng, p.seed * 13 + (uint64_t)mode);
    const size_t n = (size_t)sh.B * sh.N * sh.G;
    const float special[] = {threshold, nextafterf(threshold, 0.0f), nextafterf(threshold, 1.0f), 0.0f, 1.0f};
    float *r = attn_alloc_f32(n);
    cr_assert(r, "out of host memory");
    for (size_t e = 0; e < n; ++e) {
        const double u = attn_rng_uniform(&rng);
        r[e] = u < 0.7 ? special[(size_t)(u * 1000) % 5] : (float)attn_rng_uniform(&rng);
    }
    float *w = keep_from_definition(mode, threshold, r, n);
    attn_oracle_opts opts = attn_oracle_dense(&sh);
    opts.key_weights = mode == KEEP_BASELINE ? NULL : w;
    problem_reference(&p, &opts);
    float *o, *lse;
    poisoned_outputs(&sh, &o, &lse);
    char ctx[400];
    snprintf(ctx, sizeof ctx, "mode %s, threshold %.9g; retention on it, one float either side, 0 and 1%s, %s",
             kModeNames[mode], threshold, null_retention ? ", retention = NULL" : "", p.ctx);
    assert_ok(masked_attention_cpu(&sh, mode, threshold, null_retention ? NULL : r, p.q, p.k, p.v, o, lse), ctx);
    expect_o_and_lse_f32(&p, o, lse, ctx);
    free(o), free(lse), free(r), free(w);
    problem_free(&p);
}

ATTN_TEST(c_part, masked_thresholds_and_null_retention)
{
    const attn_shape sh = with_scale(attn_make_shape(2, 40, 1000, 4, 2, 32, 1), 1.0f / 3.0f);
    check_masked_cpu_special(sh, KEEP_HARD, KEEP_DEFAULT_THRESHOLD, 0);
    check_masked_cpu_special(sh, KEEP_HARD, 0.37f, 0);
    check_masked_cpu_special(sh, KEEP_SOFT, KEEP_DEFAULT_THRESHOLD, 0);
    check_masked_cpu_special(attn_make_shape(2, 77, 777, 4, 2, 16, 0), KEEP_BASELINE, KEEP_DEFAULT_THRESHOLD, 1);
}

/* keep_weights_cpu over a long array: every element is converted (compared exactly with the definition),
 * and a bad retention at the last of 1000 elements, or in the middle, is still rejected. */
ATTN_TEST(c_part, keep_weights_long_arrays)
{
    const size_t n = 1000;
    uint64_t seed = attn_test_seed();
    attn_rng rng;
    attn_rng_seed(&rng, seed);
    float *r = attn_alloc_f32(n), *got = attn_alloc_f32(n);
    cr_assert(r && got, "out of host memory");
    for (size_t e = 0; e < n; ++e) /* the threshold 0.3 itself, one float below it, random values */
        r[e] = e % 10 == 0 ? 0.3f : e % 10 == 1 ? nextafterf(0.3f, 0.0f) : (float)attn_rng_uniform(&rng);
    r[n - 1] = 1.0f, r[n - 2] = 0.0f;
    for (int mode = KEEP_BASELINE; mode <= KEEP_HARD; ++mode) {
        float *want = keep_from_definition((keep_mode)mode, 0.3f, r, n);
        attn_poison(got, n * sizeof(float));
        char ctx[120];
        snprintf(ctx, sizeof ctx, "mode %s, threshold 0.3, 1000 values, seed %llu", kModeNames[mode],
                 (unsigned long long)seed);
        assert_ok(keep_weights_cpu((keep_mode)mode, 0.3f, r, n, got), ctx);
        for (size_t e = 0; e < n; ++e)
            cr_assert(got[e] == want[e], "%s: element %zu, retention %.9g, gave keep weight %g, expected %g", ctx, e,
                      r[e], got[e], want[e]);
        free(want);
    }
    const size_t at[] = {n - 1, n / 2};
    const float bad[] = {nextafterf(1.0f, 2.0f), nextafterf(0.0f, -1.0f), NAN};
    for (int a = 0; a < 2; ++a)
        for (int b = 0; b < 3; ++b) {
            const float keep_r = r[at[a]];
            r[at[a]] = bad[b];
            char ctx[120];
            snprintf(ctx, sizeof ctx, "retention[%zu] = %.9g of 1000 values, seed %llu", at[a], bad[b],
                     (unsigned long long)seed);
            assert_status(keep_weights_cpu(KEEP_SOFT, 0.01f, r, n, got), ATTN_ERR_BAD_ARGUMENT, ctx);
            r[at[a]] = keep_r;
        }
    free(r), free(got);
}

static void check_block_sparse_cpu(attn_shape sh, double density, int beyond)
{
    problem p;
    problem_fill(&p, sh, 1.0f, 0, attn_test_seed());
    attn_rng rng;
    attn_rng_seed(&rng, p.seed * 17 + 3);
    int T;
    int32_t *lists = random_block_lists(&sh, density, beyond, 2, &rng, &T);
    int32_t *per_query = per_query_lists(&sh, lists, T);
    attn_oracle_opts opts = attn_oracle_dense(&sh);
    opts.block_indices = per_query, opts.num_blocks = T, opts.block_size = SPARSE_KEY_BLOCK;
    problem_reference(&p, &opts);
    float *o, *lse;
    poisoned_outputs(&sh, &o, &lse);
    char ctx[400];
    snprintf(ctx, sizeof ctx, "block density %.2f%s, %s", density, beyond ? ", blocks past the diagonal listed" : "",
             p.ctx);
    assert_ok(block_sparse_attention_cpu(&sh, lists, T, p.q, p.k, p.v, o, lse), ctx);
    expect_o_and_lse_f32(&p, o, lse, ctx);
    free(o), free(lse), free(lists), free(per_query);
    problem_free(&p);
}

ATTN_TEST(c_part, block_sparse_attention)
{
    const attn_shape shapes[] = {{1, 300, 300, 2, 1, 16, 0.0f, 1}, {2, 130, 260, 4, 2, 32, 0.15f, 1},
                                 {1, 150, 200, 2, 2, 64, 0.0f, 0}, {1, 1, 333, 4, 2, 32, 0.0f, 1}};
    const double densities[] = {0.0, 0.3, 1.0};
    for (int c = 0; c < 4; ++c)
        for (int d = 0; d < 3; ++d) check_block_sparse_cpu(shapes[c], densities[d], 0);
    check_block_sparse_cpu(shapes[0], 0.5, 1);
    check_block_sparse_cpu(shapes[1], 0.5, 1);
}

/* ================================================================ CUDA part */

typedef struct {
    keep_mode mode;
    float threshold;
    const float *retention; /* device */
} mask_args;

static int run_masked(void *ctx, const attn_shape *sh, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                      uint16_t *o, float *lse)
{
    const mask_args *a = (const mask_args *)ctx;
    return masked_attention_cuda(sh, a->mode, a->threshold, a->retention, q, k, v, o, lse, 0);
}

static void check_masked_ex(attn_shape sh, keep_mode mode, float threshold, int zeros, int large_logits,
                            int null_retention)
{
    attn_rng rng;
    attn_rng_seed(&rng, attn_test_seed() * 31 + (uint64_t)sh.N);
    const size_t n = (size_t)sh.B * sh.N * sh.G;
    float *r = random_retention(&sh, zeros, &rng);
    float *w = keep_from_definition(mode, threshold, r, n);
    mask_args a = {mode, threshold, NULL};
    assert_ok(attn_dalloc((void **)&a.retention, n * 4), "retention");
    assert_ok(attn_h2d((void *)a.retention, r, n * 4), "retention");
    const float *d_retention = a.retention;
    if (null_retention) a.retention = NULL; /* allowed for KEEP_BASELINE */
    attn_oracle_opts opts = attn_oracle_dense(&sh);
    opts.key_weights = mode == KEEP_BASELINE ? NULL : w;
    char label[100];
    snprintf(label, sizeof label, "mode %s, threshold %g%s%s", kModeNames[mode], threshold,
             zeros ? ", some retention exactly 0" : "", null_retention ? ", retention NULL" : "");
    check_bf16_kernel_labeled(&opts, large_logits, run_masked, &a, label);
    attn_dfree((void *)d_retention);
    free(r), free(w);
}

static void check_masked(attn_shape sh, keep_mode mode, float threshold, int zeros, int large_logits)
{
    check_masked_ex(sh, mode, threshold, zeros, large_logits, 0);
}

/* Retention on and around the threshold, and the values the CUDA contract defines: negative or NaN
 * retention deletes the key, retention above 1 counts as 1. */
static void check_masked_edges(attn_shape sh, keep_mode mode, float threshold)
{
    attn_rng rng;
    attn_rng_seed(&rng, attn_test_seed() * 7 + (uint64_t)mode);
    const size_t n = (size_t)sh.B * sh.N * sh.G;
    float *r = attn_alloc_f32(n), *w = attn_alloc_f32(n);
    const float special[] = {threshold, nextafterf(threshold, 0.0f), nextafterf(threshold, 1.0f), 0.0f, -0.5f, NAN,
                             1.5f, 1.0f};
    for (size_t e = 0; e < n; ++e) {
        const double u = attn_rng_uniform(&rng);
        r[e] = u < 0.6 ? special[(size_t)(u * 100) % 8] : (float)attn_rng_uniform(&rng);
        const float x = r[e];
        const int valid = x > 0.0f; /* false for NaN and for x <= 0 */
        w[e] = mode == KEEP_SOFT ? (valid ? fminf(x, 1.0f) : 0.0f) : (x >= threshold ? 1.0f : 0.0f);
    }
    mask_args a = {mode, threshold, NULL};
    assert_ok(attn_dalloc((void **)&a.retention, n * 4), "retention");
    assert_ok(attn_h2d((void *)a.retention, r, n * 4), "retention");
    attn_oracle_opts opts = attn_oracle_dense(&sh);
    opts.key_weights = w;
    char label[160];
    snprintf(label, sizeof label, "mode %s, threshold %g; retention on the threshold, one float either side, 0, "
             "negative, NaN (deleted) and above 1 (counts as 1)", kModeNames[mode], threshold);
    check_bf16_kernel_labeled(&opts, 0, run_masked, &a, label);
    attn_dfree((void *)a.retention);
    free(r), free(w);
}

ATTN_TEST(cuda_part, masked_thresholds_and_bad_retention)
{
    require_gpu();
    check_masked_edges(attn_make_shape(2, 150, 211, 4, 2, 64, 1), KEEP_HARD, KEEP_DEFAULT_THRESHOLD);
    check_masked_edges(attn_make_shape(1, 97, 300, 8, 2, 128, 1), KEEP_HARD, 0.37f);
    check_masked_edges(attn_make_shape(2, 150, 211, 4, 2, 64, 1), KEEP_SOFT, KEEP_DEFAULT_THRESHOLD);
}

ATTN_TEST(cuda_part, masked_modes)
{
    require_gpu();
    const attn_shape shapes[] = {attn_make_shape(1, 300, 300, 4, 4, 64, 1), attn_make_shape(2, 200, 450, 8, 2, 128, 1),
                                 attn_make_shape(1, 130, 130, 2, 1, 64, 0)};
    for (int c = 0; c < 3; ++c) {
        check_masked(shapes[c], KEEP_BASELINE, KEEP_DEFAULT_THRESHOLD, 0, 0);
        check_masked(shapes[c], KEEP_SOFT, KEEP_DEFAULT_THRESHOLD, 1, 0);
        check_masked(shapes[c], KEEP_HARD, KEEP_DEFAULT_THRESHOLD, 1, 0);
        check_masked(shapes[c], KEEP_HARD, 0.9f, 0, 0); /* 90% deleted */
    }
}

ATTN_TEST(cuda_part, masked_edges)
{
    require_gpu();
    const int ns[] = {1, 63, 64, 65, 129};
    for (int a = 0; a < 5; ++a)
        for (int b = 0; b <= a; ++b) check_masked(attn_make_shape(1, ns[b], ns[a], 2, 2, 64, 1), KEEP_SOFT, 0.01f, 1, 0);
    /* rows whose every key is deleted: o = 0, lse = -inf */
    check_masked(attn_make_shape(1, 100, 100, 4, 2, 128, 1), KEEP_HARD, 0.97f, 0, 0);
    check_masked(attn_make_shape(1, 1, 500, 16, 2, 128, 1), KEEP_HARD, 0.5f, 0, 0); /* decoding */
    check_masked(attn_make_shape(1, 250, 250, 6, 3, 64, 1), KEEP_SOFT, 0.01f, 0, 1); /* large logits */
    check_masked_ex(attn_make_shape(1, 70, 70, 2, 2, 128, 1), KEEP_BASELINE, 0.01f, 0, 0, 1); /* no retention */
}

ATTN_TEST(cuda_part, masked_gqa)
{
    require_gpu();
    check_masked(attn_make_shape(1, 300, 300, 12, 4, 128, 1), KEEP_SOFT, 0.01f, 1, 0);
    check_masked(attn_make_shape(1, 200, 260, 16, 1, 64, 1), KEEP_HARD, 0.3f, 0, 0); /* MQA */
}

typedef struct {
    const int32_t *lists; /* device */
    int T;
} block_args;

static int run_block_sparse(void *ctx, const attn_shape *sh, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                            uint16_t *o, float *lse)
{
    const block_args *a = (const block_args *)ctx;
    return block_sparse_attention_cuda(sh, a->lists, a->T, q, k, v, o, lse, 0);
}

/* Changes the device's copy of the lists [count lists of T] (the oracle keeps the original); `what` is
 * added to failure messages. */
typedef struct {
    void (*fn)(int32_t *lists, size_t count, int T, int key_blocks);
    const char *what;
} list_mangler;

static void check_blocks_ex(attn_shape sh, double density, int beyond, int pad, const list_mangler *mangle)
{
    attn_rng rng;
    attn_rng_seed(&rng, attn_test_seed() * 17 + (uint64_t)sh.N * 3 + (uint64_t)(density * 1000));
    int T;
    int32_t *lists = random_block_lists(&sh, density, beyond, pad, &rng, &T);
    int32_t *per_query = per_query_lists(&sh, lists, T);
    const size_t count = (size_t)sh.B * sparse_query_blocks(sh.M) * sh.G, bytes = count * T * sizeof(int32_t);
    if (mangle) mangle->fn(lists, count, T, sparse_key_blocks(sh.N)); /* per_query keeps the original */
    block_args a = {NULL, T};
    assert_ok(attn_dalloc((void **)&a.lists, bytes), "block lists");
    assert_ok(attn_h2d((void *)a.lists, lists, bytes), "block lists");
    attn_oracle_opts opts = attn_oracle_dense(&sh);
    opts.block_indices = per_query, opts.num_blocks = T, opts.block_size = SPARSE_KEY_BLOCK;
    char label[300];
    snprintf(label, sizeof label, "block density %.2f, T %d%s%s%s%s", density, T,
             beyond ? ", blocks past the diagonal listed" : "", sh.scale != 0.0f ? ", scale set" : "",
             mangle ? ", " : "", mangle ? mangle->what : "");
    check_bf16_kernel_labeled(&opts, 0, run_block_sparse, &a, label);
    attn_dfree((void *)a.lists);
    free(lists), free(per_query);
}

static void check_blocks(attn_shape sh, double density, int beyond, int pad)
{
    check_blocks_ex(sh, density, beyond, pad, NULL);
}

/* block_sparse_attention_cuda cannot check its device lists; the header says what it does with bad ones:
 * it skips entries past the last key block and stops at the first negative entry. Each list's -1
 * padding becomes: the number of key blocks (one past the last), 2^31 - 1, 2^30 (skipped), -7 (ends the
 * list), then 0 1 2 (after the end: ignored). The oracle sees the original lists, which mean the same. */
static void pad_with_bad_entries(int32_t *lists, size_t count, int T, int key_blocks)
{
    const int32_t tail[] = {key_blocks, 0x7fffffff, 1 << 30, -7, 0, 1, 2};
    for (size_t l = 0; l < count; ++l) {
        int used = 0;
        while (used < T && lists[l * T + used] >= 0) ++used;
        for (int e = used; e < T; ++e) lists[l * T + e] = tail[(e - used) % 7];
    }
}
static const list_mangler kBadEntries = {pad_with_bad_entries,
                                         "device lists padded with KB (one past the last key block), 2^31 - 1, "
                                         "2^30, -7 (ends the list), then 0 1 2 (after the end)"};

ATTN_TEST(cuda_part, block_sparse_bad_entries)
{
    require_gpu();
    /* pad >= 7 leaves room for the whole tail after every list */
    check_blocks_ex(attn_make_shape(2, 300, 700, 8, 2, 128, 1), 0.4, 0, 7, &kBadEntries);
    check_blocks_ex(attn_make_shape(2, 200, 333, 4, 2, 64, 0), 0.5, 0, 7, &kBadEntries);
    check_blocks_ex(attn_make_shape(2, 130, 130, 6, 3, 64, 1), 0.0, 0, 7, &kBadEntries); /* empty lists */
}

/* A softmax scale of its own (1/3 and 0.1, neither 1/sqrt(D) nor exact in binary) and sizes that are a
 * multiple of no tile (177, 777, 99, 4099), with B > 1 and G > 1, for both kernels. */
ATTN_TEST(cuda_part, scales_and_odd_sizes)
{
    require_gpu();
    const attn_shape a = with_scale(attn_make_shape(2, 177, 777, 8, 2, 128, 1), 1.0f / 3.0f);
    const attn_shape b = with_scale(attn_make_shape(2, 99, 4099, 6, 3, 64, 1), 0.1f);
    check_masked(a, KEEP_SOFT, KEEP_DEFAULT_THRESHOLD, 1, 0);
    check_masked(b, KEEP_HARD, 0.3f, 0, 0);
    check_masked_ex(b, KEEP_BASELINE, KEEP_DEFAULT_THRESHOLD, 0, 0, 1);
    check_blocks(a, 0.3, 0, 2);
    check_blocks(b, 0.2, 1, 0);
}

ATTN_TEST(cuda_part, block_sparse_densities)
{
    require_gpu();
    const double densities[] = {0.0, 0.1, 0.5, 1.0};
    for (int d = 0; d < 4; ++d) {
        check_blocks(attn_make_shape(1, 600, 600, 4, 4, 64, 1), densities[d], 0, 0);
        check_blocks(attn_make_shape(2, 300, 700, 8, 2, 128, 1), densities[d], 0, 3);
        check_blocks(attn_make_shape(1, 256, 500, 2, 2, 64, 0), densities[d], 0, 1);
    }
}

ATTN_TEST(cuda_part, block_sparse_gqa)
{
    require_gpu();
    /* every group its own list; hpg that does not divide the 128-row block */
    check_blocks(attn_make_shape(1, 400, 400, 12, 4, 128, 1), 0.4, 0, 0);
    check_blocks(attn_make_shape(1, 300, 800, 6, 2, 64, 1), 0.3, 0, 2);
    check_blocks(attn_make_shape(1, 200, 200, 16, 1, 64, 1), 0.5, 0, 0); /* MQA */
    check_blocks(attn_make_shape(1, 1, 1000, 16, 4, 128, 1), 0.3, 0, 0); /* decoding */
}

/* Small and quick: the first case of sanitizer_paths, where racecheck must flag the missing-barrier variant. */
ATTN_TEST(cuda_part, block_sparse_small)
{
    require_gpu();
    check_blocks(attn_make_shape(1, 130, 300, 4, 2, 64, 1), 0.7, 0, 0);
}

ATTN_TEST(cuda_part, block_sparse_edges)
{
    require_gpu();
    /* listed blocks past the diagonal add nothing; tile and query-block edges */
    check_blocks(attn_make_shape(1, 500, 500, 4, 2, 64, 1), 0.5, 1, 0);
    check_blocks(attn_make_shape(1, 129, 129, 2, 2, 128, 1), 1.0, 1, 0);
    const int ns[] = {1, 63, 64, 65, 127, 128, 129};
    for (int a = 0; a < 7; ++a)
        for (int b = 0; b <= a; ++b) check_blocks(attn_make_shape(1, ns[b], ns[a], 2, 1, 64, 1), 0.7, 0, 1);
}

ATTN_TEST(cuda_part, deterministic)
{
    require_gpu();
    const attn_shape sh = attn_make_shape(2, 500, 700, 8, 2, 128, 1);
    attn_rng rng;
    attn_rng_seed(&rng, attn_test_seed());
    int T;
    int32_t *lists = random_block_lists(&sh, 0.5, 0, 1, &rng, &T), *dl;
    const size_t bytes = (size_t)sh.B * sparse_query_blocks(sh.M) * sh.G * T * sizeof(int32_t);
    assert_ok(attn_dalloc((void **)&dl, bytes), "lists");
    assert_ok(attn_h2d(dl, lists, bytes), "lists");
    block_args ba = {dl, T};
    check_deterministic(sh, 0, (void *)run_block_sparse, &ba, 4, "block_sparse_attention_cuda, four runs");
    const size_t n = (size_t)sh.B * sh.N * sh.G;
    float *r = random_retention(&sh, 1, &rng), *dr;
    assert_ok(attn_dalloc((void **)&dr, n * 4), "retention");
    assert_ok(attn_h2d(dr, r, n * 4), "retention");
    mask_args ma = {KEEP_SOFT, 0.01f, dr};
    check_deterministic(sh, 0, (void *)run_masked, &ma, 4, "masked_attention_cuda (soft), four runs");
    attn_dfree(dl), attn_dfree(dr);
    free(lists), free(r);
}

/* Past 2^31 elements with a block list (about half of the visible blocks), against the GPU reference. */
ATTN_TEST(cuda_part, past_2_31_elements)
{
    require_gpu();
    const attn_shape sh = huge_shape();
    attn_rng rng;
    attn_rng_seed(&rng, attn_test_seed());
    int T;
    int32_t *lists = random_block_lists(&sh, 0.5, 0, 0, &rng, &T), *dl;
    const size_t bytes = (size_t)sh.B * sparse_query_blocks(sh.M) * sh.G * T * sizeof(int32_t);
    assert_ok(attn_dalloc((void **)&dl, bytes), "lists");
    assert_ok(attn_h2d(dl, lists, bytes), "lists");
    attn_gpu_ref_opts ref;
    memset(&ref, 0, sizeof ref);
    ref.shape = sh, ref.block_indices = dl, ref.num_blocks = T, ref.block_size = SPARSE_KEY_BLOCK;
    ref.query_block = SPARSE_QUERY_BLOCK;
    block_args ba = {dl, T};
    check_huge(sh, run_block_sparse, &ba, &ref, NULL, NULL, "block_sparse_attention_cuda past 2^31 elements");
    attn_dfree(dl);
    free(lists);
}

/* Past 2^31 elements with a token mask (soft delete, a tenth of the keys at retention 0), against the GPU
 * reference weighting each key by its keep weight. */
ATTN_TEST(cuda_part, masked_past_2_31_elements)
{
    require_gpu();
    const attn_shape sh = huge_shape();
    attn_rng rng;
    attn_rng_seed(&rng, attn_test_seed());
    const size_t n = (size_t)sh.B * sh.N * sh.G;
    float *r = random_retention(&sh, 1, &rng), *w = keep_from_definition(KEEP_SOFT, KEEP_DEFAULT_THRESHOLD, r, n);
    float *dr, *dw;
    assert_ok(attn_dalloc((void **)&dr, n * 4), "retention");
    assert_ok(attn_dalloc((void **)&dw, n * 4), "keep weights");
    assert_ok(attn_h2d(dr, r, n * 4), "retention");
    assert_ok(attn_h2d(dw, w, n * 4), "keep weights");
    attn_gpu_ref_opts ref;
    memset(&ref, 0, sizeof ref);
    ref.shape = sh, ref.key_weights = dw;
    mask_args a = {KEEP_SOFT, KEEP_DEFAULT_THRESHOLD, dr};
    check_huge(sh, run_masked, &a, &ref, NULL, NULL, "masked_attention_cuda (soft delete) past 2^31 elements");
    attn_dfree(dr), attn_dfree(dw);
    free(r), free(w);
}

/* k and v past 2^31 elements (kv_huge_shape) for both kernels: block lists (about half of the visible
 * blocks) and a token mask (hard, threshold 0.5), against the fp32 GPU reference. */
ATTN_TEST(cuda_part, kv_past_2_31_elements)
{
    require_gpu();
    const attn_shape sh = kv_huge_shape();
    attn_rng rng;
    attn_rng_seed(&rng, attn_test_seed());
    int T;
    int32_t *lists = random_block_lists(&sh, 0.5, 0, 0, &rng, &T), *dl;
    const size_t bytes = (size_t)sh.B * sparse_query_blocks(sh.M) * sh.G * T * sizeof(int32_t);
    assert_ok(attn_dalloc((void **)&dl, bytes), "lists");
    assert_ok(attn_h2d(dl, lists, bytes), "lists");
    attn_gpu_ref_opts ref;
    memset(&ref, 0, sizeof ref);
    ref.shape = sh, ref.block_indices = dl, ref.num_blocks = T, ref.block_size = SPARSE_KEY_BLOCK;
    ref.query_block = SPARSE_QUERY_BLOCK;
    block_args ba = {dl, T};
    check_huge_kv(sh, run_block_sparse, &ba, &ref, "block_sparse_attention_cuda, k and v past 2^31 elements");
    attn_dfree(dl);
    free(lists);
    const size_t n = (size_t)sh.B * sh.N * sh.G;
    float *r = random_retention(&sh, 0, &rng), *w = keep_from_definition(KEEP_HARD, 0.5f, r, n), *dr, *dw;
    assert_ok(attn_dalloc((void **)&dr, n * 4), "retention");
    assert_ok(attn_dalloc((void **)&dw, n * 4), "keep weights");
    assert_ok(attn_h2d(dr, r, n * 4), "retention");
    assert_ok(attn_h2d(dw, w, n * 4), "keep weights");
    memset(&ref, 0, sizeof ref);
    ref.shape = sh, ref.key_weights = dw;
    mask_args ma = {KEEP_HARD, 0.5f, dr};
    check_huge_kv(sh, run_masked, &ma, &ref, "masked_attention_cuda (hard, threshold 0.5), k and v past 2^31 elements");
    attn_dfree(dr), attn_dfree(dw);
    free(r), free(w);
}

/* The launch order's kv-head chunks of both kernels (sparsity.cu, l2_groups_per_chunk: the kv heads whose
 * K and V fit in half of L2 run together): at the smallest N where this GPU's L2 splits the G kv heads
 * into chunks with a partial last one (l2_split_keys in test_util.h), which no shape above reaches.
 * Against the fp32 GPU reference: a token mask (hard, threshold 0.5) and block lists (about a third of the
 * visible blocks). */
ATTN_TEST(cuda_part, group_chunks)
{
    require_gpu();
    const int D[2] = {64, 128}, G[2] = {8, 6}, H[2] = {16, 18}, M[2] = {150, 45};
    for (int c = 0; c < 2; ++c) {
        int per = 0, d = D[c];
        const int N = l2_split_keys(G[c], kv_head_bytes, &d, M[c] + 3, 1 << 20, 61, &per);
        const attn_shape sh = attn_make_shape(2, M[c], N, H[c], G[c], D[c], 1);
        char what[200];
        attn_rng rng;
        attn_rng_seed(&rng, attn_test_seed() + (uint64_t)c);
        /* token mask */
        const size_t n = (size_t)sh.B * sh.N * sh.G;
        float *r = random_retention(&sh, 0, &rng), *w = keep_from_definition(KEEP_HARD, 0.5f, r, n), *dr, *dw;
        assert_ok(attn_dalloc((void **)&dr, n * 4), "retention");
        assert_ok(attn_dalloc((void **)&dw, n * 4), "keep weights");
        assert_ok(attn_h2d(dr, r, n * 4), "retention");
        assert_ok(attn_h2d(dw, w, n * 4), "keep weights");
        attn_gpu_ref_opts ref;
        memset(&ref, 0, sizeof ref);
        ref.shape = sh, ref.key_weights = dw;
        mask_args ma = {KEEP_HARD, 0.5f, dr};
        snprintf(what, sizeof what, "masked_attention_cuda (hard, threshold 0.5), %d kv heads in L2 chunks of %d (the "
                 "last one partial)", G[c], per);
        check_on_device(sh, run_masked, &ma, &ref, NULL, NULL, what,
                        "Hint: every kv head of every chunk, the last (partial) chunk too, must be computed once");
        attn_dfree(dr), attn_dfree(dw);
        free(r), free(w);
        /* block lists */
        int T;
        int32_t *lists = random_block_lists(&sh, 0.3, 0, 1, &rng, &T), *dl;
        const size_t bytes = (size_t)sh.B * sparse_query_blocks(sh.M) * sh.G * T * sizeof(int32_t);
        assert_ok(attn_dalloc((void **)&dl, bytes), "lists");
        assert_ok(attn_h2d(dl, lists, bytes), "lists");
        memset(&ref, 0, sizeof ref);
        ref.shape = sh, ref.block_indices = dl, ref.num_blocks = T, ref.block_size = SPARSE_KEY_BLOCK;
        ref.query_block = SPARSE_QUERY_BLOCK;
        block_args ba = {dl, T};
        snprintf(what, sizeof what, "block_sparse_attention_cuda (density 0.3), %d kv heads in L2 chunks of %d (the "
                 "last one partial)", G[c], per);
        check_on_device(sh, run_block_sparse, &ba, &ref, NULL, NULL, what,
                        "Hint: every kv head of every chunk, the last (partial) chunk too, must be computed once");
        attn_dfree(dl);
        free(lists);
    }
}

/* What ./course grade runs compute-sanitizer memcheck and racecheck on (lesson.json, "sanitize"): both
 * kernels, both instances of each (D = 64 and 128), every keep mode (KEEP_BASELINE with retention NULL,
 * soft delete, a hard mask that deletes every key of some rows), block lists with empty lists, blocks past
 * the diagonal and bad device entries (skipped, or ending the list), several packed row blocks and key
 * tiles, B > 1 and G > 1. block_sparse_small (the missing-barrier variant's test) comes first, as it was. */
ATTN_TEST(cuda_part, sanitizer_paths)
{
    require_gpu();
    check_blocks(attn_make_shape(1, 130, 300, 4, 2, 64, 1), 0.7, 0, 0);
    check_masked_ex(attn_make_shape(2, 70, 150, 4, 2, 64, 0), KEEP_BASELINE, KEEP_DEFAULT_THRESHOLD, 0, 0, 1);
    check_masked(attn_make_shape(2, 70, 150, 4, 2, 128, 1), KEEP_SOFT, KEEP_DEFAULT_THRESHOLD, 1, 0);
    /* causal, 97% deleted: the first rows see a few keys, all of them deleted */
    check_masked(with_scale(attn_make_shape(2, 130, 130, 4, 2, 64, 1), 1.0f / 3.0f), KEEP_HARD, 0.97f, 0, 0);
    check_blocks_ex(attn_make_shape(2, 130, 200, 4, 2, 128, 1), 0.6, 1, 7, &kBadEntries);
    check_blocks(attn_make_shape(2, 70, 200, 6, 2, 64, 0), 0.0, 0, 1);
}

/* ================================================================ speed */

typedef struct {
    speed_io *io;
    int kind; /* 0: the frozen dense causal flash kernel, 1: masked, 2: block-sparse */
    keep_mode mode;
    float threshold;
    const float *retention;
    const int32_t *lists;
    int T;
} sparse_launch;

static int launch(void *ctx, cudaStream_t stream)
{
    sparse_launch *a = (sparse_launch *)ctx;
    speed_io *io = a->io;
    const attn_shape copy = io->sh; /* a copy: the check's shape is not the kernel's to change */
    const attn_shape *sh = &copy;
    if (a->kind == 0) return attn_baseline_flash_bf16(sh, io->q, io->k, io->v, io->o_base, io->lse_base, stream);
    if (a->kind == 1)
        return masked_attention_cuda(sh, a->mode, a->threshold, a->retention, io->q, io->k, io->v, io->o, io->lse,
                                     stream);
    return block_sparse_attention_cuda(sh, a->lists, a->T, io->q, io->k, io->v, io->o, io->lse, stream);
}

static const attn_shape kSpeedShape = {1, 8192, 8192, 16, 4, 128, 0.0f, 1};

/* Print the speed line (credited with `flops`, the FLOPs of the pairs that count) and expect the target. */
static void report(const char *name, const char *what, const char *ctx, double t_base, double t_yours, double target,
                   double flops)
{
    const attn_shape sh = kSpeedShape;
    char st[200];
    shape_text(&sh, st, sizeof st);
    snprintf(st + strlen(st), sizeof st - strlen(st), ", %s", what);
    attn_speed_result res = {"06", name, st, t_base, t_yours, target, flops,
                             (double)(attn_q_elems(&sh) * 2 + attn_kv_elems(&sh) * 2) * 2};
    attn_report_speed(&res);
    const double ratio = t_base / t_yours;
    cr_expect(ratio >= target, "speed-up %.2fx is below the target %.2fx (dense %.3f ms, yours %.3f ms) [%s]", ratio,
              target, t_base, t_yours, ctx);
}

/* Time `yours` against the dense baseline; every timed output is checked against the fp32 GPU
 * reference under `ref`'s rules (the baseline computes something else). */
static void time_checked(speed_io *io, sparse_launch *base, sparse_launch *yours, const attn_guarded *extra, int n_extra,
                         attn_timing *tb, attn_timing *ty)
{
    attn_timing_checks checks = speed_io_checks(io, extra, n_extra);
    char why[1200];
    const int rc = attn_time_ab_checked(launch, base, launch, yours, &checks, 1, 5, tb, ty, why, sizeof why);
    cr_assert(rc == ATTN_OK, "%s [%s]", why, io->ctx);
}

ATTN_TEST(speed, token_mask_vs_dense)
{
    require_gpu();
    const attn_shape sh = kSpeedShape;
    const char *what = "hard mask deleting 90% of the keys";
    attn_rng rng;
    attn_rng_seed(&rng, attn_test_seed());
    const size_t n = (size_t)sh.B * sh.N * sh.G;
    float *r = random_retention(&sh, 0, &rng), *dr, *keep = attn_alloc_f32(n), *dkeep;
    /* retention is uniform: threshold 0.9 deletes 90% of the keys; the reference sees the 0/1 weights */
    for (size_t e = 0; e < n; ++e) keep[e] = r[e] >= 0.9f ? 1.0f : 0.0f;
    attn_gpu_ref_opts ref;
    memset(&ref, 0, sizeof ref);
    ref.shape = sh;
    speed_io io;
    speed_io_init(&io, sh, 0, &ref, what);
    assert_ok(attn_dalloc((void **)&dr, n * 4), io.ctx);
    assert_ok(attn_dalloc((void **)&dkeep, n * 4), io.ctx);
    assert_ok(attn_h2d(dr, r, n * 4), io.ctx);
    assert_ok(attn_h2d(dkeep, keep, n * 4), io.ctx);
    ref.key_weights = dkeep;
    sparse_launch base = {.io = &io, .kind = 0},
                  yours = {.io = &io, .kind = 1, .mode = KEEP_HARD, .threshold = 0.9f, .retention = dr};
    attn_timing t_base, t_yours;
    /* the kernel reads the retention, the reference the keep weights: neither may change */
    const attn_guarded extra[] = {{dr, n * 4, "retention"}, {dkeep, n * 4, "keep weights (the reference's)"}};
    time_checked(&io, &base, &yours, extra, 2, &t_base, &t_yours);
    /* credited with the kept pairs: a token mask does all the work and keeps a tenth of it */
    report("token_mask_vs_dense", what, io.ctx, t_base.median_ms, t_yours.median_ms, SPEED_TARGET_MASK,
           0.1 * attn_flops(&sh));
    attn_dfree(dr), attn_dfree(dkeep);
    free(r), free(keep);
    speed_io_free(&io);
}

ATTN_TEST(speed, block_sparse_vs_dense)
{
    require_gpu();
    const attn_shape sh = kSpeedShape;
    const char *what = "10% of the visible key blocks listed";
    attn_rng rng;
    attn_rng_seed(&rng, attn_test_seed());
    int T;
    int32_t *sparse = random_block_lists(&sh, 0.1, 0, 0, &rng, &T);
    const size_t bytes = (size_t)sh.B * sparse_query_blocks(sh.M) * sh.G * T * sizeof(int32_t);
    attn_gpu_ref_opts ref;
    memset(&ref, 0, sizeof ref);
    ref.shape = sh, ref.num_blocks = T, ref.block_size = SPARSE_KEY_BLOCK, ref.query_block = SPARSE_QUERY_BLOCK;
    speed_io io;
    speed_io_init(&io, sh, 0, &ref, what);
    int32_t *d_sparse;
    assert_ok(attn_dalloc((void **)&d_sparse, bytes), io.ctx);
    assert_ok(attn_h2d(d_sparse, sparse, bytes), io.ctx);
    ref.block_indices = d_sparse;
    sparse_launch base = {.io = &io, .kind = 0}, yours = {.io = &io, .kind = 2, .lists = d_sparse, .T = T};
    attn_timing t_base, t_yours;
    const attn_guarded extra[] = {{d_sparse, bytes, "block lists"}};
    time_checked(&io, &base, &yours, extra, 1, &t_base, &t_yours);
    /* credited with the visible pairs of the listed blocks */
    report("block_sparse_vs_dense", what, io.ctx, t_base.median_ms, t_yours.median_ms, SPEED_TARGET_BLOCKS,
           4.0 * sh.D * attn_block_list_pairs(&sh, sparse, T, SPARSE_QUERY_BLOCK, SPARSE_KEY_BLOCK));
    attn_dfree(d_sparse);
    free(sparse);
    speed_io_free(&io);
}

/* ================================================================ errors */

static uint16_t fake16[8] __attribute__((aligned(16)));
static float fake[8];
static int32_t fake_list[8];

ATTN_TEST(errors, bad_input_is_named)
{
    const float r[] = {0.5f};
    float w[1];
    assert_status(keep_weights_cpu(KEEP_HARD, -0.1f, r, 1, w), ATTN_ERR_BAD_ARGUMENT, "threshold -0.1");
    assert_status(keep_weights_cpu(KEEP_HARD, NAN, r, 1, w), ATTN_ERR_BAD_ARGUMENT, "threshold NaN");
    assert_status(keep_weights_cpu((keep_mode)7, 0.01f, r, 1, w), ATTN_ERR_BAD_ARGUMENT, "mode 7");
    assert_status(keep_weights_cpu(KEEP_SOFT, 0.01f, NULL, 1, w), ATTN_ERR_NULL_POINTER, "retention NULL");

    const attn_shape ok = attn_make_shape(1, 4, 4, 4, 2, 64, 1), bad_g = attn_make_shape(1, 4, 4, 6, 4, 64, 1),
                     bad_d = attn_make_shape(1, 4, 4, 4, 2, 32, 1), bad_m = attn_make_shape(1, 8, 4, 4, 2, 64, 1);
    assert_status(masked_attention_cpu(&ok, KEEP_SOFT, 0.01f, NULL, fake, fake, fake, fake, fake), ATTN_ERR_NULL_POINTER,
                  "cpu retention NULL");
    assert_status(masked_attention_cuda(&ok, KEEP_HARD, 2.0f, fake, fake16, fake16, fake16, fake16, fake, 0),
                  ATTN_ERR_BAD_ARGUMENT, "threshold 2");
    assert_status(masked_attention_cuda(&ok, (keep_mode)3, 0.01f, fake, fake16, fake16, fake16, fake16, fake, 0),
                  ATTN_ERR_BAD_ARGUMENT, "mode 3");
    assert_status(masked_attention_cuda(&ok, KEEP_SOFT, 0.01f, NULL, fake16, fake16, fake16, fake16, fake, 0),
                  ATTN_ERR_NULL_POINTER, "retention NULL");
    assert_status(masked_attention_cuda(&bad_g, KEEP_SOFT, 0.01f, fake, fake16, fake16, fake16, fake16, fake, 0),
                  ATTN_ERR_HEADS_NOT_DIVISIBLE, "H=6, G=4");
    assert_status(masked_attention_cuda(&bad_d, KEEP_SOFT, 0.01f, fake, fake16, fake16, fake16, fake16, fake, 0),
                  ATTN_ERR_UNSUPPORTED_D, "D=32");
    assert_status(masked_attention_cuda(&ok, KEEP_SOFT, 0.01f, fake, fake16 + 1, fake16, fake16, fake16, fake, 0),
                  ATTN_ERR_BAD_ARGUMENT, "misaligned q");
    assert_status(block_sparse_attention_cuda(&ok, NULL, 4, fake16, fake16, fake16, fake16, fake, 0),
                  ATTN_ERR_NULL_POINTER, "block_indices NULL");
    assert_status(block_sparse_attention_cuda(&ok, fake_list, 0, fake16, fake16, fake16, fake16, fake, 0),
                  ATTN_ERR_BAD_ARGUMENT, "T = 0");
    assert_status(block_sparse_attention_cuda(&bad_m, fake_list, 1, fake16, fake16, fake16, fake16, fake, 0),
                  ATTN_ERR_M_GT_N, "M > N");
    assert_status(block_sparse_attention_cuda(&ok, fake_list, 1, fake16, NULL, fake16, fake16, fake, 0),
                  ATTN_ERR_NULL_POINTER, "k = NULL");
    assert_status(block_list_check(&ok, fake_list, 0), ATTN_ERR_BAD_ARGUMENT, "T = 0");
}
