/*
 * attn_gpu.h - GPU helpers shared by the tests, the grader and the benchmarks (C-callable).
 *
 * Device detection with a clear skip reason, device buffers, NaN poisoning, and timing of one
 * launch (CUDA events, warm-up, an L2 flush before every timed run, medians). Speed tests time a
 * baseline and a student kernel interleaved, every run checked: attn_time_ab_checked in harness.h.
 */
#ifndef ATTN_GPU_H
#define ATTN_GPU_H

#include <cuda_runtime_api.h>

#include "attn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 1 if a CUDA device can be used; otherwise 0 and `why` (if not NULL) says why, e.g.
 * "no CUDA device: GPU part skipped (cudaGetDeviceCount: no CUDA-capable device is detected)". */
int attn_gpu_available(char *why, size_t why_len);

/* "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs)". */
void attn_gpu_describe(char *buf, size_t len);

/* Turn a CUDA error into ATTN_ERR_CUDA with the error's name and `where` in the detail text.
 * Returns ATTN_OK for cudaSuccess. */
int attn_cuda_status(cudaError_t err, const char *where);

/* After a kernel launch: the launch error, if any, as an attn status. */
int attn_cuda_launch_status(const char *kernel_name);

/* Device buffers. attn_dalloc poisons the new buffer (all bits set = NaN). */
int attn_dalloc(void **ptr, size_t bytes);
void attn_dfree(void *ptr);
int attn_h2d(void *dst, const void *src, size_t bytes);
int attn_d2h(void *dst, const void *src, size_t bytes);
int attn_dpoison(void *ptr, size_t bytes);
int attn_dsync(void);

/* ---------------------------------------------------------------- timing */

/* A launch to time: enqueue the work on `stream`, return an attn status. */
typedef int (*attn_launch_fn)(void *ctx, cudaStream_t stream);

typedef struct {
    double median_ms, min_ms, max_ms;
    int reps;
} attn_timing;

/* Time one launch: `warmup` untimed runs, then `reps` runs, each after an L2 flush. */
int attn_time(attn_launch_fn fn, void *ctx, int warmup, int reps, attn_timing *out);

#ifdef __cplusplus
}
#endif
#endif
