/*
 * Tests of lesson 10, the fused NSA forward. Built twice: against lessons/ and solutions/.
 *
 *   c_part     nsa_forward_cpu against the double-precision forward oracle (attn_oracle_nsa_forward in
 *              common/grading/oracle_nsa_forward.c) on many shapes, both compression modes, shared and
 *              per-head selection, random gates, all-1 gates and one branch at a time; rows that see no
 *              compressed token; the optional outputs (lse of each branch, the block lists) and NULL for
 *              them; exact ties; the attention-weights helpers
 *   cuda_part  nsa_forward_cuda against the same oracle (inputs rounded to bf16), determinism, graph
 *              capture, the weights kernels, a tensor past 2^31 elements (against GPU references)
 *   speed      against the frozen dense causal flash kernel (lesson 03), every timed output checked
 *   errors     bad input gets a named error code, never a crash
 *
 * Block lists are compared as SETS with the oracle's, with lesson 08's near-tie rule: two correct
 * implementations may rank two blocks whose scores are nearly equal either way (a score is a sum of
 * exp(q.k - lse) terms: fp32 against double moves it by ~1e-5 relative, up to ~1e-4 with scores near
 * 120; the CUDA part's compressed keys are bf16, whose rounding can land on either side of a bf16 tie
 * between float and double, ~5e-4). So a list may differ from the oracle's only where every block the
 * oracle ranks above a chosen one beats it by at most TIE_RTOL_* (relative). The outputs o and lse_slc
 * are then compared with the oracle run on the code's OWN lists, so that a near-tie decided the other
 * way does not fail the whole row; the lists themselves have been judged. Exact ties (equal keys) have one
 * right answer, ties to the lower index, and are compared exactly.
 *
 * Every host buffer handed to a lesson function comes from attn_alloc_* (the grading harness may run
 * lesson code in a process of its own and copies those buffers).
 */
#include "baselines.h"
#include "fused_nsa.h"
#include "nsa.h"
#include "nsa_forward_ref.h"
#include "nsa_select_ref.h"
#include "test_util_nsa.h"

/* Speed-up of the whole forward over dense causal flash attention at B = 1, M = N = 16384, H = 64, G = 4,
 * D = 128, mean-pool parameters. 0: reported only (calibrated on a GPU once the fused kernel exists). */
#define TARGET_NSA_FORWARD_VS_DENSE ATTN_TARGET_NSA_FORWARD_VS_DENSE /* lesson.json */

/* lse in the C part: ATTN_TOL_F32 (fp32 sums of up to a few thousand terms). CUDA: fp32 lse of bf16 inputs,
 * as lessons 07 and 09. */
static const attn_tol kTolLseCuda = {1e-3, 1e-4};
/* Near ties (see the top): fp32 against double; with scores near 120; bf16 compressed keys. */
#define TIE_RTOL_C 2e-4
#define TIE_RTOL_LARGE 2e-3
#define TIE_RTOL_CUDA 2e-3
/* rebuilt weights against the oracle's probabilities: fp32 exp of an fp32 score, a few ulp of 1 */
static const attn_tol kTolWeights = {1e-6, 1e-5};
/* CUDA weights: the bf16 compressed keys may differ by one rounding from the oracle's (see the top) */
static const attn_tol kTolWeightsCuda = {1e-5, 2e-3};
/* a probability row sums to 1 up to fp32 rounding of a few thousand terms */
#define ROW_SUM_TOL 1e-4

/* ================================================================ problems */

/* the gates of a case (gate_kind, test_util_nsa.h), in words */
static const char *kGateText[] = {"random gates in [0, 1]", "every gate 1 (the plain sum)",
                                  "g_cmp = 1, g_slc = g_swa = 0 (o = o_cmp)", "g_slc = 1, others 0 (o = o_slc)",
                                  "g_swa = 1, others 0 (o = o_swa)"};

typedef struct {
    attn_shape sh;
    attn_nsa_params p;
    gate_kind gates;
    int large_logits; /* every score near 120 (mean mode): an exp without the max overflows */
    int equal_keys;   /* every key row of a (b, g) equal: equal compressed keys, blocks that tie exactly */
} fwd_case;

typedef struct {
    fwd_case c;
    uint64_t seed;
    long NC, NB;
    int L;
    int bf16; /* inputs rounded to bf16 and the oracle rounding as the CUDA part does */
    float *q, *k, *v, *w_k, *w_v, *pos, *g_cmp, *g_slc, *g_swa;
    /* the oracle, on the lists given to it (the code's own, once judged) */
    double *o, *o_cmp, *o_slc, *o_swa, *lse_cmp, *lse_slc, *lse_swa, *k_cmp, *scores;
    int32_t *lists; /* the oracle's own top-n */
    char ctx[700];
} fwd_problem;

static attn_nsa_params params(int l, int d, int l_sel, int n, int w, int mode, int share)
{
    attn_nsa_params p = {l, d, l_sel, n, w, mode, share};
    return p;
}

/* Random inputs of a case (no reference yet). */
static void fwd_init(fwd_problem *P, fwd_case c, int bf16)
{
    memset(P, 0, sizeof *P);
    P->c = c, P->seed = attn_test_seed(), P->bf16 = bf16;
    const attn_shape *s = &c.sh;
    P->NC = attn_nsa_num_cmp(s->N, &c.p), P->NB = attn_nsa_num_blocks(s->N, &c.p), P->L = attn_nsa_list_heads(s, &c.p);
    char st[120], pt[160];
    snprintf(P->ctx, sizeof P->ctx, "%s%s, %s (NC=%ld, NB=%ld), %s%s%s, seed %llu (rerun: ATTN_SEED=%llu)",
             shape_text(s, st, sizeof st), s->scale != 0.0f ? " (scale set)" : "", params_text(&c.p, pt, sizeof pt),
             P->NC, P->NB, kGateText[c.gates], c.large_logits ? ", scores near 120" : "",
             c.equal_keys ? ", equal keys (exact ties)" : "", (unsigned long long)P->seed,
             (unsigned long long)P->seed);
    attn_rng rng;
    attn_rng_seed(&rng, P->seed ^ ((uint64_t)s->N * 7919u + (uint64_t)s->M * 104729u + (uint64_t)s->D +
                                   (uint64_t)c.p.l * 31u + (uint64_t)c.p.mode));
    const size_t nq = attn_q_elems(s), nkv = attn_kv_elems(s), ng = (size_t)s->B * s->M * s->H;
    P->q = random_f32(nq, s->D, 1.0f, &rng), P->k = random_f32(nkv, s->D, 1.0f, &rng), P->v = random_f32(nkv, s->D, 1.0f, &rng);
    if (c.equal_keys) /* key 0 of each (b, g) everywhere */
        for (int b = 0; b < s->B; ++b)
            for (int t = 1; t < s->N; ++t)
                memcpy(P->k + ((size_t)b * s->N + t) * s->G * s->D, P->k + (size_t)b * s->N * s->G * s->D,
                       (size_t)s->G * s->D * sizeof(float));
    if (c.large_logits) add_large_logits(P->q, nq, P->k, nkv, s->D);
    if (c.p.mode == ATTN_NSA_LINEAR) draw_linear_weights(s, c.p.l, &rng, &P->w_k, &P->w_v, &P->pos);
    draw_gates(c.gates, ng, &rng, &P->g_cmp, &P->g_slc, &P->g_swa);
    if (bf16) round_nsa_inputs(s, c.p.l, P->q, nq, P->k, P->v, nkv, P->w_k, P->w_v, P->pos);
}

/* The oracle, with the selected branch on `lists` (NULL: its own). */
static void fwd_reference(fwd_problem *P, const int32_t *lists)
{
    const attn_shape *s = &P->c.sh;
    const size_t nq = attn_q_elems(s), nl = attn_lse_elems(s), ncmp = (size_t)s->B * P->NC * s->G * s->D;
    if (!P->o) {
        P->o = attn_alloc_f64(nq), P->o_cmp = attn_alloc_f64(nq), P->o_slc = attn_alloc_f64(nq);
        P->o_swa = attn_alloc_f64(nq);
        P->lse_cmp = attn_alloc_f64(nl), P->lse_slc = attn_alloc_f64(nl), P->lse_swa = attn_alloc_f64(nl);
        P->k_cmp = attn_alloc_f64(ncmp), P->scores = attn_alloc_f64((size_t)s->B * s->M * P->L * P->NB);
        P->lists = attn_alloc_i32((size_t)s->B * s->M * P->L * P->c.p.n);
        cr_assert(P->o && P->o_cmp && P->o_slc && P->o_swa && P->lse_cmp && P->lse_slc && P->lse_swa && P->k_cmp &&
                      P->scores && P->lists,
                  "out of host memory [%s]", P->ctx);
    }
    attn_oracle_nsa_in in = {*s, P->c.p, P->q, P->k, P->v, P->w_k, P->w_v, P->pos, P->g_cmp, P->g_slc, P->g_swa,
                             lists, P->bf16};
    attn_oracle_nsa_out out = {P->o, P->o_cmp, P->o_slc, P->o_swa, P->lse_cmp, P->lse_slc, P->lse_swa,
                               P->k_cmp, NULL, P->scores, P->lists};
    assert_ok(attn_oracle_nsa_forward(&in, &out), P->ctx);
}

static void fwd_free(fwd_problem *P)
{
    free(P->q), free(P->k), free(P->v), free(P->w_k), free(P->w_v), free(P->pos), free(P->g_cmp), free(P->g_slc);
    free(P->g_swa), free(P->o), free(P->o_cmp), free(P->o_slc), free(P->o_swa), free(P->lse_cmp), free(P->lse_slc);
    free(P->lse_swa), free(P->k_cmp), free(P->scores), free(P->lists);
    memset(P, 0, sizeof *P);
}

/* ================================================================ comparing outputs */

static void expect_f32(const fwd_problem *P, const char *what, attn_layout layout, const float *got, const double *ref,
                       attn_tol tol, const char *hint)
{
    attn_cmp r;
    attn_compare_f32(&r, what, layout, &P->c.sh, 0, got, ref, tol);
    cr_assert(r.ok, "%s%s%s [%s]", r.message, hint ? " " : "", hint ? hint : "", P->ctx);
}

static void expect_bf16(const fwd_problem *P, const char *what, const uint16_t *got, const double *ref, attn_tol tol,
                        const char *hint)
{
    attn_cmp r;
    attn_compare_bf16(&r, what, ATTN_LAYOUT_BMHD, &P->c.sh, 0, got, ref, tol);
    cr_assert(r.ok, "%s%s%s [%s]", r.message, hint ? " " : "", hint ? hint : "", P->ctx);
}

/* What a wrong o most often means, for the messages. */
static const char *o_hint(gate_kind g)
{
    switch (g) {
    case GATES_CMP: return "(only the compressed branch counts here: o must equal o_cmp)";
    case GATES_SLC: return "(only the selected branch counts here: o must equal o_slc)";
    case GATES_SWA: return "(only the window counts here: o must equal o_swa)";
    default: return "(o = g_cmp o_cmp + g_slc o_slc + g_swa o_swa, gates at [(b*M + i)*H + h])";
    }
}

/* Rows that see no compressed token (t < l - 1) have lse_cmp = -inf exactly. */
static void expect_empty_cmp_rows(const fwd_problem *P, const float *lse_cmp)
{
    const attn_shape *s = &P->c.sh;
    for (int b = 0; b < s->B; ++b)
        for (int h = 0; h < s->H; ++h)
            for (int i = 0; i < s->M; ++i) {
                const long t = attn_query_pos(s, i);
                if (attn_nsa_cmp_visible_count(t, P->NC, &P->c.p) > 0) continue;
                const float x = lse_cmp[((size_t)b * s->H + h) * s->M + i];
                cr_assert(isinf(x) && x < 0,
                          "b=%d h=%d i=%d (t=%ld) sees no compressed token (t < l - 1 = %d): lse_cmp must be -inf, got "
                          "%g%s [%s]",
                          b, h, i, t, P->c.p.l - 1, x, isnan(x) ? " (a softmax over no token: 0 / 0?)" : "", P->ctx);
            }
}

/* ================================================================ C part */

typedef struct {
    float *o, *lse_cmp, *lse_slc, *lse_swa;
    int32_t *lists;
} cpu_out;

static void cpu_out_alloc(cpu_out *r, const fwd_problem *P)
{
    const attn_shape *s = &P->c.sh;
    const size_t nq = attn_q_elems(s), nl = attn_lse_elems(s), ni = (size_t)s->B * s->M * P->L * P->c.p.n;
    r->o = attn_alloc_f32(nq), r->lse_cmp = attn_alloc_f32(nl), r->lse_slc = attn_alloc_f32(nl);
    r->lse_swa = attn_alloc_f32(nl), r->lists = attn_alloc_i32(ni);
    cr_assert(r->o && r->lse_cmp && r->lse_slc && r->lse_swa && r->lists, "out of host memory [%s]", P->ctx);
    attn_poison(r->o, nq * 4), attn_poison(r->lse_cmp, nl * 4), attn_poison(r->lse_slc, nl * 4);
    attn_poison(r->lse_swa, nl * 4), memset(r->lists, INDEX_POISON_BYTE, ni * 4);
}

static void cpu_out_free(cpu_out *r)
{
    free(r->o), free(r->lse_cmp), free(r->lse_slc), free(r->lse_swa), free(r->lists);
    memset(r, 0, sizeof *r);
}

/* nsa_forward_cpu with every output, then the oracle on its lists; lists, o and the three lse checked. */
static void run_cpu(fwd_problem *P, cpu_out *r)
{
    const fwd_case *c = &P->c;
    cpu_out_alloc(r, P);
    assert_ok(nsa_forward_cpu(&c->sh, &c->p, P->q, P->k, P->v, P->w_k, P->w_v, P->pos, P->g_cmp, P->g_slc, P->g_swa,
                              r->o, r->lse_cmp, r->lse_slc, r->lse_swa, r->lists),
              P->ctx);
    fwd_reference(P, r->lists);
}

static void check_cpu_case(fwd_case c)
{
    fwd_problem P;
    fwd_init(&P, c, 0);
    cpu_out r;
    run_cpu(&P, &r);
    const attn_tol tol = c.large_logits ? ATTN_TOL_F32_LARGE : ATTN_TOL_F32;
    check_block_lists(&c.sh, &c.p, P.scores, P.lists, r.lists, c.equal_keys,
                      c.large_logits ? TIE_RTOL_LARGE : TIE_RTOL_C, "block_indices of nsa_forward_cpu", P.ctx);
    expect_f32(&P, "lse_cmp", ATTN_LAYOUT_BHM, r.lse_cmp, P.lse_cmp, tol, "(the compressed branch)");
    expect_empty_cmp_rows(&P, r.lse_cmp);
    expect_f32(&P, "lse_slc", ATTN_LAYOUT_BHM, r.lse_slc, P.lse_slc, tol, "(the selected branch, on your lists)");
    expect_f32(&P, "lse_swa", ATTN_LAYOUT_BHM, r.lse_swa, P.lse_swa, tol, "(the window branch)");
    expect_f32(&P, "o", ATTN_LAYOUT_BMHD, r.o, P.o, tol, o_hint(c.gates));
    cpu_out_free(&r);
    fwd_free(&P);
}

/* The README's example: N = 20 keys, l = 4, d = 2 (NC = 9 tokens), l' = 4 (5 blocks), n = 4, w = 10. */
ATTN_TEST(c_part, readme_example)
{
    check_cpu_case((fwd_case){attn_make_shape(1, 20, 20, 2, 1, 16, 1), params(4, 2, 4, 4, 10, ATTN_NSA_MEAN, 1),
                              GATES_RANDOM, 0, 0});
    check_cpu_case((fwd_case){attn_make_shape(1, 20, 20, 2, 1, 16, 1), params(4, 2, 4, 4, 10, ATTN_NSA_LINEAR, 1),
                              GATES_ONE, 0, 0});
}

ATTN_TEST(c_part, shapes)
{
    const attn_nsa_params lin = paper_linear(), pool = attn_nsa_mean_pool();
    const fwd_case cases[] = {
        {attn_make_shape(1, 1, 1, 2, 1, 16, 1), lin, GATES_RANDOM, 0, 0},                 /* N = 1: nothing compressed */
        {attn_make_shape(1, 20, 20, 4, 2, 32, 1), lin, GATES_RANDOM, 0, 0},               /* N < l */
        {attn_make_shape(2, 50, 50, 4, 2, 64, 1), pool, GATES_RANDOM, 0, 0},              /* N < l = l' = 64 */
        {attn_make_shape(2, 90, 300, 8, 2, 32, 1), with_nw(lin, 4, 96), GATES_RANDOM, 0, 0}, /* B, G > 1, M < N */
        {attn_make_shape(1, 1, 700, 16, 1, 32, 1), with_nw(pool, 5, 200), GATES_RANDOM, 0, 0}, /* decoding, H/G = 16 */
        {attn_make_shape(1, 160, 160, 4, 4, 128, 1), with_nw(lin, 4, 100), GATES_RANDOM, 0, 0}, /* D = 128, MHA */
        {attn_make_shape(1, 130, 333, 4, 1, 64, 1), with_nw(pool, 3, 70), GATES_ONE, 0, 0},   /* n = 3: forced only */
        {attn_make_shape(1, 100, 100, 4, 1, 16, 1), params(4, 2, 8, 3, 16, ATTN_NSA_MEAN, 1), GATES_RANDOM, 0, 0},
        {attn_make_shape(1, 80, 300, 2, 2, 32, 1), params(32, 16, 16, 5, 40, ATTN_NSA_LINEAR, 1), GATES_RANDOM, 0, 0},
        {attn_make_shape(1, 64, 500, 4, 2, 64, 1), with_nw(pool, 4, 128), GATES_RANDOM, 1, 0}, /* scores near 120 */
    };
    for (int c = 0; c < (int)(sizeof cases / sizeof cases[0]); ++c) check_cpu_case(cases[c]);
    attn_shape scaled = attn_make_shape(2, 60, 260, 4, 2, 32, 1);
    scaled.scale = 0.3f;
    check_cpu_case((fwd_case){scaled, with_nw(lin, 5, 64), GATES_RANDOM, 0, 0});
}

ATTN_TEST(c_part, per_head_lists)
{
    attn_nsa_params lin = with_nw(paper_linear(), 6, 64), pool = with_nw(attn_nsa_mean_pool(), 4, 100);
    lin.heads_share_selection = pool.heads_share_selection = 0;
    check_cpu_case((fwd_case){attn_make_shape(2, 60, 400, 8, 2, 32, 1), lin, GATES_RANDOM, 0, 0});
    check_cpu_case((fwd_case){attn_make_shape(1, 40, 500, 16, 1, 16, 1), pool, GATES_RANDOM, 0, 0});
    check_cpu_case((fwd_case){attn_make_shape(1, 50, 300, 4, 4, 64, 1), pool, GATES_ONE, 0, 0});
}

/* One branch at a time (o must equal that branch alone), then the plain sum. A gate applied to the wrong
 * branch, or a branch left out, fails here by name. */
ATTN_TEST(c_part, gates)
{
    const attn_nsa_params p = with_nw(paper_linear(), 5, 80);
    const gate_kind kinds[] = {GATES_CMP, GATES_SLC, GATES_SWA, GATES_ONE, GATES_RANDOM};
    for (int g = 0; g < 5; ++g) check_cpu_case((fwd_case){attn_make_shape(2, 70, 400, 4, 2, 32, 1), p, kinds[g], 0, 0});
}

/* Rows t < l - 1 see no compressed token: o_cmp = 0 and lse_cmp = -inf exactly (with only the compressed
 * gate open, o itself must be 0 there). */
ATTN_TEST(c_part, empty_cmp_rows)
{
    const fwd_case cases[] = {
        {attn_make_shape(1, 100, 100, 4, 2, 32, 1), with_nw(paper_linear(), 4, 50), GATES_CMP, 0, 0},
        {attn_make_shape(2, 80, 80, 2, 1, 16, 1), attn_nsa_mean_pool(), GATES_CMP, 0, 0},
    };
    for (int c = 0; c < 2; ++c) {
        fwd_problem P;
        fwd_init(&P, cases[c], 0);
        cpu_out r;
        run_cpu(&P, &r);
        expect_empty_cmp_rows(&P, r.lse_cmp);
        const attn_shape *s = &P.c.sh;
        for (size_t e = 0; e < attn_q_elems(s); ++e) {
            const int i = (int)(e / ((size_t)s->H * s->D) % s->M);
            const long t = attn_query_pos(s, i);
            if (t >= P.c.p.l - 1) continue;
            cr_assert(r.o[e] == 0.0f,
                      "i=%d (t=%ld) sees no compressed token and only g_cmp is open: o must be exactly 0, got %g%s [%s]",
                      i, t, r.o[e], isnan(r.o[e]) ? " (0 / 0 of a softmax over no token?)" : "", P.ctx);
        }
        expect_f32(&P, "o", ATTN_LAYOUT_BMHD, r.o, P.o, ATTN_TOL_F32, o_hint(GATES_CMP));
        cpu_out_free(&r);
        fwd_free(&P);
    }
}

/* The optional outputs: NULL for any of them gives the same o, bit for bit. */
ATTN_TEST(c_part, optional_outputs)
{
    fwd_problem P;
    fwd_init(&P, (fwd_case){attn_make_shape(2, 70, 300, 8, 2, 32, 1), with_nw(paper_linear(), 5, 64), GATES_RANDOM, 0, 0}, 0);
    cpu_out r;
    run_cpu(&P, &r);
    check_block_lists(&P.c.sh, &P.c.p, P.scores, P.lists, r.lists, 0, TIE_RTOL_C, "block_indices", P.ctx);
    expect_f32(&P, "lse_cmp", ATTN_LAYOUT_BHM, r.lse_cmp, P.lse_cmp, ATTN_TOL_F32, NULL);
    expect_f32(&P, "lse_slc", ATTN_LAYOUT_BHM, r.lse_slc, P.lse_slc, ATTN_TOL_F32, NULL);
    expect_f32(&P, "lse_swa", ATTN_LAYOUT_BHM, r.lse_swa, P.lse_swa, ATTN_TOL_F32, NULL);
    const size_t nq = attn_q_elems(&P.c.sh);
    for (int variant = 0; variant < 3; ++variant) {
        float *o = attn_alloc_f32(nq);
        attn_poison(o, nq * 4);
        const int some = variant == 2; /* 0, 1: all NULL; 2: only the lists */
        assert_ok(nsa_forward_cpu(&P.c.sh, &P.c.p, P.q, P.k, P.v, P.w_k, P.w_v, P.pos, P.g_cmp, P.g_slc, P.g_swa, o,
                                  variant == 1 ? r.lse_cmp : NULL, NULL, variant == 1 ? r.lse_swa : NULL,
                                  some ? r.lists : NULL),
                  P.ctx);
        for (size_t e = 0; e < nq; ++e)
            cr_assert(memcmp(&o[e], &r.o[e], 4) == 0,
                      "o element %zu differs when %s: %.9g, with every output %.9g; the optional outputs only "
                      "report, they must not change o [%s]",
                      e, variant == 0 ? "every optional output is NULL" : variant == 1 ? "lse_slc and the lists are NULL"
                                                                                       : "only the lists are returned",
                      o[e], r.o[e], P.ctx);
        free(o);
    }
    cpu_out_free(&r);
    fwd_free(&P);
}

/* Equal keys: every visible compressed token of a row has the same p_cmp, whole blocks tie exactly, and the
 * lower indices must win. */
static const fwd_case kTieCases[] = {
    {{1, 60, 1200, 4, 2, 32, 0.0f, 1}, {64, 64, 64, 6, 100, ATTN_NSA_MEAN, 1}, GATES_RANDOM, 0, 1},
    {{1, 60, 1200, 4, 2, 64, 0.0f, 1}, {32, 16, 64, 6, 100, ATTN_NSA_LINEAR, 1}, GATES_RANDOM, 0, 1},
    {{2, 30, 900, 2, 2, 64, 0.0f, 1}, {32, 16, 64, 5, 64, ATTN_NSA_MEAN, 0}, GATES_RANDOM, 0, 1},
    {{1, 30, 1100, 16, 1, 128, 0.0f, 1}, {64, 64, 64, 8, 128, ATTN_NSA_MEAN, 1}, GATES_RANDOM, 0, 1},
};
#define N_TIE_CASES ((int)(sizeof kTieCases / sizeof kTieCases[0]))

ATTN_TEST(c_part, exact_ties)
{
    for (int c = 0; c < N_TIE_CASES; ++c) check_cpu_case(kTieCases[c]);
}

/* ---------------------------------------------------------------- the weights helpers */

/* The oracle's probabilities of a branch for (b, h), in double, on the visible keys: exp(score - lse) with
 * the oracle's compressed keys (CMP) and `lists` (SLC). lse is the branch's [B, H, M] (float: the code's). */
static void ref_weights(const fwd_problem *P, int kind, int b, int h, const float *lse, const int32_t *lists,
                        double *out)
{
    const attn_shape *s = &P->c.sh;
    const attn_nsa_params *p = &P->c.p;
    const int g = attn_kv_head(s, h), L = P->L, D = s->D;
    const long cols = kind == NSA_WEIGHTS_CMP ? P->NC : s->N;
    const double scale = attn_softmax_scale(s);
    for (int i = 0; i < s->M; ++i) {
        const long t = attn_query_pos(s, i);
        const double row_lse = lse[((size_t)b * s->H + h) * s->M + i];
        const float *qh = P->q + (((size_t)b * s->M + i) * s->H + h) * D;
        const int32_t *list = lists + (((size_t)b * s->M + i) * L + (p->heads_share_selection ? g : h)) * p->n;
        for (long c = 0; c < cols; ++c) {
            int visible;
            if (kind == NSA_WEIGHTS_CMP) visible = c * p->d + p->l - 1 <= t;
            else if (kind == NSA_WEIGHTS_SWA) visible = c <= t && c >= t - p->w + 1;
            else {
                visible = 0;
                for (int e = 0; e < p->n && list[e] >= 0; ++e) visible |= c / p->l_sel == list[e];
                visible = visible && c <= t;
            }
            double x = 0.0;
            if (visible && row_lse > -INFINITY) {
                double dot = 0.0;
                for (int e = 0; e < D; ++e)
                    dot += (double)qh[e] * (kind == NSA_WEIGHTS_CMP ? P->k_cmp[(((size_t)b * P->NC + c) * s->G + g) * D + e]
                                                                    : (double)P->k[(((size_t)b * s->N + c) * s->G + g) * D + e]);
                x = exp(dot * scale - row_lse);
            }
            out[(size_t)i * cols + c] = x;
        }
    }
}

/* The spread of compressed weights over the keys, from the definition: key s gets weight / l from every
 * token whose span holds it. */
static void ref_spread(const attn_shape *s, const attn_nsa_params *p, const float *cmp_w, double *out)
{
    const long NC = attn_nsa_num_cmp(s->N, p);
    for (int i = 0; i < s->M; ++i)
        for (long key = 0; key < s->N; ++key) {
            double sum = 0.0;
            for (long c = 0; c < NC; ++c)
                if (c * p->d <= key && key <= c * p->d + p->l - 1) sum += cmp_w[(size_t)i * NC + c];
            out[(size_t)i * s->N + key] = sum / p->l;
        }
}

static const char *kKindName[] = {"CMP [M, NC]", "SLC [M, N]", "SWA [M, N]", "CMP_KEYS [M, N]"};

/* got [rows, cols] against ref, every element (a row-matrix comparison names row and column). */
static void expect_matrix(const char *what, long rows, long cols, const float *got, const double *ref, attn_tol tol,
                          const char *ctx)
{
    if (rows * cols == 0) return;
    attn_cmp r;
    attn_compare_rows_f32(&r, what, (int)rows, (int)cols, got, ref, tol);
    cr_assert(r.ok, "%s [%s]", r.message, ctx);
}

/* The forward's outputs, then for a few (b, h): the three branches' weights against the oracle's
 * probabilities, each checked by nsa_weights_check; the spread map against its definition; rows with the
 * wrong branch's lse caught by the check. */
static void check_weights_cpu(fwd_case c)
{
    fwd_problem P;
    fwd_init(&P, c, 0);
    cpu_out r;
    run_cpu(&P, &r);
    const attn_shape *s = &c.sh;
    const long NC = P.NC, N = s->N, M = s->M;
    float *w = attn_alloc_f32((size_t)M * (N > NC ? N : NC)), *keys = attn_alloc_f32((size_t)M * N);
    double *ref = attn_alloc_f64((size_t)M * (N > NC ? N : NC));
    cr_assert(w && keys && ref, "out of host memory [%s]", P.ctx);
    const int bh[][2] = {{0, 0}, {s->B - 1, s->H - 1}, {s->B / 2, s->H / 2}};
    for (int x = 0; x < 3; ++x) {
        const int b = bh[x][0], h = bh[x][1];
        for (int kind = 0; kind < 3; ++kind) {
            const long cols = kind == NSA_WEIGHTS_CMP ? NC : N;
            char ctx[900];
            snprintf(ctx, sizeof ctx, "%s weights of b=%d h=%d, %s", kKindName[kind], b, h, P.ctx);
            attn_poison(w, (size_t)M * cols * 4);
            assert_ok(nsa_weights_cpu(s, &c.p, kind, b, h, P.q, P.k, P.w_k, P.pos, r.lists, r.lse_cmp, r.lse_slc,
                                      r.lse_swa, w),
                      ctx);
            const float *lse = kind == NSA_WEIGHTS_CMP ? r.lse_cmp : kind == NSA_WEIGHTS_SLC ? r.lse_slc : r.lse_swa;
            ref_weights(&P, kind, b, h, lse, r.lists, ref);
            expect_matrix("weights", M, cols, w, ref, kTolWeights, ctx);
            double worst = -1.0;
            assert_ok(nsa_weights_check(s, &c.p, kind, b, h, r.lists, w, &worst), ctx);
            cr_assert(worst >= 0.0 && worst <= ROW_SUM_TOL,
                      "nsa_weights_check: rebuilt rows deviate by %g from probabilities over their visible keys "
                      "(at most %g allowed) [%s]", worst, ROW_SUM_TOL, ctx);
            if (kind != NSA_WEIGHTS_CMP) continue;
            /* the spread map: the same mass on the keys */
            attn_poison(keys, (size_t)M * N * 4);
            assert_ok(nsa_cmp_weights_to_keys_cpu(s, &c.p, w, keys), ctx);
            ref_spread(s, &c.p, w, ref);
            expect_matrix("key_weights (spread)", M, N, keys, ref, kTolWeights, ctx);
            assert_ok(nsa_weights_check(s, &c.p, NSA_WEIGHTS_CMP_KEYS, b, h, r.lists, keys, &worst), ctx);
            cr_assert(worst <= ROW_SUM_TOL, "nsa_weights_check: the spread map's rows deviate by %g from 1 [%s]", worst,
                      ctx);
        }
    }
    free(w), free(keys), free(ref);
    cpu_out_free(&r);
    fwd_free(&P);
}

ATTN_TEST(c_part, weights_rebuilt)
{
    check_weights_cpu((fwd_case){attn_make_shape(2, 60, 300, 4, 2, 32, 1), with_nw(paper_linear(), 5, 64), GATES_RANDOM, 0, 0});
    attn_nsa_params per_head = with_nw(attn_nsa_mean_pool(), 4, 100);
    per_head.heads_share_selection = 0;
    check_weights_cpu((fwd_case){attn_make_shape(1, 80, 400, 4, 1, 16, 1), per_head, GATES_RANDOM, 0, 0});
    check_weights_cpu((fwd_case){attn_make_shape(1, 40, 100, 2, 1, 16, 1), params(4, 2, 8, 3, 12, ATTN_NSA_MEAN, 1),
                                 GATES_RANDOM, 0, 0});
}

/* Weights rebuilt with another branch's lse are not probabilities: the check must see it. */
ATTN_TEST(c_part, weights_wrong_lse_caught)
{
    fwd_problem P;
    fwd_init(&P, (fwd_case){attn_make_shape(1, 100, 400, 4, 2, 32, 1), with_nw(paper_linear(), 4, 48), GATES_RANDOM, 0, 0}, 0);
    cpu_out r;
    run_cpu(&P, &r);
    const attn_shape *s = &P.c.sh;
    float *w = attn_alloc_f32((size_t)s->M * s->N);
    cr_assert(w, "out of host memory [%s]", P.ctx);
    struct {
        int kind;
        const float *lse_cmp, *lse_slc, *lse_swa;
        const char *what;
    } wrong[] = {
        {NSA_WEIGHTS_SWA, NULL, NULL, r.lse_slc, "the window's weights with lse_slc"},
        {NSA_WEIGHTS_SLC, NULL, r.lse_swa, NULL, "the selected branch's weights with lse_swa"},
        {NSA_WEIGHTS_CMP, r.lse_slc, NULL, NULL, "the compressed weights with lse_slc"},
    };
    for (int x = 0; x < 3; ++x) {
        char ctx[900];
        snprintf(ctx, sizeof ctx, "%s, b=0 h=1, %s", wrong[x].what, P.ctx);
        assert_ok(nsa_weights_cpu(s, &P.c.p, wrong[x].kind, 0, 1, P.q, P.k, P.w_k, P.pos, r.lists, wrong[x].lse_cmp,
                                  wrong[x].lse_slc, wrong[x].lse_swa, w),
                  ctx);
        double worst = 0.0;
        assert_ok(nsa_weights_check(s, &P.c.p, wrong[x].kind, 0, 1, r.lists, w, &worst), ctx);
        cr_assert(worst > 0.05,
                  "nsa_weights_check found a worst deviation of only %g in %s: rows normalised by another branch's "
                  "lse do not sum to 1 [%s]", worst, wrong[x].what, ctx);
    }
    free(w);
    cpu_out_free(&r);
    fwd_free(&P);
}

/* The summary and the check on matrices made by hand. */
ATTN_TEST(c_part, weights_summary_and_check_by_hand)
{
    /* N = 4, M = 2 (t = 2, 3), w = 2: SWA rows see keys {1, 2} and {2, 3} */
    const attn_shape sh = attn_make_shape(1, 2, 4, 1, 1, 16, 1);
    const attn_nsa_params p = params(2, 1, 2, 3, 2, ATTN_NSA_MEAN, 1); /* NC = 3 tokens [0,1] [1,2] [2,3] */
    float *w = attn_alloc_f32(8), *gate = attn_alloc_f32(2);
    int32_t *lists = attn_alloc_i32(6);
    cr_assert(w && gate && lists, "out of host memory");
    const float rows[8] = {0.0f, 0.5f, 0.5f, 0.0f, 0.0f, 0.0f, 0.25f, 0.75f};
    memcpy(w, rows, sizeof rows);
    gate[0] = 0.2f, gate[1] = 0.6f;
    nsa_weights_stats st;
    memset(&st, 0xFF, sizeof st);
    assert_ok(nsa_weights_summary(&sh, &p, NSA_WEIGHTS_SWA, 0, 0, w, gate, &st), "summary of [0 .5 .5 0; 0 0 .25 .75]");
    const double mean = 2.0 / 8, var = (0.25 + 0.25 + 0.0625 + 0.5625) / 8 - mean * mean;
    const double ent = (log(2.0) + -(0.25 * log(0.25) + 0.75 * log(0.75))) / 2;
    struct {
        double got, want;
        const char *what;
    } f[] = {{st.mean, mean, "mean"},     {st.std, sqrt(var), "std (population)"}, {st.min, 0.0, "min"},
             {st.max, 0.75, "max"},       {st.entropy, ent, "entropy (nats, row mean)"},
             {st.sparsity, 0.5, "sparsity (4 of 8 entries are 0)"}, {st.gate_mean, 0.4, "gate_mean of 0.2 and 0.6"}};
    for (int x = 0; x < 7; ++x)
        cr_assert(fabs(f[x].got - f[x].want) < 1e-6, "nsa_weights_summary of [0 .5 .5 0; 0 0 .25 .75], gates .2 .6: %s "
                  "is %.9g, expected %.9g", f[x].what, f[x].got, f[x].want);
    /* a row that sees nothing counts in mean and sparsity but not in the entropy's average */
    const float half_empty[8] = {0.0f, 0.5f, 0.5f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    memcpy(w, half_empty, sizeof half_empty);
    assert_ok(nsa_weights_summary(&sh, &p, NSA_WEIGHTS_SWA, 0, 0, w, gate, &st), "summary with an empty row");
    cr_assert(fabs(st.entropy - log(2.0)) < 1e-6, "the entropy averages the rows that see a key: ln 2 = 0.693, got %.9g",
              st.entropy);
    /* CMP: [M, NC] = [2, 3] */
    const float cmp[6] = {1.0f, 0.0f, 0.0f, 0.2f, 0.3f, 0.5f};
    memcpy(w, cmp, sizeof cmp);
    assert_ok(nsa_weights_summary(&sh, &p, NSA_WEIGHTS_CMP, 0, 0, w, gate, &st), "summary of a CMP matrix");
    cr_assert(fabs(st.mean - 2.0 / 6) < 1e-6 && fabs(st.sparsity - 2.0 / 6) < 1e-6,
              "a CMP matrix has NC = 3 columns: mean 1/3 and sparsity 1/3 expected, got %.9g and %.9g", st.mean, st.sparsity);

    /* the check: t = 2 sees tokens 0, 1 (ends 1, 2), t = 3 all three */
    double worst = -1.0;
    const float cmp_ok[6] = {0.5f, 0.5f, 0.0f, 0.2f, 0.3f, 0.5f};
    memcpy(w, cmp_ok, sizeof cmp_ok);
    assert_ok(nsa_weights_check(&sh, &p, NSA_WEIGHTS_CMP, 0, 0, NULL, w, &worst), "check of a good CMP matrix");
    cr_assert(worst < 1e-7, "a good CMP matrix: worst deviation %g, expected 0", worst);
    w[2] = 0.25f; /* row t = 2: token 2 ends at key 3 > 2: invisible */
    assert_ok(nsa_weights_check(&sh, &p, NSA_WEIGHTS_CMP, 0, 0, NULL, w, &worst), "check, weight on an invisible token");
    cr_assert(fabs(worst - 0.25) < 1e-7, "weight 0.25 on a token t = 2 cannot see: worst deviation %g, expected 0.25", worst);
    memcpy(w, cmp_ok, sizeof cmp_ok);
    w[3] = -0.1f, w[4] = 0.6f; /* row t = 3 still sums to 1, with a negative entry */
    assert_ok(nsa_weights_check(&sh, &p, NSA_WEIGHTS_CMP, 0, 0, NULL, w, &worst), "check, a negative entry");
    cr_assert(fabs(worst - 0.1) < 1e-6, "an entry of -0.1: worst deviation %g, expected 0.1", worst);
    const float swa_short[8] = {0.0f, 0.5f, 0.3f, 0.0f, 0.0f, 0.0f, 0.25f, 0.75f};
    memcpy(w, swa_short, sizeof swa_short);
    assert_ok(nsa_weights_check(&sh, &p, NSA_WEIGHTS_SWA, 0, 0, NULL, w, &worst), "check, a row summing to 0.8");
    cr_assert(fabs(worst - 0.2) < 1e-6, "a window row summing to 0.8: worst deviation %g, expected 0.2", worst);
    w[1] = NAN;
    assert_ok(nsa_weights_check(&sh, &p, NSA_WEIGHTS_SWA, 0, 0, NULL, w, &worst), "check, a NaN");
    cr_assert(isinf(worst), "a NaN entry: the worst deviation must be infinite, got %g", worst);
    /* SLC: l' = 2, lists {0, -1, -1} for t = 2 and {1, -1, -1} for t = 3: keys {0, 1} and {2, 3} */
    const int32_t lst[6] = {0, -1, -1, 1, -1, -1};
    memcpy(lists, lst, sizeof lst);
    const float slc[8] = {0.4f, 0.6f, 0.0f, 0.0f, 0.0f, 0.0f, 0.5f, 0.5f};
    memcpy(w, slc, sizeof slc);
    assert_ok(nsa_weights_check(&sh, &p, NSA_WEIGHTS_SLC, 0, 0, lists, w, &worst), "check of a good SLC matrix");
    cr_assert(worst < 1e-7, "a good SLC matrix (lists {0} and {1}): worst deviation %g, expected 0", worst);
    /* CMP_KEYS: t = 2 sees tokens 0, 1, which cover keys 0 .. 2 */
    const float keys_ok[8] = {0.25f, 0.5f, 0.25f, 0.0f, 0.1f, 0.25f, 0.4f, 0.25f};
    memcpy(w, keys_ok, sizeof keys_ok);
    assert_ok(nsa_weights_check(&sh, &p, NSA_WEIGHTS_CMP_KEYS, 0, 0, NULL, w, &worst), "check of a spread map");
    cr_assert(worst < 1e-6, "a good spread map: worst deviation %g, expected 0", worst);
    free(w), free(gate), free(lists);
}

/* ================================================================ CUDA part */

/* Device copies of a problem's inputs (bf16, the gates fp32), poisoned outputs and a workspace. */
typedef struct {
    uint16_t *q, *k, *v, *w_k, *w_v, *pos, *o;
    float *g_cmp, *g_slc, *g_swa, *lse_cmp, *lse_slc, *lse_swa;
    int32_t *lists;
    void *ws;
    size_t ws_bytes, nq, nl, ni;
} dev_fwd;

static void dev_fwd_init(dev_fwd *d, const fwd_problem *P)
{
    memset(d, 0, sizeof *d);
    const attn_shape *s = &P->c.sh;
    const size_t nkv = attn_kv_elems(s), ng = (size_t)s->B * s->M * s->H, nw = (size_t)s->G * P->c.p.l * s->D * s->D;
    d->nq = attn_q_elems(s), d->nl = attn_lse_elems(s), d->ni = (size_t)s->B * s->M * P->L * P->c.p.n;
    d->q = upload_bf16(P->q, d->nq, P->ctx), d->k = upload_bf16(P->k, nkv, P->ctx), d->v = upload_bf16(P->v, nkv, P->ctx);
    d->w_k = upload_bf16(P->w_k, nw, P->ctx), d->w_v = upload_bf16(P->w_v, nw, P->ctx);
    d->pos = upload_bf16(P->pos, (size_t)P->c.p.l * s->D, P->ctx);
    d->g_cmp = upload_f32(P->g_cmp, ng, P->ctx), d->g_slc = upload_f32(P->g_slc, ng, P->ctx);
    d->g_swa = upload_f32(P->g_swa, ng, P->ctx);
    assert_ok(attn_dalloc((void **)&d->o, d->nq * 2), P->ctx);
    assert_ok(attn_dalloc((void **)&d->lse_cmp, d->nl * 4), P->ctx);
    assert_ok(attn_dalloc((void **)&d->lse_slc, d->nl * 4), P->ctx);
    assert_ok(attn_dalloc((void **)&d->lse_swa, d->nl * 4), P->ctx);
    assert_ok(attn_dalloc((void **)&d->lists, d->ni * 4), P->ctx);
    d->ws_bytes = nsa_forward_workspace_bytes(s, &P->c.p);
    cr_assert(d->ws_bytes > 0, "nsa_forward_workspace_bytes returned 0 for a valid problem [%s]", P->ctx);
    assert_ok(attn_dalloc(&d->ws, d->ws_bytes), P->ctx);
}

static void dev_fwd_free(dev_fwd *d)
{
    attn_dfree(d->q), attn_dfree(d->k), attn_dfree(d->v), attn_dfree(d->w_k), attn_dfree(d->w_v), attn_dfree(d->pos);
    attn_dfree(d->o), attn_dfree(d->g_cmp), attn_dfree(d->g_slc), attn_dfree(d->g_swa), attn_dfree(d->lse_cmp);
    attn_dfree(d->lse_slc), attn_dfree(d->lse_swa), attn_dfree(d->lists), attn_dfree(d->ws);
    memset(d, 0, sizeof *d);
}

/* Poison every output, run the forward (optional outputs only when `with_outputs`) on `stream`. */
static int dev_fwd_run(const fwd_problem *P, dev_fwd *d, int with_outputs, cudaStream_t stream)
{
    int st = attn_cuda_status(cudaMemsetAsync(d->o, 0xFF, d->nq * 2, stream), "poison o");
    if (!st) st = attn_cuda_status(cudaMemsetAsync(d->lse_cmp, 0xFF, d->nl * 4, stream), "poison");
    if (!st) st = attn_cuda_status(cudaMemsetAsync(d->lse_slc, 0xFF, d->nl * 4, stream), "poison");
    if (!st) st = attn_cuda_status(cudaMemsetAsync(d->lse_swa, 0xFF, d->nl * 4, stream), "poison");
    if (!st) st = attn_cuda_status(cudaMemsetAsync(d->lists, INDEX_POISON_BYTE, d->ni * 4, stream), "poison");
    if (st) return st;
    const attn_shape sh = P->c.sh; /* copies: the check's shape and parameters are not the kernel's to change */
    const attn_nsa_params p = P->c.p;
    return nsa_forward_cuda(&sh, &p, d->q, d->k, d->v, d->w_k, d->w_v, d->pos, d->g_cmp, d->g_slc, d->g_swa, d->o,
                            with_outputs ? d->lse_cmp : NULL, with_outputs ? d->lse_slc : NULL,
                            with_outputs ? d->lse_swa : NULL, with_outputs ? d->lists : NULL, d->ws, d->ws_bytes,
                            stream);
}

typedef struct {
    uint16_t *o;
    float *lse_cmp, *lse_slc, *lse_swa;
    int32_t *lists;
} host_fwd;

static void host_fwd_download(host_fwd *h, const dev_fwd *d, const char *ctx)
{
    h->o = attn_alloc_bf16(d->nq), h->lists = attn_alloc_i32(d->ni);
    cr_assert(h->o && h->lists, "out of host memory [%s]", ctx);
    assert_ok(attn_d2h(h->o, d->o, d->nq * 2), ctx);
    assert_ok(attn_d2h(h->lists, d->lists, d->ni * 4), ctx);
    h->lse_cmp = download_f32(d->lse_cmp, d->nl, ctx), h->lse_slc = download_f32(d->lse_slc, d->nl, ctx);
    h->lse_swa = download_f32(d->lse_swa, d->nl, ctx);
}

static void host_fwd_free(host_fwd *h)
{
    free(h->o), free(h->lse_cmp), free(h->lse_slc), free(h->lse_swa), free(h->lists);
    memset(h, 0, sizeof *h);
}

/* The weights kernels for (b, h) = (0, 0) and (B - 1, H - 1), every kind, against the oracle's probabilities
 * on the kernel's own lse and lists (P's reference computed on h's lists), each row's sum against the
 * oracle's; the compressed kind also spread over the keys (nsa_cmp_weights_to_keys_cuda). nsa_weights_cuda
 * compresses batch b's keys again for the compressed kind (launch 1 with one tensor). */
static void check_weights_cuda(const fwd_problem *P, const dev_fwd *d, const host_fwd *h)
{
    const attn_shape *s = &P->c.sh;
    const long NC = P->NC, N = s->N, M = s->M, most = N > NC ? N : NC;
    float *dw, *dkeys, *w = attn_alloc_f32((size_t)M * most), *keys = attn_alloc_f32((size_t)M * N);
    double *ref = attn_alloc_f64((size_t)M * most);
    cr_assert(w && keys && ref, "out of host memory [%s]", P->ctx);
    assert_ok(attn_dalloc((void **)&dw, (size_t)M * most * 4), P->ctx);
    assert_ok(attn_dalloc((void **)&dkeys, (size_t)M * N * 4), P->ctx);
    const int bh[][2] = {{0, 0}, {s->B - 1, s->H - 1}};
    for (int x = 0; x < 2; ++x)
        for (int kind = 0; kind < 3; ++kind) {
            const int b = bh[x][0], hh = bh[x][1];
            const long cols = kind == NSA_WEIGHTS_CMP ? NC : N;
            char ctx[900];
            snprintf(ctx, sizeof ctx, "nsa_weights_cuda, %s weights of b=%d h=%d, %s", kKindName[kind], b, hh, P->ctx);
            assert_ok(attn_dpoison(dw, (size_t)M * most * 4), ctx);
            assert_ok(nsa_weights_cuda(s, &P->c.p, kind, b, hh, d->q, d->k, d->w_k, d->pos, d->lists, d->lse_cmp,
                                       d->lse_slc, d->lse_swa, dw, d->ws, d->ws_bytes, 0),
                      ctx);
            assert_ok(attn_dsync(), ctx);
            assert_ok(attn_d2h(w, dw, (size_t)M * cols * 4), ctx);
            const float *lse = kind == NSA_WEIGHTS_CMP ? h->lse_cmp : kind == NSA_WEIGHTS_SLC ? h->lse_slc : h->lse_swa;
            ref_weights(P, kind, b, hh, lse, h->lists, ref);
            expect_matrix("weights", M, cols, w, ref, kTolWeightsCuda, ctx);
            for (long i = 0; i < M; ++i) { /* each row a probability distribution (or empty) */
                double sum = 0.0, want = 0.0;
                for (long col = 0; col < cols; ++col) sum += w[i * cols + col], want += ref[i * cols + col];
                cr_assert(fabs(sum - want) <= 1e-3, "row i=%ld of the weights sums to %.7g, the oracle's to %.7g [%s]", i,
                          sum, want, ctx);
            }
            if (kind != NSA_WEIGHTS_CMP || NC == 0) continue;
            assert_ok(attn_dpoison(dkeys, (size_t)M * N * 4), ctx);
            assert_ok(nsa_cmp_weights_to_keys_cuda(s, &P->c.p, dw, dkeys, 0), ctx);
            assert_ok(attn_dsync(), ctx);
            assert_ok(attn_d2h(keys, dkeys, (size_t)M * N * 4), ctx);
            ref_spread(s, &P->c.p, w, ref);
            expect_matrix("key_weights (nsa_cmp_weights_to_keys_cuda)", M, N, keys, ref, kTolWeights, ctx);
        }
    attn_dfree(dw), attn_dfree(dkeys);
    free(w), free(keys), free(ref);
}

/* What check_cuda_case_ex does besides the run with every output: */
enum {
    ALSO_NULL_OUTPUTS = 1, /* a second run with every optional output NULL (the lists in the workspace): the same o */
    ALSO_WEIGHTS = 2,      /* the weights kernels on the first run's lse and lists (check_weights_cuda) */
};

/* The kernel with every output against the oracle on its own lists; then what `also` asks for. `label` (may
 * be NULL) joins the messages' context: the path a case is meant for. */
static void check_cuda_case_ex(fwd_case c, unsigned also, const char *label)
{
    fwd_problem P;
    fwd_init(&P, c, 1);
    if (label) {
        const size_t n = strlen(P.ctx);
        snprintf(P.ctx + n, sizeof P.ctx - n, "; %s", label);
    }
    dev_fwd d;
    dev_fwd_init(&d, &P);
    assert_ok(dev_fwd_run(&P, &d, 1, 0), P.ctx);
    assert_ok(attn_dsync(), P.ctx);
    host_fwd h;
    host_fwd_download(&h, &d, P.ctx);
    fwd_reference(&P, h.lists);
    check_block_lists(&c.sh, &c.p, P.scores, P.lists, h.lists, c.equal_keys, TIE_RTOL_CUDA,
                      "block_indices of nsa_forward_cuda", P.ctx);
    expect_f32(&P, "lse_cmp", ATTN_LAYOUT_BHM, h.lse_cmp, P.lse_cmp, kTolLseCuda, "(the compressed branch)");
    expect_empty_cmp_rows(&P, h.lse_cmp);
    expect_f32(&P, "lse_slc", ATTN_LAYOUT_BHM, h.lse_slc, P.lse_slc, kTolLseCuda, "(the selected branch, on your lists)");
    expect_f32(&P, "lse_swa", ATTN_LAYOUT_BHM, h.lse_swa, P.lse_swa, kTolLseCuda, "(the window branch)");
    expect_bf16(&P, "o", h.o, P.o, ATTN_TOL_BF16, o_hint(c.gates));
    if (also & ALSO_WEIGHTS) check_weights_cuda(&P, &d, &h);
    if (also & ALSO_NULL_OUTPUTS) {
        uint16_t *o = attn_alloc_bf16(d.nq);
        cr_assert(o, "out of host memory [%s]", P.ctx);
        assert_ok(dev_fwd_run(&P, &d, 0, 0), P.ctx);
        assert_ok(attn_dsync(), P.ctx);
        assert_ok(attn_d2h(o, d.o, d.nq * 2), P.ctx);
        compare_bits(o, h.o, d.nq * 2,
                     "o with every optional output NULL (the lists in the workspace) against o with all of them", P.ctx);
        free(o);
    }
    host_fwd_free(&h);
    dev_fwd_free(&d);
    fwd_free(&P);
}

/* The kernel with every output against the oracle on its own lists. */
static void check_cuda_case(fwd_case c) { check_cuda_case_ex(c, 0, NULL); }

ATTN_TEST(cuda_part, shapes)
{
    require_gpu();
    const attn_nsa_params lin = paper_linear(), pool = attn_nsa_mean_pool();
    const fwd_case cases[] = {
        {attn_make_shape(1, 1, 1, 2, 1, 64, 1), lin, GATES_RANDOM, 0, 0},                    /* N = 1 */
        {attn_make_shape(1, 20, 20, 4, 2, 128, 1), lin, GATES_RANDOM, 0, 0},                 /* N < l */
        {attn_make_shape(2, 90, 300, 8, 2, 64, 1), with_nw(lin, 4, 96), GATES_RANDOM, 0, 0},  /* B, G > 1, M < N */
        {attn_make_shape(1, 1, 1500, 16, 1, 128, 1), pool, GATES_RANDOM, 0, 0},              /* decoding, 24 blocks */
        {attn_make_shape(2, 65, 129, 4, 4, 64, 1), with_nw(pool, 3, 50), GATES_ONE, 0, 0},    /* MHA, n = 3 */
        {attn_make_shape(1, 300, 300, 16, 4, 128, 1), with_nw(attn_nsa_paper_defaults(), 6, 100), GATES_RANDOM, 0, 0},
        {attn_make_shape(2, 61, 300, 32, 2, 128, 1), with_nw(pool, 4, 64), GATES_RANDOM, 0, 0}, /* H/G = 16 */
        {attn_make_shape(1, 100, 100, 4, 1, 64, 1), params(4, 2, 8, 3, 16, ATTN_NSA_MEAN, 1), GATES_RANDOM, 0, 0},
        {attn_make_shape(1, 80, 300, 2, 2, 128, 1), params(32, 16, 16, 5, 40, ATTN_NSA_LINEAR, 1), GATES_RANDOM, 0, 0},
    };
    for (int c = 0; c < (int)(sizeof cases / sizeof cases[0]); ++c) check_cuda_case(cases[c]);
    attn_shape scaled = attn_make_shape(1, 60, 260, 8, 2, 64, 1);
    scaled.scale = 0.3f;
    check_cuda_case((fwd_case){scaled, with_nw(lin, 5, 64), GATES_RANDOM, 0, 0});
}

ATTN_TEST(cuda_part, per_head_lists)
{
    require_gpu();
    attn_nsa_params lin = with_nw(paper_linear(), 6, 64), pool = with_nw(attn_nsa_mean_pool(), 4, 100);
    lin.heads_share_selection = pool.heads_share_selection = 0;
    check_cuda_case((fwd_case){attn_make_shape(1, 80, 400, 8, 2, 64, 1), lin, GATES_RANDOM, 0, 0});
    check_cuda_case((fwd_case){attn_make_shape(2, 40, 500, 16, 1, 128, 1), pool, GATES_RANDOM, 0, 0});
}

ATTN_TEST(cuda_part, gates)
{
    require_gpu();
    const attn_nsa_params p = with_nw(paper_linear(), 5, 80);
    const gate_kind kinds[] = {GATES_CMP, GATES_SLC, GATES_SWA, GATES_ONE, GATES_RANDOM};
    for (int g = 0; g < 5; ++g) check_cuda_case((fwd_case){attn_make_shape(2, 70, 400, 8, 2, 64, 1), p, kinds[g], 0, 0});
}

ATTN_TEST(cuda_part, exact_ties)
{
    require_gpu();
    for (int c = 0; c < N_TIE_CASES; ++c) {
        fwd_case tc = kTieCases[c];
        if (tc.sh.D != 64 && tc.sh.D != 128) tc.sh.D = 64;
        check_cuda_case(tc);
    }
}

/* Small and quick: the first two cases of sanitizer_paths (the general kernels at D = 64 with the linear
 * compression and at D = 128 with per-head lists), where racecheck must flag the missing-barrier variant. */
ATTN_TEST(cuda_part, small)
{
    require_gpu();
    check_cuda_case((fwd_case){attn_make_shape(2, 40, 200, 8, 2, 64, 1), with_nw(paper_linear(), 4, 48), GATES_RANDOM, 0, 0});
    attn_nsa_params per_head = with_nw(attn_nsa_mean_pool(), 3, 64);
    per_head.heads_share_selection = 0;
    check_cuda_case((fwd_case){attn_make_shape(1, 30, 300, 4, 1, 128, 1), per_head, GATES_RANDOM, 0, 0});
}

/* What ./course grade runs compute-sanitizer memcheck and racecheck on (lesson.json, "sanitize"): every
 * kernel of the lesson and every path of its launches, on tiny shapes, each case checked as
 * cuda_part/shapes checks (lists, the three lse, o against the oracle). small's two cases first (with the
 * weights kernels and a run with every optional output NULL), then
 *   launch 1  compress_mean_kernel and compress_linear_kernel at D = 64 and 128, for K and V (the forward)
 *             and for K alone (nsa_weights_cuda's compressed kind), and no launch at all (N < l)
 *   launch 2  cmp_select_g16_kernel in all eight instances (D = 64 and 128, l / d = 1 or 2, l' / d = 1 or
 *             4), with compressed tokens over several tiles (the carry between tiles); cmp_select_kernel at
 *             D = 64 and 128 with shared lists (H/G = 4, 16 when l / d and l' / d are not the fast path's,
 *             32, and 256: lists of more than 128 rows, in two chunks) and per-head lists, over several
 *             tiles, ranking or not (at most n candidates)
 *   launch 3  slc_swa_window_kernel (sm_90; elsewhere the host takes slc_swa_kernel), with a partial last
 *             window of 8 positions and with one position (decoding); slc_swa_kernel at D = 64 and 128,
 *             shared and per-head lists, two and sixteen chunks of 16 heads, blocks of 16 keys and of 96 (a
 *             tile and a half), and at the fast path's shape with w = 1000 (more window blocks than it takes)
 *   weights   weights_kernel (the three kinds) and spread_kernel, in both modes at D = 64 and 128
 * B = 2 and G = 2 in most cases. Which path a case takes is in its label (the messages carry it). */
ATTN_TEST(cuda_part, sanitizer_paths)
{
    require_gpu();
    const attn_nsa_params lin = paper_linear(), pool = attn_nsa_mean_pool();
    attn_nsa_params pool_per_head = with_nw(pool, 3, 64), lin_per_head = with_nw(lin, 4, 64);
    pool_per_head.heads_share_selection = lin_per_head.heads_share_selection = 0;
    const unsigned all = ALSO_NULL_OUTPUTS | ALSO_WEIGHTS;
    const struct {
        attn_shape sh;
        attn_nsa_params p;
        unsigned also;
        const char *label;
    } cases[] = {
        /* small's two cases */
        {attn_make_shape(2, 40, 200, 8, 2, 64, 1), with_nw(lin, 4, 48), all,
         "general kernels at D = 64, linear compression (compress_linear_kernel<64>)"},
        {attn_make_shape(1, 30, 300, 4, 1, 128, 1), pool_per_head, all,
         "general kernels at D = 128, per-head lists (compress_mean_kernel<128>)"},
        /* the fast paths at the bar's D = 128 and H/G = 16 */
        {attn_make_shape(2, 21, 300, 32, 2, 128, 1), with_nw(pool, 4, 128), all,
         "fast paths: cmp_select_g16_kernel<128, 1, 1> (l = d = l' = 64), slc_swa_window_kernel with a partial last "
         "window (21 positions)"},
        {attn_make_shape(2, 19, 500, 32, 2, 128, 1), with_nw(lin, 5, 96), ALSO_WEIGHTS,
         "fast paths: cmp_select_g16_kernel<128, 2, 4> (the paper's l = 32, d = 16, l' = 64, linear compression), "
         "slc_swa_window_kernel"},
        {attn_make_shape(1, 25, 260, 16, 1, 128, 1), params(16, 16, 64, 4, 64, ATTN_NSA_MEAN, 1), 0,
         "cmp_select_g16_kernel<128, 1, 4> (l = d = 16, l' = 64), slc_swa_window_kernel"},
        {attn_make_shape(1, 25, 260, 16, 1, 128, 1), params(32, 16, 16, 5, 50, ATTN_NSA_LINEAR, 1), 0,
         "cmp_select_g16_kernel<128, 2, 1> (l = 32, d = l' = 16), slc_swa_kernel<128> (l' = 16)"},
        {attn_make_shape(1, 20, 300, 16, 1, 128, 1), params(4, 2, 8, 5, 40, ATTN_NSA_MEAN, 1), 0,
         "cmp_select_g16_kernel<128, 2, 4> over 3 tiles of compressed tokens (l = 4, d = 2, l' = 8: 149 tokens), "
         "slc_swa_kernel<128> (l' = 8)"},
        {attn_make_shape(2, 1, 1500, 32, 2, 128, 1), pool, 0,
         "decoding (M = 1): cmp_select_g16_kernel<128, 1, 1>, slc_swa_window_kernel with one position of 8"},
        /* launch 2's fast path at D = 64, launch 3's general kernel (D = 64) */
        {attn_make_shape(2, 30, 300, 32, 2, 64, 1), with_nw(pool, 4, 100), all,
         "cmp_select_g16_kernel<64, 1, 1>, slc_swa_kernel<64>, compress_mean_kernel<64>"},
        {attn_make_shape(2, 30, 300, 32, 2, 64, 1), with_nw(lin, 4, 64), 0,
         "cmp_select_g16_kernel<64, 2, 4>, slc_swa_kernel<64>"},
        {attn_make_shape(1, 40, 300, 16, 1, 64, 1), params(16, 16, 64, 4, 80, ATTN_NSA_MEAN, 1), 0,
         "cmp_select_g16_kernel<64, 1, 4>, slc_swa_kernel<64>"},
        {attn_make_shape(2, 30, 200, 32, 2, 64, 1), params(32, 16, 16, 5, 40, ATTN_NSA_LINEAR, 1), 0,
         "cmp_select_g16_kernel<64, 2, 1>, slc_swa_kernel<64> (l' = 16)"},
        /* the general kernels where one of the fast paths' conditions fails */
        {attn_make_shape(2, 20, 260, 32, 2, 128, 1), params(64, 32, 64, 4, 64, ATTN_NSA_MEAN, 1), 0,
         "cmp_select_kernel<128> at H/G = 16 (l / d = 2, l' / d = 2: not the fast path's), slc_swa_window_kernel on "
         "its lists"},
        {attn_make_shape(1, 30, 1100, 16, 1, 128, 1), with_nw(pool, 4, 1000), 0,
         "slc_swa_kernel<128> at the bar's H/G = 16 (w = 1000: more window blocks than the fast path takes)"},
        {attn_make_shape(2, 20, 300, 32, 2, 128, 1), lin_per_head, 0,
         "per-head lists at H/G = 16: cmp_select_kernel<128>, slc_swa_kernel<128>"},
        {attn_make_shape(1, 20, 300, 64, 2, 128, 1), with_nw(pool, 4, 64), 0,
         "H/G = 32: cmp_select_kernel<128>, slc_swa_kernel<128> in two chunks of 16 heads per list"},
        {attn_make_shape(1, 6, 400, 256, 1, 64, 1), params(32, 16, 64, 4, 64, ATTN_NSA_MEAN, 1), 0,
         "H/G = 256: cmp_select_kernel<64> with lists of 256 rows in two chunks of 128, slc_swa_kernel<64> in 16 "
         "chunks"},
        {attn_make_shape(2, 30, 300, 8, 2, 64, 1), params(4, 2, 8, 5, 40, ATTN_NSA_MEAN, 1), 0,
         "cmp_select_kernel<64> over 3 tiles of compressed tokens (149), slc_swa_kernel<64> with blocks of 8 keys"},
        {attn_make_shape(2, 30, 500, 8, 2, 128, 1), params(32, 16, 96, 4, 100, ATTN_NSA_MEAN, 1), 0,
         "cmp_select_kernel<128>, slc_swa_kernel<128> with blocks of 96 keys (a tile and a half)"},
        {attn_make_shape(2, 20, 20, 4, 2, 64, 1), lin, all,
         "N < l: no compressed token (launch 1 not launched), every row empty in the compressed branch, one block"},
    };
    for (int c = 0; c < (int)(sizeof cases / sizeof cases[0]); ++c)
        check_cuda_case_ex((fwd_case){cases[c].sh, cases[c].p, GATES_RANDOM, 0, 0}, cases[c].also, cases[c].label);
}

ATTN_TEST(cuda_part, optional_outputs)
{
    require_gpu();
    fwd_problem P;
    fwd_init(&P, (fwd_case){attn_make_shape(2, 70, 300, 8, 2, 64, 1), with_nw(paper_linear(), 5, 64), GATES_RANDOM, 0, 0}, 1);
    dev_fwd d;
    dev_fwd_init(&d, &P);
    assert_ok(dev_fwd_run(&P, &d, 1, 0), P.ctx);
    assert_ok(attn_dsync(), P.ctx);
    host_fwd all;
    host_fwd_download(&all, &d, P.ctx);
    assert_ok(dev_fwd_run(&P, &d, 0, 0), P.ctx);
    assert_ok(attn_dsync(), P.ctx);
    uint16_t *o = attn_alloc_bf16(d.nq);
    int32_t *lists = attn_alloc_i32(d.ni);
    float *lse = attn_alloc_f32(d.nl);
    cr_assert(o && lists && lse, "out of host memory [%s]", P.ctx);
    assert_ok(attn_d2h(o, d.o, d.nq * 2), P.ctx);
    compare_bits(o, all.o, d.nq * 2,
                 "o with every optional output NULL against o with all of them: the outputs only report, they must not "
                 "change o", P.ctx);
    /* NULL means not returned: the poison must still be there */
    assert_ok(attn_d2h(lists, d.lists, d.ni * 4), P.ctx);
    assert_ok(attn_d2h(lse, d.lse_slc, d.nl * 4), P.ctx);
    for (size_t e = 0; e < d.ni; ++e)
        cr_assert(lists[e] == INDEX_POISON, "block_indices was NULL, yet the caller's lists buffer changed at %zu [%s]", e,
                  P.ctx);
    for (size_t e = 0; e < d.nl; ++e)
        cr_assert(attn_is_poison_f32(lse[e]), "lse_slc was NULL, yet the caller's buffer changed at %zu [%s]", e, P.ctx);
    free(o), free(lists), free(lse);
    host_fwd_free(&all);
    dev_fwd_free(&d);
    fwd_free(&P);
}

ATTN_TEST(cuda_part, determinism)
{
    require_gpu();
    const fwd_case cases[] = {
        {attn_make_shape(2, 200, 600, 16, 4, 128, 1), with_nw(paper_linear(), 8, 128), GATES_RANDOM, 0, 0},
        {attn_make_shape(1, 203, 700, 32, 2, 64, 1), with_nw(attn_nsa_mean_pool(), 6, 200), GATES_RANDOM, 0, 0},
    };
    for (int c = 0; c < 2; ++c) {
        fwd_problem P;
        fwd_init(&P, cases[c], 1);
        dev_fwd d;
        dev_fwd_init(&d, &P);
        host_fwd run[2];
        for (int r = 0; r < 2; ++r) {
            assert_ok(dev_fwd_run(&P, &d, 1, 0), P.ctx);
            assert_ok(attn_dsync(), P.ctx);
            host_fwd_download(&run[r], &d, P.ctx);
        }
        compare_bits(run[0].o, run[1].o, d.nq * 2, "o of two runs on the same input (a race?)", P.ctx);
        compare_bits(run[0].lists, run[1].lists, d.ni * 4, "block_indices of two runs", P.ctx);
        compare_bits(run[0].lse_cmp, run[1].lse_cmp, d.nl * 4, "lse_cmp of two runs", P.ctx);
        compare_bits(run[0].lse_slc, run[1].lse_slc, d.nl * 4, "lse_slc of two runs", P.ctx);
        compare_bits(run[0].lse_swa, run[1].lse_swa, d.nl * 4, "lse_swa of two runs", P.ctx);
        host_fwd_free(&run[0]), host_fwd_free(&run[1]);
        dev_fwd_free(&d);
        fwd_free(&P);
    }
}

/* nsa_forward_cuda captured into a CUDA graph and replayed, against a direct call: the lesson's code runs in
 * a runner process (common/grading/rpc.h), so the capture happens there. attn_rpc_capture_next_call makes the
 * runner run the next call under stream capture (global mode, on a stream of its own: a call that allocates
 * or synchronises fails), then launch the graph `GRAPH_REPLAYS` times. The outputs are the replays' (the
 * captured call itself computes nothing), poisoned before, and must equal the direct call's bit for bit:
 * every output, and again after new inputs at the same addresses (a replay runs the kernels again; nothing
 * is remembered from the capture). Replaying twice also shows that a replay does not depend on what the one
 * before it left in the outputs or the workspace. */
#define GRAPH_REPLAYS 2

ATTN_TEST(cuda_part, graph_capture)
{
    require_gpu();
    fwd_problem P;
    fwd_init(&P, (fwd_case){attn_make_shape(2, 90, 400, 8, 2, 128, 1), with_nw(paper_linear(), 5, 96), GATES_RANDOM, 0, 0}, 1);
    dev_fwd d;
    dev_fwd_init(&d, &P);
    host_fwd direct[2], replay[2];
    for (int round = 0; round < 2; ++round) {
        if (round == 1) { /* new content at the same addresses */
            const size_t nkv = attn_kv_elems(&P.c.sh);
            assert_ok(attn_dfill_random_bf16(d.q, d.nq, P.c.sh.D, 1.0f, P.seed + 11, 0), P.ctx);
            assert_ok(attn_dfill_random_bf16(d.k, nkv, P.c.sh.D, 1.0f, P.seed + 12, 0), P.ctx);
            assert_ok(attn_dfill_random_bf16(d.v, nkv, P.c.sh.D, 1.0f, P.seed + 13, 0), P.ctx);
        }
        assert_ok(dev_fwd_run(&P, &d, 1, 0), P.ctx); /* poisons every output, then the direct call */
        assert_ok(attn_dsync(), P.ctx);
        host_fwd_download(&direct[round], &d, P.ctx);
        attn_rpc_capture_next_call(GRAPH_REPLAYS); /* the next call of a lesson function: nsa_forward_cuda below */
        attn_clear_error();
        const int st = dev_fwd_run(&P, &d, 1, 0); /* poisoned outputs again, then the call under capture */
        cr_assert(st == ATTN_OK,
                  "nsa_forward_cuda under CUDA graph capture, then %d replays, returned %s: %s%s%s (the call must only "
                  "enqueue work on the caller's stream: no cudaMalloc, no synchronisation, no other stream) [%s]",
                  GRAPH_REPLAYS, attn_status_name(st), attn_strerror(st), *attn_error_detail() ? " - " : "",
                  attn_error_detail(), P.ctx);
        assert_ok(attn_dsync(), P.ctx);
        host_fwd_download(&replay[round], &d, P.ctx);
        const char *when = round ? ", after new inputs at the same addresses" : "";
        char what[200];
        snprintf(what, sizeof what, "o of the graph's replays against a direct call%s", when);
        compare_bits(replay[round].o, direct[round].o, d.nq * 2, what, P.ctx);
        snprintf(what, sizeof what, "block_indices of the graph's replays against a direct call%s", when);
        compare_bits(replay[round].lists, direct[round].lists, d.ni * 4, what, P.ctx);
        snprintf(what, sizeof what, "lse_cmp of the graph's replays against a direct call%s", when);
        compare_bits(replay[round].lse_cmp, direct[round].lse_cmp, d.nl * 4, what, P.ctx);
        snprintf(what, sizeof what, "lse_slc of the graph's replays against a direct call%s", when);
        compare_bits(replay[round].lse_slc, direct[round].lse_slc, d.nl * 4, what, P.ctx);
        snprintf(what, sizeof what, "lse_swa of the graph's replays against a direct call%s", when);
        compare_bits(replay[round].lse_swa, direct[round].lse_swa, d.nl * 4, what, P.ctx);
    }
    cr_assert(memcmp(direct[0].o, direct[1].o, d.nq * 2) != 0, "new inputs gave the same o: the test did not refresh them [%s]",
              P.ctx);
    for (int r = 0; r < 2; ++r) host_fwd_free(&direct[r]), host_fwd_free(&replay[r]);
    dev_fwd_free(&d);
    fwd_free(&P);
}

/* The weights kernels against the oracle's probabilities (on the kernel's lse and lists), and the spread. */
ATTN_TEST(cuda_part, weights)
{
    require_gpu();
    const fwd_case cases[] = {
        {attn_make_shape(2, 60, 300, 8, 2, 64, 1), with_nw(paper_linear(), 5, 64), GATES_RANDOM, 0, 0},
        {attn_make_shape(1, 50, 400, 4, 4, 128, 1), with_nw(attn_nsa_mean_pool(), 4, 100), GATES_RANDOM, 0, 0},
    };
    for (int c = 0; c < 2; ++c) check_cuda_case_ex(cases[c], ALSO_WEIGHTS, NULL);
}

/* ---------------------------------------------------------------- large shapes: GPU references
 *
 * Where the CPU oracle would take minutes, the forward is checked on the GPU: the compression
 * (attn_ref_nsa_compress), the compressed branch (attn_gpu_reference over the compressed tokens: o_cmp and
 * lse_cmp), the selection (attn_ref_nsa_select on that lse: its scores judge the kernel's lists with the
 * near-tie rule), the selected branch on the kernel's lists and the window (attn_gpu_reference), and the
 * gated sum (attn_ref_nsa_gate_add); then every element of o. */
typedef struct {
    attn_shape sh;
    attn_nsa_params p;
    long NC, NB;
    int L;
    size_t nq, nkv, nl, ng, ni, ncmp, nscores;
    uint16_t *q, *k, *v, *w_k, *w_v, *pos, *o; /* the kernel's inputs and output */
    float *g_cmp, *g_slc, *g_swa;
    int32_t *lists; /* the kernel's block_indices */
    void *ws;
    size_t ws_bytes;
    uint16_t *kc, *vc; /* the references' */
    float *lse_cmp, *scores, *tmp, *sum;
    int32_t *ref_lists;
    int32_t *h_lists, *h_ref; /* host copies for the judgement */
    float *h_scores;
    double *row64;
} gpu_case;

/* Device bytes of a gpu_case for `sh`, the workspace counted as the reference solution's layout (k_cmp and
 * v_cmp in bf16, the lists, the general selection's block scores): the skip for lack of memory is decided
 * from this, before any lesson code runs (nsa_forward_workspace_bytes is lesson code). */
static double gpu_case_bytes(const attn_shape *sh, const attn_nsa_params *p)
{
    const double NC = (double)attn_nsa_num_cmp(sh->N, p), NB = (double)attn_nsa_num_blocks(sh->N, p);
    const double rows = (double)sh->B * sh->M * attn_nsa_list_heads(sh, p), nq = (double)attn_q_elems(sh);
    const double ncmp = (double)sh->B * NC * sh->G * sh->D, ni = rows * p->n;
    const double inputs = nq * 2 + 2.0 * attn_kv_elems(sh) * 2 + 3.0 * sh->B * sh->M * sh->H * 4 + nq * 2 + ni * 4;
    const double refs = 2 * ncmp * 2 + (double)attn_lse_elems(sh) * 4 + rows * NB * 4 + ni * 4 + 2 * nq * 4;
    const double workspace = 2 * ncmp * 2 + ni * 4 + rows * NB * 4 + 4 * 256.0;
    return inputs + refs + workspace;
}

static void gpu_case_init(gpu_case *g, attn_shape sh, attn_nsa_params p, const char *ctx)
{
    memset(g, 0, sizeof *g);
    g->sh = sh, g->p = p;
    g->NC = attn_nsa_num_cmp(sh.N, &p), g->NB = attn_nsa_num_blocks(sh.N, &p), g->L = attn_nsa_list_heads(&sh, &p);
    g->nq = attn_q_elems(&sh), g->nkv = attn_kv_elems(&sh), g->nl = attn_lse_elems(&sh);
    g->ng = (size_t)sh.B * sh.M * sh.H, g->ni = (size_t)sh.B * sh.M * g->L * p.n;
    g->ncmp = (size_t)sh.B * g->NC * sh.G * sh.D, g->nscores = (size_t)sh.B * sh.M * g->L * g->NB;
    cr_assert(g->NC > 0 && p.mode == ATTN_NSA_MEAN, "the GPU-checked shapes have compressed tokens, mean mode [%s]", ctx);
    uint16_t **b16[] = {&g->q, &g->k, &g->v, &g->o, &g->kc, &g->vc};
    const size_t n16[] = {g->nq, g->nkv, g->nkv, g->nq, g->ncmp, g->ncmp};
    for (int x = 0; x < 6; ++x) assert_ok(attn_dalloc((void **)b16[x], n16[x] * 2), ctx);
    float **b32[] = {&g->g_cmp, &g->g_slc, &g->g_swa, &g->lse_cmp, &g->scores, &g->tmp, &g->sum};
    const size_t n32[] = {g->ng, g->ng, g->ng, g->nl, g->nscores, g->nq, g->nq};
    for (int x = 0; x < 7; ++x) assert_ok(attn_dalloc((void **)b32[x], n32[x] * 4), ctx);
    assert_ok(attn_dalloc((void **)&g->lists, g->ni * 4), ctx);
    assert_ok(attn_dalloc((void **)&g->ref_lists, g->ni * 4), ctx);
    g->ws_bytes = nsa_forward_workspace_bytes(&sh, &p);
    cr_assert(g->ws_bytes > 0, "nsa_forward_workspace_bytes returned 0 for a valid problem [%s]", ctx);
    assert_ok(attn_dalloc(&g->ws, g->ws_bytes), ctx);
    g->h_lists = attn_alloc_i32(g->ni), g->h_ref = attn_alloc_i32(g->ni), g->h_scores = attn_alloc_f32(g->nscores);
    g->row64 = attn_alloc_f64((size_t)g->NB);
    cr_assert(g->h_lists && g->h_ref && g->h_scores && g->row64, "out of host memory [%s]", ctx);
}

static void gpu_case_free(gpu_case *g)
{
    attn_dfree(g->q), attn_dfree(g->k), attn_dfree(g->v), attn_dfree(g->o), attn_dfree(g->kc), attn_dfree(g->vc);
    attn_dfree(g->g_cmp), attn_dfree(g->g_slc), attn_dfree(g->g_swa), attn_dfree(g->lse_cmp), attn_dfree(g->scores);
    attn_dfree(g->tmp), attn_dfree(g->sum), attn_dfree(g->lists), attn_dfree(g->ref_lists), attn_dfree(g->ws);
    free(g->h_lists), free(g->h_ref), free(g->h_scores), free(g->row64);
    memset(g, 0, sizeof *g);
}

/* New inputs (gates any values: the header allows them, and they make a gate applied to the wrong branch
 * show), poisoned outputs. */
static int gpu_case_fill(gpu_case *g, uint64_t seed, cudaStream_t stream)
{
    const size_t D = (size_t)g->sh.D;
    int st = attn_dfill_random_bf16(g->q, g->nq, D, 1.0f, seed, stream);
    if (!st) st = attn_dfill_random_bf16(g->k, g->nkv, D, 1.0f, seed + 1, stream);
    if (!st) st = attn_dfill_random_bf16(g->v, g->nkv, D, 1.0f, seed + 2, stream);
    if (!st) st = attn_dfill_random_f32(g->g_cmp, g->ng, g->sh.H, 0.5f, seed + 3, stream);
    if (!st) st = attn_dfill_random_f32(g->g_slc, g->ng, g->sh.H, 0.5f, seed + 4, stream);
    if (!st) st = attn_dfill_random_f32(g->g_swa, g->ng, g->sh.H, 0.5f, seed + 5, stream);
    if (!st) st = attn_cuda_status(cudaMemsetAsync(g->o, 0xFF, g->nq * 2, stream), "poison o");
    if (!st) st = attn_cuda_status(cudaMemsetAsync(g->lists, INDEX_POISON_BYTE, g->ni * 4, stream), "poison lists");
    return st;
}

static int gpu_case_run(gpu_case *g, cudaStream_t stream)
{
    const attn_shape sh = g->sh;
    const attn_nsa_params p = g->p;
    return nsa_forward_cuda(&sh, &p, g->q, g->k, g->v, NULL, NULL, NULL, g->g_cmp, g->g_slc, g->g_swa, g->o, NULL,
                            NULL, NULL, g->lists, g->ws, g->ws_bytes, stream);
}

/* 0 when the kernel's lists and o pass; otherwise 1 and why in msg. */
static int gpu_case_check(gpu_case *g, const char *hint, char *msg, size_t len)
{
    const attn_shape *sh = &g->sh;
    attn_gpu_ref_opts cmp = {0}, slc = {0}, swa = {0};
    cmp.shape = *sh, cmp.shape.N = (int)g->NC, cmp.positions = sh->N, cmp.cmp_l = g->p.l, cmp.cmp_d = g->p.d;
    slc.shape = *sh, slc.block_indices = g->lists, slc.num_blocks = g->p.n, slc.block_size = g->p.l_sel;
    slc.lists_per_head = !g->p.heads_share_selection;
    swa.shape = *sh, swa.window = g->p.w;
    int st = attn_ref_nsa_compress(sh, &g->p, g->k, NULL, NULL, g->kc, 0);
    if (!st) st = attn_ref_nsa_compress(sh, &g->p, g->v, NULL, NULL, g->vc, 0);
    if (!st) st = attn_gpu_reference(&cmp, g->q, g->kc, g->vc, g->tmp, g->lse_cmp, 0);
    if (!st) st = attn_ref_nsa_gate_add(sh, g->tmp, g->g_cmp, g->sum, 1, 0);
    if (!st) st = attn_ref_nsa_select(sh, &g->p, g->q, g->kc, g->lse_cmp, g->scores, g->ref_lists, 0);
    if (!st) st = attn_dsync();
    if (!st) st = attn_d2h(g->h_lists, g->lists, g->ni * 4);
    if (!st) st = attn_d2h(g->h_ref, g->ref_lists, g->ni * 4);
    if (!st) st = attn_d2h(g->h_scores, g->scores, g->nscores * 4);
    if (st) {
        snprintf(msg, len, "a GPU reference failed: %s", attn_error_detail());
        return 1;
    }
    /* the lists first: the selected branch's reference runs on them */
    for (size_t r = 0; r < (size_t)sh->B * sh->M * g->L; ++r) {
        const int i = (int)(r / g->L % sh->M);
        for (long j = 0; j < g->NB; ++j) g->row64[j] = g->h_scores[r * g->NB + j];
        char why[400];
        judge_list(why, sizeof why, &g->p, attn_query_pos(sh, i), g->NB, g->row64, g->h_lists + r * g->p.n,
                   g->h_ref + r * g->p.n, 0, TIE_RTOL_CUDA);
        if (why[0]) {
            char g_txt[400], r_txt[400];
            list_text(g_txt, sizeof g_txt, g->h_lists + r * g->p.n, g->p.n);
            list_text(r_txt, sizeof r_txt, g->h_ref + r * g->p.n, g->p.n);
            snprintf(msg, len, "block_indices of b=%zu i=%d (t=%ld) list %zu: %s; got %s, the GPU reference %s",
                     r / g->L / sh->M, i, attn_query_pos(sh, i), r % g->L, why, g_txt, r_txt);
            return 1;
        }
    }
    st = attn_gpu_reference(&slc, g->q, g->k, g->v, g->tmp, NULL, 0);
    if (!st) st = attn_ref_nsa_gate_add(sh, g->tmp, g->g_slc, g->sum, 0, 0);
    if (!st) st = attn_gpu_reference(&swa, g->q, g->k, g->v, g->tmp, NULL, 0);
    if (!st) st = attn_ref_nsa_gate_add(sh, g->tmp, g->g_swa, g->sum, 0, 0);
    if (!st) st = attn_dsync();
    attn_dcmp r;
    if (!st) st = attn_dcompare_bf16_f32(g->o, g->sum, g->nq, ATTN_TOL_BF16, &r);
    if (st) {
        snprintf(msg, len, "a GPU reference or the comparison failed: %s", attn_error_detail());
        return 1;
    }
    if (r.n_bad) {
        const size_t e = r.worst, d = e % sh->D, h = e / sh->D % sh->H, i = e / ((size_t)sh->D * sh->H) % sh->M,
                     b = e / ((size_t)sh->D * sh->H * sh->M);
        snprintf(msg, len, "o: %zu of %zu elements out of tolerance (%zu never written, %zu NaN/Inf); worst at b=%zu i=%zu "
                 "(t=%ld) h=%zu d=%zu (flat %zu%s): got %.6g, expected %.6g%s%s", r.n_bad, r.count, r.n_unwritten,
                 r.n_nonfinite, b, i, (long)sh->N - sh->M + (long)i, h, d, e, e >= (1ull << 31) ? ", past 2^31" : "",
                 r.got, r.expected, hint ? ". " : "", hint ? hint : "");
        return 1;
    }
    return 0;
}

/* Skip the test, with the reason, when the GPU has less free memory than `need` bytes (and 5 % more): asked
 * before any lesson code runs, for the largest case of the test. */
static void require_gpu_bytes(double need)
{
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess || (double)free_b < need * 1.05)
        attn_skip_test("this test needs %.1f GB of GPU memory, %.1f GB are free", need / 1e9, (double)free_b / 1e9);
}

/* One forward on a shape too large for the CPU oracle, checked by gpu_case_check. `what` says which tensors
 * pass 2^31 elements; `hint` ends a failure's message. */
static void check_large(attn_shape sh, attn_nsa_params p, const char *what, const char *hint)
{
    const uint64_t seed = attn_test_seed();
    char st[120], pt[160], ctx[600];
    snprintf(ctx, sizeof ctx, "%s, %s: %s (2^31 = 2147483648), seed %llu (rerun: ATTN_SEED=%llu)",
             shape_text(&sh, st, sizeof st), params_text(&p, pt, sizeof pt), what, (unsigned long long)seed,
             (unsigned long long)seed);
    gpu_case g;
    gpu_case_init(&g, sh, p, ctx);
    assert_ok(gpu_case_fill(&g, seed, 0), ctx);
    assert_ok(gpu_case_run(&g, 0), ctx);
    assert_ok(attn_dsync(), ctx);
    char msg[1600];
    cr_assert(gpu_case_check(&g, hint, msg, sizeof msg) == 0, "%s [%s]", msg, ctx);
    gpu_case_free(&g);
}

/* q and o past 2^31 elements: offsets computed in 32 bits wrap. */
ATTN_TEST(cuda_part, large_offsets)
{
    require_gpu();
    const attn_shape sh = huge_shape(); /* B = 64, M = N = 4200, H = 64, G = 4, D = 128 */
    const attn_nsa_params p = attn_nsa_mean_pool();
    cr_assert(attn_q_elems(&sh) > 2147483648ull, "the test shape must pass 2^31 elements");
    require_gpu_bytes(gpu_case_bytes(&sh, &p));
    check_large(sh, p, "q and o pass 2^31 elements",
                "A tensor of this shape holds more than 2^31 elements: compute offsets in 64 bits (size_t), e.g. "
                "((size_t)b * M + i) * H * D");
}

/* k and v past 2^31 elements with few queries (M = 130), against the GPU references: (1) MHA (B = 64, N = 4200,
 * H = G = 64: the general kernels) with l = 2, d = 1, l' = 64, so that the compressed k_cmp and v_cmp (N - 1
 * tokens) pass 2^31 elements too; (2) H/G = 16 (G = 4, N = 65600), mean-pool: the fast paths. About 27 GB and
 * 9 GB of GPU memory, one case after the other. */
ATTN_TEST(cuda_part, kv_large_offsets)
{
    require_gpu();
    const attn_shape mha = attn_make_shape(64, 130, 4200, 64, 64, 128, 1), bar = attn_make_shape(64, 130, 65600, 64, 4, 128, 1);
    const attn_nsa_params dense_tokens = params(2, 1, 64, 16, 512, ATTN_NSA_MEAN, 1), pool = attn_nsa_mean_pool();
    const double ncmp = (double)mha.B * attn_nsa_num_cmp(mha.N, &dense_tokens) * mha.G * mha.D;
    cr_assert(attn_kv_elems(&mha) > 2147483648ull && ncmp > 2147483648.0 && attn_kv_elems(&bar) > 2147483648ull,
              "the test shapes' k and v (and the first one's k_cmp) must pass 2^31 elements");
    require_gpu_bytes(fmax(gpu_case_bytes(&mha, &dense_tokens), gpu_case_bytes(&bar, &pool)));
    check_large(mha, dense_tokens, "k, v, k_cmp and v_cmp pass 2^31 elements",
                "k, v and the compressed k_cmp, v_cmp of this shape hold more than 2^31 elements: compute their "
                "offsets in 64 bits, e.g. ((size_t)b * N + s) * G * D and ((size_t)b * NC + c) * G * D");
    check_large(bar, pool, "k and v pass 2^31 elements",
                "k and v of this shape hold more than 2^31 elements: compute their offsets in 64 bits (size_t), e.g. "
                "((size_t)b * N + s) * G * D");
}

/* ================================================================ speed */

typedef struct {
    gpu_case g;
    uint64_t seed;
    uint16_t *o_base;
    float *lse_base;
} speed_ctx;

static int launch_dense(void *ctx, cudaStream_t stream)
{
    speed_ctx *c = (speed_ctx *)ctx;
    return attn_baseline_flash_bf16(&c->g.sh, c->g.q, c->g.k, c->g.v, c->o_base, c->lse_base, stream);
}

static int launch_nsa(void *ctx, cudaStream_t stream) { return gpu_case_run(&((speed_ctx *)ctx)->g, stream); }

static int speed_prepare(void *ctx, int rep, cudaStream_t stream)
{
    speed_ctx *c = (speed_ctx *)ctx;
    int st = gpu_case_fill(&c->g, c->seed + 1000003ull * (uint64_t)(rep + 2), stream);
    if (!st) st = attn_cuda_status(cudaMemsetAsync(c->o_base, 0xFF, c->g.nq * 2, stream), "poison baseline o");
    return st;
}

static int speed_check(void *ctx, int rep, char *msg, size_t len)
{
    (void)rep;
    return gpu_case_check(&((speed_ctx *)ctx)->g, NULL, msg, len);
}

/* (query head, key) pairs the three branches visit, exactly: the compressed tokens a position sees, the
 * keys of n top-n blocks (all of them up to t while there are at most n candidates; else n - 1 whole blocks
 * and the current one up to t), and min(t + 1, w) window keys. */
static double nsa_pairs(const attn_shape *sh, const attn_nsa_params *p)
{
    const long NC = attn_nsa_num_cmp(sh->N, p);
    double pairs = 0.0;
    for (int i = 0; i < sh->M; ++i) {
        const long t = attn_query_pos(sh, i), cur = t / p->l_sel;
        const double slc = cur + 1 <= p->n ? t + 1 : (double)(p->n - 1) * p->l_sel + (t - cur * p->l_sel + 1);
        pairs += (double)attn_nsa_cmp_visible_count(t, NC, p) + slc + (t + 1 < p->w ? t + 1 : p->w);
    }
    return pairs * sh->B * sh->H;
}

ATTN_TEST(speed, nsa_forward_vs_dense)
{
    require_gpu();
    speed_ctx c;
    memset(&c, 0, sizeof c);
    const attn_shape sh = attn_make_shape(1, 16384, 16384, 64, 4, 128, 1);
    const attn_nsa_params p = attn_nsa_mean_pool(); /* l = d = l' = 64, n = 16, w = 512, shared lists */
    c.seed = attn_test_seed();
    char st[240], sht[120], ctx[400];
    snprintf(st, sizeof st, "%s, mean-pool l = d = l' = 64, n = 16, w = 512, lists shared by 16 heads, random gates",
             shape_text(&sh, sht, sizeof sht));
    snprintf(ctx, sizeof ctx, "%s, seed %llu (rerun: ATTN_SEED=%llu)", st, (unsigned long long)c.seed,
             (unsigned long long)c.seed);
    gpu_case_init(&c.g, sh, p, ctx);
    assert_ok(attn_dalloc((void **)&c.o_base, c.g.nq * 2), ctx);
    assert_ok(attn_dalloc((void **)&c.lse_base, c.g.nl * 4), ctx);
    /* every reference of a check is computed from these: they must be as prepare left them */
    const attn_timing_checks checks = {speed_prepare, speed_check, &c,
                                       {{c.g.q, c.g.nq * 2, "q"}, {c.g.k, c.g.nkv * 2, "k"}, {c.g.v, c.g.nkv * 2, "v"},
                                        {c.g.g_cmp, c.g.ng * 4, "g_cmp"}, {c.g.g_slc, c.g.ng * 4, "g_slc"},
                                        {c.g.g_swa, c.g.ng * 4, "g_swa"}}};
    attn_timing t_dense, t_nsa;
    char why[1800] = "";
    const int status = attn_time_ab_checked(launch_dense, &c, launch_nsa, &c, &checks, 1, 5, &t_dense, &t_nsa, why,
                                            sizeof why);
    cr_assert(status == ATTN_OK, "checked timing failed: %s [%s]", why, ctx);
    const double bytes = 2.0 * c.g.nq * 2 + 2.0 * c.g.nkv * 2;
    attn_speed_result res = {"10", "nsa_forward_vs_dense", st, t_dense.median_ms, t_nsa.median_ms,
                             TARGET_NSA_FORWARD_VS_DENSE, 4.0 * sh.D * nsa_pairs(&sh, &p), bytes};
    attn_report_speed(&res);
    const double ratio = t_dense.median_ms / t_nsa.median_ms;
    cr_expect(ratio >= TARGET_NSA_FORWARD_VS_DENSE,
              "speed-up %.2fx is below the target %.2fx (dense causal flash %.3f ms, yours %.3f ms) [%s]", ratio,
              TARGET_NSA_FORWARD_VS_DENSE, t_dense.median_ms, t_nsa.median_ms, ctx);
    attn_dfree(c.o_base), attn_dfree(c.lse_base);
    gpu_case_free(&c.g);
}

/* ================================================================ errors */

ATTN_TEST(errors, bad_input_is_named)
{
    const size_t big = 1 << 16;
    float *f = attn_alloc_f32(big), *lse = attn_alloc_f32(big);
    uint16_t *h16 = attn_alloc_bf16(big);
    int32_t *idx = attn_alloc_i32(big);
    cr_assert(f && lse && h16 && idx, "out of host memory");
    const attn_shape ok = attn_make_shape(1, 4, 4, 4, 2, 64, 1), bad_g = attn_make_shape(1, 4, 4, 6, 4, 64, 1),
                     bad_m = attn_make_shape(1, 8, 4, 4, 2, 64, 1), bad_d = attn_make_shape(1, 4, 4, 4, 2, 80, 1),
                     not_causal = attn_make_shape(1, 4, 4, 4, 2, 64, 0), zero_b = attn_make_shape(0, 4, 4, 4, 2, 64, 1);
    const attn_nsa_params mean = attn_nsa_paper_defaults(), lin = paper_linear();
    attn_nsa_params n2 = mean, d5 = mean, mode7 = mean;
    n2.n = 2, d5.d = 5, mode7.mode = 7;

    /* the C forward */
#define FWD_CPU(sh, p, q, wk, wv, pos, gs, o) \
    nsa_forward_cpu(sh, p, q, f, f, wk, wv, pos, f, gs, f, o, lse, lse, lse, idx)
    assert_status(FWD_CPU(&ok, &mean, NULL, NULL, NULL, NULL, f, f), ATTN_ERR_NULL_POINTER, "cpu: q NULL");
    assert_status(FWD_CPU(&ok, &mean, f, NULL, NULL, NULL, NULL, f), ATTN_ERR_NULL_POINTER, "cpu: g_slc NULL");
    assert_status(FWD_CPU(&ok, &mean, f, NULL, NULL, NULL, f, NULL), ATTN_ERR_NULL_POINTER, "cpu: o NULL");
    assert_status(FWD_CPU(&ok, &lin, f, NULL, f, f, f, f), ATTN_ERR_NULL_POINTER, "cpu: linear mode, w_k NULL");
    assert_status(FWD_CPU(&ok, &lin, f, f, f, NULL, f, f), ATTN_ERR_NULL_POINTER, "cpu: linear mode, pos NULL");
    assert_status(FWD_CPU(&ok, NULL, f, NULL, NULL, NULL, f, f), ATTN_ERR_NULL_POINTER, "cpu: parameters NULL");
    assert_status(FWD_CPU(NULL, &mean, f, NULL, NULL, NULL, f, f), ATTN_ERR_NULL_POINTER, "cpu: shape NULL");
    assert_status(FWD_CPU(&bad_g, &mean, f, NULL, NULL, NULL, f, f), ATTN_ERR_HEADS_NOT_DIVISIBLE, "cpu: H=6 G=4");
    assert_status(FWD_CPU(&bad_m, &mean, f, NULL, NULL, NULL, f, f), ATTN_ERR_M_GT_N, "cpu: M > N");
    assert_status(FWD_CPU(&zero_b, &mean, f, NULL, NULL, NULL, f, f), ATTN_ERR_BAD_SHAPE, "cpu: B = 0");
    assert_status(FWD_CPU(&not_causal, &mean, f, NULL, NULL, NULL, f, f), ATTN_ERR_BAD_ARGUMENT, "cpu: causal = 0");
    assert_status(FWD_CPU(&ok, &n2, f, NULL, NULL, NULL, f, f), ATTN_ERR_BAD_ARGUMENT, "cpu: n = 2");
    assert_status(FWD_CPU(&ok, &d5, f, NULL, NULL, NULL, f, f), ATTN_ERR_BAD_ARGUMENT, "cpu: d = 5 does not divide l");
    assert_status(FWD_CPU(&ok, &mode7, f, NULL, NULL, NULL, f, f), ATTN_ERR_BAD_ARGUMENT, "cpu: mode 7");
#undef FWD_CPU

    /* the workspace size: 0 for what the forward rejects */
    cr_assert(nsa_forward_workspace_bytes(&bad_d, &mean) == 0, "nsa_forward_workspace_bytes(D = 80) must be 0");
    cr_assert(nsa_forward_workspace_bytes(&ok, &n2) == 0, "nsa_forward_workspace_bytes(n = 2) must be 0");
    cr_assert(nsa_forward_workspace_bytes(NULL, &mean) == 0, "nsa_forward_workspace_bytes(NULL shape) must be 0");
    const size_t ws = nsa_forward_workspace_bytes(&ok, &mean);
    cr_assert(ws > 0 && ws <= big * 2, "nsa_forward_workspace_bytes of a valid tiny problem: %zu", ws);

    /* the CUDA forward (host pointers stand in for device ones: every check fails before any is used) */
#define FWD_CUDA(sh, p, q, wk, o, gs, wsp, wsb) \
    nsa_forward_cuda(sh, p, q, h16, h16, wk, h16, h16, f, gs, f, o, lse, lse, lse, idx, wsp, wsb, 0)
    assert_status(FWD_CUDA(&bad_d, &mean, h16, NULL, h16, f, h16, ws), ATTN_ERR_UNSUPPORTED_D, "cuda: D = 80");
    assert_status(FWD_CUDA(&ok, &mean, NULL, NULL, h16, f, h16, ws), ATTN_ERR_NULL_POINTER, "cuda: q NULL");
    assert_status(FWD_CUDA(&ok, &mean, h16, NULL, h16, NULL, h16, ws), ATTN_ERR_NULL_POINTER, "cuda: g_slc NULL");
    assert_status(FWD_CUDA(&ok, &mean, h16, NULL, h16, f, NULL, ws), ATTN_ERR_NULL_POINTER, "cuda: workspace NULL");
    assert_status(FWD_CUDA(&ok, &lin, h16, NULL, h16, f, h16, ws), ATTN_ERR_NULL_POINTER, "cuda: linear, w_k NULL");
    assert_status(FWD_CUDA(&ok, &mean, h16, NULL, h16, f, h16, ws - 1), ATTN_ERR_BAD_ARGUMENT, "cuda: workspace too small");
    assert_status(FWD_CUDA(&ok, &mean, h16 + 1, NULL, h16, f, h16, ws), ATTN_ERR_BAD_ARGUMENT, "cuda: misaligned q");
    assert_status(FWD_CUDA(&ok, &mean, h16, NULL, h16 + 4, f, h16, ws), ATTN_ERR_BAD_ARGUMENT, "cuda: misaligned o");
    assert_status(FWD_CUDA(&bad_g, &mean, h16, NULL, h16, f, h16, ws), ATTN_ERR_HEADS_NOT_DIVISIBLE, "cuda: H=6 G=4");
    assert_status(FWD_CUDA(&bad_m, &mean, h16, NULL, h16, f, h16, ws), ATTN_ERR_M_GT_N, "cuda: M > N");
    assert_status(FWD_CUDA(&not_causal, &mean, h16, NULL, h16, f, h16, ws), ATTN_ERR_BAD_ARGUMENT, "cuda: causal = 0");
    assert_status(FWD_CUDA(&ok, &d5, h16, NULL, h16, f, h16, ws), ATTN_ERR_BAD_ARGUMENT, "cuda: d = 5");
    assert_status(FWD_CUDA(&ok, NULL, h16, NULL, h16, f, h16, ws), ATTN_ERR_NULL_POINTER, "cuda: parameters NULL");
#undef FWD_CUDA

    /* the weights helpers */
#define W_CPU(kind, b, h, q, wk, lists, lc, ls, lw, out) \
    nsa_weights_cpu(&ok, &mean, kind, b, h, q, f, wk, f, lists, lc, ls, lw, out)
    assert_status(W_CPU(NSA_WEIGHTS_CMP_KEYS, 0, 0, f, f, idx, lse, lse, lse, f), ATTN_ERR_BAD_ARGUMENT,
                  "weights_cpu: kind CMP_KEYS (made by nsa_cmp_weights_to_keys_cpu, not rebuilt)");
    assert_status(W_CPU(-1, 0, 0, f, f, idx, lse, lse, lse, f), ATTN_ERR_BAD_ARGUMENT, "weights_cpu: kind -1");
    assert_status(W_CPU(NSA_WEIGHTS_SWA, 1, 0, f, f, idx, lse, lse, lse, f), ATTN_ERR_BAD_ARGUMENT, "weights_cpu: b = B");
    assert_status(W_CPU(NSA_WEIGHTS_SWA, 0, 4, f, f, idx, lse, lse, lse, f), ATTN_ERR_BAD_ARGUMENT, "weights_cpu: h = H");
    assert_status(W_CPU(NSA_WEIGHTS_SWA, 0, -1, f, f, idx, lse, lse, lse, f), ATTN_ERR_BAD_ARGUMENT, "weights_cpu: h = -1");
    assert_status(W_CPU(NSA_WEIGHTS_SWA, 0, 0, f, f, idx, lse, lse, NULL, f), ATTN_ERR_NULL_POINTER,
                  "weights_cpu: SWA without lse_swa");
    assert_status(W_CPU(NSA_WEIGHTS_SLC, 0, 0, f, f, NULL, lse, lse, lse, f), ATTN_ERR_NULL_POINTER,
                  "weights_cpu: SLC without block_indices");
    assert_status(W_CPU(NSA_WEIGHTS_CMP, 0, 0, NULL, f, idx, lse, lse, lse, f), ATTN_ERR_NULL_POINTER, "weights_cpu: q NULL");
    assert_status(W_CPU(NSA_WEIGHTS_CMP, 0, 0, f, f, idx, lse, lse, lse, NULL), ATTN_ERR_NULL_POINTER,
                  "weights_cpu: weights NULL");
    assert_status(nsa_weights_cpu(&ok, &lin, NSA_WEIGHTS_CMP, 0, 0, f, f, NULL, f, idx, lse, lse, lse, f),
                  ATTN_ERR_NULL_POINTER, "weights_cpu: CMP in linear mode without w_k");
    assert_status(nsa_weights_cpu(&not_causal, &mean, NSA_WEIGHTS_SWA, 0, 0, f, f, NULL, NULL, idx, lse, lse, lse, f),
                  ATTN_ERR_BAD_ARGUMENT, "weights_cpu: causal = 0");
#undef W_CPU
    assert_status(nsa_cmp_weights_to_keys_cpu(&ok, &mean, NULL, f), ATTN_ERR_NULL_POINTER, "spread_cpu: cmp_weights NULL");
    assert_status(nsa_cmp_weights_to_keys_cpu(&bad_m, &mean, f, f), ATTN_ERR_M_GT_N, "spread_cpu: M > N");
    nsa_weights_stats stats;
    double worst;
    assert_status(nsa_weights_summary(&ok, &mean, NSA_WEIGHTS_SWA, 0, 0, f, NULL, &stats), ATTN_ERR_NULL_POINTER,
                  "summary: gate NULL");
    assert_status(nsa_weights_summary(&ok, &mean, NSA_WEIGHTS_SWA, 0, 0, f, f, NULL), ATTN_ERR_NULL_POINTER,
                  "summary: stats NULL");
    assert_status(nsa_weights_summary(&ok, &mean, 4, 0, 0, f, f, &stats), ATTN_ERR_BAD_ARGUMENT, "summary: kind 4");
    assert_status(nsa_weights_summary(&ok, &mean, NSA_WEIGHTS_CMP, 0, 9, f, f, &stats), ATTN_ERR_BAD_ARGUMENT,
                  "summary: h = 9 of H = 4");
    assert_status(nsa_weights_check(&ok, &mean, NSA_WEIGHTS_SWA, 0, 0, idx, f, NULL), ATTN_ERR_NULL_POINTER,
                  "check: worst NULL");
    assert_status(nsa_weights_check(&ok, &mean, NSA_WEIGHTS_SLC, 0, 0, NULL, f, &worst), ATTN_ERR_NULL_POINTER,
                  "check: SLC without block_indices");
    assert_status(nsa_weights_check(&ok, &mean, 7, 0, 0, idx, f, &worst), ATTN_ERR_BAD_ARGUMENT, "check: kind 7");
    assert_status(nsa_weights_check(&ok, &d5, NSA_WEIGHTS_SWA, 0, 0, idx, f, &worst), ATTN_ERR_BAD_ARGUMENT, "check: d = 5");

#define W_CUDA(sh, kind, b, q, wsp, wsb, out) \
    nsa_weights_cuda(sh, &mean, kind, b, 0, q, h16, h16, h16, idx, lse, lse, lse, out, wsp, wsb, 0)
    assert_status(W_CUDA(&bad_d, NSA_WEIGHTS_SWA, 0, h16, NULL, 0, f), ATTN_ERR_UNSUPPORTED_D, "weights_cuda: D = 80");
    assert_status(W_CUDA(&ok, 5, 0, h16, NULL, 0, f), ATTN_ERR_BAD_ARGUMENT, "weights_cuda: kind 5");
    assert_status(W_CUDA(&ok, NSA_WEIGHTS_SWA, 1, h16, NULL, 0, f), ATTN_ERR_BAD_ARGUMENT, "weights_cuda: b = B");
    assert_status(W_CUDA(&ok, NSA_WEIGHTS_SWA, 0, NULL, NULL, 0, f), ATTN_ERR_NULL_POINTER, "weights_cuda: q NULL");
    assert_status(W_CUDA(&ok, NSA_WEIGHTS_CMP, 0, h16, NULL, 0, f), ATTN_ERR_NULL_POINTER,
                  "weights_cuda: CMP without a workspace");
    assert_status(W_CUDA(&ok, NSA_WEIGHTS_CMP, 0, h16, h16, ws - 1, f), ATTN_ERR_BAD_ARGUMENT,
                  "weights_cuda: CMP with too small a workspace");
    assert_status(W_CUDA(&ok, NSA_WEIGHTS_SWA, 0, h16 + 1, NULL, 0, f), ATTN_ERR_BAD_ARGUMENT, "weights_cuda: misaligned q");
#undef W_CUDA
    assert_status(nsa_cmp_weights_to_keys_cuda(&ok, &mean, f, NULL, 0), ATTN_ERR_NULL_POINTER, "spread_cuda: NULL");
    assert_status(nsa_cmp_weights_to_keys_cuda(&not_causal, &mean, f, f, 0), ATTN_ERR_BAD_ARGUMENT,
                  "spread_cuda: causal = 0");
    free(f), free(lse), free(h16), free(idx);
}
