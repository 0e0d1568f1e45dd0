/*
 * lesson_05.cu - the benchmark's entries of lesson 05 (sliding-window attention), from the tree the
 * program is linked with: the window kernel (swept over --window), against the dense causal frozen
 * flash kernel (the lesson's speed target), checked against the fp32 GPU reference with the window.
 * It is also NSA's sliding-window branch (w = 512): a stage of the suite nsa.
 */
#include "bench.h"
#include "sliding_window.h"

static int launch_window(void *ctx, cudaStream_t stream)
{
    const bench_attn *a = (const bench_attn *)ctx;
    return window_attention_cuda(&a->c.shape, a->c.window, (const uint16_t *)a->q, (const uint16_t *)a->k,
                                 (const uint16_t *)a->v, (uint16_t *)a->o, a->lse, stream);
}

/* a window sees min(t + 1, w) keys at position t */
static double window_flops(const bench_case *c, const void *state)
{
    (void)state;
    const attn_shape *s = &c->shape;
    double pairs = 0.0;
    for (long i = 0; i < s->M; ++i) {
        const long t = attn_query_pos(s, (int)i);
        pairs += t + 1 < c->window ? t + 1 : c->window;
    }
    return 4.0 * s->D * s->H * s->B * pairs;
}

static int check_window(const bench_case *c, void *state, int *failed, char *msg, size_t msg_len)
{
    attn_gpu_ref_opts ro = {};
    ro.window = c->window;
    return bench_check_reference((const bench_attn *)state, &ro, failed, msg, msg_len);
}

BENCH_LESSON(5)
{
    bench_entry *e = bench_add(t, "window_bf16", BENCH_SOLUTION,
                               "window_attention_cuda: causal sliding-window attention (keys t - w + 1 .. t), bf16");
    bench_dense_entry(e, 2, launch_window);
    e->params = BENCH_WINDOW;
    e->supports = bench_supports_causal_d64_128;
    e->flops = window_flops;
    e->check = check_window;
    e->baseline = "frozen_flash_bf16";
    e->suites = "nsa";
}
