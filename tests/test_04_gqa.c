/*
 * Tests of lesson 04, GQA and MQA. Built twice: against lessons/ and solutions/.
 *
 *   c_part     the head mapping, the KV-cache arithmetic, repeating K/V (against the oracle)
 *   cuda_part  gqa_attention_cuda for G = H (MHA), 1 < G < H (GQA) and G = 1 (MQA), many shapes
 *   speed      against the frozen "repeat K/V to H heads, then dense flash (lesson 03)" baseline
 *   errors     bad input gets a named error code, never a crash
 */
#include "baselines.h"
#include "gqa_attention.h"
#include "test_util.h"

/* Speed-up over repeat-then-flash on the speed shape. Calibrated on an H100: the reference runs 1.17x
 * there (0.851 ms vs 0.998 ms). The margin is small because the frozen flash kernel already shares
 * K/V through L2 (its launch order groups the heads of a chunk); the repeat costs two extra passes. */
#define SPEED_TARGET ATTN_TARGET_GQA_VS_REPEAT_KV_THEN_FLASH /* lesson.json */

/* ================================================================ C part */

ATTN_TEST(c_part, kv_head_mapping)
{
    const int shapes[][2] = {{8, 8}, {8, 4}, {8, 2}, {8, 1}, {64, 4}, {12, 3}, {1, 1}};
    for (int c = 0; c < 7; ++c) {
        const int H = shapes[c][0], G = shapes[c][1];
        int counts[64] = {0};
        for (int h = 0; h < H; ++h) {
            int g = -1;
            assert_ok(gqa_kv_head(H, G, h, &g), "gqa_kv_head");
            /* the definition: groups of H / G consecutive query heads share a kv head */
            cr_assert(g >= 0 && g < G && h >= g * (H / G) && h < (g + 1) * (H / G),
                      "H=%d G=%d: query head %d mapped to kv head %d; heads %d..%d belong to kv head %d", H, G, h, g,
                      (h / (H / G)) * (H / G), (h / (H / G) + 1) * (H / G) - 1, h / (H / G));
            counts[g]++;
        }
        for (int g = 0; g < G; ++g)
            cr_assert(counts[g] == H / G, "H=%d G=%d: kv head %d serves %d query heads, expected %d", H, G, g,
                      counts[g], H / G);
    }
}

ATTN_TEST(c_part, kv_cache_bytes)
{
    /* A 70B-class model: 80 layers, 8 kv heads of 128, bf16. Per token: 2 (K, V) * 80 * 8 * 128 * 2 B
     * = 327,680 B. With 64 heads (MHA) it would be 8x that. */
    uint64_t bytes = 0;
    assert_ok(gqa_kv_cache_bytes(80, 1, 1, 8, 128, 2, &bytes), "GQA, one token");
    cr_assert_eq(bytes, 327680ull, "80 layers, G=8, D=128, bf16, 1 token: got %llu bytes, expected 327680",
                 (unsigned long long)bytes);
    assert_ok(gqa_kv_cache_bytes(80, 1, 1, 64, 128, 2, &bytes), "MHA, one token");
    cr_assert_eq(bytes, 2621440ull, "MHA (G=64): got %llu bytes, expected 2621440", (unsigned long long)bytes);
    /* 128k tokens, batch 8, MQA: 2 * 80 * 8 * 131072 * 1 * 128 * 2 = 42,949,672,960 B: past 2^32 */
    assert_ok(gqa_kv_cache_bytes(80, 8, 131072, 1, 128, 2, &bytes), "MQA, 128k tokens, batch 8");
    cr_assert_eq(bytes, 42949672960ull, "MQA 128k x 8: got %llu bytes, expected 42949672960 (64-bit arithmetic?)",
                 (unsigned long long)bytes);
}

ATTN_TEST(c_part, repeat_kv_matches_the_oracle)
{
    /* attention on GQA weights == attention of an MHA model whose K/V are repeated */
    const attn_shape shapes[] = {{2, 5, 9, 8, 2, 16, 0.33f, 1}, {1, 7, 7, 6, 1, 32, 0.0f, 0}, {1, 3, 12, 4, 4, 8, 0.0f, 1}};
    for (int c = 0; c < 3; ++c) {
        problem p;
        problem_init(&p, shapes[c], 1.0f, attn_test_seed());
        attn_shape mha = p.sh;
        mha.G = mha.H;
        const size_t nrep = attn_kv_elems(&mha);
        float *k_rep = attn_alloc_f32(nrep), *v_rep = attn_alloc_f32(nrep);
        attn_poison(k_rep, nrep * 4), attn_poison(v_rep, nrep * 4);
        assert_ok(gqa_repeat_kv_cpu(&p.sh, p.k, k_rep), p.ctx);
        assert_ok(gqa_repeat_kv_cpu(&p.sh, p.v, v_rep), p.ctx);
        for (size_t e = 0; e < nrep; ++e)
            cr_assert(!attn_is_poison_f32(k_rep[e]) && !attn_is_poison_f32(v_rep[e]),
                      "repeated K/V element %zu never written [%s]", e, p.ctx);
        double *o_mha = attn_alloc_f64(attn_q_elems(&mha));
        attn_oracle_opts opts = attn_oracle_dense(&mha);
        assert_ok(attn_oracle_forward(&opts, p.q, k_rep, v_rep, o_mha, NULL, NULL), p.ctx);
        for (size_t e = 0; e < attn_q_elems(&mha); ++e)
            cr_assert(fabs(o_mha[e] - p.o_ref[e]) < 1e-12,
                      "MHA on repeated K/V differs from GQA at element %zu: %.15g vs %.15g [%s]", e, o_mha[e],
                      p.o_ref[e], p.ctx);
        free(k_rep), free(v_rep), free(o_mha);
        problem_free(&p);
    }
}

/* ================================================================ CUDA part */

static int run_gqa(void *ctx, const attn_shape *sh, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                   uint16_t *o, float *lse)
{
    (void)ctx;
    return gqa_attention_cuda(sh, q, k, v, o, lse, 0);
}

static void check(attn_shape sh, int large_logits)
{
    attn_oracle_opts opts = attn_oracle_dense(&sh);
    check_bf16_kernel(&opts, large_logits, run_gqa, NULL);
}

ATTN_TEST(cuda_part, mha_shapes)
{
    require_gpu();
    for (int c = 0; c < NUM_SHAPES; ++c) check(kShapes[c], 0);
}

ATTN_TEST(cuda_part, gqa_groups)
{
    require_gpu();
    /* heads per group 2, 3, 4, 6, 8, 16: 128 packed rows hold 64, 42.7, 32, ... positions */
    const int hg[][2] = {{8, 4}, {12, 4}, {16, 4}, {12, 2}, {16, 2}, {32, 2}};
    for (int c = 0; c < 6; ++c) {
        check(attn_make_shape(1, 150, 150, hg[c][0], hg[c][1], 64, 1), 0);
        check(attn_make_shape(2, 37, 100, hg[c][0], hg[c][1], 128, c % 2), 0);
    }
}

/* Small enough for compute-sanitizer: 6 blocks, up to 3 key tiles each, so a race shows in seconds (the
 * grader runs the sanitizers on sanitizer_paths, which covers both kernel instances). */
ATTN_TEST(cuda_part, sanitizer_small)
{
    require_gpu();
    check(attn_make_shape(1, 130, 130, 4, 2, 64, 1), 0);
}

ATTN_TEST(cuda_part, mqa)
{
    require_gpu();
    check(attn_make_shape(1, 200, 200, 8, 1, 128, 1), 0);
    check(attn_make_shape(1, 1, 300, 16, 1, 64, 1), 0); /* decoding: one position, 16 heads */
    check(with_scale(attn_make_shape(2, 45, 45, 6, 1, 64, 0), 0.29f), 0); /* a softmax scale of its own */
}

ATTN_TEST(cuda_part, tile_edges)
{
    require_gpu();
    const int ns[] = {1, 7, 8, 9, 63, 64, 65, 129};
    for (int a = 0; a < 8; ++a)
        for (int b = 0; b <= a; ++b) check(attn_make_shape(1, ns[b], ns[a], 16, 2, 64, 1), 0);
}

ATTN_TEST(cuda_part, long_rows_and_large_logits)
{
    require_gpu();
    check(attn_make_shape(1, 500, 2000, 8, 2, 128, 1), 0);
    check(attn_make_shape(1, 300, 300, 8, 2, 64, 1), 1);
}

ATTN_TEST(cuda_part, deterministic)
{
    require_gpu();
    check_deterministic(with_scale(attn_make_shape(2, 777, 1001, 16, 2, 128, 1), 0.1f), 0, (void *)run_gqa, NULL, 4,
                        "gqa_attention_cuda, four runs");
}

ATTN_TEST(cuda_part, past_2_31_elements)
{
    require_gpu();
    check_huge(huge_shape(), run_gqa, NULL, NULL, NULL, NULL, "gqa_attention_cuda past 2^31 elements");
}

/* The launch order's kv-head chunks (gqa_attention.cu: the kv heads whose K and V fit in half of L2 run
 * together): at the smallest N where this GPU's L2 splits the G kv heads into chunks with a partial last
 * one (l2_split_keys in test_util.h), which no shape above reaches. Against the fp32 GPU reference. */
static void check_group_chunks(int B, int M, int H, int G, int D, int causal, float scale)
{
    int per = 0;
    const int N = l2_split_keys(G, kv_head_bytes, &D, M + 3, 1 << 20, 61, &per);
    const attn_shape sh = with_scale(attn_make_shape(B, M, N, H, G, D, causal), scale);
    char what[160];
    snprintf(what, sizeof what, "gqa_attention_cuda, %d kv heads in L2 chunks of %d (the last one partial)", G, per);
    attn_gpu_ref_opts ref;
    memset(&ref, 0, sizeof ref);
    ref.shape = sh;
    check_on_device(sh, run_gqa, NULL, &ref, NULL, NULL, what,
                    "Hint: every kv head of every chunk, the last (partial) chunk too, must be computed once");
}

/* k and v past 2^31 elements with two heads per kv head (B = 128, M = 130, N = 4200, H = 64, G = 32,
 * D = 128), against the fp32 GPU reference. */
ATTN_TEST(cuda_part, kv_past_2_31_elements)
{
    require_gpu();
    check_huge_kv(attn_make_shape(128, 130, 4200, 64, 32, 128, 1), run_gqa, NULL, NULL,
                  "gqa_attention_cuda, k and v past 2^31 elements");
}

ATTN_TEST(cuda_part, group_chunks)
{
    require_gpu();
    check_group_chunks(2, 150, 16, 8, 64, 1, 0.0f);
    check_group_chunks(2, 45, 18, 6, 128, 0, 0.1f);
}

/* What ./course grade runs compute-sanitizer memcheck and racecheck on (lesson.json, "sanitize"): both
 * instances of the kernel (D = 64 and 128), causal and not, several packed row blocks (the last partial;
 * H/G = 3 does not divide 128) and key tiles (the last partial), B > 1 and G > 1, a scale of its own.
 * sanitizer_small (one block row of the lesson's first design) stays as it was. */
ATTN_TEST(cuda_part, sanitizer_paths)
{
    require_gpu();
    check(attn_make_shape(2, 130, 150, 4, 2, 64, 1), 0);
    check(with_scale(attn_make_shape(2, 45, 130, 6, 2, 128, 0), 1.0f / 3.0f), 0);
}

/* ================================================================ speed */

typedef struct {
    speed_io *io;
    uint16_t *k_rep, *v_rep;
    int baseline;
} gqa_launch;

static int launch(void *ctx, cudaStream_t stream)
{
    gqa_launch *a = (gqa_launch *)ctx;
    speed_io *io = a->io;
    const attn_shape copy = io->sh; /* a copy: the check's shape is not the kernel's to change */
    const attn_shape *sh = &copy;
    if (!a->baseline) return gqa_attention_cuda(sh, io->q, io->k, io->v, io->o, io->lse, stream);
    attn_shape mha = *sh;
    mha.G = mha.H;
    int st = attn_baseline_repeat_kv_bf16(sh, io->k, a->k_rep, stream);
    if (!st) st = attn_baseline_repeat_kv_bf16(sh, io->v, a->v_rep, stream);
    if (!st) st = attn_baseline_flash_bf16(&mha, io->q, a->k_rep, a->v_rep, io->o_base, io->lse_base, stream);
    return st;
}

ATTN_TEST(speed, vs_repeat_kv_then_flash)
{
    require_gpu();
    const attn_shape sh = attn_make_shape(1, 4096, 4096, 64, 4, 128, 1);
    speed_io io;
    speed_io_init(&io, sh, 0, NULL, "GQA vs repeat K/V + flash");
    attn_shape mha = sh;
    mha.G = mha.H;
    gqa_launch base = {&io, NULL, NULL, 1}, yours = {&io, NULL, NULL, 0};
    assert_ok(attn_dalloc((void **)&base.k_rep, attn_kv_elems(&mha) * 2), io.ctx);
    assert_ok(attn_dalloc((void **)&base.v_rep, attn_kv_elems(&mha) * 2), io.ctx);
    attn_timing_checks checks = speed_io_checks(&io, NULL, 0);
    attn_timing t_base, t_yours;
    char why[1200], st[120];
    const int rc = attn_time_ab_checked(launch, &base, launch, &yours, &checks, 2, 10, &t_base, &t_yours, why, sizeof why);
    cr_assert(rc == ATTN_OK, "%s [%s]", why, io.ctx);
    attn_speed_result res = {"04", "gqa_vs_repeat_kv_then_flash", shape_text(&sh, st, sizeof st), t_base.median_ms,
                             t_yours.median_ms, SPEED_TARGET, attn_flops(&sh),
                             (double)(attn_q_elems(&sh) * 2 + attn_kv_elems(&sh) * 2) * 2};
    attn_report_speed(&res);
    const double ratio = t_base.median_ms / t_yours.median_ms;
    cr_expect(ratio >= SPEED_TARGET, "speed-up %.2fx is below the target %.2fx (baseline %.3f ms, yours %.3f ms) [%s]",
              ratio, SPEED_TARGET, t_base.median_ms, t_yours.median_ms, io.ctx);
    attn_dfree(base.k_rep), attn_dfree(base.v_rep);
    speed_io_free(&io);
}

/* ================================================================ errors */

static uint16_t fake16[8] __attribute__((aligned(16)));
static float fake[8];

ATTN_TEST(errors, bad_input_is_named)
{
    int g;
    uint64_t bytes;
    assert_status(gqa_kv_head(6, 4, 0, &g), ATTN_ERR_HEADS_NOT_DIVISIBLE, "H=6, G=4");
    assert_status(gqa_kv_head(8, 4, 8, &g), ATTN_ERR_BAD_ARGUMENT, "h=8 of H=8");
    assert_status(gqa_kv_head(8, 4, 0, NULL), ATTN_ERR_NULL_POINTER, "g = NULL");
    assert_status(gqa_kv_cache_bytes(0, 1, 1, 8, 128, 2, &bytes), ATTN_ERR_BAD_SHAPE, "layers = 0");
    const attn_shape bad_g = attn_make_shape(1, 4, 4, 6, 4, 64, 0), bad_d = attn_make_shape(1, 4, 4, 8, 2, 80, 0),
                     bad_m = attn_make_shape(1, 5, 4, 8, 2, 64, 1);
    assert_status(gqa_attention_cuda(&bad_g, fake16, fake16, fake16, fake16, fake, 0), ATTN_ERR_HEADS_NOT_DIVISIBLE,
                  "H=6, G=4");
    assert_status(gqa_attention_cuda(&bad_d, fake16, fake16, fake16, fake16, fake, 0), ATTN_ERR_UNSUPPORTED_D, "D=80");
    assert_status(gqa_attention_cuda(&bad_m, fake16, fake16, fake16, fake16, fake, 0), ATTN_ERR_M_GT_N, "M=5 > N=4");
    assert_status(gqa_repeat_kv_cpu(&bad_g, fake, fake), ATTN_ERR_HEADS_NOT_DIVISIBLE, "repeat, H=6, G=4");
    const attn_shape ok = attn_make_shape(1, 4, 4, 8, 2, 64, 0);
    assert_status(gqa_attention_cuda(&ok, fake16, fake16, NULL, fake16, fake, 0), ATTN_ERR_NULL_POINTER, "v = NULL");
}
