/*
 * lesson_08.cu - the benchmark's entries of lesson 08 (NSA top-n block selection), from the tree the
 * program is linked with, swept over --config:
 *   select               nsa_select_cuda: block scores from q . k_cmp and lse_cmp, top-n lists; against
 *                        the frozen GPU reference selection (the lesson's reported speed), whose lists
 *                        it must equal up to near-ties of the reference's scores
 *   cmp_plus_select      lesson 07's cmp_attention + select: the first half of the course's bar
 *   compress_cmp_select  the same with compression, for the record (the bar leaves compression out)
 * The inputs are made without lesson 07's code (bench_select: random k_cmp, lse_cmp from the frozen
 * GPU reference).
 */
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "nsa_select_ref.h"
#include "topn_selection.h"

/* scores that differ by less than this (relative, or absolutely below TIE_ATOL) are a near-tie: the
 * kernel and the reference sum them in different orders, so either choice is right (the tests' rule) */
#define TIE_RTOL 2e-4
#define TIE_ATOL 1e-12

static int setup_select(const bench_case *c, void **state)
{
    bench_select *s = (bench_select *)calloc(1, sizeof *s);
    if (!s) return attn_fail(ATTN_ERR_OUT_OF_MEMORY, "host memory for the bench state");
    const int st = bench_select_init(s, c, 0);
    if (st) free(s);
    else *state = s;
    return st;
}

static void teardown_select(void *state)
{
    if (!state) return;
    bench_select_release((bench_select *)state);
    free(state);
}

static int launch_select(void *ctx, cudaStream_t stream)
{
    const bench_select *s = (const bench_select *)ctx;
    return nsa_select_cuda(&s->c.shape, &s->c.nsa, s->q, s->kc, s->lse_cmp, s->idx, stream);
}

/* What is wrong with one list against the reference's (NULL: nothing): the rules of common/nsa.h that
 * need no scores (ascending, causal, the forced blocks, min(n, t / l' + 1) entries then -1), then the
 * set: where it differs, the weakest block chosen must tie with the strongest left out. */
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

static int check_select(const bench_case *c, void *state, int *failed, char *msg, size_t msg_len)
{
    (void)c;
    const bench_select *s = (const bench_select *)state;
    const attn_shape *sh = &s->c.shape;
    const attn_nsa_params *p = &s->c.nsa;
    const int L = attn_nsa_list_heads(sh, p), n = p->n;
    const size_t lists = s->n_idx / n, n_scores = lists * (size_t)s->nb;
    float *d_scores = NULL, *scores = (float *)malloc(n_scores * sizeof(float));
    int32_t *d_ref = NULL, *ref = (int32_t *)malloc(s->n_idx * 4), *got = (int32_t *)malloc(s->n_idx * 4);
    char *in = (char *)malloc((size_t)s->nb), *want = (char *)malloc((size_t)s->nb);
    int st = scores && ref && got && in && want ? ATTN_OK : attn_fail(ATTN_ERR_OUT_OF_MEMORY, "host memory for the check");
    if (!st) st = attn_dalloc((void **)&d_scores, n_scores * sizeof(float));
    if (!st) st = attn_dalloc((void **)&d_ref, s->n_idx * 4);
    if (!st) st = attn_ref_nsa_select(sh, p, s->q, s->kc, s->lse_cmp, d_scores, d_ref, 0);
    if (!st) st = attn_dsync();
    if (!st) st = attn_d2h(scores, d_scores, n_scores * sizeof(float));
    if (!st) st = attn_d2h(ref, d_ref, s->n_idx * 4);
    if (!st) st = attn_d2h(got, s->idx, s->n_idx * 4);
    *failed = 0;
    for (size_t row = 0; !st && row < lists && !*failed; ++row) {
        const long i = (long)((row / L) % sh->M), t = attn_query_pos(sh, (int)i);
        const char *why = judge_list(p, t, s->nb, scores + row * s->nb, got + row * n, ref + row * n, in, want);
        if (why) {
            *failed = 1;
            snprintf(msg, msg_len, "list of (b=%zu, i=%ld, list %zu), t=%ld: %s (first entries: got %d %d %d, the "
                     "reference %d %d %d)", row / L / sh->M, i, row % L, t, why, got[row * n], got[row * n + 1],
                     got[row * n + 2], ref[row * n], ref[row * n + 1], ref[row * n + 2]);
        }
    }
    attn_dfree(d_scores);
    attn_dfree(d_ref);
    free(scores);
    free(ref);
    free(got);
    free(in);
    free(want);
    return st;
}

/* the q . k_cmp products of the visible (query head, compressed token) pairs (the ranking is not counted) */
static double select_flops(const bench_case *c, const void *state)
{
    (void)state;
    return 2.0 * c->shape.D * bench_cmp_pairs(c);
}

/* q, k_cmp and lse_cmp read, the lists written */
static double select_bytes(const bench_case *c, const void *state)
{
    const bench_select *s = (const bench_select *)state;
    const attn_shape *sh = &c->shape;
    return attn_q_elems(sh) * 2.0 + (double)s->nc * sh->B * sh->G * sh->D * 2.0 + attn_lse_elems(sh) * 4.0 +
           (double)s->n_idx * 4.0;
}

/* the check's reference lists and scores beside the inputs */
static double select_device_bytes(const bench_case *c) { return bench_select_device_bytes(c, 1); }

/* The course's bar (from the lesson READMEs, set on an H200) at its shape: N = 65536, B = 1, H = 64,
 * G = 4, D = 128, causal, M = N. */
static int bar_shape(const bench_case *c)
{
    const attn_shape *s = &c->shape;
    return s->N == 65536 && s->M == s->N && s->B == 1 && s->H == 64 && s->G == 4 && s->D == 128 && s->causal;
}

static double cmp_select_bar(const bench_case *c)
{
    if (!bar_shape(c)) return 0.0;
    if (!strncmp(c->config, "mean", 4)) return 10.5;
    if (!strncmp(c->config, "paper", 5)) return 21.3;
    return 0.0;
}

BENCH_LESSON(8)
{
    bench_entry *e = bench_add(t, "select", BENCH_SOLUTION,
                               "nsa_select_cuda: block scores from q . k_cmp and lse_cmp, then the top-n lists");
    e->params = BENCH_NSA;
    e->suites = "nsa";
    e->supports = bench_supports_nsa;
    e->device_bytes = select_device_bytes;
    e->setup = setup_select;
    e->launch = launch_select;
    e->check = check_select;
    e->teardown = teardown_select;
    e->flops = select_flops;
    e->bytes = select_bytes;
    e->baseline = "ref_nsa_select";

    e = bench_add(t, "cmp_plus_select", BENCH_SUM,
                  "cmp_attention (lesson 07) + select: the first half of the course's bar at N = 65536");
    e->params = BENCH_NSA;
    e->suites = "nsa";
    e->parts[0] = "cmp_attention";
    e->parts[1] = "select";
    e->bar_ms = cmp_select_bar;

    e = bench_add(t, "compress_cmp_select", BENCH_SUM,
                  "compress + cmp_attention + select: the first half with compression, which the bar leaves out");
    e->params = BENCH_NSA;
    e->suites = "nsa";
    e->parts[0] = "compress";
    e->parts[1] = "cmp_attention";
    e->parts[2] = "select";
}
