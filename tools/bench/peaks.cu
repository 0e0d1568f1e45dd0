/*
 * peaks.cu - the device's measured peaks (lesson 0, role peak): what the table's "%flops" and "%bw"
 * columns divide by. The driver times each once per run, before the sweep, with attn_time like every
 * entry (the L2 flush changes nothing here: both work on buffers far larger than L2).
 *   peak_copy       memory bandwidth: a device-to-device copy, bytes read + bytes written
 *   peak_gemm_bf16  bf16 tensor throughput: an 8192 x 8192 x 8192 cuBLAS GEMM, bf16 in and out, fp32
 *                   accumulation, on random operands (zeros would flatter it: less switching, less power)
 */
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <stdlib.h>

#include "bench.h"

typedef struct {
    void *src, *dst;
    size_t bytes;
} copy_state;

static int setup_copy(const bench_case *c, void **state)
{
    (void)c;
    copy_state *s = (copy_state *)calloc(1, sizeof *s);
    if (!s) return attn_fail(ATTN_ERR_OUT_OF_MEMORY, "host memory for the bench state");
    size_t free_b = 0, total_b = 0;
    int st = attn_cuda_status(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
    /* 2 GiB copied (4 GiB moved), less on a small device; far larger than L2 */
    s->bytes = (size_t)2 << 30;
    while (s->bytes > ((size_t)64 << 20) && 4 * s->bytes > free_b) s->bytes /= 2;
    if (!st) st = attn_dalloc(&s->src, s->bytes);
    if (!st) st = attn_dalloc(&s->dst, s->bytes);
    if (!st) st = bench_fill(s->src, 4, s->bytes / 4, 1024, 1.0f, 1);
    if (st) {
        attn_dfree(s->src);
        attn_dfree(s->dst);
        free(s);
        return st;
    }
    *state = s;
    return ATTN_OK;
}

static int launch_copy(void *ctx, cudaStream_t stream)
{
    const copy_state *s = (const copy_state *)ctx;
    return attn_cuda_status(cudaMemcpyAsync(s->dst, s->src, s->bytes, cudaMemcpyDeviceToDevice, stream),
                            "cudaMemcpyAsync (bandwidth peak)");
}

static void teardown_copy(void *state)
{
    copy_state *s = (copy_state *)state;
    if (!s) return;
    attn_dfree(s->src);
    attn_dfree(s->dst);
    free(s);
}

static double copy_bytes(const bench_case *c, const void *state)
{
    (void)c;
    return 2.0 * (double)((const copy_state *)state)->bytes;
}

enum { GEMM_N = 8192 };

typedef struct {
    cublasHandle_t handle;
    uint16_t *a, *b, *c;
} gemm_state;

static int cublas_status(cublasStatus_t s, const char *where)
{
    if (s == CUBLAS_STATUS_SUCCESS) return ATTN_OK;
    return attn_fail(ATTN_ERR_CUDA, "%s: %s", where, cublasGetStatusString(s));
}

static void teardown_gemm(void *state)
{
    gemm_state *g = (gemm_state *)state;
    if (!g) return;
    if (g->handle) cublasDestroy(g->handle);
    attn_dfree(g->a);
    attn_dfree(g->b);
    attn_dfree(g->c);
    free(g);
}

static int setup_gemm(const bench_case *c, void **state)
{
    (void)c;
    gemm_state *g = (gemm_state *)calloc(1, sizeof *g);
    if (!g) return attn_fail(ATTN_ERR_OUT_OF_MEMORY, "host memory for the bench state");
    const size_t elems = (size_t)GEMM_N * GEMM_N;
    int st = attn_dalloc((void **)&g->a, elems * 2);
    if (!st) st = attn_dalloc((void **)&g->b, elems * 2);
    if (!st) st = attn_dalloc((void **)&g->c, elems * 2);
    if (!st) st = bench_fill(g->a, 2, elems, GEMM_N, 1.0f, 11);
    if (!st) st = bench_fill(g->b, 2, elems, GEMM_N, 1.0f, 12);
    if (!st) st = cublas_status(cublasCreate(&g->handle), "cublasCreate");
    if (st) {
        teardown_gemm(g);
        return st;
    }
    *state = g;
    return ATTN_OK;
}

static int launch_gemm(void *ctx, cudaStream_t stream)
{
    const gemm_state *g = (const gemm_state *)ctx;
    const float alpha = 1.0f, beta = 0.0f; /* fp32 scalars: the compute type is CUBLAS_COMPUTE_32F */
    int st = cublas_status(cublasSetStream(g->handle, stream), "cublasSetStream");
    if (st) return st;
    return cublas_status(cublasGemmEx(g->handle, CUBLAS_OP_N, CUBLAS_OP_N, GEMM_N, GEMM_N, GEMM_N, &alpha, g->a,
                                      CUDA_R_16BF, GEMM_N, g->b, CUDA_R_16BF, GEMM_N, &beta, g->c, CUDA_R_16BF, GEMM_N,
                                      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                         "cublasGemmEx (bf16 peak)");
}

static double gemm_flops(const bench_case *c, const void *state)
{
    (void)c, (void)state;
    return 2.0 * GEMM_N * (double)GEMM_N * GEMM_N;
}

BENCH_LESSON(0)
{
    bench_entry *e = bench_add(t, "peak_copy", BENCH_PEAK,
                               "memory bandwidth: a device-to-device copy of up to 2 GiB, bytes read + written");
    e->setup = setup_copy;
    e->launch = launch_copy;
    e->teardown = teardown_copy;
    e->bytes = copy_bytes;
    e = bench_add(t, "peak_gemm_bf16", BENCH_PEAK,
                  "bf16 tensor throughput: cublasGemmEx 8192 x 8192 x 8192, bf16 in and out, fp32 accumulation");
    e->setup = setup_gemm;
    e->launch = launch_gemm;
    e->teardown = teardown_gemm;
    e->flops = gemm_flops;
}
