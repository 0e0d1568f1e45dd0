/*
 * baselines.cu - the benchmark's entries for the frozen kernels of common/grading/ (lesson 0: in
 * every bench program, the learner's included): the speed baselines the lessons are compared with.
 * Nothing checks them; they are the references.
 */
#include <stdio.h>
#include <stdlib.h>

#include "baselines.h"
#include "baselines_decode.h"
#include "bench.h"
#include "nsa_select_ref.h"

static int launch_naive(void *ctx, cudaStream_t stream)
{
    const bench_attn *a = (const bench_attn *)ctx;
    return attn_baseline_naive_f32(&a->c.shape, (const float *)a->q, (const float *)a->k, (const float *)a->v,
                                   (float *)a->o, (float *)a->work, stream);
}

static int setup_naive(const bench_case *c, void **state)
{
    bench_attn *a = (bench_attn *)calloc(1, sizeof *a);
    if (!a) return attn_fail(ATTN_ERR_OUT_OF_MEMORY, "host memory for the bench state");
    const int st = bench_attn_init(a, c, 4, 0, attn_baseline_naive_workspace_bytes(&c->shape));
    if (st) free(a);
    else *state = a;
    return st;
}

/* the B*H*M*N scores grow fastest: a shape whose scores do not fit is skipped */
static double naive_device_bytes(const bench_case *c)
{
    return bench_attn_device_bytes_f32(c) + (double)attn_baseline_naive_workspace_bytes(&c->shape);
}

static int supports_naive(const bench_case *c, char *why, size_t why_len)
{
    if (c->shape.D >= 1 && c->shape.D <= ATTN_MAX_D) return 1;
    snprintf(why, why_len, "it supports 1 <= D <= %d", ATTN_MAX_D);
    return 0;
}

static int launch_online(void *ctx, cudaStream_t stream)
{
    const bench_attn *a = (const bench_attn *)ctx;
    return attn_baseline_online_f32(&a->c.shape, (const float *)a->q, (const float *)a->k, (const float *)a->v,
                                    (float *)a->o, a->lse, stream);
}

static int launch_flash(void *ctx, cudaStream_t stream)
{
    const bench_attn *a = (const bench_attn *)ctx;
    return attn_baseline_flash_bf16(&a->c.shape, (const uint16_t *)a->q, (const uint16_t *)a->k,
                                    (const uint16_t *)a->v, (uint16_t *)a->o, a->lse, stream);
}

/* K and V repeated to H heads in the scratch, then the frozen flash kernel with G = H */
static size_t repeat_kv_bytes(const attn_shape *s)
{
    attn_shape mha = *s;
    mha.G = mha.H;
    return 2 * attn_kv_elems(&mha) * sizeof(uint16_t);
}

static int setup_repeat_kv(const bench_case *c, void **state)
{
    bench_attn *a = (bench_attn *)calloc(1, sizeof *a);
    if (!a) return attn_fail(ATTN_ERR_OUT_OF_MEMORY, "host memory for the bench state");
    const int st = bench_attn_init(a, c, 2, 1, repeat_kv_bytes(&c->shape));
    if (st) free(a);
    else *state = a;
    return st;
}

static double repeat_kv_device_bytes(const bench_case *c)
{
    return bench_attn_device_bytes_bf16(c) + (double)repeat_kv_bytes(&c->shape);
}

static int launch_repeat_kv(void *ctx, cudaStream_t stream)
{
    const bench_attn *a = (const bench_attn *)ctx;
    attn_shape mha = a->c.shape;
    mha.G = mha.H;
    uint16_t *k_rep = (uint16_t *)a->work, *v_rep = k_rep + attn_kv_elems(&mha);
    int st = attn_baseline_repeat_kv_bf16(&a->c.shape, (const uint16_t *)a->k, k_rep, stream);
    if (!st) st = attn_baseline_repeat_kv_bf16(&a->c.shape, (const uint16_t *)a->v, v_rep, stream);
    if (!st) st = attn_baseline_flash_bf16(&mha, (const uint16_t *)a->q, k_rep, v_rep, (uint16_t *)a->o, a->lse, stream);
    return st;
}

/* ---------------------------------------------------------------- the reference block selection */

static int setup_select_ref(const bench_case *c, void **state)
{
    bench_select *s = (bench_select *)calloc(1, sizeof *s);
    if (!s) return attn_fail(ATTN_ERR_OUT_OF_MEMORY, "host memory for the bench state");
    const int st = bench_select_init(s, c, 1);
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

static int launch_select_ref(void *ctx, cudaStream_t stream)
{
    return bench_select_reference((bench_select *)ctx, stream);
}

static double select_ref_device_bytes(const bench_case *c) { return bench_select_device_bytes(c, 1); }

/* the q . k_cmp products of the visible (query head, compressed token) pairs, as lesson 08's kernel */
static double select_flops(const bench_case *c, const void *state)
{
    (void)state;
    return 2.0 * c->shape.D * bench_cmp_pairs(c);
}

/* ---------------------------------------------------------------- the naive decode (lesson 11's baseline) */

/* A KV cache in which every sequence holds N tokens: q [B, 1, H, D], k and v the caches [B, N, G, D], and the
 * lengths [B] (all N) on the device. */
typedef struct {
    bench_attn a;      /* first: the kit's functions take the state as a bench_attn */
    int32_t *lengths;
} decode_naive_state;

static void teardown_decode_naive(void *state)
{
    decode_naive_state *s = (decode_naive_state *)state;
    if (!s) return;
    bench_attn_release(&s->a);
    attn_dfree(s->lengths);
    free(s);
}

static int setup_decode_naive(const bench_case *c, void **state)
{
    decode_naive_state *s = (decode_naive_state *)calloc(1, sizeof *s);
    int32_t *len = (int32_t *)malloc((size_t)c->shape.B * sizeof(int32_t));
    int st = s && len ? ATTN_OK : attn_fail(ATTN_ERR_OUT_OF_MEMORY, "host memory for the bench state");
    if (!st) st = bench_attn_init(&s->a, c, 2, 1, 0);
    for (int b = 0; !st && b < c->shape.B; ++b) len[b] = c->shape.N;
    if (!st) st = attn_dalloc((void **)&s->lengths, (size_t)c->shape.B * sizeof(int32_t));
    if (!st) st = attn_h2d(s->lengths, len, (size_t)c->shape.B * sizeof(int32_t));
    free(len);
    if (st) {
        teardown_decode_naive(s);
        return st;
    }
    *state = s;
    return ATTN_OK;
}

static int launch_decode_naive(void *ctx, cudaStream_t stream)
{
    const decode_naive_state *s = (const decode_naive_state *)ctx;
    const bench_attn *a = &s->a;
    return attn_baseline_decode_naive_bf16(&a->c.shape, (const uint16_t *)a->q, (const uint16_t *)a->k,
                                           (const uint16_t *)a->v, s->lengths, (uint16_t *)a->o, a->lse, stream);
}

static int supports_decode_naive(const bench_case *c, char *why, size_t why_len)
{
    if (c->shape.M != 1 || !c->shape.causal || c->shape.D > ATTN_MAX_D) {
        snprintf(why, why_len, "a decoding step: one query per sequence (--M 1), causal, D <= %d", ATTN_MAX_D);
        return 0;
    }
    return 1;
}

/* K and V of the whole cache, read once: what a decode cannot avoid (the naive kernel reads K twice and V once
 * per query head, which is not counted) */
static double decode_kv_bytes(const bench_case *c, const void *state)
{
    (void)state;
    return 2.0 * attn_kv_elems(&c->shape) * 2.0;
}

BENCH_LESSON(0)
{
    bench_entry *e = bench_add(t, "naive_f32", BENCH_BASELINE,
                               "lesson 01's frozen naive kernel: fp32, the N x N scores in memory");
    bench_dense_entry(e, 4, launch_naive);
    e->setup = setup_naive;
    e->device_bytes = naive_device_bytes;
    e->supports = supports_naive;
    e = bench_add(t, "frozen_online_f32", BENCH_BASELINE, "lesson 02's frozen fused kernel (online softmax), fp32");
    bench_dense_entry(e, 4, launch_online);
    e = bench_add(t, "frozen_flash_bf16", BENCH_BASELINE,
                  "lesson 03's frozen flash kernel on tensor cores, bf16, G < H allowed (dense: causal or full)");
    bench_dense_entry(e, 2, launch_flash);
    e = bench_add(t, "frozen_repeat_kv_bf16", BENCH_BASELINE,
                  "lesson 04's baseline: K and V repeated to H heads, then the frozen flash kernel");
    bench_dense_entry(e, 2, launch_repeat_kv);
    e->setup = setup_repeat_kv;
    e->device_bytes = repeat_kv_device_bytes;
    e = bench_add(t, "ref_nsa_select", BENCH_BASELINE,
                  "lesson 08's baseline: the frozen GPU reference of NSA's block scores and top-n lists (fp32, a warp per row)");
    e->params = BENCH_NSA;
    e->supports = bench_supports_nsa;
    e->device_bytes = select_ref_device_bytes;
    e->setup = setup_select_ref;
    e->launch = launch_select_ref;
    e->teardown = teardown_select;
    e->flops = select_flops;
    e = bench_add(t, "frozen_decode_naive_bf16", BENCH_BASELINE,
                  "lesson 11's baseline: the frozen naive decode, a block per (sequence, query head), K read twice and V "
                  "once per head (one query per sequence, --M 1)");
    bench_dense_entry(e, 2, launch_decode_naive);
    e->setup = setup_decode_naive;
    e->teardown = teardown_decode_naive;
    e->supports = supports_decode_naive;
    e->bytes = decode_kv_bytes;
    e->capturable = 1; /* one launch, nothing else: --graph times its replays too */
}
