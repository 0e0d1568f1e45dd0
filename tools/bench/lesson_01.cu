/*
 * lesson_01.cu - the benchmark's entries of lesson 01 (naive attention), from the tree the program is
 * linked with (solutions/ or lessons/): naive_attention_cuda, fp32, against the frozen naive kernel.
 */
#include <stdlib.h>

#include "baselines.h"
#include "bench.h"
#include "naive_attention.h"

static int launch_naive(void *ctx, cudaStream_t stream)
{
    const bench_attn *a = (const bench_attn *)ctx;
    return naive_attention_cuda(&a->c.shape, (const float *)a->q, (const float *)a->k, (const float *)a->v,
                                (float *)a->o, (float *)a->work, stream);
}

/* the workspace holds the B*H*M*N scores; the lesson says how many bytes it wants */
static int setup_naive(const bench_case *c, void **state)
{
    bench_attn *a = (bench_attn *)calloc(1, sizeof *a);
    if (!a) return attn_fail(ATTN_ERR_OUT_OF_MEMORY, "host memory for the bench state");
    const int st = bench_attn_init(a, c, 4, 0, naive_attention_workspace_bytes(&c->shape));
    if (st) free(a);
    else *state = a;
    return st;
}

/* inputs, output and scores, and the frozen kernel's output and scores for the check */
static double naive_device_bytes(const bench_case *c)
{
    return bench_attn_device_bytes_f32(c) + (double)naive_attention_workspace_bytes(&c->shape) +
           (double)attn_baseline_naive_workspace_bytes(&c->shape);
}

static int supports_naive(const bench_case *c, char *why, size_t why_len)
{
    if (c->shape.D >= 1 && c->shape.D <= ATTN_MAX_D) return 1;
    snprintf(why, why_len, "it supports 1 <= D <= %d", ATTN_MAX_D);
    return 0;
}

static int naive_reference(const bench_attn *a, void *o_ref, float *lse_ref)
{
    (void)lse_ref;
    float *work = NULL;
    int st = attn_dalloc((void **)&work, attn_baseline_naive_workspace_bytes(&a->c.shape));
    if (!st)
        st = attn_baseline_naive_f32(&a->c.shape, (const float *)a->q, (const float *)a->k, (const float *)a->v,
                                     (float *)o_ref, work, 0);
    if (!st) st = attn_dsync();
    attn_dfree(work);
    return st;
}

static int check_naive(const bench_case *c, void *state, int *failed, char *msg, size_t msg_len)
{
    (void)c;
    return bench_check_against((const bench_attn *)state, naive_reference, failed, msg, msg_len);
}

BENCH_LESSON(1)
{
    bench_entry *e = bench_add(t, "naive_cuda_f32", BENCH_SOLUTION,
                               "naive_attention_cuda: fp32, the N x N scores in memory (four kernels)");
    bench_dense_entry(e, 4, launch_naive);
    e->setup = setup_naive;
    e->device_bytes = naive_device_bytes;
    e->supports = supports_naive;
    e->check = check_naive;
    e->baseline = "naive_f32";
}
