/*
 * online_softmax.h - lesson 02: online softmax and fused attention (fp32). The contract: do not edit.
 *
 * Softmax needs the row max m and the normaliser l = sum_j exp(x_j - m). Both can be kept
 * up to date in ONE pass, one element at a time (Milakov & Gimelshein, 2018):
 *
 *     m' = max(m, x_j)        l' = l * exp(m - m') + exp(x_j - m')
 *
 * The attention output can ride along: acc' = acc * exp(m - m') + exp(s_j - m') * v_j, and at
 * the end o = acc / l, lse = m + log(l). Nothing of size N x N is ever stored.
 *
 * Layouts (common/README.md, "Conventions"): q, o [B, M, H, D]; k, v [B, N, G, D]; lse [B, H, M]
 * (natural log).
 */
#ifndef ONLINE_SOFTMAX_H
#define ONLINE_SOFTMAX_H

#include <cuda_runtime_api.h>

#include "attn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- C part (host memory) */

/* Softmax of x[0..n-1] into y using one pass for the statistics (m and l together), then one
 * pass to write y = exp(x - m) / l. *lse (optional, may be NULL) = m + log(l).
 * All entries -INFINITY: y = 0 and *lse = -INFINITY. */
int online_softmax_cpu(const float *x, int n, float *y, float *lse);

/* Streaming attention of ONE query over n_keys keys, visiting each key once:
 *     s_j = scale * q . k_j,  then the online update of m, l and the accumulator (kept in o),
 *     finally o = acc / l and *lse = m + log(l).
 * q and o have D floats; key j is at k + j * stride (likewise v): in the course layout the
 * stride is G * D. n_keys == 0 gives o = 0 and *lse = -INFINITY. */
int online_attend_query_cpu(const float *q, const float *k, const float *v, long n_keys, int D, long stride,
                            float scale, float *o, float *lse);

/* Full attention by calling online_attend_query_cpu for every (b, i, h); a causal query at
 * position t sees keys 0..t, a prefix, so n_keys = t + 1. Given (not a TODO). */
int online_attention_cpu(const attn_shape *shape, const float *q, const float *k, const float *v, float *o,
                         float *lse);

/* ---------------------------------------------------------------- CUDA part (device memory) */

/* Fused attention: one kernel, no N x N matrix; writes o and lse. All pointers are device
 * pointers; work is enqueued on `stream`. Supports D = 64 and D = 128. */
int online_attention_cuda(const attn_shape *shape, const float *q, const float *k, const float *v, float *o,
                          float *lse, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
