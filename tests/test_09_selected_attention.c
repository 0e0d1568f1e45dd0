/*
 * Tests of lesson 09, NSA selected-block attention. Built twice: against lessons/ and solutions/.
 *
 *   c_part     the list checker, and nsa_selected_attention_cpu against the oracle on many shapes,
 *              selection parameters and list layouts
 *   cuda_part  nsa_selected_attention_cuda against the oracle (small shapes) and against the fp32 GPU
 *              reference (a tensor past 2^31 elements); bad device entries; determinism; the optional
 *              fast path nsa_selected_attention_window_cuda called directly, on the shapes it takes, and
 *              its status on those it does not take
 *   speed      against the frozen dense causal flash kernel (lesson 03), output checked on every run
 *   errors     bad input gets a named error code, never a crash
 *
 * Block lists are made here, on the host, the way lesson 08 makes them (block 0, the block holding t
 * and the one before it, then other candidates j * l' <= t, ascending, -1 padding), but with random
 * choices: this lesson grades the attention over a list, whatever chose it. The oracle takes them as
 * its per-query block lists (block_size l', lists per kv group or, with heads_share_selection = 0, per
 * query head).
 */
#include "baselines.h"
#include "selected_attention.h"
#include "test_util.h"

/* Selected attention (n = 16 blocks of l' = 64) against dense causal flash at N = 16384, H = 64, G = 4,
 * D = 128: the ideal is N / 2 / (n l') = 8x fewer key visits. Calibrated on an H200, where the reference
 * runs 2.94x (its kernel is bound by L2 traffic: docs/NSA_PERFORMANCE.md). */
#define TARGET_SELECTED_VS_DENSE ATTN_TARGET_SELECTED_VS_DENSE /* lesson.json */

static const attn_tol kTolLse = {1e-3, 1e-4};

/* ================================================================ block lists */

typedef enum {
    LISTS_TOPN,   /* what lesson 08 makes: forced blocks, then random candidates up to n, -1 padding */
    LISTS_SHORT,  /* the same, half of the lists cut to a random length >= 3 (more -1 padding) */
    LISTS_FUTURE, /* LISTS_TOPN plus, where there is room, up to two blocks after t (legal, they add nothing) */
    LISTS_EMPTY,  /* LISTS_TOPN, but every third list is all -1 and every third list after it holds only
                     blocks after t (or nothing): their rows see no key, o = 0 and lse = -inf */
} list_kind;

static const char *kListKindNames[] = {"top-n lists", "lists with extra -1 padding", "lists with blocks after t",
                                       "lists of which a third are empty and a third hold only blocks after t"};

static int list_has(const int32_t *list, int count, int32_t j)
{
    for (int e = 0; e < count; ++e)
        if (list[e] == j) return 1;
    return 0;
}

/* Lists [B, M, L, n] (L = G with shared selection, H per head) for the shape and parameters. */
static int32_t *make_lists(const attn_shape *sh, const attn_nsa_params *p, list_kind kind, uint64_t seed)
{
    const int L = attn_nsa_list_heads(sh, p), n = p->n;
    const long NB = attn_nsa_num_blocks(sh->N, p);
    const size_t count = (size_t)sh->B * sh->M * L;
    int32_t *lists = (int32_t *)attn_alloc_bytes(count * n * sizeof(int32_t));
    cr_assert(lists, "out of host memory (%zu lists)", count);
    attn_rng rng;
    attn_rng_seed(&rng, seed * 0x9E3779B97F4A7C15ull + 12345);
    for (size_t row = 0; row < count; ++row) {
        int32_t *list = lists + row * n;
        const int i = (int)((row / L) % sh->M);
        const long t = (long)sh->N - sh->M + i, cur = t / p->l_sel, candidates = cur + 1;
        int c = 0;
        if (kind == LISTS_EMPTY && row % 3 != 2) { /* an empty list, or blocks after t only */
            if (row % 3 == 1)
                for (long j = cur + 1; j < NB && c < n && c < 3; ++j) list[c++] = (int32_t)j;
            for (int e = c; e < n; ++e) list[e] = -1;
            continue;
        }
        list[c++] = 0;
        if (cur >= 2) list[c++] = (int32_t)(cur - 1);
        if (cur >= 1) list[c++] = (int32_t)cur; /* cur = 1: block 0 is also the one before it */
        long want = candidates < n ? candidates : n;
        if (kind == LISTS_SHORT && attn_rng_uniform(&rng) < 0.5) {
            const long cut = 3 + (long)(attn_rng_uniform(&rng) * (n - 2));
            if (cut < want) want = cut;
        }
        if (want < c) want = c;
        while (c < want) {
            const int32_t j = (int32_t)(attn_rng_u64(&rng) % (uint64_t)candidates);
            if (!list_has(list, c, j)) list[c++] = j;
        }
        if (kind == LISTS_FUTURE)
            for (int extra = 0; extra < 2 && c < n && cur + 1 < NB; ++extra) {
                const int32_t j = (int32_t)(cur + 1 + (long)(attn_rng_u64(&rng) % (uint64_t)(NB - cur - 1)));
                if (!list_has(list, c, j)) list[c++] = j;
            }
        for (int a = 1; a < c; ++a) /* ascending: insertion sort of at most n entries */
            for (int b = a; b > 0 && list[b - 1] > list[b]; --b) {
                const int32_t tmp = list[b];
                list[b] = list[b - 1], list[b - 1] = tmp;
            }
        for (int e = c; e < n; ++e) list[e] = -1;
    }
    return lists;
}

static attn_oracle_opts oracle_opts(const attn_shape *sh, const attn_nsa_params *p, const int32_t *lists)
{
    attn_oracle_opts o = attn_oracle_dense(sh);
    o.block_indices = lists, o.num_blocks = p->n, o.block_size = p->l_sel;
    o.lists_per_head = !p->heads_share_selection;
    return o;
}

/* "l'=64 n=16 shared lists (H/G=4 heads each)" */
static void params_text(const attn_shape *sh, const attn_nsa_params *p, char *buf, size_t len)
{
    if (p->heads_share_selection)
        snprintf(buf, len, "l'=%d n=%d, one list per kv group (shared by its H/G=%d heads)", p->l_sel, p->n,
                 sh->H / sh->G);
    else
        snprintf(buf, len, "l'=%d n=%d, one list per query head", p->l_sel, p->n);
}

/* The list behind an element (b, i, h), for failure messages: "list (b=0, i=5, t=133, group 1): 0 1 2 -1". */
static void list_text(const attn_shape *sh, const attn_nsa_params *p, const int32_t *lists, int b, int i, int h,
                      char *buf, size_t len)
{
    const int L = attn_nsa_list_heads(sh, p), l = p->heads_share_selection ? h / (sh->H / sh->G) : h;
    const int32_t *list = lists + (((size_t)b * sh->M + i) * L + l) * p->n;
    int used = snprintf(buf, len, "its list (b=%d, i=%d, t=%ld, %s %d, l'=%d):", b, i, (long)sh->N - sh->M + i,
                        p->heads_share_selection ? "group" : "head", l, p->l_sel);
    for (int e = 0; e < p->n && used > 0 && (size_t)used < len - 12; ++e)
        used += snprintf(buf + used, len - used, " %d", (int)list[e]);
}

/* ================================================================ C part */

typedef struct {
    attn_shape sh;
    attn_nsa_params p;
    list_kind kind;
    int large_logits;
} sel_case;

static attn_nsa_params params(int l_sel, int n, int share)
{
    attn_nsa_params p = attn_nsa_paper_defaults();
    p.l_sel = l_sel, p.n = n, p.heads_share_selection = share;
    return p;
}

/* Compare o and lse; on failure the message also prints the worst element's list. */
static void expect_result(const sel_case *c, const problem *pr, const attn_oracle_opts *opts, const int32_t *lists,
                          const float *o_f32, const uint16_t *o_bf16, const float *lse, attn_tol tol, const char *ctx)
{
    attn_cmp r;
    const attn_cmp_source src = {opts, pr->q, pr->k, pr->v, ATTN_QTY_DEFAULT};
    char where[400];
    if (o_bf16)
        attn_compare_bf16_src(&r, "o", ATTN_LAYOUT_BMHD, &src, o_bf16, pr->o_ref, tol);
    else
        attn_compare_f32_src(&r, "o", ATTN_LAYOUT_BMHD, &src, o_f32, pr->o_ref, tol);
    if (!r.ok) list_text(&c->sh, &c->p, lists, r.coord[0], r.coord[1], r.coord[2], where, sizeof where);
    cr_assert(r.ok, "%s; %s [%s]", r.message, where, ctx);
    const attn_cmp_source src_lse = {opts, pr->q, pr->k, pr->v, ATTN_QTY_LSE};
    attn_compare_f32_src(&r, "lse", ATTN_LAYOUT_BHM, &src_lse, lse, pr->lse_ref, o_bf16 ? kTolLse : tol);
    if (!r.ok) list_text(&c->sh, &c->p, lists, r.coord[0], r.coord[2], r.coord[1], where, sizeof where);
    cr_assert(r.ok, "%s; %s [%s]", r.message, where, ctx);
}

static void case_context(const sel_case *c, const problem *pr, const char *label, char *ctx, size_t len)
{
    char pt[120];
    params_text(&c->sh, &c->p, pt, sizeof pt);
    snprintf(ctx, len, "%s, %s, %s%s%s%s", pr->ctx, pt, kListKindNames[c->kind],
             c->large_logits ? ", scores near 120" : "", label ? ", " : "", label ? label : "");
}

static void check_cpu(sel_case c, const char *label)
{
    const uint64_t seed = attn_test_seed();
    problem pr;
    problem_fill(&pr, c.sh, 1.0f, c.large_logits, seed);
    int32_t *lists = make_lists(&c.sh, &c.p, c.kind, seed);
    const attn_oracle_opts opts = oracle_opts(&c.sh, &c.p, lists);
    problem_reference(&pr, &opts);
    char ctx[600];
    case_context(&c, &pr, label, ctx, sizeof ctx);
    float *o = attn_alloc_f32(attn_q_elems(&c.sh)), *lse = attn_alloc_f32(attn_lse_elems(&c.sh));
    cr_assert(o && lse, "out of host memory [%s]", ctx);
    attn_poison(o, attn_q_elems(&c.sh) * 4), attn_poison(lse, attn_lse_elems(&c.sh) * 4);
    assert_ok(nsa_selected_attention_cpu(&c.sh, &c.p, pr.q, pr.k, pr.v, lists, o, lse), ctx);
    expect_result(&c, &pr, &opts, lists, o, NULL, lse, c.large_logits ? ATTN_TOL_F32_LARGE : ATTN_TOL_F32, ctx);
    free(o), free(lse), free(lists);
    problem_free(&pr);
}

static attn_shape shape_scaled(int B, int M, int N, int H, int G, int D, float scale)
{
    attn_shape s = attn_make_shape(B, M, N, H, G, D, 1);
    s.scale = scale;
    return s;
}

ATTN_TEST(c_part, list_check)
{
    /* N = 200, l' = 64: blocks 0..3; M = 2 (t = 198, 199); G = 2 lists of n = 4 per query */
    const attn_shape sh = attn_make_shape(1, 2, 200, 4, 2, 32, 1);
    const attn_nsa_params p = params(64, 4, 1);
    const int32_t good[16] = {0, 1, 2, 3, /**/ 0, 2, 3, -1, /**/ -1, -1, -1, -1, /**/ 0, 3, -1, -1};
    ATTN_SHARE(good);
    assert_ok(nsa_selection_check(&sh, &p, good), "valid lists (one empty, some padded)");
    struct {
        int entry;
        int32_t value;
        const char *why;
    } bad[] = {
        {1, 0, "a repeat (0, 0)"},           {3, 4, "block 4 of 4 blocks (out of range)"},
        {6, 1, "descending (0, 2, 1)"},      {10, 2, "a block after the -1 padding"},
        {13, -2, "-2"},                      {12, 1 << 30, "a huge block number"},
        {0, -5, "a negative entry other than -1"},
    };
    for (int c = 0; c < (int)(sizeof bad / sizeof bad[0]); ++c) {
        int32_t lists[16];
        ATTN_SHARE(lists);
        memcpy(lists, good, sizeof good);
        lists[bad[c].entry] = bad[c].value;
        attn_clear_error();
        const int st = nsa_selection_check(&sh, &p, lists);
        cr_assert(st == ATTN_ERR_BAD_ARGUMENT, "nsa_selection_check accepted a list with %s (returned %s)", bad[c].why,
                  attn_status_name(st));
        cr_assert(strlen(attn_error_detail()) > 0, "nsa_selection_check rejected %s without a detail message",
                  bad[c].why);
    }
    /* N not a multiple of l': N = 130 has 3 blocks, the last one partial (keys 128, 129) */
    const attn_shape partial = attn_make_shape(1, 1, 130, 2, 2, 32, 1);
    const int32_t last_partial[8] = {0, 1, 2, -1, 0, 2, -1, -1};
    ATTN_SHARE(last_partial);
    assert_ok(nsa_selection_check(&partial, &p, last_partial), "N = 130, l' = 64: block 2 (keys 128..129) exists");
    /* per-head lists: [B, M, H, n], H = 4 lists per query */
    const attn_nsa_params per_head = params(64, 4, 0);
    int32_t heads[32];
    ATTN_SHARE(heads);
    for (int e = 0; e < 32; ++e) heads[e] = e % 4 == 0 ? 0 : e % 4 == 1 ? 3 : -1;
    assert_ok(nsa_selection_check(&sh, &per_head, heads), "per-head lists {0, 3, -1, -1}");
    heads[31] = 2; /* the last head's list of the last query: 0 3 -1 2 */
    assert_status(nsa_selection_check(&sh, &per_head, heads), ATTN_ERR_BAD_ARGUMENT,
                  "a per-head list with a block after -1 in its last entry");
    /* the attention checks its lists first */
    static float x[200 * 2 * 32], o[2 * 4 * 32], lse[8];
    int32_t lists[16];
    ATTN_SHARE(x);
    ATTN_SHARE(o);
    ATTN_SHARE(lse);
    ATTN_SHARE(lists);
    memcpy(lists, good, sizeof good);
    lists[5] = 7;
    assert_status(nsa_selected_attention_cpu(&sh, &p, x, x, x, lists, o, lse), ATTN_ERR_BAD_ARGUMENT,
                  "nsa_selected_attention_cpu with block 7 of 4 listed");
}

/* The checker over every batch entry, position and list, and over the whole of a list: n = 7 entries
 * for 4 blocks, with the bad entry past position 4 in the last batch entry's last list; full lists
 * without -1 (n = 4 = NB and n = 3 < NB) are valid. Shared and per-head lists. */
ATTN_TEST(c_part, list_check_batches_and_long_lists)
{
    const attn_shape sh = attn_make_shape(2, 3, 200, 4, 2, 32, 1); /* 4 blocks of 64; B*M = 6 positions */
    for (int share = 1; share >= 0; --share) {
        const attn_nsa_params p = params(64, 7, share);
        const int L = attn_nsa_list_heads(&sh, &p), n_lists = sh.B * sh.M * L;
        int32_t good[2 * 3 * 4 * 7];
        ATTN_SHARE(good);
        const int32_t rows[4][7] = {{0, 1, 2, 3, -1, -1, -1}, {0, 3, -1, -1, -1, -1, -1}, {-1, -1, -1, -1, -1, -1, -1},
                                    {1, 2, -1, -1, -1, -1, -1}};
        for (int l = 0; l < n_lists; ++l) memcpy(good + l * 7, rows[l % 4], sizeof rows[0]);
        char ctx[200], st[120];
        snprintf(ctx, sizeof ctx, "%s, l'=64 (4 blocks), n=7, %s lists", shape_text(&sh, st, sizeof st),
                 share ? "shared" : "per-head");
        assert_ok(nsa_selection_check(&sh, &p, good), ctx);
        const int last = n_lists - 1; /* the last list of batch 1: {1, 2, -1, ...} (n_lists % 4 == 0) */
        struct {
            int list, entry;
            int32_t value;
            const char *why;
        } bad[] = {
            {last, 5, 3, "block 3 after the -1 padding, at entry 5 (past the 4 blocks), last list of batch 1"},
            {last, 6, 0, "block 0 at the last entry (6), after the padding, last list of batch 1"},
            {last - 3, 4, 4, "block 4 of 4 at entry 4 of a full list of batch 1"},
            {last - 2, 6, -2, "-2 at the last entry of a list of batch 1"},
            {last, 1, 1, "a repeat (1, 1) in the last list of batch 1"},
            {last - 2, 2, 2, "descending (0, 3, 2) in batch 1"},
        };
        for (int c = 0; c < (int)(sizeof bad / sizeof bad[0]); ++c) {
            int32_t lists[2 * 3 * 4 * 7];
            ATTN_SHARE(lists);
            memcpy(lists, good, (size_t)n_lists * 7 * sizeof(int32_t));
            lists[bad[c].list * 7 + bad[c].entry] = bad[c].value;
            attn_clear_error();
            const int st_ = nsa_selection_check(&sh, &p, lists);
            cr_assert(st_ == ATTN_ERR_BAD_ARGUMENT,
                      "nsa_selection_check accepted %s (list %d of %d: b=%d, i=%d, %s %d; returned %s) [%s]", bad[c].why,
                      bad[c].list, n_lists, bad[c].list / L / sh.M, bad[c].list / L % sh.M, share ? "group" : "head",
                      bad[c].list % L, attn_status_name(st_), ctx);
        }
        /* full lists without any -1: n = 4 (every block) and n = 3 (fewer entries than blocks) */
        const attn_nsa_params p4 = params(64, 4, share), p3 = params(64, 3, share);
        int32_t full4[2 * 3 * 4 * 4], full3[2 * 3 * 4 * 3];
        ATTN_SHARE(full4);
        ATTN_SHARE(full3);
        for (int l = 0; l < n_lists; ++l) {
            for (int e = 0; e < 4; ++e) full4[l * 4 + e] = e;
            for (int e = 0; e < 3; ++e) full3[l * 3 + e] = e + (l % 2); /* 0 1 2 or 1 2 3 */
        }
        assert_ok(nsa_selection_check(&sh, &p4, full4), ctx);
        assert_ok(nsa_selection_check(&sh, &p3, full3), ctx);
        full3[n_lists * 3 - 1] = 4; /* the last list of batch 1: 1 2 4 */
        assert_status(nsa_selection_check(&sh, &p3, full3), ATTN_ERR_BAD_ARGUMENT, ctx);
    }
}

/* The README's worked example: t = 200, l' = 64, list {0, 2, 3}: keys 0..63, 128..191 and 192..200.
 * The reference here lists those keys one by one (a visibility callback), not by blocks. */
static int worked_example_keys(void *ctx, int b, int h, int i, long t, long s)
{
    (void)ctx, (void)b, (void)h, (void)i, (void)t;
    return (s >= 0 && s <= 63) || (s >= 128 && s <= 200);
}

ATTN_TEST(c_part, worked_example)
{
    const attn_shape sh = attn_make_shape(1, 1, 201, 4, 1, 64, 1); /* one query at t = 200, MQA */
    const attn_nsa_params p = params(64, 3, 1);
    const int32_t list[3] = {0, 2, 3};
    ATTN_SHARE(list);
    problem pr;
    problem_fill(&pr, sh, 1.0f, 0, attn_test_seed());
    attn_oracle_opts opts = attn_oracle_dense(&sh);
    opts.visible = worked_example_keys;
    problem_reference(&pr, &opts);
    char ctx[400];
    snprintf(ctx, sizeof ctx, "%s, l'=64, list {0, 2, 3} at t = 200: keys 0..63 and 128..200", pr.ctx);
    float o[4 * 64], lse[4];
    ATTN_SHARE(o);
    ATTN_SHARE(lse);
    attn_poison(o, sizeof o), attn_poison(lse, sizeof lse);
    assert_ok(nsa_selected_attention_cpu(&sh, &p, pr.q, pr.k, pr.v, list, o, lse), ctx);
    expect_close(&pr, "o", ATTN_LAYOUT_BMHD, o, pr.o_ref, ATTN_TOL_F32);
    expect_close(&pr, "lse", ATTN_LAYOUT_BHM, lse, pr.lse_ref, ATTN_TOL_F32);
    problem_free(&pr);
}

ATTN_TEST(c_part, shapes)
{
    const attn_nsa_params p = params(64, 16, 1);
    const sel_case cases[] = {
        {attn_make_shape(1, 1, 1, 2, 1, 32, 1), p, LISTS_TOPN, 0},      /* N = 1: one key */
        {attn_make_shape(1, 20, 20, 4, 2, 16, 1), p, LISTS_TOPN, 0},    /* N < l': one partial block */
        {attn_make_shape(2, 100, 300, 4, 2, 64, 1), p, LISTS_SHORT, 0}, /* batch 2, M < N, N % l' != 0 */
        {attn_make_shape(1, 1, 1100, 8, 2, 128, 1), p, LISTS_TOPN, 0},  /* decoding: M = 1, 18 blocks */
        {attn_make_shape(3, 70, 70, 2, 2, 32, 1), p, LISTS_SHORT, 0},   /* batch 3 */
        {attn_make_shape(1, 200, 257, 4, 1, 64, 1), p, LISTS_TOPN, 1},  /* scores near 120 */
    };
    for (int c = 0; c < (int)(sizeof cases / sizeof cases[0]); ++c) check_cpu(cases[c], NULL);
}

ATTN_TEST(c_part, gqa_groups)
{
    const attn_nsa_params p = params(64, 4, 1);
    const int hg[][2] = {{4, 4}, {4, 2}, {8, 2}, {32, 2}, {16, 1}}; /* H/G = 1, 2, 4, 16, 16 */
    for (int c = 0; c < 5; ++c) {
        const sel_case sc = {attn_make_shape(1, 150, 400, hg[c][0], hg[c][1], 16, 1), p, LISTS_SHORT, 0};
        check_cpu(sc, NULL);
    }
}

ATTN_TEST(c_part, selection_params)
{
    const attn_shape sh = attn_make_shape(2, 90, 500, 4, 2, 32, 1); /* 8 blocks of 64 */
    check_cpu((sel_case){sh, params(64, 3, 1), LISTS_TOPN, 0}, "n = 3: only the forced blocks");
    check_cpu((sel_case){sh, params(64, 16, 1), LISTS_TOPN, 0}, "n = 16, more than the 8 blocks");
    check_cpu((sel_case){sh, params(64, 5, 1), LISTS_TOPN, 0}, NULL);
    check_cpu((sel_case){sh, params(32, 6, 1), LISTS_SHORT, 0}, NULL);
    check_cpu((sel_case){sh, params(48, 4, 1), LISTS_TOPN, 0}, "blocks of 48 keys");
    check_cpu((sel_case){sh, params(128, 3, 1), LISTS_TOPN, 0}, NULL);
    check_cpu((sel_case){shape_scaled(1, 60, 300, 4, 2, 64, 0.05f), params(64, 4, 1), LISTS_TOPN, 0},
              "softmax scale 0.05");
}

ATTN_TEST(c_part, per_head_lists)
{
    check_cpu((sel_case){attn_make_shape(1, 80, 300, 4, 4, 32, 1), params(64, 3, 0), LISTS_TOPN, 0}, NULL);
    check_cpu((sel_case){attn_make_shape(2, 50, 200, 8, 2, 16, 1), params(32, 4, 0), LISTS_SHORT, 0}, NULL);
    check_cpu((sel_case){attn_make_shape(1, 40, 333, 16, 1, 32, 1), params(64, 5, 0), LISTS_TOPN, 0}, NULL);
}

ATTN_TEST(c_part, blocks_after_t)
{
    check_cpu((sel_case){attn_make_shape(1, 120, 400, 4, 2, 32, 1), params(64, 8, 1), LISTS_FUTURE, 0}, NULL);
    check_cpu((sel_case){attn_make_shape(2, 64, 260, 2, 1, 16, 1), params(32, 12, 0), LISTS_FUTURE, 0}, NULL);
}

/* Rows that see no key: empty lists, and lists of blocks after t only (LISTS_EMPTY), shared and per-head,
 * B > 1 and G > 1, a scale of 1/3. */
ATTN_TEST(c_part, empty_lists)
{
    check_cpu((sel_case){shape_scaled(2, 90, 500, 4, 2, 32, 1.0f / 3.0f), params(64, 6, 1), LISTS_EMPTY, 0}, NULL);
    check_cpu((sel_case){attn_make_shape(2, 50, 300, 8, 2, 16, 1), params(32, 5, 0), LISTS_EMPTY, 0}, NULL);
}

/* ================================================================ CUDA part */

/* Device copies of a case: bf16 inputs, poisoned outputs, the lists. */
typedef struct {
    uint16_t *q, *k, *v, *o;
    float *lse;
    int32_t *lists;
} dev_case;

static void dev_case_init(dev_case *d, const attn_shape *sh, const attn_nsa_params *p, const uint16_t *hq,
                          const uint16_t *hk, const uint16_t *hv, const int32_t *lists, const char *ctx)
{
    const size_t nq = attn_q_elems(sh), nkv = attn_kv_elems(sh);
    const size_t nlist = (size_t)sh->B * sh->M * attn_nsa_list_heads(sh, p) * p->n;
    assert_ok(attn_dalloc((void **)&d->q, nq * 2), ctx);
    assert_ok(attn_dalloc((void **)&d->k, nkv * 2), ctx);
    assert_ok(attn_dalloc((void **)&d->v, nkv * 2), ctx);
    assert_ok(attn_dalloc((void **)&d->o, nq * 2), ctx); /* poisoned: 0xFFFF is a bf16 NaN */
    assert_ok(attn_dalloc((void **)&d->lse, attn_lse_elems(sh) * 4), ctx);
    assert_ok(attn_dalloc((void **)&d->lists, nlist * 4), ctx);
    assert_ok(attn_h2d(d->q, hq, nq * 2), ctx);
    assert_ok(attn_h2d(d->k, hk, nkv * 2), ctx);
    assert_ok(attn_h2d(d->v, hv, nkv * 2), ctx);
    assert_ok(attn_h2d(d->lists, lists, nlist * 4), ctx);
}

static void dev_case_free(dev_case *d)
{
    attn_dfree(d->q), attn_dfree(d->k), attn_dfree(d->v), attn_dfree(d->o), attn_dfree(d->lse), attn_dfree(d->lists);
}

/* Changes a copy of the lists before it goes to the device (the oracle keeps the original). */
typedef void (*list_mangler)(const sel_case *c, int32_t *lists);

/* Which entry point a check calls. */
typedef enum { CALL_GENERAL, CALL_WINDOW } entry_point;

/* Call the entry point on the case's device buffers. The optional fast path, called directly, may
 * answer ATTN_ERR_NOT_IMPLEMENTED (not written: its stub) or ATTN_ERR_BAD_ARGUMENT (it does not run
 * here although the shape is one it takes: a GPU older than sm_90, a build without sm_90 code, a driver
 * without the tensor-map encoder). nsa_selected_attention_cuda serves exactly those calls with its
 * general kernel, so the same call then goes to it: the test checks what runs on this machine, and a
 * learner who leaves the optional fast path out loses nothing. One line on stderr says so. */
static int call_entry(entry_point entry, const sel_case *c, const dev_case *d)
{
    if (entry == CALL_GENERAL)
        return nsa_selected_attention_cuda(&c->sh, &c->p, d->q, d->k, d->v, d->lists, d->o, d->lse, 0);
    attn_clear_error();
    const int st = nsa_selected_attention_window_cuda(&c->sh, &c->p, d->q, d->k, d->v, d->lists, d->o, d->lse, 0);
    if (st != ATTN_ERR_NOT_IMPLEMENTED && st != ATTN_ERR_BAD_ARGUMENT) return st;
    static int told; /* once per test (each test runs in a process of its own) */
    if (!told) {
        told = 1;
        const struct criterion_test *t = criterion_current_test;
        fprintf(stderr, "[NOTE] %s/%s: nsa_selected_attention_window_cuda returned %s%s%s: its cases are checked "
                        "through nsa_selected_attention_cuda instead\n",
                t && t->category ? t->category : "?", t && t->name ? t->name : "?", attn_status_name(st),
                st == ATTN_ERR_NOT_IMPLEMENTED ? " (the optional fast path is not written)" : " - ",
                st == ATTN_ERR_NOT_IMPLEMENTED ? "" : attn_error_detail());
    }
    return nsa_selected_attention_cuda(&c->sh, &c->p, d->q, d->k, d->v, d->lists, d->o, d->lse, 0);
}

/* Run an entry point and compare with the oracle. */
static void check_cuda_entry(sel_case c, const char *label, list_mangler mangle, entry_point entry)
{
    const uint64_t seed = attn_test_seed();
    problem pr;
    problem_fill(&pr, c.sh, 1.0f, c.large_logits, seed);
    uint16_t *hq, *hk, *hv;
    problem_to_bf16(&pr, &hq, &hk, &hv);
    int32_t *lists = make_lists(&c.sh, &c.p, c.kind, seed);
    const attn_oracle_opts opts = oracle_opts(&c.sh, &c.p, lists);
    problem_reference(&pr, &opts);
    char ctx[600];
    case_context(&c, &pr, label, ctx, sizeof ctx);
    const size_t nlist = (size_t)c.sh.B * c.sh.M * attn_nsa_list_heads(&c.sh, &c.p) * c.p.n;
    int32_t *device_lists = (int32_t *)attn_alloc_bytes(nlist * sizeof(int32_t));
    cr_assert(device_lists, "out of host memory [%s]", ctx);
    memcpy(device_lists, lists, nlist * sizeof(int32_t));
    if (mangle) mangle(&c, device_lists);
    dev_case d;
    dev_case_init(&d, &c.sh, &c.p, hq, hk, hv, device_lists, ctx);
    assert_ok(call_entry(entry, &c, &d), ctx);
    assert_ok(attn_dsync(), ctx);
    const size_t nq = attn_q_elems(&c.sh);
    uint16_t *o = attn_alloc_bf16(nq);
    assert_ok(attn_d2h(o, d.o, nq * 2), ctx);
    float *lse = download_f32(d.lse, attn_lse_elems(&c.sh), ctx);
    expect_result(&c, &pr, &opts, lists, NULL, o, lse, ATTN_TOL_BF16, ctx);
    free(o), free(lse), free(lists), free(device_lists), free(hq), free(hk), free(hv);
    dev_case_free(&d);
    problem_free(&pr);
}

static void check_cuda_mangled(sel_case c, const char *label, list_mangler mangle)
{
    check_cuda_entry(c, label, mangle, CALL_GENERAL);
}

static void check_cuda(sel_case c, const char *label) { check_cuda_mangled(c, label, NULL); }

ATTN_TEST(cuda_part, shapes)
{
    require_gpu();
    const attn_nsa_params p = params(64, 16, 1);
    const sel_case cases[] = {
        {attn_make_shape(1, 1, 1, 2, 1, 64, 1), p, LISTS_TOPN, 0},       /* N = 1 */
        {attn_make_shape(1, 20, 20, 4, 2, 128, 1), p, LISTS_TOPN, 0},    /* N < l' */
        {attn_make_shape(2, 100, 300, 8, 2, 64, 1), p, LISTS_SHORT, 0},  /* batch 2, M < N, N % l' != 0 */
        {attn_make_shape(1, 1, 1500, 16, 1, 128, 1), p, LISTS_TOPN, 0},  /* decoding, 24 blocks */
        {attn_make_shape(3, 65, 129, 4, 4, 64, 1), p, LISTS_SHORT, 0},   /* batch 3, MHA */
        {attn_make_shape(1, 300, 300, 16, 4, 128, 1), p, LISTS_TOPN, 0}, /* the benchmark's H/G */
        {attn_make_shape(1, 200, 257, 8, 1, 128, 1), p, LISTS_TOPN, 1},  /* scores near 120 */
    };
    for (int c = 0; c < (int)(sizeof cases / sizeof cases[0]); ++c) check_cuda(cases[c], NULL);
}

ATTN_TEST(cuda_part, gqa_groups)
{
    require_gpu();
    const attn_nsa_params p = params(64, 6, 1);
    /* H/G = 1, 2, 3, 4, 16 (one full m16 tile), 32 and 64 (two and four tiles of 16 heads) */
    const int hg[][2] = {{4, 4}, {4, 2}, {6, 2}, {8, 2}, {32, 2}, {32, 1}, {64, 1}};
    for (int c = 0; c < 7; ++c) {
        const sel_case sc = {attn_make_shape(1, 120, 400, hg[c][0], hg[c][1], c % 2 ? 64 : 128, 1), p, LISTS_SHORT, 0};
        check_cuda(sc, NULL);
    }
}

ATTN_TEST(cuda_part, selection_params)
{
    require_gpu();
    const attn_shape sh = attn_make_shape(2, 90, 500, 8, 2, 64, 1); /* 8 blocks of 64 */
    check_cuda((sel_case){sh, params(64, 3, 1), LISTS_TOPN, 0}, "n = 3: only the forced blocks");
    check_cuda((sel_case){sh, params(64, 16, 1), LISTS_TOPN, 0}, "n = 16, more than the 8 blocks");
    check_cuda((sel_case){sh, params(32, 6, 1), LISTS_SHORT, 0}, "blocks of 32 keys: half a tile");
    check_cuda((sel_case){sh, params(48, 5, 1), LISTS_TOPN, 0}, "blocks of 48 keys");
    check_cuda((sel_case){sh, params(128, 3, 1), LISTS_TOPN, 0}, "blocks of 128 keys: two tiles");
    check_cuda((sel_case){attn_make_shape(1, 70, 700, 4, 1, 128, 1), params(96, 4, 1), LISTS_SHORT, 0},
               "blocks of 96 keys: a tile and a half");
    check_cuda((sel_case){shape_scaled(1, 60, 300, 8, 2, 128, 0.05f), params(64, 4, 1), LISTS_TOPN, 0},
               "softmax scale 0.05");
}

ATTN_TEST(cuda_part, per_head_lists)
{
    require_gpu();
    check_cuda((sel_case){attn_make_shape(1, 80, 300, 4, 4, 64, 1), params(64, 3, 0), LISTS_TOPN, 0}, NULL);
    check_cuda((sel_case){attn_make_shape(2, 50, 200, 8, 2, 128, 1), params(32, 4, 0), LISTS_SHORT, 0}, NULL);
    check_cuda((sel_case){attn_make_shape(1, 40, 333, 16, 1, 64, 1), params(64, 16, 0), LISTS_FUTURE, 0}, NULL);
}

/* Shared lists with H/G = 16 and D = 128 (the bar's shape) may go to a kernel of their own that serves
 * several positions at once (the reference solution's serves a window of 8, loading each block that any
 * of them chose once): M = N (the first positions see few keys), odd M (a last window that is not full),
 * batches, blocks of 32, 96 and 128 keys, short lists, blocks after t, and lists too long for such a
 * kernel's shared memory. */
ATTN_TEST(cuda_part, heads_per_group_16)
{
    require_gpu();
    check_cuda((sel_case){attn_make_shape(1, 150, 150, 16, 1, 128, 1), params(64, 6, 1), LISTS_TOPN, 0},
               "M = N: the first positions see a few keys of block 0");
    check_cuda((sel_case){attn_make_shape(1, 203, 700, 16, 1, 128, 1), params(64, 6, 1), LISTS_TOPN, 0}, "M = 203");
    check_cuda((sel_case){attn_make_shape(2, 61, 300, 32, 2, 128, 1), params(64, 16, 1), LISTS_SHORT, 0},
               "batch 2, M = 61 < N");
    check_cuda((sel_case){attn_make_shape(1, 90, 500, 16, 1, 128, 1), params(128, 3, 1), LISTS_TOPN, 0},
               "blocks of 128 keys: two tiles");
    check_cuda((sel_case){attn_make_shape(1, 70, 700, 16, 1, 128, 1), params(96, 4, 1), LISTS_SHORT, 0},
               "blocks of 96 keys: a tile and a half");
    check_cuda((sel_case){attn_make_shape(1, 50, 400, 16, 1, 128, 1), params(32, 6, 1), LISTS_TOPN, 0},
               "blocks of 32 keys: half a tile");
    check_cuda((sel_case){attn_make_shape(1, 42, 333, 16, 1, 128, 1), params(64, 16, 1), LISTS_FUTURE, 0},
               "blocks after t on the lists");
    check_cuda((sel_case){attn_make_shape(1, 30, 5000, 16, 1, 128, 1), params(64, 70, 1), LISTS_TOPN, 0},
               "n = 70 entries per list");
    check_cuda((sel_case){shape_scaled(1, 37, 300, 16, 1, 128, 0.05f), params(64, 4, 1), LISTS_TOPN, 0},
               "softmax scale 0.05");
}

/* Small and quick: the first two cases of sanitizer_paths, where racecheck must flag the missing-barrier
 * variants. The second case has H/G = 16 and D = 128, which a kernel may treat apart (the fast path). */
ATTN_TEST(cuda_part, small)
{
    require_gpu();
    check_cuda((sel_case){attn_make_shape(1, 40, 300, 8, 2, 64, 1), params(64, 5, 1), LISTS_TOPN, 0}, NULL);
    check_cuda((sel_case){attn_make_shape(1, 41, 300, 16, 1, 128, 1), params(64, 5, 1), LISTS_TOPN, 0}, NULL);
}

/* Device lists cannot be checked; the header says what the kernel does with bad entries: a negative
 * entry ends the list, a block that starts after t (out of range included) is skipped. The device gets
 * each list's -1 padding replaced by such entries; the oracle sees the original lists, which mean the
 * same. */
static void pad_with_bad_entries(const sel_case *c, int32_t *lists)
{
    const int32_t tail[] = {1 << 30, 0x7fffffff, 8, -7, 0, 1, 2, 1 << 30}; /* 8 = past the last of 8 blocks */
    const size_t count = (size_t)c->sh.B * c->sh.M * attn_nsa_list_heads(&c->sh, &c->p);
    for (size_t r = 0; r < count; ++r) {
        int used = 0;
        while (used < c->p.n && lists[r * c->p.n + used] >= 0) ++used;
        for (int e = used; e < c->p.n; ++e) lists[r * c->p.n + e] = tail[(e - used) % 8];
    }
}

ATTN_TEST(cuda_part, bad_entries)
{
    require_gpu();
    check_cuda_mangled((sel_case){attn_make_shape(2, 70, 500, 8, 2, 64, 1), params(64, 16, 1), LISTS_TOPN, 0},
                       "device lists padded with 2^30, 2^31 - 1, 8 (past the last block), -7 (ends the list), "
                       "then 0 1 2 2^30 (after the end)",
                       pad_with_bad_entries);
    check_cuda_mangled((sel_case){attn_make_shape(2, 70, 500, 32, 2, 128, 1), params(64, 16, 1), LISTS_TOPN, 0},
                       "H/G = 16: device lists padded with 2^30, 2^31 - 1, 8 (past the last block), -7 (ends the "
                       "list), then 0 1 2 2^30 (after the end)",
                       pad_with_bad_entries);
}

/* The optional fast path (nsa_selected_attention_window_cuda, selected_window.cu) called directly, on
 * shapes it takes (shared lists, H/G = 16, D = 128, l' = 64, n <= 16), with batches and several kv groups:
 * M < N and M = N, a last window that is not full, short lists, blocks after t, bad device entries, a
 * small n and another softmax scale. The H/G = 16 cases above check it too, through
 * nsa_selected_attention_cuda. */
ATTN_TEST(cuda_part, window_path)
{
    require_gpu();
    check_cuda_entry((sel_case){attn_make_shape(2, 61, 300, 32, 2, 128, 1), params(64, 16, 1), LISTS_SHORT, 0},
                     "fast path: batch 2, 2 kv groups, M = 61 < N", NULL, CALL_WINDOW);
    check_cuda_entry((sel_case){attn_make_shape(3, 150, 150, 64, 4, 128, 1), params(64, 6, 1), LISTS_TOPN, 0},
                     "fast path: batch 3, 4 kv groups, M = N: the first positions see a few keys of block 0", NULL,
                     CALL_WINDOW);
    check_cuda_entry((sel_case){attn_make_shape(2, 203, 700, 32, 2, 128, 1), params(64, 16, 1), LISTS_FUTURE, 0},
                     "fast path: M = 203 (a last window of 3 positions), blocks after t", NULL, CALL_WINDOW);
    check_cuda_entry((sel_case){attn_make_shape(2, 70, 500, 32, 2, 128, 1), params(64, 16, 1), LISTS_TOPN, 0},
                     "fast path: device lists padded with 2^30, 2^31 - 1, 8 (past the last block), -7 (ends the "
                     "list), then 0 1 2 2^30 (after the end)",
                     pad_with_bad_entries, CALL_WINDOW);
    check_cuda_entry((sel_case){shape_scaled(2, 37, 300, 32, 2, 128, 0.05f), params(64, 3, 1), LISTS_TOPN, 0},
                     "fast path: n = 3 (the forced blocks only), softmax scale 0.05", NULL, CALL_WINDOW);
}

/* Rows that see no key (empty lists, lists of blocks after t only): o = 0 and lse = -inf, in the general
 * kernel (shared lists at D = 64, per-head at D = 128, H/G = 32: two chunks of 16 heads share a list) and
 * in the fast path, where a warp of a window may have no block at all (also with bad device entries). */
ATTN_TEST(cuda_part, empty_lists)
{
    require_gpu();
    check_cuda((sel_case){shape_scaled(2, 90, 500, 8, 2, 64, 1.0f / 3.0f), params(64, 6, 1), LISTS_EMPTY, 0}, NULL);
    check_cuda((sel_case){attn_make_shape(2, 50, 300, 8, 2, 128, 1), params(32, 5, 0), LISTS_EMPTY, 0}, NULL);
    check_cuda((sel_case){attn_make_shape(2, 40, 400, 64, 2, 64, 1), params(64, 6, 1), LISTS_EMPTY, 0}, NULL);
    check_cuda_entry((sel_case){attn_make_shape(2, 61, 300, 32, 2, 128, 1), params(64, 16, 1), LISTS_EMPTY, 0},
                     "fast path", NULL, CALL_WINDOW);
    check_cuda_entry((sel_case){attn_make_shape(2, 37, 500, 32, 2, 128, 1), params(64, 16, 1), LISTS_EMPTY, 0},
                     "fast path, device lists padded with bad entries", pad_with_bad_entries, CALL_WINDOW);
}

/* The fast path on long sequences: 8 positions' lists of 13 random picks among about 300 blocks have a
 * union of about 100 blocks, so the ring of stages refills many times over (the shapes above have a union
 * of a few dozen at most). */
ATTN_TEST(cuda_part, window_path_large_union)
{
    require_gpu();
    check_cuda_entry((sel_case){attn_make_shape(2, 64, 20000, 32, 2, 128, 1), params(64, 16, 1), LISTS_TOPN, 0},
                     "fast path, N = 20000: unions of about 100 blocks per window", NULL, CALL_WINDOW);
}

/* The fast path on a call it does not take (header: ATTN_ERR_BAD_ARGUMENT, nothing launched, nothing
 * written); then nsa_selected_attention_cuda must serve that call with its general kernel. */
static void check_window_declines(sel_case c, const char *label)
{
    const uint64_t seed = attn_test_seed();
    problem pr;
    problem_fill(&pr, c.sh, 1.0f, 0, seed);
    uint16_t *hq, *hk, *hv;
    problem_to_bf16(&pr, &hq, &hk, &hv);
    int32_t *lists = make_lists(&c.sh, &c.p, c.kind, seed);
    char ctx[600];
    case_context(&c, &pr, label, ctx, sizeof ctx);
    dev_case d;
    dev_case_init(&d, &c.sh, &c.p, hq, hk, hv, lists, ctx); /* o and lse poisoned: all bits set */
    attn_clear_error();
    const int st = nsa_selected_attention_window_cuda(&c.sh, &c.p, d.q, d.k, d.v, d.lists, d.o, d.lse, 0);
    if (st == ATTN_ERR_NOT_IMPLEMENTED) {
        fprintf(stderr, "[NOTE] cuda_part/window_declines: nsa_selected_attention_window_cuda returned "
                        "ATTN_ERR_NOT_IMPLEMENTED (the optional fast path is not written): only "
                        "nsa_selected_attention_cuda is checked on these shapes [%s]\n", ctx);
    } else {
        cr_assert(st == ATTN_ERR_BAD_ARGUMENT,
                  "nsa_selected_attention_window_cuda returned %s (%s), expected ATTN_ERR_BAD_ARGUMENT: the fast path "
                  "does not take this call (selected_attention.h) [%s]",
                  attn_status_name(st), attn_error_detail(), ctx);
        assert_ok(attn_dsync(), ctx);
        const size_t nq = attn_q_elems(&c.sh), nl = attn_lse_elems(&c.sh);
        uint16_t *o = attn_alloc_bf16(nq);
        assert_ok(attn_d2h(o, d.o, nq * 2), ctx);
        float *lse = download_f32(d.lse, nl, ctx);
        for (size_t e = 0; e < nq; ++e)
            cr_assert(o[e] == 0xFFFFu, "o element %zu was written (0x%04x) by a call the fast path does not take [%s]",
                      e, o[e], ctx);
        for (size_t e = 0; e < nl; ++e) {
            uint32_t bits;
            memcpy(&bits, &lse[e], 4);
            cr_assert(bits == 0xFFFFFFFFu,
                      "lse element %zu was written (%g) by a call the fast path does not take [%s]", e, lse[e], ctx);
        }
        free(o), free(lse);
    }
    free(lists), free(hq), free(hk), free(hv);
    dev_case_free(&d);
    problem_free(&pr);
    check_cuda(c, label); /* the general kernel serves it */
}

ATTN_TEST(cuda_part, window_declines)
{
    require_gpu();
    check_window_declines((sel_case){attn_make_shape(2, 40, 300, 32, 2, 128, 1), params(64, 5, 0), LISTS_TOPN, 0},
                          "not for the fast path: per-head lists");
    check_window_declines((sel_case){attn_make_shape(2, 40, 300, 16, 2, 128, 1), params(64, 5, 1), LISTS_TOPN, 0},
                          "not for the fast path: H/G = 8");
    check_window_declines((sel_case){attn_make_shape(2, 40, 300, 32, 2, 64, 1), params(64, 5, 1), LISTS_TOPN, 0},
                          "not for the fast path: D = 64");
    check_window_declines((sel_case){attn_make_shape(2, 40, 300, 32, 2, 128, 1), params(32, 5, 1), LISTS_TOPN, 0},
                          "not for the fast path: l' = 32");
    check_window_declines((sel_case){attn_make_shape(2, 30, 1500, 32, 2, 128, 1), params(64, 17, 1), LISTS_TOPN, 0},
                          "not for the fast path: n = 17");
}

static void check_same_bits_twice(attn_shape sh)
{
    const attn_nsa_params p = params(64, 8, 1);
    const uint64_t seed = attn_test_seed();
    problem pr;
    problem_fill(&pr, sh, 1.0f, 0, seed);
    uint16_t *hq, *hk, *hv;
    problem_to_bf16(&pr, &hq, &hk, &hv);
    int32_t *lists = make_lists(&sh, &p, LISTS_SHORT, seed);
    dev_case d;
    dev_case_init(&d, &sh, &p, hq, hk, hv, lists, pr.ctx);
    const size_t nq = attn_q_elems(&sh), nl = attn_lse_elems(&sh);
    uint16_t *o[2] = {attn_alloc_bf16(nq), attn_alloc_bf16(nq)};
    float *lse[2];
    for (int run = 0; run < 2; ++run) {
        assert_ok(attn_dpoison(d.o, nq * 2), pr.ctx);
        assert_ok(attn_dpoison(d.lse, nl * 4), pr.ctx);
        assert_ok(nsa_selected_attention_cuda(&sh, &p, d.q, d.k, d.v, d.lists, d.o, d.lse, 0), pr.ctx);
        assert_ok(attn_dsync(), pr.ctx);
        assert_ok(attn_d2h(o[run], d.o, nq * 2), pr.ctx);
        lse[run] = download_f32(d.lse, nl, pr.ctx);
    }
    for (size_t e = 0; e < nq; ++e)
        cr_assert(o[0][e] == o[1][e], "o element %zu differs between two runs on the same input: 0x%04x vs 0x%04x "
                  "(a race, or an atomic sum in a varying order?) [%s, l'=64 n=8]", e, o[0][e], o[1][e], pr.ctx);
    for (size_t e = 0; e < nl; ++e)
        cr_assert(memcmp(&lse[0][e], &lse[1][e], 4) == 0, "lse element %zu differs between two runs: %.9g vs %.9g [%s]",
                  e, lse[0][e], lse[1][e], pr.ctx);
    free(o[0]), free(o[1]), free(lse[0]), free(lse[1]), free(lists), free(hq), free(hk), free(hv);
    dev_case_free(&d);
    problem_free(&pr);
}

ATTN_TEST(cuda_part, determinism)
{
    require_gpu();
    check_same_bits_twice(attn_make_shape(2, 200, 600, 16, 4, 128, 1));
    check_same_bits_twice(attn_make_shape(2, 203, 600, 32, 2, 128, 1)); /* H/G = 16: a kernel may treat it apart */
}

/* q and o past 2^31 elements: 32-bit offsets wrap. Checked against the fp32 GPU reference. */
static void check_large_offsets(attn_shape sh)
{
    const attn_nsa_params p = params(64, 16, 1);
    const uint64_t seed = attn_test_seed();
    const size_t nq = attn_q_elems(&sh), nkv = attn_kv_elems(&sh), nl = attn_lse_elems(&sh);
    const size_t nlist = (size_t)sh.B * sh.M * sh.G * p.n;
    char st[120], ctx[300];
    snprintf(ctx, sizeof ctx, "%s, l'=64 n=16 shared lists, q and o hold %zu elements, k and v %zu (2^31 = 2147483648), "
             "seed %llu (rerun: ATTN_SEED=%llu)", shape_text(&sh, st, sizeof st), nq, nkv, (unsigned long long)seed,
             (unsigned long long)seed);
    uint16_t *q, *k, *v, *o;
    float *lse, *ref_o, *ref_lse;
    int32_t *dlists;
    assert_ok(attn_dalloc((void **)&q, nq * 2), ctx);
    assert_ok(attn_dalloc((void **)&o, nq * 2), ctx);
    assert_ok(attn_dalloc((void **)&ref_o, nq * 4), ctx);
    assert_ok(attn_dalloc((void **)&k, nkv * 2), ctx);
    assert_ok(attn_dalloc((void **)&v, nkv * 2), ctx);
    assert_ok(attn_dalloc((void **)&lse, nl * 4), ctx);
    assert_ok(attn_dalloc((void **)&ref_lse, nl * 4), ctx);
    assert_ok(attn_dalloc((void **)&dlists, nlist * 4), ctx);
    assert_ok(attn_dfill_random_bf16(q, nq, sh.D, 1.0f, seed, 0), ctx);
    assert_ok(attn_dfill_random_bf16(k, nkv, sh.D, 1.0f, seed + 1, 0), ctx);
    assert_ok(attn_dfill_random_bf16(v, nkv, sh.D, 1.0f, seed + 2, 0), ctx);
    int32_t *lists = make_lists(&sh, &p, LISTS_SHORT, seed);
    assert_ok(attn_h2d(dlists, lists, nlist * 4), ctx);
    assert_ok(nsa_selected_attention_cuda(&sh, &p, q, k, v, dlists, o, lse, 0), ctx);
    attn_gpu_ref_opts ro = {0};
    ro.shape = sh, ro.block_indices = dlists, ro.num_blocks = p.n, ro.block_size = p.l_sel;
    assert_ok(attn_gpu_reference(&ro, q, k, v, ref_o, ref_lse, 0), ctx);
    assert_ok(attn_dsync(), ctx);
    attn_dcmp r;
    assert_ok(attn_dcompare_bf16_f32(o, ref_o, nq, ATTN_TOL_BF16, &r), ctx);
    const size_t row = r.worst / sh.D; /* [B, M, H, D] */
    cr_assert(r.n_bad == 0,
              "o: %zu of %zu elements out of tolerance (%zu never written, %zu NaN/Inf); worst at flat index %zu "
              "(b=%zu i=%zu h=%zu d=%zu%s): got %.6g, expected %.6g [%s]",
              r.n_bad, r.count, r.n_unwritten, r.n_nonfinite, r.worst, row / ((size_t)sh.M * sh.H),
              row / sh.H % sh.M, row % sh.H, r.worst % sh.D, r.worst >= (1ull << 31) ? ", past 2^31" : "", r.got,
              r.expected, ctx);
    assert_ok(attn_dcompare_f32_f32(lse, ref_lse, nl, kTolLse, &r), ctx);
    cr_assert(r.n_bad == 0, "lse: %zu of %zu elements out of tolerance (%zu never written); worst at b=%zu h=%zu i=%zu: "
              "got %.6g, expected %.6g [%s]", r.n_bad, r.count, r.n_unwritten, r.worst / ((size_t)sh.H * sh.M),
              r.worst / sh.M % sh.H, r.worst % sh.M, r.got, r.expected, ctx);
    free(lists);
    attn_dfree(q), attn_dfree(k), attn_dfree(v), attn_dfree(o), attn_dfree(lse), attn_dfree(ref_o),
        attn_dfree(ref_lse), attn_dfree(dlists);
}

ATTN_TEST(cuda_part, large_offsets)
{
    require_gpu();
    /* H/G = 16, the bar's (a kernel may treat it apart), and H/G = 8 */
    check_large_offsets(attn_make_shape(64, 4200, 4200, 64, 4, 128, 1));
    check_large_offsets(attn_make_shape(64, 4200, 4200, 64, 8, 128, 1));
}

/* k and v past 2^31 elements with few queries (M = 130): MHA (H = G = 64, N = 4200; the general kernel)
 * and H/G = 16 (G = 4, N = 65600: the fast path's shape), against the fp32 GPU reference. */
ATTN_TEST(cuda_part, kv_large_offsets)
{
    require_gpu();
    check_large_offsets(attn_make_shape(64, 130, 4200, 64, 64, 128, 1));
    check_large_offsets(attn_make_shape(64, 130, 65600, 64, 4, 128, 1));
}

/* Per-head lists past 2^31 elements: indices [B, M, H, n] with n = 64 hold 2.15e9 entries, and q and o
 * 2.15e9 elements (B = 64, M = N = 8200, H = 64, G = 4, D = 64, l' = 64). Each list holds the block of t and
 * one earlier block chosen at random, so that a list read from a wrapped offset (another position's)
 * attends to other keys. About 27 GB of GPU memory and 9 GB of host memory for the lists. Against the fp32
 * GPU reference. */
ATTN_TEST(cuda_part, large_offsets_per_head)
{
    require_gpu();
    const attn_shape sh = attn_make_shape(64, 8200, 8200, 64, 4, 64, 1);
    const attn_nsa_params p = params(64, 64, 0);
    const uint64_t seed = attn_test_seed();
    const size_t nq = attn_q_elems(&sh), nkv = attn_kv_elems(&sh), nl = attn_lse_elems(&sh);
    const size_t n_lists = (size_t)sh.B * sh.M * sh.H, nlist = n_lists * p.n;
    char st[120], ctx[400];
    snprintf(ctx, sizeof ctx, "%s, l'=64 n=64 per-head lists {an earlier block, the block of t}, q %zu and indices %zu "
             "elements (2^31 = 2147483648), seed %llu (rerun: ATTN_SEED=%llu)", shape_text(&sh, st, sizeof st), nq,
             nlist, (unsigned long long)seed, (unsigned long long)seed);
    cr_assert(nq > (1ull << 31) && nlist > (1ull << 31), "q and the lists must pass 2^31 elements [%s]", ctx);
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    const double need = nq * (2.0 + 2 + 4) + nkv * 4.0 + nl * 8.0 + nlist * 4.0;
    if ((double)free_b < need * 1.1)
        attn_skip_test("this test needs %.1f GB of GPU memory, %.1f GB are free", need / 1e9, free_b / 1e9);
    int32_t *lists = (int32_t *)attn_alloc_bytes(nlist * sizeof(int32_t));
    cr_assert(lists, "out of host memory (%zu bytes for the lists) [%s]", nlist * sizeof(int32_t), ctx);
    memset(lists, 0xFF, nlist * sizeof(int32_t)); /* -1 everywhere */
    attn_rng rng;
    attn_rng_seed(&rng, seed * 7 + 1);
    for (size_t l = 0; l < n_lists; ++l) {
        const long t = (long)sh.N - sh.M + (long)(l / sh.H % sh.M), cur = t / p.l_sel;
        int32_t *list = lists + l * p.n;
        if (cur == 0) {
            list[0] = 0;
            continue;
        }
        list[0] = (int32_t)(attn_rng_u64(&rng) % (uint64_t)cur), list[1] = (int32_t)cur;
    }
    uint16_t *q, *k, *v, *o;
    float *lse, *ref_o, *ref_lse;
    int32_t *dlists;
    assert_ok(attn_dalloc((void **)&dlists, nlist * 4), ctx);
    assert_ok(attn_h2d(dlists, lists, nlist * 4), ctx);
    free(lists);
    assert_ok(attn_dalloc((void **)&q, nq * 2), ctx);
    assert_ok(attn_dalloc((void **)&o, nq * 2), ctx);
    assert_ok(attn_dalloc((void **)&ref_o, nq * 4), ctx);
    assert_ok(attn_dalloc((void **)&k, nkv * 2), ctx);
    assert_ok(attn_dalloc((void **)&v, nkv * 2), ctx);
    assert_ok(attn_dalloc((void **)&lse, nl * 4), ctx);
    assert_ok(attn_dalloc((void **)&ref_lse, nl * 4), ctx);
    assert_ok(attn_dfill_random_bf16(q, nq, sh.D, 1.0f, seed, 0), ctx);
    assert_ok(attn_dfill_random_bf16(k, nkv, sh.D, 1.0f, seed + 1, 0), ctx);
    assert_ok(attn_dfill_random_bf16(v, nkv, sh.D, 1.0f, seed + 2, 0), ctx);
    assert_ok(nsa_selected_attention_cuda(&sh, &p, q, k, v, dlists, o, lse, 0), ctx);
    attn_gpu_ref_opts ro = {0};
    ro.shape = sh, ro.block_indices = dlists, ro.num_blocks = p.n, ro.block_size = p.l_sel, ro.lists_per_head = 1;
    assert_ok(attn_gpu_reference(&ro, q, k, v, ref_o, ref_lse, 0), ctx);
    assert_ok(attn_dsync(), ctx);
    attn_dcmp r;
    char msg[600] = "";
    assert_ok(attn_dcompare_bf16_f32(o, ref_o, nq, ATTN_TOL_BF16, &r), ctx);
    if (r.n_bad) dcmp_text(msg, sizeof msg, "o (vs the fp32 GPU reference)", &r, ATTN_LAYOUT_BMHD, &sh);
    cr_assert(r.n_bad == 0, "%s%s. Hint: list (b, i, h) starts at ((size_t)(b * M + i) * H + h) * n [%s]", msg,
              r.worst >= (1ull << 31) ? " (past element 2^31)" : "", ctx);
    assert_ok(attn_dcompare_f32_f32(lse, ref_lse, nl, kTolLse, &r), ctx);
    if (r.n_bad) dcmp_text(msg, sizeof msg, "lse (vs the fp32 GPU reference)", &r, ATTN_LAYOUT_BHM, &sh);
    cr_assert(r.n_bad == 0, "%s [%s]", msg, ctx);
    attn_dfree(q), attn_dfree(k), attn_dfree(v), attn_dfree(o), attn_dfree(lse), attn_dfree(ref_o),
        attn_dfree(ref_lse), attn_dfree(dlists);
}

/* What ./course grade runs compute-sanitizer memcheck and racecheck on (lesson.json, "sanitize"): small's
 * two cases first (the general kernel at D = 64, and H/G = 16 with D = 128: the fast path where it runs),
 * then both instances of the general kernel (D = 64 and 128), shared and per-head lists, two chunks of 16
 * heads per list (H/G = 32), blocks of 96 keys (a tile and a half) and of 32, empty lists and lists of
 * blocks after t, bad device entries; the fast path with a partial last window, empty lists and bad
 * entries. B > 1 and G > 1. */
ATTN_TEST(cuda_part, sanitizer_paths)
{
    require_gpu();
    check_cuda((sel_case){attn_make_shape(1, 40, 300, 8, 2, 64, 1), params(64, 5, 1), LISTS_TOPN, 0}, NULL);
    check_cuda((sel_case){attn_make_shape(1, 41, 300, 16, 1, 128, 1), params(64, 5, 1), LISTS_TOPN, 0}, NULL);
    check_cuda((sel_case){attn_make_shape(2, 30, 300, 8, 2, 128, 1), params(64, 5, 0), LISTS_SHORT, 0}, NULL);
    check_cuda((sel_case){attn_make_shape(2, 20, 400, 64, 2, 64, 1), params(64, 5, 1), LISTS_FUTURE, 0}, NULL);
    check_cuda((sel_case){attn_make_shape(2, 30, 500, 8, 2, 128, 1), params(96, 4, 1), LISTS_EMPTY, 0}, NULL);
    check_cuda((sel_case){attn_make_shape(2, 30, 300, 4, 2, 64, 1), params(32, 6, 0), LISTS_EMPTY, 0}, NULL);
    check_cuda_mangled((sel_case){attn_make_shape(2, 30, 500, 8, 2, 64, 1), params(64, 16, 1), LISTS_TOPN, 0},
                       "device lists padded with bad entries", pad_with_bad_entries);
    check_cuda_entry((sel_case){attn_make_shape(2, 21, 300, 32, 2, 128, 1), params(64, 16, 1), LISTS_EMPTY, 0},
                     "fast path", NULL, CALL_WINDOW);
    check_cuda_entry((sel_case){attn_make_shape(2, 19, 500, 32, 2, 128, 1), params(64, 16, 1), LISTS_TOPN, 0},
                     "fast path, device lists padded with bad entries", pad_with_bad_entries, CALL_WINDOW);
}

/* ================================================================ speed */

typedef struct {
    attn_shape sh;
    attn_nsa_params p;
    uint64_t seed;
    uint16_t *q, *k, *v, *o, *o_base;
    float *lse, *lse_base, *ref_o, *ref_lse;
    int32_t *dlists;
    size_t nq, nkv, nl, nlist;
} speed_ctx;

static int launch_dense(void *ctx, cudaStream_t stream)
{
    speed_ctx *c = (speed_ctx *)ctx;
    return attn_baseline_flash_bf16(&c->sh, c->q, c->k, c->v, c->o_base, c->lse_base, stream);
}

static int launch_selected(void *ctx, cudaStream_t stream)
{
    speed_ctx *c = (speed_ctx *)ctx;
    const attn_shape sh = c->sh; /* copies: the check's shape and parameters are not the kernel's to change */
    const attn_nsa_params p = c->p;
    return nsa_selected_attention_cuda(&sh, &p, c->q, c->k, c->v, c->dlists, c->o, c->lse, stream);
}

/* New inputs and new lists at the same addresses, poisoned outputs. */
static int speed_prepare(void *ctx, int rep, cudaStream_t stream)
{
    speed_ctx *c = (speed_ctx *)ctx;
    const uint64_t s = c->seed + 1000003ull * (uint64_t)(rep + 2);
    int st = attn_dfill_random_bf16(c->q, c->nq, c->sh.D, 1.0f, s, stream);
    if (!st) st = attn_dfill_random_bf16(c->k, c->nkv, c->sh.D, 1.0f, s + 1, stream);
    if (!st) st = attn_dfill_random_bf16(c->v, c->nkv, c->sh.D, 1.0f, s + 2, stream);
    int32_t *lists = make_lists(&c->sh, &c->p, LISTS_TOPN, s);
    if (!st) st = attn_cuda_status(cudaStreamSynchronize(stream), "prepare");
    if (!st) st = attn_h2d(c->dlists, lists, c->nlist * 4);
    free(lists);
    if (!st) st = attn_cuda_status(cudaMemsetAsync(c->o, 0xFF, c->nq * 2, stream), "poison o");
    if (!st) st = attn_cuda_status(cudaMemsetAsync(c->lse, 0xFF, c->nl * 4, stream), "poison lse");
    if (!st) st = attn_cuda_status(cudaMemsetAsync(c->o_base, 0xFF, c->nq * 2, stream), "poison baseline o");
    return st;
}

/* Every element of o and lse against the fp32 GPU reference on the same inputs and lists. */
static int speed_check(void *ctx, int rep, char *msg, size_t len)
{
    speed_ctx *c = (speed_ctx *)ctx;
    attn_gpu_ref_opts ro = {0};
    ro.shape = c->sh, ro.block_indices = c->dlists, ro.num_blocks = c->p.n, ro.block_size = c->p.l_sel;
    attn_dcmp r;
    int st = attn_gpu_reference(&ro, c->q, c->k, c->v, c->ref_o, c->ref_lse, 0);
    if (!st) st = attn_dsync();
    if (!st) st = attn_dcompare_bf16_f32(c->o, c->ref_o, c->nq, ATTN_TOL_BF16, &r);
    if (st) {
        snprintf(msg, len, "reference or comparison failed: %s", attn_error_detail());
        return 1;
    }
    if (r.n_bad) {
        const size_t row = r.worst / c->sh.D;
        snprintf(msg, len, "o: %zu of %zu elements out of tolerance (%zu never written, %zu NaN/Inf); worst at i=%zu "
                 "h=%zu d=%zu: got %.6g, expected %.6g", r.n_bad, r.count, r.n_unwritten, r.n_nonfinite,
                 row / c->sh.H % c->sh.M, row % c->sh.H, r.worst % c->sh.D, r.got, r.expected);
        return 1;
    }
    if (attn_dcompare_f32_f32(c->lse, c->ref_lse, c->nl, kTolLse, &r) || r.n_bad) {
        snprintf(msg, len, "lse: %zu of %zu elements out of tolerance (%zu never written); worst at h=%zu i=%zu: got "
                 "%.6g, expected %.6g", r.n_bad, r.count, r.n_unwritten, r.worst / c->sh.M % c->sh.H,
                 r.worst % c->sh.M, r.got, r.expected);
        return 1;
    }
    (void)rep;
    return 0;
}

/* Visible (query head, key) pairs of a set of lists: what the selected kernel is credited with. */
static double list_pairs(const attn_shape *sh, const attn_nsa_params *p, const int32_t *lists)
{
    const int L = attn_nsa_list_heads(sh, p), per_list = p->heads_share_selection ? sh->H / sh->G : 1;
    double pairs = 0;
    for (size_t row = 0; row < (size_t)sh->B * sh->M * L; ++row) {
        const long t = (long)sh->N - sh->M + (long)((row / L) % sh->M);
        for (int e = 0; e < p->n && lists[row * p->n + e] >= 0; ++e) {
            const long first = (long)lists[row * p->n + e] * p->l_sel;
            const long last = first + p->l_sel - 1 < t ? first + p->l_sel - 1 : t;
            if (last >= first) pairs += (double)(last - first + 1) * per_list;
        }
    }
    return pairs;
}

ATTN_TEST(speed, selected_vs_dense)
{
    require_gpu();
    speed_ctx c = {0};
    c.sh = attn_make_shape(1, 16384, 16384, 64, 4, 128, 1);
    c.p = attn_nsa_paper_defaults(); /* l' = 64, n = 16, shared selection */
    c.seed = attn_test_seed();
    c.nq = attn_q_elems(&c.sh), c.nkv = attn_kv_elems(&c.sh), c.nl = attn_lse_elems(&c.sh);
    c.nlist = (size_t)c.sh.B * c.sh.M * c.sh.G * c.p.n;
    char st[200], ctx[300];
    shape_text(&c.sh, st, sizeof st);
    snprintf(st + strlen(st), sizeof st - strlen(st), ", l'=64 n=16, top-n lists shared by 16 heads");
    snprintf(ctx, sizeof ctx, "%s, seed %llu", st, (unsigned long long)c.seed);
    assert_ok(attn_dalloc((void **)&c.q, c.nq * 2), ctx);
    assert_ok(attn_dalloc((void **)&c.k, c.nkv * 2), ctx);
    assert_ok(attn_dalloc((void **)&c.v, c.nkv * 2), ctx);
    assert_ok(attn_dalloc((void **)&c.o, c.nq * 2), ctx);
    assert_ok(attn_dalloc((void **)&c.o_base, c.nq * 2), ctx);
    assert_ok(attn_dalloc((void **)&c.lse, c.nl * 4), ctx);
    assert_ok(attn_dalloc((void **)&c.lse_base, c.nl * 4), ctx);
    assert_ok(attn_dalloc((void **)&c.ref_o, c.nq * 4), ctx);
    assert_ok(attn_dalloc((void **)&c.ref_lse, c.nl * 4), ctx);
    assert_ok(attn_dalloc((void **)&c.dlists, c.nlist * 4), ctx);
    /* the reference of every check is computed from these: they must be as prepare left them */
    const attn_timing_checks checks = {speed_prepare, speed_check, &c,
                                       {{c.q, c.nq * 2, "q"}, {c.k, c.nkv * 2, "k"}, {c.v, c.nkv * 2, "v"},
                                        {c.dlists, c.nlist * 4, "indices"}}};
    attn_timing t_dense, t_sel;
    char why[1024] = "";
    const int status = attn_time_ab_checked(launch_dense, &c, launch_selected, &c, &checks, 1, 5, &t_dense, &t_sel,
                                            why, sizeof why);
    cr_assert(status == ATTN_OK, "checked timing failed: %s [%s]", why, ctx);
    int32_t *lists = make_lists(&c.sh, &c.p, LISTS_TOPN, c.seed);
    const double flops = 4.0 * c.sh.D * list_pairs(&c.sh, &c.p, lists);
    free(lists);
    /* bytes: q and o once, and the K/V rows of n * l' keys per (position, kv group) */
    const double bytes = 2.0 * c.nq * 2 + (double)c.sh.M * c.sh.G * c.p.n * c.p.l_sel * c.sh.D * 2 * 2;
    attn_speed_result res = {"09", "selected_vs_dense", st, t_dense.median_ms, t_sel.median_ms,
                             TARGET_SELECTED_VS_DENSE, flops, bytes};
    attn_report_speed(&res);
    const double ratio = t_dense.median_ms / t_sel.median_ms;
    cr_expect(ratio >= TARGET_SELECTED_VS_DENSE,
              "speed-up %.2fx is below the target %.2fx (dense causal flash %.3f ms, yours %.3f ms) [%s]", ratio,
              TARGET_SELECTED_VS_DENSE, t_dense.median_ms, t_sel.median_ms, ctx);
    attn_dfree(c.q), attn_dfree(c.k), attn_dfree(c.v), attn_dfree(c.o), attn_dfree(c.o_base), attn_dfree(c.lse),
        attn_dfree(c.lse_base), attn_dfree(c.ref_o), attn_dfree(c.ref_lse), attn_dfree(c.dlists);
}

/* ================================================================ errors */

static uint16_t fake16[64] __attribute__((aligned(16)));
static float fake[64];
static int32_t fake_list[64];

ATTN_TEST(errors, bad_input_is_named)
{
    const attn_shape ok = attn_make_shape(1, 4, 4, 4, 2, 64, 1), bad_g = attn_make_shape(1, 4, 4, 6, 4, 64, 1),
                     bad_d = attn_make_shape(1, 4, 4, 4, 2, 32, 1), bad_m = attn_make_shape(1, 8, 4, 4, 2, 64, 1),
                     not_causal = attn_make_shape(1, 4, 4, 4, 2, 64, 0);
    const attn_nsa_params p = attn_nsa_paper_defaults();
    attn_nsa_params n2 = p, l0 = p, odd = p;
    n2.n = 2, l0.l_sel = 0, odd.l_sel = 40; /* n < 3; l' = 0; l' not a multiple of d = 16 */

    assert_status(nsa_selected_attention_cpu(&ok, &p, NULL, fake, fake, fake_list, fake, fake), ATTN_ERR_NULL_POINTER,
                  "cpu q = NULL");
    assert_status(nsa_selected_attention_cpu(&ok, &p, fake, fake, fake, NULL, fake, fake), ATTN_ERR_NULL_POINTER,
                  "cpu indices = NULL");
    assert_status(nsa_selected_attention_cpu(&ok, NULL, fake, fake, fake, fake_list, fake, fake), ATTN_ERR_NULL_POINTER,
                  "cpu parameters = NULL");
    assert_status(nsa_selected_attention_cpu(&ok, &n2, fake, fake, fake, fake_list, fake, fake), ATTN_ERR_BAD_ARGUMENT,
                  "cpu n = 2");
    assert_status(nsa_selected_attention_cpu(&not_causal, &p, fake, fake, fake, fake_list, fake, fake),
                  ATTN_ERR_BAD_ARGUMENT, "cpu causal = 0");
    assert_status(nsa_selected_attention_cpu(&bad_m, &p, fake, fake, fake, fake_list, fake, fake), ATTN_ERR_M_GT_N,
                  "cpu M > N");
    assert_status(nsa_selected_attention_cpu(&bad_g, &p, fake, fake, fake, fake_list, fake, fake),
                  ATTN_ERR_HEADS_NOT_DIVISIBLE, "cpu H=6, G=4");
    assert_status(nsa_selection_check(&ok, &p, NULL), ATTN_ERR_NULL_POINTER, "check indices = NULL");
    assert_status(nsa_selection_check(&ok, &l0, fake_list), ATTN_ERR_BAD_ARGUMENT, "check l' = 0");

    assert_status(nsa_selected_attention_cuda(&ok, &p, fake16, fake16, fake16, NULL, fake16, fake, 0),
                  ATTN_ERR_NULL_POINTER, "cuda indices = NULL");
    assert_status(nsa_selected_attention_cuda(&ok, &p, fake16, NULL, fake16, fake_list, fake16, fake, 0),
                  ATTN_ERR_NULL_POINTER, "cuda k = NULL");
    assert_status(nsa_selected_attention_cuda(&ok, NULL, fake16, fake16, fake16, fake_list, fake16, fake, 0),
                  ATTN_ERR_NULL_POINTER, "cuda parameters = NULL");
    assert_status(nsa_selected_attention_cuda(&ok, &odd, fake16, fake16, fake16, fake_list, fake16, fake, 0),
                  ATTN_ERR_BAD_ARGUMENT, "cuda l' = 40 with d = 16");
    assert_status(nsa_selected_attention_cuda(&bad_d, &p, fake16, fake16, fake16, fake_list, fake16, fake, 0),
                  ATTN_ERR_UNSUPPORTED_D, "cuda D = 32");
    assert_status(nsa_selected_attention_cuda(&bad_m, &p, fake16, fake16, fake16, fake_list, fake16, fake, 0),
                  ATTN_ERR_M_GT_N, "cuda M > N");
    assert_status(nsa_selected_attention_cuda(&not_causal, &p, fake16, fake16, fake16, fake_list, fake16, fake, 0),
                  ATTN_ERR_BAD_ARGUMENT, "cuda causal = 0");
    assert_status(nsa_selected_attention_cuda(&ok, &p, fake16 + 1, fake16, fake16, fake_list, fake16, fake, 0),
                  ATTN_ERR_BAD_ARGUMENT, "cuda misaligned q");
    assert_status(nsa_selected_attention_cuda(&ok, &p, fake16, fake16, fake16,
                                              (const int32_t *)((const char *)fake_list + 2), fake16, fake, 0),
                  ATTN_ERR_BAD_ARGUMENT, "cuda misaligned indices");
    /* the optional fast path: the same given checks, before anything else */
    assert_status(nsa_selected_attention_window_cuda(&ok, &p, fake16, fake16, fake16, NULL, fake16, fake, 0),
                  ATTN_ERR_NULL_POINTER, "window indices = NULL");
    assert_status(nsa_selected_attention_window_cuda(&ok, NULL, fake16, fake16, fake16, fake_list, fake16, fake, 0),
                  ATTN_ERR_NULL_POINTER, "window parameters = NULL");
    assert_status(nsa_selected_attention_window_cuda(&bad_d, &p, fake16, fake16, fake16, fake_list, fake16, fake, 0),
                  ATTN_ERR_UNSUPPORTED_D, "window D = 32");
    assert_status(nsa_selected_attention_window_cuda(&bad_m, &p, fake16, fake16, fake16, fake_list, fake16, fake, 0),
                  ATTN_ERR_M_GT_N, "window M > N");
    assert_status(nsa_selected_attention_window_cuda(&not_causal, &p, fake16, fake16, fake16, fake_list, fake16, fake,
                                                     0),
                  ATTN_ERR_BAD_ARGUMENT, "window causal = 0");
    assert_status(nsa_selected_attention_window_cuda(&ok, &p, fake16 + 1, fake16, fake16, fake_list, fake16, fake, 0),
                  ATTN_ERR_BAD_ARGUMENT, "window misaligned q");
}
