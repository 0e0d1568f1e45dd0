/*
 * lesson_04.cu - the benchmark's entries of lesson 04 (GQA, MQA), from the tree the program is linked
 * with: the query heads of a kv group share each K/V tile; against K and V repeated to H heads, then
 * the frozen flash kernel (the lesson's speed target); checked against the frozen flash kernel, which
 * takes G < H itself.
 */
#include "bench.h"
#include "gqa_attention.h"

static int launch_gqa(void *ctx, cudaStream_t stream)
{
    const bench_attn *a = (const bench_attn *)ctx;
    return gqa_attention_cuda(&a->c.shape, (const uint16_t *)a->q, (const uint16_t *)a->k, (const uint16_t *)a->v,
                              (uint16_t *)a->o, a->lse, stream);
}

BENCH_LESSON(4)
{
    bench_entry *e = bench_add(t, "gqa_bf16", BENCH_SOLUTION,
                               "gqa_attention_cuda: the query heads of a kv group share each K/V tile, bf16");
    bench_dense_entry(e, 2, launch_gqa);
    e->check = bench_check_flash;
    e->baseline = "frozen_repeat_kv_bf16";
}
