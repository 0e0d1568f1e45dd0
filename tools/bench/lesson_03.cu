/*
 * lesson_03.cu - the benchmark's entries of lesson 03 (flash attention on tensor cores), from the tree
 * the program is linked with: bf16 flash attention, against lesson 02's frozen fp32 fused kernel (the
 * lesson's speed target flash_vs_online), checked against the frozen flash kernel.
 */
#include "bench.h"
#include "flash_attention.h"

static int launch_flash(void *ctx, cudaStream_t stream)
{
    const bench_attn *a = (const bench_attn *)ctx;
    return flash_attention_cuda(&a->c.shape, (const uint16_t *)a->q, (const uint16_t *)a->k, (const uint16_t *)a->v,
                                (uint16_t *)a->o, a->lse, stream);
}

BENCH_LESSON(3)
{
    bench_entry *e = bench_add(t, "flash_bf16", BENCH_SOLUTION,
                               "flash_attention_cuda: tiled flash attention on tensor cores, bf16 in and out, fp32 lse");
    bench_dense_entry(e, 2, launch_flash);
    e->check = bench_check_flash;
    e->baseline = "frozen_online_f32";
}
