/*
 * Tests of lesson 01, naive dense attention (fp32). Built twice: against lessons/ and solutions/.
 *
 *   c_part     the four steps on the CPU, each against the double-precision oracle
 *   cuda_part  naive_attention_cuda on many shapes (skipped without a GPU)
 *   speed      the same shape timed against the frozen lesson-01 kernel: reported, not graded
 *   errors     bad input gets a named error code, never a crash
 */
#include "baselines.h"
#include "naive_attention.h"
#include "test_util.h"

/* ================================================================ C part */

static const attn_shape kCpuShapes[] = {
    {1, 1, 1, 1, 1, 8, 0.0f, 0},
    {2, 5, 9, 4, 2, 16, 0.31f, 1}, /* a softmax scale of its own */
    {1, 7, 7, 3, 1, 32, 0.0f, 1},
    {2, 3, 11, 2, 2, 64, 0.0f, 0},
    {1, 12, 20, 4, 4, 128, 0.0f, 1},
};
#define NUM_CPU_SHAPES ((int)(sizeof kCpuShapes / sizeof kCpuShapes[0]))

static size_t score_elems(const attn_shape *s) { return (size_t)s->B * s->H * s->M * s->N; }

ATTN_TEST(c_part, scores)
{
    uint64_t seed = attn_test_seed();
    for (int c = 0; c < NUM_CPU_SHAPES; ++c) {
        problem p;
        problem_init(&p, kCpuShapes[c], 1.0f, seed);
        attn_oracle_opts unmasked = attn_oracle_dense(&p.sh);
        unmasked.shape.causal = 0; /* naive_scores_cpu does not mask */
        double *ref = attn_alloc_f64(score_elems(&p.sh));
        float *s = attn_alloc_f32(score_elems(&p.sh));
        assert_ok(attn_oracle_scores(&unmasked, p.q, p.k, ref), p.ctx);
        attn_poison(s, score_elems(&p.sh) * sizeof(float));
        assert_ok(naive_scores_cpu(&p.sh, p.q, p.k, s), p.ctx);
        expect_close_opts(&p, &unmasked, ATTN_QTY_SCORES, "scores", ATTN_LAYOUT_BHMN, s, ref, ATTN_TOL_F32);
        free(ref), free(s);
        problem_free(&p);
    }
}

ATTN_TEST(c_part, mask)
{
    uint64_t seed = attn_test_seed();
    for (int c = 0; c < NUM_CPU_SHAPES; ++c) {
        for (int causal = 0; causal <= 1; ++causal) {
            attn_shape sh = kCpuShapes[c];
            sh.causal = causal;
            problem p;
            problem_init(&p, sh, 1.0f, seed);
            attn_oracle_opts unmasked = attn_oracle_dense(&sh), masked = attn_oracle_dense(&sh);
            unmasked.shape.causal = 0;
            double *s64 = attn_alloc_f64(score_elems(&sh)), *ref = attn_alloc_f64(score_elems(&sh));
            float *s = attn_alloc_f32(score_elems(&sh));
            assert_ok(attn_oracle_scores(&unmasked, p.q, p.k, s64), p.ctx);
            assert_ok(attn_oracle_scores(&masked, p.q, p.k, ref), p.ctx);
            for (size_t e = 0; e < score_elems(&sh); ++e) s[e] = (float)s64[e];
            assert_ok(naive_mask_cpu(&sh, s), p.ctx);
            expect_close_opts(&p, &masked, ATTN_QTY_SCORES, "masked scores", ATTN_LAYOUT_BHMN, s, ref, ATTN_TOL_F32);
            free(s64), free(ref), free(s);
            problem_free(&p);
        }
    }
}

ATTN_TEST(c_part, softmax)
{
    uint64_t seed = attn_test_seed();
    attn_rng rng;
    attn_rng_seed(&rng, seed);
    const int rows = 6, n = 37;
    float x[6 * 37];
    ATTN_SHARE(x);
    double ref[6 * 37];
    attn_fill_random(x, (size_t)rows * n, (size_t)n, 3.0f, &rng);
    for (int j = 20; j < n; ++j) x[1 * n + j] = -INFINITY; /* a causally masked row */
    for (int j = 0; j < n; ++j) x[2 * n + j] = -INFINITY; /* nothing visible: all zeros */
    for (int j = 0; j < n; ++j) x[3 * n + j] = 100.0f + (float)(j % 7); /* exp(100) overflows float */
    for (int j = 0; j < n; ++j) x[4 * n + j] = -100.0f - (float)j;     /* exp(-100) underflows to 0 */
    attn_oracle_softmax_rows(x, rows, n, ref, NULL);
    assert_ok(naive_softmax_cpu(x, rows, n), "6 rows of 37");
    attn_cmp r;
    attn_compare_rows_f32(&r, "softmax", (int)rows, n, x, ref, ATTN_TOL_F32);
    cr_assert(r.ok, "%s [rows: 0,5 random, 1 partly -inf, 2 all -inf, 3 near 100 (needs the max subtracted), 4 "
                    "near -100; seed %llu]", r.message, (unsigned long long)seed);
}

ATTN_TEST(c_part, pv)
{
    uint64_t seed = attn_test_seed();
    for (int c = 0; c < NUM_CPU_SHAPES; ++c) {
        problem p;
        problem_init(&p, kCpuShapes[c], 1.0f, seed);
        attn_oracle_opts opts = attn_oracle_dense(&p.sh);
        double *p64 = attn_alloc_f64(score_elems(&p.sh)), *o64 = attn_alloc_f64(attn_q_elems(&p.sh));
        float *probs = attn_alloc_f32(score_elems(&p.sh)), *o = attn_alloc_f32(attn_q_elems(&p.sh));
        assert_ok(attn_oracle_forward(&opts, p.q, p.k, p.v, o64, NULL, p64), p.ctx);
        for (size_t e = 0; e < score_elems(&p.sh); ++e) probs[e] = (float)p64[e];
        attn_poison(o, attn_q_elems(&p.sh) * sizeof(float));
        assert_ok(naive_pv_cpu(&p.sh, probs, p.v, o), p.ctx);
        expect_close(&p, "o = P V", ATTN_LAYOUT_BMHD, o, o64, ATTN_TOL_F32);
        free(p64), free(o64), free(probs), free(o);
        problem_free(&p);
    }
}

static void check_forward_cpu(int large_logits, attn_tol tol)
{
    uint64_t seed = attn_test_seed();
    for (int c = 0; c < NUM_CPU_SHAPES; ++c) {
        for (int causal = 0; causal <= 1; ++causal) {
            attn_shape sh = kCpuShapes[c];
            sh.causal = causal;
            problem p;
            problem_init_ex(&p, sh, 1.0f, large_logits, seed);
            float *o = attn_alloc_f32(attn_q_elems(&sh)), *s = attn_alloc_f32(score_elems(&sh));
            attn_poison(o, attn_q_elems(&sh) * sizeof(float));
            assert_ok(naive_attention_cpu(&sh, p.q, p.k, p.v, o, s), p.ctx);
            expect_close(&p, "o", ATTN_LAYOUT_BMHD, o, p.o_ref, tol);
            free(o), free(s);
            problem_free(&p);
        }
    }
}

ATTN_TEST(c_part, forward) { check_forward_cpu(0, ATTN_TOL_F32); }

/* logits near 120: exp overflows unless the max is subtracted first (see problem_init_ex). */
ATTN_TEST(c_part, forward_large_logits) { check_forward_cpu(1, ATTN_TOL_F32_LARGE); }

/* ================================================================ CUDA part */

static void check_cuda(attn_shape sh, int large_logits, attn_tol tol)
{
    problem p;
    problem_init_ex(&p, sh, 1.0f, large_logits, attn_test_seed());
    dev_problem d;
    dev_upload(&d, &p, naive_attention_workspace_bytes(&sh));
    assert_ok(naive_attention_cuda(&sh, d.q, d.k, d.v, d.o, (float *)d.workspace, 0), p.ctx);
    assert_ok(attn_dsync(), p.ctx);
    float *o = download_f32(d.o, attn_q_elems(&sh), p.ctx);
    expect_close(&p, "o", ATTN_LAYOUT_BMHD, o, p.o_ref, tol);
    free(o);
    dev_free(&d);
    problem_free(&p);
}

static void check_cuda_shapes(int causal_filter)
{
    require_gpu();
    for (int c = 0; c < NUM_SHAPES; ++c)
        if (causal_filter < 0 || kShapes[c].causal == causal_filter) check_cuda(kShapes[c], 0, ATTN_TOL_F32);
}

ATTN_TEST(cuda_part, noncausal) { check_cuda_shapes(0); }
ATTN_TEST(cuda_part, causal) { check_cuda_shapes(1); }

ATTN_TEST(cuda_part, gqa_and_mqa)
{
    require_gpu();
    const attn_shape shapes[] = {{1, 40, 40, 8, 8, 64, 0.0f, 1}, {1, 40, 40, 8, 2, 64, 0.0f, 1},
                                 {1, 40, 40, 8, 1, 128, 0.0f, 1}, {2, 25, 60, 12, 4, 64, 0.2f, 0}};
    for (int c = 0; c < 4; ++c) check_cuda(shapes[c], 0, ATTN_TOL_F32);
}

ATTN_TEST(cuda_part, causal_with_both_masks_and_flips)
{
    require_gpu();
    /* every (M, N) pair with M <= N up to 9: catches any off-by-one in t = N - M + i */
    for (int n = 1; n <= 9; ++n)
        for (int m = 1; m <= n; ++m) check_cuda(attn_make_shape(1, m, n, 2, 1, 64, 1), 0, ATTN_TOL_F32);
}

ATTN_TEST(cuda_part, large_logits)
{
    require_gpu();
    check_cuda(attn_make_shape(1, 70, 70, 2, 2, 64, 1), 1, ATTN_TOL_F32_LARGE);
    check_cuda(attn_make_shape(1, 33, 90, 2, 1, 128, 0), 1, ATTN_TOL_F32_LARGE);
}

static int run_naive(void *ctx, const attn_shape *sh, const float *q, const float *k, const float *v, float *o,
                     float *lse)
{
    (void)lse;
    return naive_attention_cuda(sh, q, k, v, o, (float *)ctx, 0);
}

ATTN_TEST(cuda_part, deterministic)
{
    require_gpu();
    const attn_shape sh = attn_make_shape(2, 190, 201, 4, 2, 64, 1);
    float *ws;
    assert_ok(attn_dalloc((void **)&ws, naive_attention_workspace_bytes(&sh)), "workspace");
    check_deterministic(sh, 1, (void *)run_naive, ws, 3, "naive_attention_cuda, three runs");
    attn_dfree(ws);
}

/* Past 2^31 elements: q, o and the score matrix [B, H, M, N] (the workspace) each hold 2.15e9 elements
 * (B = 16400, M = N = 128, H = 8, G = 2, D = 128), so a flat index or an offset computed in 32-bit int
 * wraps, and every kernel's grid-stride loop (a grid of at most 65535 blocks) runs many passes.
 * Compared over every element with the fp32 GPU reference. About 37 GB of GPU memory. */
ATTN_TEST(cuda_part, past_2_31_elements)
{
    require_gpu();
    const attn_shape sh = attn_make_shape(16400, 128, 128, 8, 2, 128, 1);
    cr_assert(naive_attention_workspace_bytes(&sh) / sizeof(float) > 2147483648ull,
              "the score matrix must pass 2^31 elements (B*H*M*N = %zu)", (size_t)sh.B * sh.H * sh.M * sh.N);
    check_huge_f32(sh, run_naive, naive_attention_workspace_bytes(&sh), 0,
                   "naive_attention_cuda past 2^31 elements (q, o and the score matrix)");
}

/* What ./course grade runs compute-sanitizer memcheck and racecheck on (lesson.json, "sanitize"): every
 * kernel (scores, mask, softmax, P V) and both paths (causal: the mask kernel runs; not causal: it does
 * not) on tiny shapes with B > 1 and G > 1, D = 64 and 128 and a D that is a multiple of no warp (40), a
 * softmax scale of its own. The grid-stride loops' later passes need more than 65535 blocks of work:
 * past_2_31_elements reaches them, too large for a sanitizer. */
ATTN_TEST(cuda_part, sanitizer_paths)
{
    require_gpu();
    check_cuda(attn_make_shape(2, 37, 45, 4, 2, 64, 1), 0, ATTN_TOL_F32);
    check_cuda(with_scale(attn_make_shape(2, 20, 33, 4, 2, 128, 0), 1.0f / 3.0f), 0, ATTN_TOL_F32);
    check_cuda(attn_make_shape(2, 5, 9, 6, 3, 40, 1), 0, ATTN_TOL_F32);
}

/* ================================================================ speed
 * Against the frozen naive kernel of common/grading/baselines.cu, the same algorithm: about 1x for a
 * GPU implementation, far less for a CUDA part that computes on the host (target in lesson.json). */

typedef struct {
    attn_shape sh;
    dev_problem *d;
    float *o, *workspace;
    int baseline;
} naive_launch;

static int launch_naive(void *ctx, cudaStream_t stream)
{
    naive_launch *a = (naive_launch *)ctx;
    const attn_shape sh = a->sh; /* a copy: the check's shape is not the kernel's to change */
    if (a->baseline) return attn_baseline_naive_f32(&sh, a->d->q, a->d->k, a->d->v, a->o, a->workspace, stream);
    return naive_attention_cuda(&sh, a->d->q, a->d->k, a->d->v, a->o, a->workspace, stream);
}

/* Fresh fp32 inputs for every run (same addresses) and both outputs poisoned; after both kernels ran,
 * the learner's o must match the frozen kernel's over every element. */
typedef struct {
    naive_launch *yours, *base;
    uint64_t seed;
} naive_speed_ctx;

static int naive_speed_prepare(void *ctx, int rep, cudaStream_t stream)
{
    naive_speed_ctx *c = (naive_speed_ctx *)ctx;
    return f32_speed_refill(&c->yours->sh, c->yours->d->q, c->yours->d->k, c->yours->d->v, c->yours->o, c->base->o,
                            c->seed, rep, stream);
}

static int naive_speed_check(void *ctx, int rep, char *msg, size_t len)
{
    naive_speed_ctx *c = (naive_speed_ctx *)ctx;
    (void)rep;
    return f32_speed_compare(&c->yours->sh, c->yours->o, c->base->o, ATTN_TOL_F32, "o (vs the frozen baseline)", msg,
                             len);
}

ATTN_TEST(speed, naive_vs_frozen_baseline)
{
    require_gpu();
    const attn_shape sh = attn_make_shape(1, 2048, 2048, 16, 16, 64, 1);
    problem p;
    problem_fill(&p, sh, 1.0f, 0, attn_test_seed());
    char st[120];
    shape_text(&sh, st, sizeof st);
    dev_problem d;
    dev_upload(&d, &p, naive_attention_workspace_bytes(&sh));
    float *o_base = NULL, *ws_base = NULL;
    assert_ok(attn_dalloc((void **)&o_base, attn_q_elems(&sh) * sizeof(float)), p.ctx);
    assert_ok(attn_dalloc((void **)&ws_base, attn_baseline_naive_workspace_bytes(&sh)), p.ctx);
    naive_launch yours = {sh, &d, d.o, (float *)d.workspace, 0}, base = {sh, &d, o_base, ws_base, 1};
    naive_speed_ctx c = {&yours, &base, p.seed};
    attn_timing_checks checks = {naive_speed_prepare, naive_speed_check, &c, F32_INPUT_GUARDS(&sh, &d)};
    attn_timing t_base, t_yours;
    char why[1200];
    const int rc = attn_time_ab_checked(launch_naive, &base, launch_naive, &yours, &checks, 2, 10, &t_base, &t_yours,
                                        why, sizeof why);
    cr_assert(rc == ATTN_OK, "%s [%s]", why, p.ctx);
    attn_speed_result res = {"01", "naive_vs_frozen_baseline", st, t_base.median_ms, t_yours.median_ms, ATTN_TARGET_NAIVE_VS_FROZEN_BASELINE,
                             attn_flops(&sh),
                             /* minimal bytes: q, k, v read and o written once */
                             (double)(attn_q_elems(&sh) * 2 + attn_kv_elems(&sh) * 2) * sizeof(float)};
    attn_report_speed(&res);
    const double ratio = t_base.median_ms / t_yours.median_ms;
    cr_expect(ratio >= ATTN_TARGET_NAIVE_VS_FROZEN_BASELINE, "speed %.2fx of the frozen naive kernel is below the "
              "target %.2fx (frozen %.3f ms, yours %.3f ms) [%s]", ratio, ATTN_TARGET_NAIVE_VS_FROZEN_BASELINE,
              t_base.median_ms, t_yours.median_ms, p.ctx);
    attn_dfree(o_base), attn_dfree(ws_base);
    dev_free(&d);
    problem_free(&p);
}

/* ================================================================ errors */

/* Fake, non-NULL pointers: argument checks must reject the call before touching them. */
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
        {{1, 4, 4, 2, 2, 0, 0.0f, 0}, ATTN_ERR_UNSUPPORTED_D, "D=0"},
        {{1, 4, 4, 2, 2, 512, 0.0f, 0}, ATTN_ERR_UNSUPPORTED_D, "D=512"},
        {{0, 4, 4, 2, 2, 64, 0.0f, 0}, ATTN_ERR_BAD_SHAPE, "B=0"},
        {{1, 4, 4, 2, 0, 64, 0.0f, 0}, ATTN_ERR_BAD_SHAPE, "G=0"},
    };
    for (int c = 0; c < 6; ++c) {
        assert_status(naive_scores_cpu(&cases[c].sh, fake, fake, fake), cases[c].expected, cases[c].what);
        assert_status(naive_pv_cpu(&cases[c].sh, fake, fake, fake), cases[c].expected, cases[c].what);
        assert_status(naive_attention_cpu(&cases[c].sh, fake, fake, fake, fake, fake), cases[c].expected,
                      cases[c].what);
        assert_status(naive_attention_cuda(&cases[c].sh, fake, fake, fake, fake, fake, 0), cases[c].expected,
                      cases[c].what);
        cr_assert(strlen(attn_error_detail()) > 0, "no detail message for %s", cases[c].what);
    }
}

ATTN_TEST(errors, null_pointers)
{
    const attn_shape sh = attn_make_shape(1, 4, 4, 2, 2, 64, 0);
    assert_status(naive_scores_cpu(&sh, NULL, fake, fake), ATTN_ERR_NULL_POINTER, "q = NULL");
    assert_status(naive_mask_cpu(&sh, NULL), ATTN_ERR_NULL_POINTER, "s = NULL");
    assert_status(naive_softmax_cpu(NULL, 1, 4), ATTN_ERR_NULL_POINTER, "x = NULL");
    assert_status(naive_pv_cpu(&sh, fake, NULL, fake), ATTN_ERR_NULL_POINTER, "v = NULL");
    assert_status(naive_attention_cuda(&sh, fake, fake, fake, fake, NULL, 0), ATTN_ERR_NULL_POINTER,
                  "workspace = NULL");
    assert_status(naive_attention_cuda(NULL, fake, fake, fake, fake, fake, 0), ATTN_ERR_NULL_POINTER,
                  "shape = NULL");
    assert_status(naive_softmax_cpu(fake, 0, 4), ATTN_ERR_BAD_SHAPE, "rows = 0");
}
