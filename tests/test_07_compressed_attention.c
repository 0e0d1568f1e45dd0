/*
 * Tests of lesson 07, NSA compressed attention. Built twice: against lessons/ and solutions/.
 *
 *   c_part     the token counts by hand; compression (mean, linear with and without the position
 *              embedding) and compressed attention against the double-precision NSA oracle
 *              (common/grading/oracle_nsa_cmp.c); rows that see no compressed token
 *   cuda_part  nsa_compress_cuda and nsa_cmp_attention_cuda against the same oracle on many shapes,
 *              determinism, and tensors past 2^31 elements (against the GPU reference)
 *   speed      compression of K and V plus compressed attention, against the frozen dense causal
 *              flash kernel (lesson 03) on the same q, k, v
 *   errors     bad input gets a named error code, never a crash
 *
 * Every check runs in both NSA configurations (the paper's l = 32, d = 16 and mean-pool l = d = 64)
 * and in small ones (l = 4, d = 2, ...) where a short sequence already has many compressed tokens.
 * Compressed tensors are compared in the [B, NC, G, D] layout: a failure message's "i" is then the
 * compressed token and "h" the kv head.
 */
#include "baselines.h"
#include "compressed_attention.h"
#include "nsa.h"
#include "test_util.h"

/* Speed-up of "compress K, compress V, compressed attention" over dense causal flash attention on
 * B = 1, M = N = 16384, H = 64, G = 4, D = 128. Calibrated on an H200, where the reference runs 23.7x
 * (mean-pool) and 11.6x (paper configuration). */
#define TARGET_MEAN_POOL ATTN_TARGET_CMP_MEAN_POOL_VS_DENSE /* lesson.json */
#define TARGET_PAPER ATTN_TARGET_CMP_PAPER_VS_DENSE

#define LSE_TOL ((attn_tol){1e-3, 1e-4})

static attn_nsa_params nsa_params(int l, int d, int mode)
{
    attn_nsa_params p = attn_nsa_paper_defaults();
    p.l = l, p.d = d, p.l_sel = l > 64 ? l : 64, p.mode = mode;
    while (p.l_sel % d) p.l_sel += 1; /* l' only needs to be a multiple of d here */
    return p;
}

/* "l=32 d=16 mean" */
static const char *nsa_text(const attn_nsa_params *p, char *buf, size_t n)
{
    snprintf(buf, n, "l=%d d=%d %s", p->l, p->d, p->mode == ATTN_NSA_MEAN ? "mean" : "linear");
    return buf;
}

/* The configurations every correctness test walks through: the paper's, mean-pool, and small ones
 * where short sequences have many tokens and tiles of 64 tokens fill up. */
static attn_nsa_params kConfigs[4];
static void init_configs(void)
{
    kConfigs[0] = attn_nsa_paper_defaults();
    kConfigs[1] = attn_nsa_mean_pool();
    kConfigs[2] = nsa_params(4, 2, ATTN_NSA_MEAN);
    kConfigs[3] = nsa_params(6, 3, ATTN_NSA_MEAN);
}
#define NUM_CONFIGS 4

static void round_to_bf16(float *x, size_t n)
{
    for (size_t e = 0; e < n; ++e) x[e] = attn_bf16_to_f32(attn_f32_to_bf16(x[e]));
}

static float *random_f32(size_t n, size_t row, float scale, attn_rng *rng, int bf16)
{
    float *x = attn_alloc_f32(n);
    cr_assert(x, "out of host memory");
    attn_fill_random(x, n, row, scale, rng);
    if (bf16) round_to_bf16(x, n);
    return x;
}

static uint16_t *upload_bf16(const float *x, size_t n, const char *ctx)
{
    uint16_t *h = attn_alloc_bf16(n), *d;
    cr_assert(h, "out of host memory [%s]", ctx);
    attn_f32_to_bf16_array(x, h, n);
    assert_ok(attn_dalloc((void **)&d, n * 2), ctx);
    assert_ok(attn_h2d(d, h, n * 2), ctx);
    free(h);
    return d;
}

static uint16_t *download_bf16(const uint16_t *dev, size_t n, const char *ctx)
{
    uint16_t *h = attn_alloc_bf16(n);
    cr_assert(h, "out of host memory [%s]", ctx);
    assert_ok(attn_d2h(h, dev, n * 2), ctx);
    return h;
}

/* ================================================================ problems */

/* Compression of one tensor (keys or values) and its double-precision reference. */
typedef struct {
    attn_shape sh;
    attn_nsa_params p;
    long nc;
    int with_pos;       /* keys of linear mode: the position embedding is added */
    float *kv, *w, *pos; /* w, pos NULL in mean mode; pos NULL for values */
    double *ref;        /* [B, NC, G, D] */
    char ctx[400];
} compress_problem;

static void compress_problem_init(compress_problem *c, attn_shape sh, attn_nsa_params p, int with_pos, int bf16,
                                  uint64_t seed)
{
    memset(c, 0, sizeof *c);
    c->sh = sh, c->p = p, c->nc = attn_nsa_num_cmp(sh.N, &p), c->with_pos = with_pos && p.mode == ATTN_NSA_LINEAR;
    char nt[60];
    snprintf(c->ctx, sizeof c->ctx, "%s%s, B=%d N=%d (NC=%ld) G=%d D=%d, seed %llu (rerun: ATTN_SEED=%llu)",
             nsa_text(&p, nt, sizeof nt),
             p.mode == ATTN_NSA_LINEAR ? (c->with_pos ? ", keys (position embedding added)" : ", values (no embedding)") : "",
             sh.B, sh.N, c->nc, sh.G, sh.D, (unsigned long long)seed, (unsigned long long)seed);
    attn_rng rng;
    attn_rng_seed(&rng, seed ^ ((uint64_t)sh.N * 7919u + (uint64_t)p.l * 31u + (uint64_t)p.d));
    c->kv = random_f32(attn_kv_elems(&sh), (size_t)sh.D, 1.0f, &rng, bf16);
    if (p.mode == ATTN_NSA_LINEAR) {
        const size_t nw = (size_t)sh.G * p.l * sh.D * sh.D;
        c->w = random_f32(nw, (size_t)sh.D, 1.0f / sqrtf((float)(p.l * sh.D)), &rng, bf16);
        if (c->with_pos) c->pos = random_f32((size_t)p.l * sh.D, (size_t)sh.D, 0.5f, &rng, bf16);
    }
    c->ref = attn_alloc_f64((size_t)sh.B * c->nc * sh.G * sh.D);
    cr_assert(c->ref, "out of host memory [%s]", c->ctx);
    if (bf16 && c->with_pos) {
        /* The CUDA contract: k + pos may be rounded to bf16 before the linear map (tensor cores read
         * bf16). Over l*D products that rounding moves a result by up to ~2e-2, as much as the whole bf16
         * tolerance, so the reference sees the same rounded sums. */
        attn_nsa_params lin = p;
        double *ref = c->ref;
        const long nc = c->nc;
        for (int b = 0; b < sh.B; ++b)
            for (long i = 0; i < nc; ++i)
                for (int g = 0; g < sh.G; ++g) {
                    /* one token: x[r, c] = bf16(k[i*d + r, c] + pos[r, c]); out = x . W[g] */
                    for (int e = 0; e < sh.D; ++e) {
                        double acc = 0.0;
                        for (int r = 0; r < lin.l; ++r) {
                            const float *krow = c->kv + (((size_t)b * sh.N + i * lin.d + r) * sh.G + g) * sh.D;
                            for (int cc = 0; cc < sh.D; ++cc) {
                                const float x = attn_bf16_to_f32(attn_f32_to_bf16(krow[cc] + c->pos[(size_t)r * sh.D + cc]));
                                acc += (double)x * c->w[((size_t)g * lin.l * sh.D + (size_t)r * sh.D + cc) * sh.D + e];
                            }
                        }
                        ref[(((size_t)b * nc + i) * sh.G + g) * sh.D + e] = acc;
                    }
                }
        return;
    }
    assert_ok(attn_oracle_nsa_compress(&sh, &p, c->kv, c->w, c->pos, c->ref), c->ctx);
}

static void compress_problem_free(compress_problem *c)
{
    free(c->kv), free(c->w), free(c->pos), free(c->ref);
    memset(c, 0, sizeof *c);
}

/* The [B, NC, G, D] tensor seen as [B, M = NC, H = G, D] for attn_compare_* (i = token, h = kv head). */
static attn_shape cmp_layout(const attn_shape *sh, long nc)
{
    attn_shape cs = attn_make_shape(sh->B, (int)nc, (int)nc, sh->G, sh->G, sh->D, 0);
    return cs;
}

/* Elements of one compressed token row block past the end: they must still hold the poison. */
#define GUARD_TOKENS 2

/* Compressed attention: q and random compressed k, v (any values will do: the branch attends to
 * whatever the compression produced), and the oracle's o, lse. */
typedef struct {
    attn_shape sh;
    attn_nsa_params p;
    long nc;
    float *q, *k_cmp, *v_cmp;
    double *o_ref, *lse_ref;
    char ctx[400];
} cmp_problem;

static void cmp_problem_init(cmp_problem *c, attn_shape sh, attn_nsa_params p, int large_logits, int bf16,
                             uint64_t seed)
{
    memset(c, 0, sizeof *c);
    c->sh = sh, c->p = p, c->nc = attn_nsa_num_cmp(sh.N, &p);
    char nt[60], st[120], sc[40] = "";
    if (sh.scale != 0.0f) snprintf(sc, sizeof sc, ", scale %g", sh.scale);
    snprintf(c->ctx, sizeof c->ctx, "%s, %s (NC=%ld, token i visible iff i*d + l - 1 <= t)%s%s, seed %llu (rerun: ATTN_SEED=%llu)",
             nsa_text(&p, nt, sizeof nt), shape_text(&sh, st, sizeof st), c->nc, sc,
             large_logits ? ", large logits" : "", (unsigned long long)seed, (unsigned long long)seed);
    attn_rng rng;
    attn_rng_seed(&rng, seed ^ ((uint64_t)sh.N * 7919u + (uint64_t)sh.M * 104729u + (uint64_t)sh.D + (uint64_t)p.l));
    const size_t ncmp = (size_t)sh.B * c->nc * sh.G * sh.D;
    c->q = random_f32(attn_q_elems(&sh), (size_t)sh.D, 1.0f, &rng, 0);
    c->k_cmp = random_f32(ncmp, (size_t)sh.D, 1.0f, &rng, 0);
    c->v_cmp = random_f32(ncmp, (size_t)sh.D, 1.0f, &rng, 0);
    if (large_logits) add_large_logits(c->q, attn_q_elems(&sh), c->k_cmp, ncmp, sh.D);
    if (bf16) round_to_bf16(c->q, attn_q_elems(&sh)), round_to_bf16(c->k_cmp, ncmp), round_to_bf16(c->v_cmp, ncmp);
    c->o_ref = attn_alloc_f64(attn_q_elems(&sh));
    c->lse_ref = attn_alloc_f64(attn_lse_elems(&sh));
    cr_assert(c->o_ref && c->lse_ref, "out of host memory [%s]", c->ctx);
    assert_ok(attn_oracle_nsa_cmp_attention(&sh, &p, c->q, c->k_cmp, c->v_cmp, c->o_ref, c->lse_ref), c->ctx);
}

static void cmp_problem_free(cmp_problem *c)
{
    free(c->q), free(c->k_cmp), free(c->v_cmp), free(c->o_ref), free(c->lse_ref);
    memset(c, 0, sizeof *c);
}

/* Rows that see no compressed token get exactly o = 0 and lse = -inf: a dedicated message, since a
 * NaN there is the classic mistake (0 / 0 after a softmax over nothing). */
static void expect_empty_rows(const cmp_problem *c, const float *o, const uint16_t *o16, const float *lse)
{
    const attn_shape *sh = &c->sh;
    for (int b = 0; b < sh->B; ++b)
        for (int i = 0; i < sh->M; ++i) {
            const long t = attn_query_pos(sh, i);
            if (attn_nsa_cmp_visible_count(t, c->nc, &c->p) > 0) continue;
            for (int h = 0; h < sh->H; ++h) {
                const float l = lse[((size_t)b * sh->H + h) * sh->M + i];
                cr_assert(isinf(l) && l < 0,
                          "b=%d i=%d (t=%ld) h=%d sees no compressed token (t < l - 1 = %d): lse must be -inf, got %g [%s]",
                          b, i, t, h, c->p.l - 1, l, c->ctx);
                for (int d = 0; d < sh->D; ++d) {
                    const size_t e = (((size_t)b * sh->M + i) * sh->H + h) * sh->D + d;
                    const float x = o ? o[e] : attn_bf16_to_f32(o16[e]);
                    cr_assert(x == 0.0f,
                              "b=%d i=%d (t=%ld) h=%d d=%d sees no compressed token (t < l - 1 = %d): o must be 0, "
                              "got %g%s [%s]",
                              b, i, t, h, d, c->p.l - 1, x, isnan(x) ? " (0 / 0 of a softmax over no token?)" : "",
                              c->ctx);
                }
            }
        }
}

/* ================================================================ C part */

ATTN_TEST(c_part, counts_by_hand)
{
    struct {
        int l, d;
        long N, t, nc, visible;
    } cases[] = {
        /* the README's example: N = 10, l = 4, d = 2 -> tokens [0,3] [2,5] [4,7] [6,9] */
        {4, 2, 10, 0, 4, 0}, {4, 2, 10, 2, 4, 0}, {4, 2, 10, 3, 4, 1}, {4, 2, 10, 4, 4, 1}, {4, 2, 10, 5, 4, 2},
        {4, 2, 10, 6, 4, 2}, {4, 2, 10, 7, 4, 3}, {4, 2, 10, 8, 4, 3}, {4, 2, 10, 9, 4, 4},
        {4, 2, 11, 10, 4, 4}, /* key 10 starts a token that would end at key 11: not there yet */
        {4, 2, 3, 2, 0, 0},   /* N < l: no token at all */
        /* the paper's l = 32, d = 16 */
        {32, 16, 100, 30, 5, 0}, {32, 16, 100, 31, 5, 1}, {32, 16, 100, 46, 5, 1}, {32, 16, 100, 47, 5, 2},
        {32, 16, 100, 99, 5, 5}, {32, 16, 31, 30, 0, 0}, {32, 16, 32, 31, 1, 1}, {32, 16, 65536, 65535, 4095, 4095},
        /* mean-pool l = d = 64 */
        {64, 64, 100, 62, 1, 0}, {64, 64, 100, 63, 1, 1}, {64, 64, 100, 99, 1, 1}, {64, 64, 128, 127, 2, 2},
        {64, 64, 65536, 65535, 1024, 1024}, {64, 64, 65536, 4095, 1024, 64},
        /* l = d = 1: every key is its own token */
        {1, 1, 5, 0, 5, 1}, {1, 1, 5, 4, 5, 5},
    };
    for (int c = 0; c < (int)(sizeof cases / sizeof cases[0]); ++c) {
        attn_nsa_params p = nsa_params(cases[c].l, cases[c].d, ATTN_NSA_MEAN);
        long nc = -1, visible = -1;
        char ctx[120];
        snprintf(ctx, sizeof ctx, "l=%d d=%d N=%ld t=%ld", p.l, p.d, cases[c].N, cases[c].t);
        assert_ok(nsa_cmp_counts(cases[c].N, cases[c].t, &p, &nc, &visible), ctx);
        cr_assert(nc == cases[c].nc, "%s: %ld compressed tokens, expected %ld = max(0, floor((N - l) / d) + 1)", ctx, nc,
                  cases[c].nc);
        cr_assert(visible == cases[c].visible,
                  "%s: position t sees %ld compressed tokens, expected %ld (token i is visible iff i*d + l - 1 <= t)",
                  ctx, visible, cases[c].visible);
    }
}

/* Run nsa_compress_cpu on poisoned outputs with a guard of GUARD_TOKENS tokens past the end. */
static void check_compress_cpu(attn_shape sh, attn_nsa_params p, int with_pos)
{
    compress_problem c;
    compress_problem_init(&c, sh, p, with_pos, 0, attn_test_seed());
    const size_t n = (size_t)sh.B * c.nc * sh.G * sh.D, guard = (size_t)GUARD_TOKENS * sh.G * sh.D;
    float *out = attn_alloc_f32(n + guard);
    cr_assert(out, "out of host memory [%s]", c.ctx);
    attn_poison(out, (n + guard) * 4);
    assert_ok(nsa_compress_cpu(&sh, &p, c.kv, c.w, c.pos, out), c.ctx);
    for (size_t e = n; e < n + guard; ++e)
        cr_assert(attn_is_poison_f32(out[e]),
                  "wrote past the last compressed token (element %zu of the guard after NC = %ld tokens): count "
                  "the tokens as floor((N - l) / d) + 1 [%s]", e - n, c.nc, c.ctx);
    if (c.nc > 0) {
        const attn_shape cs = cmp_layout(&sh, c.nc);
        attn_cmp r;
        attn_compare_f32(&r, "kv_cmp", ATTN_LAYOUT_BMHD, &cs, 0, out, c.ref, ATTN_TOL_F32);
        cr_assert(r.ok, "%s [i = compressed token, h = kv head; %s]", r.message, c.ctx);
    }
    free(out);
    compress_problem_free(&c);
}

static const attn_shape kCompressShapes[] = {
    {1, 1, 1, 1, 1, 16, 0.0f, 1},    /* one key: no token in any configuration */
    {1, 31, 31, 2, 2, 32, 0.0f, 1},  /* just short of the paper's first token */
    {2, 100, 100, 2, 2, 64, 0.0f, 1}, /* N a multiple of neither l nor d; batch 2 */
    {1, 64, 64, 1, 1, 16, 0.0f, 1},  /* exactly one mean-pool block */
    {3, 129, 129, 4, 4, 8, 0.0f, 1}, /* batch 3, four kv heads */
    {1, 70, 70, 2, 2, 128, 0.0f, 1},
};
#define NUM_COMPRESS_SHAPES ((int)(sizeof kCompressShapes / sizeof kCompressShapes[0]))

ATTN_TEST(c_part, compress_mean)
{
    init_configs();
    for (int c = 0; c < NUM_CONFIGS; ++c)
        for (int s = 0; s < NUM_COMPRESS_SHAPES; ++s) check_compress_cpu(kCompressShapes[s], kConfigs[c], 0);
}

ATTN_TEST(c_part, compress_linear)
{
    /* keys (embedding added) and values (none), small D so that the C part stays quick */
    const attn_nsa_params ps[] = {nsa_params(32, 16, ATTN_NSA_LINEAR), nsa_params(4, 2, ATTN_NSA_LINEAR),
                                  nsa_params(8, 8, ATTN_NSA_LINEAR)};
    const attn_shape shapes[] = {{1, 100, 100, 2, 2, 16, 0.0f, 1}, {2, 37, 37, 2, 1, 32, 0.0f, 1},
                                 {1, 50, 50, 1, 1, 64, 0.0f, 1}, {1, 3, 3, 1, 1, 16, 0.0f, 1},
                                 {2, 77, 77, 3, 3, 16, 0.0f, 1}}; /* B > 1 and G > 1 at once */
    for (int c = 0; c < 3; ++c)
        for (int s = 0; s < (int)(sizeof shapes / sizeof shapes[0]); ++s) {
            check_compress_cpu(shapes[s], ps[c], 1);
            check_compress_cpu(shapes[s], ps[c], 0);
        }
}

static void check_cmp_attention_cpu(attn_shape sh, attn_nsa_params p, int large_logits)
{
    cmp_problem c;
    cmp_problem_init(&c, sh, p, large_logits, 0, attn_test_seed());
    float *o = attn_alloc_f32(attn_q_elems(&sh)), *lse = attn_alloc_f32(attn_lse_elems(&sh));
    cr_assert(o && lse, "out of host memory [%s]", c.ctx);
    attn_poison(o, attn_q_elems(&sh) * 4), attn_poison(lse, attn_lse_elems(&sh) * 4);
    float dummy[4] = {0};
    assert_ok(nsa_cmp_attention_cpu(&sh, &p, c.q, c.nc ? c.k_cmp : dummy, c.nc ? c.v_cmp : dummy, o, lse), c.ctx);
    expect_empty_rows(&c, o, NULL, lse);
    const attn_tol tol = large_logits ? ATTN_TOL_F32_LARGE : ATTN_TOL_F32;
    attn_cmp r;
    const attn_rule rule = attn_rule_compressed(p.l, p.d); /* the hints state the compressed-token rule */
    attn_compare_f32_rule(&r, "o", ATTN_LAYOUT_BMHD, &sh, &rule, o, c.o_ref, tol);
    cr_assert(r.ok, "%s [%s]", r.message, c.ctx);
    attn_compare_f32_rule(&r, "lse", ATTN_LAYOUT_BHM, &sh, &rule, lse, c.lse_ref, tol);
    cr_assert(r.ok, "%s [%s]", r.message, c.ctx);
    free(o), free(lse);
    cmp_problem_free(&c);
}

ATTN_TEST(c_part, cmp_attention)
{
    init_configs();
    const attn_shape shapes[] = {
        {1, 1, 1, 1, 1, 16, 0.0f, 1},       /* N = 1: no token */
        {1, 20, 20, 2, 1, 32, 0.0f, 1},     /* N < l of the paper and mean-pool */
        {2, 37, 100, 4, 2, 16, 0.0f, 1},    /* batch 2, M < N, N a multiple of neither l nor d */
        {1, 1, 300, 8, 2, 64, 0.0f, 1},     /* decoding: one query */
        {1, 150, 150, 16, 1, 16, 0.0f, 1},  /* 16 heads per kv head */
        {1, 90, 130, 4, 4, 128, 0.0f, 1},   /* MHA, D = 128 */
        {2, 40, 200, 6, 3, 64, 0.3f, 1},    /* a scale that is not 1/sqrt(D) */
    };
    for (int c = 0; c < NUM_CONFIGS; ++c)
        for (int s = 0; s < (int)(sizeof shapes / sizeof shapes[0]); ++s) check_cmp_attention_cpu(shapes[s], kConfigs[c], 0);
    check_cmp_attention_cpu(attn_make_shape(1, 120, 120, 2, 1, 64, 1), kConfigs[2], 1);
}

ATTN_TEST(c_part, rows_that_see_nothing)
{
    /* t < l - 1 sees no token: the first 31 positions with the paper's l = 32, the first 63 with
     * mean-pool, and every position when N < l */
    init_configs();
    check_cmp_attention_cpu(attn_make_shape(1, 40, 40, 4, 2, 32, 1), kConfigs[0], 0);
    check_cmp_attention_cpu(attn_make_shape(2, 70, 70, 2, 2, 16, 1), kConfigs[1], 0);
    check_cmp_attention_cpu(attn_make_shape(1, 30, 30, 2, 1, 16, 1), kConfigs[0], 0);
    check_cmp_attention_cpu(attn_make_shape(1, 10, 63, 4, 4, 16, 1), kConfigs[1], 0);
}

/* ================================================================ CUDA part */

/* nsa_compress_cuda on poisoned outputs with a guard past the end, against the oracle. */
static void check_compress_cuda(attn_shape sh, attn_nsa_params p, int with_pos)
{
    compress_problem c;
    compress_problem_init(&c, sh, p, with_pos, 1, attn_test_seed());
    const size_t nkv = attn_kv_elems(&sh), n = (size_t)sh.B * c.nc * sh.G * sh.D,
                 guard = (size_t)GUARD_TOKENS * sh.G * sh.D;
    uint16_t *dkv = upload_bf16(c.kv, nkv, c.ctx), *dw = NULL, *dpos = NULL, *dout;
    if (c.w) dw = upload_bf16(c.w, (size_t)sh.G * p.l * sh.D * sh.D, c.ctx);
    if (c.pos) dpos = upload_bf16(c.pos, (size_t)p.l * sh.D, c.ctx);
    assert_ok(attn_dalloc((void **)&dout, (n + guard) * 2), c.ctx); /* poisoned */
    assert_ok(nsa_compress_cuda(&sh, &p, dkv, dw, dpos, dout, 0), c.ctx);
    assert_ok(attn_dsync(), c.ctx);
    uint16_t *out = download_bf16(dout, n + guard, c.ctx);
    for (size_t e = n; e < n + guard; ++e)
        cr_assert(attn_is_poison_bf16(out[e]),
                  "wrote past the last compressed token (element %zu of the guard after NC = %ld tokens): count "
                  "the tokens as floor((N - l) / d) + 1 [%s]", e - n, c.nc, c.ctx);
    if (c.nc > 0) {
        const attn_shape cs = cmp_layout(&sh, c.nc);
        attn_cmp r;
        attn_compare_bf16(&r, "kv_cmp", ATTN_LAYOUT_BMHD, &cs, 0, out, c.ref, ATTN_TOL_BF16);
        cr_assert(r.ok, "%s [i = compressed token, h = kv head; %s]", r.message, c.ctx);
    }
    free(out);
    attn_dfree(dkv), attn_dfree(dw), attn_dfree(dpos), attn_dfree(dout);
    compress_problem_free(&c);
}

static const attn_shape kCompressShapesGpu[] = {
    {1, 1, 1, 1, 1, 64, 0.0f, 1},      /* no token */
    {2, 100, 100, 2, 2, 64, 0.0f, 1},  /* N a multiple of neither l nor d; batch 2 */
    {1, 300, 300, 4, 4, 128, 0.0f, 1},
    {3, 129, 129, 1, 1, 128, 0.0f, 1}, /* batch 3, one kv head */
    {1, 1100, 1100, 2, 2, 64, 0.0f, 1}, /* more than 64 tokens per (b, g): several blocks */
};
#define NUM_COMPRESS_SHAPES_GPU ((int)(sizeof kCompressShapesGpu / sizeof kCompressShapesGpu[0]))

ATTN_TEST(cuda_part, compress_mean)
{
    require_gpu();
    init_configs();
    for (int c = 0; c < NUM_CONFIGS; ++c)
        for (int s = 0; s < NUM_COMPRESS_SHAPES_GPU; ++s) check_compress_cuda(kCompressShapesGpu[s], kConfigs[c], 0);
}

ATTN_TEST(cuda_part, compress_linear)
{
    require_gpu();
    const attn_nsa_params ps[] = {nsa_params(32, 16, ATTN_NSA_LINEAR), nsa_params(64, 64, ATTN_NSA_LINEAR),
                                  nsa_params(4, 2, ATTN_NSA_LINEAR)};
    for (int c = 0; c < 3; ++c)
        for (int s = 0; s < NUM_COMPRESS_SHAPES_GPU; ++s) {
            check_compress_cuda(kCompressShapesGpu[s], ps[c], 1);
            check_compress_cuda(kCompressShapesGpu[s], ps[c], 0);
        }
}

/* nsa_cmp_attention_cuda on poisoned outputs against the oracle (bf16 inputs, the oracle sees the
 * rounded values). */
static void check_cmp_attention_cuda(attn_shape sh, attn_nsa_params p, int large_logits)
{
    cmp_problem c;
    cmp_problem_init(&c, sh, p, large_logits, 1, attn_test_seed());
    const size_t nq = attn_q_elems(&sh), nl = attn_lse_elems(&sh), ncmp = (size_t)sh.B * c.nc * sh.G * sh.D;
    uint16_t *dq = upload_bf16(c.q, nq, c.ctx), *dk, *dv, *d_o;
    float *dlse;
    if (ncmp) {
        dk = upload_bf16(c.k_cmp, ncmp, c.ctx), dv = upload_bf16(c.v_cmp, ncmp, c.ctx);
    } else { /* no token: the kernel must not read these (memcheck would see it) */
        assert_ok(attn_dalloc((void **)&dk, 16), c.ctx);
        assert_ok(attn_dalloc((void **)&dv, 16), c.ctx);
    }
    assert_ok(attn_dalloc((void **)&d_o, nq * 2), c.ctx); /* poisoned */
    assert_ok(attn_dalloc((void **)&dlse, nl * 4), c.ctx);
    assert_ok(nsa_cmp_attention_cuda(&sh, &p, dq, dk, dv, d_o, dlse, 0), c.ctx);
    assert_ok(attn_dsync(), c.ctx);
    uint16_t *o = download_bf16(d_o, nq, c.ctx);
    float *lse = download_f32(dlse, nl, c.ctx);
    attn_cmp r;
    const attn_rule rule = attn_rule_compressed(p.l, p.d);
    attn_compare_bf16_rule(&r, "o", ATTN_LAYOUT_BMHD, &sh, &rule, o, c.o_ref, ATTN_TOL_BF16);
    cr_assert(r.ok, "%s [%s]", r.message, c.ctx);
    attn_compare_f32_rule(&r, "lse", ATTN_LAYOUT_BHM, &sh, &rule, lse, c.lse_ref, LSE_TOL);
    cr_assert(r.ok, "%s [%s]", r.message, c.ctx);
    expect_empty_rows(&c, NULL, o, lse);
    free(o), free(lse);
    attn_dfree(dq), attn_dfree(dk), attn_dfree(dv), attn_dfree(d_o), attn_dfree(dlse);
    cmp_problem_free(&c);
}

ATTN_TEST(cuda_part, cmp_attention_shapes)
{
    require_gpu();
    init_configs();
    const attn_shape shapes[] = {
        {1, 1, 1, 1, 1, 64, 0.0f, 1},       /* N = 1: no token, every row o = 0, lse = -inf */
        {1, 20, 20, 2, 1, 128, 0.0f, 1},    /* N < l */
        {2, 37, 100, 4, 2, 64, 0.0f, 1},    /* batch 2, M < N, N a multiple of neither l nor d */
        {1, 1, 300, 8, 2, 128, 0.0f, 1},    /* decoding: one query */
        {1, 333, 333, 2, 1, 64, 0.0f, 1},   /* MQA */
        {3, 17, 200, 8, 8, 64, 0.0f, 1},    /* batch 3, MHA */
        {1, 130, 4200, 4, 4, 64, 0.0f, 1},  /* several 64-token tiles in every configuration */
        {1, 300, 2000, 8, 2, 128, 0.0f, 1}, /* many tiles, the causal edge inside the block */
        {2, 60, 500, 6, 3, 128, 0.3f, 1},   /* a scale that is not 1/sqrt(D) */
    };
    for (int c = 0; c < NUM_CONFIGS; ++c)
        for (int s = 0; s < (int)(sizeof shapes / sizeof shapes[0]); ++s) check_cmp_attention_cuda(shapes[s], kConfigs[c], 0);
}

ATTN_TEST(cuda_part, cmp_attention_gqa)
{
    require_gpu();
    init_configs();
    /* heads per kv head 1, 2, 3 (does not divide the 128-row block), 16 */
    const int hg[][2] = {{16, 16}, {16, 8}, {12, 4}, {32, 2}};
    for (int c = 0; c < 2; ++c)
        for (int k = 0; k < 4; ++k) {
            check_cmp_attention_cuda(attn_make_shape(1, 300, 1100, hg[k][0], hg[k][1], 64, 1), kConfigs[c], 0);
            check_cmp_attention_cuda(attn_make_shape(2, 45, 700, hg[k][0], hg[k][1], 128, 1), kConfigs[(c + k) % 4], 0);
        }
}

ATTN_TEST(cuda_part, cmp_attention_edges)
{
    require_gpu();
    init_configs();
    /* around the first token (t = l - 1), around 64 tokens (one tile), prefill and decoding */
    const int ns[] = {1, 30, 31, 32, 47, 48, 63, 64, 65, 129, 130, 131, 132};
    for (int c = 0; c < NUM_CONFIGS; ++c)
        for (int a = 0; a < (int)(sizeof ns / sizeof ns[0]); ++a) {
            check_cmp_attention_cuda(attn_make_shape(1, ns[a], ns[a], 16, 2, 64, 1), kConfigs[c], 0);
            check_cmp_attention_cuda(attn_make_shape(1, 1, ns[a], 4, 1, 128, 1), kConfigs[c], 0);
        }
    /* one head per kv head, l = 4, d = 2: the second row block starts at t = 128, which sees exactly 63
     * tokens while t = 129 sees 64, so its first tile must be masked for its first row */
    check_cmp_attention_cuda(attn_make_shape(1, 300, 300, 2, 2, 64, 1), kConfigs[2], 0);
    check_cmp_attention_cuda(attn_make_shape(1, 250, 250, 6, 3, 64, 1), kConfigs[2], 1); /* large logits */
    check_cmp_attention_cuda(attn_make_shape(1, 1000, 4000, 4, 2, 128, 1), kConfigs[0], 1);
}

/* Compression of keys and values (linear: keys with the position embedding, values without; mean: w and
 * pos NULL), then attention over what the kernel compressed. */
static void small_pipeline(attn_nsa_params p, attn_shape sh, uint64_t seed, int check_outputs, uint16_t **o_out,
                           float **lse_out, uint16_t **kc_out)
{
    compress_problem ck, cv;
    compress_problem_init(&ck, sh, p, 1, 1, seed);
    compress_problem_init(&cv, sh, p, 0, 1, seed * 3 + 1);
    const long nc = ck.nc;
    const size_t nkv = attn_kv_elems(&sh), ncmp = (size_t)sh.B * nc * sh.G * sh.D, nq = attn_q_elems(&sh),
                 nl = attn_lse_elems(&sh), nw = (size_t)sh.G * p.l * sh.D * sh.D;
    attn_rng rng;
    attn_rng_seed(&rng, seed + 17);
    float *q = random_f32(nq, (size_t)sh.D, 1.0f, &rng, 1);
    uint16_t *dk = upload_bf16(ck.kv, nkv, ck.ctx), *dv = upload_bf16(cv.kv, nkv, ck.ctx);
    /* mean mode: w and pos unused, passed as NULL (compressed_attention.h) */
    const int linear = p.mode == ATTN_NSA_LINEAR;
    uint16_t *dwk = linear ? upload_bf16(ck.w, nw, ck.ctx) : NULL, *dwv = linear ? upload_bf16(cv.w, nw, ck.ctx) : NULL;
    uint16_t *dpos = linear ? upload_bf16(ck.pos, (size_t)p.l * sh.D, ck.ctx) : NULL, *dq = upload_bf16(q, nq, ck.ctx);
    uint16_t *dkc, *dvc, *d_o;
    float *dlse;
    assert_ok(attn_dalloc((void **)&dkc, ncmp * 2), ck.ctx);
    assert_ok(attn_dalloc((void **)&dvc, ncmp * 2), ck.ctx);
    assert_ok(attn_dalloc((void **)&d_o, nq * 2), ck.ctx);
    assert_ok(attn_dalloc((void **)&dlse, nl * 4), ck.ctx);
    assert_ok(nsa_compress_cuda(&sh, &p, dk, dwk, dpos, dkc, 0), ck.ctx);
    assert_ok(nsa_compress_cuda(&sh, &p, dv, dwv, NULL, dvc, 0), ck.ctx);
    assert_ok(nsa_cmp_attention_cuda(&sh, &p, dq, dkc, dvc, d_o, dlse, 0), ck.ctx);
    assert_ok(attn_dsync(), ck.ctx);
    uint16_t *kc = download_bf16(dkc, ncmp, ck.ctx), *vc = download_bf16(dvc, ncmp, ck.ctx), *o = download_bf16(d_o, nq, ck.ctx);
    float *lse = download_f32(dlse, nl, ck.ctx);
    if (check_outputs) {
        const attn_shape cs = cmp_layout(&sh, nc);
        attn_cmp r;
        attn_compare_bf16(&r, "k_cmp", ATTN_LAYOUT_BMHD, &cs, 0, kc, ck.ref, ATTN_TOL_BF16);
        cr_assert(r.ok, "%s [i = compressed token, h = kv head; %s]", r.message, ck.ctx);
        attn_compare_bf16(&r, "v_cmp", ATTN_LAYOUT_BMHD, &cs, 0, vc, cv.ref, ATTN_TOL_BF16);
        cr_assert(r.ok, "%s [i = compressed token, h = kv head; %s]", r.message, cv.ctx);
        /* attention over exactly what the kernel compressed */
        float *kf = attn_alloc_f32(ncmp), *vf = attn_alloc_f32(ncmp);
        double *o_ref = attn_alloc_f64(nq), *lse_ref = attn_alloc_f64(nl);
        attn_bf16_to_f32_array(kc, kf, ncmp), attn_bf16_to_f32_array(vc, vf, ncmp);
        assert_ok(attn_oracle_nsa_cmp_attention(&sh, &p, q, kf, vf, o_ref, lse_ref), ck.ctx);
        const attn_rule rule = attn_rule_compressed(p.l, p.d);
        attn_compare_bf16_rule(&r, "o", ATTN_LAYOUT_BMHD, &sh, &rule, o, o_ref, ATTN_TOL_BF16);
        cr_assert(r.ok, "%s [compressed attention after the compression; %s]", r.message, ck.ctx);
        attn_compare_f32_rule(&r, "lse", ATTN_LAYOUT_BHM, &sh, &rule, lse, lse_ref, LSE_TOL);
        cr_assert(r.ok, "%s [compressed attention after the compression; %s]", r.message, ck.ctx);
        free(kf), free(vf), free(o_ref), free(lse_ref);
    }
    if (o_out) *o_out = o; else free(o);
    if (lse_out) *lse_out = lse; else free(lse);
    if (kc_out) *kc_out = kc; else free(kc);
    free(vc), free(q);
    attn_dfree(dk), attn_dfree(dv), attn_dfree(dwk), attn_dfree(dwv), attn_dfree(dpos), attn_dfree(dq);
    attn_dfree(dkc), attn_dfree(dvc), attn_dfree(d_o), attn_dfree(dlse);
    compress_problem_free(&ck), compress_problem_free(&cv);
}

/* The launch order's kv-head chunks of the attention kernel (compressed_attention.cu: the kv heads whose
 * compressed K and V fit in half of L2 run together): at the smallest N where this GPU's L2 splits the G
 * kv heads into chunks with a partial last one (l2_split_keys in test_util.h), which no shape above
 * reaches. Random compressed K and V of that many tokens, against the fp32 GPU reference with the
 * compressed rule. */
typedef struct {
    attn_shape sh; /* N = the number of keys (positions) */
    attn_nsa_params p;
} cmp_run;

static int run_cmp_attention(void *ctx, const attn_shape *tokens, const uint16_t *q, const uint16_t *k,
                             const uint16_t *v, uint16_t *o, float *lse)
{
    (void)tokens; /* the buffers' shape: N = NC compressed tokens */
    const cmp_run *c = (const cmp_run *)ctx;
    return nsa_cmp_attention_cuda(&c->sh, &c->p, q, k, v, o, lse, 0);
}

typedef struct {
    int D;
    attn_nsa_params p;
} cmp_bytes_ctx;

/* compressed K and V of one kv head over n keys: 4 NC D bytes (bf16) */
static double cmp_head_bytes(long n, void *ctx)
{
    const cmp_bytes_ctx *c = (const cmp_bytes_ctx *)ctx;
    return 4.0 * (double)attn_nsa_num_cmp(n, &c->p) * c->D;
}

ATTN_TEST(cuda_part, cmp_attention_group_chunks)
{
    require_gpu();
    const attn_nsa_params ps[2] = {nsa_params(4, 2, ATTN_NSA_MEAN), attn_nsa_paper_defaults()};
    const int D[2] = {128, 64}, G[2] = {8, 6}, H[2] = {16, 18}, M[2] = {150, 45};
    for (int c = 0; c < 2; ++c) {
        cmp_bytes_ctx bc = {D[c], ps[c]};
        int per = 0;
        const int N = l2_split_keys(G[c], cmp_head_bytes, &bc, M[c] + 3, 1 << 24, 61, &per);
        cmp_run run = {with_scale(attn_make_shape(2, M[c], N, H[c], G[c], D[c], 1), c ? 0.1f : 0.0f), ps[c]};
        const long nc = attn_nsa_num_cmp(N, &ps[c]);
        attn_shape tokens = run.sh; /* the buffers: k, v hold NC tokens */
        tokens.N = (int)nc;
        attn_gpu_ref_opts ref;
        memset(&ref, 0, sizeof ref);
        ref.shape = tokens, ref.positions = N, ref.cmp_l = ps[c].l, ref.cmp_d = ps[c].d;
        char what[200], nt[24];
        snprintf(what, sizeof what, "nsa_cmp_attention_cuda, %s, N=%d positions (NC=%ld), %d kv heads in L2 chunks of "
                 "%d (the last one partial)", nsa_text(&ps[c], nt, sizeof nt), N, nc, G[c], per);
        check_on_device(tokens, run_cmp_attention, &run, &ref, NULL, NULL, what,
                        "Hint: every kv head of every chunk, the last (partial) chunk too, must be computed once");
    }
}

/* Compressed k and v past 2^31 elements: with l = 2, d = 1 there are N - 1 tokens, and B = 64, N = 4200,
 * H = G = 64, D = 128 give k_cmp and v_cmp of 2.2e9 elements each (M = 130 queries). Random compressed
 * K and V, against the fp32 GPU reference with the compressed rule. */
ATTN_TEST(cuda_part, offsets_past_2_31_cmp_tokens)
{
    require_gpu();
    const attn_nsa_params p = nsa_params(2, 1, ATTN_NSA_MEAN);
    cmp_run run = {attn_make_shape(64, 130, 4200, 64, 64, 128, 1), p};
    attn_shape tokens = run.sh; /* the buffers: k, v hold NC tokens */
    tokens.N = (int)attn_nsa_num_cmp(run.sh.N, &p);
    attn_gpu_ref_opts ref;
    memset(&ref, 0, sizeof ref);
    ref.shape = tokens, ref.positions = run.sh.N, ref.cmp_l = p.l, ref.cmp_d = p.d;
    check_huge_kv(tokens, run_cmp_attention, &run, &ref,
                  "nsa_cmp_attention_cuda, l=2 d=1, N=4200 positions: k_cmp and v_cmp past 2^31 elements");
}

/* Small and quick: what compute-sanitizer racecheck ran before sanitizer_paths. Linear compression; both
 * shapes have 74 tokens, so that the late row blocks walk two key tiles (a barrier between tiles can be
 * missed only then). */
ATTN_TEST(cuda_part, small_pipeline)
{
    require_gpu();
    const uint64_t seed = attn_test_seed();
    small_pipeline(nsa_params(32, 16, ATTN_NSA_LINEAR), attn_make_shape(1, 200, 1200, 8, 2, 64, 1), seed, 1, NULL, NULL,
                   NULL);
    small_pipeline(nsa_params(4, 2, ATTN_NSA_LINEAR), attn_make_shape(2, 150, 150, 4, 4, 128, 1), seed, 1, NULL, NULL,
                   NULL);
}

/* What ./course grade runs compute-sanitizer memcheck and racecheck on (lesson.json, "sanitize"): every
 * kernel and instance: mean compression (w and pos NULL) and linear compression (keys with the position
 * embedding, values without), each for D = 64 and 128, and compressed attention for D = 64 and 128 over
 * 74 or 75 tokens (two key tiles for the late row blocks), with rows that see no token, several packed
 * row blocks, B > 1 and G > 1. small_pipeline's two cases come first, as they were. */
ATTN_TEST(cuda_part, sanitizer_paths)
{
    require_gpu();
    const uint64_t seed = attn_test_seed();
    small_pipeline(nsa_params(32, 16, ATTN_NSA_LINEAR), attn_make_shape(1, 200, 1200, 8, 2, 64, 1), seed, 1, NULL, NULL,
                   NULL);
    small_pipeline(nsa_params(4, 2, ATTN_NSA_LINEAR), attn_make_shape(2, 150, 150, 4, 4, 128, 1), seed, 1, NULL, NULL,
                   NULL);
    small_pipeline(nsa_params(4, 2, ATTN_NSA_MEAN), attn_make_shape(2, 150, 150, 4, 2, 64, 1), seed, 1, NULL, NULL, NULL);
    small_pipeline(nsa_params(6, 3, ATTN_NSA_MEAN), attn_make_shape(2, 100, 230, 6, 2, 128, 1), seed, 1, NULL, NULL,
                   NULL);
}

ATTN_TEST(cuda_part, determinism)
{
    require_gpu();
    const attn_nsa_params p = nsa_params(32, 16, ATTN_NSA_LINEAR);
    const attn_shape sh = attn_make_shape(2, 300, 1200, 16, 4, 128, 1);
    /* the same seed twice: the same inputs, so the outputs must be the same bits */
    const uint64_t seed = attn_test_seed();
    uint16_t *o[2], *kc[2];
    float *lse[2];
    for (int run = 0; run < 2; ++run) small_pipeline(p, sh, seed, 0, &o[run], &lse[run], &kc[run]);
    const long nc = attn_nsa_num_cmp(sh.N, &p);
    const size_t ncmp = (size_t)sh.B * nc * sh.G * sh.D;
    for (size_t e = 0; e < ncmp; ++e)
        cr_assert(kc[0][e] == kc[1][e], "k_cmp element %zu differs between two runs on the same inputs: 0x%04x vs 0x%04x "
                  "(a race, or an accumulation order that depends on timing) [seed %llu]", e, kc[0][e], kc[1][e],
                  (unsigned long long)seed);
    for (size_t e = 0; e < attn_q_elems(&sh); ++e)
        cr_assert(o[0][e] == o[1][e], "o element %zu differs between two runs on the same inputs: 0x%04x vs 0x%04x "
                  "(a race, or an accumulation order that depends on timing) [seed %llu]", e, o[0][e], o[1][e],
                  (unsigned long long)seed);
    cr_assert(memcmp(lse[0], lse[1], attn_lse_elems(&sh) * 4) == 0,
              "lse differs between two runs on the same inputs [seed %llu]", (unsigned long long)seed);
    for (int run = 0; run < 2; ++run) free(o[run]), free(lse[run]), free(kc[run]);
}

/* Free device memory, to skip (not fail) the big tests on a small GPU. */
static void require_device_memory(double gib)
{
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess || (double)free_b < gib * 1073741824.0)
        attn_skip_test("this test needs %.0f GiB of free GPU memory (%.1f GiB free)", gib, (double)free_b / 1073741824.0);
}

/* Coordinates (b, i, h, d) of a flat [B, M, H, D] index, for messages. */
static void bmhd_text(const attn_shape *sh, size_t e, char *buf, size_t n)
{
    const size_t d = e % sh->D, h = (e / sh->D) % sh->H, i = (e / ((size_t)sh->D * sh->H)) % sh->M,
                 b = e / ((size_t)sh->D * sh->H * sh->M);
    snprintf(buf, n, "b=%zu i=%zu (t=%ld) h=%zu d=%zu", b, i, (long)sh->N - sh->M + (long)i, h, d);
}

ATTN_TEST(cuda_part, offsets_past_2_31_attention)
{
    require_gpu();
    require_device_memory(24.0);
    /* q and o have B*M*H*D = 2.2e9 elements: an int offset wraps around */
    const attn_shape sh = attn_make_shape(64, 4200, 4200, 64, 4, 128, 1);
    const attn_nsa_params p = attn_nsa_paper_defaults();
    const long nc = attn_nsa_num_cmp(sh.N, &p);
    const uint64_t seed = attn_test_seed();
    char st[120], ctx[300];
    snprintf(ctx, sizeof ctx, "l=32 d=16 mean, %s (NC=%ld), q has %zu elements, seed %llu (rerun: ATTN_SEED=%llu)",
             shape_text(&sh, st, sizeof st), nc, attn_q_elems(&sh), (unsigned long long)seed, (unsigned long long)seed);
    const size_t nq = attn_q_elems(&sh), nkv = attn_kv_elems(&sh), nl = attn_lse_elems(&sh),
                 ncmp = (size_t)sh.B * nc * sh.G * sh.D;
    uint16_t *q, *k, *v, *kc, *vc, *o;
    float *lse, *o_ref, *lse_ref;
    assert_ok(attn_dalloc((void **)&q, nq * 2), ctx);
    assert_ok(attn_dalloc((void **)&k, nkv * 2), ctx);
    assert_ok(attn_dalloc((void **)&v, nkv * 2), ctx);
    assert_ok(attn_dalloc((void **)&kc, ncmp * 2), ctx);
    assert_ok(attn_dalloc((void **)&vc, ncmp * 2), ctx);
    assert_ok(attn_dalloc((void **)&o, nq * 2), ctx);
    assert_ok(attn_dalloc((void **)&lse, nl * 4), ctx);
    assert_ok(attn_dalloc((void **)&o_ref, nq * 4), ctx);
    assert_ok(attn_dalloc((void **)&lse_ref, nl * 4), ctx);
    assert_ok(attn_dfill_random_bf16(q, nq, sh.D, 1.0f, seed, 0), ctx);
    assert_ok(attn_dfill_random_bf16(k, nkv, sh.D, 1.0f, seed + 1, 0), ctx);
    assert_ok(attn_dfill_random_bf16(v, nkv, sh.D, 1.0f, seed + 2, 0), ctx);
    assert_ok(nsa_compress_cuda(&sh, &p, k, NULL, NULL, kc, 0), ctx);
    assert_ok(nsa_compress_cuda(&sh, &p, v, NULL, NULL, vc, 0), ctx);
    assert_ok(nsa_cmp_attention_cuda(&sh, &p, q, kc, vc, o, lse, 0), ctx);
    /* the reference attends over the same compressed tokens: NC keys, queries at positions N - M + i */
    attn_gpu_ref_opts ref = {0};
    ref.shape = sh, ref.shape.N = (int)nc, ref.positions = sh.N, ref.cmp_l = p.l, ref.cmp_d = p.d;
    assert_ok(attn_gpu_reference(&ref, q, kc, vc, o_ref, lse_ref, 0), ctx);
    assert_ok(attn_dsync(), ctx);
    attn_dcmp r;
    char where[120];
    assert_ok(attn_dcompare_bf16_f32(o, o_ref, nq, ATTN_TOL_BF16, &r), ctx);
    bmhd_text(&sh, r.worst, where, sizeof where);
    cr_assert(r.n_bad == 0,
              "o: %zu of %zu elements out of tolerance (%zu never written, %zu NaN/Inf); worst at %s (flat %zu): got %g, "
              "expected %g. Rows past element 2^31 = 2147483648 wrong only? Compute offsets in size_t [%s]",
              r.n_bad, r.count, r.n_unwritten, r.n_nonfinite, where, r.worst, r.got, r.expected, ctx);
    assert_ok(attn_dcompare_f32_f32(lse, lse_ref, nl, LSE_TOL, &r), ctx);
    cr_assert(r.n_bad == 0, "lse: %zu of %zu elements out of tolerance (%zu never written, %zu NaN/Inf); worst at flat "
              "index %zu = (b*H + h)*M + i: got %g, expected %g [%s]",
              r.n_bad, r.count, r.n_unwritten, r.n_nonfinite, r.worst, r.got, r.expected, ctx);
    attn_dfree(q), attn_dfree(k), attn_dfree(v), attn_dfree(kc), attn_dfree(vc), attn_dfree(o), attn_dfree(lse);
    attn_dfree(o_ref), attn_dfree(lse_ref);
}

ATTN_TEST(cuda_part, offsets_past_2_31_compress)
{
    require_gpu();
    require_device_memory(10.0);
    /* k has B*N*G*D = 2^31 + 2^17 elements: the last tokens' rows sit past 2^31. With l = 2, d = 1 there
     * are N - 1 tokens, so the output k_cmp passes 2^31 elements too. */
    const attn_shape sh = attn_make_shape(1, 1, (1 << 21) + 128, 8, 8, 128, 1);
    const uint64_t seed = attn_test_seed();
    const size_t nkv = attn_kv_elems(&sh), row = (size_t)sh.G * sh.D;
    uint16_t *k, *kc, *w, *pos;
    char ctx[300];
    snprintf(ctx, sizeof ctx, "B=1 N=%d G=8 D=128 (%zu elements), seed %llu (rerun: ATTN_SEED=%llu)", sh.N, nkv,
             (unsigned long long)seed, (unsigned long long)seed);
    assert_ok(attn_dalloc((void **)&k, nkv * 2), ctx);
    assert_ok(attn_dfill_random_bf16(k, nkv, sh.D, 1.0f, seed, 0), ctx);
    for (int c = 0; c < 4; ++c) {
        const int mode = c % 2, small = c / 2; /* mean, linear; l = 32, d = 16, then l = 2, d = 1 */
        const attn_nsa_params p = small ? nsa_params(2, 1, mode ? ATTN_NSA_LINEAR : ATTN_NSA_MEAN)
                                        : (mode ? nsa_params(32, 16, ATTN_NSA_LINEAR) : attn_nsa_paper_defaults());
        const long nc = attn_nsa_num_cmp(sh.N, &p);
        const size_t nw = (size_t)sh.G * p.l * sh.D * sh.D;
        char mctx[400];
        snprintf(mctx, sizeof mctx, "l=%d d=%d %s (NC=%ld, k_cmp %zu elements), %s", p.l, p.d,
                 mode ? "linear, keys" : "mean", nc, (size_t)nc * row, ctx);
        attn_rng rng;
        attn_rng_seed(&rng, seed + 5);
        float *hw = mode ? random_f32(nw, sh.D, 1.0f / sqrtf((float)p.l * sh.D), &rng, 1) : NULL;
        float *hpos = mode ? random_f32((size_t)p.l * sh.D, sh.D, 0.5f, &rng, 1) : NULL;
        w = mode ? upload_bf16(hw, nw, mctx) : NULL;
        pos = mode ? upload_bf16(hpos, (size_t)p.l * sh.D, mctx) : NULL;
        assert_ok(attn_dalloc((void **)&kc, (size_t)nc * row * 2), mctx);
        assert_ok(nsa_compress_cuda(&sh, &p, k, w, pos, kc, 0), mctx);
        assert_ok(attn_dsync(), mctx);
        /* tokens at the start, the middle and the end (their input rows past element 2^31) */
        const long tokens[] = {0, nc / 2, nc - 2, nc - 1};
        for (int s = 0; s < 4; ++s) {
            const long i = tokens[s];
            const attn_shape sub = attn_make_shape(1, 1, p.l, sh.G, sh.G, sh.D, 1); /* the token's l rows alone */
            uint16_t *span16 = download_bf16(k + (size_t)i * p.d * row, (size_t)p.l * row, mctx);
            uint16_t *got = download_bf16(kc + (size_t)i * row, row, mctx);
            float *span = attn_alloc_f32((size_t)p.l * row);
            double ref[8 * 128];
            attn_bf16_to_f32_array(span16, span, (size_t)p.l * row);
            assert_ok(attn_oracle_nsa_compress(&sub, &p, span, hw, hpos, ref), mctx);
            attn_shape cs = attn_make_shape(1, 1, 1, sh.G, sh.G, sh.D, 0);
            attn_cmp r;
            attn_compare_bf16(&r, "kv_cmp", ATTN_LAYOUT_BMHD, &cs, 0, got, ref, ATTN_TOL_BF16);
            cr_assert(r.ok, "compressed token %ld (input rows from element %zu): %s [h = kv head; %s]", i,
                      (size_t)i * p.d * row, r.message, mctx);
            free(span16), free(got), free(span);
        }
        attn_dfree(kc), attn_dfree(w), attn_dfree(pos);
        free(hw), free(hpos);
    }
    attn_dfree(k);
}

/* ================================================================ speed */

static const attn_shape kSpeedShape = {1, 16384, 16384, 64, 4, 128, 0.0f, 1};

typedef struct {
    attn_shape sh;
    attn_nsa_params p;
    long nc;
    uint64_t seed;
    uint16_t *q, *k, *v;                  /* shared inputs */
    uint16_t *o_base, *o, *kc, *vc;       /* baseline output; yours and your compressed K/V */
    float *lse_base, *lse, *o_ref, *lse_ref;
} speed_ctx;

static int launch_dense(void *ctx, cudaStream_t stream)
{
    speed_ctx *s = (speed_ctx *)ctx;
    return attn_baseline_flash_bf16(&s->sh, s->q, s->k, s->v, s->o_base, s->lse_base, stream);
}

/* The whole compressed branch: compress K, compress V, attend. */
static int launch_branch(void *ctx, cudaStream_t stream)
{
    speed_ctx *s = (speed_ctx *)ctx;
    const attn_shape sh = s->sh; /* copies: the check's shape and parameters are not the kernels' to change */
    const attn_nsa_params p = s->p;
    int st = nsa_compress_cuda(&sh, &p, s->k, NULL, NULL, s->kc, stream);
    if (!st) st = nsa_compress_cuda(&sh, &p, s->v, NULL, NULL, s->vc, stream);
    if (!st) st = nsa_cmp_attention_cuda(&sh, &p, s->q, s->kc, s->vc, s->o, s->lse, stream);
    return st;
}

static int speed_prepare(void *ctx, int rep, cudaStream_t stream)
{
    speed_ctx *s = (speed_ctx *)ctx;
    const size_t nq = attn_q_elems(&s->sh), nkv = attn_kv_elems(&s->sh), nl = attn_lse_elems(&s->sh),
                 ncmp = (size_t)s->nc * s->sh.G * s->sh.D;
    const uint64_t seed = s->seed + 1000003u * (uint64_t)(rep + 1);
    int st = attn_dfill_random_bf16(s->q, nq, s->sh.D, 1.0f, seed, stream);
    if (!st) st = attn_dfill_random_bf16(s->k, nkv, s->sh.D, 1.0f, seed + 1, stream);
    if (!st) st = attn_dfill_random_bf16(s->v, nkv, s->sh.D, 1.0f, seed + 2, stream);
    void *outs[] = {s->o, s->lse, s->kc, s->vc, s->o_base, s->lse_base};
    const size_t bytes[] = {nq * 2, nl * 4, ncmp * 2, ncmp * 2, nq * 2, nl * 4};
    for (int b = 0; !st && b < 6; ++b)
        st = attn_cuda_status(cudaMemsetAsync(outs[b], ATTN_POISON_BYTE, bytes[b], stream), "poison outputs");
    return st;
}

/* One compressed tensor against the oracle's compression of the device input (on the host). */
static int check_compressed(const speed_ctx *s, const uint16_t *in_dev, const uint16_t *got_dev, const char *what,
                            char *msg, size_t msg_len)
{
    const size_t nkv = attn_kv_elems(&s->sh), ncmp = (size_t)s->nc * s->sh.G * s->sh.D;
    uint16_t *in16 = attn_alloc_bf16(nkv), *got = attn_alloc_bf16(ncmp);
    float *in = attn_alloc_f32(nkv);
    double *ref = attn_alloc_f64(ncmp);
    int bad = !in16 || !got || !in || !ref;
    if (!bad) bad = attn_d2h(in16, in_dev, nkv * 2) || attn_d2h(got, got_dev, ncmp * 2);
    if (!bad) {
        attn_bf16_to_f32_array(in16, in, nkv);
        bad = attn_oracle_nsa_compress(&s->sh, &s->p, in, NULL, NULL, ref) != ATTN_OK;
    }
    if (bad) {
        snprintf(msg, msg_len, "%s: could not compute the reference compression", what);
    } else {
        const attn_shape cs = cmp_layout(&s->sh, s->nc);
        attn_cmp r;
        attn_compare_bf16(&r, what, ATTN_LAYOUT_BMHD, &cs, 0, got, ref, ATTN_TOL_BF16);
        if (!r.ok) snprintf(msg, msg_len, "%s [i = compressed token, h = kv head]", r.message), bad = 1;
    }
    free(in16), free(got), free(in), free(ref);
    return bad;
}

static int speed_check(void *ctx, int rep, char *msg, size_t msg_len)
{
    (void)rep;
    speed_ctx *s = (speed_ctx *)ctx;
    if (check_compressed(s, s->k, s->kc, "k_cmp", msg, msg_len)) return 1;
    if (check_compressed(s, s->v, s->vc, "v_cmp", msg, msg_len)) return 1;
    attn_gpu_ref_opts ref = {0};
    ref.shape = s->sh, ref.shape.N = (int)s->nc, ref.positions = s->sh.N, ref.cmp_l = s->p.l, ref.cmp_d = s->p.d;
    if (attn_gpu_reference(&ref, s->q, s->kc, s->vc, s->o_ref, s->lse_ref, 0) || attn_dsync()) {
        snprintf(msg, msg_len, "the GPU reference failed: %s", attn_error_detail());
        return 1;
    }
    attn_dcmp r;
    char where[120];
    if (attn_dcompare_bf16_f32(s->o, s->o_ref, attn_q_elems(&s->sh), ATTN_TOL_BF16, &r)) {
        snprintf(msg, msg_len, "comparing o failed: %s", attn_error_detail());
        return 1;
    }
    if (r.n_bad) {
        bmhd_text(&s->sh, r.worst, where, sizeof where);
        snprintf(msg, msg_len, "o: %zu of %zu elements out of tolerance (%zu never written, %zu NaN/Inf); worst at %s: "
                 "got %g, expected %g", r.n_bad, r.count, r.n_unwritten, r.n_nonfinite, where, r.got, r.expected);
        return 1;
    }
    if (attn_dcompare_f32_f32(s->lse, s->lse_ref, attn_lse_elems(&s->sh), LSE_TOL, &r)) {
        snprintf(msg, msg_len, "comparing lse failed: %s", attn_error_detail());
        return 1;
    }
    if (r.n_bad) {
        snprintf(msg, msg_len, "lse: %zu of %zu elements out of tolerance (%zu never written, %zu NaN/Inf); worst at "
                 "flat index %zu = (b*H + h)*M + i: got %g, expected %g", r.n_bad, r.count, r.n_unwritten,
                 r.n_nonfinite, r.worst, r.got, r.expected);
        return 1;
    }
    return 0;
}

/* Visible (query, compressed token) pairs summed over B and H: the FLOPs of the branch are 4 D each. */
static double cmp_pairs(const attn_shape *sh, const attn_nsa_params *p)
{
    const long nc = attn_nsa_num_cmp(sh->N, p);
    double pairs = 0.0;
    for (int i = 0; i < sh->M; ++i) pairs += (double)attn_nsa_cmp_visible_count(attn_query_pos(sh, i), nc, p);
    return pairs * sh->B * sh->H;
}

static void speed_test(attn_nsa_params p, const char *name, double target)
{
    require_gpu();
    speed_ctx s = {0};
    s.sh = kSpeedShape, s.p = p, s.nc = attn_nsa_num_cmp(s.sh.N, &p), s.seed = attn_test_seed();
    char st[240], sh_text[120], nt[40], ctx[300];
    snprintf(st, sizeof st, "%s, %s (NC=%ld), compression of K and V included", shape_text(&s.sh, sh_text, sizeof sh_text),
             nsa_text(&p, nt, sizeof nt), s.nc);
    snprintf(ctx, sizeof ctx, "%s, seed %llu", st, (unsigned long long)s.seed);
    const size_t nq = attn_q_elems(&s.sh), nkv = attn_kv_elems(&s.sh), nl = attn_lse_elems(&s.sh),
                 ncmp = (size_t)s.nc * s.sh.G * s.sh.D;
    uint16_t **b16[] = {&s.q, &s.k, &s.v, &s.o_base, &s.o, &s.kc, &s.vc};
    const size_t n16[] = {nq, nkv, nkv, nq, nq, ncmp, ncmp};
    for (int b = 0; b < 7; ++b) assert_ok(attn_dalloc((void **)b16[b], n16[b] * 2), ctx);
    float **b32[] = {&s.lse_base, &s.lse, &s.o_ref, &s.lse_ref};
    const size_t n32[] = {nl, nl, nq, nl};
    for (int b = 0; b < 4; ++b) assert_ok(attn_dalloc((void **)b32[b], n32[b] * 4), ctx);
    /* the references of every check are computed from these: they must be as prepare left them (the
     * compressed tokens are outputs, checked against the oracle's compression of k and v) */
    attn_timing_checks checks = {speed_prepare, speed_check, &s, {{s.q, nq * 2, "q"}, {s.k, nkv * 2, "k"}, {s.v, nkv * 2, "v"}}};
    attn_timing t_base, t_yours;
    char why[1536];
    attn_clear_error();
    const int rc = attn_time_ab_checked(launch_dense, &s, launch_branch, &s, &checks, 2, 10, &t_base, &t_yours, why,
                                        sizeof why);
    cr_assert(rc == ATTN_OK, "%s [%s]", why, ctx);
    const double flops = 4.0 * s.sh.D * cmp_pairs(&s.sh, &p);
    const double bytes = (double)(nq * 2) * 2 + (double)(nkv * 2) * 2 + (double)(ncmp * 2) * 4;
    attn_speed_result res = {"07", name, st, t_base.median_ms, t_yours.median_ms, target, flops, bytes};
    attn_report_speed(&res);
    const double ratio = t_base.median_ms / t_yours.median_ms;
    cr_expect(ratio >= target, "speed-up %.2fx is below the target %.2fx (dense flash %.3f ms, yours %.3f ms) [%s]",
              ratio, target, t_base.median_ms, t_yours.median_ms, ctx);
    for (int b = 0; b < 7; ++b) attn_dfree(*b16[b]);
    for (int b = 0; b < 4; ++b) attn_dfree(*b32[b]);
}

ATTN_TEST(speed, mean_pool_vs_dense) { speed_test(attn_nsa_mean_pool(), "cmp_mean_pool_vs_dense", TARGET_MEAN_POOL); }

ATTN_TEST(speed, paper_vs_dense) { speed_test(attn_nsa_paper_defaults(), "cmp_paper_vs_dense", TARGET_PAPER); }

/* ================================================================ errors */

static uint16_t fake16[64] __attribute__((aligned(16)));
static float fake[64];

ATTN_TEST(errors, bad_input_is_named)
{
    const attn_nsa_params ok_p = attn_nsa_paper_defaults(), lin = nsa_params(32, 16, ATTN_NSA_LINEAR);
    attn_nsa_params bad_l = ok_p, bad_d = ok_p, bad_n = ok_p, bad_mode = ok_p;
    bad_l.l = 0, bad_d.d = 5, bad_n.n = 2, bad_mode.mode = 7;
    long nc, vis;
    assert_status(nsa_cmp_counts(100, 5, &bad_d, &nc, &vis), ATTN_ERR_BAD_ARGUMENT, "d=5 does not divide l=32");
    assert_status(nsa_cmp_counts(100, 5, &bad_l, &nc, &vis), ATTN_ERR_BAD_ARGUMENT, "l=0");
    assert_status(nsa_cmp_counts(100, 100, &ok_p, &nc, &vis), ATTN_ERR_BAD_ARGUMENT, "t=100 of N=100");
    assert_status(nsa_cmp_counts(100, -1, &ok_p, &nc, &vis), ATTN_ERR_BAD_ARGUMENT, "t=-1");
    assert_status(nsa_cmp_counts(0, 0, &ok_p, &nc, &vis), ATTN_ERR_BAD_SHAPE, "N=0");
    assert_status(nsa_cmp_counts(100, 5, &ok_p, NULL, &vis), ATTN_ERR_NULL_POINTER, "num_cmp NULL");
    assert_status(nsa_cmp_counts(100, 5, NULL, &nc, &vis), ATTN_ERR_NULL_POINTER, "params NULL");

    const attn_shape ok = attn_make_shape(1, 4, 4, 4, 2, 64, 1), bad_g = attn_make_shape(1, 4, 4, 6, 4, 64, 1),
                     bad_dim = attn_make_shape(1, 4, 4, 4, 2, 80, 1), bad_m = attn_make_shape(1, 8, 4, 4, 2, 64, 1),
                     non_causal = attn_make_shape(1, 4, 4, 4, 2, 64, 0);
    assert_status(nsa_compress_cpu(&ok, &bad_n, fake, NULL, NULL, fake), ATTN_ERR_BAD_ARGUMENT, "cpu: n=2");
    assert_status(nsa_compress_cpu(&ok, &bad_mode, fake, NULL, NULL, fake), ATTN_ERR_BAD_ARGUMENT, "cpu: mode 7");
    assert_status(nsa_compress_cpu(&ok, &lin, fake, NULL, fake, fake), ATTN_ERR_NULL_POINTER, "cpu: linear, w NULL");
    assert_status(nsa_compress_cpu(&ok, &ok_p, NULL, NULL, NULL, fake), ATTN_ERR_NULL_POINTER, "cpu: kv NULL");
    assert_status(nsa_compress_cpu(&bad_g, &ok_p, fake, NULL, NULL, fake), ATTN_ERR_HEADS_NOT_DIVISIBLE, "cpu: H=6 G=4");
    assert_status(nsa_cmp_attention_cpu(&bad_m, &ok_p, fake, fake, fake, fake, fake), ATTN_ERR_M_GT_N, "cpu: M > N");
    assert_status(nsa_cmp_attention_cpu(&non_causal, &ok_p, fake, fake, fake, fake, fake), ATTN_ERR_BAD_ARGUMENT,
                  "cpu: causal = 0");
    assert_status(nsa_cmp_attention_cpu(&ok, &ok_p, fake, NULL, fake, fake, fake), ATTN_ERR_NULL_POINTER, "cpu: k_cmp NULL");
    assert_status(nsa_cmp_attention_cpu(&ok, &bad_d, fake, fake, fake, fake, fake), ATTN_ERR_BAD_ARGUMENT, "cpu: d=5");

    assert_status(nsa_compress_cuda(&bad_dim, &ok_p, fake16, NULL, NULL, fake16, 0), ATTN_ERR_UNSUPPORTED_D, "D=80");
    assert_status(nsa_compress_cuda(&ok, &lin, fake16, NULL, fake16, fake16, 0), ATTN_ERR_NULL_POINTER, "linear, w NULL");
    assert_status(nsa_compress_cuda(&ok, &ok_p, fake16, NULL, NULL, NULL, 0), ATTN_ERR_NULL_POINTER, "kv_cmp NULL");
    assert_status(nsa_compress_cuda(&ok, &bad_l, fake16, NULL, NULL, fake16, 0), ATTN_ERR_BAD_ARGUMENT, "l=0");
    assert_status(nsa_compress_cuda(&ok, &ok_p, fake16 + 1, NULL, NULL, fake16, 0), ATTN_ERR_BAD_ARGUMENT, "misaligned kv");
    assert_status(nsa_cmp_attention_cuda(&bad_g, &ok_p, fake16, fake16, fake16, fake16, fake, 0),
                  ATTN_ERR_HEADS_NOT_DIVISIBLE, "H=6 G=4");
    assert_status(nsa_cmp_attention_cuda(&bad_dim, &ok_p, fake16, fake16, fake16, fake16, fake, 0),
                  ATTN_ERR_UNSUPPORTED_D, "D=80");
    assert_status(nsa_cmp_attention_cuda(&bad_m, &ok_p, fake16, fake16, fake16, fake16, fake, 0), ATTN_ERR_M_GT_N,
                  "M > N");
    assert_status(nsa_cmp_attention_cuda(&non_causal, &ok_p, fake16, fake16, fake16, fake16, fake, 0),
                  ATTN_ERR_BAD_ARGUMENT, "causal = 0");
    assert_status(nsa_cmp_attention_cuda(&ok, &ok_p, fake16, fake16, NULL, fake16, fake, 0), ATTN_ERR_NULL_POINTER,
                  "v_cmp NULL");
    assert_status(nsa_cmp_attention_cuda(&ok, &bad_mode, fake16, fake16, fake16, fake16, fake, 0),
                  ATTN_ERR_BAD_ARGUMENT, "mode 7");
    assert_status(nsa_cmp_attention_cuda(&ok, &ok_p, fake16, fake16 + 1, fake16, fake16, fake, 0),
                  ATTN_ERR_BAD_ARGUMENT, "misaligned k_cmp");
}
