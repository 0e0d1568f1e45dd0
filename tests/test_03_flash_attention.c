/*
 * Tests of lesson 03, flash attention on tensor cores. Built twice: against lessons/ and solutions/.
 *
 *   c_part     flash_blocked_cpu (fp32) against the oracle, for many block sizes Br x Bc
 *   cuda_part  flash_attention_cuda (bf16 in/out, fp32 lse) on many shapes (skipped without a GPU)
 *   speed      against the frozen lesson-02 fused kernel and the lesson-01 naive kernel, with targets
 *   errors     bad input gets a named error code, never a crash
 *
 * bf16 inputs: the test draws float data, rounds it to bf16 and gives the oracle the rounded values,
 * so the tolerance only has to cover what the kernel does (bf16 P in the P V product, a bf16
 * output, fp32 sums in another order), not the rounding of the inputs.
 */
#include "baselines.h"
#include "flash_attention.h"
#include "test_util.h"

/* Speed-up targets on the speed shape (calibrated on an H100, see the README). */
#define TARGET_VS_ONLINE ATTN_TARGET_FLASH_VS_ONLINE /* lesson.json */
#define TARGET_VS_NAIVE ATTN_TARGET_FLASH_VS_NAIVE

/* bf16 output: 8 mantissa bits (relative 2^-9 when rounded) plus P rounded to bf16 in P V
 * (check_bf16_kernel in test_util.h also checks lse, computed in fp32, to 1e-3 + 1e-4 |ref|). */
#define TOL_O ATTN_TOL_BF16

/* ================================================================ C part */

static const attn_shape kCpuShapes[] = {
    {1, 1, 1, 1, 1, 8, 0.0f, 1},    {2, 5, 9, 4, 2, 16, 0.4f, 1},    {1, 37, 37, 3, 1, 32, 0.0f, 1},
    {2, 3, 40, 2, 2, 64, 0.0f, 0},  {1, 20, 70, 4, 4, 128, 0.0f, 1}, {1, 1, 200, 2, 1, 64, 0.0f, 1},
};
#define NUM_CPU_SHAPES ((int)(sizeof kCpuShapes / sizeof kCpuShapes[0]))

static void check_blocked(int large_logits, attn_tol tol)
{
    const int blocks[][2] = {{1, 1}, {4, 3}, {16, 32}, {64, 64}, {7, 256}, {128, 5}};
    uint64_t seed = attn_test_seed();
    for (int c = 0; c < NUM_CPU_SHAPES; ++c)
        for (int causal = 0; causal <= 1; ++causal) {
            attn_shape sh = kCpuShapes[c];
            sh.causal = causal;
            problem p;
            problem_init_ex(&p, sh, 1.0f, large_logits, seed);
            float *o = attn_alloc_f32(attn_q_elems(&sh)), *lse = attn_alloc_f32(attn_lse_elems(&sh));
            for (int bsz = 0; bsz < 6; ++bsz) {
                attn_poison(o, attn_q_elems(&sh) * sizeof(float));
                attn_poison(lse, attn_lse_elems(&sh) * sizeof(float));
                char ctx[300];
                snprintf(ctx, sizeof ctx, "Br=%d Bc=%d, %s", blocks[bsz][0], blocks[bsz][1], p.ctx);
                assert_ok(flash_blocked_cpu(&sh, p.q, p.k, p.v, o, lse, blocks[bsz][0], blocks[bsz][1]), ctx);
                attn_cmp r;
                attn_compare_f32(&r, "o", ATTN_LAYOUT_BMHD, &sh, 0, o, p.o_ref, tol);
                cr_assert(r.ok, "%s [%s]", r.message, ctx);
                attn_compare_f32(&r, "lse", ATTN_LAYOUT_BHM, &sh, 0, lse, p.lse_ref, tol);
                cr_assert(r.ok, "%s [%s]", r.message, ctx);
            }
            free(o), free(lse);
            problem_free(&p);
        }
}

ATTN_TEST(c_part, blocked_loop_order) { check_blocked(0, ATTN_TOL_F32); }
ATTN_TEST(c_part, blocked_large_logits) { check_blocked(1, ATTN_TOL_F32_LARGE); }

/* ================================================================ CUDA part */

static int run_flash(void *ctx, const attn_shape *sh, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                     uint16_t *o, float *lse)
{
    (void)ctx;
    return flash_attention_cuda(sh, q, k, v, o, lse, 0);
}

static void check_cuda(attn_shape sh, int large_logits)
{
    attn_oracle_opts opts = attn_oracle_dense(&sh);
    check_bf16_kernel(&opts, large_logits, run_flash, NULL);
}

ATTN_TEST(cuda_part, noncausal)
{
    require_gpu();
    for (int c = 0; c < NUM_SHAPES; ++c)
        if (!kShapes[c].causal) check_cuda(kShapes[c], 0);
}

ATTN_TEST(cuda_part, causal)
{
    require_gpu();
    for (int c = 0; c < NUM_SHAPES; ++c)
        if (kShapes[c].causal) check_cuda(kShapes[c], 0);
}

ATTN_TEST(cuda_part, gqa_and_mqa)
{
    require_gpu();
    const attn_shape shapes[] = {{1, 200, 200, 8, 8, 64, 0.0f, 1}, {1, 200, 200, 8, 2, 128, 0.0f, 1},
                                 {1, 150, 300, 8, 1, 64, 0.0f, 1}, {2, 25, 100, 12, 4, 128, 0.05f, 0}};
    for (int c = 0; c < 4; ++c) check_cuda(shapes[c], 0);
}

ATTN_TEST(cuda_part, every_small_m_and_n)
{
    require_gpu();
    /* around the tile sizes Br = 128 and Bc = 64 of the reference (and 16, 32 of other designs) */
    const int ns[] = {1, 15, 16, 17, 63, 64, 65, 127, 128, 129, 200};
    for (int a = 0; a < 11; ++a)
        for (int b = 0; b <= a; ++b) {
            check_cuda(attn_make_shape(1, ns[b], ns[a], 2, 1, 64, 1), 0);
            check_cuda(attn_make_shape(1, ns[b], ns[a], 2, 2, 128, a % 2), 0);
        }
}

ATTN_TEST(cuda_part, long_rows)
{
    require_gpu();
    /* many key tiles and several query blocks: the running max moves often, tiles are reused */
    check_cuda(attn_make_shape(1, 700, 3000, 2, 1, 128, 1), 0);
    check_cuda(attn_make_shape(2, 1000, 1000, 2, 2, 64, 1), 0);
    check_cuda(attn_make_shape(1, 300, 2500, 2, 2, 64, 0), 0);
}

ATTN_TEST(cuda_part, large_logits)
{
    require_gpu();
    check_cuda(attn_make_shape(1, 300, 300, 2, 2, 64, 1), 1);
    check_cuda(attn_make_shape(1, 100, 500, 2, 1, 128, 0), 1);
}

/* The same inputs twice must give bitwise the same output: a result that moves between runs is a
 * race (a missing barrier, a read of shared memory before the copy into it has landed). */
ATTN_TEST(cuda_part, deterministic)
{
    require_gpu();
    const attn_shape sh = attn_make_shape(1, 1024, 1024, 8, 2, 128, 1);
    problem p;
    problem_fill(&p, sh, 1.0f, 0, attn_test_seed());
    uint16_t *xq, *xk, *xv;
    problem_to_bf16(&p, &xq, &xk, &xv);
    problem_reference(&p, NULL);
    const size_t nq = attn_q_elems(&sh), nkv = attn_kv_elems(&sh), nl = attn_lse_elems(&sh);
    uint16_t *dq, *dk, *dv, *d_o, *first = attn_alloc_bf16(nq), *again = attn_alloc_bf16(nq);
    float *dlse;
    assert_ok(attn_dalloc((void **)&dq, nq * 2), p.ctx);
    assert_ok(attn_dalloc((void **)&dk, nkv * 2), p.ctx);
    assert_ok(attn_dalloc((void **)&dv, nkv * 2), p.ctx);
    assert_ok(attn_dalloc((void **)&d_o, nq * 2), p.ctx);
    assert_ok(attn_dalloc((void **)&dlse, nl * 4), p.ctx);
    assert_ok(attn_h2d(dq, xq, nq * 2), p.ctx);
    assert_ok(attn_h2d(dk, xk, nkv * 2), p.ctx);
    assert_ok(attn_h2d(dv, xv, nkv * 2), p.ctx);
    for (int run = 0; run < 5; ++run) {
        assert_ok(attn_dpoison(d_o, nq * 2), p.ctx);
        assert_ok(flash_attention_cuda(&sh, dq, dk, dv, d_o, dlse, 0), p.ctx);
        assert_ok(attn_dsync(), p.ctx);
        assert_ok(attn_d2h(run ? again : first, d_o, nq * 2), p.ctx);
        if (run == 0) {
            attn_cmp r;
            attn_compare_bf16(&r, "o", ATTN_LAYOUT_BMHD, &sh, 0, first, p.o_ref, TOL_O);
            cr_assert(r.ok, "%s [%s]", r.message, p.ctx);
            continue;
        }
        size_t differ = 0, at = 0;
        for (size_t e = 0; e < nq; ++e)
            if (first[e] != again[e]) differ++, at = e;
        cr_assert(differ == 0, "run %d differs from run 0 in %zu elements (e.g. flat index %zu: 0x%04x vs 0x%04x): the "
                  "same inputs must give the same bits; a moving result is a race (a missing __syncthreads?) [%s]",
                  run, differ, at, again[at], first[at], p.ctx);
    }
    free(first), free(again), free(xq), free(xk), free(xv);
    attn_dfree(dq), attn_dfree(dk), attn_dfree(dv), attn_dfree(d_o), attn_dfree(dlse);
    problem_free(&p);
}

/* Past 2^31 elements: q and o of this shape hold 2.2e9 elements; compared with the frozen flash
 * kernel (64-bit offsets) over every element. */
ATTN_TEST(cuda_part, past_2_31_elements)
{
    require_gpu();
    check_huge(huge_shape(), run_flash, NULL, NULL, NULL, NULL, "flash_attention_cuda past 2^31 elements");
}

/* The launch order's head chunks (flash_attention.cu: the heads whose K and V fit in half of L2 run
 * together): at the smallest N where this GPU's L2 splits the H heads into chunks with a partial last
 * one (l2_split_keys in test_util.h), which no shape above reaches. Against the fp32 GPU reference. */
static void check_head_chunks(int B, int M, int H, int G, int D, int causal, float scale)
{
    int per = 0;
    const int N = l2_split_keys(H, kv_head_bytes, &D, M + 3, 1 << 20, 61, &per);
    const attn_shape sh = with_scale(attn_make_shape(B, M, N, H, G, D, causal), scale);
    char what[160];
    snprintf(what, sizeof what, "flash_attention_cuda, %d heads in L2 chunks of %d (the last one partial)", H, per);
    attn_gpu_ref_opts ref;
    memset(&ref, 0, sizeof ref);
    ref.shape = sh;
    check_on_device(sh, run_flash, NULL, &ref, NULL, NULL, what,
                    "Hint: every head of every chunk, the last (partial) chunk too, must be computed once");
}

/* k and v past 2^31 elements (kv_huge_shape: MHA, few queries), against the fp32 GPU reference. */
ATTN_TEST(cuda_part, kv_past_2_31_elements)
{
    require_gpu();
    check_huge_kv(kv_huge_shape(), run_flash, NULL, NULL, "flash_attention_cuda, k and v past 2^31 elements");
}

ATTN_TEST(cuda_part, head_chunks)
{
    require_gpu();
    check_head_chunks(2, 130, 24, 4, 64, 1, 0.0f);
    check_head_chunks(2, 70, 20, 5, 128, 0, 0.1f);
}

/* What ./course grade runs compute-sanitizer memcheck and racecheck on (lesson.json, "sanitize"): both
 * instances of the kernel (D = 64 and 128), causal and not, two row blocks of 128 (the last partial) and
 * several key tiles of 64 (the last partial, so the mask at the end of the keys runs too), B > 1 and G > 1,
 * a softmax scale of its own. */
ATTN_TEST(cuda_part, sanitizer_paths)
{
    require_gpu();
    check_cuda(attn_make_shape(2, 130, 150, 4, 2, 64, 1), 0);
    check_cuda(with_scale(attn_make_shape(2, 70, 130, 4, 2, 128, 0), 1.0f / 3.0f), 0);
}

/* ================================================================ speed */

typedef struct {
    speed_io *io;
    float *workspace;
    int which; /* 0 flash (yours), 1 frozen online (lesson 02), 2 frozen naive (lesson 01) */
} launch_args;

static int launch(void *ctx, cudaStream_t stream)
{
    launch_args *a = (launch_args *)ctx;
    speed_io *io = a->io;
    const attn_shape sh = io->sh; /* a copy: the check's shape is not the kernel's to change */
    switch (a->which) {
    case 0: return flash_attention_cuda(&sh, io->q, io->k, io->v, io->o, io->lse, stream);
    case 1: return attn_baseline_online_f32(&sh, io->q32, io->k32, io->v32, io->o_base, io->lse_base, stream);
    default: return attn_baseline_naive_f32(&sh, io->q32, io->k32, io->v32, io->o_base, a->workspace, stream);
    }
}

/* Time flash_attention_cuda against a frozen fp32 baseline on the same (bf16) inputs, fresh for every
 * run; every run's output is checked against the baseline's. */
static void speed_vs(int which, attn_shape sh, double target, const char *name)
{
    require_gpu();
    speed_io io;
    speed_io_init(&io, sh, 1, NULL, name);
    float *ws = NULL;
    if (which == 2) {
        assert_ok(attn_dalloc((void **)&ws, attn_baseline_naive_workspace_bytes(&sh)), io.ctx);
        attn_dfree(io.lse_base), io.lse_base = NULL; /* the naive kernel writes no lse */
    }
    launch_args yours = {&io, NULL, 0}, base = {&io, ws, which};
    attn_timing_checks checks = speed_io_checks(&io, NULL, 0);
    attn_timing t_base, t_yours;
    char why[1200];
    const int st = attn_time_ab_checked(launch, &base, launch, &yours, &checks, 2, 10, &t_base, &t_yours, why, sizeof why);
    cr_assert(st == ATTN_OK, "%s [%s]", why, io.ctx);
    char text[120];
    shape_text(&sh, text, sizeof text);
    const size_t nq = attn_q_elems(&sh), nkv = attn_kv_elems(&sh), nl = attn_lse_elems(&sh);
    attn_speed_result res = {"03", name, text, t_base.median_ms, t_yours.median_ms, target, attn_flops(&sh),
                             (double)(nq * 2 + nkv * 2) * 2 + nl * 4.0};
    attn_report_speed(&res);
    const double ratio = t_base.median_ms / t_yours.median_ms;
    cr_expect(ratio >= target, "speed-up %.2fx is below the target %.1fx (baseline %.3f ms, yours %.3f ms) [%s]",
              ratio, target, t_base.median_ms, t_yours.median_ms, io.ctx);
    attn_dfree(ws);
    speed_io_free(&io);
}

ATTN_TEST(speed, vs_online_softmax)
{
    speed_vs(1, attn_make_shape(1, 4096, 4096, 32, 32, 128, 1), TARGET_VS_ONLINE, "flash_vs_online");
}

ATTN_TEST(speed, vs_naive)
{
    speed_vs(2, attn_make_shape(1, 4096, 4096, 16, 16, 64, 1), TARGET_VS_NAIVE, "flash_vs_naive");
}

/* ================================================================ errors */

static uint16_t fake16[8] __attribute__((aligned(16)));
static float fake[8];

ATTN_TEST(errors, bad_shapes_are_named)
{
    const struct {
        attn_shape sh;
        int expected;
        const char *what;
    } cases[] = {
        {{1, 4, 4, 6, 4, 64, 0.0f, 0}, ATTN_ERR_HEADS_NOT_DIVISIBLE, "H=6, G=4"},
        {{1, 9, 8, 2, 2, 64, 0.0f, 1}, ATTN_ERR_M_GT_N, "M=9 > N=8"},
        {{1, 4, 4, 2, 2, 96, 0.0f, 0}, ATTN_ERR_UNSUPPORTED_D, "D=96"},
        {{1, 4, 4, 0, 2, 64, 0.0f, 0}, ATTN_ERR_BAD_SHAPE, "H=0"},
    };
    for (int c = 0; c < 4; ++c) {
        assert_status(flash_attention_cuda(&cases[c].sh, fake16, fake16, fake16, fake16, fake, 0), cases[c].expected,
                      cases[c].what);
        cr_assert(strlen(attn_error_detail()) > 0, "no detail message for %s", cases[c].what);
    }
    const attn_shape ok = attn_make_shape(1, 4, 4, 2, 2, 64, 0);
    assert_status(flash_attention_cuda(&ok, fake16 + 1, fake16, fake16, fake16, fake, 0), ATTN_ERR_BAD_ARGUMENT,
                  "q not 16-byte aligned");
}

ATTN_TEST(errors, null_pointers_and_block_sizes)
{
    const attn_shape sh = attn_make_shape(1, 4, 4, 2, 2, 64, 0);
    assert_status(flash_attention_cuda(&sh, fake16, NULL, fake16, fake16, fake, 0), ATTN_ERR_NULL_POINTER, "k = NULL");
    assert_status(flash_blocked_cpu(&sh, fake, fake, fake, fake, NULL, 16, 16), ATTN_ERR_NULL_POINTER, "lse = NULL");
    assert_status(flash_blocked_cpu(&sh, fake, fake, fake, fake, fake, 0, 16), ATTN_ERR_BAD_ARGUMENT, "Br = 0");
    assert_status(flash_blocked_cpu(&sh, fake, fake, fake, fake, fake, 16, 300), ATTN_ERR_BAD_ARGUMENT, "Bc = 300");
}
