/*
 * test_util_nsa.h - helpers shared by the tests of the NSA lessons that judge block lists (08, 10, 11) and
 * run the whole NSA (10, 11), on top of test_util.h (header-only like it, included once per test binary).
 *
 *   block lists   the index poison, list_text, judge_list (lesson 08's rule: a list is a SET, and may differ
 *                 from the oracle's only where the oracle's block scores nearly tie), check_block_lists for
 *                 the lists [B, M, L, n] of a prefill
 *   NSA inputs    the NSA configurations, random fp32 arrays, linear-mode weights, gates, bf16 rounding (10, 11)
 *   device        bf16 and fp32 uploads, a bit-for-bit comparison (10, 11)
 *
 * Like test_util.h, nothing here calls lesson code: the tests hand what these helpers make to the lesson's
 * functions, which run in a runner process (common/grading/rpc.h).
 */
#ifndef TEST_UTIL_NSA_H
#define TEST_UTIL_NSA_H

#include "nsa.h"
#include "test_util.h"

/* ---------------------------------------------------------------- block lists */

/* Indices are poisoned with 0x7f7f7f7f (not all ones: that is -1, the padding value). */
#define INDEX_POISON_BYTE 0x7F
#define INDEX_POISON 0x7F7F7F7F
/* Block scores below this are equal: exp of logits ~28 below the row's lse. */
#define TIE_ATOL 1e-12

/* "[3 0 -1 unwritten]" */
static inline void list_text(char *buf, size_t len, const int32_t *x, int n)
{
    size_t o = (size_t)snprintf(buf, len, "[");
    for (int k = 0; k < n && o < len; ++k) {
        if (x[k] == INDEX_POISON) o += (size_t)snprintf(buf + o, len - o, "%sunwritten", k ? " " : "");
        else o += (size_t)snprintf(buf + o, len - o, "%s%d", k ? " " : "", x[k]);
    }
    if (o < len) snprintf(buf + o, len - o, "]");
}

/* What is wrong with one list `got` [n] of the query at position t (empty string: nothing; t < 0, an empty
 * sequence: every entry -1). `scores` is the oracle's row [NB], `ref` its list. With `exact` the oracle's
 * choice is the only right one (ties go to the lower index); otherwise a different set passes when every
 * block left out beats every chosen one (the forced blocks aside) by at most tie_rtol (relative) + TIE_ATOL. */
static inline void judge_list(char *why, size_t len, const attn_nsa_params *p, long t, long NB, const double *scores,
                              const int32_t *got, const int32_t *ref, int exact, double tie_rtol)
{
    const int n = p->n;
    why[0] = 0;
    if (t < 0) { /* an empty sequence: every entry -1 */
        for (int k = 0; k < n; ++k)
            if (got[k] != -1) {
                snprintf(why, len, "an empty sequence (length 0) has no block: entry %d must be -1", k);
                return;
            }
        return;
    }
    const long cur = t / p->l_sel, cand = cur + 1, count = cand < n ? cand : n;
    for (int k = 0; k < n; ++k) {
        if (got[k] == INDEX_POISON) {
            snprintf(why, len, "entry %d was never written", k);
            return;
        }
        if (k < count && (got[k] < 0 || got[k] >= NB)) {
            snprintf(why, len, "entry %d is %d: expected %ld blocks in [0, %ld], then -1", k, got[k], count, cur);
            return;
        }
        if (k < count && got[k] > cur) {
            snprintf(why, len, "block %d is not a candidate: it starts after t (blocks j with j*l' <= t, j <= %ld)",
                     got[k], cur);
            return;
        }
        if (k >= count && got[k] != -1) {
            snprintf(why, len, "entry %d is %d: only %ld candidate blocks, the rest must be -1", k, got[k], cand);
            return;
        }
        if (k > 0 && k < count && got[k] <= got[k - 1]) {
            snprintf(why, len, "not strictly ascending at entry %d", k);
            return;
        }
    }
    char *in = (char *)calloc((size_t)NB, 1), *want = (char *)calloc((size_t)NB, 1);
    cr_assert(in && want, "out of host memory");
    for (long k = 0; k < count; ++k) in[got[k]] = 1, want[ref[k]] = 1;
    const long forced[3] = {0, cur - 1, cur};
    for (int f = 0; f < 3; ++f)
        if (forced[f] >= 0 && !in[forced[f]]) {
            snprintf(why, len, "forced block %ld (%s) is missing", forced[f],
                     f == 0 ? "block 0" : f == 1 ? "the block before t's" : "the block holding t");
            free(in), free(want);
            return;
        }
    /* the weakest chosen block and the strongest left out, by the oracle's scores */
    long weak = -1, strong = -1;
    int differs = 0;
    for (long j = 0; j < cand; ++j) {
        differs |= in[j] != want[j];
        const int is_forced = j == 0 || j == cur || j == cur - 1;
        if (in[j] && !is_forced && (weak < 0 || scores[j] < scores[weak])) weak = j;
        if (!in[j] && (strong < 0 || scores[j] > scores[strong])) strong = j;
    }
    if (differs) {
        if (exact)
            snprintf(why, len, "a different set, and the oracle's choice is exact here (ties go to the lower index)");
        else if (weak >= 0 && strong >= 0 && scores[strong] - scores[weak] > tie_rtol * scores[strong] + TIE_ATOL)
            snprintf(why, len,
                     "a different set: block %ld was left out with score %.9g, but block %ld (score %.9g) was chosen: "
                     "%.2g relative apart, more than a near-tie (%.0e)",
                     strong, scores[strong], weak, scores[weak], (scores[strong] - scores[weak]) / scores[strong],
                     tie_rtol);
    }
    free(in), free(want);
}

/* Judge every list [B, M, L, n] of a prefill (query i at position attn_query_pos) against the oracle's
 * `ref` and `scores` [B, M, L, NB]; the message names the first bad row (b, i, t, list) with both lists,
 * and counts the bad rows. */
static inline void check_block_lists(const attn_shape *sh, const attn_nsa_params *p, const double *scores,
                                     const int32_t *ref, const int32_t *got, int exact, double tie_rtol,
                                     const char *who, const char *ctx)
{
    const int L = attn_nsa_list_heads(sh, p), n = p->n;
    const long NB = attn_nsa_num_blocks(sh->N, p);
    size_t bad = 0;
    char first[1400] = "";
    for (int b = 0; b < sh->B; ++b)
        for (int i = 0; i < sh->M; ++i)
            for (int list = 0; list < L; ++list) {
                const size_t r = ((size_t)b * sh->M + i) * L + list;
                const long t = attn_query_pos(sh, i);
                char why[400];
                judge_list(why, sizeof why, p, t, NB, scores + r * NB, got + r * n, ref + r * n, exact, tie_rtol);
                if (!why[0]) continue;
                if (!bad++) {
                    char g_txt[400], r_txt[400];
                    list_text(g_txt, sizeof g_txt, got + r * n, n), list_text(r_txt, sizeof r_txt, ref + r * n, n);
                    snprintf(first, sizeof first, "b=%d i=%d (t=%ld) %s=%d: %s; got %s, expected %s", b, i, t,
                             p->heads_share_selection ? "g" : "h", list, why, g_txt, r_txt);
                }
            }
    cr_assert(bad == 0, "%s: %zu of %zu block lists wrong; first at %s [%s]", who, bad, (size_t)sh->B * sh->M * L,
              first, ctx);
}

/* ---------------------------------------------------------------- NSA inputs (lessons 10, 11) */

/* The two configurations of the course: the paper's (l = 32, d = 16, l' = 64, n = 16, w = 512, with the
 * linear compression it learns) and mean-pool (l = d = l' = 64). */
static inline attn_nsa_params paper_linear(void)
{
    attn_nsa_params p = attn_nsa_paper_defaults();
    p.mode = ATTN_NSA_LINEAR;
    return p;
}

static inline attn_nsa_params with_nw(attn_nsa_params p, int n, int w)
{
    p.n = n, p.w = w;
    return p;
}

/* "l=32 d=16 l'=64 n=16 w=512 linear, shared lists" */
static inline const char *params_text(const attn_nsa_params *p, char *buf, size_t len)
{
    snprintf(buf, len, "l=%d d=%d l'=%d n=%d w=%d %s, %s lists", p->l, p->d, p->l_sel, p->n, p->w,
             p->mode == ATTN_NSA_MEAN ? "mean" : "linear", p->heads_share_selection ? "shared" : "per-head");
    return buf;
}

/* n random floats (attn_fill_random: rows of `row`, times `scale`) in a new host array. */
static inline float *random_f32(size_t n, size_t row, float scale, attn_rng *rng)
{
    float *x = attn_alloc_f32(n);
    cr_assert(x, "out of host memory");
    attn_fill_random(x, n, row, scale, rng);
    return x;
}

/* Round in place to the nearest bf16 value, so that a reference sees what a bf16 kernel sees. */
static inline void round_to_bf16(float *x, size_t n)
{
    for (size_t e = 0; e < n; ++e) x[e] = attn_bf16_to_f32(attn_f32_to_bf16(x[e]));
}

/* The gates of a case. */
typedef enum {
    GATES_RANDOM, /* uniform in [0, 1] per query, head and branch: the model's sigmoid gates */
    GATES_ONE,    /* every gate 1: the plain sum of the three branches */
    GATES_CMP,    /* 1 on one branch, 0 on the others: o is that branch alone */
    GATES_SLC,
    GATES_SWA,
} gate_kind;

/* n gates of branch `branch` (0 compressed, 1 selected, 2 window) of the kind given, in a new host array. */
static inline float *gates_of(gate_kind kind, int branch, size_t n, attn_rng *rng)
{
    float *g = attn_alloc_f32(n);
    cr_assert(g, "out of host memory");
    for (size_t e = 0; e < n; ++e)
        g[e] = kind == GATES_RANDOM ? (float)attn_rng_uniform(rng)
               : kind == GATES_ONE  ? 1.0f
                                    : ((int)kind - (int)GATES_CMP == branch ? 1.0f : 0.0f);
    return g;
}

/* Linear mode's compression weights, drawn from rng in this order: w_k and w_v [G, l, D, D] (times
 * 1/sqrt(l D)), then pos [l, D] (times 0.5). */
static inline void draw_linear_weights(const attn_shape *s, int l, attn_rng *rng, float **w_k, float **w_v, float **pos)
{
    const size_t nw = (size_t)s->G * l * s->D * s->D;
    *w_k = random_f32(nw, s->D, 1.0f / sqrtf((float)(l * s->D)), rng);
    *w_v = random_f32(nw, s->D, 1.0f / sqrtf((float)(l * s->D)), rng);
    *pos = random_f32((size_t)l * s->D, s->D, 0.5f, rng);
}

/* The gates [n] of the three branches, of one kind, drawn from rng in this order: compressed, selected, window. */
static inline void draw_gates(gate_kind kind, size_t n, attn_rng *rng, float **g_cmp, float **g_slc, float **g_swa)
{
    *g_cmp = gates_of(kind, 0, n, rng), *g_slc = gates_of(kind, 1, n, rng), *g_swa = gates_of(kind, 2, n, rng);
}

/* Round a case's q [nq], k and v [nkv] and, when w_k is set, its compression weights (draw_linear_weights, block
 * length l) to bf16; the gates stay fp32. */
static inline void round_nsa_inputs(const attn_shape *s, int l, float *q, size_t nq, float *k, float *v, size_t nkv,
                                    float *w_k, float *w_v, float *pos)
{
    round_to_bf16(q, nq), round_to_bf16(k, nkv), round_to_bf16(v, nkv);
    if (w_k) {
        const size_t nw = (size_t)s->G * l * s->D * s->D;
        round_to_bf16(w_k, nw), round_to_bf16(w_v, nw), round_to_bf16(pos, (size_t)l * s->D);
    }
}

/* ---------------------------------------------------------------- device (lessons 10, 11) */

/* x [n] rounded to bf16 in a new device array (NULL for NULL; one element for n = 0). The poison stays the
 * poison: a poisoned float (a NaN) becomes the bf16 poison 0xFFFF, not whatever it rounds to. */
static inline uint16_t *upload_bf16(const float *x, size_t n, const char *ctx)
{
    if (!x) return NULL;
    uint16_t *h = attn_alloc_bf16(n ? n : 1), *d = NULL;
    cr_assert(h, "out of host memory [%s]", ctx);
    attn_f32_to_bf16_array(x, h, n);
    for (size_t e = 0; e < n; ++e)
        if (attn_is_poison_f32(x[e])) h[e] = 0xFFFF;
    assert_ok(attn_dalloc((void **)&d, (n ? n : 1) * 2), ctx);
    assert_ok(attn_h2d(d, h, n * 2), ctx);
    free(h);
    return d;
}

/* x [n] in a new device array (one element for n = 0). */
static inline float *upload_f32(const float *x, size_t n, const char *ctx)
{
    float *d = NULL;
    assert_ok(attn_dalloc((void **)&d, (n ? n : 1) * 4), ctx);
    assert_ok(attn_h2d(d, x, n * 4), ctx);
    return d;
}

/* Same bits whatever is asked for, and run after run (the message counts the bytes that differ and names one). */
static inline void compare_bits(const void *a, const void *b, size_t bytes, const char *what, const char *ctx)
{
    const unsigned char *x = (const unsigned char *)a, *y = (const unsigned char *)b;
    size_t differ = 0, at = 0;
    for (size_t e = 0; e < bytes; ++e)
        if (x[e] != y[e]) differ++, at = e;
    cr_assert(differ == 0, "%s: %zu bytes differ (e.g. byte %zu) [%s]", what, differ, at, ctx);
}

#endif
