/*
 * Tests of lesson 05, sliding-window attention. Built twice: against lessons/ and solutions/.
 *
 *   c_part     the window's key range, and window attention on the CPU, against the oracle
 *   cuda_part  window_attention_cuda against the oracle (window rule), many windows and shapes
 *   speed      against the frozen dense causal flash kernel (lesson 03) at a long N
 *   errors     bad input gets a named error code, never a crash
 */
#include "baselines.h"
#include "sliding_window.h"
#include "test_util.h"

/* Speed-up over dense causal flash at N = 32768, w = 512 (ideal N / 2w = 32; calibrated on an
 * H100, see the README). */
#define SPEED_TARGET 16.0

/* ================================================================ C part */

ATTN_TEST(c_part, key_range)
{
    const long Ns[] = {1, 5, 100};
    const int ws[] = {1, 2, 3, 50, 200};
    for (int a = 0; a < 3; ++a)
        for (int c = 0; c < 5; ++c)
            for (long t = 0; t < Ns[a]; ++t) {
                long first = -7, last = -7;
                assert_ok(window_key_range(t, ws[c], Ns[a], &first, &last), "window_key_range");
                /* the definition: keys s with t - w + 1 <= s <= t and 0 <= s < N */
                long want_first = -1, want_last = -1, count = 0;
                for (long s = 0; s < Ns[a]; ++s)
                    if (s <= t && s >= t - ws[c] + 1) {
                        if (want_first < 0) want_first = s;
                        want_last = s, count++;
                    }
                cr_assert(first == want_first && last == want_last,
                          "t=%ld w=%d N=%ld: got keys %ld..%ld, expected %ld..%ld (%ld keys: the window holds w keys "
                          "including t itself)", t, ws[c], Ns[a], first, last, want_first, want_last, count);
            }
}

ATTN_TEST(c_part, window_attention)
{
    const attn_shape shapes[] = {{1, 20, 20, 2, 1, 16, 0.0f, 1}, {2, 9, 30, 4, 2, 32, 0.0f, 1},
                                 {1, 1, 50, 2, 2, 64, 0.0f, 1}, {1, 40, 40, 2, 2, 128, 0.0f, 1}};
    const int ws[] = {1, 2, 7, 16, 100};
    for (int c = 0; c < 4; ++c)
        for (int wi = 0; wi < 5; ++wi) {
            problem p;
            problem_fill(&p, shapes[c], 1.0f, 0, attn_test_seed());
            attn_oracle_opts opts = attn_oracle_dense(&p.sh);
            opts.window = ws[wi];
            problem_reference(&p, &opts);
            float *o = attn_alloc_f32(attn_q_elems(&p.sh)), *lse = attn_alloc_f32(attn_lse_elems(&p.sh));
            attn_poison(o, attn_q_elems(&p.sh) * 4), attn_poison(lse, attn_lse_elems(&p.sh) * 4);
            char ctx[300];
            snprintf(ctx, sizeof ctx, "window %d, %s", ws[wi], p.ctx);
            assert_ok(window_attention_cpu(&p.sh, ws[wi], p.q, p.k, p.v, o, lse), ctx);
            attn_cmp r;
            attn_compare_f32(&r, "o", ATTN_LAYOUT_BMHD, &p.sh, ws[wi], o, p.o_ref, ATTN_TOL_F32);
            cr_assert(r.ok, "%s [%s]", r.message, ctx);
            attn_compare_f32(&r, "lse", ATTN_LAYOUT_BHM, &p.sh, ws[wi], lse, p.lse_ref, ATTN_TOL_F32);
            cr_assert(r.ok, "%s [%s]", r.message, ctx);
            free(o), free(lse);
            problem_free(&p);
        }
}

/* ================================================================ CUDA part */

static int run_window(void *ctx, const attn_shape *sh, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                      uint16_t *o, float *lse)
{
    return window_attention_cuda(sh, *(const int *)ctx, q, k, v, o, lse, 0);
}

static void check(attn_shape sh, int w, int large_logits)
{
    attn_oracle_opts opts = attn_oracle_dense(&sh);
    opts.window = w;
    check_bf16_kernel(&opts, large_logits, run_window, &w);
}

ATTN_TEST(cuda_part, window_sizes)
{
    require_gpu();
    /* around the key tile (64) and the packed row block (128 rows), and wider than N */
    const int ws[] = {1, 2, 63, 64, 65, 100, 128, 300, 1000};
    for (int c = 0; c < 9; ++c) {
        check(attn_make_shape(1, 400, 400, 4, 4, 64, 1), ws[c], 0);
        check(attn_make_shape(1, 250, 450, 8, 2, 128, 1), ws[c], 0);
    }
}

ATTN_TEST(cuda_part, gqa_and_mqa)
{
    require_gpu();
    check(attn_make_shape(2, 300, 300, 16, 4, 128, 1), 100, 0);
    check(attn_make_shape(1, 200, 700, 8, 1, 64, 1), 64, 0);
    check(attn_make_shape(1, 1, 1000, 16, 2, 128, 1), 512, 0); /* decoding */
}

ATTN_TEST(cuda_part, tile_edges_and_large_logits)
{
    require_gpu();
    const int ns[] = {1, 63, 64, 65, 127, 129};
    for (int a = 0; a < 6; ++a)
        for (int b = 0; b <= a; ++b) check(attn_make_shape(1, ns[b], ns[a], 2, 2, 64, 1), 33, 0);
    check(attn_make_shape(1, 500, 500, 4, 2, 128, 1), 70, 1);
}

/* ================================================================ speed */

typedef struct {
    bf16_dev *d;
    uint16_t *o;
    float *lse;
    int window; /* 0: the frozen dense causal flash kernel */
} window_launch;

static int launch(void *ctx, cudaStream_t stream)
{
    window_launch *a = (window_launch *)ctx;
    const attn_shape *sh = &a->d->sh;
    if (!a->window) return attn_baseline_flash_bf16(sh, a->d->q, a->d->k, a->d->v, a->o, a->lse, stream);
    return window_attention_cuda(sh, a->window, a->d->q, a->d->k, a->d->v, a->o, a->lse, stream);
}

ATTN_TEST(speed, vs_dense_causal_flash)
{
    require_gpu();
    const int w = 512;
    const attn_shape sh = attn_make_shape(1, 32768, 32768, 16, 4, 128, 1);
    char st[140], ctx[240];
    const uint64_t seed = attn_test_seed();
    shape_text(&sh, st, sizeof st);
    snprintf(st + strlen(st), sizeof st - strlen(st), ", window %d", w);
    snprintf(ctx, sizeof ctx, "%s, seed %llu", st, (unsigned long long)seed);
    bf16_dev d;
    bf16_dev_init(&d, sh, seed, ctx);
    window_launch base = {&d, NULL, NULL, 0}, yours = {&d, d.o, d.lse, w};
    assert_ok(attn_dalloc((void **)&base.o, attn_q_elems(&sh) * 2), ctx);
    assert_ok(attn_dalloc((void **)&base.lse, attn_lse_elems(&sh) * 4), ctx);
    /* correct first: the window result at the first w positions equals dense causal attention
     * there (those queries see all their keys either way) */
    assert_ok(launch(&yours, 0), ctx);
    assert_ok(launch(&base, 0), ctx);
    assert_ok(attn_dsync(), ctx);
    attn_shape head = sh;
    head.M = w; /* rows 0 .. w-1 of [B=1, M, H, D] are the first w * H * D elements */
    expect_same_bf16(&head, d.o, base.o, "o at positions t < w (vs dense causal flash)", ctx);
    attn_timing t_base, t_yours;
    assert_ok(attn_time_ab(launch, &base, launch, &yours, 1, 5, &t_base, &t_yours), ctx);
    attn_speed_result res = {"05", "window_vs_dense_causal", st, t_base.median_ms, t_yours.median_ms, SPEED_TARGET,
                             4.0 * sh.D * sh.H * ((double)sh.N * w - (double)w * (w - 1) / 2), /* visible pairs */
                             (double)(attn_q_elems(&sh) * 2 + attn_kv_elems(&sh) * 2) * 2};
    attn_report_speed(&res);
    const double ratio = t_base.median_ms / t_yours.median_ms;
    cr_expect(ratio >= SPEED_TARGET, "speed-up %.2fx is below the target %.1fx (dense %.3f ms, yours %.3f ms) [%s]",
              ratio, SPEED_TARGET, t_base.median_ms, t_yours.median_ms, ctx);
    attn_dfree(base.o), attn_dfree(base.lse);
    bf16_dev_free(&d);
}

/* ================================================================ errors */

static uint16_t fake16[8] __attribute__((aligned(16)));
static float fake[8];

ATTN_TEST(errors, bad_input_is_named)
{
    long a, b;
    assert_status(window_key_range(3, 0, 10, &a, &b), ATTN_ERR_BAD_ARGUMENT, "w = 0");
    assert_status(window_key_range(10, 4, 10, &a, &b), ATTN_ERR_BAD_ARGUMENT, "t = N");
    assert_status(window_key_range(3, 4, 10, NULL, &b), ATTN_ERR_NULL_POINTER, "first = NULL");
    const attn_shape ok = attn_make_shape(1, 4, 4, 4, 2, 64, 1), noncausal = attn_make_shape(1, 4, 4, 4, 2, 64, 0),
                     bad_g = attn_make_shape(1, 4, 4, 6, 4, 64, 1), bad_d = attn_make_shape(1, 4, 4, 4, 2, 32, 1);
    assert_status(window_attention_cuda(&ok, 0, fake16, fake16, fake16, fake16, fake, 0), ATTN_ERR_BAD_ARGUMENT,
                  "window = 0");
    assert_status(window_attention_cuda(&noncausal, 8, fake16, fake16, fake16, fake16, fake, 0),
                  ATTN_ERR_BAD_ARGUMENT, "causal = 0");
    assert_status(window_attention_cuda(&bad_g, 8, fake16, fake16, fake16, fake16, fake, 0),
                  ATTN_ERR_HEADS_NOT_DIVISIBLE, "H=6, G=4");
    assert_status(window_attention_cuda(&bad_d, 8, fake16, fake16, fake16, fake16, fake, 0), ATTN_ERR_UNSUPPORTED_D,
                  "D=32");
    assert_status(window_attention_cuda(&ok, 8, NULL, fake16, fake16, fake16, fake, 0), ATTN_ERR_NULL_POINTER,
                  "q = NULL");
    assert_status(window_attention_cpu(&ok, -1, fake, fake, fake, fake, fake), ATTN_ERR_BAD_ARGUMENT, "window = -1");
}
