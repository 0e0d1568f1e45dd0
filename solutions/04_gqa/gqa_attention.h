/*
 * gqa_attention.h - lesson 04: grouped-query (GQA) and multi-query (MQA) attention. The contract.
 *
 * H query heads share G key/value heads (H % G == 0): query head h reads kv head h / (H / G).
 * G = H is ordinary multi-head attention (MHA), G = 1 is multi-query attention (MQA). The point is
 * the KV cache: it shrinks by H / G, and a kernel that loads each K/V tile once for all the
 * H / G query heads of its group reads H / G times fewer bytes.
 *
 * Layouts (common/README.md, "Conventions"): q, o [B, M, H, D]; k, v [B, N, G, D]; lse [B, H, M]. bf16
 * as uint16_t.
 */
#ifndef GQA_ATTENTION_H
#define GQA_ATTENTION_H

#include <cuda_runtime_api.h>

#include "attn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- C part */

/* The kv head that query head h reads: *g = h / (H / G). Errors for H % G != 0 or h outside [0, H). */
int gqa_kv_head(int H, int G, int h, int *g);

/* Bytes of a KV cache: K and V for `layers` layers, `batch` sequences of `tokens` tokens, G kv heads
 * of dimension D, `bytes_per_elem` bytes per element (2 for bf16). Errors for sizes < 1. */
int gqa_kv_cache_bytes(long layers, long batch, long tokens, int G, int D, int bytes_per_elem, uint64_t *bytes);

/* kv_rep [B, N, H, D] = kv [B, N, G, D] repeated: kv_rep[b, s, h] = kv[b, s, h / (H / G)]. This is
 * what running an MHA kernel on GQA weights costs: H / G times the memory. */
int gqa_repeat_kv_cpu(const attn_shape *shape, const float *kv, float *kv_rep);

/* ---------------------------------------------------------------- CUDA part */

/* Flash attention for any H % G == 0 (MHA, GQA, MQA) where the query heads of a group share every
 * K/V tile in shared memory. bf16 in/out, fp32 lse; D = 64 or 128; causal or not; M <= N. */
int gqa_attention_cuda(const attn_shape *shape, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                       uint16_t *o, float *lse, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
