/*
 * test_util.h - helpers shared by the lesson tests (header-only, included once per test binary).
 *
 * Every failure message carries the shape and the seed, so that a failing case can be rerun
 * exactly:  ATTN_SEED=<seed> build/bin/test_01_lessons --filter 'cuda_part/causal'
 */
#ifndef TEST_UTIL_H
#define TEST_UTIL_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#include "attn.h"
#include "attn_gpu.h"
#include "baselines.h"
#include "check.h"
#include "harness.h"
#include "oracle.h"
#include "random.h"
#include "rpc.h"
#include "oracle_nsa.h"

/* ---------------------------------------------------------------- tests
 *
 * This binary never loads the lesson's code: every call of a lesson function goes to a runner process
 * (common/grading/rpc.h), so what Criterion reports here (passed, failed, skipped) is the tests' own
 * verdict. ATTN_TEST declares a course test (a Criterion Test; the name keeps the tests uniform). A test
 * skips only through attn_skip_test, for a reason this process established (no GPU, too little GPU
 * memory), before any lesson code ran for it. */
#define attn_skip_test(...)                                                                                     \
    do {                                                                                                        \
        cr_assert(!attn_rpc_started(), "this test would skip, but the lesson's code already ran for it: a skip "   \
                  "is decided before (no GPU, too little GPU memory), never after, so it counts as a failure");  \
        cr_skip_test(__VA_ARGS__);                                                                              \
    } while (0)

#define ATTN_TEST(suite, name, ...) Test(suite, name, ##__VA_ARGS__)

/* "B=1 M=5 N=7 H=4 G=2 D=64 causal" */
static inline const char *shape_text(const attn_shape *s, char *buf, size_t n)
{
    snprintf(buf, n, "B=%d M=%d N=%d H=%d G=%d D=%d %s", s->B, s->M, s->N, s->H, s->G, s->D,
             s->causal ? "causal" : "non-causal");
    return buf;
}

/* Skip the calling test, with the reason, when there is no usable GPU. Criterion reports skips only
 * with --verbose, so the skip is also printed as one line of its own. */
static inline void require_gpu(void)
{
    char why[256];
    if (!attn_gpu_available(why, sizeof why)) {
        const struct criterion_test *t = criterion_current_test;
        fprintf(stderr, "[SKIP] %s/%s: no CUDA device found on this machine, so this GPU test did not run "
                        "(the C parts still run and are graded)\n",
                t && t->category ? t->category : "?", t && t->name ? t->name : "?");
        attn_skip_test("%s", why);
    }
}

/* Assert that a call returned ATTN_OK; the message names the code and its detail. */
#define assert_ok(status, ctx)                                                                                  \
    do {                                                                                                        \
        attn_clear_error();                                                                                     \
        int st_ = (status);                                                                                     \
        cr_assert(st_ == ATTN_OK, "%s returned %s: %s%s%s [%s]", #status, attn_status_name(st_),                \
                  attn_strerror(st_), *attn_error_detail() ? " - " : "", attn_error_detail(), (ctx));           \
    } while (0)

/* Assert that a call returned a given error code (bad input must be rejected, not crash). */
#define assert_status(status, expected, ctx)                                                                    \
    do {                                                                                                        \
        attn_clear_error();                                                                                     \
        int st_ = (status);                                                                                     \
        cr_assert(st_ == (expected), "%s returned %s, expected %s [%s]", #status, attn_status_name(st_),        \
                  attn_status_name(expected), (ctx));                                                           \
        cr_assert(strlen(attn_strerror(st_)) > 0 && strcmp(attn_strerror(st_), "unknown status code") != 0,    \
                  "attn_strerror(%d) gives no message [%s]", st_, (ctx));                                       \
    } while (0)

/* A random problem and its double-precision reference. */
typedef struct {
    attn_shape sh;
    uint64_t seed;
    float *q, *k, *v;
    double *o_ref, *lse_ref;
    char ctx[200]; /* "B=.. M=.. ... seed=..": pasted into every assertion */
} problem;

/* "Large logits": a shift added to dimension 0 of every row of q [nq] and k [nk] (rows of D) grows every
 * score by about 120 at the default scale: softmax does not change (a common shift cancels), but
 * exp(score) overflows float unless the row max is subtracted first. */
static inline void add_large_logits(float *q, size_t nq, float *k, size_t nk, int D)
{
    const float shift = sqrtf(120.0f * sqrtf((float)D));
    for (size_t r = 0; r < nq / D; ++r) q[r * D] += shift;
    for (size_t r = 0; r < nk / D; ++r) k[r * D] += shift;
}

/* Random q, k, v (q and k times qk_scale), no reference yet; with large_logits, add_large_logits.
 * Speed shapes stop here: a double-precision reference on the CPU would take minutes there. */
static inline void problem_fill(problem *p, attn_shape sh, float qk_scale, int large_logits, uint64_t seed)
{
    memset(p, 0, sizeof *p);
    p->sh = sh;
    p->seed = seed;
    char st[120];
    snprintf(p->ctx, sizeof p->ctx, "%s, seed %llu (rerun: ATTN_SEED=%llu)", shape_text(&sh, st, sizeof st),
             (unsigned long long)seed, (unsigned long long)seed);
    attn_rng rng;
    attn_rng_seed(&rng, seed ^ ((uint64_t)sh.N * 7919u + (uint64_t)sh.M * 104729u + (uint64_t)sh.D));
    p->q = attn_alloc_f32(attn_q_elems(&sh));
    p->k = attn_alloc_f32(attn_kv_elems(&sh));
    p->v = attn_alloc_f32(attn_kv_elems(&sh));
    cr_assert(p->q && p->k && p->v, "out of host memory [%s]", p->ctx);
    attn_fill_random(p->q, attn_q_elems(&sh), (size_t)sh.D, qk_scale, &rng);
    attn_fill_random(p->k, attn_kv_elems(&sh), (size_t)sh.D, qk_scale, &rng);
    attn_fill_random(p->v, attn_kv_elems(&sh), (size_t)sh.D, 1.0f, &rng);
    if (large_logits) add_large_logits(p->q, attn_q_elems(&sh), p->k, attn_kv_elems(&sh), sh.D);
}

/* The oracle's o and lse for the problem's current inputs under `opts` (NULL: dense attention of the
 * problem's shape). Call again after changing the inputs or the rules. */
static inline void problem_reference(problem *p, const attn_oracle_opts *opts)
{
    if (!p->o_ref) p->o_ref = attn_alloc_f64(attn_q_elems(&p->sh));
    if (!p->lse_ref) p->lse_ref = attn_alloc_f64(attn_lse_elems(&p->sh));
    cr_assert(p->o_ref && p->lse_ref, "out of host memory [%s]", p->ctx);
    const attn_oracle_opts dense = attn_oracle_dense(&p->sh);
    assert_ok(attn_oracle_forward(opts ? opts : &dense, p->q, p->k, p->v, p->o_ref, p->lse_ref, NULL), p->ctx);
}

/* A random problem and its dense reference. */
static inline void problem_init_ex(problem *p, attn_shape sh, float qk_scale, int large_logits, uint64_t seed)
{
    problem_fill(p, sh, qk_scale, large_logits, seed);
    problem_reference(p, NULL);
}

static inline void problem_init(problem *p, attn_shape sh, float qk_scale, uint64_t seed)
{
    problem_init_ex(p, sh, qk_scale, 0, seed);
}

/* Round the inputs to bf16: *q, *k, *v receive the bf16 copies (free them), and the problem's float
 * inputs become the rounded values, so that a reference computed afterwards sees what the kernel
 * sees and the tolerance only covers what the kernel does. */
static inline void problem_to_bf16(problem *p, uint16_t **q, uint16_t **k, uint16_t **v)
{
    const size_t nq = attn_q_elems(&p->sh), nkv = attn_kv_elems(&p->sh);
    *q = attn_alloc_bf16(nq), *k = attn_alloc_bf16(nkv), *v = attn_alloc_bf16(nkv);
    cr_assert(*q && *k && *v, "out of host memory [%s]", p->ctx);
    attn_f32_to_bf16_array(p->q, *q, nq), attn_f32_to_bf16_array(p->k, *k, nkv), attn_f32_to_bf16_array(p->v, *v, nkv);
    attn_bf16_to_f32_array(*q, p->q, nq), attn_bf16_to_f32_array(*k, p->k, nkv), attn_bf16_to_f32_array(*v, p->v, nkv);
}

static inline void problem_free(problem *p)
{
    free(p->q), free(p->k), free(p->v), free(p->o_ref), free(p->lse_ref);
    memset(p, 0, sizeof *p);
}

/* Compare and assert, with the problem's context in the message. `opts` (NULL: dense attention of the
 * problem's shape) and `qty` say how the reference was made from the problem's inputs, so that a
 * failure can be matched against known mistakes (common/grading/check.h: the mask at t = i, an off-by-one,
 * a wrong scale, ...) and the hint can name the mistake. */
static inline void expect_close_opts(const problem *p, const attn_oracle_opts *opts, attn_quantity qty,
                                     const char *what, attn_layout layout, const float *got, const double *ref,
                                     attn_tol tol)
{
    const attn_oracle_opts dense = attn_oracle_dense(&p->sh);
    const attn_cmp_source src = {opts ? opts : &dense, p->q, p->k, p->v, qty};
    attn_cmp r;
    attn_compare_f32_src(&r, what, layout, &src, got, ref, tol);
    cr_assert(r.ok, "%s [%s]", r.message, p->ctx);
}

static inline void expect_close(const problem *p, const char *what, attn_layout layout, const float *got,
                                const double *ref, attn_tol tol)
{
    expect_close_opts(p, NULL, ATTN_QTY_DEFAULT, what, layout, got, ref, tol);
}

/* Device copies of a problem's inputs, and poisoned outputs. */
typedef struct {
    float *q, *k, *v, *o, *lse;
    void *workspace;
} dev_problem;

static inline void dev_upload(dev_problem *d, const problem *p, size_t workspace_bytes)
{
    memset(d, 0, sizeof *d);
    const size_t nq = attn_q_elems(&p->sh) * sizeof(float), nkv = attn_kv_elems(&p->sh) * sizeof(float);
    assert_ok(attn_dalloc((void **)&d->q, nq), p->ctx);
    assert_ok(attn_dalloc((void **)&d->k, nkv), p->ctx);
    assert_ok(attn_dalloc((void **)&d->v, nkv), p->ctx);
    assert_ok(attn_dalloc((void **)&d->o, nq), p->ctx);
    assert_ok(attn_dalloc((void **)&d->lse, attn_lse_elems(&p->sh) * sizeof(float)), p->ctx);
    if (workspace_bytes) assert_ok(attn_dalloc(&d->workspace, workspace_bytes), p->ctx);
    assert_ok(attn_h2d(d->q, p->q, nq), p->ctx);
    assert_ok(attn_h2d(d->k, p->k, nkv), p->ctx);
    assert_ok(attn_h2d(d->v, p->v, nkv), p->ctx);
}

static inline void dev_free(dev_problem *d)
{
    attn_dfree(d->q), attn_dfree(d->k), attn_dfree(d->v), attn_dfree(d->o), attn_dfree(d->lse);
    attn_dfree(d->workspace);
    memset(d, 0, sizeof *d);
}

/* Download a device float array into a new host array. */
static inline float *download_f32(const float *dev, size_t n, const char *ctx)
{
    float *h = attn_alloc_f32(n);
    cr_assert(h, "out of host memory [%s]", ctx);
    assert_ok(attn_d2h(h, dev, n * sizeof(float)), ctx);
    return h;
}

/* ---------------------------------------------------------------- bf16 kernels (lesson 03 on) */

/* A bf16 attention kernel under test: run it on device buffers, return an attn status. */
typedef int (*bf16_launch_fn)(void *ctx, const attn_shape *sh, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                              uint16_t *o, float *lse);

/* Draw a problem, round its inputs to bf16, compute the oracle (with `opts`' visibility rules) on
 * the rounded values, run the kernel on poisoned outputs and compare o (bf16 tolerance) and lse.
 * `label` (may be NULL) is added to every failure message: what else the kernel was given. */
static inline void check_bf16_kernel_labeled(const attn_oracle_opts *opts, int large_logits, bf16_launch_fn fn,
                                             void *ctx, const char *label)
{
    const attn_shape sh = opts->shape;
    problem p;
    problem_fill(&p, sh, 1.0f, large_logits, attn_test_seed());
    if (opts->window > 0) {
        size_t n = strlen(p.ctx);
        snprintf(p.ctx + n, sizeof p.ctx - n, ", window %d", opts->window);
    }
    if (label) {
        size_t n = strlen(p.ctx);
        snprintf(p.ctx + n, sizeof p.ctx - n, ", %s", label);
    }
    const size_t nq = attn_q_elems(&sh), nkv = attn_kv_elems(&sh), nl = attn_lse_elems(&sh);
    uint16_t *hq, *hk, *hv, *ho = attn_alloc_bf16(nq);
    problem_to_bf16(&p, &hq, &hk, &hv);
    problem_reference(&p, opts);
    uint16_t *dq, *dk, *dv, *d_o;
    float *dlse;
    assert_ok(attn_dalloc((void **)&dq, nq * 2), p.ctx);
    assert_ok(attn_dalloc((void **)&dk, nkv * 2), p.ctx);
    assert_ok(attn_dalloc((void **)&dv, nkv * 2), p.ctx);
    assert_ok(attn_dalloc((void **)&d_o, nq * 2), p.ctx); /* poisoned: 0xFFFF is a bf16 NaN */
    assert_ok(attn_dalloc((void **)&dlse, nl * 4), p.ctx);
    assert_ok(attn_h2d(dq, hq, nq * 2), p.ctx);
    assert_ok(attn_h2d(dk, hk, nkv * 2), p.ctx);
    assert_ok(attn_h2d(dv, hv, nkv * 2), p.ctx);
    assert_ok(fn(ctx, &sh, dq, dk, dv, d_o, dlse), p.ctx);
    assert_ok(attn_dsync(), p.ctx);
    assert_ok(attn_d2h(ho, d_o, nq * 2), p.ctx);
    float *lse = download_f32(dlse, nl, p.ctx);
    attn_cmp r;
    const attn_cmp_source src = {opts, p.q, p.k, p.v, ATTN_QTY_DEFAULT};
    attn_compare_bf16_src(&r, "o", ATTN_LAYOUT_BMHD, &src, ho, p.o_ref, ATTN_TOL_BF16);
    cr_assert(r.ok, "%s [%s]", r.message, p.ctx);
    attn_compare_f32_src(&r, "lse", ATTN_LAYOUT_BHM, &src, lse, p.lse_ref, ((attn_tol){1e-3, 1e-4}));
    cr_assert(r.ok, "%s [%s]", r.message, p.ctx);
    free(hq), free(hk), free(hv), free(ho), free(lse);
    attn_dfree(dq), attn_dfree(dk), attn_dfree(dv), attn_dfree(d_o), attn_dfree(dlse);
    problem_free(&p);
}

static inline void check_bf16_kernel(const attn_oracle_opts *opts, int large_logits, bf16_launch_fn fn, void *ctx)
{
    check_bf16_kernel_labeled(opts, large_logits, fn, ctx, NULL);
}

/* ---------------------------------------------------------------- determinism (races) */

/* A kernel under test on fp32 device buffers (lessons 01-02). */
typedef int (*f32_launch_fn)(void *ctx, const attn_shape *sh, const float *q, const float *k, const float *v, float *o,
                             float *lse);

/* The same inputs `runs` times, outputs poisoned before each run: every run must give the same bits
 * as the first. A result that moves between runs is a race (a missing __syncthreads, a read of
 * shared memory before the copy into it has landed, two blocks writing one element). `f32` picks
 * the element type: 1 for fp32 kernels (fn is an f32_launch_fn), 0 for bf16 (a bf16_launch_fn). */
static inline void check_deterministic(attn_shape sh, int f32, void *fn, void *ctx, int runs, const char *label)
{
    problem p;
    problem_fill(&p, sh, 1.0f, 0, attn_test_seed());
    char where[320];
    snprintf(where, sizeof where, "%s, %s", label ? label : "determinism", p.ctx);
    const size_t nq = attn_q_elems(&sh), nkv = attn_kv_elems(&sh), nl = attn_lse_elems(&sh);
    const size_t es = f32 ? 4 : 2;
    void *dq, *dk, *dv, *d_o;
    float *dlse;
    assert_ok(attn_dalloc(&dq, nq * es), where);
    assert_ok(attn_dalloc(&dk, nkv * es), where);
    assert_ok(attn_dalloc(&dv, nkv * es), where);
    assert_ok(attn_dalloc(&d_o, nq * es), where);
    assert_ok(attn_dalloc((void **)&dlse, nl * 4), where);
    if (f32) {
        assert_ok(attn_h2d(dq, p.q, nq * 4), where);
        assert_ok(attn_h2d(dk, p.k, nkv * 4), where);
        assert_ok(attn_h2d(dv, p.v, nkv * 4), where);
    } else {
        uint16_t *hq, *hk, *hv;
        problem_to_bf16(&p, &hq, &hk, &hv);
        assert_ok(attn_h2d(dq, hq, nq * 2), where);
        assert_ok(attn_h2d(dk, hk, nkv * 2), where);
        assert_ok(attn_h2d(dv, hv, nkv * 2), where);
        free(hq), free(hk), free(hv);
    }
    unsigned char *first = attn_alloc_bytes(nq * es + nl * 4), *again = attn_alloc_bytes(nq * es + nl * 4);
    cr_assert(first && again, "out of host memory [%s]", where);
    for (int run = 0; run < runs; ++run) {
        assert_ok(attn_dpoison(d_o, nq * es), where);
        assert_ok(attn_dpoison(dlse, nl * 4), where);
        if (f32) assert_ok(((f32_launch_fn)fn)(ctx, &sh, dq, dk, dv, d_o, dlse), where);
        else assert_ok(((bf16_launch_fn)fn)(ctx, &sh, dq, dk, dv, d_o, dlse), where);
        assert_ok(attn_dsync(), where);
        unsigned char *dst = run ? again : first;
        assert_ok(attn_d2h(dst, d_o, nq * es), where);
        assert_ok(attn_d2h(dst + nq * es, dlse, nl * 4), where);
        if (run == 0) continue;
        size_t differ = 0, at = 0;
        for (size_t e = 0; e < nq * es + nl * 4; ++e)
            if (first[e] != again[e]) differ++, at = e;
        cr_assert(differ == 0,
                  "run %d differs from run 0 in %zu bytes (e.g. byte %zu of %s): the same inputs must give the same "
                  "bits; a result that moves between runs is a race (a missing __syncthreads?) [%s]",
                  run, differ, at < nq * es ? at : at - nq * es, at < nq * es ? "o" : "lse", where);
    }
    free(first), free(again);
    attn_dfree(dq), attn_dfree(dk), attn_dfree(dv), attn_dfree(d_o), attn_dfree(dlse);
    problem_free(&p);
}

/* ---------------------------------------------------------------- checked speed tests
 *
 * Every timed run of the learner's kernel gets fresh input content (same addresses) and poisoned
 * outputs, and its output is compared over every element with the frozen baseline's output on the
 * same inputs, or with the fp32 GPU reference where the baseline computes something else
 * (attn_time_ab_checked in common/grading/harness.h). A kernel that remembers a result, skips rows on
 * repeated calls or returns before its work is done fails here. */
typedef struct {
    attn_shape sh;
    uint16_t *q, *k, *v;          /* bf16 inputs, read by the learner's kernel */
    float *q32, *k32, *v32;       /* fp32 copies of the same values for an fp32 baseline, or NULL */
    uint16_t *o;                  /* the learner's outputs */
    float *lse;
    void *o_base;                 /* the baseline's output: fp32 when base_f32, else bf16 */
    int base_f32;
    float *lse_base;              /* the baseline's lse, or NULL when it writes none */
    const attn_gpu_ref_opts *ref; /* NULL: the baseline's output is the reference; else this GPU reference */
    float *ref_o, *ref_lse;       /* the reference's outputs (allocated by speed_io_init when ref is set) */
    uint64_t seed;
    int (*refresh)(void *extra, int rep, cudaStream_t stream); /* other inputs (block lists, ...), or NULL */
    void *extra;
    char ctx[480];
} speed_io;

/* Allocate the inputs and outputs of a speed test (device), fp32 copies when `base_f32`. */
static inline void speed_io_init(speed_io *io, attn_shape sh, int base_f32, const attn_gpu_ref_opts *ref,
                                 const char *what)
{
    memset(io, 0, sizeof *io);
    io->sh = sh, io->base_f32 = base_f32, io->ref = ref, io->seed = attn_test_seed();
    char st[120];
    snprintf(io->ctx, sizeof io->ctx, "%s, %s, seed %llu (rerun: ATTN_SEED=%llu)", what, shape_text(&sh, st, sizeof st),
             (unsigned long long)io->seed, (unsigned long long)io->seed);
    const size_t nq = attn_q_elems(&sh), nkv = attn_kv_elems(&sh), nl = attn_lse_elems(&sh);
    assert_ok(attn_dalloc((void **)&io->q, nq * 2), io->ctx);
    assert_ok(attn_dalloc((void **)&io->k, nkv * 2), io->ctx);
    assert_ok(attn_dalloc((void **)&io->v, nkv * 2), io->ctx);
    assert_ok(attn_dalloc((void **)&io->o, nq * 2), io->ctx);
    assert_ok(attn_dalloc((void **)&io->lse, nl * 4), io->ctx);
    assert_ok(attn_dalloc(&io->o_base, nq * (base_f32 ? 4 : 2)), io->ctx);
    assert_ok(attn_dalloc((void **)&io->lse_base, nl * 4), io->ctx);
    if (base_f32) {
        assert_ok(attn_dalloc((void **)&io->q32, nq * 4), io->ctx);
        assert_ok(attn_dalloc((void **)&io->k32, nkv * 4), io->ctx);
        assert_ok(attn_dalloc((void **)&io->v32, nkv * 4), io->ctx);
    }
    if (ref) {
        assert_ok(attn_dalloc((void **)&io->ref_o, nq * 4), io->ctx);
        assert_ok(attn_dalloc((void **)&io->ref_lse, nl * 4), io->ctx);
    }
}

static inline void speed_io_free(speed_io *io)
{
    attn_dfree(io->q), attn_dfree(io->k), attn_dfree(io->v), attn_dfree(io->o), attn_dfree(io->lse);
    attn_dfree(io->o_base), attn_dfree(io->lse_base), attn_dfree(io->q32), attn_dfree(io->k32), attn_dfree(io->v32);
    attn_dfree(io->ref_o), attn_dfree(io->ref_lse);
    memset(io, 0, sizeof *io);
}

static inline int speed_io_prepare(void *ctx, int rep, cudaStream_t stream)
{
    speed_io *io = (speed_io *)ctx;
    const size_t nq = attn_q_elems(&io->sh), nkv = attn_kv_elems(&io->sh), nl = attn_lse_elems(&io->sh);
    const uint64_t s = io->seed * 1000003u + (uint64_t)rep * 3u;
    const size_t D = (size_t)io->sh.D;
    int st = attn_dfill_random_bf16(io->q, nq, D, 1.0f, s + 0, stream);
    if (!st) st = attn_dfill_random_bf16(io->k, nkv, D, 1.0f, s + 1, stream);
    if (!st) st = attn_dfill_random_bf16(io->v, nkv, D, 1.0f, s + 2, stream);
    if (!st && io->base_f32) st = attn_dbf16_to_f32(io->q, io->q32, nq, stream);
    if (!st && io->base_f32) st = attn_dbf16_to_f32(io->k, io->k32, nkv, stream);
    if (!st && io->base_f32) st = attn_dbf16_to_f32(io->v, io->v32, nkv, stream);
    if (!st) st = attn_cuda_status(cudaMemsetAsync(io->o, 0xFF, nq * 2, stream), "poison o");
    if (!st) st = attn_cuda_status(cudaMemsetAsync(io->lse, 0xFF, nl * 4, stream), "poison lse");
    if (!st) st = attn_cuda_status(cudaMemsetAsync(io->o_base, 0xFF, nq * (io->base_f32 ? 4 : 2), stream), "poison");
    if (!st && io->lse_base) st = attn_cuda_status(cudaMemsetAsync(io->lse_base, 0xFF, nl * 4, stream), "poison");
    if (!st && io->refresh) st = io->refresh(io->extra, rep, stream);
    return st;
}

/* The guarded inputs (attn_timing_checks in common/grading/harness.h) of an fp32 speed test on a dev_problem:
 * both kernels read q, k and v, and the second of a pair must find them as prepare left them. */
#define F32_INPUT_GUARDS(sh, d)                                                                                   \
    {{(d)->q, attn_q_elems(sh) * 4, "q"}, {(d)->k, attn_kv_elems(sh) * 4, "k"}, {(d)->v, attn_kv_elems(sh) * 4, "v"}}

/* "o: 12 of 8388608 elements out of tolerance (12 never written); worst at b=0 i=5 (t=5) h=3 d=7: got .., expected .." */
static inline void dcmp_text(char *msg, size_t len, const char *what, const attn_dcmp *r, attn_layout layout,
                             const attn_shape *sh)
{
    long c[4] = {0, 0, 0, 0}, dims[4];
    if (layout == ATTN_LAYOUT_BMHD) dims[0] = sh->B, dims[1] = sh->M, dims[2] = sh->H, dims[3] = sh->D;
    else dims[0] = sh->B, dims[1] = sh->H, dims[2] = sh->M, dims[3] = 1;
    size_t idx = r->worst;
    for (int a = 3; a >= 0; --a) c[a] = (long)(idx % (size_t)dims[a]), idx /= (size_t)dims[a];
    char where[120];
    if (layout == ATTN_LAYOUT_BMHD)
        snprintf(where, sizeof where, "b=%ld i=%ld (t=%ld) h=%ld d=%ld", c[0], c[1], (long)sh->N - sh->M + c[1], c[2], c[3]);
    else
        snprintf(where, sizeof where, "b=%ld h=%ld i=%ld (t=%ld)", c[0], c[1], c[2], (long)sh->N - sh->M + c[2]);
    snprintf(msg, len, "%s: %zu of %zu elements out of tolerance (%zu never written, %zu NaN/Inf); worst at %s: got %.7g, "
             "expected %.7g", what, r->n_bad, r->count, r->n_unwritten, r->n_nonfinite, where, r->got, r->expected);
}

/* The fp32 speed tests (lessons 01-02), whose inputs and outputs are fp32: fresh inputs for timed run
 * `rep` (same addresses) and both kernels' outputs poisoned ... */
static inline int f32_speed_refill(const attn_shape *sh, float *q, float *k, float *v, float *o_yours, float *o_base,
                                   uint64_t seed, int rep, cudaStream_t stream)
{
    const size_t nq = attn_q_elems(sh), nkv = attn_kv_elems(sh);
    const uint64_t s = seed * 1000003u + (uint64_t)rep * 3u;
    int st = attn_dfill_random_f32(q, nq, sh->D, 1.0f, s, stream);
    if (!st) st = attn_dfill_random_f32(k, nkv, sh->D, 1.0f, s + 1, stream);
    if (!st) st = attn_dfill_random_f32(v, nkv, sh->D, 1.0f, s + 2, stream);
    if (!st) st = attn_cuda_status(cudaMemsetAsync(o_yours, 0xFF, nq * 4, stream), "poison");
    if (!st) st = attn_cuda_status(cudaMemsetAsync(o_base, 0xFF, nq * 4, stream), "poison");
    return st;
}

/* ... and, after both ran, the learner's o against the baseline's over every element (1 and msg on a
 * difference or a failed comparison). */
static inline int f32_speed_compare(const attn_shape *sh, const float *o_yours, const float *o_base, attn_tol tol,
                                    const char *what, char *msg, size_t len)
{
    attn_dcmp r;
    if (attn_dcompare_f32_f32(o_yours, o_base, attn_q_elems(sh), tol, &r)) {
        snprintf(msg, len, "the comparison failed: %s", attn_error_detail());
        return 1;
    }
    if (r.n_bad) dcmp_text(msg, len, what, &r, ATTN_LAYOUT_BMHD, sh);
    return r.n_bad != 0;
}

static inline int speed_io_check(void *ctx, int rep, char *msg, size_t len)
{
    speed_io *io = (speed_io *)ctx;
    (void)rep;
    const size_t nq = attn_q_elems(&io->sh), nl = attn_lse_elems(&io->sh);
    attn_dcmp r;
    int st;
    const float *ref_lse = NULL;
    if (io->ref) {
        st = attn_gpu_reference(io->ref, io->q, io->k, io->v, io->ref_o, io->ref_lse, 0);
        if (!st) st = attn_dsync();
        if (!st) st = attn_dcompare_bf16_f32(io->o, io->ref_o, nq, ATTN_TOL_BF16, &r);
        ref_lse = io->ref_lse;
    } else if (io->base_f32) {
        st = attn_dcompare_bf16_f32(io->o, (const float *)io->o_base, nq, ATTN_TOL_BF16, &r);
        ref_lse = io->lse_base;
    } else {
        st = attn_dcompare_bf16_bf16(io->o, (const uint16_t *)io->o_base, nq, ATTN_TOL_BF16, &r);
        ref_lse = io->lse_base;
    }
    if (st) {
        snprintf(msg, len, "the comparison failed: %s", attn_error_detail());
        return 1;
    }
    if (r.n_bad) {
        dcmp_text(msg, len, io->ref ? "o (vs the GPU reference)" : "o (vs the frozen baseline)", &r,
                  ATTN_LAYOUT_BMHD, &io->sh);
        return 1;
    }
    /* lse: against the reference's, or the baseline's when it writes one (set lse_base to NULL when not) */
    if (ref_lse) {
        st = attn_dcompare_f32_f32(io->lse, ref_lse, nl, (attn_tol){1e-3, 1e-4}, &r);
        if (st) {
            snprintf(msg, len, "the comparison failed: %s", attn_error_detail());
            return 1;
        }
        if (r.n_bad) {
            dcmp_text(msg, len, "lse", &r, ATTN_LAYOUT_BHM, &io->sh);
            return 1;
        }
    }
    return 0;
}

/* The checks of a speed_io run (prepare, check) with the inputs guarded (attn_timing_checks in
 * common/grading/harness.h): q, k, v and their fp32 copies, then `extra` (a lesson's other inputs: block
 * lists, keep weights; at most ATTN_MAX_GUARDED - 6). The reference of a check is computed from these
 * after the timed pair, so a kernel must leave them as prepare did. */
static inline attn_timing_checks speed_io_checks(speed_io *io, const attn_guarded *extra, int n_extra)
{
    const size_t nq = attn_q_elems(&io->sh), nkv = attn_kv_elems(&io->sh);
    attn_timing_checks c;
    memset(&c, 0, sizeof c);
    c.prepare = speed_io_prepare, c.check = speed_io_check, c.ctx = io;
    int x = 0;
    c.inputs[x++] = (attn_guarded){io->q, nq * 2, "q"};
    c.inputs[x++] = (attn_guarded){io->k, nkv * 2, "k"};
    c.inputs[x++] = (attn_guarded){io->v, nkv * 2, "v"};
    if (io->base_f32) {
        c.inputs[x++] = (attn_guarded){io->q32, nq * 4, "q (the fp32 copy)"};
        c.inputs[x++] = (attn_guarded){io->k32, nkv * 4, "k (the fp32 copy)"};
        c.inputs[x++] = (attn_guarded){io->v32, nkv * 4, "v (the fp32 copy)"};
    }
    cr_assert(n_extra >= 0 && x + n_extra <= ATTN_MAX_GUARDED, "speed_io_checks: %d guarded inputs, at most %d", x + n_extra,
              ATTN_MAX_GUARDED);
    for (int e = 0; e < n_extra; ++e) c.inputs[x++] = extra[e];
    return c;
}

/* A shape with a softmax scale other than 1/sqrt(D): kernels must use attn_softmax_scale(shape). */
static inline attn_shape with_scale(attn_shape sh, float scale)
{
    sh.scale = scale;
    return sh;
}

/* ---------------------------------------------------------------- past 2^31 elements */

/* The shape of the tests past 2^31 elements: q and o hold 64 * 4200 * 64 * 128 = 2.2e9 elements, so
 * an offset computed in 32-bit int arithmetic wraps (long contexts are the point of NSA). */
static inline attn_shape huge_shape(void) { return attn_make_shape(64, 4200, 4200, 64, 4, 128, 1); }

/* Run a bf16 kernel once on fresh inputs of `sh` (drawn on the device) and compare every element of o
 * and lse with the frozen flash baseline (ref == NULL: dense attention of sh) or with the fp32 GPU
 * reference under `ref`'s rules: for shapes too large for the CPU oracle. `hint` (may be NULL) ends a
 * failure's message. */
static inline void check_on_device(attn_shape sh, bf16_launch_fn fn, void *ctx, const attn_gpu_ref_opts *ref,
                                   int (*refresh)(void *extra, int rep, cudaStream_t stream), void *extra,
                                   const char *what, const char *hint)
{
    speed_io io;
    speed_io_init(&io, sh, 0, ref, what);
    io.refresh = refresh, io.extra = extra;
    assert_ok(speed_io_prepare(&io, 0, 0), io.ctx);
    assert_ok(attn_dsync(), io.ctx);
    assert_ok(fn(ctx, &sh, io.q, io.k, io.v, io.o, io.lse), io.ctx);
    if (!ref) assert_ok(attn_baseline_flash_bf16(&sh, io.q, io.k, io.v, (uint16_t *)io.o_base, io.lse_base, 0), io.ctx);
    assert_ok(attn_dsync(), io.ctx);
    char msg[1200];
    cr_assert(speed_io_check(&io, 0, msg, sizeof msg) == 0, "%s%s%s [%s]", msg, hint ? ". " : "", hint ? hint : "",
              io.ctx);
    speed_io_free(&io);
}

/* check_on_device past 2^31 elements. Skips when the GPU lacks the memory (measured here, before any
 * lesson code runs). */
static inline void check_huge(attn_shape sh, bf16_launch_fn fn, void *ctx, const attn_gpu_ref_opts *ref,
                              int (*refresh)(void *extra, int rep, cudaStream_t stream), void *extra, const char *what)
{
    size_t free_bytes = 0, total = 0;
    cudaMemGetInfo(&free_bytes, &total);
    const double need = attn_q_elems(&sh) * (ref ? 2.0 + 2 + 2 + 4 : 2.0 + 2 + 2) + attn_kv_elems(&sh) * 4.0;
    if ((double)free_bytes < need * 1.1)
        attn_skip_test("this test needs %.1f GB of GPU memory, %.1f GB are free", need / 1e9, free_bytes / 1e9);
    char st[120];
    cr_assert(attn_q_elems(&sh) > 2147483648ull, "the test shape must pass 2^31 elements [%s, %s]", what,
              shape_text(&sh, st, sizeof st));
    check_on_device(sh, fn, ctx, ref, refresh, extra, what,
                    "Hint: a tensor of this shape holds more than 2^31 elements: compute offsets in 64 bits "
                    "(size_t), e.g. ((size_t)b * M + i) * H * D");
}

/* A shape whose k and v pass 2^31 elements with few queries: B = 64, M = 130 (two row blocks), N = 4200,
 * H = G = 64, D = 128: k and v hold 2.2e9 elements each, q and o 68e6, so the test is about the K/V offsets
 * (the huge_shape tests above keep k and v at 138e6 elements). */
static inline attn_shape kv_huge_shape(void) { return attn_make_shape(64, 130, 4200, 64, 64, 128, 1); }

/* check_on_device for a shape whose k and v pass 2^31 elements, against the fp32 GPU reference under
 * `ref`'s rules (NULL: dense attention of sh). Skips when the GPU lacks the memory (measured here, before any
 * lesson code runs). */
static inline void check_huge_kv(attn_shape sh, bf16_launch_fn fn, void *ctx, const attn_gpu_ref_opts *ref,
                                 const char *what)
{
    attn_gpu_ref_opts dense;
    memset(&dense, 0, sizeof dense);
    dense.shape = sh;
    size_t free_bytes = 0, total = 0;
    cudaMemGetInfo(&free_bytes, &total);
    const double need = attn_q_elems(&sh) * (2.0 + 2 + 2 + 4) + attn_kv_elems(&sh) * 4.0;
    if ((double)free_bytes < need * 1.1)
        attn_skip_test("this test needs %.1f GB of GPU memory, %.1f GB are free", need / 1e9, free_bytes / 1e9);
    char st[120];
    cr_assert(attn_kv_elems(&sh) > 2147483648ull, "the test shape's k and v must pass 2^31 elements [%s, %s]", what,
              shape_text(&sh, st, sizeof st));
    check_on_device(sh, fn, ctx, ref ? ref : &dense, NULL, NULL, what,
                    "Hint: k and v of this shape hold more than 2^31 elements: compute their offsets in 64 bits "
                    "(size_t), e.g. ((size_t)b * N + s) * G * D");
}

/* Past 2^31 elements for the fp32 kernels of lessons 01-02: q, k, v drawn as bf16 on the device and
 * widened to fp32 (so that the bf16 GPU reference sees the same values), the kernel run once on
 * poisoned outputs, then every element of o (and of lse when `lse` is set) compared with the fp32 GPU
 * reference of dense attention. `workspace_bytes` of device memory are handed to fn as its ctx and freed
 * before the reference runs, so that the score matrix of lesson 01 and the reference's output are never
 * held at once. Two fp32 computations that sum in different orders: ATTN_TOL_F32_LARGE, as the speed
 * checks use (a wrapped offset gives errors of order 1, or unwritten elements). Skips when the GPU lacks
 * the memory (measured here, before any lesson code runs). */
static inline void check_huge_f32(attn_shape sh, f32_launch_fn fn, size_t workspace_bytes, int lse, const char *what)
{
    const size_t nq = attn_q_elems(&sh), nkv = attn_kv_elems(&sh), nl = attn_lse_elems(&sh);
    const double held = nq * (2.0 + 4 + 4) + nkv * (2.0 + 4) * 2 + nl * 4.0 * (lse ? 2 : 0);
    const double peak = held + fmax((double)workspace_bytes, nq * 4.0 + nl * 4.0);
    size_t free_bytes = 0, total = 0;
    cudaMemGetInfo(&free_bytes, &total);
    if ((double)free_bytes < peak * 1.1)
        attn_skip_test("this test needs %.1f GB of GPU memory, %.1f GB are free", peak / 1e9, free_bytes / 1e9);
    const uint64_t seed = attn_test_seed();
    char st[120], ctx[400];
    snprintf(ctx, sizeof ctx, "%s, %s, q and o hold %zu elements (2^31 = 2147483648), seed %llu (rerun: ATTN_SEED=%llu)",
             what, shape_text(&sh, st, sizeof st), nq, (unsigned long long)seed, (unsigned long long)seed);
    cr_assert(nq > 2147483648ull, "the test shape must pass 2^31 elements [%s]", ctx);
    uint16_t *q16, *k16, *v16;
    float *q, *k, *v, *o, *l = NULL, *ref_o, *ref_lse = NULL;
    void *ws = NULL;
    assert_ok(attn_dalloc((void **)&q16, nq * 2), ctx);
    assert_ok(attn_dalloc((void **)&k16, nkv * 2), ctx);
    assert_ok(attn_dalloc((void **)&v16, nkv * 2), ctx);
    assert_ok(attn_dalloc((void **)&q, nq * 4), ctx);
    assert_ok(attn_dalloc((void **)&k, nkv * 4), ctx);
    assert_ok(attn_dalloc((void **)&v, nkv * 4), ctx);
    assert_ok(attn_dalloc((void **)&o, nq * 4), ctx); /* poisoned */
    if (lse) assert_ok(attn_dalloc((void **)&l, nl * 4), ctx);
    assert_ok(attn_dfill_random_bf16(q16, nq, sh.D, 1.0f, seed, 0), ctx);
    assert_ok(attn_dfill_random_bf16(k16, nkv, sh.D, 1.0f, seed + 1, 0), ctx);
    assert_ok(attn_dfill_random_bf16(v16, nkv, sh.D, 1.0f, seed + 2, 0), ctx);
    assert_ok(attn_dbf16_to_f32(q16, q, nq, 0), ctx);
    assert_ok(attn_dbf16_to_f32(k16, k, nkv, 0), ctx);
    assert_ok(attn_dbf16_to_f32(v16, v, nkv, 0), ctx);
    if (workspace_bytes) assert_ok(attn_dalloc(&ws, workspace_bytes), ctx);
    assert_ok(attn_dsync(), ctx);
    assert_ok(fn(ws, &sh, q, k, v, o, l), ctx);
    assert_ok(attn_dsync(), ctx);
    attn_dfree(ws);
    assert_ok(attn_dalloc((void **)&ref_o, nq * 4), ctx);
    if (lse) assert_ok(attn_dalloc((void **)&ref_lse, nl * 4), ctx);
    attn_gpu_ref_opts ref;
    memset(&ref, 0, sizeof ref);
    ref.shape = sh;
    assert_ok(attn_gpu_reference(&ref, q16, k16, v16, ref_o, ref_lse, 0), ctx);
    assert_ok(attn_dsync(), ctx);
    attn_dcmp r;
    char msg[600] = "";
    assert_ok(attn_dcompare_f32_f32(o, ref_o, nq, ATTN_TOL_F32_LARGE, &r), ctx);
    if (r.n_bad) dcmp_text(msg, sizeof msg, "o (vs the fp32 GPU reference)", &r, ATTN_LAYOUT_BMHD, &sh);
    cr_assert(r.n_bad == 0, "%s%s. Hint: compute offsets in 64 bits (size_t), e.g. ((size_t)b * M + i) * H * D [%s]",
              msg, r.worst >= 2147483648ull ? " (past element 2^31)" : "", ctx);
    if (lse) {
        assert_ok(attn_dcompare_f32_f32(l, ref_lse, nl, ATTN_TOL_F32_LARGE, &r), ctx);
        if (r.n_bad) dcmp_text(msg, sizeof msg, "lse (vs the fp32 GPU reference)", &r, ATTN_LAYOUT_BHM, &sh);
        cr_assert(r.n_bad == 0, "%s [%s]", msg, ctx);
    }
    attn_dfree(q16), attn_dfree(k16), attn_dfree(v16), attn_dfree(q), attn_dfree(k), attn_dfree(v), attn_dfree(o);
    attn_dfree(l), attn_dfree(ref_o), attn_dfree(ref_lse);
}

/* ---------------------------------------------------------------- paths that engage above a size
 *
 * The reference kernels of lessons 03-07 launch their blocks in chunks of heads (lesson 03) or kv heads
 * (04-07) whose K and V fit in half of the L2 cache, `units_per_chunk = max(1, min(units, 0.5 L2 /
 * bytes_per_unit))`; below that size every unit is in one chunk and the chunk arithmetic (the last,
 * partial chunk above all) never runs. l2_split_keys picks the smallest key count that splits `units`
 * into chunks with a partial last one on this GPU, so that the tests reach that arithmetic whatever the
 * GPU's L2. */

/* This GPU's L2 cache in bytes (0 when it cannot be read). */
static inline double l2_cache_bytes(void)
{
    int dev = 0, l2 = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev) != cudaSuccess)
        return 0.0;
    return (double)l2;
}

/* Units per chunk for units of `unit_bytes` each, as the reference kernels compute it. */
static inline int l2_units_per_chunk(int units, double unit_bytes)
{
    const double per = floor(0.5 * l2_cache_bytes() / unit_bytes);
    return (int)fmax(1.0, fmin((double)units, per));
}

/* The smallest n >= n_min, in steps of `step`, such that `units` units of bytes_per_key(n) bytes each
 * make chunks of per_chunk units with 1 < per_chunk < units and a partial last chunk (units % per_chunk
 * != 0); *per_chunk receives it. `bytes_per_key` maps a key count to one unit's bytes (lesson 07: its
 * compressed tokens). Fails the test when no n up to n_max does. */
static inline int l2_split_keys(int units, double (*unit_bytes)(long n, void *ctx), void *ctx, long n_min, long n_max,
                                long step, int *per_chunk)
{
    for (long n = n_min; n <= n_max; n += step) {
        const int per = l2_units_per_chunk(units, unit_bytes(n, ctx));
        if (per > 1 && per < units && units % per != 0) {
            *per_chunk = per;
            return (int)n;
        }
    }
    cr_assert(0, "no key count in [%ld, %ld] splits %d units into L2 chunks with a partial last one on this GPU (L2 "
              "%.0f bytes)", n_min, n_max, units, l2_cache_bytes());
    return 0;
}

/* K and V of one head (lesson 03) or kv head (04-06) over n keys: 4 n D bytes (bf16), ctx -> int D. */
static inline double kv_head_bytes(long n, void *ctx) { return 4.0 * (double)n * *(const int *)ctx; }

/* The shapes every fp32 CUDA correctness test walks through: N = 1, sizes that are multiples of
 * no tile, M != N, GQA and MQA, D in {64, 128}, batch > 1. */
static const attn_shape kShapes[] = {
    {1, 1, 1, 1, 1, 64, 0.0f, 0},      /* a single key */
    {1, 1, 1, 2, 2, 128, 0.0f, 1},     /* a single key, causal */
    {2, 37, 37, 4, 2, 64, 0.21f, 1},   /* prime sizes, GQA, batch 2, a softmax scale of its own */
    {1, 100, 257, 6, 3, 128, 0.0f, 1}, /* M < N: queries are the last 100 positions */
    {2, 50, 129, 4, 4, 64, 0.0f, 0},   /* M < N, non-causal */
    {1, 1, 300, 8, 2, 128, 0.0f, 1},   /* decoding: one query, causal */
    {1, 333, 333, 2, 1, 64, 0.0f, 1},  /* MQA, not a multiple of 16 or 32 */
    {1, 64, 64, 3, 1, 128, 0.0f, 0},   /* exact tile multiples */
    {3, 17, 40, 8, 8, 64, 0.0f, 1},    /* batch 3, MHA */
};
#define NUM_SHAPES ((int)(sizeof kShapes / sizeof kShapes[0]))

#endif
