/*
 * lesson_10.cu - the benchmark's entries of lesson 10 (the fused NSA forward), from the tree the program
 * is linked with, swept over --config and compared with the dense causal frozen flash kernel (the
 * lesson's speed test; its "vs base" column is the speed-up over dense attention):
 *   nsa_forward    nsa_forward_cuda: compression, compressed attention with the importance and the top-n,
 *                  selected and window attention with the gated sum, in three launches. Config mean is
 *                  mean pooling (l = d = l' = 64, flash-linear-attention's mode), config paper the paper's
 *                  l = 32, d = 16, l' = 64 with the LINEAR compression it learns (random maps and position
 *                  embedding here); n = 16, w = 512, lists shared by the heads of a group and random gates
 *                  in both. Checked once against GPU references (below).
 *   nsa_branches   the separate branches of lessons 05 and 07-09 on the same case, summed: compress +
 *                  cmp_attention + select (lesson 08's compress_cmp_select) + selected_attention +
 *                  window_bf16, what the fusion must beat. Lessons 07-09 time the paper configuration with
 *                  mean pooling, whose compression costs about as little as the linear map's (both well
 *                  under 1 % of the total). Its parts belong to other lessons: it is computed where they are
 *                  timed too (--suite nsa), and noted as not computed elsewhere.
 *   nsa_forward_weights   nsa_forward_cuda returning the four optional weights outputs (lse_cmp, lse_slc,
 *                  lse_swa, block_indices), against nsa_forward, which returns none of them in its timed calls
 *                  (o alone; its first, checked call returns the lists): "vs base" is the cost of the weights.
 *                  Checked as nsa_forward plus each branch's lse against its reference.
 *   nsa_forward_1_compress, nsa_forward_2_cmp_select, nsa_forward_3_slc_swa   the forward's three launches, each
 *                  timed alone: a CUDA graph capture of one nsa_forward_cuda call, with every node but the
 *                  launch removed, replayed on the workspace a whole forward filled (bench_graph_capture; no
 *                  hook in the solution). nsa_forward_stages sums them: each launch starts from a cold L2,
 *                  so the sum can exceed the whole forward, whose launch 2 finds launch 1's output in L2.
 * The check: the compression (attn_ref_nsa_compress), the compressed branch and its lse (attn_gpu_reference
 * over the compressed tokens), the lists judged against the reference selection's scores (attn_ref_nsa_select:
 * the same set up to near-ties), the selected branch on the kernel's lists and the window (attn_gpu_reference),
 * the gated sum (attn_ref_nsa_gate_add), then every element of o: what tests/test_10_fused_nsa.c checks on
 * its large shapes and in its speed test.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "fused_nsa.h"
#include "nsa_forward_ref.h"
#include "nsa_select_ref.h"

/* scores that differ by less than this (relative, or absolutely below TIE_ATOL) are a near-tie: the kernel's
 * fp32 sums of bf16 compressed keys and the reference's may rank them either way (the tests' rule) */
#define TIE_RTOL 2e-3
#define TIE_ATOL 1e-12
/* lse: fp32 sums of bf16 products (tests/test_10_fused_nsa.c's kTolLseCuda) */
static const attn_tol kTolLse = {1e-3, 1e-4};

typedef struct {
    bench_attn a;      /* first: q, k, v, o (bf16), no lse */
    attn_nsa_params p; /* the case's, with the linear compression for "paper" */
    uint16_t *w_k, *w_v, *pos;
    float *g_cmp, *g_slc, *g_swa;
    int32_t *lists; /* [B, M, L, n]: the kernel's block_indices */
    float *lse_cmp, *lse_slc, *lse_swa; /* [B, H, M], nsa_forward_weights only */
    void *ws;
    size_t ws_bytes, n_gates, n_lists;
    int weights;        /* 1: every call returns the four weights outputs (nsa_forward_weights) */
    int calls;          /* launches so far: nsa_forward's first call returns the lists its check judges */
    bench_graph stage;  /* the stage entries: one of the forward's launches, alone */
} fused_state;

/* the configuration's parameters: the paper's with its learned (here random) linear compression */
static attn_nsa_params params_of(const bench_case *c)
{
    attn_nsa_params p = c->nsa;
    if (!strncmp(c->config, "paper", 5)) p.mode = ATTN_NSA_LINEAR;
    return p;
}

static void teardown_fused(void *state)
{
    fused_state *s = (fused_state *)state;
    if (!s) return;
    bench_attn_release(&s->a);
    attn_dfree(s->w_k);
    attn_dfree(s->w_v);
    attn_dfree(s->pos);
    attn_dfree(s->g_cmp);
    attn_dfree(s->g_slc);
    attn_dfree(s->g_swa);
    attn_dfree(s->lists);
    attn_dfree(s->lse_cmp);
    attn_dfree(s->lse_slc);
    attn_dfree(s->lse_swa);
    attn_dfree(s->ws);
    bench_graph_release(&s->stage);
    free(s);
}

static int setup_fused_as(const bench_case *c, void **state, int weights)
{
    fused_state *s = (fused_state *)calloc(1, sizeof *s);
    if (!s) return attn_fail(ATTN_ERR_OUT_OF_MEMORY, "host memory for the bench state");
    const attn_shape *sh = &c->shape;
    s->p = params_of(c);
    s->n_gates = (size_t)sh->B * sh->M * sh->H;
    s->n_lists = (size_t)sh->B * sh->M * attn_nsa_list_heads(sh, &s->p) * s->p.n;
    s->ws_bytes = nsa_forward_workspace_bytes(sh, &s->p);
    s->weights = weights;
    const size_t nw = (size_t)sh->G * s->p.l * sh->D * sh->D;
    int st = s->ws_bytes ? bench_attn_init(&s->a, c, 2, 0, 0) : attn_fail(ATTN_ERR_BAD_ARGUMENT, "no workspace size");
    if (!st) st = attn_dalloc(&s->ws, s->ws_bytes);
    if (!st) st = attn_dalloc((void **)&s->lists, s->n_lists * 4);
    float **lse[3] = {&s->lse_cmp, &s->lse_slc, &s->lse_swa};
    for (int x = 0; x < 3 && !st && weights; ++x) st = attn_dalloc((void **)lse[x], attn_lse_elems(sh) * 4);
    float **gates[3] = {&s->g_cmp, &s->g_slc, &s->g_swa};
    for (int x = 0; x < 3 && !st; ++x) { /* any values (the header allows them): a gate on the wrong branch shows */
        st = attn_dalloc((void **)gates[x], s->n_gates * 4);
        if (!st) st = attn_dfill_random_f32(*gates[x], s->n_gates, (size_t)sh->H, 0.5f, bench_seed(c, 40 + x), 0);
    }
    if (!st && s->p.mode == ATTN_NSA_LINEAR) { /* the maps' scale keeps k_cmp's spread near a key's */
        const float scale = 1.0f / sqrtf((float)s->p.l * sh->D);
        st = attn_dalloc((void **)&s->w_k, nw * 2);
        if (!st) st = attn_dalloc((void **)&s->w_v, nw * 2);
        if (!st) st = attn_dalloc((void **)&s->pos, (size_t)s->p.l * sh->D * 2);
        if (!st) st = bench_fill(s->w_k, 2, nw, (size_t)sh->D, scale, bench_seed(c, 43));
        if (!st) st = bench_fill(s->w_v, 2, nw, (size_t)sh->D, scale, bench_seed(c, 44));
        if (!st) st = bench_fill(s->pos, 2, (size_t)s->p.l * sh->D, (size_t)sh->D, 0.5f, bench_seed(c, 45));
    }
    if (st) {
        teardown_fused(s);
        return st;
    }
    *state = s;
    return ATTN_OK;
}

static int setup_fused(const bench_case *c, void **state) { return setup_fused_as(c, state, 0); }
static int setup_weights(const bench_case *c, void **state) { return setup_fused_as(c, state, 1); }

/* nsa_forward: o alone (the weights outputs NULL: the lists stay in the workspace), except its first call, the
 * one checked, which returns the lists too; nsa_forward_weights: lse_cmp, lse_slc, lse_swa and block_indices
 * in every call */
static int launch_fused(void *ctx, cudaStream_t stream)
{
    fused_state *s = (fused_state *)ctx;
    const bench_attn *a = &s->a;
    int32_t *lists = s->weights || s->calls++ == 0 ? s->lists : NULL;
    return nsa_forward_cuda(&a->c.shape, &s->p, (const uint16_t *)a->q, (const uint16_t *)a->k, (const uint16_t *)a->v,
                            s->w_k, s->w_v, s->pos, s->g_cmp, s->g_slc, s->g_swa, (uint16_t *)a->o, s->lse_cmp,
                            s->lse_slc, s->lse_swa, lists, s->ws, s->ws_bytes, stream);
}

/* The stage entries: launch k of the forward (0 compression, 1 compressed attention and top-n, 2 selected and
 * window attention, fused_nsa.cu's order), timed alone. The whole forward runs once first, so that the
 * workspace holds what the launch reads (the compressed K and V, the lists); then a CUDA graph capture of the
 * call keeps launch k and drops the others (bench_graph_capture): the solution's code is what runs, as it
 * enqueues it, with no hook in it. Every call returns o alone, so the lists stay in the workspace, where the
 * captured launches read them. Launch 2 rewrites o, launch 3 adds to it: replays of launch 3 alone add up in o,
 * which nothing reads (the whole forward is checked by nsa_forward). */
static int setup_stage(const bench_case *c, void **state, int k)
{
    int st = setup_fused_as(c, state, 0);
    if (st) return st;
    fused_state *s = (fused_state *)*state;
    s->calls = 1;
    st = launch_fused(s, 0);
    if (!st) st = attn_dsync();
    if (!st) st = bench_graph_capture(&s->stage, launch_fused, s, k);
    if (st) {
        teardown_fused(s);
        *state = NULL;
    }
    return st;
}

static int setup_stage1(const bench_case *c, void **state) { return setup_stage(c, state, 0); }
static int setup_stage2(const bench_case *c, void **state) { return setup_stage(c, state, 1); }
static int setup_stage3(const bench_case *c, void **state) { return setup_stage(c, state, 2); }

static int launch_stage(void *ctx, cudaStream_t stream)
{
    return bench_graph_launch(&((fused_state *)ctx)->stage, stream);
}

/* the stages need the compression launch: at least one compressed token */
static int supports_stage(const bench_case *c, char *why, size_t why_len)
{
    if (!bench_supports_nsa(c, why, why_len)) return 0;
    const attn_nsa_params p = params_of(c);
    if (attn_nsa_num_cmp(c->shape.N, &p) < 1) {
        snprintf(why, why_len, "N=%d holds no compressed token: the forward makes no compression launch", c->shape.N);
        return 0;
    }
    return 1;
}

/* What is wrong with one list against the reference's (NULL: nothing): the rules of common/nsa.h that need
 * no scores, then the set, which may differ only at near-ties of the reference's scores (lesson 08's rule). */
static const char *judge_list(const attn_nsa_params *p, long t, long nb, const float *scores, const int32_t *got,
                              const int32_t *ref, char *in, char *want)
{
    const int n = p->n;
    const long cur = t / p->l_sel, cand = cur + 1, count = cand < n ? cand : n;
    for (int e = 0; e < n; ++e) {
        if (e < count && (got[e] < 0 || got[e] > cur)) return "an entry that is not a candidate block (j * l' <= t)";
        if (e >= count && got[e] != -1) return "an entry past the candidates that is not -1";
        if (e > 0 && e < count && got[e] <= got[e - 1]) return "entries not strictly ascending";
    }
    memset(in, 0, (size_t)nb);
    memset(want, 0, (size_t)nb);
    for (long e = 0; e < count; ++e) {
        in[got[e]] = 1;
        if (ref[e] >= 0 && ref[e] < nb) want[ref[e]] = 1;
    }
    if (!in[0] || !in[cur] || (cur > 0 && !in[cur - 1])) return "a forced block (0, t / l', t / l' - 1) missing";
    long weak = -1, strong = -1;
    int differs = 0;
    for (long j = 0; j < cand; ++j) {
        differs |= in[j] != want[j];
        const int forced = j == 0 || j == cur || j == cur - 1;
        if (in[j] && !forced && (weak < 0 || scores[j] < scores[weak])) weak = j;
        if (!in[j] && (strong < 0 || scores[j] > scores[strong])) strong = j;
    }
    if (differs && weak >= 0 && strong >= 0 && scores[strong] - scores[weak] > TIE_RTOL * scores[strong] + TIE_ATOL)
        return "a block left out that scores clearly above one chosen";
    return NULL;
}

/* The references' buffers, on the device unless said otherwise. */
typedef struct {
    uint16_t *kc, *vc;
    float *lse_cmp, *scores, *tmp, *sum, *lse_ref;
    int32_t *ref_lists;
    float *h_scores; /* host */
    int32_t *h_lists, *h_ref;
    char *in, *want;
} fused_refs;

static void release_refs(fused_refs *r)
{
    attn_dfree(r->kc), attn_dfree(r->vc), attn_dfree(r->lse_cmp), attn_dfree(r->scores), attn_dfree(r->tmp);
    attn_dfree(r->sum), attn_dfree(r->ref_lists), attn_dfree(r->lse_ref);
    free(r->h_scores), free(r->h_lists), free(r->h_ref), free(r->in), free(r->want);
}

static int check_fused(const bench_case *c, void *state, int *failed, char *msg, size_t msg_len)
{
    const fused_state *s = (const fused_state *)state;
    const attn_shape *sh = &c->shape;
    const attn_nsa_params *p = &s->p;
    const long nc = attn_nsa_num_cmp(sh->N, p), nb = attn_nsa_num_blocks(sh->N, p);
    const int L = attn_nsa_list_heads(sh, p), n = p->n;
    const size_t nq = attn_q_elems(sh), ncmp = (size_t)sh->B * nc * sh->G * sh->D, lists = s->n_lists / n;
    const size_t n_scores = lists * (size_t)nb;
    const uint16_t *q = (const uint16_t *)s->a.q, *k = (const uint16_t *)s->a.k, *v = (const uint16_t *)s->a.v;
    fused_refs r;
    memset(&r, 0, sizeof r);
    *failed = 0;
    int st = attn_dalloc((void **)&r.kc, (ncmp ? ncmp : 1) * 2);
    if (!st) st = attn_dalloc((void **)&r.vc, (ncmp ? ncmp : 1) * 2);
    if (!st) st = attn_dalloc((void **)&r.lse_cmp, attn_lse_elems(sh) * 4);
    if (!st) st = attn_dalloc((void **)&r.scores, n_scores * 4);
    if (!st) st = attn_dalloc((void **)&r.tmp, nq * 4);
    if (!st) st = attn_dalloc((void **)&r.sum, nq * 4);
    if (!st) st = attn_dalloc((void **)&r.ref_lists, s->n_lists * 4);
    if (!st && s->weights) st = attn_dalloc((void **)&r.lse_ref, attn_lse_elems(sh) * 4);
    r.h_scores = (float *)malloc(n_scores * 4), r.h_lists = (int32_t *)malloc(s->n_lists * 4);
    r.h_ref = (int32_t *)malloc(s->n_lists * 4), r.in = (char *)malloc((size_t)nb), r.want = (char *)malloc((size_t)nb);
    if (!st && !(r.h_scores && r.h_lists && r.h_ref && r.in && r.want))
        st = attn_fail(ATTN_ERR_OUT_OF_MEMORY, "host memory for the check");
    /* the compressed branch, its gated part of the sum and the reference selection */
    attn_gpu_ref_opts cmp = {}, slc = {}, swa = {};
    cmp.shape = *sh, cmp.shape.N = (int)nc, cmp.positions = sh->N, cmp.cmp_l = p->l, cmp.cmp_d = p->d;
    slc.shape = *sh, slc.block_indices = s->lists, slc.num_blocks = n, slc.block_size = p->l_sel;
    slc.lists_per_head = !p->heads_share_selection;
    swa.shape = *sh, swa.window = p->w;
    if (!st) st = attn_ref_nsa_compress(sh, p, k, s->w_k, s->pos, r.kc, 0);
    if (!st) st = attn_ref_nsa_compress(sh, p, v, s->w_v, NULL, r.vc, 0);
    if (!st) st = attn_gpu_reference(&cmp, q, r.kc, r.vc, r.tmp, r.lse_cmp, 0);
    if (!st) st = attn_ref_nsa_gate_add(sh, r.tmp, s->g_cmp, r.sum, 1, 0);
    if (!st) st = attn_ref_nsa_select(sh, p, q, r.kc, r.lse_cmp, r.scores, r.ref_lists, 0);
    if (!st) st = attn_dsync();
    if (!st) st = attn_d2h(r.h_scores, r.scores, n_scores * 4);
    if (!st) st = attn_d2h(r.h_lists, s->lists, s->n_lists * 4);
    if (!st) st = attn_d2h(r.h_ref, r.ref_lists, s->n_lists * 4);
    /* the lists first: the selected branch's reference runs on them */
    for (size_t row = 0; !st && !*failed && row < lists; ++row) {
        const long i = (long)((row / L) % sh->M), t = attn_query_pos(sh, (int)i);
        const char *why = judge_list(p, t, nb, r.h_scores + row * nb, r.h_lists + row * n, r.h_ref + row * n, r.in, r.want);
        if (why) {
            *failed = 1;
            snprintf(msg, msg_len, "list of (b=%zu, i=%ld, list %zu), t=%ld: %s (first entries: got %d %d %d, the "
                     "reference %d %d %d)", row / L / sh->M, i, row % L, t, why, r.h_lists[row * n],
                     r.h_lists[row * n + 1], r.h_lists[row * n + 2], r.h_ref[row * n], r.h_ref[row * n + 1],
                     r.h_ref[row * n + 2]);
        }
    }
    /* nsa_forward_weights: each branch's lse against its reference's (the selected branch's on the kernel's
     * lists), as the tests compare them */
    const size_t nl = attn_lse_elems(sh);
    attn_dcmp cr;
    if (!st && !*failed && s->weights) {
        st = attn_dcompare_f32_f32(s->lse_cmp, r.lse_cmp, nl, kTolLse, &cr);
        if (!st && cr.n_bad) *failed = 1, bench_dcmp_text("lse_cmp", &cr, msg, msg_len);
    }
    if (!st && !*failed) {
        st = attn_gpu_reference(&slc, q, k, v, r.tmp, r.lse_ref, 0);
        if (!st) st = attn_ref_nsa_gate_add(sh, r.tmp, s->g_slc, r.sum, 0, 0);
        if (!st && s->weights) st = attn_dsync();
        if (!st && s->weights) st = attn_dcompare_f32_f32(s->lse_slc, r.lse_ref, nl, kTolLse, &cr);
        if (!st && s->weights && cr.n_bad) *failed = 1, bench_dcmp_text("lse_slc", &cr, msg, msg_len);
    }
    if (!st && !*failed) {
        st = attn_gpu_reference(&swa, q, k, v, r.tmp, r.lse_ref, 0);
        if (!st) st = attn_ref_nsa_gate_add(sh, r.tmp, s->g_swa, r.sum, 0, 0);
        if (!st) st = attn_dsync();
        if (!st && s->weights) st = attn_dcompare_f32_f32(s->lse_swa, r.lse_ref, nl, kTolLse, &cr);
        if (!st && s->weights && cr.n_bad) *failed = 1, bench_dcmp_text("lse_swa", &cr, msg, msg_len);
    }
    if (!st && !*failed) {
        st = attn_dcompare_bf16_f32((const uint16_t *)s->a.o, r.sum, nq, ATTN_TOL_BF16, &cr);
        if (!st && cr.n_bad) *failed = 1, bench_dcmp_text("o", &cr, msg, msg_len);
    }
    release_refs(&r);
    return st;
}

/* the branches fused_pairs counts */
enum { BRANCH_CMP = 1, BRANCH_SLC = 2, BRANCH_SWA = 4, BRANCH_ALL = 7 };

/* (query head, key) pairs the branches asked for visit, exactly: the compressed tokens a position sees, the
 * keys of its n blocks (all keys up to t while there are at most n candidates; else n - 1 whole blocks and
 * the current one up to t) and min(t + 1, w) window keys (the tests' count: it holds for any list the top-n
 * makes, since every list holds the block of t) */
static double fused_pairs(const bench_case *c, unsigned branches)
{
    const attn_shape *sh = &c->shape;
    const attn_nsa_params p = params_of(c);
    const long nc = attn_nsa_num_cmp(sh->N, &p);
    double pairs = 0.0;
    for (int i = 0; i < sh->M; ++i) {
        const long t = attn_query_pos(sh, i), cur = t / p.l_sel;
        const double slc = cur + 1 <= p.n ? t + 1 : (double)(p.n - 1) * p.l_sel + (t - cur * p.l_sel + 1);
        if (branches & BRANCH_CMP) pairs += (double)attn_nsa_cmp_visible_count(t, nc, &p);
        if (branches & BRANCH_SLC) pairs += slc;
        if (branches & BRANCH_SWA) pairs += t + 1 < p.w ? t + 1 : p.w;
    }
    return pairs * sh->B * sh->H;
}

/* 4 D FLOPs per visible pair of the three branches (the importance's second Q K^T and the linear
 * compression are not counted) */
static double fused_flops(const bench_case *c, const void *state)
{
    (void)state;
    return 4.0 * c->shape.D * fused_pairs(c, BRANCH_ALL);
}

/* bytes of the linear maps and the position embedding (0 in mean mode) */
static double maps_bytes(const fused_state *s)
{
    const attn_shape *sh = &s->a.c.shape;
    return s->p.mode == ATTN_NSA_LINEAR ? 2.0 * sh->G * s->p.l * sh->D * sh->D * 2 + (double)s->p.l * sh->D * 2 : 0.0;
}

/* bytes of the compressed K and V, bf16 */
static double cmp_kv_bytes(const fused_state *s)
{
    const attn_shape *sh = &s->a.c.shape;
    return 2.0 * sh->B * attn_nsa_num_cmp(sh->N, &s->p) * sh->G * sh->D * 2;
}

/* q, k, v, the gates and the linear maps read, o written; nsa_forward_weights also writes the lists and the three
 * lse */
static double fused_bytes(const bench_case *c, const void *state)
{
    const fused_state *s = (const fused_state *)state;
    const attn_shape *sh = &c->shape;
    const double weights = s->weights ? s->n_lists * 4.0 + 3.0 * attn_lse_elems(sh) * 4 : 0.0;
    return 2.0 * attn_q_elems(sh) * 2 + 2.0 * attn_kv_elems(sh) * 2 + 3.0 * s->n_gates * 4 + maps_bytes(s) + weights;
}

/* Launch 1 in linear mode: the map of each compressed token of K and of V, 2 l D FLOPs per output element
 * (mean mode: none counted, bytes only) */
static double stage1_flops(const bench_case *c, const void *state)
{
    const fused_state *s = (const fused_state *)state;
    const attn_shape *sh = &c->shape;
    if (s->p.mode != ATTN_NSA_LINEAR) return 0.0;
    return 2.0 * sh->B * attn_nsa_num_cmp(sh->N, &s->p) * sh->G * (2.0 * s->p.l * sh->D * sh->D);
}

/* K and V read, the compressed K and V written, the maps read */
static double stage1_bytes(const bench_case *c, const void *state)
{
    const fused_state *s = (const fused_state *)state;
    return 2.0 * attn_kv_elems(&c->shape) * 2 + cmp_kv_bytes(s) + maps_bytes(s);
}

/* Launch 2: the compressed branch's pairs (its second pass, the importance, not counted) */
static double stage2_flops(const bench_case *c, const void *state)
{
    (void)state;
    return 4.0 * c->shape.D * fused_pairs(c, BRANCH_CMP);
}

/* q, the compressed K and V and g_cmp read, o (g_cmp o_cmp) and the lists written */
static double stage2_bytes(const bench_case *c, const void *state)
{
    const fused_state *s = (const fused_state *)state;
    return 2.0 * attn_q_elems(&c->shape) * 2 + cmp_kv_bytes(s) + s->n_gates * 4.0 + s->n_lists * 4.0;
}

/* Launch 3: the selected and window branches' pairs */
static double stage3_flops(const bench_case *c, const void *state)
{
    (void)state;
    return 4.0 * c->shape.D * fused_pairs(c, BRANCH_SLC | BRANCH_SWA);
}

/* q, k, v, the lists, g_slc and g_swa read, o read and written */
static double stage3_bytes(const bench_case *c, const void *state)
{
    const fused_state *s = (const fused_state *)state;
    const attn_shape *sh = &c->shape;
    return 3.0 * attn_q_elems(sh) * 2 + 2.0 * attn_kv_elems(sh) * 2 + s->n_lists * 4.0 + 2.0 * s->n_gates * 4;
}

/* the inputs, the workspace, and the check's references at their largest */
static double fused_device_bytes(const bench_case *c)
{
    const attn_shape *sh = &c->shape;
    const attn_nsa_params p = params_of(c);
    const double nc = (double)attn_nsa_num_cmp(sh->N, &p), nb = (double)attn_nsa_num_blocks(sh->N, &p);
    const double lists = (double)sh->B * sh->M * attn_nsa_list_heads(sh, &p), nq = (double)attn_q_elems(sh);
    const double inputs = 2.0 * nq * 2 + 2.0 * attn_kv_elems(sh) * 2 + 3.0 * sh->B * sh->M * sh->H * 4 +
                          lists * p.n * 4 + 2.0 * sh->G * p.l * sh->D * sh->D * 2 + 3.0 * attn_lse_elems(sh) * 4;
    const double refs = 2.0 * nc * sh->B * sh->G * sh->D * 2 + attn_lse_elems(sh) * 4.0 + lists * nb * 4 +
                        lists * p.n * 4 + 2.0 * nq * 4;
    return inputs + (double)nsa_forward_workspace_bytes(sh, &p) + refs;
}

/* The course's bars at its shape (N = 65536, B = 1, H = 64, G = 4, D = 128, causal, M = N), set on an H200:
 * half of the best public Triton NSA forward with a window branch. Mean pooling: XunhaoLai's compression,
 * compressed attention with top-n and selected attention (42.9 ms) plus flash-linear-attention's window
 * (4.6 ms), 47.5 ms, so 23.7 ms (flash-linear-attention's whole parallel_nsa took 63.4 ms); the paper's
 * configuration with the linear compression: XunhaoLai's 64.5 ms plus the window, 69 ms, so 34.5 ms. Against
 * dense causal flash (FlashAttention-2: 204 ms there) the bars are 8.6x and 5.9x. tools/bench/bench_public_nsa.py
 * times both public forwards on the GPU at hand. */
static double fused_bar(const bench_case *c)
{
    const attn_shape *s = &c->shape;
    if (!(s->N == 65536 && s->M == s->N && s->B == 1 && s->H == 64 && s->G == 4 && s->D == 128 && s->causal)) return 0;
    if (!strncmp(c->config, "mean", 4)) return 23.7;
    if (!strncmp(c->config, "paper", 5)) return 34.5;
    return 0;
}

/* an entry of the whole forward on a fused_state made by setup (with or without the weights) */
static void fused_entry(bench_entry *e, int (*setup)(const bench_case *, void **))
{
    e->params = BENCH_NSA;
    e->supports = bench_supports_nsa;
    e->device_bytes = fused_device_bytes;
    e->setup = setup;
    e->launch = launch_fused;
    e->check = check_fused; /* o and the lists; the three lse too when the state returns them */
    e->teardown = teardown_fused;
    e->flops = fused_flops;
    e->bytes = fused_bytes;
}

BENCH_LESSON(10)
{
    bench_entry *e = bench_add(t, "nsa_forward", BENCH_SOLUTION,
                               "nsa_forward_cuda: the whole NSA forward (compression, compressed attention and top-n, "
                               "selected and window attention, the gated sum)");
    fused_entry(e, setup_fused);
    e->suites = "nsa";
    e->bar_ms = fused_bar;
    e->baseline = "frozen_flash_bf16";

    e = bench_add(t, "nsa_forward_weights", BENCH_SOLUTION,
                  "nsa_forward_cuda returning the weights (lse_cmp, lse_slc, lse_swa, block_indices): its vs base is "
                  "nsa_forward's time over this one's, the cost of returning them");
    fused_entry(e, setup_weights);
    e->baseline = "nsa_forward";

    /* the forward's three launches, each timed alone (setup_stage) */
    static const struct {
        const char *name, *computes;
        int (*setup)(const bench_case *, void **);
        double (*flops)(const bench_case *, const void *);
        double (*bytes)(const bench_case *, const void *);
    } kStages[3] = {
        {"nsa_forward_1_compress", "nsa_forward's launch 1 alone: compress_mean_kernel, or compress_linear_kernel for "
         "paper (TFLOP/s: the linear map's; mean: bytes only)", setup_stage1, stage1_flops, stage1_bytes},
        {"nsa_forward_2_cmp_select", "nsa_forward's launch 2 alone: compressed attention, importance and top-n "
         "(cmp_select_g16_kernel or cmp_select_kernel)", setup_stage2, stage2_flops, stage2_bytes},
        {"nsa_forward_3_slc_swa", "nsa_forward's launch 3 alone: selected and window attention, the gated sum "
         "(slc_swa_window_kernel or slc_swa_kernel)", setup_stage3, stage3_flops, stage3_bytes},
    };
    for (int k = 0; k < 3; ++k) {
        e = bench_add(t, kStages[k].name, BENCH_SOLUTION, kStages[k].computes);
        e->params = BENCH_NSA;
        e->supports = supports_stage;
        e->device_bytes = fused_device_bytes;
        e->setup = kStages[k].setup;
        e->launch = launch_stage;
        e->teardown = teardown_fused;
        e->flops = kStages[k].flops;
        e->bytes = kStages[k].bytes;
        e->baseline = "frozen_flash_bf16";
    }
    e = bench_add(t, "nsa_forward_stages", BENCH_SUM,
                  "nsa_forward_1_compress + nsa_forward_2_cmp_select + nsa_forward_3_slc_swa: the three launches, each "
                  "timed alone after an L2 flush (nsa_forward is the whole call)");
    e->params = BENCH_NSA;
    e->parts[0] = "nsa_forward_1_compress";
    e->parts[1] = "nsa_forward_2_cmp_select";
    e->parts[2] = "nsa_forward_3_slc_swa";
    e->baseline = "frozen_flash_bf16";

    e = bench_add(t, "nsa_branches", BENCH_SUM,
                  "compress_cmp_select (07, 08) + selected_attention (09) + window_bf16 (05): the separate branches "
                  "the fused forward must beat (computed with --suite nsa, where they are timed)");
    e->params = BENCH_NSA | BENCH_WINDOW;
    e->suites = "nsa";
    e->parts[0] = "compress_cmp_select";
    e->parts[1] = "selected_attention";
    e->parts[2] = "window_bf16";
    e->baseline = "frozen_flash_bf16";
}
