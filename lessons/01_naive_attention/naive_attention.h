/*
 * naive_attention.h - lesson 01: naive dense attention (fp32). The contract: do not edit.
 *
 *   S = scale * Q K^T        scores, one per (query, key), scale = 1/sqrt(D) by default
 *   S[s] = -inf              for keys a causal query may not see (s > t, t = N - M + i)
 *   P = softmax(S)           row by row
 *   O = P V
 *
 * Layouts (common/README.md, "Conventions"): q, o [B, M, H, D]; k, v [B, N, G, D]; the score and
 * probability matrices [B, H, M, N]. Query head h reads kv head h / (H / G).
 */
#ifndef NAIVE_ATTENTION_H
#define NAIVE_ATTENTION_H

#include <cuda_runtime_api.h>

#include "attn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- C part (host memory) */

/* s[b,h,i,j] = scale * sum_d q[b,i,h,d] * k[b,j,h/(H/G),d], for every key j (no masking). */
int naive_scores_cpu(const attn_shape *shape, const float *q, const float *k, float *s);

/* If shape->causal: s[b,h,i,j] = -INFINITY for every key j > t, t = N - M + i. Otherwise no-op. */
int naive_mask_cpu(const attn_shape *shape, float *s);

/* In place, each of the `rows` rows of length n: x = exp(x - max) / sum(exp(x - max)).
 * A row whose entries are all -INFINITY becomes all zeros (nothing visible, nothing attended). */
int naive_softmax_cpu(float *x, long rows, int n);

/* o[b,i,h,d] = sum_j p[b,h,i,j] * v[b,j,h/(H/G),d]. */
int naive_pv_cpu(const attn_shape *shape, const float *p, const float *v, float *o);

/* The four steps in order; s is a workspace of B*H*M*N floats. Given (not a TODO). */
int naive_attention_cpu(const attn_shape *shape, const float *q, const float *k, const float *v, float *o,
                        float *s);

/* ---------------------------------------------------------------- CUDA part (device memory) */

/* Bytes of device workspace naive_attention_cuda needs: the B*H*M*N score matrix. */
size_t naive_attention_workspace_bytes(const attn_shape *shape);

/* The same four steps as GPU kernels, one simple kernel per step, the score matrix held in
 * `workspace` (device memory, naive_attention_workspace_bytes). All pointers are device
 * pointers; work is enqueued on `stream` (0 = default stream). Supports 1 <= D <= 256. */
int naive_attention_cuda(const attn_shape *shape, const float *q, const float *k, const float *v, float *o,
                         float *workspace, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
