/*
 * compressed_attention.h - lesson 07: NSA's compressed branch. The contract: do not edit.
 *
 * Native Sparse Attention (common/nsa.h has the rules, lessons/07_compressed_attention/README.md
 * explains them) first summarises the keys and values into compressed tokens:
 *
 *   token i summarises keys [i*d, i*d + l - 1] (and values likewise), NC = max(0, floor((N - l)/d) + 1)
 *   mean mode    phi(x) = (1/l) sum_r x[r]                      (w and pos unused, pass NULL)
 *   linear mode  phi(x) = sum_{r,c} (x[r,c] + pos[r,c]) w[g, r*D + c, :]   w [G, l*D, D], pos [l, D]
 *                (pos is the learned intra-block position embedding: keys only, pass NULL for values)
 *
 * and then lets every query attend to the compressed tokens whose whole span lies in its past:
 *
 *   token i is visible from position t iff i*d + l - 1 <= t
 *
 * A query that sees none (t < l - 1) gets o = 0 and lse = -inf. The rule is causal by definition, so
 * shape->causal must be 1. shape->N is always the number of keys N (positions); the number of
 * compressed tokens follows from it and the NSA parameters.
 *
 * Layouts (common/README.md, "Conventions"): q, o [B, M, H, D]; k, v [B, N, G, D]; compressed k, v
 * [B, NC, G, D]; lse [B, H, M] (natural log, fp32). Query i sits at position t = N - M + i; query
 * head h reads kv head h / (H / G). bf16 as uint16_t.
 */
#ifndef COMPRESSED_ATTENTION_H
#define COMPRESSED_ATTENTION_H

#include <cuda_runtime_api.h>

#include "attn.h"
#include "nsa.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- C part (host memory, fp32) */

/* *num_cmp = the number of compressed tokens of N keys; *visible = how many of them position t
 * (0 <= t < N) sees. Errors: bad parameters (attn_nsa_check), N < 1, t outside [0, N), NULL outputs. */
int nsa_cmp_counts(long N, long t, const attn_nsa_params *p, long *num_cmp, long *visible);

/* kv_cmp [B, NC, G, D] from kv [B, N, G, D] (keys or values; shape->M is not used but must be valid).
 * Linear mode needs w [G, l*D, D]; pos [l, D] is added to the keys (NULL for values). With NC = 0
 * nothing is written. */
int nsa_compress_cpu(const attn_shape *shape, const attn_nsa_params *p, const float *kv, const float *w,
                     const float *pos, float *kv_cmp);

/* Compressed attention: o [B, M, H, D] and lse [B, H, M] of q over the visible compressed tokens of
 * k_cmp, v_cmp [B, NC, G, D] (NC from shape->N; when NC = 0 they are never read, but must not be NULL). */
int nsa_cmp_attention_cpu(const attn_shape *shape, const attn_nsa_params *p, const float *q, const float *k_cmp,
                          const float *v_cmp, float *o, float *lse);

/* ---------------------------------------------------------------- CUDA part (device memory, bf16) */

/* nsa_compress_cpu on the GPU: bf16 kv, w, pos (device pointers), bf16 kv_cmp, fp32 accumulation;
 * D = 64 or 128; both modes. */
int nsa_compress_cuda(const attn_shape *shape, const attn_nsa_params *p, const uint16_t *kv, const uint16_t *w,
                      const uint16_t *pos, uint16_t *kv_cmp, cudaStream_t stream);

/* nsa_cmp_attention_cpu on the GPU: flash attention over the compressed tokens on tensor cores,
 * the query heads of a group packed into one block (lesson 04). bf16 q, k_cmp, v_cmp, o, fp32 lse;
 * D = 64 or 128; any H % G == 0; M <= N. Rows that see no compressed token: o = 0, lse = -inf. */
int nsa_cmp_attention_cuda(const attn_shape *shape, const attn_nsa_params *p, const uint16_t *q,
                           const uint16_t *k_cmp, const uint16_t *v_cmp, uint16_t *o, float *lse,
                           cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
