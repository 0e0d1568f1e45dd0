/*
 * attn_gpu.h - GPU helpers for lessons, tests and benchmarks (C-callable).
 *
 * Device detection with a clear skip reason, CUDA errors as attn statuses, device buffers with NaN
 * poisoning, and copy-engine (TMA) descriptors. Timing lives with the grader (common/grading/timing.h).
 */
#ifndef ATTN_GPU_H
#define ATTN_GPU_H

#include <cuda.h> /* CUtensorMap (the type only: nothing here needs -lcuda) */
#include <cuda_runtime_api.h>
#include <stdint.h>

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

/* A copy-engine (TMA, sm_90 and later) descriptor for a bf16 K or V tensor [B, N, G, D] of `shape`, seen
 * as three dimensions (D columns, G kv heads, B * N token rows), with boxes of box_cols x 1 x box_rows
 * elements. swizzle_128 = 1 stores each 128-byte box row with the 128-byte swizzle (box_cols must be 64;
 * the box's shared-memory address must then be 1024-byte aligned); 0 stores it as is. Rows past B * N
 * are zero-filled. Pass the map to a kernel as a `const __grid_constant__ CUtensorMap` parameter. The
 * driver's encoder is reached through the runtime (lesson code may not call driver entry points itself).
 * ATTN_OK; ATTN_ERR_BAD_ARGUMENT for a NULL map or tensor, a tensor not 16-byte aligned, or a box the
 * copy engine cannot take; ATTN_ERR_CUDA when the driver has no encoder or rejects the map. */
int attn_kv_tensor_map(CUtensorMap *map, const uint16_t *kv, const attn_shape *shape, int box_cols, int box_rows,
                       int swizzle_128);

#ifdef __cplusplus
}
#endif
#endif
