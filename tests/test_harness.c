/*
 * Tests of the tests' GPU helpers (common/grading/harness.h): the fp32 GPU reference against the
 * double-precision oracle under every visibility rule, the device comparison, fresh device inputs,
 * and checked A/B timing catching a kernel that skips work on repeated calls. GPU only: every test
 * skips without a device.
 */
#include "nsa.h"
#include "test_util.h"
#include "timing.h"
#include "oracle_nsa.h"
#include "random.h"

/* fp32 on the GPU against double on the CPU, from the same bf16 inputs: sums of up to a few thousand
 * terms in float, exp in float. */
static const attn_tol kRefTol = {2e-4, 2e-4};

/* Run the GPU reference with `g` (device pointers filled in here) and compare with the oracle. */
static void check_reference(attn_gpu_ref_opts g, const attn_oracle_opts *cpu, const int32_t *host_lists,
                            size_t n_lists, const float *host_weights, const char *what)
{
    const attn_shape sh = g.shape;
    problem p;
    problem_fill(&p, sh, 1.0f, 0, attn_test_seed());
    uint16_t *hq, *hk, *hv;
    problem_to_bf16(&p, &hq, &hk, &hv);
    problem_reference(&p, cpu);
    const size_t nq = attn_q_elems(&sh), nkv = attn_kv_elems(&sh), nl = attn_lse_elems(&sh);
    uint16_t *dq, *dk, *dv;
    float *d_o, *dlse;
    int32_t *dlists = NULL;
    float *dw = NULL;
    char ctx[400];
    snprintf(ctx, sizeof ctx, "%s, %s", what, p.ctx);
    assert_ok(attn_dalloc((void **)&dq, nq * 2), ctx);
    assert_ok(attn_dalloc((void **)&dk, nkv * 2), ctx);
    assert_ok(attn_dalloc((void **)&dv, nkv * 2), ctx);
    assert_ok(attn_dalloc((void **)&d_o, nq * 4), ctx);
    assert_ok(attn_dalloc((void **)&dlse, nl * 4), ctx);
    assert_ok(attn_h2d(dq, hq, nq * 2), ctx);
    assert_ok(attn_h2d(dk, hk, nkv * 2), ctx);
    assert_ok(attn_h2d(dv, hv, nkv * 2), ctx);
    if (host_lists) {
        assert_ok(attn_dalloc((void **)&dlists, n_lists * 4), ctx);
        assert_ok(attn_h2d(dlists, host_lists, n_lists * 4), ctx);
        g.block_indices = dlists;
    }
    if (host_weights) {
        const size_t nw = (size_t)sh.B * sh.N * sh.G;
        assert_ok(attn_dalloc((void **)&dw, nw * 4), ctx);
        assert_ok(attn_h2d(dw, host_weights, nw * 4), ctx);
        g.key_weights = dw;
    }
    assert_ok(attn_gpu_reference(&g, dq, dk, dv, d_o, dlse, 0), ctx);
    assert_ok(attn_dsync(), ctx);
    float *o = download_f32(d_o, nq, ctx), *lse = download_f32(dlse, nl, ctx);
    attn_cmp r;
    attn_compare_f32(&r, "o (GPU reference)", ATTN_LAYOUT_BMHD, &sh, g.window, o, p.o_ref, kRefTol);
    cr_assert(r.ok, "%s [%s]", r.message, ctx);
    attn_compare_f32(&r, "lse (GPU reference)", ATTN_LAYOUT_BHM, &sh, g.window, lse, p.lse_ref, kRefTol);
    cr_assert(r.ok, "%s [%s]", r.message, ctx);
    free(o), free(lse), free(hq), free(hk), free(hv);
    attn_dfree(dq), attn_dfree(dk), attn_dfree(dv), attn_dfree(d_o), attn_dfree(dlse), attn_dfree(dlists);
    attn_dfree(dw);
    problem_free(&p);
}

static attn_gpu_ref_opts ref_opts(attn_shape sh)
{
    attn_gpu_ref_opts g;
    memset(&g, 0, sizeof g);
    g.shape = sh;
    return g;
}

Test(harness, reference_dense_causal_window)
{
    require_gpu();
    const attn_shape shapes[] = {{2, 37, 53, 4, 2, 64, 0.0f, 1}, {1, 1, 300, 8, 2, 128, 0.0f, 1},
                                 {1, 50, 129, 4, 4, 64, 0.3f, 0}, {3, 17, 40, 8, 1, 128, 0.0f, 1}};
    for (int c = 0; c < 4; ++c) {
        attn_oracle_opts cpu = attn_oracle_dense(&shapes[c]);
        check_reference(ref_opts(shapes[c]), &cpu, NULL, 0, NULL, "dense");
        cpu.window = 7;
        attn_gpu_ref_opts g = ref_opts(shapes[c]);
        g.window = 7;
        check_reference(g, &cpu, NULL, 0, NULL, "window 7");
    }
}

Test(harness, reference_block_lists_and_key_weights)
{
    require_gpu();
    const attn_shape sh = {2, 45, 90, 4, 2, 64, 0.0f, 1};
    const int T = 3, bs = 16, nb = (sh.N + bs - 1) / bs;
    attn_rng rng;
    attn_rng_seed(&rng, attn_test_seed());
    /* one list per query, [B, M, G, T]: ascending distinct blocks, some padded */
    const size_t n_lists = (size_t)sh.B * sh.M * sh.G * T;
    int32_t *lists = attn_alloc_bytes(n_lists * 4);
    for (size_t r = 0; r < n_lists / T; ++r) {
        int used = 0;
        for (int j = 0; j < nb && used < T; ++j)
            if (attn_rng_uniform(&rng) < 0.4) lists[r * T + used++] = j;
        while (used < T) lists[r * T + used++] = -1;
    }
    attn_oracle_opts cpu = attn_oracle_dense(&sh);
    cpu.block_indices = lists, cpu.num_blocks = T, cpu.block_size = bs;
    attn_gpu_ref_opts g = ref_opts(sh);
    g.num_blocks = T, g.block_size = bs;
    check_reference(g, &cpu, lists, n_lists, NULL, "per-query block lists");

    /* key weights: some keys hidden, others down-weighted */
    const size_t nw = (size_t)sh.B * sh.N * sh.G;
    float *w = attn_alloc_bytes(nw * 4);
    for (size_t e = 0; e < nw; ++e) {
        const double u = attn_rng_uniform(&rng);
        w[e] = u < 0.3 ? 0.0f : (float)u;
    }
    attn_oracle_opts cpu_w = attn_oracle_dense(&sh);
    cpu_w.key_weights = w;
    check_reference(ref_opts(sh), &cpu_w, NULL, 0, w, "key weights");
    free(lists), free(w);
}

Test(harness, reference_compressed_rule)
{
    require_gpu();
    /* 200 positions, l = 32, d = 16: NC = 11 compressed tokens as the keys; the last 77 positions query */
    const long positions = 200;
    attn_nsa_params prm = attn_nsa_paper_defaults();
    const int NC = (int)attn_nsa_num_cmp(positions, &prm), M = 77;
    const attn_shape full = attn_make_shape(2, M, (int)positions, 4, 2, 128, 1); /* as the NSA oracle takes it */
    attn_shape sh = full;
    sh.N = NC; /* the keys the reference reads */
    const uint64_t seed = attn_test_seed();
    char ctx[200];
    snprintf(ctx, sizeof ctx, "compressed tokens l=32 d=16, 200 positions, NC=%d, M=%d, seed %llu", NC, M,
             (unsigned long long)seed);
    attn_rng rng;
    attn_rng_seed(&rng, seed);
    const size_t nq = attn_q_elems(&sh), nkv = attn_kv_elems(&sh), nl = attn_lse_elems(&sh);
    float *q = attn_alloc_f32(nq), *k = attn_alloc_f32(nkv), *v = attn_alloc_f32(nkv);
    attn_fill_random(q, nq, 128, 1.0f, &rng), attn_fill_random(k, nkv, 128, 1.0f, &rng);
    attn_fill_random(v, nkv, 128, 1.0f, &rng);
    uint16_t *hq = attn_alloc_bf16(nq), *hk = attn_alloc_bf16(nkv), *hv = attn_alloc_bf16(nkv);
    attn_f32_to_bf16_array(q, hq, nq), attn_f32_to_bf16_array(k, hk, nkv), attn_f32_to_bf16_array(v, hv, nkv);
    attn_bf16_to_f32_array(hq, q, nq), attn_bf16_to_f32_array(hk, k, nkv), attn_bf16_to_f32_array(hv, v, nkv);
    double *o_ref = attn_alloc_f64(nq), *lse_ref = attn_alloc_f64(nl);
    assert_ok(attn_oracle_nsa_cmp_attention(&full, &prm, q, k, v, o_ref, lse_ref), ctx);
    uint16_t *dq, *dk, *dv;
    float *d_o, *dlse;
    assert_ok(attn_dalloc((void **)&dq, nq * 2), ctx);
    assert_ok(attn_dalloc((void **)&dk, nkv * 2), ctx);
    assert_ok(attn_dalloc((void **)&dv, nkv * 2), ctx);
    assert_ok(attn_dalloc((void **)&d_o, nq * 4), ctx);
    assert_ok(attn_dalloc((void **)&dlse, nl * 4), ctx);
    assert_ok(attn_h2d(dq, hq, nq * 2), ctx);
    assert_ok(attn_h2d(dk, hk, nkv * 2), ctx);
    assert_ok(attn_h2d(dv, hv, nkv * 2), ctx);
    attn_gpu_ref_opts g = ref_opts(sh);
    g.positions = positions, g.cmp_l = prm.l, g.cmp_d = prm.d;
    assert_ok(attn_gpu_reference(&g, dq, dk, dv, d_o, dlse, 0), ctx);
    assert_ok(attn_dsync(), ctx);
    float *o = download_f32(d_o, nq, ctx), *lse = download_f32(dlse, nl, ctx);
    attn_cmp r;
    attn_compare_f32(&r, "o (GPU reference, compressed tokens)", ATTN_LAYOUT_BMHD, &sh, 0, o, o_ref, kRefTol);
    cr_assert(r.ok, "%s [%s]", r.message, ctx);
    attn_compare_f32(&r, "lse (GPU reference, compressed tokens)", ATTN_LAYOUT_BHM, &sh, 0, lse, lse_ref, kRefTol);
    cr_assert(r.ok, "%s [%s]", r.message, ctx);
    free(q), free(k), free(v), free(hq), free(hk), free(hv), free(o_ref), free(lse_ref), free(o), free(lse);
    attn_dfree(dq), attn_dfree(dk), attn_dfree(dv), attn_dfree(d_o), attn_dfree(dlse);
}

Test(harness, device_compare_and_fill)
{
    require_gpu();
    const size_t n = 100003;
    uint16_t *a, *b;
    float *f;
    assert_ok(attn_dalloc((void **)&a, n * 2), "compare");
    assert_ok(attn_dalloc((void **)&b, n * 2), "compare");
    assert_ok(attn_dalloc((void **)&f, n * 4), "compare");
    assert_ok(attn_dfill_random_bf16(a, n, 128, 1.0f, 42, 0), "fill");
    assert_ok(attn_dfill_random_bf16(b, n, 128, 1.0f, 42, 0), "fill");
    attn_dcmp r;
    assert_ok(attn_dcompare_bf16_bf16(a, b, n, ATTN_TOL_BF16, &r), "compare");
    cr_assert(r.n_bad == 0, "the same seed must give the same values: %zu differ", r.n_bad);
    assert_ok(attn_dfill_random_bf16(b, n, 128, 1.0f, 43, 0), "fill");
    assert_ok(attn_dcompare_bf16_bf16(a, b, n, ATTN_TOL_BF16, &r), "compare");
    cr_assert(r.n_bad > n / 2, "another seed must give other values: only %zu of %zu differ", r.n_bad, n);

    uint16_t *h = attn_alloc_bf16(n);
    assert_ok(attn_d2h(h, a, n * 2), "d2h");
    double sum = 0, sum2 = 0;
    for (size_t e = 0; e < n; ++e) {
        const float x = attn_bf16_to_f32(h[e]);
        cr_assert(isfinite(x), "fill gave a non-finite value at %zu", e);
        sum += x, sum2 += (double)x * x;
    }
    cr_assert(fabs(sum / n) < 0.05 && sum2 / n > 0.3 && sum2 / n < 3.0, "fill: mean %.3f, mean square %.3f",
              sum / n, sum2 / n);

    /* one wrong element, one unwritten, one NaN: counted, the worst is the unwritten one */
    assert_ok(attn_h2d(b, h, n * 2), "h2d");
    uint16_t wrong = attn_f32_to_bf16(attn_bf16_to_f32(h[17]) + 5.0f), poison = 0xFFFF, nan16 = 0x7FC0;
    assert_ok(attn_h2d(b + 17, &wrong, 2), "h2d");
    assert_ok(attn_h2d(b + 99999, &poison, 2), "h2d");
    assert_ok(attn_h2d(b + 500, &nan16, 2), "h2d");
    assert_ok(attn_dcompare_bf16_bf16(b, a, n, ATTN_TOL_BF16, &r), "compare");
    cr_assert(r.n_bad == 3 && r.n_unwritten == 1 && r.n_nonfinite == 1 && r.worst == 99999,
              "expected 3 bad (1 unwritten at 99999, 1 NaN), got %zu bad, %zu unwritten, %zu NaN, worst %zu", r.n_bad,
              r.n_unwritten, r.n_nonfinite, r.worst);
    /* fp32 against fp32, and an infinite reference matched exactly */
    float vals[4] = {1.0f, -INFINITY, 2.0f, 3.0f}, got[4] = {1.0f, -INFINITY, 2.0f, 3.5f};
    assert_ok(attn_h2d(f, vals, 16), "h2d");
    float *g;
    assert_ok(attn_dalloc((void **)&g, 16), "alloc");
    assert_ok(attn_h2d(g, got, 16), "h2d");
    assert_ok(attn_dcompare_f32_f32(g, f, 4, ATTN_TOL_F32, &r), "compare");
    cr_assert(r.n_bad == 1 && r.worst == 3 && r.got == 3.5 && r.expected == 3.0, "fp32 compare: %zu bad, worst %zu",
              r.n_bad, r.worst);
    free(h);
    attn_dfree(a), attn_dfree(b), attn_dfree(f), attn_dfree(g);
}

/* ---------------------------------------------------------------- checked timing */

typedef struct {
    attn_gpu_ref_opts opts;
    uint16_t *q, *k, *v;
    float *o, *lse;
    int calls, mode; /* the kernel under test: 0 honest, 1 lazy (computes on its first call only: it
                      * remembers its result), 2 vandal (computes, then zeroes its input k) */
} ref_launch;

static int launch_ref(void *ctx, cudaStream_t stream)
{
    ref_launch *r = (ref_launch *)ctx;
    if (r->mode == 1 && r->calls++ > 0) return ATTN_OK;
    int st = attn_gpu_reference(&r->opts, r->q, r->k, r->v, r->o, r->lse, stream);
    if (!st && r->mode == 2)
        st = attn_cuda_status(cudaMemsetAsync(r->k, 0, attn_kv_elems(&r->opts.shape) * 2, stream), "vandal");
    return st;
}

typedef struct {
    ref_launch *a, *b;
    size_t nq, nkv;
} timing_ctx;

static int prepare_fresh(void *ctx, int rep, cudaStream_t stream)
{
    timing_ctx *t = (timing_ctx *)ctx;
    int st = attn_dfill_random_bf16(t->a->q, t->nq, 64, 1.0f, 1000 + rep, stream);
    if (!st) st = attn_dfill_random_bf16(t->a->k, t->nkv, 64, 1.0f, 2000 + rep, stream);
    if (!st) st = attn_dfill_random_bf16(t->a->v, t->nkv, 64, 1.0f, 3000 + rep, stream);
    if (!st) st = attn_cuda_status(cudaMemsetAsync(t->a->o, 0xFF, t->nq * 4, stream), "poison");
    if (!st) st = attn_cuda_status(cudaMemsetAsync(t->b->o, 0xFF, t->nq * 4, stream), "poison");
    return st;
}

static int check_same(void *ctx, int rep, char *msg, size_t len)
{
    timing_ctx *t = (timing_ctx *)ctx;
    attn_dcmp r;
    if (attn_dcompare_f32_f32(t->b->o, t->a->o, t->nq, ATTN_TOL_F32, &r)) {
        snprintf(msg, len, "compare failed: %s", attn_error_detail());
        return 1;
    }
    if (r.n_bad) snprintf(msg, len, "%zu of %zu outputs differ (%zu never written)", r.n_bad, r.count, r.n_unwritten);
    (void)rep;
    return r.n_bad != 0;
}

/* Time an honest A against B (`mode` as in ref_launch), with or without the inputs guarded. */
static void run_checked(int mode, int guard, int *st_out, char *why, size_t why_len)
{
    const attn_shape sh = attn_make_shape(1, 64, 64, 2, 1, 64, 1);
    const size_t nq = attn_q_elems(&sh), nkv = attn_kv_elems(&sh);
    ref_launch a = {ref_opts(sh), NULL, NULL, NULL, NULL, NULL, 0, 0}, b;
    assert_ok(attn_dalloc((void **)&a.q, nq * 2), "alloc");
    assert_ok(attn_dalloc((void **)&a.k, nkv * 2), "alloc");
    assert_ok(attn_dalloc((void **)&a.v, nkv * 2), "alloc");
    assert_ok(attn_dalloc((void **)&a.o, nq * 4), "alloc");
    b = a;
    assert_ok(attn_dalloc((void **)&b.o, nq * 4), "alloc");
    b.mode = mode;
    timing_ctx t = {&a, &b, nq, nkv};
    attn_timing_checks checks = {prepare_fresh, check_same, &t, {{NULL, 0, NULL}}};
    if (guard) {
        checks.inputs[0] = (attn_guarded){a.q, nq * 2, "q"};
        checks.inputs[1] = (attn_guarded){a.k, nkv * 2, "k"};
        checks.inputs[2] = (attn_guarded){a.v, nkv * 2, "v"};
    }
    attn_timing ta, tb;
    *st_out = attn_time_ab_checked(launch_ref, &a, launch_ref, &b, &checks, 1, 3, &ta, &tb, why, why_len);
    attn_dfree(a.q), attn_dfree(a.k), attn_dfree(a.v), attn_dfree(a.o), attn_dfree(b.o);
}

Test(harness, checked_timing_accepts_honest_and_rejects_lazy)
{
    require_gpu();
    char why[1024];
    int st;
    run_checked(0, 0, &st, why, sizeof why);
    cr_assert(st == ATTN_OK, "an honest kernel was rejected: %s", why);
    run_checked(0, 1, &st, why, sizeof why);
    cr_assert(st == ATTN_OK, "an honest kernel was rejected with its inputs guarded: %s", why);
    run_checked(1, 1, &st, why, sizeof why);
    cr_assert(st != ATTN_OK, "a kernel that computes only on its first call passed the checked timing");
    cr_assert(strstr(why, "never written") || strstr(why, "differ"), "unexpected reason: %s", why);
}

/* A kernel that computes its output, then overwrites an input. In the first pair (A, then B) its output
 * matches A's, so only the guard can stop the run there; a check whose reference is computed after the
 * pair from the inputs would be computed from what the kernel left. The reason names the input. */
Test(harness, checked_timing_rejects_a_kernel_that_writes_its_inputs)
{
    require_gpu();
    char why[1024];
    int st;
    run_checked(2, 1, &st, why, sizeof why);
    cr_assert(st != ATTN_OK, "a kernel that zeroes its input k passed the guarded timing");
    cr_assert(strstr(why, "input k") && strstr(why, "changed"), "unexpected reason: %s", why);
}

/* The copy-engine descriptor helper lesson 09's fast path uses: maps for a K layout, named errors for
 * what the copy engine cannot take. */
Test(harness, kv_tensor_map)
{
    require_gpu();
    const attn_shape sh = attn_make_shape(2, 64, 300, 16, 4, 128, 1);
    uint16_t *k;
    assert_ok(attn_dalloc((void **)&k, attn_kv_elems(&sh) * 2), "alloc");
    CUtensorMap map;
    assert_ok(attn_kv_tensor_map(&map, k, &sh, 64, 64, 1), "a 64 x 64 box with the 128-byte swizzle");
    assert_ok(attn_kv_tensor_map(&map, k, &sh, 128, 32, 0), "a 128 x 32 box without swizzle");
    cr_assert(attn_kv_tensor_map(&map, k, &sh, 128, 64, 1) == ATTN_ERR_BAD_ARGUMENT,
              "the 128-byte swizzle with 128 columns (256-byte rows) must be refused");
    cr_assert(attn_kv_tensor_map(&map, k + 1, &sh, 64, 64, 0) == ATTN_ERR_BAD_ARGUMENT,
              "a tensor that is not 16-byte aligned must be refused");
    cr_assert(attn_kv_tensor_map(&map, k, &sh, 64, 300, 0) == ATTN_ERR_BAD_ARGUMENT, "a box of 300 rows must be refused");
    cr_assert(attn_kv_tensor_map(NULL, k, &sh, 64, 64, 0) == ATTN_ERR_BAD_ARGUMENT, "a NULL map must be refused");
    attn_dfree(k);
}
