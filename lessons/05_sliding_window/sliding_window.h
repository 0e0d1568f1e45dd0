/*
 * sliding_window.h - lesson 05: sliding-window attention. The contract: do not edit.
 *
 * Query position t attends to the w keys t - w + 1 .. t (its own position included; fewer near the
 * start). The window is causal by construction. Work and memory traffic drop from O(N^2) to
 * O(N w): at N = 65536 and w = 512, 64 times less than causal attention.
 *
 * Layouts (common/README.md, "Conventions"): q, o [B, M, H, D]; k, v [B, N, G, D]; lse [B, H, M]; GQA
 * as in lesson 04.
 */
#ifndef SLIDING_WINDOW_H
#define SLIDING_WINDOW_H

#include <cuda_runtime_api.h>

#include "attn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- C part (host memory, fp32) */

/* The keys query position t sees with a window of w among N keys: *first .. *last inclusive,
 * *first = max(0, t - w + 1), *last = t. Errors: NULL pointers, w < 1, N < 1, t outside [0, N). */
int window_key_range(long t, int w, long N, long *first, long *last);

/* Sliding-window attention that visits only the keys in each query's window (loop bounds from
 * window_key_range, not a mask over all N keys), with the online softmax of lesson 02.
 * Requires shape->causal = 1 (a window is causal). */
int window_attention_cpu(const attn_shape *shape, int w, const float *q, const float *k, const float *v, float *o,
                         float *lse);

/* ---------------------------------------------------------------- CUDA part (device memory, bf16) */

/* Sliding-window flash attention: tiles wholly outside the band are never loaded. bf16 in/out,
 * fp32 lse; D = 64 or 128; any H % G == 0; M <= N; shape->causal must be 1. */
int window_attention_cuda(const attn_shape *shape, int window, const uint16_t *q, const uint16_t *k,
                          const uint16_t *v, uint16_t *o, float *lse, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
