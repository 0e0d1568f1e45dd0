/*
 * lesson_02.cu - the benchmark's entries of lesson 02 (online softmax), from the tree the program is
 * linked with: the fused fp32 kernel, against the frozen naive kernel (the lesson's speed target),
 * checked against the frozen fused kernel.
 */
#include "baselines.h"
#include "bench.h"
#include "online_softmax.h"

static int launch_online(void *ctx, cudaStream_t stream)
{
    const bench_attn *a = (const bench_attn *)ctx;
    return online_attention_cuda(&a->c.shape, (const float *)a->q, (const float *)a->k, (const float *)a->v,
                                 (float *)a->o, a->lse, stream);
}

static int online_reference(const bench_attn *a, void *o_ref, float *lse_ref)
{
    return attn_baseline_online_f32(&a->c.shape, (const float *)a->q, (const float *)a->k, (const float *)a->v,
                                    (float *)o_ref, lse_ref, 0);
}

static int check_online(const bench_case *c, void *state, int *failed, char *msg, size_t msg_len)
{
    (void)c;
    return bench_check_against((const bench_attn *)state, online_reference, failed, msg, msg_len);
}

BENCH_LESSON(2)
{
    bench_entry *e = bench_add(t, "online_f32", BENCH_SOLUTION,
                               "online_attention_cuda: fused attention with the online softmax, fp32, writes lse");
    bench_dense_entry(e, 4, launch_online);
    e->check = check_online;
    e->baseline = "naive_f32";
}
