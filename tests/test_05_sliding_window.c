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
#define SPEED_TARGET ATTN_TARGET_WINDOW_VS_DENSE_CAUSAL /* lesson.json */

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
                          "t=%ld w=%d N=%ld: got keys %ld..%ld, expected %ld..%ld (%ld key%s: the window holds w keys "
                          "including t itself)", t, ws[c], Ns[a], first, last, want_first, want_last, count,
                          count == 1 ? "" : "s");
            }
}

ATTN_TEST(c_part, window_attention)
{
    const attn_shape shapes[] = {{1, 20, 20, 2, 1, 16, 0.0f, 1}, {2, 9, 30, 4, 2, 32, 0.27f, 1},
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

/* Small enough for compute-sanitizer (the grader runs the sanitizers on sanitizer_paths, which covers both
 * kernel instances). */
ATTN_TEST(cuda_part, sanitizer_small)
{
    require_gpu();
    check(attn_make_shape(1, 200, 200, 4, 2, 64, 1), 70, 0);
}

ATTN_TEST(cuda_part, gqa_and_mqa)
{
    require_gpu();
    check(with_scale(attn_make_shape(2, 300, 300, 16, 4, 128, 1), 0.07f), 100, 0); /* a scale of its own */
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

ATTN_TEST(cuda_part, deterministic)
{
    require_gpu();
    int w = 97;
    check_deterministic(attn_make_shape(2, 700, 901, 8, 2, 128, 1), 0, (void *)run_window, &w, 4,
                        "window_attention_cuda w=97, four runs");
}

ATTN_TEST(cuda_part, past_2_31_elements)
{
    require_gpu();
    int w = 512;
    attn_gpu_ref_opts ref;
    memset(&ref, 0, sizeof ref);
    ref.shape = huge_shape(), ref.window = w;
    check_huge(huge_shape(), run_window, &w, &ref, NULL, NULL, "window_attention_cuda w=512 past 2^31 elements");
}

/* The launch order's kv-head chunks (sliding_window.cu: the kv heads whose K and V fit in half of L2 run
 * together): at the smallest N where this GPU's L2 splits the G kv heads into chunks with a partial last
 * one (l2_split_keys in test_util.h), which no shape above reaches. Against the fp32 GPU reference. */
static void check_group_chunks(int B, int M, int H, int G, int D, int w, float scale)
{
    int per = 0;
    const int N = l2_split_keys(G, kv_head_bytes, &D, M + 3, 1 << 20, 61, &per);
    const attn_shape sh = with_scale(attn_make_shape(B, M, N, H, G, D, 1), scale);
    char what[200];
    snprintf(what, sizeof what, "window_attention_cuda w=%d, %d kv heads in L2 chunks of %d (the last one partial)", w,
             G, per);
    attn_gpu_ref_opts ref;
    memset(&ref, 0, sizeof ref);
    ref.shape = sh, ref.window = w;
    check_on_device(sh, run_window, &w, &ref, NULL, NULL, what,
                    "Hint: every kv head of every chunk, the last (partial) chunk too, must be computed once");
}

/* k and v past 2^31 elements (kv_huge_shape), w = 512, against the fp32 GPU reference. */
ATTN_TEST(cuda_part, kv_past_2_31_elements)
{
    require_gpu();
    int w = 512;
    attn_gpu_ref_opts ref;
    memset(&ref, 0, sizeof ref);
    ref.shape = kv_huge_shape(), ref.window = w;
    check_huge_kv(kv_huge_shape(), run_window, &w, &ref, "window_attention_cuda w=512, k and v past 2^31 elements");
}

ATTN_TEST(cuda_part, group_chunks)
{
    require_gpu();
    check_group_chunks(2, 150, 16, 8, 64, 100, 0.0f);
    check_group_chunks(2, 45, 12, 6, 128, 300, 0.1f);
}

/* What ./course grade runs compute-sanitizer memcheck and racecheck on (lesson.json, "sanitize"): both
 * instances of the kernel (D = 64 and 128), windows that start inside a tile, cross the diagonal and the
 * lower window edge (w = 70, 65), several packed row blocks (the last partial) and key tiles, B > 1 and
 * G > 1, a scale of its own. */
ATTN_TEST(cuda_part, sanitizer_paths)
{
    require_gpu();
    check(attn_make_shape(2, 130, 200, 4, 2, 64, 1), 70, 0);
    check(with_scale(attn_make_shape(2, 60, 190, 6, 2, 128, 1), 1.0f / 3.0f), 65, 0);
}

/* ================================================================ speed */

typedef struct {
    speed_io *io;
    int window; /* 0: the frozen dense causal flash kernel */
} window_launch;

static int launch(void *ctx, cudaStream_t stream)
{
    window_launch *a = (window_launch *)ctx;
    speed_io *io = a->io;
    const attn_shape sh = io->sh; /* a copy: the check's shape is not the kernel's to change */
    if (!a->window) return attn_baseline_flash_bf16(&sh, io->q, io->k, io->v, io->o_base, io->lse_base, stream);
    return window_attention_cuda(&sh, a->window, io->q, io->k, io->v, io->o, io->lse, stream);
}

ATTN_TEST(speed, vs_dense_causal_flash)
{
    require_gpu();
    const int w = 512;
    const attn_shape sh = attn_make_shape(1, 32768, 32768, 16, 4, 128, 1);
    /* the dense baseline computes something else: every timed output is checked against the fp32
     * GPU reference with the window rule */
    attn_gpu_ref_opts ref;
    memset(&ref, 0, sizeof ref);
    ref.shape = sh, ref.window = w;
    speed_io io;
    speed_io_init(&io, sh, 0, &ref, "window 512 vs dense causal flash");
    window_launch base = {&io, 0}, yours = {&io, w};
    attn_timing_checks checks = speed_io_checks(&io, NULL, 0);
    attn_timing t_base, t_yours;
    char why[1200], st[140];
    const int rc = attn_time_ab_checked(launch, &base, launch, &yours, &checks, 1, 5, &t_base, &t_yours, why, sizeof why);
    cr_assert(rc == ATTN_OK, "%s [%s]", why, io.ctx);
    shape_text(&sh, st, sizeof st);
    snprintf(st + strlen(st), sizeof st - strlen(st), ", window %d", w);
    attn_speed_result res = {"05", "window_vs_dense_causal", st, t_base.median_ms, t_yours.median_ms, SPEED_TARGET,
                             4.0 * sh.D * sh.H * ((double)sh.N * w - (double)w * (w - 1) / 2), /* visible pairs */
                             (double)(attn_q_elems(&sh) * 2 + attn_kv_elems(&sh) * 2) * 2};
    attn_report_speed(&res);
    const double ratio = t_base.median_ms / t_yours.median_ms;
    cr_expect(ratio >= SPEED_TARGET, "speed-up %.2fx is below the target %.1fx (dense %.3f ms, yours %.3f ms) [%s]",
              ratio, SPEED_TARGET, t_base.median_ms, t_yours.median_ms, io.ctx);
    speed_io_free(&io);
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
