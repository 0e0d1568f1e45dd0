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

static void check_blocks(attn_shape sh, double density, int beyond, int pad)
{
    attn_rng rng;
    attn_rng_seed(&rng, attn_test_seed() * 17 + (uint64_t)sh.N * 3 + (uint64_t)(density * 1000));
    int T;
    int32_t *lists = random_block_lists(&sh, density, beyond, pad, &rng, &T);
    int32_t *per_query = per_query_lists(&sh, lists, T);
    const size_t bytes = (size_t)sh.B * sparse_query_blocks(sh.M) * sh.G * T * sizeof(int32_t);
    block_args a = {NULL, T};
    assert_ok(attn_dalloc((void **)&a.lists, bytes), "block lists");
    assert_ok(attn_h2d((void *)a.lists, lists, bytes), "block lists");
    attn_oracle_opts opts = attn_oracle_dense(&sh);
    opts.block_indices = per_query, opts.num_blocks = T, opts.block_size = SPARSE_KEY_BLOCK;
    char label[120];
    snprintf(label, sizeof label, "block density %.2f, T %d%s", density, T,
             beyond ? ", blocks past the diagonal listed" : "");
    check_bf16_kernel_labeled(&opts, 0, run_block_sparse, &a, label);
    attn_dfree((void *)a.lists);
    free(lists), free(per_query);
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

/* Small and quick: what compute-sanitizer racecheck runs on the missing-barrier variant. */
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
