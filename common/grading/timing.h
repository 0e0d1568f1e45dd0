/*
 * timing.h - timing of one launch with CUDA events (warm-up, an L2 flush before every timed run,
 * medians), for the benchmarks and the grader. Lessons never time themselves.
 */
#ifndef ATTN_TIMING_H
#define ATTN_TIMING_H

#include <cuda_runtime_api.h>

#include "attn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A launch to time: enqueue the work on `stream`, return an attn status. */
typedef int (*attn_launch_fn)(void *ctx, cudaStream_t stream);

typedef struct {
    double median_ms, min_ms, max_ms;
    int reps;
} attn_timing;

/* Time one launch: `warmup` untimed runs, then `reps` runs, each after an L2 flush. */
int attn_time(attn_launch_fn fn, void *ctx, int warmup, int reps, attn_timing *out);

/* Sort `n` run times and fill `out` (median, min, max): the summary attn_time uses. */
void attn_timing_summarize(double *ms, int n, attn_timing *out);

#ifdef __cplusplus
}
#endif
#endif
