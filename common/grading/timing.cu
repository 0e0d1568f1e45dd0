// timing.cu - timing of one launch with CUDA events (see timing.h).
#include <cuda_runtime.h>

#include <stdlib.h>

#include "attn_gpu.h"
#include "timing.h"

namespace {

// Writing a buffer twice the size of L2 evicts whatever the previous run left there, so every
// timed run starts with cold caches, as it would inside a model.
struct Timer {
    cudaStream_t stream = nullptr;
    cudaEvent_t start = nullptr, stop = nullptr;
    void *flush = nullptr;
    size_t flush_bytes = 0;

    int init()
    {
        int dev = 0, l2 = 0;
        int st = attn_cuda_status(cudaGetDevice(&dev), "cudaGetDevice");
        if (!st) st = attn_cuda_status(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev), "L2 size");
        if (!st) st = attn_cuda_status(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "stream");
        if (!st) st = attn_cuda_status(cudaEventCreate(&start), "cudaEventCreate");
        if (!st) st = attn_cuda_status(cudaEventCreate(&stop), "cudaEventCreate");
        flush_bytes = 2 * (size_t)(l2 > 0 ? l2 : (64 << 20));
        if (!st) st = attn_cuda_status(cudaMalloc(&flush, flush_bytes), "cudaMalloc (L2 flush)");
        return st;
    }
    ~Timer()
    {
        if (flush) cudaFree(flush);
        if (start) cudaEventDestroy(start);
        if (stop) cudaEventDestroy(stop);
        if (stream) cudaStreamDestroy(stream);
    }
    int run(attn_launch_fn fn, void *ctx, double *ms)
    {
        int st = attn_cuda_status(cudaMemsetAsync(flush, 0, flush_bytes, stream), "L2 flush");
        if (!st) st = attn_cuda_status(cudaEventRecord(start, stream), "cudaEventRecord");
        if (!st) st = fn(ctx, stream);
        if (!st) st = attn_cuda_status(cudaEventRecord(stop, stream), "cudaEventRecord");
        if (!st) st = attn_cuda_status(cudaEventSynchronize(stop), "cudaEventSynchronize");
        float f = 0.0f;
        if (!st) st = attn_cuda_status(cudaEventElapsedTime(&f, start, stop), "cudaEventElapsedTime");
        *ms = f;
        return st;
    }
};

int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

} // namespace

/* Sorts ms[0..n) and fills out (median, min, max); shared with the checked timing of harness.cu. */
extern "C" void attn_timing_summarize(double *ms, int n, attn_timing *out)
{
    qsort(ms, (size_t)n, sizeof(double), cmp_double);
    out->reps = n;
    out->min_ms = ms[0];
    out->max_ms = ms[n - 1];
    out->median_ms = (n % 2) ? ms[n / 2] : 0.5 * (ms[n / 2 - 1] + ms[n / 2]);
}

extern "C" int attn_time(attn_launch_fn fn, void *ctx, int warmup, int reps, attn_timing *out)
{
    if (!fn || !out || reps < 1) return attn_fail(ATTN_ERR_BAD_ARGUMENT, "attn_time: bad arguments");
    Timer timer;
    int st = timer.init();
    double *ms = (double *)calloc((size_t)reps, sizeof(double)), dummy;
    for (int i = 0; !st && i < warmup; ++i) st = timer.run(fn, ctx, &dummy);
    for (int i = 0; !st && i < reps; ++i) st = timer.run(fn, ctx, &ms[i]);
    if (!st) attn_timing_summarize(ms, reps, out);
    free(ms);
    return st;
}

