/*
 * Tests of lesson 02, online softmax (fp32). Built twice: against lessons/ and solutions/.
 *
 *   c_part     the one-pass softmax and streaming attention for one query, against the oracle
 *   cuda_part  online_attention_cuda (o and lse) on many shapes (skipped without a GPU)
 *   speed      against the frozen lesson-01 naive kernel, with a target
 *   errors     bad input gets a named error code, never a crash
 */
#include "baselines.h"
#include "online_softmax.h"
#include "test_util.h"

/* The fused kernel must be this many times faster than the frozen naive kernel on the speed shape.
 * Calibrated on an H100 (the reference solution measures about 34x there). */
#define SPEED_TARGET ATTN_TARGET_FUSED_VS_NAIVE /* lesson.json */

/* ================================================================ C part */

ATTN_TEST(c_part, softmax_one_pass)
{
    uint64_t seed = attn_test_seed();
    attn_rng rng;
    attn_rng_seed(&rng, seed);
    const int lengths[] = {1, 2, 7, 100, 1000};
    for (int c = 0; c < 5; ++c) {
        const int n = lengths[c];
        float *x = attn_alloc_f32((size_t)n), *y = attn_alloc_f32((size_t)n);
        double *ref = attn_alloc_f64((size_t)n), ref_lse;
        attn_fill_random(x, (size_t)n, (size_t)n, 3.0f, &rng);
        /* an increasing ramp at the end forces the running max to move again and again */
        for (int j = n / 2; j < n; ++j) x[j] += 0.05f * (float)(j - n / 2);
        attn_oracle_softmax_rows(x, 1, n, ref, &ref_lse);
        float lse = NAN;
        attn_poison(y, (size_t)n * sizeof(float));
        assert_ok(online_softmax_cpu(x, n, y, &lse), "softmax");
        attn_cmp r;
        attn_compare_rows_f32(&r, "softmax", 1, n, y, ref, ATTN_TOL_F32);
        cr_assert(r.ok, "%s [n=%d, seed %llu]", r.message, n, (unsigned long long)seed);
        cr_assert(fabs(lse - ref_lse) <= 2e-5 + 2e-5 * fabs(ref_lse), "lse: got %.7g, expected %.7g [n=%d, seed %llu]",
                  (double)lse, ref_lse, n, (unsigned long long)seed);
        free(x), free(y), free(ref);
    }
}

ATTN_TEST(c_part, softmax_masked_and_extreme)
{
    const int n = 6;
    float y[6], lse = 0.0f;
    double ref[6], ref_lse;
    const float all_masked[6] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    ATTN_SHARE(y);
    ATTN_SHARE(all_masked);
    assert_ok(online_softmax_cpu(all_masked, n, y, &lse), "all -inf");
    for (int j = 0; j < n; ++j) cr_assert(y[j] == 0.0f, "all -inf: y[%d] = %g, expected 0", j, (double)y[j]);
    cr_assert(lse == -INFINITY, "all -inf: lse = %g, expected -inf", (double)lse);

    const float cases[3][6] = {
        {-INFINITY, -INFINITY, 1.0f, -INFINITY, 2.0f, 0.5f}, /* leading masked entries: m starts at -inf */
        {100.0f, 101.0f, 102.0f, 99.0f, 103.0f, 95.0f},      /* exp(100) overflows: needs the running max */
        {-100.0f, -101.0f, -102.0f, -99.0f, -103.0f, -95.0f},
    };
    ATTN_SHARE(cases);
    for (int c = 0; c < 3; ++c) {
        attn_oracle_softmax_rows(cases[c], 1, n, ref, &ref_lse);
        assert_ok(online_softmax_cpu(cases[c], n, y, &lse), "softmax");
        attn_cmp r;
        attn_compare_rows_f32(&r, "softmax", 1, n, y, ref, ATTN_TOL_F32);
        cr_assert(r.ok, "%s [case %d]", r.message, c);
        cr_assert(fabs(lse - ref_lse) <= 1e-4 * (1 + fabs(ref_lse)), "lse: got %.7g, expected %.7g [case %d]",
                  (double)lse, ref_lse, c);
    }
}

/* lse is optional (online_softmax.h): with lse = NULL the probabilities are still written, and nothing
 * is written through the NULL pointer (a crash of the runner fails the test). A row of 777 values at a
 * scale of 1/3, and a row of -inf. */
ATTN_TEST(c_part, softmax_without_lse)
{
    uint64_t seed = attn_test_seed();
    attn_rng rng;
    attn_rng_seed(&rng, seed);
    const int n = 777;
    float *x = attn_alloc_f32((size_t)n), *y = attn_alloc_f32((size_t)n);
    double *ref = attn_alloc_f64((size_t)n);
    cr_assert(x && y && ref, "out of host memory");
    char ctx[120];
    snprintf(ctx, sizeof ctx, "n = %d, values times 1/3, lse = NULL, seed %llu (rerun: ATTN_SEED=%llu)", n,
             (unsigned long long)seed, (unsigned long long)seed);
    attn_fill_random(x, (size_t)n, (size_t)n, 1.0f / 3.0f, &rng);
    attn_oracle_softmax_rows(x, 1, n, ref, NULL);
    attn_poison(y, (size_t)n * sizeof(float));
    assert_ok(online_softmax_cpu(x, n, y, NULL), ctx);
    attn_cmp r;
    attn_compare_rows_f32(&r, "softmax", 1, n, y, ref, ATTN_TOL_F32);
    cr_assert(r.ok, "%s [%s]", r.message, ctx);
    for (int j = 0; j < n; ++j) x[j] = -INFINITY;
    attn_poison(y, (size_t)n * sizeof(float));
    assert_ok(online_softmax_cpu(x, n, y, NULL), "n = 777, every value -inf, lse = NULL");
    for (int j = 0; j < n; ++j)
        cr_assert(y[j] == 0.0f, "all -inf, lse = NULL: y[%d] = %g, expected 0 [n=%d, seed %llu]", j, (double)y[j], n,
                  (unsigned long long)seed);
    free(x), free(y), free(ref);
}

static const attn_shape kCpuShapes[] = {
    {1, 1, 1, 1, 1, 8, 0.0f, 1},    {2, 5, 9, 4, 2, 16, 0.0f, 1},    {1, 7, 7, 3, 1, 32, 0.0f, 0},
    {2, 3, 40, 2, 2, 64, 0.3f, 1},   {1, 12, 20, 4, 4, 128, 0.0f, 0}, {1, 1, 200, 2, 1, 64, 0.0f, 1},
};
#define NUM_CPU_SHAPES ((int)(sizeof kCpuShapes / sizeof kCpuShapes[0]))

static void check_forward_cpu(int large_logits, attn_tol tol)
{
    uint64_t seed = attn_test_seed();
    for (int c = 0; c < NUM_CPU_SHAPES; ++c)
        for (int causal = 0; causal <= 1; ++causal) {
            attn_shape sh = kCpuShapes[c];
            sh.causal = causal;
            problem p;
            problem_init_ex(&p, sh, 1.0f, large_logits, seed);
            float *o = attn_alloc_f32(attn_q_elems(&sh)), *lse = attn_alloc_f32(attn_lse_elems(&sh));
            attn_poison(o, attn_q_elems(&sh) * sizeof(float));
            attn_poison(lse, attn_lse_elems(&sh) * sizeof(float));
            assert_ok(online_attention_cpu(&sh, p.q, p.k, p.v, o, lse), p.ctx);
            expect_close(&p, "o", ATTN_LAYOUT_BMHD, o, p.o_ref, tol);
            expect_close(&p, "lse", ATTN_LAYOUT_BHM, lse, p.lse_ref, tol);
            free(o), free(lse);
            problem_free(&p);
        }
}

ATTN_TEST(c_part, streaming_attention) { check_forward_cpu(0, ATTN_TOL_F32); }
ATTN_TEST(c_part, streaming_attention_large_logits) { check_forward_cpu(1, ATTN_TOL_F32_LARGE); }

ATTN_TEST(c_part, attend_no_keys)
{
    float q[4] = {1, 2, 3, 4}, k[4] = {0}, v[4] = {0}, o[4], lse = 0.0f;
    ATTN_SHARE(q);
    ATTN_SHARE(k);
    ATTN_SHARE(v);
    ATTN_SHARE(o);
    attn_poison(o, sizeof o);
    assert_ok(online_attend_query_cpu(q, k, v, 0, 4, 4, 0.5f, o, &lse), "n_keys = 0");
    for (int d = 0; d < 4; ++d) cr_assert(o[d] == 0.0f, "n_keys = 0: o[%d] = %g, expected 0", d, (double)o[d]);
    cr_assert(lse == -INFINITY, "n_keys = 0: lse = %g, expected -inf", (double)lse);
}

/* ================================================================ CUDA part */

static void check_cuda(attn_shape sh, int large_logits, attn_tol tol)
{
    problem p;
    problem_init_ex(&p, sh, 1.0f, large_logits, attn_test_seed());
    dev_problem d;
    dev_upload(&d, &p, 0);
    assert_ok(online_attention_cuda(&sh, d.q, d.k, d.v, d.o, d.lse, 0), p.ctx);
    assert_ok(attn_dsync(), p.ctx);
    float *o = download_f32(d.o, attn_q_elems(&sh), p.ctx), *lse = download_f32(d.lse, attn_lse_elems(&sh), p.ctx);
    expect_close(&p, "o", ATTN_LAYOUT_BMHD, o, p.o_ref, tol);
    expect_close(&p, "lse", ATTN_LAYOUT_BHM, lse, p.lse_ref, tol);
    free(o), free(lse);
    dev_free(&d);
    problem_free(&p);
}

static void check_cuda_shapes(int causal_filter)
{
    require_gpu();
    for (int c = 0; c < NUM_SHAPES; ++c)
        if (kShapes[c].causal == causal_filter) check_cuda(kShapes[c], 0, ATTN_TOL_F32);
}

ATTN_TEST(cuda_part, noncausal) { check_cuda_shapes(0); }
ATTN_TEST(cuda_part, causal) { check_cuda_shapes(1); }

ATTN_TEST(cuda_part, gqa_and_mqa)
{
    require_gpu();
    const attn_shape shapes[] = {{1, 80, 80, 8, 8, 64, 0.0f, 1}, {1, 80, 80, 8, 2, 128, 0.0f, 1},
                                 {1, 80, 80, 8, 1, 64, 0.0f, 1}, {2, 25, 100, 12, 4, 128, 0.09f, 0}};
    for (int c = 0; c < 4; ++c) check_cuda(shapes[c], 0, ATTN_TOL_F32);
}

ATTN_TEST(cuda_part, every_small_m_and_n)
{
    require_gpu();
    /* every (M, N) with M <= N around the tile sizes 16 and 32: off-by-ones in t = N - M + i, in the
     * last partial tile and in the rows past M */
    const int ns[] = {1, 2, 15, 16, 17, 31, 32, 33, 47, 65};
    for (int a = 0; a < 10; ++a)
        for (int b = 0; b <= a; ++b) {
            check_cuda(attn_make_shape(1, ns[b], ns[a], 2, 1, 64, 1), 0, ATTN_TOL_F32);
            check_cuda(attn_make_shape(1, ns[b], ns[a], 2, 2, 128, 0), 0, ATTN_TOL_F32);
        }
}

ATTN_TEST(cuda_part, long_rows)
{
    require_gpu();
    /* many key tiles: the running max moves often, so a missing rescale shows (errors of order
     * 0.1-1). A float sum over 2000 keys drifts by up to ~sqrt(2000) * 6e-8 * a few, and over 20k
     * outputs the tail reaches the 2e-5 of ATTN_TOL_F32: allow 1e-4 here. */
    const attn_tol long_sums = {1e-4, 1e-4};
    check_cuda(attn_make_shape(1, 64, 1500, 2, 1, 128, 1), 0, long_sums);
    check_cuda(attn_make_shape(1, 48, 2000, 2, 2, 64, 0), 0, long_sums);
}

ATTN_TEST(cuda_part, large_logits)
{
    require_gpu();
    check_cuda(attn_make_shape(1, 70, 70, 2, 2, 64, 1), 1, ATTN_TOL_F32_LARGE);
    check_cuda(attn_make_shape(1, 33, 190, 2, 1, 128, 0), 1, ATTN_TOL_F32_LARGE);
}

static int run_online(void *ctx, const attn_shape *sh, const float *q, const float *k, const float *v, float *o,
                      float *lse)
{
    (void)ctx;
    return online_attention_cuda(sh, q, k, v, o, lse, 0);
}

ATTN_TEST(cuda_part, deterministic)
{
    require_gpu();
    check_deterministic(attn_make_shape(2, 333, 517, 8, 2, 128, 1), 1, (void *)run_online, NULL, 3,
                        "online_attention_cuda, three runs");
}

/* Past 2^31 elements: q and o hold 2.15e9 elements (B = 513, M = N = 512, H = 64, G = 4, D = 128), so an
 * offset computed in 32-bit int wraps. Compared over every element of o and lse with the fp32 GPU
 * reference. About 32 GB of GPU memory. */
ATTN_TEST(cuda_part, past_2_31_elements)
{
    require_gpu();
    check_huge_f32(attn_make_shape(513, 512, 512, 64, 4, 128, 1), run_online, 0, 1,
                   "online_attention_cuda past 2^31 elements");
}

/* What ./course grade runs compute-sanitizer memcheck and racecheck on (lesson.json, "sanitize"): both
 * instances of the kernel (D = 64 and 128), causal and not, several key tiles of 32 and a partial last
 * one, several row blocks of 16 and a partial last one, B > 1 and G > 1, a softmax scale of its own. */
ATTN_TEST(cuda_part, sanitizer_paths)
{
    require_gpu();
    check_cuda(attn_make_shape(2, 40, 70, 4, 2, 64, 1), 0, ATTN_TOL_F32);
    check_cuda(with_scale(attn_make_shape(2, 20, 50, 4, 2, 128, 0), 1.0f / 3.0f), 0, ATTN_TOL_F32);
}

/* ================================================================ speed */

typedef struct {
    attn_shape sh;
    dev_problem *d;
    float *o, *lse, *workspace;
    int baseline;
} launch_args;

static int launch(void *ctx, cudaStream_t stream)
{
    launch_args *a = (launch_args *)ctx;
    const attn_shape sh = a->sh; /* a copy: the check's shape is not the kernel's to change */
    if (a->baseline) return attn_baseline_naive_f32(&sh, a->d->q, a->d->k, a->d->v, a->o, a->workspace, stream);
    return online_attention_cuda(&sh, a->d->q, a->d->k, a->d->v, a->o, a->lse, stream);
}

/* Fresh fp32 inputs for every run (same addresses), both outputs poisoned; after both kernels ran,
 * the fused kernel's o must match the naive kernel's over every element. */
typedef struct {
    launch_args *yours, *base;
    uint64_t seed;
} speed_ctx;

static int speed_prepare(void *ctx, int rep, cudaStream_t stream)
{
    speed_ctx *c = (speed_ctx *)ctx;
    return f32_speed_refill(&c->yours->sh, c->yours->d->q, c->yours->d->k, c->yours->d->v, c->yours->o, c->base->o,
                            c->seed, rep, stream);
}

/* two fp32 kernels that sum in different orders: the check asks "the same function?" (cuda_part grades
 * the rounding against the oracle), so the looser fp32 tolerance */
static int speed_check(void *ctx, int rep, char *msg, size_t len)
{
    speed_ctx *c = (speed_ctx *)ctx;
    (void)rep;
    return f32_speed_compare(&c->yours->sh, c->yours->o, c->base->o, ATTN_TOL_F32_LARGE,
                             "o (vs the frozen naive kernel)", msg, len);
}

ATTN_TEST(speed, fused_vs_naive)
{
    require_gpu();
    const attn_shape sh = attn_make_shape(1, 2048, 2048, 16, 16, 64, 1);
    problem p;
    problem_fill(&p, sh, 1.0f, 0, attn_test_seed());
    char st[120];
    shape_text(&sh, st, sizeof st);
    dev_problem d;
    dev_upload(&d, &p, 0);
    float *o_base = NULL, *ws_base = NULL;
    assert_ok(attn_dalloc((void **)&o_base, attn_q_elems(&sh) * sizeof(float)), p.ctx);
    assert_ok(attn_dalloc((void **)&ws_base, attn_baseline_naive_workspace_bytes(&sh)), p.ctx);
    launch_args yours = {sh, &d, d.o, d.lse, NULL, 0}, base = {sh, &d, o_base, NULL, ws_base, 1};
    speed_ctx c = {&yours, &base, p.seed};
    attn_timing_checks checks = {speed_prepare, speed_check, &c, F32_INPUT_GUARDS(&sh, &d)};
    attn_timing t_base, t_yours;
    char why[1200];
    const int rc = attn_time_ab_checked(launch, &base, launch, &yours, &checks, 2, 10, &t_base, &t_yours, why, sizeof why);
    cr_assert(rc == ATTN_OK, "%s [%s]", why, p.ctx);
    attn_speed_result res = {"02", "fused_vs_naive", st, t_base.median_ms, t_yours.median_ms, SPEED_TARGET,
                             attn_flops(&sh), (double)(attn_q_elems(&sh) * 2 + attn_kv_elems(&sh) * 2) * sizeof(float)};
    attn_report_speed(&res);
    const double ratio = t_base.median_ms / t_yours.median_ms;
    cr_expect(ratio >= SPEED_TARGET, "speed-up %.2fx over the naive kernel is below the target %.1fx (naive %.3f ms, "
              "yours %.3f ms) [%s]", ratio, SPEED_TARGET, t_base.median_ms, t_yours.median_ms, p.ctx);
    attn_dfree(o_base), attn_dfree(ws_base);
    dev_free(&d);
    problem_free(&p);
}

/* ================================================================ errors */

static float fake[4];

ATTN_TEST(errors, bad_shapes_are_named)
{
    const struct {
        attn_shape sh;
        int expected;
        const char *what;
    } cases[] = {
        {{1, 4, 4, 6, 4, 64, 0.0f, 0}, ATTN_ERR_HEADS_NOT_DIVISIBLE, "H=6, G=4"},
        {{1, 9, 8, 2, 2, 64, 0.0f, 1}, ATTN_ERR_M_GT_N, "M=9 > N=8"},
        {{1, 4, 4, 2, 2, 100, 0.0f, 0}, ATTN_ERR_UNSUPPORTED_D, "D=100 (the CUDA kernel takes 64 or 128)"},
        {{1, 4, 4, 2, 2, 512, 0.0f, 0}, ATTN_ERR_UNSUPPORTED_D, "D=512"},
        {{1, 0, 4, 2, 2, 64, 0.0f, 0}, ATTN_ERR_BAD_SHAPE, "M=0"},
    };
    for (int c = 0; c < 5; ++c) {
        assert_status(online_attention_cuda(&cases[c].sh, fake, fake, fake, fake, fake, 0), cases[c].expected,
                      cases[c].what);
        cr_assert(strlen(attn_error_detail()) > 0, "no detail message for %s", cases[c].what);
        if (cases[c].sh.D != 100) /* the C part accepts any D up to 256 */
            assert_status(online_attention_cpu(&cases[c].sh, fake, fake, fake, fake, fake), cases[c].expected,
                          cases[c].what);
    }
}

ATTN_TEST(errors, null_pointers_and_bad_arguments)
{
    const attn_shape sh = attn_make_shape(1, 4, 4, 2, 2, 64, 0);
    float lse;
    assert_status(online_softmax_cpu(NULL, 4, fake, NULL), ATTN_ERR_NULL_POINTER, "x = NULL");
    assert_status(online_softmax_cpu(fake, 0, fake, NULL), ATTN_ERR_BAD_SHAPE, "n = 0");
    assert_status(online_attend_query_cpu(fake, fake, NULL, 1, 4, 4, 1.0f, fake, &lse), ATTN_ERR_NULL_POINTER,
                  "v = NULL");
    assert_status(online_attend_query_cpu(fake, fake, fake, 1, 4, 2, 1.0f, fake, &lse), ATTN_ERR_BAD_ARGUMENT,
                  "stride < D");
    assert_status(online_attention_cpu(&sh, fake, fake, fake, NULL, fake), ATTN_ERR_NULL_POINTER, "o = NULL");
    assert_status(online_attention_cuda(&sh, fake, fake, fake, fake, NULL, 0), ATTN_ERR_NULL_POINTER, "lse = NULL");
}
