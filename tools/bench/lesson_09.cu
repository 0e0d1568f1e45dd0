/*
 * lesson_09.cu - the benchmark's entries of lesson 09 (NSA selected-block attention), from the tree the
 * program is linked with, swept over --config:
 *   selected_attention  nsa_selected_attention_cuda over top-n lists, against the dense causal frozen
 *                       flash kernel (the lesson's speed target), checked against the fp32 GPU reference
 *   selected_kv_floor_2, _3, _tma_6, _tma_3x2
 *                       its floors (kv_floor.cuh): the same K/V tiles of the same lists with nothing
 *                       computed, through a cp.async ring of 2 or 3 tile pairs, or the copy engine with
 *                       a ring of 6 (a block per multiprocessor) or two of 3 (sm_90)
 * The lists are those the frozen GPU reference selection (lesson 08's baseline) chooses from this q
 * and random compressed keys, made without lesson 08's code: on random inputs, nearly independent from
 * one position to the next; with --local-queries, shared by neighbours, as a trained model's are.
 */
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "kv_floor.cuh"
#include "selected_attention.h"

typedef struct {
    bench_attn a;       /* first: the kit's functions take the state as a bench_attn */
    int32_t *lists;     /* [B, M, G, n] on the device */
    double pairs;       /* visible (query head, key) pairs of the lists */
    unsigned *sink;     /* the floors' */
} selected_state;

/* The lists of the last case asked for: the floors read the lists selected attention read, and the
 * reference selection is the slow part of making them. */
static struct {
    bench_case c;
    int32_t *lists;
    size_t n;
} g_lists;

static int same_case(const bench_case *a, const bench_case *b)
{
    return !memcmp(&a->shape, &b->shape, sizeof a->shape) && !memcmp(&a->nsa, &b->nsa, sizeof a->nsa) &&
           a->local_queries == b->local_queries && a->seed == b->seed;
}

/* host lists [B, M, G, n] for c, from the frozen reference selection on c's q (cached) */
static int make_lists(const bench_case *c, const int32_t **out, size_t *n)
{
    if (g_lists.lists && same_case(&g_lists.c, c)) {
        *out = g_lists.lists, *n = g_lists.n;
        return ATTN_OK;
    }
    free(g_lists.lists);
    g_lists.lists = NULL;
    bench_select s;
    int st = bench_select_init(&s, c, 1);
    if (st) return st;
    int32_t *lists = (int32_t *)malloc(s.n_idx * 4);
    if (!lists) st = attn_fail(ATTN_ERR_OUT_OF_MEMORY, "host memory for the block lists");
    if (!st) st = bench_select_reference(&s, 0);
    if (!st) st = attn_dsync();
    if (!st) st = attn_d2h(lists, s.idx, s.n_idx * 4);
    if (!st) {
        g_lists.c = *c, g_lists.lists = lists, g_lists.n = s.n_idx;
        *out = lists, *n = s.n_idx;
    } else {
        free(lists);
    }
    bench_select_release(&s);
    return st;
}

static void teardown_selected(void *state)
{
    selected_state *s = (selected_state *)state;
    if (!s) return;
    bench_attn_release(&s->a);
    attn_dfree(s->lists);
    attn_dfree(s->sink);
    free(s);
}

static int setup_selected(const bench_case *c, void **state)
{
    selected_state *s = (selected_state *)calloc(1, sizeof *s);
    if (!s) return attn_fail(ATTN_ERR_OUT_OF_MEMORY, "host memory for the bench state");
    const int32_t *lists = NULL;
    size_t n = 0;
    int st = make_lists(c, &lists, &n); /* first: the reference selection needs room of its own */
    if (!st) st = bench_attn_init(&s->a, c, 2, 1, 0);
    if (!st) st = attn_dalloc((void **)&s->lists, n * 4);
    if (!st) st = attn_h2d(s->lists, lists, n * 4);
    if (!st) st = attn_dalloc((void **)&s->sink, 256 * sizeof(unsigned));
    if (!st) s->pairs = bench_list_pairs(c, lists);
    if (st) {
        teardown_selected(s);
        return st;
    }
    *state = s;
    return ATTN_OK;
}

static int launch_selected(void *ctx, cudaStream_t stream)
{
    const selected_state *s = (const selected_state *)ctx;
    const bench_attn *a = &s->a;
    return nsa_selected_attention_cuda(&a->c.shape, &a->c.nsa, (const uint16_t *)a->q, (const uint16_t *)a->k,
                                       (const uint16_t *)a->v, s->lists, (uint16_t *)a->o, a->lse, stream);
}

static int check_selected(const bench_case *c, void *state, int *failed, char *msg, size_t msg_len)
{
    const selected_state *s = (const selected_state *)state;
    attn_gpu_ref_opts ro = {};
    ro.block_indices = s->lists; /* one list per query position and kv group (or query head) */
    ro.num_blocks = c->nsa.n;
    ro.block_size = c->nsa.l_sel;
    ro.lists_per_head = !c->nsa.heads_share_selection;
    return bench_check_reference(&s->a, &ro, failed, msg, msg_len);
}

/* 4 D FLOPs per visible (query head, key) pair of the lists */
static double selected_flops(const bench_case *c, const void *state)
{
    return 4.0 * c->shape.D * ((const selected_state *)state)->pairs;
}

/* the K and V rows of the visible keys of the listed blocks, once per (position, list): what the
 * floors move (list_pairs counts them once per query head reading the list) */
static double kv_bytes(const bench_case *c, const void *state)
{
    const int per_list = c->nsa.heads_share_selection ? c->shape.H / c->shape.G : 1;
    return ((const selected_state *)state)->pairs / per_list * 2.0 * c->shape.D * 2.0;
}

/* and q, o and lse once */
static double selected_bytes(const bench_case *c, const void *state)
{
    const attn_shape *s = &c->shape;
    return kv_bytes(c, state) + 2.0 * attn_q_elems(s) * 2 + attn_lse_elems(s) * 4.0;
}

/* the inputs, the lists, and the reference selection's scores and the check's outputs at their largest */
static double selected_device_bytes(const bench_case *c)
{
    return bench_attn_device_bytes_bf16(c) + bench_select_device_bytes(c, 1);
}

/* The course's bar (from the lesson READMEs, set on an H200) at its shape: N = 65536, B = 1, H = 64,
 * G = 4, D = 128, causal, M = N. */
static double selected_bar(const bench_case *c)
{
    const attn_shape *s = &c->shape;
    if (!(s->N == 65536 && s->M == s->N && s->B == 1 && s->H == 64 && s->G == 4 && s->D == 128 && s->causal)) return 0;
    if (!strncmp(c->config, "mean", 4)) return 10.3;
    if (!strncmp(c->config, "paper", 5)) return 10.2;
    return 0;
}

static int supports_floor(const bench_case *c, char *why, size_t why_len)
{
    if (!bench_supports_nsa(c, why, why_len)) return 0;
    if (c->shape.D != 128 || !c->nsa.heads_share_selection || c->shape.H / c->shape.G > 16) {
        snprintf(why, why_len, "the floors run on the bar's shape only (D = 128, shared lists, H/G <= 16)");
        return 0;
    }
    return 1;
}

static int supports_floor_tma(const bench_case *c, char *why, size_t why_len)
{
    if (!supports_floor(c, why, why_len)) return 0;
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess || major < 9) {
        cudaGetLastError();
        snprintf(why, why_len, "the copy engine's floor needs sm_90 or newer");
        return 0;
    }
    return 1;
}

static int launch_floor(const selected_state *s, int tma, int stages, cudaStream_t stream)
{
    const kv_floor_args args = {&s->a.c.shape, &s->a.c.nsa, s->lists, (const uint16_t *)s->a.k,
                                (const uint16_t *)s->a.v, s->sink};
    return tma ? kv_floor_tma_launch(&args, stages, stream) : kv_floor_launch(&args, stages, stream);
}

static int launch_floor_2(void *ctx, cudaStream_t stream) { return launch_floor((const selected_state *)ctx, 0, 2, stream); }
static int launch_floor_3(void *ctx, cudaStream_t stream) { return launch_floor((const selected_state *)ctx, 0, 3, stream); }
static int launch_floor_tma_6(void *ctx, cudaStream_t stream) { return launch_floor((const selected_state *)ctx, 1, 6, stream); }
static int launch_floor_tma_3(void *ctx, cudaStream_t stream) { return launch_floor((const selected_state *)ctx, 1, 3, stream); }

static void floor_entry(bench_table *t, const char *name, const char *computes, attn_launch_fn launch, int tma)
{
    bench_entry *e = bench_add(t, name, BENCH_FLOOR, computes);
    e->params = BENCH_NSA;
    e->suites = "nsa";
    e->supports = tma ? supports_floor_tma : supports_floor;
    e->device_bytes = selected_device_bytes;
    e->setup = setup_selected;
    e->launch = launch;
    e->teardown = teardown_selected;
    e->bytes = kv_bytes;
}

BENCH_LESSON(9)
{
    bench_entry *e = bench_add(t, "selected_attention", BENCH_SOLUTION,
                               "nsa_selected_attention_cuda: each query over the keys of its top-n blocks");
    e->params = BENCH_NSA;
    e->suites = "nsa";
    e->supports = bench_supports_nsa;
    e->device_bytes = selected_device_bytes;
    e->setup = setup_selected;
    e->launch = launch_selected;
    e->check = check_selected;
    e->teardown = teardown_selected;
    e->flops = selected_flops;
    e->bytes = selected_bytes;
    e->bar_ms = selected_bar;
    e->baseline = "frozen_flash_bf16";

    floor_entry(t, "selected_kv_floor_2", "selected_attention's K/V loads alone, cp.async ring of 2 tile pairs",
                launch_floor_2, 0);
    floor_entry(t, "selected_kv_floor_3", "selected_attention's K/V loads alone, cp.async ring of 3 tile pairs",
                launch_floor_3, 0);
    floor_entry(t, "selected_kv_floor_tma_6",
                "the same loads through the copy engine, a block per multiprocessor with a ring of 6", launch_floor_tma_6,
                1);
    floor_entry(t, "selected_kv_floor_tma_3x2",
                "the same loads through the copy engine, two blocks per multiprocessor with rings of 3",
                launch_floor_tma_3, 1);
}
