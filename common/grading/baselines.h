/*
 * baselines.h - frozen copies of earlier lessons' kernels, the speed baselines (fp32, device pointers).
 */
#ifndef ATTN_BASELINES_H
#define ATTN_BASELINES_H

#include <cuda_runtime_api.h>

#include "attn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Lesson 01: scores, mask, softmax, PV as four kernels; workspace holds the B*H*M*N scores. */
size_t attn_baseline_naive_workspace_bytes(const attn_shape *shape);
int attn_baseline_naive_f32(const attn_shape *shape, const float *q, const float *k, const float *v, float *o,
                            float *workspace, cudaStream_t stream);

/* Lesson 02: fused attention with the online softmax, D = 64 or 128; writes o and lse. */
int attn_baseline_online_f32(const attn_shape *shape, const float *q, const float *k, const float *v, float *o,
                             float *lse, cudaStream_t stream);

/* Lesson 03: flash attention on tensor cores, bf16 in/out, fp32 lse, D = 64 or 128, M <= N. */
int attn_baseline_flash_bf16(const attn_shape *shape, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                             uint16_t *o, float *lse, cudaStream_t stream);

/* Lesson 04's baseline, first step: kv_rep [B, N, H, D] = kv [B, N, G, D] repeated to H heads (bf16). */
int attn_baseline_repeat_kv_bf16(const attn_shape *shape, const uint16_t *kv, uint16_t *kv_rep, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
