/*
 * Tests of lesson 11, decoding with a KV cache. Built twice: against lessons/ and solutions/.
 *
 *   c_part     the cache (appends with per-sequence counts, the compressed cache in both modes, its
 *              bookkeeping against the README's table, a token gained exactly when (L - l) % d == 0 for
 *              several l and d), the split-KV partials and their combine by lse, the dense decode against
 *              the double-precision oracle (attn_oracle_forward on the sequence, M = 1, and, in
 *              dense_equals_prefill, the last row of the prefill M = N), the NSA decode against the whole NSA
 *              forward of the same sequence (attn_oracle_nsa_forward: its last row, which is M = 1 at N = the
 *              sequence's length, and, in nsa_equals_prefill, literally the last row of the prefill M = N),
 *              cache lengths 0, 1, 2, l - 1 (no compressed token), l, l + d - 1, lengths that are multiples of
 *              nothing and long ones, batches of different lengths, shared and per-head lists, gates, exact
 *              ties; a sequence grown token by token and a 200-step generation loop
 *   cuda_part  the same on the GPU (inputs rounded to bf16; the oracle rounds the compressed tokens as the
 *              CUDA part may), plus the optional outputs NULL, determinism, each call captured in a CUDA graph
 *              and replayed, caches past 2^31 elements (checked against GPU references), and
 *              sanitizer_paths: every kernel and path once on tiny shapes, what the grader runs
 *              compute-sanitizer on
 *   speed      the split-KV dense decode and the NSA decode against the FROZEN naive decode kernel
 *              (common/grading/baselines_decode.cu), every timed output checked
 *   errors     bad input gets a named error; an append that cannot be done changes no byte of the cache
 *
 * The decode's references are built from what the test appended (the truth), never from the code's cache:
 * the decode tests fill the caches themselves (the compressed one from the oracle's tokens), the append
 * tests compare the code's cache with the truth, and the step-by-step tests do both.
 *
 * Block lists are judged as lesson 10's are: as SETS, where two blocks whose scores nearly tie may be
 * ranked either way (fp32 against double, bf16 compressed keys), and the outputs are then compared with the
 * oracle run on the code's OWN lists. Exact ties (equal keys) have one right answer: the lower index.
 *
 * Every host buffer handed to a lesson function comes from attn_alloc_* (the lesson's code runs in a
 * runner process of its own, and the buffers travel there by the sizes their allocator recorded).
 */
#include "baselines_decode.h"
#include "decoding.h"
#include "nsa.h"
#include "nsa_forward_ref.h"
#include "nsa_select_ref.h"
#include "test_util_nsa.h"

/* Speed-ups over the frozen naive decode kernel (lesson.json; 0: reported only, calibrated on a GPU). */
#define TARGET_DENSE_DECODE_VS_NAIVE ATTN_TARGET_DENSE_DECODE_VS_NAIVE
#define TARGET_NSA_DECODE_VS_NAIVE ATTN_TARGET_NSA_DECODE_VS_NAIVE

/* lse of the CUDA part: fp32 lse of bf16 inputs, as in lessons 07-10. */
static const attn_tol kTolLseCuda = {1e-3, 1e-4};
/* The compressed cache the CUDA append writes: fp32 sums rounded once to bf16 (8 significant bits), against
 * the oracle's double rounded to bf16: one bf16 rounding apart at most (2^-8 relative). */
static const attn_tol kTolCmpCuda = {1e-3, 8e-3};
/* Near ties of block scores (lesson 10): fp32 against double; scores near 120; bf16 compressed keys. */
#define TIE_RTOL_C 2e-4
#define TIE_RTOL_LARGE 2e-3
#define TIE_RTOL_CUDA 2e-3
/* rows of the NSA decode's workspace per (b, g) in the reference solution (an estimate for the memory check) */
#define kRowsTest 16

/* ================================================================ cases and their truth */

/* the gates of a case (gate_kind, test_util_nsa.h), in words; a decode's are [B, 1, H] */
static const char *kGateText[] = {"random gates in [0, 1]", "every gate 1 (the plain sum)",
                                  "g_cmp = 1, others 0 (o = o_cmp)", "g_slc = 1, others 0 (o = o_slc)",
                                  "g_swa = 1, others 0 (o = o_swa)"};

#define MAX_B 16

/* A decoding case: the shape (B sequences, N = L_max the capacity, M = 1), the NSA parameters (ignored by the
 * dense tests) and each sequence's length. */
typedef struct {
    attn_shape sh;
    attn_nsa_params p;
    int len[MAX_B];
    gate_kind gates;
    int large_logits; /* every score near 120: an exp without the max overflows */
    int equal_keys;   /* every key row of a (b, g) equal: blocks tie exactly */
} dec_case;

static attn_nsa_params params(int l, int d, int l_sel, int n, int w, int mode, int share)
{
    attn_nsa_params p = {l, d, l_sel, n, w, mode, share};
    return p;
}

static attn_nsa_params per_head(attn_nsa_params p)
{
    p.heads_share_selection = 0;
    return p;
}

/* B, L_max, H, G, D: the decoding shape (M = 1, causal). */
static attn_shape dshape(int B, int L_max, int H, int G, int D) { return attn_make_shape(B, 1, L_max, H, G, D, 1); }

static void lengths_text(const int *len, int B, char *buf, size_t n)
{
    size_t o = (size_t)snprintf(buf, n, "lengths [");
    for (int b = 0; b < B && o < n; ++b) o += (size_t)snprintf(buf + o, n - o, "%s%d", b ? " " : "", len[b]);
    if (o < n) snprintf(buf + o, n - o, "]");
}

/* The truth of a case: what the sequences hold and what the oracle says about them. */
typedef struct {
    dec_case c;
    uint64_t seed;
    int bf16;       /* inputs rounded to bf16; the oracle rounds the compressed tokens as the CUDA part does */
    int nsa;        /* with the NSA reference (else dense only) */
    long nc_max, nb_max;
    int L;          /* lists per sequence: G (shared) or H (per head) */
    float *q;       /* [B, 1, H, D] */
    float *k, *v;   /* [B, L_max, G, D]: rows < len[b] are sequence b's keys and values */
    float *w_k, *w_v, *pos;
    float *g_cmp, *g_slc, *g_swa; /* [B, 1, H] */
    /* the references, per sequence (rows of sequences of length 0 hold o = 0, lse = -inf) */
    double *o_dense, *lse_dense;      /* [B, H, D], [B, H] */
    double *o, *lse_cmp, *lse_slc, *lse_swa; /* NSA, on the lists given to nsa_reference */
    double *kc, *vc;                  /* [B, NC_max, G, D]: the oracle's compressed tokens */
    double *scores;                   /* [B, L, NB_max]: the block scores */
    int32_t *lists;                   /* [B, L, n]: the oracle's own top-n */
    char ctx[800];
} dec_problem;

static void dec_init(dec_problem *P, dec_case c, int bf16, int nsa)
{
    memset(P, 0, sizeof *P);
    P->c = c, P->seed = attn_test_seed(), P->bf16 = bf16, P->nsa = nsa;
    const attn_shape *s = &c.sh;
    cr_assert(s->B <= MAX_B && s->M == 1, "test case: B <= %d sequences, M = 1", MAX_B);
    P->nc_max = nsa ? attn_nsa_num_cmp(s->N, &c.p) : 0, P->nb_max = nsa ? attn_nsa_num_blocks(s->N, &c.p) : 0;
    P->L = nsa ? attn_nsa_list_heads(s, &c.p) : 0;
    char st[120], pt[160] = "dense", lt[200];
    if (nsa) params_text(&c.p, pt, sizeof pt);
    lengths_text(c.len, s->B, lt, sizeof lt);
    snprintf(P->ctx, sizeof P->ctx, "B=%d L_max=%d H=%d G=%d D=%d%s, %s, %s%s%s%s%s, seed %llu (rerun: ATTN_SEED=%llu)",
             s->B, s->N, s->H, s->G, s->D, s->scale != 0.0f ? " (scale set)" : "", lt, pt, nsa ? ", " : "",
             nsa ? kGateText[c.gates] : "", c.large_logits ? ", scores near 120" : "",
             c.equal_keys ? ", equal keys (exact ties)" : "", (unsigned long long)P->seed, (unsigned long long)P->seed);
    (void)st;
    for (int b = 0; b < s->B; ++b)
        cr_assert(c.len[b] >= 0 && c.len[b] <= s->N, "test case: length %d outside 0 .. %d [%s]", c.len[b], s->N, P->ctx);
    attn_rng rng;
    attn_rng_seed(&rng, P->seed ^ ((uint64_t)s->N * 7919u + (uint64_t)s->B * 104729u + (uint64_t)s->D * 31u +
                                   (uint64_t)c.p.l * 131u + (uint64_t)c.p.mode + (uint64_t)c.len[0] * 65537u));
    const size_t nq = (size_t)s->B * s->H * s->D, nkv = (size_t)s->B * s->N * s->G * s->D, ng = (size_t)s->B * s->H;
    P->q = random_f32(nq, s->D, 1.0f, &rng), P->k = random_f32(nkv, s->D, 1.0f, &rng);
    P->v = random_f32(nkv, s->D, 1.0f, &rng);
    const size_t row = (size_t)s->G * s->D;
    if (c.equal_keys) /* key 0 of each sequence everywhere */
        for (int b = 0; b < s->B; ++b)
            for (int t = 1; t < s->N; ++t)
                memcpy(P->k + ((size_t)b * s->N + t) * row, P->k + (size_t)b * s->N * row, row * sizeof(float));
    if (c.large_logits) add_large_logits(P->q, nq, P->k, nkv, s->D);
    if (nsa && c.p.mode == ATTN_NSA_LINEAR) draw_linear_weights(s, c.p.l, &rng, &P->w_k, &P->w_v, &P->pos);
    draw_gates(c.gates, ng, &rng, &P->g_cmp, &P->g_slc, &P->g_swa);
    if (bf16) round_nsa_inputs(s, c.p.l, P->q, nq, P->k, P->v, nkv, P->w_k, P->w_v, P->pos);
}

static void dec_free(dec_problem *P)
{
    free(P->q), free(P->k), free(P->v), free(P->w_k), free(P->w_v), free(P->pos);
    free(P->g_cmp), free(P->g_slc), free(P->g_swa), free(P->o_dense), free(P->lse_dense);
    free(P->o), free(P->lse_cmp), free(P->lse_slc), free(P->lse_swa), free(P->kc), free(P->vc);
    free(P->scores), free(P->lists);
    memset(P, 0, sizeof *P);
}

/* The shape of sequence b alone for the oracle: one query at the last of its N = len positions. */
static attn_shape seq_shape(const dec_problem *P, int b, int M)
{
    attn_shape s = attn_make_shape(1, M, P->c.len[b], P->c.sh.H, P->c.sh.G, P->c.sh.D, 1);
    s.scale = P->c.sh.scale;
    return s;
}

static const float *seq_k(const dec_problem *P, int b) { return P->k + (size_t)b * P->c.sh.N * P->c.sh.G * P->c.sh.D; }
static const float *seq_v(const dec_problem *P, int b) { return P->v + (size_t)b * P->c.sh.N * P->c.sh.G * P->c.sh.D; }

/* Dense: attention of each sequence's query over its keys 0 .. len - 1 (the oracle, causal, t = len - 1). */
static void dense_reference(dec_problem *P)
{
    const attn_shape *s = &P->c.sh;
    const int H = s->H, D = s->D;
    if (!P->o_dense) P->o_dense = attn_alloc_f64((size_t)s->B * H * D), P->lse_dense = attn_alloc_f64((size_t)s->B * H);
    cr_assert(P->o_dense && P->lse_dense, "out of host memory [%s]", P->ctx);
    for (int b = 0; b < s->B; ++b) {
        double *o = P->o_dense + (size_t)b * H * D, *lse = P->lse_dense + (size_t)b * H;
        if (P->c.len[b] == 0) {
            for (int e = 0; e < H * D; ++e) o[e] = 0.0;
            for (int h = 0; h < H; ++h) lse[h] = -INFINITY;
            continue;
        }
        const attn_shape one = seq_shape(P, b, 1);
        const attn_oracle_opts opts = attn_oracle_dense(&one);
        assert_ok(attn_oracle_forward(&opts, P->q + (size_t)b * H * D, seq_k(P, b), seq_v(P, b), o, lse, NULL), P->ctx);
    }
}

/* NSA: lesson 10's forward of each sequence at its last position (the oracle with M = 1, N = len: its rows do
 * not depend on each other, so this is the last row of the prefill; nsa_equals_prefill checks it), the
 * selected branch on `lists` [B, L, n] (the code's) or on the oracle's own (NULL). The first call also keeps
 * the oracle's compressed tokens, block scores and lists. */
static void nsa_reference(dec_problem *P, const int32_t *lists)
{
    const attn_shape *s = &P->c.sh;
    const attn_nsa_params *p = &P->c.p;
    const int H = s->H, G = s->G, D = s->D, L = P->L, n = p->n;
    const size_t ncmp = (size_t)s->B * P->nc_max * G * D;
    if (!P->o) {
        P->o = attn_alloc_f64((size_t)s->B * H * D), P->lse_cmp = attn_alloc_f64((size_t)s->B * H);
        P->lse_slc = attn_alloc_f64((size_t)s->B * H), P->lse_swa = attn_alloc_f64((size_t)s->B * H);
        P->kc = attn_alloc_f64(ncmp ? ncmp : 1), P->vc = attn_alloc_f64(ncmp ? ncmp : 1);
        P->scores = attn_alloc_f64((size_t)s->B * L * (P->nb_max ? P->nb_max : 1));
        P->lists = attn_alloc_i32((size_t)s->B * L * n);
        cr_assert(P->o && P->lse_cmp && P->lse_slc && P->lse_swa && P->kc && P->vc && P->scores && P->lists,
                  "out of host memory [%s]", P->ctx);
    }
    const int first = lists == NULL;
    for (int b = 0; b < s->B; ++b) {
        const long len = P->c.len[b];
        double *o = P->o + (size_t)b * H * D;
        if (len == 0) {
            for (int e = 0; e < H * D; ++e) o[e] = 0.0;
            for (int h = 0; h < H; ++h)
                P->lse_cmp[(size_t)b * H + h] = P->lse_slc[(size_t)b * H + h] = P->lse_swa[(size_t)b * H + h] = -INFINITY;
            for (int e = 0; e < L * n; ++e) P->lists[(size_t)b * L * n + e] = -1;
            continue;
        }
        const attn_shape one = seq_shape(P, b, 1);
        const long NC = attn_nsa_num_cmp(len, p), NB = attn_nsa_num_blocks(len, p);
        double *kc = malloc((size_t)(NC ? NC : 1) * G * D * sizeof(double)), *vc = malloc((size_t)(NC ? NC : 1) * G * D * sizeof(double));
        double *scores = malloc((size_t)L * NB * sizeof(double));
        int32_t *own = malloc((size_t)L * n * sizeof(int32_t));
        cr_assert(kc && vc && scores && own, "out of host memory [%s]", P->ctx);
        const size_t gb = (size_t)b * H;
        attn_oracle_nsa_in in = {one, *p, P->q + gb * D, seq_k(P, b), seq_v(P, b), P->w_k, P->w_v, P->pos,
                                 P->g_cmp + gb, P->g_slc + gb, P->g_swa + gb,
                                 lists ? lists + (size_t)b * L * n : NULL, P->bf16};
        attn_oracle_nsa_out out = {o, NULL, NULL, NULL, P->lse_cmp + gb, P->lse_slc + gb, P->lse_swa + gb,
                                   kc, vc, scores, own};
        assert_ok(attn_oracle_nsa_forward(&in, &out), P->ctx);
        if (first) {
            memcpy(P->kc + (size_t)b * P->nc_max * G * D, kc, (size_t)NC * G * D * sizeof(double));
            memcpy(P->vc + (size_t)b * P->nc_max * G * D, vc, (size_t)NC * G * D * sizeof(double));
            for (int list = 0; list < L; ++list)
                for (long j = 0; j < P->nb_max; ++j)
                    P->scores[((size_t)b * L + list) * P->nb_max + j] = j < NB ? scores[(size_t)list * NB + j] : 0.0;
            memcpy(P->lists + (size_t)b * L * n, own, (size_t)L * n * sizeof(int32_t));
        }
        free(kc), free(vc), free(scores), free(own);
    }
}

/* ================================================================ judging block lists (lesson 08's rule) */

/* Every list [B, L, n] of the code against the oracle's; the message names the first bad one. */
static void check_lists(const dec_problem *P, const int32_t *got, double tie_rtol, const char *who)
{
    const attn_nsa_params *p = &P->c.p;
    const int L = P->L, n = p->n;
    size_t bad = 0;
    char first[1400] = "";
    for (int b = 0; b < P->c.sh.B; ++b)
        for (int list = 0; list < L; ++list) {
            const size_t r = (size_t)b * L + list;
            const long t = (long)P->c.len[b] - 1, NB = attn_nsa_num_blocks(P->c.len[b] > 0 ? P->c.len[b] : 1, p);
            char why[400];
            judge_list(why, sizeof why, p, t, NB, P->scores + r * P->nb_max, got + r * n, P->lists + r * n,
                       P->c.equal_keys, tie_rtol);
            if (!why[0]) continue;
            if (!bad++) {
                char g_txt[400], r_txt[400];
                list_text(g_txt, sizeof g_txt, got + r * n, n), list_text(r_txt, sizeof r_txt, P->lists + r * n, n);
                snprintf(first, sizeof first, "b=%d (length %d, t=%ld) %s=%d: %s; got %s, expected %s", b, P->c.len[b],
                         t, p->heads_share_selection ? "g" : "h", list, why, g_txt, r_txt);
            }
        }
    cr_assert(bad == 0, "%s: %zu of %zu block lists wrong; first at %s [%s]", who, bad, (size_t)P->c.sh.B * L, first,
              P->ctx);
}

/* ================================================================ comparing rows */

/* got [B, H, W] (fp32, or bf16 when got16 is set) against ref, every element: W = D for o, 1 for lse. The
 * message names the worst element's sequence, its length and position, head and dimension. */
static void expect_rows(const char *what, const attn_shape *sh, const int *len, const float *got, const uint16_t *got16,
                        const double *ref, int W, attn_tol tol, const char *hint, const char *ctx)
{
    const size_t n = (size_t)sh->B * sh->H * W;
    size_t bad = 0, unwritten = 0, nonfinite = 0, worst = 0;
    double worst_excess = -1.0;
    for (size_t e = 0; e < n; ++e) {
        const double x = got16 ? (double)attn_bf16_to_f32(got16[e]) : (double)got[e], r = ref[e];
        const int poison = got16 ? attn_is_poison_bf16(got16[e]) : attn_is_poison_f32(got[e]);
        const int ok = isinf(r) ? x == r : (isfinite(x) && fabs(x - r) <= tol.atol + tol.rtol * fabs(r));
        if (ok) continue;
        ++bad;
        if (poison) ++unwritten;
        else if (!isfinite(x)) ++nonfinite;
        const double excess = isfinite(x) && isfinite(r) ? fabs(x - r) - (tol.atol + tol.rtol * fabs(r)) : INFINITY;
        if (excess > worst_excess) worst_excess = excess, worst = e;
    }
    if (!bad) return;
    const int d = (int)(worst % W), h = (int)(worst / W % sh->H), b = (int)(worst / ((size_t)W * sh->H));
    const double x = got16 ? (double)attn_bf16_to_f32(got16[worst]) : (double)got[worst];
    char where[120];
    if (W > 1) snprintf(where, sizeof where, "b=%d (length %d, t=%d) h=%d d=%d", b, len[b], len[b] - 1, h, d);
    else snprintf(where, sizeof where, "b=%d (length %d, t=%d) h=%d", b, len[b], len[b] - 1, h);
    cr_assert(0, "%s: %zu of %zu elements out of tolerance (%zu never written, %zu NaN/Inf); worst at %s: got %.7g, "
                 "expected %.7g%s%s [%s]", what, bad, n, unwritten, nonfinite, where, x, ref[worst], hint ? ". " : "",
              hint ? hint : "", ctx);
}

/* What a wrong o most often means, for the messages. */
static const char *o_hint(gate_kind g)
{
    switch (g) {
    case GATES_CMP: return "Only the compressed branch counts here: o must equal o_cmp over the compressed cache";
    case GATES_SLC: return "Only the selected branch counts here: o must equal o_slc";
    case GATES_SWA: return "Only the window counts here: o must equal o_swa over keys t - w + 1 .. t";
    default: return "o = g_cmp o_cmp + g_slc o_slc + g_swa o_swa at position t = lengths[b] - 1, gates at [b*H + h]";
    }
}

/* ================================================================ host caches (the test fills them) */

/* Caches of a problem built by the test from its truth: rows < len[b] of k, v, the oracle's compressed tokens in
 * rows < num_cmp(len[b]); every other element the NaN poison, so a decode that reads past a sequence fails. */
typedef struct {
    float *k, *v, *kc, *vc;
    int32_t *len, *cmp_len;
    size_t nkv, ncmp;
} host_cache;

static void host_cache_fill(host_cache *hc, const dec_problem *P)
{
    const attn_shape *s = &P->c.sh;
    const size_t row = (size_t)s->G * s->D;
    hc->nkv = (size_t)s->B * s->N * row, hc->ncmp = (size_t)s->B * P->nc_max * row;
    hc->k = attn_alloc_f32(hc->nkv), hc->v = attn_alloc_f32(hc->nkv);
    hc->kc = attn_alloc_f32(hc->ncmp ? hc->ncmp : 1), hc->vc = attn_alloc_f32(hc->ncmp ? hc->ncmp : 1);
    hc->len = attn_alloc_i32(s->B), hc->cmp_len = attn_alloc_i32(s->B);
    cr_assert(hc->k && hc->v && hc->kc && hc->vc && hc->len && hc->cmp_len, "out of host memory [%s]", P->ctx);
    attn_poison(hc->k, hc->nkv * 4), attn_poison(hc->v, hc->nkv * 4);
    attn_poison(hc->kc, (hc->ncmp ? hc->ncmp : 1) * 4), attn_poison(hc->vc, (hc->ncmp ? hc->ncmp : 1) * 4);
    for (int b = 0; b < s->B; ++b) {
        const size_t at = (size_t)b * s->N * row;
        memcpy(hc->k + at, P->k + at, (size_t)P->c.len[b] * row * 4);
        memcpy(hc->v + at, P->v + at, (size_t)P->c.len[b] * row * 4);
        hc->len[b] = P->c.len[b];
        hc->cmp_len[b] = P->nsa ? (int32_t)attn_nsa_num_cmp(P->c.len[b], &P->c.p) : 0;
        const size_t c0 = (size_t)b * P->nc_max * row;
        for (size_t e = 0; e < (size_t)hc->cmp_len[b] * row; ++e)
            hc->kc[c0 + e] = (float)P->kc[c0 + e], hc->vc[c0 + e] = (float)P->vc[c0 + e];
    }
}

static void host_cache_free(host_cache *hc)
{
    free(hc->k), free(hc->v), free(hc->kc), free(hc->vc), free(hc->len), free(hc->cmp_len);
    memset(hc, 0, sizeof *hc);
}

/* ================================================================ C part: the cache */

/* The worked example of the README: one sequence, l = 4, d = 2, appended one token at a time. The compressed
 * cache holds max(0, floor((L - 4) / 2) + 1) tokens, and token c is the mean of keys 2c .. 2c + 3. */
static const int kReadmeCmpCounts[12] = {0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5}; /* after lengths 1 .. 12 */

/* The worked example's split-KV numbers: one head, D = 1, q = 1, keys = the scores below, values 1 .. 6, chunks
 * of 2 keys. */
static const float kReadmeScores[6] = {1.0f, 2.0f, 3.0f, 0.0f, 0.5f, -1.0f};
static const double kReadmeSplitO[3] = {1.731059, 3.047426, 5.182426}, kReadmeSplitLse[3] = {2.313262, 3.048587, 0.701413};
static const double kReadmeO = 2.776433, kReadmeLse = 3.502835;

/* A cache the code fills through its appends (the test keeps the truth). */
typedef struct {
    attn_shape sh; /* M = the most tokens per append */
    attn_nsa_params p;
    int nsa;
    long nc_max;
    float *k, *v, *kc, *vc, *w_k, *w_v, *pos;
    int32_t *len, *cmp_len, *problem;
    size_t nkv, ncmp;
} code_cache;

static void code_cache_init(code_cache *cc, attn_shape sh, const attn_nsa_params *p, const float *w_k, const float *w_v,
                            const float *pos, const char *ctx)
{
    memset(cc, 0, sizeof *cc);
    cc->sh = sh, cc->nsa = p != NULL;
    if (p) cc->p = *p;
    cc->nc_max = p ? attn_nsa_num_cmp(sh.N, p) : 0;
    const size_t row = (size_t)sh.G * sh.D;
    cc->nkv = (size_t)sh.B * sh.N * row, cc->ncmp = (size_t)sh.B * cc->nc_max * row;
    cc->k = attn_alloc_f32(cc->nkv), cc->v = attn_alloc_f32(cc->nkv);
    cc->kc = attn_alloc_f32(cc->ncmp ? cc->ncmp : 1), cc->vc = attn_alloc_f32(cc->ncmp ? cc->ncmp : 1);
    cc->len = attn_alloc_i32(sh.B), cc->cmp_len = attn_alloc_i32(sh.B), cc->problem = attn_alloc_i32(2);
    cr_assert(cc->k && cc->v && cc->kc && cc->vc && cc->len && cc->cmp_len && cc->problem, "out of host memory [%s]", ctx);
    attn_poison(cc->k, cc->nkv * 4), attn_poison(cc->v, cc->nkv * 4);
    attn_poison(cc->kc, (cc->ncmp ? cc->ncmp : 1) * 4), attn_poison(cc->vc, (cc->ncmp ? cc->ncmp : 1) * 4);
    memset(cc->len, 0, (size_t)sh.B * 4), memset(cc->cmp_len, 0, (size_t)sh.B * 4);
    if (p && p->mode == ATTN_NSA_LINEAR) {
        const size_t nw = (size_t)sh.G * p->l * sh.D * sh.D;
        cc->w_k = attn_alloc_f32(nw), cc->w_v = attn_alloc_f32(nw), cc->pos = attn_alloc_f32((size_t)p->l * sh.D);
        cr_assert(cc->w_k && cc->w_v && cc->pos, "out of host memory [%s]", ctx);
        memcpy(cc->w_k, w_k, nw * 4), memcpy(cc->w_v, w_v, nw * 4), memcpy(cc->pos, pos, (size_t)p->l * sh.D * 4);
    }
}

static void code_cache_free(code_cache *cc)
{
    free(cc->k), free(cc->v), free(cc->kc), free(cc->vc), free(cc->w_k), free(cc->w_v), free(cc->pos);
    free(cc->len), free(cc->cmp_len), free(cc->problem);
    memset(cc, 0, sizeof *cc);
}

/* The code's cache against the truth: lengths, cmp_lengths, every row of every sequence (exact: an append
 * copies), the rows past a length never written, and the compressed tokens against the oracle's compression of
 * the truth (tol), those past cmp_lengths never written. truth_k/v [B, L_max, G, D], truth_len [B]. */
static void check_cache(const code_cache *cc, const float *truth_k, const float *truth_v, const int *truth_len,
                        attn_tol tol, const char *when, const char *ctx)
{
    const attn_shape *s = &cc->sh;
    const int G = s->G, D = s->D;
    const size_t row = (size_t)G * D;
    for (int b = 0; b < s->B; ++b) {
        const long L = truth_len[b];
        cr_assert(cc->len[b] == L, "%s: lengths[%d] = %d, expected %ld (the appends' counts added up) [%s]", when, b,
                  cc->len[b], L, ctx);
        const size_t at = (size_t)b * s->N * row;
        for (size_t e = 0; e < (size_t)s->N * row; ++e) {
            const long t = (long)(e / row);
            const float *kk = cc->k + at, *vv = cc->v + at;
            if (t < L) {
                cr_assert(memcmp(&kk[e], &truth_k[at + e], 4) == 0 && memcmp(&vv[e], &truth_v[at + e], 4) == 0,
                          "%s: cache row %ld of sequence %d (g=%d d=%d) holds k=%g v=%g, the append gave k=%g v=%g: "
                          "a token lands in row lengths[b] + r of the cache, from row r of k_new[b] [%s]",
                          when, t, b, (int)(e % row / D), (int)(e % D), kk[e], vv[e], truth_k[at + e], truth_v[at + e], ctx);
            } else {
                cr_assert(attn_is_poison_f32(kk[e]) && attn_is_poison_f32(vv[e]),
                          "%s: cache row %ld of sequence %d (length %ld) was written: rows past a sequence's length "
                          "belong to no token [%s]", when, t, b, L, ctx);
            }
        }
        if (!cc->nsa) continue;
        const long NC = attn_nsa_num_cmp(L, &cc->p);
        cr_assert(cc->cmp_len[b] == NC,
                  "%s: cmp_lengths[%d] = %d, expected attn_nsa_num_cmp(%ld) = %ld (l=%d, d=%d: a token when (L - l) %% d "
                  "== 0, L >= l) [%s]", when, b, cc->cmp_len[b], L, NC, cc->p.l, cc->p.d, ctx);
        double *kc = attn_alloc_f64(NC ? (size_t)NC * row : 1), *vc = attn_alloc_f64(NC ? (size_t)NC * row : 1);
        cr_assert(kc && vc, "out of host memory [%s]", ctx);
        if (NC) {
            const attn_shape one = attn_make_shape(1, 1, (int)L, s->H, G, D, 1);
            const int lin = cc->p.mode == ATTN_NSA_LINEAR;
            assert_ok(attn_oracle_nsa_compress(&one, &cc->p, truth_k + at, lin ? cc->w_k : NULL, lin ? cc->pos : NULL, kc), ctx);
            assert_ok(attn_oracle_nsa_compress(&one, &cc->p, truth_v + at, lin ? cc->w_v : NULL, NULL, vc), ctx);
        }
        const size_t c0 = (size_t)b * cc->nc_max * row;
        for (size_t e = 0; e < (size_t)cc->nc_max * row; ++e) {
            const long c = (long)(e / row);
            const float gk = cc->kc[c0 + e], gv = cc->vc[c0 + e];
            if (c >= NC) {
                cr_assert(attn_is_poison_f32(gk) && attn_is_poison_f32(gv),
                          "%s: compressed row %ld of sequence %d was written, but a cache of length %ld holds %ld tokens "
                          "[%s]", when, c, b, L, NC, ctx);
                continue;
            }
            const double rk = kc[e], rv = vc[e];
            cr_assert(isfinite(gk) && fabs(gk - rk) <= tol.atol + tol.rtol * fabs(rk) && isfinite(gv) &&
                          fabs(gv - rv) <= tol.atol + tol.rtol * fabs(rv),
                      "%s: compressed token %ld of sequence %d (g=%d d=%d): k_cmp %.7g (expected %.7g), v_cmp %.7g "
                      "(expected %.7g)%s; token c summarises keys c*d .. c*d + l - 1 = %ld .. %ld (%s%s) [%s]",
                      when, c, b, (int)(e % row / D), (int)(e % D), gk, rk, gv, rv,
                      attn_is_poison_f32(gk) ? " never written" : "", c * cc->p.d, c * cc->p.d + cc->p.l - 1,
                      cc->p.mode == ATTN_NSA_MEAN ? "their mean" : "the linear map of the span, pos on the keys",
                      "", ctx);
        }
        free(kc), free(vc);
    }
}

/* Append counts[b] rows of the truth's next tokens to the code's cache and to the truth. */
static void append_step(code_cache *cc, const int32_t *counts, float *truth_k, float *truth_v, int *truth_len,
                        attn_rng *rng, const char *ctx)
{
    const attn_shape *s = &cc->sh;
    const size_t row = (size_t)s->G * s->D, nnew = (size_t)s->B * s->M * row;
    float *k_new = random_f32(nnew, s->D, 1.0f, rng), *v_new = random_f32(nnew, s->D, 1.0f, rng);
    int32_t *cnt = attn_alloc_i32(s->B);
    cr_assert(cnt, "out of host memory");
    memcpy(cnt, counts, (size_t)s->B * 4);
    assert_ok(kv_cache_append_cpu(s, cc->nsa ? &cc->p : NULL, k_new, v_new, cnt, cc->w_k, cc->w_v, cc->pos, cc->k, cc->v,
                                  cc->kc, cc->vc, cc->len, cc->cmp_len, cc->problem),
              ctx);
    cr_assert(cc->problem[0] == KV_CACHE_OK && cc->problem[1] == -1,
              "a good append reported problem {%d, %d}: expected {KV_CACHE_OK, -1} [%s]", cc->problem[0], cc->problem[1], ctx);
    for (int b = 0; b < s->B; ++b) {
        const size_t at = ((size_t)b * s->N + truth_len[b]) * row;
        memcpy(truth_k + at, k_new + (size_t)b * s->M * row, (size_t)counts[b] * row * 4);
        memcpy(truth_v + at, v_new + (size_t)b * s->M * row, (size_t)counts[b] * row * 4);
        truth_len[b] += counts[b];
    }
    free(k_new), free(v_new), free(cnt);
}

ATTN_TEST(c_part, readme_example)
{
    /* the cache growing token by token (mean mode: token c = the mean of keys 2c .. 2c + 3) */
    const uint64_t seed = attn_test_seed();
    char ctx[300];
    snprintf(ctx, sizeof ctx, "the README's worked example: one sequence, L_max = 12, l = 4, d = 2, l' = 4, mean mode, "
             "one token per append, seed %llu (rerun: ATTN_SEED=%llu)", (unsigned long long)seed, (unsigned long long)seed);
    const attn_shape sh = attn_make_shape(1, 1, 12, 2, 1, 8, 1);
    const attn_nsa_params p = params(4, 2, 4, 3, 6, ATTN_NSA_MEAN, 1);
    code_cache cc;
    code_cache_init(&cc, sh, &p, NULL, NULL, NULL, ctx);
    float *tk = attn_alloc_f32(cc.nkv), *tv = attn_alloc_f32(cc.nkv);
    int tl[1] = {0};
    attn_rng rng;
    attn_rng_seed(&rng, seed);
    for (int L = 1; L <= 12; ++L) {
        const int32_t one[1] = {1};
        append_step(&cc, one, tk, tv, tl, &rng, ctx);
        char when[80];
        snprintf(when, sizeof when, "after the append that brought the length to %d", L);
        cr_assert(cc.cmp_len[0] == kReadmeCmpCounts[L - 1],
                  "%s: the compressed cache holds %d tokens, the README's table says %d (floor((L - 4) / 2) + 1 from "
                  "L = 4 on) [%s]", when, cc.cmp_len[0], kReadmeCmpCounts[L - 1], ctx);
        check_cache(&cc, tk, tv, tl, ATTN_TOL_F32, when, ctx);
    }
    code_cache_free(&cc);
    free(tk), free(tv);

    /* split-KV and the combine with the README's numbers */
    const attn_shape d1 = attn_make_shape(1, 1, 6, 1, 1, 1, 1);
    float *q = attn_alloc_f32(1), *k = attn_alloc_f32(6), *v = attn_alloc_f32(6), *op = attn_alloc_f32(3);
    float *lp = attn_alloc_f32(3), *o = attn_alloc_f32(1), *lse = attn_alloc_f32(1);
    int32_t *len = attn_alloc_i32(1);
    cr_assert(q && k && v && op && lp && o && lse && len, "out of host memory");
    q[0] = 1.0f, len[0] = 6;
    for (int s = 0; s < 6; ++s) k[s] = kReadmeScores[s], v[s] = (float)(s + 1);
    const char *ex = "the README's split-KV example: scores 1 2 3 0 0.5 -1, values 1 .. 6, chunks of 2 keys";
    attn_poison(op, 12), attn_poison(lp, 12);
    assert_ok(decode_split_cpu(&d1, 2, q, k, v, len, op, lp), ex);
    for (int u = 0; u < 3; ++u)
        cr_assert(fabs(op[u] - kReadmeSplitO[u]) < 1e-5 && fabs(lp[u] - kReadmeSplitLse[u]) < 1e-5,
                  "%s: split %d is (o %.6f, lse %.6f), the README says (%.6f, %.6f): a split is softmax attention "
                  "over its own keys alone", ex, u, op[u], lp[u], kReadmeSplitO[u], kReadmeSplitLse[u]);
    attn_poison(o, 4), attn_poison(lse, 4);
    assert_ok(decode_combine_cpu(&d1, 3, op, lp, o, lse), ex);
    cr_assert(fabs(o[0] - kReadmeO) < 1e-5 && fabs(lse[0] - kReadmeLse) < 1e-5,
              "%s: the combine gives o %.6f, lse %.6f; the README says %.6f, %.6f (the mean of the three o would be "
              "3.320303: the splits must be weighted by exp(lse_u - max lse))", ex, o[0], lse[0], kReadmeO, kReadmeLse);
    attn_poison(o, 4), attn_poison(lse, 4);
    assert_ok(decode_dense_cpu(&d1, 2, q, k, v, len, o, lse), ex);
    cr_assert(fabs(o[0] - kReadmeO) < 1e-5 && fabs(lse[0] - kReadmeLse) < 1e-5,
              "%s: decode_dense_cpu gives o %.6f, lse %.6f, expected %.6f, %.6f", ex, o[0], lse[0], kReadmeO, kReadmeLse);
    free(q), free(k), free(v), free(op), free(lp), free(o), free(lse), free(len);
}

/* Appends of several tokens, with counts that differ between sequences (0 included), until the caches are
 * nearly full; both compression modes, G > 1, after every append. */
static void check_appends(attn_shape sh, const attn_nsa_params *p, int rounds)
{
    const uint64_t seed = attn_test_seed();
    char pt[160] = "no compressed cache", ctx[500];
    if (p) params_text(p, pt, sizeof pt);
    snprintf(ctx, sizeof ctx, "appends: B=%d L_max=%d up to M=%d tokens per append, G=%d D=%d, %s, seed %llu (rerun: "
             "ATTN_SEED=%llu)", sh.B, sh.N, sh.M, sh.G, sh.D, pt, (unsigned long long)seed, (unsigned long long)seed);
    attn_rng rng;
    attn_rng_seed(&rng, seed ^ ((uint64_t)sh.N * 31u + (uint64_t)sh.M));
    float *w_k = NULL, *w_v = NULL, *pos = NULL;
    if (p && p->mode == ATTN_NSA_LINEAR) {
        const size_t nw = (size_t)sh.G * p->l * sh.D * sh.D;
        w_k = random_f32(nw, sh.D, 1.0f / sqrtf((float)(p->l * sh.D)), &rng);
        w_v = random_f32(nw, sh.D, 1.0f / sqrtf((float)(p->l * sh.D)), &rng);
        pos = random_f32((size_t)p->l * sh.D, sh.D, 0.5f, &rng);
    }
    code_cache cc;
    code_cache_init(&cc, sh, p, w_k, w_v, pos, ctx);
    float *tk = attn_alloc_f32(cc.nkv), *tv = attn_alloc_f32(cc.nkv);
    int tl[MAX_B] = {0};
    cr_assert(tk && tv && sh.B <= MAX_B, "out of host memory");
    for (int round = 0; round < rounds; ++round) {
        int32_t counts[MAX_B];
        for (int b = 0; b < sh.B; ++b) {
            int want = (int)(attn_rng_u64(&rng) % (uint64_t)(sh.M + 1)); /* 0 .. M */
            if (round == 0 && b == 0) want = sh.M;                        /* at least one full append */
            if (round == 1 && b == 0) want = 0;                           /* and one of nothing */
            counts[b] = tl[b] + want <= sh.N ? want : sh.N - tl[b];
        }
        append_step(&cc, counts, tk, tv, tl, &rng, ctx);
        char when[120];
        snprintf(when, sizeof when, "after append %d (counts %d %d ...)", round + 1, counts[0], sh.B > 1 ? counts[1] : 0);
        check_cache(&cc, tk, tv, tl, ATTN_TOL_F32, when, ctx);
    }
    code_cache_free(&cc);
    free(tk), free(tv), free(w_k), free(w_v), free(pos);
}

ATTN_TEST(c_part, append_bookkeeping)
{
    check_appends(attn_make_shape(3, 7, 90, 4, 2, 16, 1), NULL, 6);
    const attn_nsa_params mean = params(8, 4, 8, 4, 16, ATTN_NSA_MEAN, 1);
    check_appends(attn_make_shape(3, 7, 90, 4, 2, 16, 1), &mean, 10);
    const attn_nsa_params pool = params(16, 16, 16, 4, 16, ATTN_NSA_MEAN, 1); /* d = l: tokens that do not overlap */
    check_appends(attn_make_shape(2, 20, 100, 2, 1, 8, 1), &pool, 6);
}

ATTN_TEST(c_part, append_linear_mode)
{
    const attn_nsa_params lin = params(8, 4, 8, 4, 16, ATTN_NSA_LINEAR, 1);
    check_appends(attn_make_shape(2, 5, 60, 4, 2, 16, 1), &lin, 8);
    const attn_nsa_params paper = paper_linear(); /* l = 32, d = 16 */
    check_appends(attn_make_shape(2, 40, 130, 2, 2, 8, 1), &paper, 4);
}

/* The compressed cache gains token c at the append that brings the length to c d + l, and at no other:
 * after each append, cmp_lengths against the count the test keeps by that rule alone (a token for every
 * length L' in (L, L + count] with L' >= l and (L' - l) % d == 0), and the tokens against the oracle's
 * compression. Sequence 0 grows one token per append, sequence 1 by 0 .. M tokens (several boundaries in
 * one append when d is small). */
static void check_cmp_boundaries(int l, int d, int M, int L_max)
{
    const attn_shape sh = attn_make_shape(2, M, L_max, 2, 2, 8, 1);
    const attn_nsa_params p = params(l, d, l, 3, 8, ATTN_NSA_MEAN, 1);
    const uint64_t seed = attn_test_seed();
    char ctx[400];
    snprintf(ctx, sizeof ctx, "the compressed cache's count: l=%d d=%d, B=2 L_max=%d, sequence 0 one token per append, "
             "sequence 1 up to M=%d, mean mode, seed %llu (rerun: ATTN_SEED=%llu)", l, d, L_max, M,
             (unsigned long long)seed, (unsigned long long)seed);
    attn_rng rng;
    attn_rng_seed(&rng, seed ^ ((uint64_t)l * 977u + (uint64_t)d * 31u));
    code_cache cc;
    code_cache_init(&cc, sh, &p, NULL, NULL, NULL, ctx);
    float *tk = attn_alloc_f32(cc.nkv), *tv = attn_alloc_f32(cc.nkv);
    cr_assert(tk && tv, "out of host memory [%s]", ctx);
    int tl[2] = {0, 0}, want_nc[2] = {0, 0};
    for (int step = 0; tl[0] < L_max; ++step) {
        int32_t counts[2] = {1, (int32_t)(attn_rng_u64(&rng) % (uint64_t)(M + 1))};
        if (tl[1] + counts[1] > L_max) counts[1] = L_max - tl[1];
        const int before[2] = {tl[0], tl[1]};
        for (int b = 0; b < 2; ++b)
            for (int L2 = tl[b] + 1; L2 <= tl[b] + counts[b]; ++L2) want_nc[b] += L2 >= l && (L2 - l) % d == 0;
        append_step(&cc, counts, tk, tv, tl, &rng, ctx);
        for (int b = 0; b < 2; ++b)
            cr_assert(cc.cmp_len[b] == want_nc[b],
                      "append %d took sequence %d from length %d to %d: cmp_lengths[%d] = %d, expected %d (a token is "
                      "complete when the length reaches c*d + l, i.e. (L - l) %% d == 0 with L >= l = %d; %s) [%s]",
                      step + 1, b, before[b], tl[b], b, cc.cmp_len[b], want_nc[b], l,
                      cc.cmp_len[b] == want_nc[b] - 1 ? "one short: the token the append completed is missing"
                      : cc.cmp_len[b] == want_nc[b] + 1 ? "one too many: a token whose span is not complete yet"
                                                          : "a different count",
                      ctx);
        if (step % 4 == 0 || tl[0] == L_max) {
            char when[120];
            snprintf(when, sizeof when, "after append %d (lengths %d and %d)", step + 1, tl[0], tl[1]);
            check_cache(&cc, tk, tv, tl, ATTN_TOL_F32, when, ctx);
        }
    }
    code_cache_free(&cc);
    free(tk), free(tv);
}

ATTN_TEST(c_part, cmp_cache_boundaries)
{
    check_cmp_boundaries(4, 2, 5, 40);   /* the README's example */
    check_cmp_boundaries(6, 3, 7, 45);
    check_cmp_boundaries(8, 8, 20, 70);  /* d = l: blocks that do not overlap, several per append */
    check_cmp_boundaries(12, 4, 9, 60);
    check_cmp_boundaries(5, 1, 4, 30);   /* d = 1: a token with every append from L = l on */
    check_cmp_boundaries(32, 16, 40, 130); /* the paper's l and d */
}

/* ================================================================ C part: dense decode */

static void check_dense_cpu(dec_case c, int chunk)
{
    dec_problem P;
    dec_init(&P, c, 0, 0);
    dense_reference(&P);
    host_cache hc;
    host_cache_fill(&hc, &P);
    const attn_shape *s = &c.sh;
    const size_t nq = (size_t)s->B * s->H * s->D, nl = (size_t)s->B * s->H;
    float *o = attn_alloc_f32(nq), *lse = attn_alloc_f32(nl);
    cr_assert(o && lse, "out of host memory");
    attn_poison(o, nq * 4), attn_poison(lse, nl * 4);
    char ctx[900];
    snprintf(ctx, sizeof ctx, "decode_dense_cpu with chunk %d (%d splits), %s", chunk, decode_num_splits(s->N, chunk), P.ctx);
    assert_ok(decode_dense_cpu(s, chunk, P.q, hc.k, hc.v, hc.len, o, lse), ctx);
    const attn_tol tol = c.large_logits ? ATTN_TOL_F32_LARGE : ATTN_TOL_F32;
    expect_rows("lse", s, c.len, lse, NULL, P.lse_dense, 1, tol, "the natural log of the row's softmax denominator over "
                "keys 0 .. t", ctx);
    expect_rows("o", s, c.len, o, NULL, P.o_dense, s->D, tol, "keys 0 .. t = lengths[b] - 1 of the sequence's cache "
                "(batch b at b*L_max rows; the splits combined by their lse)", ctx);
    free(o), free(lse);
    host_cache_free(&hc);
    dec_free(&P);
}

ATTN_TEST(c_part, dense_decode)
{
    const dec_case cases[] = {
        {dshape(1, 1, 2, 1, 16), {0}, {1}, 0, 0, 0},                          /* a cache of one token */
        {dshape(4, 300, 8, 2, 64), {0}, {1, 2, 37, 300}, 0, 0, 0},            /* different lengths, one full */
        {dshape(3, 257, 4, 4, 128), {0}, {256, 257, 129}, 0, 0, 0},           /* MHA, D = 128 */
        {dshape(2, 500, 16, 1, 32), {0}, {499, 250}, 0, 0, 0},                /* MQA */
        {dshape(2, 200, 4, 2, 64), {0}, {0, 150}, 0, 0, 0},                   /* an empty slot */
        {dshape(2, 320, 8, 2, 64), {0}, {300, 77}, 0, 1, 0},                  /* scores near 120 */
    };
    const int chunks[] = {0, 16, 50, 64, 1000};
    for (int c = 0; c < (int)(sizeof cases / sizeof cases[0]); ++c)
        for (int k = 0; k < 5; ++k) check_dense_cpu(cases[c], chunks[k]);
    dec_case scaled = {dshape(2, 100, 4, 2, 32), {0}, {100, 41}, 0, 0, 0};
    scaled.sh.scale = 0.3f;
    check_dense_cpu(scaled, 30);
}

/* The dense decode against the LAST ROW OF THE PREFILL: per sequence, the oracle with M = N = its length (a
 * query at every position, causal; the last one is the decode's), and row t = len - 1 of its o and lse into
 * o_ref [B, H, D], lse_ref [B, H] (a sequence of length 0: o = 0, lse = -inf). */
static void dense_prefill_reference(const dec_problem *P, double *o_ref, double *lse_ref)
{
    const attn_shape *s = &P->c.sh;
    const int H = s->H, D = s->D;
    attn_rng rng;
    attn_rng_seed(&rng, P->seed + 17);
    for (int b = 0; b < s->B; ++b) {
        const int L = P->c.len[b];
        if (L == 0) {
            for (int e = 0; e < H * D; ++e) o_ref[(size_t)b * H * D + e] = 0.0;
            for (int h = 0; h < H; ++h) lse_ref[(size_t)b * H + h] = -INFINITY;
            continue;
        }
        float *q_all = random_f32((size_t)L * H * D, D, 1.0f, &rng);
        if (P->bf16) round_to_bf16(q_all, (size_t)L * H * D);
        memcpy(q_all + (size_t)(L - 1) * H * D, P->q + (size_t)b * H * D, (size_t)H * D * 4);
        attn_shape pre = attn_make_shape(1, L, L, H, s->G, D, 1);
        pre.scale = s->scale;
        double *o = attn_alloc_f64((size_t)L * H * D), *lse = attn_alloc_f64((size_t)H * L);
        cr_assert(o && lse, "out of host memory [%s]", P->ctx);
        const attn_oracle_opts opts = attn_oracle_dense(&pre);
        assert_ok(attn_oracle_forward(&opts, q_all, seq_k(P, b), seq_v(P, b), o, lse, NULL), P->ctx);
        memcpy(o_ref + (size_t)b * H * D, o + (size_t)(L - 1) * H * D, (size_t)H * D * 8);
        for (int h = 0; h < H; ++h) lse_ref[(size_t)b * H + h] = lse[(size_t)h * L + L - 1]; /* [B, H, M] */
        free(q_all), free(o), free(lse);
    }
}

static void check_dense_prefill_cpu(dec_case c)
{
    dec_problem P;
    dec_init(&P, c, 0, 0);
    const attn_shape *s = &c.sh;
    const size_t nq = (size_t)s->B * s->H * s->D, nl = (size_t)s->B * s->H;
    host_cache hc;
    host_cache_fill(&hc, &P);
    double *o_ref = attn_alloc_f64(nq), *lse_ref = attn_alloc_f64(nl);
    float *o = attn_alloc_f32(nq), *lse = attn_alloc_f32(nl);
    cr_assert(o_ref && lse_ref && o && lse, "out of host memory [%s]", P.ctx);
    dense_prefill_reference(&P, o_ref, lse_ref);
    char ctx[1000];
    snprintf(ctx, sizeof ctx, "decode_dense_cpu (chunk 32) against row t = length - 1 of the PREFILL of each sequence "
             "(the oracle with M = N = its length), %s", P.ctx);
    attn_poison(o, nq * 4), attn_poison(lse, nl * 4);
    assert_ok(decode_dense_cpu(s, 32, P.q, hc.k, hc.v, hc.len, o, lse), ctx);
    expect_rows("lse", s, c.len, lse, NULL, lse_ref, 1, ATTN_TOL_F32, NULL, ctx);
    expect_rows("o", s, c.len, o, NULL, o_ref, s->D, ATTN_TOL_F32,
                "the decode of the newest token is the last row of the prefill: keys 0 .. t, none after", ctx);
    free(o), free(lse), free(o_ref), free(lse_ref);
    host_cache_free(&hc);
    dec_free(&P);
}

ATTN_TEST(c_part, dense_equals_prefill)
{
    check_dense_prefill_cpu((dec_case){dshape(4, 300, 8, 2, 32), {0}, {300, 1, 77, 0}, 0, 0, 0});
    check_dense_prefill_cpu((dec_case){dshape(2, 130, 4, 4, 64), {0}, {129, 64}, 0, 0, 0});
}

/* Every partial against the oracle over its own keys; empty splits exactly (0, -inf). */
ATTN_TEST(c_part, split_partials)
{
    const dec_case c = {dshape(3, 230, 4, 2, 32), {0}, {230, 97, 1}, 0, 0, 0};
    const int chunks[] = {64, 50, 7, 0};
    for (int k = 0; k < 4; ++k) {
        dec_problem P;
        dec_init(&P, c, 0, 0);
        host_cache hc;
        host_cache_fill(&hc, &P);
        const attn_shape *s = &c.sh;
        const int chunk = chunks[k], U = decode_num_splits(s->N, chunk), ch = chunk > 0 ? chunk : s->N;
        const size_t rows = (size_t)s->B * s->H;
        float *op = attn_alloc_f32(rows * U * s->D), *lp = attn_alloc_f32(rows * U);
        double *ro = attn_alloc_f64(s->H * (size_t)s->D), *rl = attn_alloc_f64(s->H);
        cr_assert(op && lp && ro && rl, "out of host memory");
        attn_poison(op, rows * U * s->D * 4), attn_poison(lp, rows * U * 4);
        char ctx[900];
        snprintf(ctx, sizeof ctx, "decode_split_cpu, chunk %d (%d splits), %s", chunk, U, P.ctx);
        assert_ok(decode_split_cpu(s, chunk, P.q, hc.k, hc.v, hc.len, op, lp), ctx);
        for (int b = 0; b < s->B; ++b)
            for (int u = 0; u < U; ++u) {
                const long first = (long)u * ch, last = first + ch < c.len[b] ? first + ch : c.len[b];
                const size_t row = (size_t)s->G * s->D;
                for (int h = 0; h < s->H; ++h) {
                    const size_t part = ((size_t)b * s->H + h) * U + u;
                    if (last <= first) { /* no key in this split */
                        cr_assert(isinf(lp[part]) && lp[part] < 0,
                                  "b=%d (length %d) h=%d split %d (keys %ld ..) holds no key: lse_part must be -inf, got "
                                  "%g [%s]", b, c.len[b], h, u, first, lp[part], ctx);
                        for (int d = 0; d < s->D; ++d)
                            cr_assert(op[part * s->D + d] == 0.0f,
                                      "b=%d h=%d split %d holds no key: o_part must be 0, got %g at d=%d [%s]", b, h, u,
                                      op[part * s->D + d], d, ctx);
                    }
                }
                if (last <= first) continue;
                /* the oracle over keys [first, last) alone (non-causal: all of them are before t) */
                const attn_shape sub = attn_make_shape(1, 1, (int)(last - first), s->H, s->G, s->D, 0);
                const attn_oracle_opts opts = attn_oracle_dense(&sub);
                const size_t at = ((size_t)b * s->N + first) * row;
                assert_ok(attn_oracle_forward(&opts, P.q + (size_t)b * s->H * s->D, P.k + at, P.v + at, ro, rl, NULL), ctx);
                for (int h = 0; h < s->H; ++h) {
                    const size_t part = ((size_t)b * s->H + h) * U + u;
                    cr_assert(fabs(lp[part] - rl[h]) <= 2e-5 + 2e-5 * fabs(rl[h]),
                              "b=%d (length %d) h=%d split %d (keys %ld .. %ld): lse_part %.7g, expected %.7g%s [%s]", b,
                              c.len[b], h, u, first, last - 1, lp[part], rl[h],
                              last - first < ch ? " (the last split of the sequence holds only the keys before its length)"
                                                : "", ctx);
                    for (int d = 0; d < s->D; ++d)
                        cr_assert(fabs(op[part * s->D + d] - ro[(size_t)h * s->D + d]) <= 2e-5 + 2e-5 * fabs(ro[(size_t)h * s->D + d]),
                                  "b=%d h=%d split %d (keys %ld .. %ld) d=%d: o_part %.7g, expected %.7g (normalised "
                                  "over the split's own keys) [%s]", b, h, u, first, last - 1, d, op[part * s->D + d],
                                  ro[(size_t)h * s->D + d], ctx);
                }
            }
        free(op), free(lp), free(ro), free(rl);
        host_cache_free(&hc);
        dec_free(&P);
    }
}

/* The combine on partials made up by the test: lse far apart, empty splits, all empty. */
ATTN_TEST(c_part, combine_by_lse)
{
    const uint64_t seed = attn_test_seed();
    const attn_shape sh = attn_make_shape(3, 1, 40, 4, 2, 16, 1);
    const int U = 7;
    const size_t rows = (size_t)sh.B * sh.H;
    float *op = attn_alloc_f32(rows * U * sh.D), *lp = attn_alloc_f32(rows * U), *o = attn_alloc_f32(rows * sh.D);
    float *lse = attn_alloc_f32(rows);
    cr_assert(op && lp && o && lse, "out of host memory");
    attn_rng rng;
    attn_rng_seed(&rng, seed);
    attn_fill_random(op, rows * U * sh.D, sh.D, 1.0f, &rng);
    for (size_t r = 0; r < rows; ++r)
        for (int u = 0; u < U; ++u) {
            const double x = attn_rng_uniform(&rng);
            lp[r * U + u] = x < 0.25 ? -INFINITY : (float)(160.0 * attn_rng_uniform(&rng) - 80.0); /* e^80 apart */
        }
    for (int u = 0; u < U; ++u) lp[1 * U + u] = -INFINITY; /* a row that saw nothing */
    attn_poison(o, rows * sh.D * 4), attn_poison(lse, rows * 4);
    char ctx[200];
    snprintf(ctx, sizeof ctx, "decode_combine_cpu of %d partials with lse in [-80, 80] and empty ones (-inf), seed %llu "
             "(rerun: ATTN_SEED=%llu)", U, (unsigned long long)seed, (unsigned long long)seed);
    for (size_t r = 0; r < rows; ++r) /* empty splits hold o = 0 */
        for (int u = 0; u < U; ++u)
            if (isinf(lp[r * U + u]))
                for (int d = 0; d < sh.D; ++d) op[(r * U + u) * sh.D + d] = 0.0f;
    assert_ok(decode_combine_cpu(&sh, U, op, lp, o, lse), ctx);
    for (size_t r = 0; r < rows; ++r) {
        double m = -INFINITY;
        for (int u = 0; u < U; ++u) m = lp[r * U + u] > m ? lp[r * U + u] : m;
        double wsum = 0.0;
        for (int u = 0; u < U; ++u) wsum += isinf(lp[r * U + u]) ? 0.0 : exp(lp[r * U + u] - m);
        const double want_lse = isinf(m) ? -INFINITY : m + log(wsum);
        cr_assert((isinf(want_lse) && lse[r] == want_lse) || fabs(lse[r] - want_lse) <= 1e-5 + 1e-6 * fabs(want_lse),
                  "row %zu: lse %.7g, expected %.7g%s [%s]", r, lse[r], want_lse,
                  isinf(want_lse) ? " (every partial is empty: -inf, and o = 0)" : "", ctx);
        for (int d = 0; d < sh.D; ++d) {
            double want = 0.0;
            for (int u = 0; u < U; ++u)
                if (!isinf(lp[r * U + u])) want += exp(lp[r * U + u] - m) * op[(r * U + u) * sh.D + d];
            want = isinf(m) ? 0.0 : want / wsum;
            cr_assert(fabs(o[r * sh.D + d] - want) <= 2e-5 + 2e-5 * fabs(want),
                      "row %zu d=%d: o %.7g, expected %.7g (sum_u exp(lse_u - m) o_u / sum_u exp(lse_u - m)%s) [%s]", r, d,
                      o[r * sh.D + d], want, isnan(o[r * sh.D + d]) ? ": a NaN, exp(-inf - (-inf))?" : "", ctx);
        }
    }
    free(op), free(lp), free(o), free(lse);
}

/* ================================================================ C part: NSA decode */

typedef struct {
    float *o, *lse_cmp, *lse_slc, *lse_swa;
    int32_t *lists;
} nsa_out;

static void nsa_out_alloc(nsa_out *r, const dec_problem *P)
{
    const attn_shape *s = &P->c.sh;
    const size_t nq = (size_t)s->B * s->H * s->D, nl = (size_t)s->B * s->H, ni = (size_t)s->B * P->L * P->c.p.n;
    r->o = attn_alloc_f32(nq), r->lse_cmp = attn_alloc_f32(nl), r->lse_slc = attn_alloc_f32(nl);
    r->lse_swa = attn_alloc_f32(nl), r->lists = attn_alloc_i32(ni);
    cr_assert(r->o && r->lse_cmp && r->lse_slc && r->lse_swa && r->lists, "out of host memory [%s]", P->ctx);
    attn_poison(r->o, nq * 4), attn_poison(r->lse_cmp, nl * 4), attn_poison(r->lse_slc, nl * 4);
    attn_poison(r->lse_swa, nl * 4), memset(r->lists, INDEX_POISON_BYTE, ni * 4);
}

static void nsa_out_free(nsa_out *r)
{
    free(r->o), free(r->lse_cmp), free(r->lse_slc), free(r->lse_swa), free(r->lists);
    memset(r, 0, sizeof *r);
}

/* The lists, then the three lse and o, against the oracle on the code's lists. got16 set: o in bf16. */
static void check_nsa_outputs(dec_problem *P, const nsa_out *r, const uint16_t *o16, int cuda)
{
    const dec_case *c = &P->c;
    check_lists(P, r->lists, cuda ? TIE_RTOL_CUDA : c->large_logits ? TIE_RTOL_LARGE : TIE_RTOL_C,
                cuda ? "block_indices of decode_nsa_cuda" : "block_indices of decode_nsa_cpu");
    nsa_reference(P, r->lists);
    const attn_tol tol = cuda ? kTolLseCuda : c->large_logits ? ATTN_TOL_F32_LARGE : ATTN_TOL_F32;
    expect_rows("lse_cmp", &c->sh, c->len, r->lse_cmp, NULL, P->lse_cmp, 1, tol,
                "the compressed branch over every token of the compressed cache (all are visible from t = L - 1; -inf "
                "when there is none)", P->ctx);
    expect_rows("lse_slc", &c->sh, c->len, r->lse_slc, NULL, P->lse_slc, 1, tol,
                "the selected branch on your lists, clipped at t", P->ctx);
    expect_rows("lse_swa", &c->sh, c->len, r->lse_swa, NULL, P->lse_swa, 1, tol, "the window t - w + 1 .. t", P->ctx);
    expect_rows("o", &c->sh, c->len, o16 ? NULL : r->o, o16, P->o, c->sh.D,
                cuda ? ATTN_TOL_BF16 : c->large_logits ? ATTN_TOL_F32_LARGE : ATTN_TOL_F32, o_hint(c->gates), P->ctx);
}

/* The caches filled by the test, decode_nsa_cpu with every output, the oracle on its lists. */
static void check_nsa_cpu(dec_case c)
{
    dec_problem P;
    dec_init(&P, c, 0, 1);
    nsa_reference(&P, NULL);
    host_cache hc;
    host_cache_fill(&hc, &P);
    nsa_out r;
    nsa_out_alloc(&r, &P);
    assert_ok(decode_nsa_cpu(&c.sh, &c.p, P.q, hc.k, hc.v, hc.kc, hc.vc, hc.len, P.g_cmp, P.g_slc, P.g_swa, r.o,
                             r.lse_cmp, r.lse_slc, r.lse_swa, r.lists),
              P.ctx);
    check_nsa_outputs(&P, &r, NULL, 0);
    nsa_out_free(&r);
    host_cache_free(&hc);
    dec_free(&P);
}

/* The lengths the issue names: 1, 2, l - 1, l, l + d - 1, multiples of none of d, l, l', and long ones. */
ATTN_TEST(c_part, nsa_decode_lengths)
{
    const attn_nsa_params lin = with_nw(paper_linear(), 5, 100); /* l = 32, d = 16, l' = 64 */
    const attn_nsa_params pool = with_nw(attn_nsa_mean_pool(), 6, 200); /* l = d = l' = 64 */
    const dec_case cases[] = {
        {dshape(5, 200, 4, 2, 16), lin, {1, 2, 31, 32, 47}, GATES_RANDOM, 0, 0},
        {dshape(4, 900, 4, 2, 16), lin, {48, 63, 333, 900}, GATES_RANDOM, 0, 0},
        {dshape(5, 700, 4, 1, 32), pool, {1, 63, 64, 65, 127}, GATES_RANDOM, 0, 0},
        {dshape(3, 1500, 8, 2, 16), pool, {1500, 1111, 640}, GATES_RANDOM, 0, 0},
        {dshape(2, 1200, 2, 2, 16), params(8, 4, 16, 5, 40, ATTN_NSA_MEAN, 1), {1199, 389}, GATES_ONE, 0, 0},
        {dshape(2, 500, 4, 1, 16), params(4, 2, 8, 3, 16, ATTN_NSA_MEAN, 1), {500, 3}, GATES_RANDOM, 0, 0}, /* n = 3 */
        {dshape(2, 300, 4, 2, 16), params(32, 16, 16, 4, 24, ATTN_NSA_LINEAR, 1), {300, 45}, GATES_RANDOM, 0, 0}, /* l > l' */
        {dshape(2, 600, 4, 2, 64), with_nw(pool, 4, 128), {600, 321}, GATES_RANDOM, 1, 0}, /* scores near 120 */
        {dshape(3, 400, 4, 2, 128), with_nw(lin, 4, 64), {0, 400, 95}, GATES_RANDOM, 0, 0}, /* an empty slot, D = 128 */
    };
    for (int c = 0; c < (int)(sizeof cases / sizeof cases[0]); ++c) check_nsa_cpu(cases[c]);
    dec_case scaled = {dshape(2, 260, 4, 2, 32), with_nw(lin, 5, 64), {260, 100}, GATES_RANDOM, 0, 0};
    scaled.sh.scale = 0.3f;
    check_nsa_cpu(scaled);
}

ATTN_TEST(c_part, nsa_per_head_lists)
{
    check_nsa_cpu((dec_case){dshape(3, 500, 8, 2, 16), per_head(with_nw(paper_linear(), 6, 64)), {500, 250, 33},
                             GATES_RANDOM, 0, 0});
    check_nsa_cpu((dec_case){dshape(2, 800, 16, 1, 16), per_head(with_nw(attn_nsa_mean_pool(), 4, 100)), {800, 700},
                             GATES_RANDOM, 0, 0});
    check_nsa_cpu((dec_case){dshape(2, 300, 4, 4, 32), per_head(with_nw(attn_nsa_mean_pool(), 4, 100)), {299, 129},
                             GATES_ONE, 0, 0});
}

/* One branch at a time: a gate on the wrong branch, or a branch left out, fails by name. */
ATTN_TEST(c_part, nsa_gates)
{
    const attn_nsa_params p = with_nw(paper_linear(), 5, 80);
    const gate_kind kinds[] = {GATES_CMP, GATES_SLC, GATES_SWA, GATES_ONE};
    for (int g = 0; g < 4; ++g)
        check_nsa_cpu((dec_case){dshape(2, 450, 4, 2, 16), p, {450, 190}, kinds[g], 0, 0});
}

/* Equal keys: whole blocks tie exactly, and the lower indices must win. */
static const dec_case kTieCases[] = {
    {{2, 1, 1200, 4, 2, 64, 0.0f, 1}, {64, 64, 64, 6, 100, ATTN_NSA_MEAN, 1}, {1200, 900}, GATES_RANDOM, 0, 1},
    {{1, 1, 1200, 4, 2, 64, 0.0f, 1}, {32, 16, 64, 6, 100, ATTN_NSA_LINEAR, 1}, {1100}, GATES_RANDOM, 0, 1},
    {{2, 1, 900, 2, 2, 64, 0.0f, 1}, {32, 16, 64, 5, 64, ATTN_NSA_MEAN, 0}, {900, 555}, GATES_RANDOM, 0, 1},
    {{1, 1, 1100, 16, 1, 128, 0.0f, 1}, {64, 64, 64, 8, 128, ATTN_NSA_MEAN, 1}, {1100}, GATES_RANDOM, 0, 1},
};
#define N_TIE_CASES ((int)(sizeof kTieCases / sizeof kTieCases[0]))

ATTN_TEST(c_part, nsa_exact_ties)
{
    for (int c = 0; c < N_TIE_CASES; ++c) check_nsa_cpu(kTieCases[c]);
}

/* The decode against the LAST ROW OF THE PREFILL itself: the oracle with M = N over the whole sequence (every
 * position's query; the last one is the decode's). */
static void check_prefill_last_row(dec_case c, int cuda);

ATTN_TEST(c_part, nsa_equals_prefill)
{
    const dec_case cases[] = {
        {dshape(1, 150, 4, 2, 16), with_nw(paper_linear(), 4, 40), {150}, GATES_RANDOM, 0, 0},
        {dshape(1, 200, 4, 1, 16), params(8, 4, 16, 4, 24, ATTN_NSA_MEAN, 0), {137}, GATES_RANDOM, 0, 0},
        {dshape(1, 40, 2, 1, 16), params(4, 2, 4, 4, 10, ATTN_NSA_MEAN, 1), {20}, GATES_ONE, 0, 0}, /* lesson 10's example */
    };
    for (int c = 0; c < 3; ++c) check_prefill_last_row(cases[c], 0);
}

/* ---------------------------------------------------------------- sequences that grow */

/* A tiny "model" for the generation loop: the next token's q, k, v are fixed random maps of the step's output
 * (every head's o, [H*D]) plus an embedding of the step number, so that each step depends on the last. */
typedef struct {
    int H, G, D;
    float *w_q, *w_k, *w_v; /* [H*D, H*D], [H*D, G*D], [H*D, G*D] */
    float *emb;             /* [16, H*D] */
} tiny_model;

static void tiny_init(tiny_model *m, int H, int G, int D, attn_rng *rng)
{
    m->H = H, m->G = G, m->D = D;
    const size_t hd = (size_t)H * D, gd = (size_t)G * D;
    m->w_q = random_f32(hd * hd, hd, 1.0f / sqrtf((float)hd), rng);
    m->w_k = random_f32(hd * gd, gd, 1.0f / sqrtf((float)hd), rng);
    m->w_v = random_f32(hd * gd, gd, 1.0f / sqrtf((float)hd), rng);
    m->emb = random_f32(16 * hd, hd, 1.0f, rng);
}

static void tiny_free(tiny_model *m) { free(m->w_q), free(m->w_k), free(m->w_v), free(m->emb); }

/* q [H*D], k, v [G*D] of the next token from out [H*D] at step `step`. */
static void tiny_next(const tiny_model *m, const float *out, int step, float *q, float *k, float *v)
{
    const size_t hd = (size_t)m->H * m->D, gd = (size_t)m->G * m->D;
    const float *e = m->emb + (size_t)(step % 16) * hd;
    for (size_t j = 0; j < hd; ++j) {
        double acc = 0.0;
        for (size_t i = 0; i < hd; ++i) acc += (double)(out[i] + e[i]) * m->w_q[i * hd + j];
        q[j] = (float)tanh(acc);
    }
    for (size_t j = 0; j < gd; ++j) {
        double ak = 0.0, av = 0.0;
        for (size_t i = 0; i < hd; ++i) {
            ak += (double)(out[i] + e[i]) * m->w_k[i * gd + j];
            av += (double)(out[i] + e[i]) * m->w_v[i * gd + j];
        }
        k[j] = (float)tanh(ak), v[j] = (float)tanh(av);
    }
}

/* Append rows len[b] .. len[b] + counts[b] - 1 of the truth P (its k, v) to the code's cache, and grow the
 * truth's lengths. */
static void append_truth_cpu(code_cache *cc, dec_problem *P, const int *counts, int M)
{
    const attn_shape *s = &P->c.sh;
    const size_t row = (size_t)s->G * s->D;
    attn_shape ash = cc->sh;
    ash.M = M;
    float *k_new = attn_alloc_f32((size_t)s->B * M * row), *v_new = attn_alloc_f32((size_t)s->B * M * row);
    int32_t *cnt = attn_alloc_i32(s->B);
    cr_assert(k_new && v_new && cnt, "out of host memory");
    attn_poison(k_new, (size_t)s->B * M * row * 4), attn_poison(v_new, (size_t)s->B * M * row * 4);
    for (int b = 0; b < s->B; ++b) {
        const size_t at = ((size_t)b * s->N + P->c.len[b]) * row;
        memcpy(k_new + (size_t)b * M * row, P->k + at, (size_t)counts[b] * row * 4);
        memcpy(v_new + (size_t)b * M * row, P->v + at, (size_t)counts[b] * row * 4);
        cnt[b] = counts[b];
    }
    assert_ok(kv_cache_append_cpu(&ash, P->nsa ? &P->c.p : NULL, k_new, v_new, cnt, P->w_k, P->w_v, P->pos, cc->k,
                                  cc->v, cc->kc, cc->vc, cc->len, cc->cmp_len, cc->problem),
              P->ctx);
    for (int b = 0; b < s->B; ++b) P->c.len[b] += counts[b];
    free(k_new), free(v_new), free(cnt);
}

/* Both decodes on the code's own cache, checked against the truth. */
static void decode_step_cpu(dec_problem *P, const code_cache *cc, float *o_nsa, const char *when)
{
    const attn_shape *s = &P->c.sh;
    char saved[800];
    memcpy(saved, P->ctx, sizeof saved);
    snprintf(P->ctx, sizeof P->ctx, "%.120s, %.670s", when, saved); /* the step first; the case's context after */
    check_cache(cc, P->k, P->v, P->c.len, ATTN_TOL_F32, when, P->ctx);
    /* dense */
    dense_reference(P);
    const size_t nq = (size_t)s->B * s->H * s->D, nl = (size_t)s->B * s->H;
    float *o = attn_alloc_f32(nq), *lse = attn_alloc_f32(nl);
    cr_assert(o && lse, "out of host memory");
    attn_poison(o, nq * 4), attn_poison(lse, nl * 4);
    assert_ok(decode_dense_cpu(s, 24, P->q, cc->k, cc->v, cc->len, o, lse), P->ctx);
    expect_rows("o (decode_dense_cpu)", s, P->c.len, o, NULL, P->o_dense, s->D, ATTN_TOL_F32, "keys 0 .. t", P->ctx);
    free(o), free(lse);
    /* NSA */
    nsa_reference(P, NULL);
    nsa_out r;
    nsa_out_alloc(&r, P);
    assert_ok(decode_nsa_cpu(s, &P->c.p, P->q, cc->k, cc->v, cc->kc, cc->vc, cc->len, P->g_cmp, P->g_slc, P->g_swa, r.o,
                             r.lse_cmp, r.lse_slc, r.lse_swa, r.lists),
              P->ctx);
    check_nsa_outputs(P, &r, NULL, 0);
    if (o_nsa) memcpy(o_nsa, r.o, nq * 4);
    nsa_out_free(&r);
    memcpy(P->ctx, saved, sizeof saved);
}

/* A batch grown token by token from prompts of different lengths: after every append, the cache against the
 * truth and both decodes against the oracle at the new length. */
static void grow_cpu(dec_case c, const int *prompt, int steps)
{
    dec_problem P;
    dec_init(&P, c, 0, 1);
    const attn_shape *s = &c.sh;
    int zero[MAX_B] = {0}, ones[MAX_B], most = 1;
    for (int b = 0; b < s->B; ++b) ones[b] = 1, most = prompt[b] > most ? prompt[b] : most, P.c.len[b] = 0;
    code_cache cc;
    code_cache_init(&cc, *s, &c.p, P.w_k, P.w_v, P.pos, P.ctx);
    (void)zero;
    append_truth_cpu(&cc, &P, prompt, most); /* the prompts, in one append */
    attn_rng rng;
    attn_rng_seed(&rng, P.seed + 77);
    for (int step = 0; step <= steps; ++step) {
        if (step > 0) append_truth_cpu(&cc, &P, ones, 1);
        attn_fill_random(P.q, (size_t)s->B * s->H * s->D, s->D, 1.0f, &rng); /* the new token's query */
        char when[120];
        snprintf(when, sizeof when, "step %d (lengths %d, %d, ...)", step, P.c.len[0], s->B > 1 ? P.c.len[1] : 0);
        decode_step_cpu(&P, &cc, NULL, when);
    }
    code_cache_free(&cc);
    dec_free(&P);
}

ATTN_TEST(c_part, step_by_step)
{
    const int prompt_a[2] = {0, 5}, prompt_b[2] = {29, 1};
    grow_cpu((dec_case){dshape(2, 140, 4, 2, 16), params(8, 4, 8, 4, 20, ATTN_NSA_MEAN, 1), {0}, GATES_RANDOM, 0, 0},
             prompt_a, 120);
    grow_cpu((dec_case){dshape(2, 120, 4, 2, 16), params(8, 4, 16, 4, 20, ATTN_NSA_LINEAR, 0), {0}, GATES_RANDOM, 0, 0},
             prompt_b, 80);
}

/* 200 steps of a tiny model: each step appends the token the previous step's output made and decodes it. */
ATTN_TEST(c_part, generation_loop_200_steps)
{
    dec_case c = {dshape(2, 250, 4, 2, 16), params(8, 4, 16, 4, 24, ATTN_NSA_MEAN, 1), {0}, GATES_RANDOM, 0, 0};
    dec_problem P;
    dec_init(&P, c, 0, 1);
    const attn_shape *s = &c.sh;
    const size_t hd = (size_t)s->H * s->D, gd = (size_t)s->G * s->D;
    attn_rng rng;
    attn_rng_seed(&rng, P.seed + 5);
    tiny_model m;
    tiny_init(&m, s->H, s->G, s->D, &rng);
    code_cache cc;
    code_cache_init(&cc, *s, &c.p, NULL, NULL, NULL, P.ctx);
    const int prompt[2] = {37, 5};
    P.c.len[0] = P.c.len[1] = 0;
    append_truth_cpu(&cc, &P, prompt, 37);
    float *o = attn_alloc_f32((size_t)s->B * hd);
    cr_assert(o, "out of host memory");
    int ones[2] = {1, 1};
    for (int step = 0; step < 200; ++step) {
        char when[80];
        snprintf(when, sizeof when, "generation step %d of 200", step);
        decode_step_cpu(&P, &cc, o, when);
        for (int b = 0; b < s->B; ++b) { /* the next token from this step's output */
            const size_t at = ((size_t)b * s->N + P.c.len[b]) * gd;
            tiny_next(&m, o + (size_t)b * hd, step, P.q + (size_t)b * hd, P.k + at, P.v + at);
        }
        append_truth_cpu(&cc, &P, ones, 1);
    }
    free(o);
    tiny_free(&m);
    code_cache_free(&cc);
    dec_free(&P);
}

/* ================================================================ CUDA part: device buffers */

static int32_t *upload_i32(const int32_t *x, size_t n, const char *ctx)
{
    int32_t *d = NULL;
    assert_ok(attn_dalloc((void **)&d, (n ? n : 1) * 4), ctx);
    assert_ok(attn_h2d(d, x, n * 4), ctx);
    return d;
}

/* A problem on the device: its caches (from a host_cache, in bf16), q, the gates, poisoned outputs and both
 * workspaces. */
typedef struct {
    uint16_t *k, *v, *kc, *vc, *q, *o, *w_k, *w_v, *pos;
    float *g_cmp, *g_slc, *g_swa, *lse, *lse_cmp, *lse_slc, *lse_swa;
    int32_t *len, *cmp_len, *lists, *problem;
    void *ws_dense, *ws_nsa;
    size_t ws_dense_bytes, ws_nsa_bytes, nq, nl, ni, nkv, ncmp;
} dev_dec;

/* q, the gates, poisoned outputs and both workspaces (no caches). */
static void dev_dec_outputs(dev_dec *d, const dec_problem *P)
{
    memset(d, 0, sizeof *d);
    const attn_shape *s = &P->c.sh;
    d->nq = (size_t)s->B * s->H * s->D, d->nl = (size_t)s->B * s->H, d->ni = P->nsa ? (size_t)s->B * P->L * P->c.p.n : 1;
    d->q = upload_bf16(P->q, d->nq, P->ctx);
    d->g_cmp = upload_f32(P->g_cmp, d->nl, P->ctx), d->g_slc = upload_f32(P->g_slc, d->nl, P->ctx);
    d->g_swa = upload_f32(P->g_swa, d->nl, P->ctx);
    assert_ok(attn_dalloc((void **)&d->o, d->nq * 2), P->ctx);
    assert_ok(attn_dalloc((void **)&d->lse, d->nl * 4), P->ctx);
    assert_ok(attn_dalloc((void **)&d->lse_cmp, d->nl * 4), P->ctx);
    assert_ok(attn_dalloc((void **)&d->lse_slc, d->nl * 4), P->ctx);
    assert_ok(attn_dalloc((void **)&d->lse_swa, d->nl * 4), P->ctx);
    assert_ok(attn_dalloc((void **)&d->lists, d->ni * 4), P->ctx);
    assert_ok(attn_dalloc((void **)&d->problem, 8), P->ctx);
    d->ws_dense_bytes = decode_dense_workspace_bytes(s);
    cr_assert(d->ws_dense_bytes > 0, "decode_dense_workspace_bytes returned 0 for a valid problem [%s]", P->ctx);
    assert_ok(attn_dalloc(&d->ws_dense, d->ws_dense_bytes), P->ctx);
    if (P->nsa) {
        d->ws_nsa_bytes = decode_nsa_workspace_bytes(s, &P->c.p);
        cr_assert(d->ws_nsa_bytes > 0, "decode_nsa_workspace_bytes returned 0 for a valid problem [%s]", P->ctx);
        assert_ok(attn_dalloc(&d->ws_nsa, d->ws_nsa_bytes), P->ctx);
    }
}

/* The same, and the caches of a host_cache (in bf16, the poison kept). */
static void dev_dec_init(dev_dec *d, const dec_problem *P, const host_cache *hc)
{
    dev_dec_outputs(d, P);
    d->nkv = hc->nkv, d->ncmp = hc->ncmp;
    d->k = upload_bf16(hc->k, hc->nkv, P->ctx), d->v = upload_bf16(hc->v, hc->nkv, P->ctx);
    d->kc = upload_bf16(hc->kc, hc->ncmp, P->ctx), d->vc = upload_bf16(hc->vc, hc->ncmp, P->ctx);
    d->len = upload_i32(hc->len, P->c.sh.B, P->ctx), d->cmp_len = upload_i32(hc->cmp_len, P->c.sh.B, P->ctx);
}

static void dev_dec_free(dev_dec *d)
{
    void *all[] = {d->k, d->v, d->kc, d->vc, d->q, d->o, d->w_k, d->w_v, d->pos, d->g_cmp, d->g_slc, d->g_swa, d->lse,
                   d->lse_cmp, d->lse_slc, d->lse_swa, d->len, d->cmp_len, d->lists, d->problem, d->ws_dense, d->ws_nsa};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; ++i) attn_dfree(all[i]);
    memset(d, 0, sizeof *d);
}

static int dev_poison_outputs(dev_dec *d, cudaStream_t stream)
{
    int st = attn_cuda_status(cudaMemsetAsync(d->o, 0xFF, d->nq * 2, stream), "poison o");
    float *l[] = {d->lse, d->lse_cmp, d->lse_slc, d->lse_swa};
    for (int i = 0; i < 4 && !st; ++i) st = attn_cuda_status(cudaMemsetAsync(l[i], 0xFF, d->nl * 4, stream), "poison lse");
    if (!st) st = attn_cuda_status(cudaMemsetAsync(d->lists, INDEX_POISON_BYTE, d->ni * 4, stream), "poison lists");
    return st;
}

static int dev_run_dense_lse(const dec_problem *P, dev_dec *d, int with_lse, cudaStream_t stream)
{
    const attn_shape sh = P->c.sh; /* a copy: the check's shape is not the code's to change */
    return decode_dense_cuda(&sh, d->q, d->k, d->v, d->len, d->o, with_lse ? d->lse : NULL, d->ws_dense,
                             d->ws_dense_bytes, stream);
}

static int dev_run_dense(const dec_problem *P, dev_dec *d, cudaStream_t stream) { return dev_run_dense_lse(P, d, 1, stream); }

static int dev_run_nsa(const dec_problem *P, dev_dec *d, int with_outputs, cudaStream_t stream)
{
    const attn_shape sh = P->c.sh;
    const attn_nsa_params p = P->c.p;
    return decode_nsa_cuda(&sh, &p, d->q, d->k, d->v, d->kc, d->vc, d->len, d->g_cmp, d->g_slc, d->g_swa, d->o,
                           with_outputs ? d->lse_cmp : NULL, with_outputs ? d->lse_slc : NULL,
                           with_outputs ? d->lse_swa : NULL, with_outputs ? d->lists : NULL, d->ws_nsa, d->ws_nsa_bytes,
                           stream);
}

/* The NSA outputs to the host (o in bf16 into o16). */
static void dev_download_nsa(const dev_dec *d, nsa_out *r, uint16_t *o16, const char *ctx)
{
    assert_ok(attn_d2h(o16, d->o, d->nq * 2), ctx);
    assert_ok(attn_d2h(r->lse_cmp, d->lse_cmp, d->nl * 4), ctx);
    assert_ok(attn_d2h(r->lse_slc, d->lse_slc, d->nl * 4), ctx);
    assert_ok(attn_d2h(r->lse_swa, d->lse_swa, d->nl * 4), ctx);
    assert_ok(attn_d2h(r->lists, d->lists, d->ni * 4), ctx);
}

/* ================================================================ CUDA part: decodes on caches the test fills */

/* with_lse = 0: lse NULL (optional): o alone is checked. */
static void check_dense_cuda_lse(dec_case c, int with_lse)
{
    dec_problem P;
    dec_init(&P, c, 1, 0);
    if (!with_lse) {
        const size_t n = strlen(P.ctx);
        snprintf(P.ctx + n, sizeof P.ctx - n, ", lse NULL");
    }
    dense_reference(&P);
    host_cache hc;
    host_cache_fill(&hc, &P);
    dev_dec d;
    dev_dec_init(&d, &P, &hc);
    assert_ok(dev_poison_outputs(&d, 0), P.ctx);
    assert_ok(dev_run_dense_lse(&P, &d, with_lse, 0), P.ctx);
    assert_ok(attn_dsync(), P.ctx);
    uint16_t *o = attn_alloc_bf16(d.nq);
    float *lse = download_f32(d.lse, d.nl, P.ctx);
    cr_assert(o, "out of host memory");
    assert_ok(attn_d2h(o, d.o, d.nq * 2), P.ctx);
    if (with_lse)
        expect_rows("lse (decode_dense_cuda)", &c.sh, c.len, lse, NULL, P.lse_dense, 1, kTolLseCuda,
                    "the splits' partials combined by their lse: m + log sum_u exp(lse_u - m)", P.ctx);
    expect_rows("o (decode_dense_cuda)", &c.sh, c.len, NULL, o, P.o_dense, c.sh.D, ATTN_TOL_BF16,
                "every key 0 .. t of the sequence, each chunk once (the last chunk may be partial), the partials weighted "
                "by exp(lse_u - max lse)", P.ctx);
    free(o), free(lse);
    dev_dec_free(&d);
    host_cache_free(&hc);
    dec_free(&P);
}

static void check_dense_cuda(dec_case c) { check_dense_cuda_lse(c, 1); }

ATTN_TEST(cuda_part, dense_decode)
{
    require_gpu();
    const dec_case cases[] = {
        {dshape(1, 1, 2, 1, 64), {0}, {1}, 0, 0, 0},
        {dshape(4, 300, 8, 2, 64), {0}, {1, 2, 37, 300}, 0, 0, 0},
        {dshape(3, 257, 4, 4, 128), {0}, {256, 257, 129}, 0, 0, 0},
        {dshape(2, 500, 16, 1, 128), {0}, {499, 250}, 0, 0, 0},          /* MQA: 16 heads in one tile */
        {dshape(2, 300, 64, 2, 64), {0}, {300, 111}, 0, 0, 0},           /* H/G = 32: two row tiles */
        {dshape(3, 200, 6, 3, 64), {0}, {0, 150, 200}, 0, 0, 0},         /* an empty slot, H/G = 2 */
        {dshape(16, 130, 8, 2, 128), {0}, {130, 1, 2, 3, 64, 65, 127, 128, 129, 7, 99, 100, 0, 50, 77, 130}, 0, 0, 0},
        {dshape(2, 320, 8, 2, 64), {0}, {300, 77}, 0, 1, 0},             /* scores near 120 */
    };
    for (int c = 0; c < (int)(sizeof cases / sizeof cases[0]); ++c) check_dense_cuda(cases[c]);
    dec_case scaled = {dshape(2, 100, 4, 2, 64), {0}, {100, 41}, 0, 0, 0};
    scaled.sh.scale = 0.3f;
    check_dense_cuda(scaled);
    /* lse NULL (it is optional), with one split and with several */
    check_dense_cuda_lse((dec_case){dshape(2, 200, 8, 2, 64), {0}, {200, 13}, 0, 0, 0}, 0);
    check_dense_cuda_lse((dec_case){dshape(2, 3000, 8, 2, 128), {0}, {2999, 0}, 0, 0, 0}, 0);
}

/* Shapes whose cache the kernel cuts into many chunks (few kv heads, long caches), lengths that end inside a
 * chunk, and long caches. */
ATTN_TEST(cuda_part, dense_decode_splits)
{
    require_gpu();
    const dec_case cases[] = {
        {dshape(1, 3000, 4, 2, 128), {0}, {2999}, 0, 0, 0},
        {dshape(2, 3000, 8, 2, 64), {0}, {2999, 257}, 0, 0, 0},
        {dshape(3, 5000, 4, 1, 64), {0}, {5000, 4097, 1025}, 0, 0, 0},
        {dshape(1, 20000, 16, 1, 128), {0}, {19999}, 0, 0, 0},
    };
    for (int c = 0; c < (int)(sizeof cases / sizeof cases[0]); ++c) check_dense_cuda(cases[c]);
}

/* The caches filled by the test, decode_nsa_cuda with every output, the oracle on its lists. With
 * also_without_outputs, a second call with every optional output NULL (lse_cmp, lse_slc, lse_swa,
 * block_indices): its o against the same oracle. */
static void check_nsa_cuda_ex(dec_case c, int also_without_outputs)
{
    dec_problem P;
    dec_init(&P, c, 1, 1);
    nsa_reference(&P, NULL);
    host_cache hc;
    host_cache_fill(&hc, &P);
    dev_dec d;
    dev_dec_init(&d, &P, &hc);
    assert_ok(dev_poison_outputs(&d, 0), P.ctx);
    assert_ok(dev_run_nsa(&P, &d, 1, 0), P.ctx);
    assert_ok(attn_dsync(), P.ctx);
    nsa_out r;
    nsa_out_alloc(&r, &P);
    uint16_t *o16 = attn_alloc_bf16(d.nq);
    cr_assert(o16, "out of host memory");
    dev_download_nsa(&d, &r, o16, P.ctx);
    check_nsa_outputs(&P, &r, o16, 1);
    if (also_without_outputs) { /* the oracle is now on the lists of the first call, which the second must pick too */
        char ctx[900];
        snprintf(ctx, sizeof ctx, "the second call, with lse_cmp, lse_slc, lse_swa and block_indices NULL, %s", P.ctx);
        assert_ok(dev_poison_outputs(&d, 0), ctx);
        assert_ok(dev_run_nsa(&P, &d, 0, 0), ctx);
        assert_ok(attn_dsync(), ctx);
        dev_download_nsa(&d, &r, o16, ctx);
        expect_rows("o (optional outputs NULL)", &c.sh, c.len, NULL, o16, P.o, c.sh.D, ATTN_TOL_BF16, o_hint(c.gates), ctx);
    }
    free(o16);
    nsa_out_free(&r);
    dev_dec_free(&d);
    host_cache_free(&hc);
    dec_free(&P);
}

static void check_nsa_cuda(dec_case c) { check_nsa_cuda_ex(c, 0); }

ATTN_TEST(cuda_part, nsa_decode_lengths)
{
    require_gpu();
    const attn_nsa_params lin = with_nw(paper_linear(), 5, 100), pool = with_nw(attn_nsa_mean_pool(), 6, 200);
    const dec_case cases[] = {
        {dshape(5, 200, 4, 2, 64), lin, {1, 2, 31, 32, 47}, GATES_RANDOM, 0, 0},
        {dshape(4, 900, 4, 2, 128), lin, {48, 63, 333, 900}, GATES_RANDOM, 0, 0},
        {dshape(5, 700, 4, 1, 64), pool, {1, 63, 64, 65, 127}, GATES_RANDOM, 0, 0},
        {dshape(3, 1500, 16, 1, 128), pool, {1500, 1111, 640}, GATES_RANDOM, 0, 0}, /* H/G = 16 */
        {dshape(2, 1200, 2, 2, 64), params(8, 4, 16, 5, 40, ATTN_NSA_MEAN, 1), {1199, 389}, GATES_ONE, 0, 0},
        {dshape(2, 500, 4, 1, 64), params(4, 2, 8, 3, 16, ATTN_NSA_MEAN, 1), {500, 3}, GATES_RANDOM, 0, 0},
        {dshape(2, 300, 4, 2, 64), params(32, 16, 16, 4, 24, ATTN_NSA_LINEAR, 1), {300, 45}, GATES_RANDOM, 0, 0},
        {dshape(3, 400, 8, 2, 128), with_nw(lin, 4, 64), {0, 400, 95}, GATES_RANDOM, 0, 0},
        {dshape(2, 5000, 64, 4, 128), attn_nsa_paper_defaults(), {5000, 4321}, GATES_RANDOM, 0, 0}, /* the bar's heads */
    };
    for (int c = 0; c < (int)(sizeof cases / sizeof cases[0]); ++c) check_nsa_cuda(cases[c]);
    dec_case scaled = {dshape(2, 260, 8, 2, 64), with_nw(lin, 5, 64), {260, 100}, GATES_RANDOM, 0, 0};
    scaled.sh.scale = 0.3f;
    check_nsa_cuda(scaled);
}

ATTN_TEST(cuda_part, nsa_per_head_lists)
{
    require_gpu();
    check_nsa_cuda((dec_case){dshape(3, 500, 8, 2, 64), per_head(with_nw(paper_linear(), 6, 64)), {500, 250, 33},
                              GATES_RANDOM, 0, 0});
    check_nsa_cuda((dec_case){dshape(2, 800, 16, 1, 128), per_head(with_nw(attn_nsa_mean_pool(), 4, 100)), {800, 700},
                              GATES_RANDOM, 0, 0});
}

ATTN_TEST(cuda_part, nsa_gates)
{
    require_gpu();
    const attn_nsa_params p = with_nw(paper_linear(), 5, 80);
    const gate_kind kinds[] = {GATES_CMP, GATES_SLC, GATES_SWA, GATES_ONE};
    for (int g = 0; g < 4; ++g) check_nsa_cuda((dec_case){dshape(2, 450, 8, 2, 64), p, {450, 190}, kinds[g], 0, 0});
}

ATTN_TEST(cuda_part, nsa_exact_ties)
{
    require_gpu();
    for (int c = 0; c < N_TIE_CASES; ++c) check_nsa_cuda(kTieCases[c]);
}

/* ---------------------------------------------------------------- the last row of the prefill */

static void check_prefill_last_row(dec_case c, int cuda)
{
    dec_problem P;
    dec_init(&P, c, cuda, 1);
    const attn_shape *s = &c.sh;
    const int L = c.len[0], H = s->H, D = s->D, n = c.p.n, Ls = P.L;
    cr_assert(s->B == 1 && L > 0, "prefill cases: one sequence");
    /* every position's query and gates; the last position's are the decode's */
    attn_rng rng;
    attn_rng_seed(&rng, P.seed + 3);
    float *q_all = random_f32((size_t)L * H * D, D, 1.0f, &rng);
    if (cuda) round_to_bf16(q_all, (size_t)L * H * D);
    memcpy(q_all + (size_t)(L - 1) * H * D, P.q, (size_t)H * D * 4);
    float *g_all[3];
    const float *g_last[3] = {P.g_cmp, P.g_slc, P.g_swa};
    for (int x = 0; x < 3; ++x) {
        g_all[x] = gates_of(c.gates, x, (size_t)L * H, &rng);
        memcpy(g_all[x] + (size_t)(L - 1) * H, g_last[x], (size_t)H * 4);
    }
    const attn_shape pre = attn_make_shape(1, L, L, H, s->G, D, 1);
    const long NC = attn_nsa_num_cmp(L, &c.p), NB = attn_nsa_num_blocks(L, &c.p);
    double *o = attn_alloc_f64((size_t)L * H * D), *kc = attn_alloc_f64(NC ? (size_t)NC * s->G * D : 1);
    double *vc = attn_alloc_f64(NC ? (size_t)NC * s->G * D : 1), *scores = attn_alloc_f64((size_t)L * Ls * NB);
    double *lse[3] = {attn_alloc_f64((size_t)H * L), attn_alloc_f64((size_t)H * L), attn_alloc_f64((size_t)H * L)};
    int32_t *lists = attn_alloc_i32((size_t)L * Ls * n);
    cr_assert(o && kc && vc && scores && lists && lse[0] && lse[1] && lse[2], "out of host memory");
    attn_oracle_nsa_in in = {pre, c.p, q_all, P.k, P.v, P.w_k, P.w_v, P.pos, g_all[0], g_all[1], g_all[2], NULL, cuda};
    attn_oracle_nsa_out out = {o, NULL, NULL, NULL, lse[0], lse[1], lse[2], kc, vc, scores, lists};
    assert_ok(attn_oracle_nsa_forward(&in, &out), P.ctx);
    /* the caches: the keys, and the prefill's own compressed tokens */
    cr_assert(P.nc_max >= NC, "prefill case: L_max >= length");
    P.kc = attn_alloc_f64((size_t)(P.nc_max ? P.nc_max : 1) * s->G * D), P.vc = attn_alloc_f64((size_t)(P.nc_max ? P.nc_max : 1) * s->G * D);
    memcpy(P.kc, kc, (size_t)NC * s->G * D * 8), memcpy(P.vc, vc, (size_t)NC * s->G * D * 8);
    host_cache hc;
    host_cache_fill(&hc, &P);
    nsa_out r;
    nsa_out_alloc(&r, &P);
    uint16_t *o16 = NULL;
    char ctx[1000];
    snprintf(ctx, sizeof ctx, "the decode at t = %d against row %d of the PREFILL (lesson 10's forward over all %d "
             "positions), %s", L - 1, L - 1, L, P.ctx);
    if (!cuda) {
        assert_ok(decode_nsa_cpu(s, &c.p, P.q, hc.k, hc.v, hc.kc, hc.vc, hc.len, P.g_cmp, P.g_slc, P.g_swa, r.o,
                                 r.lse_cmp, r.lse_slc, r.lse_swa, r.lists),
                  ctx);
    } else {
        dev_dec d;
        dev_dec_init(&d, &P, &hc);
        assert_ok(dev_poison_outputs(&d, 0), ctx);
        assert_ok(dev_run_nsa(&P, &d, 1, 0), ctx);
        assert_ok(attn_dsync(), ctx);
        o16 = attn_alloc_bf16(d.nq);
        dev_download_nsa(&d, &r, o16, ctx);
        dev_dec_free(&d);
    }
    /* the lists against the prefill's last row, then the prefill again on them */
    const size_t last = (size_t)(L - 1);
    for (int list = 0; list < Ls; ++list) {
        char why[400];
        judge_list(why, sizeof why, &c.p, L - 1, NB, scores + (last * Ls + list) * NB, r.lists + (size_t)list * n,
                   lists + (last * Ls + list) * n, 0, cuda ? TIE_RTOL_CUDA : TIE_RTOL_C);
        cr_assert(!why[0], "list %d: %s [%s]", list, why, ctx);
    }
    memcpy(lists + last * Ls * n, r.lists, (size_t)Ls * n * 4);
    in.lists = lists;
    assert_ok(attn_oracle_nsa_forward(&in, &out), ctx);
    double *o_last = attn_alloc_f64((size_t)H * D), *l_last[3];
    for (int x = 0; x < 3; ++x) {
        l_last[x] = attn_alloc_f64(H);
        for (int h = 0; h < H; ++h) l_last[x][h] = lse[x][(size_t)h * L + last]; /* [B, H, M] */
    }
    memcpy(o_last, o + last * H * D, (size_t)H * D * 8);
    const attn_tol tol = cuda ? kTolLseCuda : ATTN_TOL_F32;
    expect_rows("lse_cmp", s, c.len, r.lse_cmp, NULL, l_last[0], 1, tol, NULL, ctx);
    expect_rows("lse_slc", s, c.len, r.lse_slc, NULL, l_last[1], 1, tol, NULL, ctx);
    expect_rows("lse_swa", s, c.len, r.lse_swa, NULL, l_last[2], 1, tol, NULL, ctx);
    expect_rows("o", s, c.len, cuda ? NULL : r.o, o16, o_last, D, cuda ? ATTN_TOL_BF16 : ATTN_TOL_F32,
                "the decode of the newest token is the last row of the prefill of the same sequence", ctx);
    free(o16), free(o_last), free(q_all), free(o), free(kc), free(vc), free(scores), free(lists);
    for (int x = 0; x < 3; ++x) free(g_all[x]), free(lse[x]), free(l_last[x]);
    nsa_out_free(&r);
    host_cache_free(&hc);
    dec_free(&P);
}

ATTN_TEST(cuda_part, nsa_equals_prefill)
{
    require_gpu();
    const dec_case cases[] = {
        {dshape(1, 150, 8, 2, 64), with_nw(paper_linear(), 4, 40), {150}, GATES_RANDOM, 0, 0},
        {dshape(1, 200, 4, 1, 128), params(8, 4, 16, 4, 24, ATTN_NSA_MEAN, 0), {137}, GATES_RANDOM, 0, 0},
    };
    for (int c = 0; c < 2; ++c) check_prefill_last_row(cases[c], 1);
}

static void check_dense_prefill_cuda(dec_case c)
{
    dec_problem P;
    dec_init(&P, c, 1, 0);
    const attn_shape *s = &c.sh;
    const size_t nq = (size_t)s->B * s->H * s->D, nl = (size_t)s->B * s->H;
    host_cache hc;
    host_cache_fill(&hc, &P);
    double *o_ref = attn_alloc_f64(nq), *lse_ref = attn_alloc_f64(nl);
    uint16_t *o = attn_alloc_bf16(nq);
    cr_assert(o_ref && lse_ref && o, "out of host memory [%s]", P.ctx);
    dense_prefill_reference(&P, o_ref, lse_ref);
    char ctx[1000];
    snprintf(ctx, sizeof ctx, "decode_dense_cuda against row t = length - 1 of the PREFILL of each sequence (the oracle "
             "with M = N = its length), %s", P.ctx);
    dev_dec d;
    dev_dec_init(&d, &P, &hc);
    assert_ok(dev_poison_outputs(&d, 0), ctx);
    assert_ok(dev_run_dense(&P, &d, 0), ctx);
    assert_ok(attn_dsync(), ctx);
    assert_ok(attn_d2h(o, d.o, nq * 2), ctx);
    float *lse = download_f32(d.lse, nl, ctx);
    expect_rows("lse", s, c.len, lse, NULL, lse_ref, 1, kTolLseCuda, NULL, ctx);
    expect_rows("o", s, c.len, NULL, o, o_ref, s->D, ATTN_TOL_BF16,
                "the decode of the newest token is the last row of the prefill: keys 0 .. t, none after", ctx);
    free(o), free(lse), free(o_ref), free(lse_ref);
    dev_dec_free(&d);
    host_cache_free(&hc);
    dec_free(&P);
}

ATTN_TEST(cuda_part, dense_equals_prefill)
{
    require_gpu();
    check_dense_prefill_cuda((dec_case){dshape(4, 300, 8, 2, 64), {0}, {300, 1, 77, 0}, 0, 0, 0});
    check_dense_prefill_cuda((dec_case){dshape(2, 700, 32, 2, 128), {0}, {699, 256}, 0, 0, 0});
}

/* ================================================================ CUDA part: the cache on the device */

typedef struct {
    attn_shape sh;
    attn_nsa_params p;
    int nsa;
    long nc_max;
    uint16_t *k, *v, *kc, *vc, *w_k, *w_v, *pos;
    int32_t *len, *cmp_len, *problem;
    size_t nkv, ncmp;
} dev_cache;

/* An empty cache on the device (lengths 0, every row the poison). */
static void dev_cache_init(dev_cache *dc, const dec_problem *P)
{
    memset(dc, 0, sizeof *dc);
    const attn_shape *s = &P->c.sh;
    dc->sh = *s, dc->p = P->c.p, dc->nsa = P->nsa, dc->nc_max = P->nc_max;
    const size_t row = (size_t)s->G * s->D;
    dc->nkv = (size_t)s->B * s->N * row, dc->ncmp = (size_t)s->B * P->nc_max * row;
    assert_ok(attn_dalloc((void **)&dc->k, dc->nkv * 2), P->ctx);
    assert_ok(attn_dalloc((void **)&dc->v, dc->nkv * 2), P->ctx);
    assert_ok(attn_dalloc((void **)&dc->kc, (dc->ncmp ? dc->ncmp : 1) * 2), P->ctx);
    assert_ok(attn_dalloc((void **)&dc->vc, (dc->ncmp ? dc->ncmp : 1) * 2), P->ctx);
    int32_t *zero = attn_alloc_i32(s->B);
    cr_assert(zero, "out of host memory");
    memset(zero, 0, (size_t)s->B * 4);
    dc->len = upload_i32(zero, s->B, P->ctx), dc->cmp_len = upload_i32(zero, s->B, P->ctx);
    free(zero);
    assert_ok(attn_dalloc((void **)&dc->problem, 8), P->ctx);
    if (P->w_k) {
        const size_t nw = (size_t)s->G * P->c.p.l * s->D * s->D;
        dc->w_k = upload_bf16(P->w_k, nw, P->ctx), dc->w_v = upload_bf16(P->w_v, nw, P->ctx);
        dc->pos = upload_bf16(P->pos, (size_t)P->c.p.l * s->D, P->ctx);
    }
}

static void dev_cache_free(dev_cache *dc)
{
    void *all[] = {dc->k, dc->v, dc->kc, dc->vc, dc->w_k, dc->w_v, dc->pos, dc->len, dc->cmp_len, dc->problem};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; ++i) attn_dfree(all[i]);
    memset(dc, 0, sizeof *dc);
}

/* The device buffers of an append of the truth's next counts[b] rows (bf16), as kv_cache_append_cuda takes
 * them; counts NULL: M each. */
typedef struct {
    uint16_t *k_new, *v_new;
    int32_t *counts;
    attn_shape sh;
} dev_append;

static void dev_append_make(dev_append *a, const dev_cache *dc, const dec_problem *P, const int *counts, int M)
{
    const attn_shape *s = &P->c.sh;
    const size_t row = (size_t)s->G * s->D, n = (size_t)s->B * M * row;
    float *k_new = attn_alloc_f32(n), *v_new = attn_alloc_f32(n);
    int32_t *cnt = attn_alloc_i32(s->B);
    cr_assert(k_new && v_new && cnt, "out of host memory");
    attn_poison(k_new, n * 4), attn_poison(v_new, n * 4);
    for (int b = 0; b < s->B; ++b) {
        const int c = counts ? counts[b] : M;
        const size_t at = ((size_t)b * s->N + P->c.len[b]) * row;
        memcpy(k_new + (size_t)b * M * row, P->k + at, (size_t)c * row * 4);
        memcpy(v_new + (size_t)b * M * row, P->v + at, (size_t)c * row * 4);
        cnt[b] = c;
    }
    a->k_new = upload_bf16(k_new, n, P->ctx), a->v_new = upload_bf16(v_new, n, P->ctx);
    a->counts = counts ? upload_i32(cnt, s->B, P->ctx) : NULL;
    a->sh = dc->sh, a->sh.M = M;
    free(k_new), free(v_new), free(cnt);
}

static void dev_append_free(dev_append *a)
{
    attn_dfree(a->k_new), attn_dfree(a->v_new), attn_dfree(a->counts);
    memset(a, 0, sizeof *a);
}

static int dev_append_run(const dev_append *a, dev_cache *dc, cudaStream_t stream)
{
    const attn_shape sh = a->sh;
    const attn_nsa_params p = dc->p;
    return kv_cache_append_cuda(&sh, dc->nsa ? &p : NULL, a->k_new, a->v_new, a->counts, dc->w_k, dc->w_v, dc->pos,
                                dc->k, dc->v, dc->kc, dc->vc, dc->len, dc->cmp_len, dc->problem, stream);
}

/* The problem the device reported: {kind, b}. */
static void expect_problem(const dev_cache *dc, int kind, int b, const char *ctx)
{
    int32_t got[2] = {-7, -7};
    ATTN_SHARE(got);
    assert_ok(attn_d2h(got, dc->problem, 8), ctx);
    cr_assert(got[0] == kind && got[1] == b,
              "kv_cache_append_cuda reported problem {%d, %d} on the device, expected {%d, %d} (kv_cache_problem, first "
              "sequence) [%s]", got[0], got[1], kind, b, ctx);
}

/* One compressed token c of (b, g) from the truth, as the CUDA part rounds it (lesson 07): keys in linear mode
 * as bf16(k + pos) before the map; the result to bf16. */
static void ref_token_bf16(const dec_problem *P, int b, long c, int g, int values, double *out)
{
    const attn_shape *s = &P->c.sh;
    const attn_nsa_params *p = &P->c.p;
    const int D = s->D, l = p->l;
    const size_t row = (size_t)s->G * D;
    float *span = attn_alloc_f32((size_t)l * D);
    cr_assert(span, "out of host memory");
    const float *x = (values ? P->v : P->k) + (size_t)b * s->N * row;
    for (int r = 0; r < l; ++r)
        for (int e = 0; e < D; ++e) {
            float y = x[((size_t)c * p->d + r) * row + (size_t)g * D + e];
            if (!values && p->mode == ATTN_NSA_LINEAR) y = attn_bf16_to_f32(attn_f32_to_bf16(y + P->pos[(size_t)r * D + e]));
            span[(size_t)r * D + e] = y;
        }
    const attn_shape one = attn_make_shape(1, 1, l, 1, 1, D, 1);
    const float *w = p->mode == ATTN_NSA_LINEAR ? (values ? P->w_v : P->w_k) + (size_t)g * l * D * D : NULL;
    assert_ok(attn_oracle_nsa_compress(&one, p, span, w, NULL, out), P->ctx);
    for (int e = 0; e < D; ++e) out[e] = attn_bf16_to_f32(attn_f32_to_bf16((float)out[e]));
    free(span);
}

/* The device cache against the truth: lengths, rows (bit for bit), poison past them, compressed tokens. */
static void check_dev_cache(const dev_cache *dc, const dec_problem *P, const char *when)
{
    const attn_shape *s = &dc->sh;
    const size_t row = (size_t)s->G * s->D;
    uint16_t *k = attn_alloc_bf16(dc->nkv), *v = attn_alloc_bf16(dc->nkv);
    uint16_t *kc = attn_alloc_bf16(dc->ncmp ? dc->ncmp : 1), *vc = attn_alloc_bf16(dc->ncmp ? dc->ncmp : 1);
    int32_t *len = attn_alloc_i32(s->B), *cmp_len = attn_alloc_i32(s->B);
    double *ref = attn_alloc_f64(s->D);
    cr_assert(k && v && kc && vc && len && cmp_len && ref, "out of host memory");
    assert_ok(attn_d2h(k, dc->k, dc->nkv * 2), P->ctx);
    assert_ok(attn_d2h(v, dc->v, dc->nkv * 2), P->ctx);
    assert_ok(attn_d2h(len, dc->len, (size_t)s->B * 4), P->ctx);
    if (dc->nsa) {
        assert_ok(attn_d2h(kc, dc->kc, dc->ncmp * 2), P->ctx);
        assert_ok(attn_d2h(vc, dc->vc, dc->ncmp * 2), P->ctx);
        assert_ok(attn_d2h(cmp_len, dc->cmp_len, (size_t)s->B * 4), P->ctx);
    }
    for (int b = 0; b < s->B; ++b) {
        const long L = P->c.len[b];
        cr_assert(len[b] == L, "%s: lengths[%d] = %d on the device, expected %ld [%s]", when, b, len[b], L, P->ctx);
        for (size_t e = 0; e < (size_t)s->N * row; ++e) {
            const size_t at = (size_t)b * s->N * row + e;
            const long t = (long)(e / row);
            if (t < L) {
                const uint16_t wk = attn_f32_to_bf16(P->k[at]), wv = attn_f32_to_bf16(P->v[at]);
                cr_assert(k[at] == wk && v[at] == wv,
                          "%s: cache row %ld of sequence %d (g=%d d=%d) holds k=%g v=%g, the appends gave k=%g v=%g [%s]",
                          when, t, b, (int)(e % row / s->D), (int)(e % s->D), attn_bf16_to_f32(k[at]),
                          attn_bf16_to_f32(v[at]), P->k[at], P->v[at], P->ctx);
            } else {
                cr_assert(k[at] == 0xFFFF && v[at] == 0xFFFF,
                          "%s: cache row %ld of sequence %d (length %ld) was written: rows past a sequence's length "
                          "belong to no token [%s]", when, t, b, L, P->ctx);
            }
        }
        if (!dc->nsa) continue;
        const long NC = attn_nsa_num_cmp(L, &dc->p);
        cr_assert(cmp_len[b] == NC, "%s: cmp_lengths[%d] = %d on the device, expected attn_nsa_num_cmp(%ld) = %ld [%s]",
                  when, b, cmp_len[b], L, NC, P->ctx);
        for (long c = 0; c < dc->nc_max; ++c)
            for (int g = 0; g < s->G; ++g)
                for (int x = 0; x < 2; ++x) {
                    const uint16_t *got = (x ? vc : kc) + (((size_t)b * dc->nc_max + c) * s->G + g) * s->D;
                    if (c >= NC) {
                        for (int e = 0; e < s->D; ++e)
                            cr_assert(got[e] == 0xFFFF,
                                      "%s: compressed row %ld of sequence %d was written, but a cache of length %ld "
                                      "holds %ld tokens [%s]", when, c, b, L, NC, P->ctx);
                        continue;
                    }
                    ref_token_bf16(P, b, c, g, x, ref);
                    for (int e = 0; e < s->D; ++e) {
                        const double y = attn_bf16_to_f32(got[e]);
                        cr_assert(got[e] != 0xFFFF && fabs(y - ref[e]) <= kTolCmpCuda.atol + kTolCmpCuda.rtol * fabs(ref[e]),
                                  "%s: compressed %s token %ld of sequence %d (g=%d d=%d): %.7g, expected %.7g%s; token c "
                                  "summarises keys c*d .. c*d + l - 1 = %ld .. %ld [%s]", when, x ? "value" : "key", c,
                                  b, g, e, y, ref[e], got[e] == 0xFFFF ? " (never written)" : "", c * dc->p.d,
                                  c * dc->p.d + dc->p.l - 1, P->ctx);
                    }
                }
    }
    free(k), free(v), free(kc), free(vc), free(len), free(cmp_len), free(ref);
}

/* Appends on the device with counts that differ between sequences, both modes, checked after each. */
/* Appends on the device, checked after each: counts that differ between sequences (0 included), or, with
 * counts_null, counts NULL (M tokens each; rounds * M must fit in L_max). A case without NSA parameters
 * (c.p.l = 0) keeps no compressed cache. */
static void check_dev_appends_ex(dec_case c, int M, int rounds, int counts_null)
{
    dec_problem P;
    dec_init(&P, c, 1, c.p.l > 0);
    const attn_shape *s = &c.sh;
    for (int b = 0; b < s->B; ++b) P.c.len[b] = 0;
    cr_assert(!counts_null || rounds * M <= s->N, "test case: %d appends of %d tokens fit in L_max = %d", rounds, M, s->N);
    dev_cache dc;
    dev_cache_init(&dc, &P);
    attn_rng rng;
    attn_rng_seed(&rng, P.seed + 9);
    for (int round = 0; round < rounds; ++round) {
        int counts[MAX_B];
        for (int b = 0; b < s->B; ++b) {
            int want = (int)(attn_rng_u64(&rng) % (uint64_t)(M + 1));
            if (round == 0 && b == 0) want = M;
            if (counts_null) want = M;
            counts[b] = P.c.len[b] + want <= s->N ? want : s->N - P.c.len[b];
        }
        dev_append a;
        dev_append_make(&a, &dc, &P, counts_null ? NULL : counts, M);
        assert_ok(dev_append_run(&a, &dc, 0), P.ctx);
        assert_ok(attn_dsync(), P.ctx);
        dev_append_free(&a);
        for (int b = 0; b < s->B; ++b) P.c.len[b] += counts[b];
        char when[120];
        snprintf(when, sizeof when, "after append %d (%s %d tokens per sequence)", round + 1,
                 counts_null ? "counts NULL:" : "counts up to", M);
        expect_problem(&dc, KV_CACHE_OK, -1, P.ctx);
        check_dev_cache(&dc, &P, when);
    }
    dev_cache_free(&dc);
    dec_free(&P);
}

static void check_dev_appends(dec_case c, int M, int rounds) { check_dev_appends_ex(c, M, rounds, 0); }

ATTN_TEST(cuda_part, append)
{
    require_gpu();
    check_dev_appends((dec_case){dshape(3, 90, 4, 2, 64), params(8, 4, 8, 4, 16, ATTN_NSA_MEAN, 1), {0}, 0, 0, 0}, 7, 8);
    check_dev_appends((dec_case){dshape(2, 70, 4, 2, 64), params(8, 4, 8, 4, 16, ATTN_NSA_LINEAR, 1), {0}, 0, 0, 0}, 5, 8);
    check_dev_appends((dec_case){dshape(2, 130, 2, 2, 128), paper_linear(), {0}, 0, 0, 0}, 40, 4);
    check_dev_appends((dec_case){dshape(2, 200, 2, 1, 64), attn_nsa_mean_pool(), {0}, 0, 0, 0}, 33, 6);
    /* no compressed cache (NSA parameters NULL: dense decoding only), D = 64 and 128 */
    check_dev_appends((dec_case){dshape(3, 50, 4, 2, 64), {0}, {0}, 0, 0, 0}, 6, 7);
    check_dev_appends((dec_case){dshape(2, 50, 4, 4, 128), {0}, {0}, 0, 0, 0}, 3, 5);
    /* counts NULL: M tokens for every sequence */
    check_dev_appends_ex((dec_case){dshape(2, 60, 4, 2, 64), params(8, 4, 8, 4, 16, ATTN_NSA_LINEAR, 1), {0}, 0, 0, 0}, 5,
                         6, 1);
    check_dev_appends_ex((dec_case){dshape(3, 40, 4, 2, 128), {0}, {0}, 0, 0, 0}, 4, 5, 1);
}

/* ---------------------------------------------------------------- sequences that grow, on the device */

/* q and the gates of a dev_dec from the problem's current values. */
static void dev_upload_query(dev_dec *d, const dec_problem *P)
{
    uint16_t *h = attn_alloc_bf16(d->nq);
    cr_assert(h, "out of host memory");
    attn_f32_to_bf16_array(P->q, h, d->nq);
    assert_ok(attn_h2d(d->q, h, d->nq * 2), P->ctx);
    free(h);
}

/* Both decodes on the device cache, checked against the truth; o of the NSA decode (fp32 of its bf16) into
 * o_nsa when it is not NULL. */
static void decode_step_cuda(dec_problem *P, dev_dec *d, const dev_cache *dc, float *o_nsa, const char *when)
{
    const attn_shape *s = &P->c.sh;
    char saved[800];
    memcpy(saved, P->ctx, sizeof saved);
    snprintf(P->ctx, sizeof P->ctx, "%.120s, %.670s", when, saved); /* the step first; the case's context after */
    d->k = dc->k, d->v = dc->v, d->kc = dc->kc, d->vc = dc->vc, d->len = dc->len;
    dev_upload_query(d, P);
    /* dense */
    dense_reference(P);
    assert_ok(dev_poison_outputs(d, 0), P->ctx);
    assert_ok(dev_run_dense(P, d, 0), P->ctx);
    assert_ok(attn_dsync(), P->ctx);
    uint16_t *o16 = attn_alloc_bf16(d->nq);
    cr_assert(o16, "out of host memory");
    assert_ok(attn_d2h(o16, d->o, d->nq * 2), P->ctx);
    expect_rows("o (decode_dense_cuda)", s, P->c.len, NULL, o16, P->o_dense, s->D, ATTN_TOL_BF16, "keys 0 .. t", P->ctx);
    /* NSA */
    nsa_reference(P, NULL);
    assert_ok(dev_poison_outputs(d, 0), P->ctx);
    assert_ok(dev_run_nsa(P, d, 1, 0), P->ctx);
    assert_ok(attn_dsync(), P->ctx);
    nsa_out r;
    nsa_out_alloc(&r, P);
    dev_download_nsa(d, &r, o16, P->ctx);
    check_nsa_outputs(P, &r, o16, 1);
    if (o_nsa) attn_bf16_to_f32_array(o16, o_nsa, d->nq);
    nsa_out_free(&r);
    free(o16);
    d->k = d->v = d->kc = d->vc = NULL, d->len = NULL; /* the cache's, not the dev_dec's */
    memcpy(P->ctx, saved, sizeof saved);
}

static void grow_cuda(dec_case c, const int *prompt, int steps)
{
    dec_problem P;
    dec_init(&P, c, 1, 1);
    const attn_shape *s = &c.sh;
    int most = 1, ones[MAX_B];
    for (int b = 0; b < s->B; ++b) ones[b] = 1, most = prompt[b] > most ? prompt[b] : most, P.c.len[b] = 0;
    dev_cache dc;
    dev_cache_init(&dc, &P);
    dev_dec d;
    dev_dec_outputs(&d, &P);
    attn_rng rng;
    attn_rng_seed(&rng, P.seed + 77);
    for (int step = 0; step <= steps; ++step) {
        dev_append a;
        dev_append_make(&a, &dc, &P, step ? ones : prompt, step ? 1 : most);
        assert_ok(dev_append_run(&a, &dc, 0), P.ctx);
        assert_ok(attn_dsync(), P.ctx);
        dev_append_free(&a);
        for (int b = 0; b < s->B; ++b) P.c.len[b] += step ? 1 : prompt[b];
        attn_fill_random(P.q, (size_t)s->B * s->H * s->D, s->D, 1.0f, &rng);
        round_to_bf16(P.q, (size_t)s->B * s->H * s->D);
        char when[120];
        snprintf(when, sizeof when, "step %d (lengths %d, %d, ...)", step, P.c.len[0], s->B > 1 ? P.c.len[1] : 0);
        if (step % 10 == 0 || step == steps) check_dev_cache(&dc, &P, when);
        decode_step_cuda(&P, &d, &dc, NULL, when);
    }
    dev_dec_free(&d);
    dev_cache_free(&dc);
    dec_free(&P);
}

ATTN_TEST(cuda_part, step_by_step)
{
    require_gpu();
    const int prompt_a[2] = {0, 5}, prompt_b[2] = {29, 1};
    grow_cuda((dec_case){dshape(2, 140, 8, 2, 64), params(8, 4, 8, 4, 20, ATTN_NSA_MEAN, 1), {0}, GATES_RANDOM, 0, 0},
              prompt_a, 100);
    grow_cuda((dec_case){dshape(2, 120, 4, 2, 128), params(8, 4, 16, 4, 20, ATTN_NSA_LINEAR, 0), {0}, GATES_RANDOM, 0, 0},
              prompt_b, 60);
}

ATTN_TEST(cuda_part, generation_loop)
{
    require_gpu();
    dec_case c = {dshape(2, 200, 4, 2, 64), params(8, 4, 16, 4, 24, ATTN_NSA_MEAN, 1), {0}, GATES_RANDOM, 0, 0};
    dec_problem P;
    dec_init(&P, c, 1, 1);
    const attn_shape *s = &c.sh;
    const size_t hd = (size_t)s->H * s->D, gd = (size_t)s->G * s->D;
    attn_rng rng;
    attn_rng_seed(&rng, P.seed + 5);
    tiny_model m;
    tiny_init(&m, s->H, s->G, s->D, &rng);
    dev_cache dc;
    dev_cache_init(&dc, &P);
    dev_dec d;
    dev_dec_outputs(&d, &P);
    const int prompt[2] = {37, 5}, ones[2] = {1, 1};
    P.c.len[0] = P.c.len[1] = 0;
    float *o = attn_alloc_f32((size_t)s->B * hd);
    cr_assert(o, "out of host memory");
    for (int step = 0; step <= 120; ++step) {
        dev_append a;
        dev_append_make(&a, &dc, &P, step ? ones : prompt, step ? 1 : 37);
        assert_ok(dev_append_run(&a, &dc, 0), P.ctx);
        assert_ok(attn_dsync(), P.ctx);
        dev_append_free(&a);
        for (int b = 0; b < s->B; ++b) P.c.len[b] += step ? 1 : prompt[b];
        char when[80];
        snprintf(when, sizeof when, "generation step %d", step);
        decode_step_cuda(&P, &d, &dc, o, when);
        for (int b = 0; b < s->B; ++b) { /* the next token from this step's output, in bf16 */
            const size_t at = ((size_t)b * s->N + P.c.len[b]) * gd;
            tiny_next(&m, o + (size_t)b * hd, step, P.q + (size_t)b * hd, P.k + at, P.v + at);
            round_to_bf16(P.q + (size_t)b * hd, hd), round_to_bf16(P.k + at, gd), round_to_bf16(P.v + at, gd);
        }
    }
    free(o);
    tiny_free(&m);
    dev_dec_free(&d);
    dev_cache_free(&dc);
    dec_free(&P);
}

/* ---------------------------------------------------------------- the sanitizers' paths, determinism, graphs */

static void check_bad_appends_cuda(int count);

/* Every kernel and path of the lesson once, on tiny shapes with B > 1 and G > 1: what ./course grade runs
 * compute-sanitizer memcheck and racecheck on (the descriptor's sanitize filters). Each case is also checked
 * against the oracle. */
ATTN_TEST(cuda_part, sanitizer_paths)
{
    require_gpu();
    /* kv_cache_append_cuda: no compressed cache; mean with M > d (an append completes several tokens), D = 128;
     * linear with counts NULL; a bad append (check_kernel's problem stops the other kernels) */
    check_dev_appends((dec_case){dshape(2, 24, 4, 2, 64), {0}, {0}, 0, 0, 0}, 5, 3);
    check_dev_appends((dec_case){dshape(2, 40, 4, 2, 128), params(8, 4, 8, 4, 16, ATTN_NSA_MEAN, 1), {0}, 0, 0, 0}, 9, 3);
    check_dev_appends_ex((dec_case){dshape(2, 30, 4, 2, 64), params(8, 4, 8, 4, 16, ATTN_NSA_LINEAR, 1), {0}, 0, 0, 0},
                         5, 3, 1);
    check_bad_appends_cuda(2);
    /* decode_dense_cuda: one split (L_max <= 256: no combine), D = 64, an empty sequence; several splits and the
     * combine, D = 128, a partial last chunk; two row tiles of heads (H/G = 32); lse NULL */
    check_dense_cuda((dec_case){dshape(3, 200, 8, 2, 64), {0}, {200, 0, 77}, 0, 0, 0});
    check_dense_cuda((dec_case){dshape(2, 700, 8, 2, 128), {0}, {700, 333}, 0, 0, 0});
    check_dense_cuda((dec_case){dshape(2, 600, 64, 2, 64), {0}, {600, 1}, 0, 0, 0});
    check_dense_cuda_lse((dec_case){dshape(2, 600, 4, 2, 128), {0}, {590, 0}, 0, 0, 0}, 0);
    /* decode_nsa_cuda: clusters of 16 blocks (B*G <= 8) and of 8 (B*G = 10), D = 64 and 128, shared and per-head
     * lists, lists ranked by score (with n - 3 = 1 and 3 free places, and n = 3: the forced blocks alone) and
     * lists of every candidate, no compressed token (L < l), an empty slot, H/G = 16, the optional outputs NULL */
    check_nsa_cuda((dec_case){dshape(2, 300, 8, 2, 64), with_nw(paper_linear(), 4, 48), {300, 97}, GATES_RANDOM, 0, 0});
    check_nsa_cuda((dec_case){dshape(5, 200, 4, 2, 128), per_head(with_nw(paper_linear(), 3, 40)), {200, 0, 20, 63, 130},
                              GATES_RANDOM, 0, 0});
    check_nsa_cuda_ex((dec_case){dshape(2, 700, 32, 2, 128), with_nw(attn_nsa_mean_pool(), 6, 100), {700, 129},
                                 GATES_RANDOM, 0, 0}, 1);
    check_nsa_cuda((dec_case){dshape(2, 400, 4, 2, 64), per_head(with_nw(attn_nsa_mean_pool(), 3, 64)), {400, 64},
                              GATES_RANDOM, 0, 0});
}

/* o, lse and the lists of one run to the host, as bytes. */
static unsigned char *snapshot(const dev_dec *d, int nsa, size_t *bytes, const char *ctx)
{
    *bytes = d->nq * 2 + (nsa ? 3 * d->nl * 4 + d->ni * 4 : d->nl * 4);
    unsigned char *h = attn_alloc_bytes(*bytes);
    cr_assert(h, "out of host memory");
    assert_ok(attn_d2h(h, d->o, d->nq * 2), ctx);
    if (!nsa) {
        assert_ok(attn_d2h(h + d->nq * 2, d->lse, d->nl * 4), ctx);
        return h;
    }
    assert_ok(attn_d2h(h + d->nq * 2, d->lse_cmp, d->nl * 4), ctx);
    assert_ok(attn_d2h(h + d->nq * 2 + d->nl * 4, d->lse_slc, d->nl * 4), ctx);
    assert_ok(attn_d2h(h + d->nq * 2 + 2 * d->nl * 4, d->lse_swa, d->nl * 4), ctx);
    assert_ok(attn_d2h(h + d->nq * 2 + 3 * d->nl * 4, d->lists, d->ni * 4), ctx);
    return h;
}

/* The same inputs twice: the same bits (a race moves results between runs). Shapes with many chunks and
 * whole clusters. */
ATTN_TEST(cuda_part, determinism)
{
    require_gpu();
    const dec_case cases[] = {
        {dshape(2, 6000, 32, 2, 128), attn_nsa_paper_defaults(), {6000, 4567}, GATES_RANDOM, 0, 0},
        {dshape(3, 3000, 16, 4, 64), per_head(with_nw(attn_nsa_mean_pool(), 6, 200)), {3000, 2001, 65}, GATES_RANDOM, 0, 0},
    };
    for (int c = 0; c < 2; ++c) {
        dec_problem P;
        dec_init(&P, cases[c], 1, 1);
        nsa_reference(&P, NULL);
        host_cache hc;
        host_cache_fill(&hc, &P);
        dev_dec d;
        dev_dec_init(&d, &P, &hc);
        for (int nsa = 0; nsa < 2; ++nsa) {
            unsigned char *run[2];
            size_t bytes = 0;
            for (int r = 0; r < 2; ++r) {
                assert_ok(dev_poison_outputs(&d, 0), P.ctx);
                assert_ok(nsa ? dev_run_nsa(&P, &d, 1, 0) : dev_run_dense(&P, &d, 0), P.ctx);
                assert_ok(attn_dsync(), P.ctx);
                run[r] = snapshot(&d, nsa, &bytes, P.ctx);
            }
            compare_bits(run[0], run[1], bytes,
                         nsa ? "decode_nsa_cuda: o, lse_* and the lists of two runs on the same input (a race?)"
                             : "decode_dense_cuda: o and lse of two runs on the same input (a race?)",
                         P.ctx);
            free(run[0]), free(run[1]);
        }
        dev_dec_free(&d);
        host_cache_free(&hc);
        dec_free(&P);
    }
}

/* Each call captured in a CUDA graph (in the runner, in the global capture mode, so that an allocation or a
 * synchronisation inside it fails) and replayed: the decodes give a direct call's bits, also after new inputs
 * at the same addresses; an append replayed R times appends R times (its lengths live on the device, so a
 * replayed decoding step moves on by itself). */
ATTN_TEST(cuda_part, graph_capture)
{
    require_gpu();
    const dec_case c = {dshape(2, 1500, 16, 2, 128), with_nw(paper_linear(), 6, 128), {1500, 777}, GATES_RANDOM, 0, 0};
    dec_problem P;
    dec_init(&P, c, 1, 1);
    nsa_reference(&P, NULL);
    host_cache hc;
    host_cache_fill(&hc, &P);
    dev_dec d;
    dev_dec_init(&d, &P, &hc);
    for (int round = 0; round < 2; ++round) {
        if (round == 1) /* new queries and gates at the same addresses */
            assert_ok(attn_dfill_random_bf16(d.q, d.nq, c.sh.D, 1.0f, P.seed + 11, 0), P.ctx);
        for (int nsa = 0; nsa < 2; ++nsa) {
            size_t bytes = 0;
            assert_ok(dev_poison_outputs(&d, 0), P.ctx);
            assert_ok(nsa ? dev_run_nsa(&P, &d, 1, 0) : dev_run_dense(&P, &d, 0), P.ctx);
            unsigned char *direct = snapshot(&d, nsa, &bytes, P.ctx);
            assert_ok(dev_poison_outputs(&d, 0), P.ctx);
            assert_ok(attn_dsync(), P.ctx);
            attn_rpc_capture_next_call(3);
            const int st = nsa ? dev_run_nsa(&P, &d, 1, 0) : dev_run_dense(&P, &d, 0);
            assert_ok(st, P.ctx);
            unsigned char *replay = snapshot(&d, nsa, &bytes, P.ctx);
            char what[200];
            snprintf(what, sizeof what, "%s replayed from a CUDA graph against a direct call%s",
                     nsa ? "decode_nsa_cuda" : "decode_dense_cuda", round ? ", after new inputs at the same addresses" : "");
            compare_bits(replay, direct, bytes, what, P.ctx);
            free(direct), free(replay);
        }
    }
    dev_dec_free(&d);
    host_cache_free(&hc);
    dec_free(&P);

    /* an append captured once and replayed 3 times: 3 appends of the same rows */
    dec_case a = {dshape(2, 60, 4, 2, 64), params(8, 4, 8, 4, 16, ATTN_NSA_MEAN, 1), {0}, GATES_RANDOM, 0, 0};
    dec_init(&P, a, 1, 1);
    P.c.len[0] = P.c.len[1] = 0;
    dev_cache dc;
    dev_cache_init(&dc, &P);
    const int counts[2] = {3, 3};
    dev_append ap;
    dev_append_make(&ap, &dc, &P, NULL, 3); /* counts NULL: M = 3 each, as a replayed step appends */
    (void)counts;
    attn_rpc_capture_next_call(3);
    assert_ok(dev_append_run(&ap, &dc, 0), P.ctx);
    dev_append_free(&ap);
    /* the truth: the same 3 rows three times */
    const size_t row = (size_t)a.sh.G * a.sh.D;
    for (int b = 0; b < 2; ++b)
        for (int rep = 1; rep < 3; ++rep) {
            const size_t at = (size_t)b * a.sh.N * row;
            memcpy(P.k + at + (size_t)rep * 3 * row, P.k + at, 3 * row * 4);
            memcpy(P.v + at + (size_t)rep * 3 * row, P.v + at, 3 * row * 4);
        }
    P.c.len[0] = P.c.len[1] = 9;
    expect_problem(&dc, KV_CACHE_OK, -1, P.ctx);
    check_dev_cache(&dc, &P, "after one append captured in a CUDA graph and replayed 3 times");
    dev_cache_free(&dc);
    dec_free(&P);
}

/* ================================================================ large shapes: GPU references
 *
 * Where the CPU oracle would take minutes, every sequence holds L_max tokens (a full cache is the tensor
 * [B, L_max, G, D] the GPU references read) and the decodes are checked on the GPU: dense against the frozen
 * naive decode or the fp32 reference (attn_gpu_reference, M = 1); NSA as lesson 10 checks its forward: the
 * compressed branch (attn_gpu_reference over the compressed cache), the lists (attn_ref_nsa_select on that
 * lse, judged with the near-tie rule), the selected branch on the kernel's lists and the window, the gated
 * sum; then every element of o. The compressed cache itself is made by the frozen attn_ref_nsa_compress. */
typedef struct {
    attn_shape sh;
    attn_nsa_params p;
    long NC, NB;
    int L, nsa;
    size_t nq, nkv, nl, ni, ncmp, nscores;
    uint16_t *q, *k, *v, *kc, *vc, *o, *o_base;
    float *gates, *lse, *lse_base; /* gates: g_cmp, g_slc, g_swa one after the other, [3][B, 1, H] */
    int32_t *len, *lists;
    void *ws;
    size_t ws_bytes;
    float *lse_cmp, *scores, *tmp, *sum; /* the references' */
    int32_t *ref_lists, *h_lists, *h_ref;
    float *h_scores;
    double *row64;
    uint64_t seed;
    char ctx[500];
} gpu_dec;

/* Device bytes of a gpu_dec (the skip for want of memory is decided from this, before any lesson code runs). */
static double gpu_dec_bytes(const attn_shape *s, const attn_nsa_params *p, int nsa)
{
    const double nq = (double)s->B * s->H * s->D, nkv = (double)s->B * s->N * s->G * s->D;
    double bytes = 3 * nq * 2 + 2 * nkv * 2 + 8.0 * s->B * s->H * 4;
    if (nsa) {
        const double NC = (double)attn_nsa_num_cmp(s->N, p), NB = (double)attn_nsa_num_blocks(s->N, p);
        const double L = attn_nsa_list_heads(s, p);
        bytes += 2 * (double)s->B * NC * s->G * s->D * 2 + (double)s->B * s->G * kRowsTest * NC * 4 +
                 2 * (double)s->B * L * p->n * 4 + (double)s->B * L * NB * 4 + 2 * nq * 4;
    }
    return bytes;
}

static void gpu_dec_init(gpu_dec *g, attn_shape sh, const attn_nsa_params *p, const char *what)
{
    memset(g, 0, sizeof *g);
    g->sh = sh, g->nsa = p != NULL, g->seed = attn_test_seed();
    if (p) g->p = *p;
    char st[160] = "";
    if (p) params_text(p, st, sizeof st);
    snprintf(g->ctx, sizeof g->ctx, "%s: B=%d, every sequence of length L_max=%d, H=%d G=%d D=%d%s%s, seed %llu (rerun: "
             "ATTN_SEED=%llu)", what, sh.B, sh.N, sh.H, sh.G, sh.D, p ? ", " : "", st, (unsigned long long)g->seed,
             (unsigned long long)g->seed);
    g->nq = (size_t)sh.B * sh.H * sh.D, g->nkv = (size_t)sh.B * sh.N * sh.G * sh.D, g->nl = (size_t)sh.B * sh.H;
    uint16_t **b16[] = {&g->q, &g->k, &g->v, &g->o, &g->o_base};
    const size_t n16[] = {g->nq, g->nkv, g->nkv, g->nq, g->nq};
    for (int x = 0; x < 5; ++x) assert_ok(attn_dalloc((void **)b16[x], n16[x] * 2), g->ctx);
    assert_ok(attn_dalloc((void **)&g->gates, 3 * g->nl * 4), g->ctx);
    assert_ok(attn_dalloc((void **)&g->lse, g->nl * 4), g->ctx);
    assert_ok(attn_dalloc((void **)&g->lse_base, g->nl * 4), g->ctx);
    int32_t *len = attn_alloc_i32(sh.B);
    cr_assert(len, "out of host memory");
    for (int b = 0; b < sh.B; ++b) len[b] = sh.N;
    g->len = upload_i32(len, sh.B, g->ctx);
    free(len);
    assert_ok(attn_dalloc((void **)&g->tmp, g->nq * 4), g->ctx);
    assert_ok(attn_dalloc((void **)&g->lse_cmp, g->nl * 4), g->ctx);
    if (!p) {
        g->ws_bytes = decode_dense_workspace_bytes(&sh);
        cr_assert(g->ws_bytes > 0, "decode_dense_workspace_bytes returned 0 for a valid problem [%s]", g->ctx);
        assert_ok(attn_dalloc(&g->ws, g->ws_bytes), g->ctx);
        return;
    }
    g->NC = attn_nsa_num_cmp(sh.N, p), g->NB = attn_nsa_num_blocks(sh.N, p), g->L = attn_nsa_list_heads(&sh, p);
    g->ni = (size_t)sh.B * g->L * p->n, g->ncmp = (size_t)sh.B * g->NC * sh.G * sh.D, g->nscores = (size_t)sh.B * g->L * g->NB;
    cr_assert(g->NC > 0 && p->mode == ATTN_NSA_MEAN, "the GPU-checked shapes have compressed tokens, mean mode [%s]", g->ctx);
    assert_ok(attn_dalloc((void **)&g->kc, g->ncmp * 2), g->ctx);
    assert_ok(attn_dalloc((void **)&g->vc, g->ncmp * 2), g->ctx);
    assert_ok(attn_dalloc((void **)&g->lists, g->ni * 4), g->ctx);
    assert_ok(attn_dalloc((void **)&g->ref_lists, g->ni * 4), g->ctx);
    assert_ok(attn_dalloc((void **)&g->scores, g->nscores * 4), g->ctx);
    assert_ok(attn_dalloc((void **)&g->sum, g->nq * 4), g->ctx);
    g->ws_bytes = decode_nsa_workspace_bytes(&sh, p);
    cr_assert(g->ws_bytes > 0, "decode_nsa_workspace_bytes returned 0 for a valid problem [%s]", g->ctx);
    assert_ok(attn_dalloc(&g->ws, g->ws_bytes), g->ctx);
    g->h_lists = attn_alloc_i32(g->ni), g->h_ref = attn_alloc_i32(g->ni), g->h_scores = attn_alloc_f32(g->nscores);
    g->row64 = attn_alloc_f64((size_t)g->NB);
    cr_assert(g->h_lists && g->h_ref && g->h_scores && g->row64, "out of host memory [%s]", g->ctx);
}

static void gpu_dec_free(gpu_dec *g)
{
    void *dev[] = {g->q, g->k, g->v, g->kc, g->vc, g->o, g->o_base, g->gates, g->lse, g->lse_base, g->len, g->lists, g->ws,
                   g->lse_cmp, g->scores, g->tmp, g->sum, g->ref_lists};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; ++i) attn_dfree(dev[i]);
    free(g->h_lists), free(g->h_ref), free(g->h_scores), free(g->row64);
    memset(g, 0, sizeof *g);
}

/* New inputs (the gates any values: a gate on the wrong branch shows), the compressed cache from the keys by
 * the frozen reference, poisoned outputs. */
static int gpu_dec_fill(gpu_dec *g, uint64_t seed, cudaStream_t stream)
{
    const size_t D = (size_t)g->sh.D;
    int st = attn_dfill_random_bf16(g->q, g->nq, D, 1.0f, seed, stream);
    if (!st) st = attn_dfill_random_bf16(g->k, g->nkv, D, 1.0f, seed + 1, stream);
    if (!st) st = attn_dfill_random_bf16(g->v, g->nkv, D, 1.0f, seed + 2, stream);
    if (!st) st = attn_dfill_random_f32(g->gates, 3 * g->nl, g->sh.H, 0.5f, seed + 3, stream);
    if (!st && g->nsa) st = attn_ref_nsa_compress(&g->sh, &g->p, g->k, NULL, NULL, g->kc, stream);
    if (!st && g->nsa) st = attn_ref_nsa_compress(&g->sh, &g->p, g->v, NULL, NULL, g->vc, stream);
    if (!st) st = attn_cuda_status(cudaMemsetAsync(g->o, 0xFF, g->nq * 2, stream), "poison o");
    if (!st) st = attn_cuda_status(cudaMemsetAsync(g->o_base, 0xFF, g->nq * 2, stream), "poison");
    if (!st) st = attn_cuda_status(cudaMemsetAsync(g->lse, 0xFF, g->nl * 4, stream), "poison");
    if (!st) st = attn_cuda_status(cudaMemsetAsync(g->lse_base, 0xFF, g->nl * 4, stream), "poison");
    if (!st && g->nsa) st = attn_cuda_status(cudaMemsetAsync(g->lists, INDEX_POISON_BYTE, g->ni * 4, stream), "poison");
    return st;
}

static int gpu_dec_run(gpu_dec *g, cudaStream_t stream)
{
    const attn_shape sh = g->sh;
    if (!g->nsa) return decode_dense_cuda(&sh, g->q, g->k, g->v, g->len, g->o, g->lse, g->ws, g->ws_bytes, stream);
    const attn_nsa_params p = g->p;
    return decode_nsa_cuda(&sh, &p, g->q, g->k, g->v, g->kc, g->vc, g->len, g->gates, g->gates + g->nl,
                           g->gates + 2 * g->nl, g->o, NULL, NULL, NULL, g->lists, g->ws, g->ws_bytes, stream);
}

static int gpu_dec_naive(gpu_dec *g, cudaStream_t stream)
{
    return attn_baseline_decode_naive_bf16(&g->sh, g->q, g->k, g->v, g->len, g->o_base, g->lse_base, stream);
}

static void gpu_msg(char *msg, size_t len, const char *what, const attn_dcmp *r, const attn_shape *sh, const char *hint)
{
    const size_t e = r->worst, d = e % sh->D, h = e / sh->D % sh->H, b = e / ((size_t)sh->D * sh->H);
    snprintf(msg, len, "%s: %zu of %zu elements out of tolerance (%zu never written, %zu NaN/Inf); worst at b=%zu "
             "(t=%d) h=%zu d=%zu (flat %zu%s): got %.6g, expected %.6g%s%s", what, r->n_bad, r->count, r->n_unwritten,
             r->n_nonfinite, b, sh->N - 1, h, d, e, e >= (1ull << 31) ? ", past 2^31" : "", r->got, r->expected,
             hint ? ". " : "", hint ? hint : "");
}

/* Dense: o and lse against the frozen naive decode's outputs (it must have run on the same inputs), or,
 * with use_ref, against the fp32 GPU reference (attn_gpu_reference, one query at t = L_max - 1). 0 when they
 * pass, else 1 and why. */
static int gpu_dec_check_dense(gpu_dec *g, int use_ref, const char *hint, char *msg, size_t len)
{
    attn_dcmp r;
    int st = ATTN_OK;
    if (use_ref) {
        attn_gpu_ref_opts ro = {0};
        ro.shape = g->sh;
        st = attn_gpu_reference(&ro, g->q, g->k, g->v, g->tmp, g->lse_cmp, 0);
        if (!st) st = attn_dsync();
        if (!st) st = attn_dcompare_bf16_f32(g->o, g->tmp, g->nq, ATTN_TOL_BF16, &r);
    } else {
        st = attn_dcompare_bf16_bf16(g->o, g->o_base, g->nq, ATTN_TOL_BF16, &r);
    }
    if (st) {
        snprintf(msg, len, "a reference or the comparison failed: %s", attn_error_detail());
        return 1;
    }
    if (r.n_bad) {
        gpu_msg(msg, len, use_ref ? "o (vs the fp32 GPU reference)" : "o (vs the frozen naive decode)", &r, &g->sh, hint);
        return 1;
    }
    st = attn_dcompare_f32_f32(g->lse, use_ref ? g->lse_cmp : g->lse_base, g->nl, (attn_tol){1e-3, 1e-4}, &r);
    if (st) {
        snprintf(msg, len, "the comparison failed: %s", attn_error_detail());
        return 1;
    }
    if (r.n_bad) {
        snprintf(msg, len, "lse: %zu of %zu rows out of tolerance; worst at row %zu (b=%zu h=%zu): got %.7g, expected "
                 "%.7g%s%s", r.n_bad, r.count, r.worst, r.worst / g->sh.H, r.worst % g->sh.H, r.got, r.expected,
                 hint ? ". " : "", hint ? hint : "");
        return 1;
    }
    return 0;
}

/* NSA: the references above, then every element of o. 0 when they pass. */
static int gpu_dec_check_nsa(gpu_dec *g, const char *hint, char *msg, size_t len)
{
    const attn_shape *sh = &g->sh;
    attn_gpu_ref_opts cmp = {0}, slc = {0}, swa = {0};
    cmp.shape = *sh, cmp.shape.N = (int)g->NC, cmp.positions = sh->N, cmp.cmp_l = g->p.l, cmp.cmp_d = g->p.d;
    slc.shape = *sh, slc.block_indices = g->lists, slc.num_blocks = g->p.n, slc.block_size = g->p.l_sel;
    slc.lists_per_head = !g->p.heads_share_selection;
    swa.shape = *sh, swa.window = g->p.w;
    const float *g_cmp = g->gates, *g_slc = g->gates + g->nl, *g_swa = g->gates + 2 * g->nl;
    int st = attn_gpu_reference(&cmp, g->q, g->kc, g->vc, g->tmp, g->lse_cmp, 0);
    if (!st) st = attn_ref_nsa_gate_add(sh, g->tmp, g_cmp, g->sum, 1, 0);
    if (!st) st = attn_ref_nsa_select(sh, &g->p, g->q, g->kc, g->lse_cmp, g->scores, g->ref_lists, 0);
    if (!st) st = attn_dsync();
    if (!st) st = attn_d2h(g->h_lists, g->lists, g->ni * 4);
    if (!st) st = attn_d2h(g->h_ref, g->ref_lists, g->ni * 4);
    if (!st) st = attn_d2h(g->h_scores, g->scores, g->nscores * 4);
    if (st) {
        snprintf(msg, len, "a GPU reference failed: %s", attn_error_detail());
        return 1;
    }
    for (size_t r = 0; r < (size_t)sh->B * g->L; ++r) { /* the lists first: the selected reference runs on them */
        for (long j = 0; j < g->NB; ++j) g->row64[j] = g->h_scores[r * g->NB + j];
        char why[400];
        judge_list(why, sizeof why, &g->p, sh->N - 1, g->NB, g->row64, g->h_lists + r * g->p.n, g->h_ref + r * g->p.n, 0,
                   TIE_RTOL_CUDA);
        if (why[0]) {
            char g_txt[400], r_txt[400];
            list_text(g_txt, sizeof g_txt, g->h_lists + r * g->p.n, g->p.n);
            list_text(r_txt, sizeof r_txt, g->h_ref + r * g->p.n, g->p.n);
            snprintf(msg, len, "block_indices of b=%zu (t=%d) list %zu: %s; got %s, the GPU reference %s", r / g->L,
                     sh->N - 1, r % g->L, why, g_txt, r_txt);
            return 1;
        }
    }
    st = attn_gpu_reference(&slc, g->q, g->k, g->v, g->tmp, NULL, 0);
    if (!st) st = attn_ref_nsa_gate_add(sh, g->tmp, g_slc, g->sum, 0, 0);
    if (!st) st = attn_gpu_reference(&swa, g->q, g->k, g->v, g->tmp, NULL, 0);
    if (!st) st = attn_ref_nsa_gate_add(sh, g->tmp, g_swa, g->sum, 0, 0);
    if (!st) st = attn_dsync();
    attn_dcmp r;
    if (!st) st = attn_dcompare_bf16_f32(g->o, g->sum, g->nq, ATTN_TOL_BF16, &r);
    if (st) {
        snprintf(msg, len, "a GPU reference or the comparison failed: %s", attn_error_detail());
        return 1;
    }
    if (r.n_bad) {
        gpu_msg(msg, len, "o", &r, sh, hint);
        return 1;
    }
    return 0;
}

/* Caches past 2^31 elements: B = 64, L_max = 65600, G = 4, D = 128 gives 64 * 65600 * 4 * 128 = 2.15e9 per
 * cache. The last token of every sequence is appended by kv_cache_append_cuda (rows and a compressed token past
 * 2^31 elements), then both decodes read the whole caches. */
ATTN_TEST(cuda_part, large_offsets)
{
    require_gpu();
    const attn_shape sh = dshape(64, 65600, 64, 4, 128);
    const attn_nsa_params p = attn_nsa_mean_pool(); /* l = d = l' = 64: L_max = 65600 completes token 1024 */
    const double need = gpu_dec_bytes(&sh, &p, 1) + 2.0 * sh.B * sh.G * sh.D * 2;
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess || (double)free_b < need * 1.05)
        attn_skip_test("this test needs %.1f GB of GPU memory, %.1f GB are free", need / 1e9, (double)free_b / 1e9);
    gpu_dec g;
    gpu_dec_init(&g, sh, &p, "caches past 2^31 elements");
    cr_assert(g.nkv > 2147483648ull, "the test shape must pass 2^31 elements [%s]", g.ctx);
    assert_ok(gpu_dec_fill(&g, g.seed, 0), g.ctx);
    assert_ok(attn_dsync(), g.ctx);
    /* the last row of every sequence and its token come from the append: keep them, poison them, append them */
    const size_t row = (size_t)sh.G * sh.D, last_tok = (size_t)g.NC - 1;
    uint16_t *k_new, *v_new, *tok_k, *tok_v; /* the new rows, and the last tokens as the reference compressed them */
    int32_t *cmp_len, *problem;
    assert_ok(attn_dalloc((void **)&k_new, (size_t)sh.B * row * 2), g.ctx);
    assert_ok(attn_dalloc((void **)&v_new, (size_t)sh.B * row * 2), g.ctx);
    assert_ok(attn_dalloc((void **)&tok_k, (size_t)sh.B * row * 2), g.ctx);
    assert_ok(attn_dalloc((void **)&tok_v, (size_t)sh.B * row * 2), g.ctx);
    assert_ok(attn_dalloc((void **)&problem, 8), g.ctx);
    int32_t *h = attn_alloc_i32(sh.B);
    cr_assert(h, "out of host memory");
    for (int b = 0; b < sh.B; ++b) {
        const size_t at = ((size_t)b * sh.N + sh.N - 1) * row, tok = ((size_t)b * g.NC + last_tok) * row;
        assert_ok(attn_cuda_status(cudaMemcpy(k_new + b * row, g.k + at, row * 2, cudaMemcpyDeviceToDevice), "copy"), g.ctx);
        assert_ok(attn_cuda_status(cudaMemcpy(v_new + b * row, g.v + at, row * 2, cudaMemcpyDeviceToDevice), "copy"), g.ctx);
        assert_ok(attn_cuda_status(cudaMemcpy(tok_k + b * row, g.kc + tok, row * 2, cudaMemcpyDeviceToDevice), "copy"), g.ctx);
        assert_ok(attn_cuda_status(cudaMemcpy(tok_v + b * row, g.vc + tok, row * 2, cudaMemcpyDeviceToDevice), "copy"), g.ctx);
        assert_ok(attn_dpoison(g.k + at, row * 2), g.ctx);
        assert_ok(attn_dpoison(g.v + at, row * 2), g.ctx);
        assert_ok(attn_dpoison(g.kc + tok, row * 2), g.ctx);
        assert_ok(attn_dpoison(g.vc + tok, row * 2), g.ctx);
        h[b] = (int32_t)last_tok;
    }
    cmp_len = upload_i32(h, sh.B, g.ctx);
    for (int b = 0; b < sh.B; ++b) h[b] = sh.N - 1;
    assert_ok(attn_h2d(g.len, h, (size_t)sh.B * 4), g.ctx);
    attn_shape ash = sh;
    ash.M = 1;
    assert_ok(kv_cache_append_cuda(&ash, &p, k_new, v_new, NULL, NULL, NULL, NULL, g.k, g.v, g.kc, g.vc, g.len, cmp_len,
                                   problem, 0),
              g.ctx);
    assert_ok(attn_dsync(), g.ctx);
    int32_t prob[2] = {-7, -7};
    ATTN_SHARE(prob);
    assert_ok(attn_d2h(prob, problem, 8), g.ctx);
    cr_assert(prob[0] == KV_CACHE_OK, "the append of the last tokens reported problem {%d, %d} [%s]", prob[0], prob[1], g.ctx);
    assert_ok(attn_d2h(h, g.len, (size_t)sh.B * 4), g.ctx);
    for (int b = 0; b < sh.B; ++b) {
        cr_assert(h[b] == sh.N, "lengths[%d] = %d after the append, expected %d [%s]", b, h[b], sh.N, g.ctx);
        const size_t at = ((size_t)b * sh.N + sh.N - 1) * row, tok = ((size_t)b * g.NC + last_tok) * row;
        attn_dcmp r;
        const struct {
            const uint16_t *got, *want;
            attn_tol tol;
            const char *what;
        } parts[4] = {{g.k + at, k_new + b * row, {0, 0}, "the appended key row"},
                      {g.v + at, v_new + b * row, {0, 0}, "the appended value row"},
                      {g.kc + tok, tok_k + b * row, kTolCmpCuda, "the compressed key token the append completed"},
                      {g.vc + tok, tok_v + b * row, kTolCmpCuda, "the compressed value token the append completed"}};
        for (int x = 0; x < 4; ++x) {
            assert_ok(attn_dcompare_bf16_bf16(parts[x].got, parts[x].want, row, parts[x].tol, &r), g.ctx);
            cr_assert(r.n_bad == 0, "sequence %d: %s (row %d, element offset %zu%s): %zu of %zu elements wrong (%zu "
                      "never written), e.g. got %g, expected %g; offsets in 64 bits [%s]", b, parts[x].what,
                      x < 2 ? sh.N - 1 : (int)last_tok, x < 2 ? at : tok, (x < 2 ? at : tok) >= (1ull << 31) ? ", past 2^31" : "",
                      r.n_bad, r.count, r.n_unwritten, r.got, r.expected, g.ctx);
        }
    }
    /* NSA, then dense, on the full caches */
    char msg[1600];
    assert_ok(gpu_dec_run(&g, 0), g.ctx);
    assert_ok(attn_dsync(), g.ctx);
    cr_assert(gpu_dec_check_nsa(&g, "A cache of this shape holds more than 2^31 elements: compute offsets in 64 bits "
                                    "(size_t), e.g. ((size_t)b * L_max + s) * G * D; the append wrote the last row and "
                                    "token of every sequence", msg, sizeof msg) == 0,
              "decode_nsa_cuda: %s [%s]", msg, g.ctx);
    g.nsa = 0;
    void *ws = NULL;
    const size_t ws_bytes = decode_dense_workspace_bytes(&sh);
    assert_ok(attn_dalloc(&ws, ws_bytes ? ws_bytes : 256), g.ctx);
    assert_ok(attn_cuda_status(cudaMemset(g.o, 0xFF, g.nq * 2), "poison"), g.ctx);
    assert_ok(decode_dense_cuda(&sh, g.q, g.k, g.v, g.len, g.o, g.lse, ws, ws_bytes, 0), g.ctx);
    assert_ok(attn_dsync(), g.ctx);
    cr_assert(gpu_dec_check_dense(&g, 1, "offsets past 2^31 elements: 64-bit arithmetic", msg, sizeof msg) == 0,
              "decode_dense_cuda: %s [%s]", msg, g.ctx);
    g.nsa = 1;
    attn_dfree(ws), attn_dfree(k_new), attn_dfree(v_new), attn_dfree(tok_k), attn_dfree(tok_v), attn_dfree(cmp_len);
    attn_dfree(problem);
    free(h);
    gpu_dec_free(&g);
}

/* ================================================================ speed */

typedef struct {
    gpu_dec g;
} speed_ctx;

static int launch_naive(void *ctx, cudaStream_t stream) { return gpu_dec_naive(&((speed_ctx *)ctx)->g, stream); }
static int launch_yours(void *ctx, cudaStream_t stream) { return gpu_dec_run(&((speed_ctx *)ctx)->g, stream); }

static int speed_prepare(void *ctx, int rep, cudaStream_t stream)
{
    speed_ctx *c = (speed_ctx *)ctx;
    return gpu_dec_fill(&c->g, c->g.seed + 1000003ull * (uint64_t)(rep + 2), stream);
}

static int speed_check_dense(void *ctx, int rep, char *msg, size_t len)
{
    (void)rep;
    return gpu_dec_check_dense(&((speed_ctx *)ctx)->g, 0, NULL, msg, len);
}

static int speed_check_nsa(void *ctx, int rep, char *msg, size_t len)
{
    (void)rep;
    return gpu_dec_check_nsa(&((speed_ctx *)ctx)->g, NULL, msg, len);
}

/* The speed tests' shape: 8 sequences of 32768 tokens, the NSA bar's heads (H = 64, G = 4, D = 128). */
static attn_shape speed_shape(void) { return dshape(8, 32768, 64, 4, 128); }

static void run_speed(const attn_nsa_params *p, const char *name, double target)
{
    require_gpu();
    const attn_shape sh = speed_shape();
    size_t free_b = 0, total_b = 0;
    const double need = gpu_dec_bytes(&sh, p, p != NULL);
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess || (double)free_b < need * 1.1)
        attn_skip_test("this test needs %.1f GB of GPU memory, %.1f GB are free", need / 1e9, (double)free_b / 1e9);
    speed_ctx c;
    gpu_dec_init(&c.g, sh, p, name);
    gpu_dec *g = &c.g;
    attn_timing_checks checks;
    memset(&checks, 0, sizeof checks);
    checks.prepare = speed_prepare, checks.check = p ? speed_check_nsa : speed_check_dense, checks.ctx = &c;
    int x = 0;
    checks.inputs[x++] = (attn_guarded){g->q, g->nq * 2, "q"};
    checks.inputs[x++] = (attn_guarded){g->k, g->nkv * 2, "k_cache"};
    checks.inputs[x++] = (attn_guarded){g->v, g->nkv * 2, "v_cache"};
    checks.inputs[x++] = (attn_guarded){g->len, (size_t)sh.B * 4, "lengths"};
    if (p) {
        checks.inputs[x++] = (attn_guarded){g->kc, g->ncmp * 2, "k_cmp_cache"};
        checks.inputs[x++] = (attn_guarded){g->vc, g->ncmp * 2, "v_cmp_cache"};
        checks.inputs[x++] = (attn_guarded){g->gates, 3 * g->nl * 4, "the gates"};
    }
    attn_timing t_base, t_yours;
    char why[1800] = "";
    const int status = attn_time_ab_checked(launch_naive, &c, launch_yours, &c, &checks, 1, 5, &t_base, &t_yours, why,
                                            sizeof why);
    cr_assert(status == ATTN_OK, "checked timing failed: %s [%s]", why, g->ctx);
    /* what the decode must read: the whole cache (dense), or the compressed cache, n selected blocks and the
     * window (NSA, the paper's count: NC + n l' + w tokens per (b, g)), K and V, bf16; and q, o */
    const double per_seq = p ? (double)g->NC + fmin((double)sh.N, (double)p->n * p->l_sel + p->w) : (double)sh.N;
    const double bytes = per_seq * sh.B * sh.G * sh.D * 2.0 * 2 + 2.0 * g->nq * 2;
    const double flops = 4.0 * sh.D * per_seq * sh.B * sh.H;
    char st[200], text[300];
    snprintf(text, sizeof text, "B=%d L=%d H=%d G=%d D=%d, one query per sequence%s%s", sh.B, sh.N, sh.H, sh.G, sh.D,
             p ? ", NSA " : "", p ? params_text(p, st, sizeof st) : "");
    attn_speed_result res = {"11", name, text, t_base.median_ms, t_yours.median_ms, target, flops, bytes};
    attn_report_speed(&res);
    const double ratio = t_base.median_ms / t_yours.median_ms;
    cr_expect(ratio >= target, "speed-up %.2fx is below the target %.2fx (frozen naive decode %.3f ms, yours %.3f ms) [%s]",
              ratio, target, t_base.median_ms, t_yours.median_ms, g->ctx);
    gpu_dec_free(g);
}

ATTN_TEST(speed, dense_decode_vs_naive) { run_speed(NULL, "dense_decode_vs_naive", TARGET_DENSE_DECODE_VS_NAIVE); }

ATTN_TEST(speed, nsa_decode_vs_naive)
{
    const attn_nsa_params p = attn_nsa_paper_defaults();
    run_speed(&p, "nsa_decode_vs_naive", TARGET_NSA_DECODE_VS_NAIVE);
}

/* ================================================================ errors */

ATTN_TEST(errors, bad_input_is_named)
{
    const size_t big = 1 << 16;
    float *f = attn_alloc_f32(big), *lse = attn_alloc_f32(big);
    uint16_t *h16 = attn_alloc_bf16(big);
    int32_t *idx = attn_alloc_i32(big), *len = attn_alloc_i32(4), *prob = attn_alloc_i32(2);
    cr_assert(f && lse && h16 && idx && len && prob, "out of host memory");
    memset(idx, 0, big * 4);
    len[0] = len[1] = 3, len[2] = len[3] = 0;
    const attn_shape ok = dshape(2, 8, 4, 2, 64), bad_g = dshape(2, 8, 6, 4, 64), bad_d = dshape(2, 8, 4, 2, 80);
    attn_shape m2 = ok, not_causal = ok, zero_b = ok;
    m2.M = 2, not_causal.causal = 0, zero_b.B = 0;
    const attn_nsa_params mean = attn_nsa_paper_defaults(), lin = paper_linear();
    attn_nsa_params n2 = mean, d5 = mean;
    n2.n = 2, d5.d = 5;
    int32_t *too_long = attn_alloc_i32(2);
    too_long[0] = 9, too_long[1] = 1; /* L_max = 8 */

    /* the C part */
    assert_status(decode_dense_cpu(NULL, 0, f, f, f, len, f, lse), ATTN_ERR_NULL_POINTER, "dense_cpu: shape NULL");
    assert_status(decode_dense_cpu(&ok, 0, NULL, f, f, len, f, lse), ATTN_ERR_NULL_POINTER, "dense_cpu: q NULL");
    assert_status(decode_dense_cpu(&ok, 0, f, f, f, NULL, f, lse), ATTN_ERR_NULL_POINTER, "dense_cpu: lengths NULL");
    assert_status(decode_dense_cpu(&m2, 0, f, f, f, len, f, lse), ATTN_ERR_BAD_ARGUMENT, "dense_cpu: M = 2");
    assert_status(decode_dense_cpu(&not_causal, 0, f, f, f, len, f, lse), ATTN_ERR_BAD_ARGUMENT, "dense_cpu: causal 0");
    assert_status(decode_dense_cpu(&bad_g, 0, f, f, f, len, f, lse), ATTN_ERR_HEADS_NOT_DIVISIBLE, "dense_cpu: H=6 G=4");
    assert_status(decode_dense_cpu(&zero_b, 0, f, f, f, len, f, lse), ATTN_ERR_BAD_SHAPE, "dense_cpu: B = 0");
    assert_status(decode_dense_cpu(&ok, 0, f, f, f, too_long, f, lse), ATTN_ERR_BAD_ARGUMENT,
                  "dense_cpu: a length past the cache (9 > L_max = 8)");
    assert_status(decode_split_cpu(&ok, 4, f, f, f, len, NULL, lse), ATTN_ERR_NULL_POINTER, "split_cpu: o_part NULL");
    assert_status(decode_split_cpu(&ok, 4, f, f, f, too_long, f, lse), ATTN_ERR_BAD_ARGUMENT, "split_cpu: length 9");
    assert_status(decode_combine_cpu(&ok, 0, f, lse, f, lse), ATTN_ERR_BAD_ARGUMENT, "combine_cpu: 0 splits");
    assert_status(decode_combine_cpu(&ok, 2, f, NULL, f, lse), ATTN_ERR_NULL_POINTER, "combine_cpu: lse_part NULL");
#define NSA_CPU(sh, p, q, lens, gs) decode_nsa_cpu(sh, p, q, f, f, f, f, lens, f, gs, f, f, lse, lse, lse, idx)
    assert_status(NSA_CPU(&ok, NULL, f, len, f), ATTN_ERR_NULL_POINTER, "nsa_cpu: parameters NULL");
    assert_status(NSA_CPU(&ok, &n2, f, len, f), ATTN_ERR_BAD_ARGUMENT, "nsa_cpu: n = 2");
    assert_status(NSA_CPU(&ok, &d5, f, len, f), ATTN_ERR_BAD_ARGUMENT, "nsa_cpu: d = 5");
    assert_status(NSA_CPU(&ok, &mean, NULL, len, f), ATTN_ERR_NULL_POINTER, "nsa_cpu: q NULL");
    assert_status(NSA_CPU(&ok, &mean, f, len, NULL), ATTN_ERR_NULL_POINTER, "nsa_cpu: g_slc NULL");
    assert_status(NSA_CPU(&m2, &mean, f, len, f), ATTN_ERR_BAD_ARGUMENT, "nsa_cpu: M = 2");
    assert_status(NSA_CPU(&ok, &mean, f, too_long, f), ATTN_ERR_BAD_ARGUMENT, "nsa_cpu: length 9 > L_max");
#undef NSA_CPU
#define APPEND_CPU(sh, p, kn, wk, pos, kc, lens, cl) \
    kv_cache_append_cpu(sh, p, kn, f, NULL, wk, f, pos, f, f, kc, f, lens, cl, prob)
    assert_status(APPEND_CPU(&ok, &mean, NULL, NULL, NULL, f, len, idx), ATTN_ERR_NULL_POINTER, "append_cpu: k_new NULL");
    assert_status(APPEND_CPU(&ok, &mean, f, NULL, NULL, NULL, len, idx), ATTN_ERR_NULL_POINTER,
                  "append_cpu: k_cmp_cache NULL with NSA parameters");
    assert_status(APPEND_CPU(&ok, &mean, f, NULL, NULL, f, len, NULL), ATTN_ERR_NULL_POINTER,
                  "append_cpu: cmp_lengths NULL with NSA parameters");
    assert_status(APPEND_CPU(&ok, &lin, f, NULL, f, f, len, idx), ATTN_ERR_NULL_POINTER, "append_cpu: linear, w_k NULL");
    assert_status(APPEND_CPU(&ok, &lin, f, f, NULL, f, len, idx), ATTN_ERR_NULL_POINTER, "append_cpu: linear, pos NULL");
    assert_status(APPEND_CPU(&bad_g, &mean, f, NULL, NULL, f, len, idx), ATTN_ERR_HEADS_NOT_DIVISIBLE, "append_cpu: H=6 G=4");
    assert_status(APPEND_CPU(&not_causal, NULL, f, NULL, NULL, NULL, len, NULL), ATTN_ERR_BAD_ARGUMENT,
                  "append_cpu: causal = 0");
    assert_status(APPEND_CPU(&ok, &n2, f, NULL, NULL, f, len, idx), ATTN_ERR_BAD_ARGUMENT, "append_cpu: n = 2");
#undef APPEND_CPU

    /* the CUDA part's host-side checks (host pointers stand in for device ones: every check fails before any
     * is used) */
    const size_t wd = decode_dense_workspace_bytes(&ok), wn = decode_nsa_workspace_bytes(&ok, &mean);
    cr_assert(wd > 0 && wd <= big * 2 && wn > 0 && wn <= big * 2,
              "the workspace sizes of a valid tiny problem (B=2 L_max=8 H=4 G=2 D=64, paper defaults): dense %zu, NSA %zu "
              "bytes, expected nonzero and at most %zu", wd, wn, big * 2);
    cr_assert(decode_dense_workspace_bytes(&bad_d) == 0, "decode_dense_workspace_bytes(B=2 L_max=8 H=4 G=2 D=80) must be 0: D is 64 or 128");
    cr_assert(decode_dense_workspace_bytes(&m2) == 0, "decode_dense_workspace_bytes(B=2 M=2 L_max=8 H=4 G=2 D=64) must be 0: one query per sequence");
    cr_assert(decode_nsa_workspace_bytes(&ok, &n2) == 0, "decode_nsa_workspace_bytes(B=2 L_max=8 H=4 G=2 D=64, n = 2) must be 0: n >= 3");
    cr_assert(decode_nsa_workspace_bytes(NULL, &mean) == 0, "decode_nsa_workspace_bytes(NULL shape, paper defaults) must be 0");
    const attn_shape wide = dshape(1, 8, 64, 2, 64); /* H/G = 32 */
    cr_assert(decode_nsa_workspace_bytes(&wide, &mean) == 0, "decode_nsa_workspace_bytes(B=1 L_max=8 H=64 G=2 D=64: H/G = 32) must be 0: at most 16 heads per kv "
              "head");
#define DENSE_CUDA(sh, q, o, ws, wsb) decode_dense_cuda(sh, q, h16, h16, idx, o, lse, ws, wsb, 0)
    assert_status(DENSE_CUDA(&bad_d, h16, h16, h16, wd), ATTN_ERR_UNSUPPORTED_D, "dense_cuda: D = 80");
    assert_status(DENSE_CUDA(&ok, NULL, h16, h16, wd), ATTN_ERR_NULL_POINTER, "dense_cuda: q NULL");
    assert_status(DENSE_CUDA(&ok, h16, h16, NULL, wd), ATTN_ERR_NULL_POINTER, "dense_cuda: workspace NULL");
    assert_status(DENSE_CUDA(&ok, h16, h16, h16, wd - 1), ATTN_ERR_BAD_ARGUMENT, "dense_cuda: workspace too small");
    assert_status(DENSE_CUDA(&ok, h16 + 1, h16, h16, wd), ATTN_ERR_BAD_ARGUMENT, "dense_cuda: misaligned q");
    assert_status(DENSE_CUDA(&ok, h16, h16 + 4, h16, wd), ATTN_ERR_BAD_ARGUMENT, "dense_cuda: misaligned o");
    assert_status(DENSE_CUDA(&m2, h16, h16, h16, wd), ATTN_ERR_BAD_ARGUMENT, "dense_cuda: M = 2");
    assert_status(DENSE_CUDA(&not_causal, h16, h16, h16, wd), ATTN_ERR_BAD_ARGUMENT, "dense_cuda: causal = 0");
#undef DENSE_CUDA
#define NSA_CUDA(sh, p, q, o, ws, wsb) \
    decode_nsa_cuda(sh, p, q, h16, h16, h16, h16, idx, f, f, f, o, lse, lse, lse, idx, ws, wsb, 0)
    assert_status(NSA_CUDA(&bad_d, &mean, h16, h16, h16, wn), ATTN_ERR_UNSUPPORTED_D, "nsa_cuda: D = 80");
    assert_status(NSA_CUDA(&wide, &mean, h16, h16, h16, wn), ATTN_ERR_BAD_ARGUMENT, "nsa_cuda: H/G = 32");
    assert_status(NSA_CUDA(&ok, NULL, h16, h16, h16, wn), ATTN_ERR_NULL_POINTER, "nsa_cuda: parameters NULL");
    assert_status(NSA_CUDA(&ok, &n2, h16, h16, h16, wn), ATTN_ERR_BAD_ARGUMENT, "nsa_cuda: n = 2");
    assert_status(NSA_CUDA(&ok, &mean, NULL, h16, h16, wn), ATTN_ERR_NULL_POINTER, "nsa_cuda: q NULL");
    assert_status(NSA_CUDA(&ok, &mean, h16, h16, NULL, wn), ATTN_ERR_NULL_POINTER, "nsa_cuda: workspace NULL");
    assert_status(NSA_CUDA(&ok, &mean, h16, h16, h16, wn - 1), ATTN_ERR_BAD_ARGUMENT, "nsa_cuda: workspace too small");
    assert_status(NSA_CUDA(&ok, &mean, h16 + 1, h16, h16, wn), ATTN_ERR_BAD_ARGUMENT, "nsa_cuda: misaligned q");
    assert_status(NSA_CUDA(&m2, &mean, h16, h16, h16, wn), ATTN_ERR_BAD_ARGUMENT, "nsa_cuda: M = 2");
#undef NSA_CUDA
#define APPEND_CUDA(sh, p, kn, wk, kc, lens, pr) \
    kv_cache_append_cuda(sh, p, kn, h16, NULL, wk, h16, h16, h16, h16, kc, h16, lens, idx, pr, 0)
    assert_status(APPEND_CUDA(&bad_d, &mean, h16, NULL, h16, idx, idx), ATTN_ERR_UNSUPPORTED_D, "append_cuda: D = 80");
    assert_status(APPEND_CUDA(&ok, &mean, NULL, NULL, h16, idx, idx), ATTN_ERR_NULL_POINTER, "append_cuda: k_new NULL");
    assert_status(APPEND_CUDA(&ok, &mean, h16, NULL, h16, idx, NULL), ATTN_ERR_NULL_POINTER, "append_cuda: problem NULL");
    assert_status(APPEND_CUDA(&ok, &mean, h16, NULL, NULL, idx, idx), ATTN_ERR_NULL_POINTER,
                  "append_cuda: k_cmp_cache NULL with NSA parameters");
    assert_status(APPEND_CUDA(&ok, &lin, h16, NULL, h16, idx, idx), ATTN_ERR_NULL_POINTER, "append_cuda: linear, w_k NULL");
    assert_status(APPEND_CUDA(&ok, &mean, h16 + 1, NULL, h16, idx, idx), ATTN_ERR_BAD_ARGUMENT, "append_cuda: misaligned k_new");
    assert_status(APPEND_CUDA(&not_causal, &mean, h16, NULL, h16, idx, idx), ATTN_ERR_BAD_ARGUMENT, "append_cuda: causal 0");
    assert_status(APPEND_CUDA(&ok, &d5, h16, NULL, h16, idx, idx), ATTN_ERR_BAD_ARGUMENT, "append_cuda: d = 5");
#undef APPEND_CUDA
    free(f), free(lse), free(h16), free(idx), free(len), free(prob), free(too_long);
}

/* The bad appends of the header, each on a cache that holds data: a named error, the problem reported as
 * {kind, b}, and not a byte of the caches, lengths or cmp_lengths changed. */
typedef struct {
    const char *what;
    int kind, b;
    int32_t len[3], cmp[3], counts[3];
} bad_append;

/* L_max = 40, M = 8, l = 8, d = 4: a cache of length L holds max(0, (L - 8) / 4 + 1) compressed tokens. */
static const bad_append kBadAppends[] = {
    {"the cache of sequence 1 is full (36 + 8 > 40)", KV_CACHE_FULL, 1, {10, 36, 5}, {1, 8, 0}, {8, 8, 8}},
    {"sequence 2 is exactly full (40 + 1 > 40)", KV_CACHE_FULL, 2, {10, 12, 40}, {1, 2, 9}, {0, 0, 1}},
    {"a length past the cache (41 > L_max = 40)", KV_CACHE_BAD_LENGTH, 0, {41, 12, 5}, {9, 2, 0}, {1, 1, 1}},
    {"a negative length", KV_CACHE_BAD_LENGTH, 2, {10, 12, -1}, {1, 2, 0}, {1, 1, 1}},
    {"cmp_lengths disagrees with the length (12 tokens hold 2 compressed ones, not 3)", KV_CACHE_CMP_MISMATCH, 1,
     {10, 12, 5}, {1, 3, 0}, {1, 1, 1}},
    {"cmp_lengths lags one step behind the length (a cache of length 8 holds 1 token)", KV_CACHE_CMP_MISMATCH, 0,
     {8, 12, 5}, {0, 2, 0}, {1, 1, 1}},
    {"a count past M (9 > 8)", KV_CACHE_BAD_COUNT, 1, {10, 12, 5}, {1, 2, 0}, {1, 9, 1}},
    {"a negative count", KV_CACHE_BAD_COUNT, 0, {10, 12, 5}, {1, 2, 0}, {-1, 1, 1}},
};
#define N_BAD_APPENDS ((int)(sizeof kBadAppends / sizeof kBadAppends[0]))

ATTN_TEST(errors, append_rejects_bad_input)
{
    const attn_shape sh = attn_make_shape(3, 8, 40, 4, 2, 16, 1);
    const attn_nsa_params p = params(8, 4, 8, 4, 16, ATTN_NSA_MEAN, 1);
    const size_t row = (size_t)sh.G * sh.D, nkv = (size_t)sh.B * sh.N * row;
    const size_t ncmp = (size_t)sh.B * attn_nsa_num_cmp(sh.N, &p) * row, nnew = (size_t)sh.B * sh.M * row;
    attn_rng rng;
    attn_rng_seed(&rng, attn_test_seed());
    float *k = random_f32(nkv, sh.D, 1.0f, &rng), *v = random_f32(nkv, sh.D, 1.0f, &rng);
    float *kc = random_f32(ncmp, sh.D, 1.0f, &rng), *vc = random_f32(ncmp, sh.D, 1.0f, &rng);
    float *k_new = random_f32(nnew, sh.D, 1.0f, &rng), *v_new = random_f32(nnew, sh.D, 1.0f, &rng);
    float *k0 = attn_alloc_f32(nkv), *v0 = attn_alloc_f32(nkv), *kc0 = attn_alloc_f32(ncmp), *vc0 = attn_alloc_f32(ncmp);
    int32_t *len = attn_alloc_i32(3), *cmp = attn_alloc_i32(3), *cnt = attn_alloc_i32(3), *prob = attn_alloc_i32(2);
    cr_assert(k0 && v0 && kc0 && vc0 && len && cmp && cnt && prob, "out of host memory");
    memcpy(k0, k, nkv * 4), memcpy(v0, v, nkv * 4), memcpy(kc0, kc, ncmp * 4), memcpy(vc0, vc, ncmp * 4);
    for (int x = 0; x < N_BAD_APPENDS; ++x) {
        const bad_append *bad = &kBadAppends[x];
        memcpy(len, bad->len, 12), memcpy(cmp, bad->cmp, 12), memcpy(cnt, bad->counts, 12);
        prob[0] = prob[1] = -7;
        char ctx[300];
        snprintf(ctx, sizeof ctx, "kv_cache_append_cpu with %s (B=3, L_max=40, M=8, l=8, d=4)", bad->what);
        assert_status(kv_cache_append_cpu(&sh, &p, k_new, v_new, cnt, NULL, NULL, NULL, k, v, kc, vc, len, cmp, prob),
                      ATTN_ERR_BAD_ARGUMENT, ctx);
        cr_assert(prob[0] == bad->kind && prob[1] == bad->b, "problem = {%d, %d}, expected {%d, %d} (kv_cache_problem, "
                  "the first sequence with a problem) [%s]", prob[0], prob[1], bad->kind, bad->b, ctx);
        cr_assert(!memcmp(len, bad->len, 12) && !memcmp(cmp, bad->cmp, 12),
                  "lengths or cmp_lengths changed: a bad append changes nothing [%s]", ctx);
        cr_assert(!memcmp(k, k0, nkv * 4) && !memcmp(v, v0, nkv * 4) && !memcmp(kc, kc0, ncmp * 4) && !memcmp(vc, vc0, ncmp * 4),
                  "the caches changed: a bad append changes no byte of them (check every sequence before writing "
                  "any) [%s]", ctx);
    }
    /* and a good one still reports {KV_CACHE_OK, -1} */
    const int32_t good_len[3] = {10, 12, 5}, good_cmp[3] = {1, 2, 0}, good_cnt[3] = {1, 0, 8};
    memcpy(len, good_len, 12), memcpy(cmp, good_cmp, 12), memcpy(cnt, good_cnt, 12);
    prob[0] = prob[1] = -7;
    const int st = kv_cache_append_cpu(&sh, &p, k_new, v_new, cnt, NULL, NULL, NULL, k, v, kc, vc, len, cmp, prob);
    if (st != ATTN_ERR_NOT_IMPLEMENTED) { /* the stub checks, then stops: what the checks report is given code */
        assert_ok(st, "a good append after the bad ones");
    }
    cr_assert(prob[0] == KV_CACHE_OK && prob[1] == -1, "a good append (B=3, L_max=40, M=8, l=8, d=4, lengths 10 12 5, counts 1 0 8) "
              "reports problem {%d, %d}, expected {KV_CACHE_OK, -1}", prob[0], prob[1]);
    free(k), free(v), free(kc), free(vc), free(k_new), free(v_new), free(k0), free(v0), free(kc0), free(vc0);
    free(len), free(cmp), free(cnt), free(prob);
}

/* The same on the device: the checks run there, so the call itself succeeds; `problem` says what was wrong,
 * and the device's caches, lengths and cmp_lengths are unchanged. The first `count` cases of kBadAppends. */
static void check_bad_appends_cuda(int count)
{
    const attn_shape sh = attn_make_shape(3, 8, 40, 4, 2, 64, 1);
    const attn_nsa_params p = params(8, 4, 8, 4, 16, ATTN_NSA_MEAN, 1);
    const size_t row = (size_t)sh.G * sh.D, nkv = (size_t)sh.B * sh.N * row;
    const size_t ncmp = (size_t)sh.B * attn_nsa_num_cmp(sh.N, &p) * row, nnew = (size_t)sh.B * sh.M * row;
    const uint64_t seed = attn_test_seed();
    uint16_t *k, *v, *kc, *vc, *k_new, *v_new;
    int32_t *len, *cmp, *cnt, *prob;
    const char *ctx0 = "kv_cache_append_cuda with bad input";
    uint16_t **b16[] = {&k, &v, &kc, &vc, &k_new, &v_new};
    const size_t n16[] = {nkv, nkv, ncmp, ncmp, nnew, nnew};
    for (int x = 0; x < 6; ++x) {
        assert_ok(attn_dalloc((void **)b16[x], n16[x] * 2), ctx0);
        assert_ok(attn_dfill_random_bf16(*b16[x], n16[x], sh.D, 1.0f, seed + x, 0), ctx0);
    }
    assert_ok(attn_dalloc((void **)&len, 12), ctx0);
    assert_ok(attn_dalloc((void **)&cmp, 12), ctx0);
    assert_ok(attn_dalloc((void **)&cnt, 12), ctx0);
    assert_ok(attn_dalloc((void **)&prob, 8), ctx0);
    assert_ok(attn_dsync(), ctx0);
    unsigned char *before = attn_alloc_bytes(2 * (nkv + ncmp) * 2), *after = attn_alloc_bytes(2 * (nkv + ncmp) * 2);
    cr_assert(before && after, "out of host memory");
    const uint16_t *parts[4] = {k, v, kc, vc};
    const size_t sizes[4] = {nkv * 2, nkv * 2, ncmp * 2, ncmp * 2};
    size_t off = 0;
    for (int x = 0; x < 4; ++x) {
        assert_ok(attn_d2h(before + off, parts[x], sizes[x]), ctx0);
        off += sizes[x];
    }
    for (int x = 0; x < count && x < N_BAD_APPENDS; ++x) {
        const bad_append *bad = &kBadAppends[x];
        char ctx[300];
        snprintf(ctx, sizeof ctx, "kv_cache_append_cuda with %s (B=3, L_max=40, M=8, l=8, d=4)", bad->what);
        assert_ok(attn_h2d(len, bad->len, 12), ctx);
        assert_ok(attn_h2d(cmp, bad->cmp, 12), ctx);
        assert_ok(attn_h2d(cnt, bad->counts, 12), ctx);
        assert_ok(attn_dpoison(prob, 8), ctx);
        /* the check runs on the device: the call succeeds (a stub stops after it: its check is given code) */
        const int st = kv_cache_append_cuda(&sh, &p, k_new, v_new, cnt, NULL, NULL, NULL, k, v, kc, vc, len, cmp, prob, 0);
        if (st != ATTN_ERR_NOT_IMPLEMENTED) assert_ok(st, ctx);
        int32_t got[2], lens[3], cmps[3];
        ATTN_SHARE(got);
        ATTN_SHARE(lens);
        ATTN_SHARE(cmps);
        assert_ok(attn_d2h(got, prob, 8), ctx);
        assert_ok(attn_d2h(lens, len, 12), ctx);
        assert_ok(attn_d2h(cmps, cmp, 12), ctx);
        cr_assert(got[0] == bad->kind && got[1] == bad->b, "problem = {%d, %d} on the device, expected {%d, %d} [%s]", got[0],
                  got[1], bad->kind, bad->b, ctx);
        cr_assert(!memcmp(lens, bad->len, 12) && !memcmp(cmps, bad->cmp, 12),
                  "lengths or cmp_lengths changed on the device: a bad append changes nothing [%s]", ctx);
        off = 0;
        for (int y = 0; y < 4; ++y) {
            assert_ok(attn_d2h(after + off, parts[y], sizes[y]), ctx);
            off += sizes[y];
        }
        cr_assert(!memcmp(before, after, off), "the device's caches changed: a bad append changes no byte of them (the "
                  "kernels that write must find the problem check_kernel reported and do nothing) [%s]", ctx);
    }
    free(before), free(after);
    for (int x = 0; x < 6; ++x) attn_dfree(*b16[x]);
    attn_dfree(len), attn_dfree(cmp), attn_dfree(cnt), attn_dfree(prob);
}

ATTN_TEST(errors, append_cuda_rejects_bad_input)
{
    require_gpu();
    check_bad_appends_cuda(N_BAD_APPENDS);
}
