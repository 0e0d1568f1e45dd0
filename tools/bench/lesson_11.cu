/*
 * lesson_11.cu - the benchmark's entries of lesson 11 (decoding with a KV cache), from the tree the program is
 * linked with, on caches in which every sequence holds N tokens (one query per sequence: --M 1):
 *   decode_dense  decode_dense_cuda, the split-KV ("flash-decoding") dense decode, against the frozen naive
 *                 decode (the lesson's speed target), checked against the fp32 GPU reference
 *   decode_nsa    decode_nsa_cuda, swept over --config, on random compressed caches (the decode reads them; how
 *                 they were compressed does not matter to it), against the same naive dense decode, checked as
 *                 the tests check it: the compressed branch and the lists against the frozen GPU references
 *                 (lists as sets, near-ties of the reference's scores allowed), the selected branch on the
 *                 kernel's own lists, the window, the gated sum
 * GB/s counts the K and V bytes a decode cannot avoid reading once (bf16): the whole cache for the dense decode;
 * for NSA the compressed cache and the distinct keys of the selected blocks and the window of each (sequence,
 * kv head). q and o are left out: at one query per sequence they are a few hundred KB.
 * Both entries (and the frozen naive decode) are capturable: --graph times them replayed from a CUDA graph too
 * (rows *_graph). decode_nsa's `versus` is decode_dense: the summary prints the NSA-over-dense speed-up and
 * bytes ratio on each case beside the NSA paper's expected ratio (nsa_expected_ratio).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "decoding.h"
#include "nsa_forward_ref.h"
#include "nsa_select_ref.h"

typedef struct {
    bench_attn a;      /* first: the kit's functions take the state as a bench_attn. q [B, 1, H, D], the caches
                          k, v [B, N, G, D], o, and lse (dense only) */
    int32_t *lengths;  /* [B], every sequence N tokens long */
    void *ws;
    size_t ws_bytes;
    /* NSA */
    long nc, nb;
    int lists;         /* per sequence: G (shared selection) or H */
    size_t n_idx;
    uint16_t *kc, *vc; /* the compressed caches [B, NC, G, D] */
    float *gates;      /* g_cmp, g_slc, g_swa one after the other, [3][B, 1, H] */
    int32_t *idx;      /* the kernel's lists [B, 1, L, n] */
} decode_state;

static void teardown_decode(void *state)
{
    decode_state *s = (decode_state *)state;
    if (!s) return;
    bench_attn_release(&s->a);
    attn_dfree(s->lengths);
    attn_dfree(s->ws);
    attn_dfree(s->kc);
    attn_dfree(s->vc);
    attn_dfree(s->gates);
    attn_dfree(s->idx);
    free(s);
}

static int setup_decode(const bench_case *c, void **state, int nsa)
{
    const attn_shape *sh = &c->shape;
    decode_state *s = (decode_state *)calloc(1, sizeof *s);
    int32_t *len = (int32_t *)malloc((size_t)sh->B * sizeof(int32_t));
    int st = s && len ? ATTN_OK : attn_fail(ATTN_ERR_OUT_OF_MEMORY, "host memory for the bench state");
    if (!st) st = bench_attn_init(&s->a, c, 2, !nsa, 0);
    for (int b = 0; !st && b < sh->B; ++b) len[b] = sh->N;
    if (!st) st = attn_dalloc((void **)&s->lengths, (size_t)sh->B * sizeof(int32_t));
    if (!st) st = attn_h2d(s->lengths, len, (size_t)sh->B * sizeof(int32_t));
    free(len);
    if (!st) {
        s->ws_bytes = nsa ? decode_nsa_workspace_bytes(sh, &c->nsa) : decode_dense_workspace_bytes(sh);
        if (!s->ws_bytes) st = attn_fail(ATTN_ERR_BAD_ARGUMENT, "the lesson's workspace size is 0 for this case");
    }
    if (!st) st = attn_dalloc(&s->ws, s->ws_bytes);
    if (!st && nsa) {
        s->nc = attn_nsa_num_cmp(sh->N, &c->nsa), s->nb = attn_nsa_num_blocks(sh->N, &c->nsa);
        s->lists = attn_nsa_list_heads(sh, &c->nsa);
        s->n_idx = (size_t)sh->B * s->lists * c->nsa.n;
        const size_t ncmp = (size_t)sh->B * s->nc * sh->G * sh->D, ng = (size_t)sh->B * sh->H;
        st = attn_dalloc((void **)&s->kc, ncmp * 2);
        if (!st) st = attn_dalloc((void **)&s->vc, ncmp * 2);
        if (!st) st = bench_fill_compressed(c, s->kc, s->nc, 0);
        if (!st) st = bench_fill_compressed(c, s->vc, s->nc, 1);
        if (!st) st = attn_dalloc((void **)&s->gates, 3 * ng * sizeof(float));
        if (!st) st = attn_dfill_random_f32(s->gates, 3 * ng, (size_t)sh->H, 0.5f, bench_seed(c, 24), 0);
        if (!st) st = attn_dalloc((void **)&s->idx, s->n_idx * sizeof(int32_t));
    }
    if (st) {
        teardown_decode(s);
        return st;
    }
    *state = s;
    return ATTN_OK;
}

static int setup_dense(const bench_case *c, void **state) { return setup_decode(c, state, 0); }
static int setup_nsa(const bench_case *c, void **state) { return setup_decode(c, state, 1); }

static int launch_dense(void *ctx, cudaStream_t stream)
{
    const decode_state *s = (const decode_state *)ctx;
    const bench_attn *a = &s->a;
    return decode_dense_cuda(&a->c.shape, (const uint16_t *)a->q, (const uint16_t *)a->k, (const uint16_t *)a->v,
                             s->lengths, (uint16_t *)a->o, a->lse, s->ws, s->ws_bytes, stream);
}

static int launch_nsa(void *ctx, cudaStream_t stream)
{
    const decode_state *s = (const decode_state *)ctx;
    const bench_attn *a = &s->a;
    const size_t ng = (size_t)a->c.shape.B * a->c.shape.H;
    return decode_nsa_cuda(&a->c.shape, &a->c.nsa, (const uint16_t *)a->q, (const uint16_t *)a->k,
                           (const uint16_t *)a->v, s->kc, s->vc, s->lengths, s->gates, s->gates + ng,
                           s->gates + 2 * ng, (uint16_t *)a->o, NULL, NULL, NULL, s->idx, s->ws, s->ws_bytes, stream);
}

static int supports_decode(const bench_case *c, char *why, size_t why_len)
{
    if (c->shape.M != 1) {
        snprintf(why, why_len, "a decoding step: one query per sequence (--M 1)");
        return 0;
    }
    return bench_supports_causal_d64_128(c, why, why_len);
}

static int supports_nsa_decode(const bench_case *c, char *why, size_t why_len)
{
    if (!supports_decode(c, why, why_len) || !bench_supports_nsa(c, why, why_len)) return 0;
    if (c->shape.H / c->shape.G > 16) {
        snprintf(why, why_len, "H/G = %d: decode_nsa_cuda takes at most 16 query heads per kv head",
                 c->shape.H / c->shape.G);
        return 0;
    }
    return 1;
}

/* the inputs, the caches, the check's references */
static double dense_device_bytes(const bench_case *c) { return bench_attn_device_bytes_bf16(c) + 64e6; }

static double nsa_device_bytes(const bench_case *c)
{
    const attn_shape *s = &c->shape;
    const double nc = (double)attn_nsa_num_cmp(s->N, &c->nsa), nb = (double)attn_nsa_num_blocks(s->N, &c->nsa);
    const double lists = (double)s->B * attn_nsa_list_heads(s, &c->nsa);
    return bench_attn_device_bytes_bf16(c) + 2.0 * nc * s->B * s->G * s->D * 2 + (double)s->B * s->G * 16 * nc * 4 +
           2.0 * lists * c->nsa.n * 4 + lists * nb * 4 + 3.0 * attn_q_elems(s) * 4;
}

/* ---------------------------------------------------------------- checks */

static int check_dense(const bench_case *c, void *state, int *failed, char *msg, size_t msg_len)
{
    (void)c;
    attn_gpu_ref_opts ro;
    memset(&ro, 0, sizeof ro); /* the case's shape: one query at t = N - 1, causal: every key of the cache */
    return bench_check_reference(&((decode_state *)state)->a, &ro, failed, msg, msg_len);
}

/* One list of the kernel's against the reference's at t: valid (ascending candidates, the forced blocks,
 * -1 after them) and the same set, or a different one only where the scores nearly tie. 0 when it passes. */
static int judge_list(const attn_nsa_params *p, long t, const float *scores, const int32_t *got, const int32_t *ref,
                      char *msg, size_t len)
{
    const long cur = t / p->l_sel, cand = cur + 1, count = cand < p->n ? cand : p->n;
    char *in = (char *)calloc((size_t)cand, 1), *want = (char *)calloc((size_t)cand, 1);
    int bad = !in || !want;
    if (bad) snprintf(msg, len, "no host memory for the list check");
    for (int e = 0; !bad && e < p->n; ++e) {
        const int32_t j = got[e];
        if (e < count ? (j < 0 || j > cur || (e > 0 && j <= got[e - 1])) : j != -1) {
            snprintf(msg, len, "entry %d is %d: expected %ld ascending blocks in [0, %ld], then -1", e, j, count, cur);
            bad = 1;
        } else if (e < count) {
            in[j] = 1;
            if (ref[e] >= 0 && ref[e] < cand) want[ref[e]] = 1;
        }
    }
    const long forced[3] = {0, cur - 1, cur};
    for (int f = 0; !bad && f < 3; ++f)
        if (forced[f] >= 0 && !in[forced[f]]) {
            snprintf(msg, len, "forced block %ld is missing", forced[f]);
            bad = 1;
        }
    long weak = -1, strong = -1;
    for (long j = 0; !bad && j < cand; ++j) {
        const int is_forced = j == 0 || j == cur || j == cur - 1;
        if (in[j] && !want[j] && !is_forced && (weak < 0 || scores[j] < scores[weak])) weak = j;
        if (!in[j] && want[j] && (strong < 0 || scores[j] > scores[strong])) strong = j;
    }
    if (!bad && weak >= 0 && strong >= 0 && scores[strong] - scores[weak] > 2e-3 * fabs(scores[strong]) + 1e-12) {
        snprintf(msg, len, "block %ld (score %.7g) was chosen over block %ld (score %.7g): more than a near-tie apart",
                 weak, scores[weak], strong, scores[strong]);
        bad = 1;
    }
    if (!bad && (weak >= 0) != (strong >= 0)) {
        snprintf(msg, len, "a set of another size than the reference's");
        bad = 1;
    }
    free(in), free(want);
    return bad;
}

static int check_nsa(const bench_case *c, void *state, int *failed, char *msg, size_t msg_len)
{
    const decode_state *s = (const decode_state *)state;
    const attn_shape *sh = &c->shape;
    const attn_nsa_params *p = &c->nsa;
    const size_t nq = attn_q_elems(sh), nl = attn_lse_elems(sh), ng = (size_t)sh->B * sh->H;
    const size_t nscores = (size_t)sh->B * s->lists * s->nb;
    const uint16_t *q = (const uint16_t *)s->a.q, *k = (const uint16_t *)s->a.k, *v = (const uint16_t *)s->a.v;
    float *tmp = NULL, *sum = NULL, *lse_cmp = NULL, *scores = NULL;
    int32_t *ref_idx = NULL;
    int32_t *h_got = (int32_t *)malloc(s->n_idx * 4), *h_ref = (int32_t *)malloc(s->n_idx * 4);
    float *h_scores = (float *)malloc(nscores * 4);
    int st = h_got && h_ref && h_scores ? ATTN_OK : attn_fail(ATTN_ERR_OUT_OF_MEMORY, "host memory for the check");
    if (!st) st = attn_dalloc((void **)&tmp, nq * 4);
    if (!st) st = attn_dalloc((void **)&sum, nq * 4);
    if (!st) st = attn_dalloc((void **)&lse_cmp, nl * 4);
    if (!st) st = attn_dalloc((void **)&scores, nscores * 4);
    if (!st) st = attn_dalloc((void **)&ref_idx, s->n_idx * 4);
    attn_gpu_ref_opts cmp, slc, swa;
    memset(&cmp, 0, sizeof cmp), memset(&slc, 0, sizeof slc), memset(&swa, 0, sizeof swa);
    cmp.shape = *sh, cmp.shape.N = (int)s->nc, cmp.positions = sh->N, cmp.cmp_l = p->l, cmp.cmp_d = p->d;
    slc.shape = *sh, slc.block_indices = s->idx, slc.num_blocks = p->n, slc.block_size = p->l_sel;
    slc.lists_per_head = !p->heads_share_selection;
    swa.shape = *sh, swa.window = p->w;
    if (!st) st = attn_gpu_reference(&cmp, q, s->kc, s->vc, tmp, lse_cmp, 0);
    if (!st) st = attn_ref_nsa_gate_add(sh, tmp, s->gates, sum, 1, 0);
    if (!st) st = attn_ref_nsa_select(sh, p, q, s->kc, lse_cmp, scores, ref_idx, 0);
    if (!st) st = attn_dsync();
    if (!st) st = attn_d2h(h_got, s->idx, s->n_idx * 4);
    if (!st) st = attn_d2h(h_ref, ref_idx, s->n_idx * 4);
    if (!st) st = attn_d2h(h_scores, scores, nscores * 4);
    *failed = 0;
    for (size_t r = 0; !st && !*failed && r < (size_t)sh->B * s->lists; ++r) {
        char why[300];
        if (judge_list(p, sh->N - 1, h_scores + r * s->nb, h_got + r * p->n, h_ref + r * p->n, why, sizeof why)) {
            snprintf(msg, msg_len, "block_indices of b=%zu list %zu: %s", r / s->lists, r % s->lists, why);
            *failed = 1;
        }
    }
    if (!st && !*failed) st = attn_gpu_reference(&slc, q, k, v, tmp, NULL, 0);
    if (!st && !*failed) st = attn_ref_nsa_gate_add(sh, tmp, s->gates + ng, sum, 0, 0);
    if (!st && !*failed) st = attn_gpu_reference(&swa, q, k, v, tmp, NULL, 0);
    if (!st && !*failed) st = attn_ref_nsa_gate_add(sh, tmp, s->gates + 2 * ng, sum, 0, 0);
    if (!st && !*failed) st = attn_dsync();
    attn_dcmp r;
    if (!st && !*failed) st = attn_dcompare_bf16_f32((const uint16_t *)s->a.o, sum, nq, ATTN_TOL_BF16, &r);
    if (!st && !*failed && r.n_bad) *failed = 1, bench_dcmp_text("o", &r, msg, msg_len);
    attn_dfree(tmp), attn_dfree(sum), attn_dfree(lse_cmp), attn_dfree(scores), attn_dfree(ref_idx);
    free(h_got), free(h_ref), free(h_scores);
    return st;
}

/* ---------------------------------------------------------------- what a call is credited with */

/* dense: 4 D FLOPs per (query head, key) of the cache (attn_flops with M = 1: every key is visible) */
static double dense_flops(const bench_case *c, const void *state)
{
    (void)state;
    return attn_flops(&c->shape);
}

static double dense_kv_bytes(const bench_case *c, const void *state)
{
    (void)state;
    return 2.0 * attn_kv_elems(&c->shape) * 2.0; /* K and V of every sequence, bf16 */
}

/* The keys an NSA decode reads per (sequence, kv head): the distinct keys of the listed blocks of its lists
 * (clipped at t = N - 1) and of the window; with per_head set, the pairs instead (each query head's own
 * listed keys plus w). From the kernel's lists of its last call. */
static double nsa_keys(const bench_case *c, const decode_state *s, int pairs)
{
    const attn_shape *sh = &c->shape;
    const attn_nsa_params *p = &c->nsa;
    const long t = sh->N - 1, lo = t - p->w + 1 > 0 ? t - p->w + 1 : 0;
    int32_t *idx = (int32_t *)malloc(s->n_idx * 4);
    char *seen = (char *)malloc((size_t)s->nb);
    if (!idx || !seen || attn_d2h(idx, s->idx, s->n_idx * 4) != ATTN_OK) {
        free(idx), free(seen);
        return 0.0;
    }
    const int hpg = sh->H / sh->G, per_g = p->heads_share_selection ? 1 : hpg;
    double keys = 0.0;
    for (int b = 0; b < sh->B; ++b)
        for (int g = 0; g < sh->G; ++g) {
            memset(seen, 0, (size_t)s->nb);
            long listed = 0; /* keys of the listed blocks, counted once per list */
            for (int x = 0; x < per_g; ++x) {
                const int32_t *list = idx + (((size_t)b * s->lists) + (size_t)g * per_g + x) * p->n;
                for (int e = 0; e < p->n && list[e] >= 0; ++e) {
                    const long first = (long)list[e] * p->l_sel, last = first + p->l_sel - 1 < t ? first + p->l_sel - 1 : t;
                    if (list[e] < s->nb) seen[list[e]] = 1;
                    if (last >= first) listed += last - first + 1;
                }
            }
            if (pairs) { /* every head of the group: its list's keys, the compressed tokens and the window */
                keys += (double)listed * (p->heads_share_selection ? hpg : 1) + (double)hpg * (s->nc + (t - lo + 1));
                continue;
            }
            long distinct = 0;
            for (long j = 0; j < s->nb; ++j) {
                const long first = j * p->l_sel, last = first + p->l_sel - 1 < t ? first + p->l_sel - 1 : t;
                if (seen[j]) distinct += last - first + 1;
                else if (last >= lo) distinct += last - (first > lo ? first : lo) + 1; /* the window's part */
            }
            keys += (double)distinct + (double)s->nc;
        }
    free(idx), free(seen);
    return keys;
}

static double nsa_flops(const bench_case *c, const void *state)
{
    return 4.0 * c->shape.D * nsa_keys(c, (const decode_state *)state, 1);
}

static double nsa_kv_bytes(const bench_case *c, const void *state)
{
    return nsa_keys(c, (const decode_state *)state, 0) * c->shape.D * 2.0 * 2.0; /* K and V rows, bf16 */
}

/* The NSA paper's count of what a decode loads, in tokens of K and V per (sequence, kv head), against the dense
 * decode's N: the compressed tokens, the n selected blocks of l' keys and the window of w keys, N / (NC + n l' + w)
 * (the paper's decoding table: 4x at 8k, 6.4x at 16k, 9.1x at 32k, 11.6x at 64k in its configuration l = 32,
 * d = 16, l' = 64, n = 16, w = 512). The counted bytes ratio of the rows is a little higher: a window that
 * overlaps the selected blocks is read once. */
static double nsa_expected_ratio(const bench_case *c)
{
    const attn_nsa_params *p = &c->nsa;
    const double tokens = (double)attn_nsa_num_cmp(c->shape.N, p) + (double)p->n * p->l_sel + p->w;
    return tokens > 0.0 ? c->shape.N / tokens : 0.0;
}

/* The course's bar (COURSE design, measured on an H200): the best vendor kernel's time at L = 65536, H = 64,
 * G = 4, D = 128: B = 1, cuDNN's 50.9 us; B = 64, cuDNN's 4.66 TB/s on the K/V bytes. */
static double dense_bar(const bench_case *c)
{
    const attn_shape *s = &c->shape;
    if (!(s->N == 65536 && s->M == 1 && s->H == 64 && s->G == 4 && s->D == 128 && s->causal)) return 0.0;
    if (s->B == 1) return 0.0509;
    if (s->B == 64) return 2.0 * attn_kv_elems(s) * 2.0 / 4.66e12 * 1e3;
    return 0.0;
}

BENCH_LESSON(11)
{
    bench_entry *e = bench_add(t, "decode_dense", BENCH_SOLUTION,
                               "decode_dense_cuda: split-KV (flash-decoding) dense decode, one query per sequence over "
                               "its whole cache, bf16");
    e->supports = supports_decode;
    e->device_bytes = dense_device_bytes;
    e->setup = setup_dense;
    e->launch = launch_dense;
    e->check = check_dense;
    e->teardown = teardown_decode;
    e->flops = dense_flops;
    e->bytes = dense_kv_bytes;
    e->bar_ms = dense_bar;
    e->baseline = "frozen_decode_naive_bf16";
    e->capturable = 1; /* decoding.h: each function only enqueues work (a decoding step can be a CUDA graph) */

    e = bench_add(t, "decode_nsa", BENCH_SOLUTION,
                  "decode_nsa_cuda: the NSA decode of one query per sequence (compressed cache, top-n blocks, window, "
                  "gated sum) in one launch, bf16");
    e->params = BENCH_NSA;
    e->supports = supports_nsa_decode;
    e->device_bytes = nsa_device_bytes;
    e->setup = setup_nsa;
    e->launch = launch_nsa;
    e->check = check_nsa;
    e->teardown = teardown_decode;
    e->flops = nsa_flops;
    e->bytes = nsa_kv_bytes;
    e->baseline = "frozen_decode_naive_bf16";
    e->capturable = 1;
    e->versus = "decode_dense"; /* the summary's NSA-over-dense speed-up and bytes ratio */
    e->versus_expected = nsa_expected_ratio;
    e->versus_note = "N / (NC + n l' + w), the NSA paper's count of the tokens a decode loads (its table: 11.6x "
                     "at 64k in the paper's configuration)";
}
