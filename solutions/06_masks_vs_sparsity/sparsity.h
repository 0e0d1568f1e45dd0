/*
 * sparsity.h - lesson 06: token masks vs structured (block) sparsity. The contract: do not edit.
 *
 * Two ways to make a query skip keys:
 *
 *   Token keep-masks. Every key s of kv head g has a retention weight r[b,s,g] in [0, 1] (how much a
 *   KV-cache eviction policy wants to keep it). A keep mode turns it into a keep weight k_s:
 *       KEEP_BASELINE   k_s = 1                          (no mask: dense causal attention)
 *       KEEP_SOFT       k_s = r_s                        (soft delete: the key's weight is scaled)
 *       KEEP_HARD       k_s = 1 if r_s >= threshold, else 0   (hard mask; default threshold 0.01)
 *   and attention weights each key's probability by k_s before normalising:
 *       P[t,s] = k_s exp(S[t,s]) / sum_s' k_s' exp(S[t,s'])  =  softmax_s(S[t,s] + log k_s)
 *   so soft delete adds log r_s to the score and the hard mask adds 0 or -inf.
 *
 *   Block lists. Queries are cut into query blocks of SPARSE_QUERY_BLOCK (128) consecutive queries
 *   (by query index i: block i / 128), keys into key blocks of SPARSE_KEY_BLOCK (64) keys (block j
 *   covers keys 64 j .. 64 j + 63). Every (b, query block, kv head) has a list of the key blocks its
 *   queries attend to, shared by the H/G query heads of the group:
 *       block_indices [B, QB, G, T] int32, QB = ceil(M / 128): ascending block numbers in
 *       [0, ceil(N / 64)), then -1 up to T entries.
 *   A query sees the keys of its listed blocks, with the causal rule s <= t when shape->causal.
 *
 * Layouts (common/README.md, "Conventions"): q, o [B, M, H, D]; k, v [B, N, G, D]; lse [B, H, M]
 * (natural log); retention [B, N, G] fp32. A query that sees no key gets o = 0 and lse = -inf.
 */
#ifndef SPARSITY_H
#define SPARSITY_H

#include <cuda_runtime_api.h>

#include "attn.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SPARSE_QUERY_BLOCK 128     /* queries per query block (one block list each) */
#define SPARSE_KEY_BLOCK 64        /* keys per key block (one entry of a block list) */
#define KEEP_DEFAULT_THRESHOLD 0.01f /* hard mask: retention below this gets no weight */

typedef enum { KEEP_BASELINE = 0, KEEP_SOFT = 1, KEEP_HARD = 2 } keep_mode;

/* Number of query blocks for M queries and of key blocks for N keys. */
static inline int sparse_query_blocks(int M) { return (M + SPARSE_QUERY_BLOCK - 1) / SPARSE_QUERY_BLOCK; }
static inline int sparse_key_blocks(int N) { return (N + SPARSE_KEY_BLOCK - 1) / SPARSE_KEY_BLOCK; }

/* ---------------------------------------------------------------- C part (host memory, fp32) */

/* keep[e] = the keep weight of retention[e] under `mode` (table above), for e < count.
 * Errors: NULL pointers, an unknown mode, threshold outside [0, 1] (KEEP_HARD), a retention value
 * outside [0, 1] or NaN (the detail message names its index). */
int keep_weights_cpu(keep_mode mode, float threshold, const float *retention, size_t count, float *keep);

/* Attention with a token keep-mask: every visible key s (causal rule if shape->causal) weighted by its
 * keep weight, online softmax as in lesson 02. retention [B, N, G] (ignored for KEEP_BASELINE, may be
 * NULL then). */
int masked_attention_cpu(const attn_shape *shape, keep_mode mode, float threshold, const float *retention,
                         const float *q, const float *k, const float *v, float *o, float *lse);

/* ATTN_OK if block_indices [B, QB, G, T] keeps the contract above (each list ascending without
 * repeats, every entry in [0, ceil(N/64)), then only -1); ATTN_ERR_BAD_ARGUMENT naming the first
 * offending (b, query block, g, entry) otherwise. The CUDA kernel cannot check its list: check a host
 * copy with this before uploading it. */
int block_list_check(const attn_shape *shape, const int32_t *block_indices, int T);

/* Block-sparse attention: each query visits only the keys of its query block's listed key blocks
 * (loop bounds from the list, not a mask over all N keys). Checks the list with block_list_check. */
int block_sparse_attention_cpu(const attn_shape *shape, const int32_t *block_indices, int T, const float *q,
                               const float *k, const float *v, float *o, float *lse);

/* ---------------------------------------------------------------- CUDA part (device memory, bf16) */

/* Flash attention with a token keep-mask: every key tile is loaded and multiplied, and the keep
 * weights go into the scores (log k_s added, -inf for deleted keys). bf16 q/k/v/o, fp32 lse and
 * retention (device pointers; retention may be NULL for KEEP_BASELINE); D = 64 or 128; any
 * H % G == 0; M <= N; causal or not. The kernel cannot check device data: a retention above 1 counts
 * as 1, and a negative or NaN retention deletes the key (in both modes). */
int masked_attention_cuda(const attn_shape *shape, keep_mode mode, float threshold, const float *retention,
                          const uint16_t *q, const uint16_t *k, const uint16_t *v, uint16_t *o, float *lse,
                          cudaStream_t stream);

/* Block-sparse flash attention: a block of queries loads and multiplies only the key tiles in its
 * list; the rest of the keys are never touched, so the time follows the number of listed blocks.
 * block_indices [B, QB, G, T] (device pointer). The kernel stops at the first negative entry and
 * skips entries past the last key block or (causal) past its last query's position, so that a bad
 * list cannot make it read out of bounds; check lists with block_list_check. */
int block_sparse_attention_cuda(const attn_shape *shape, const int32_t *block_indices, int T, const uint16_t *q,
                                const uint16_t *k, const uint16_t *v, uint16_t *o, float *lse, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
