/*
 * flash_attention.h - lesson 03: tiled flash attention on tensor cores. The contract: do not edit.
 *
 * FlashAttention-2 (Dao, 2023) computes attention one block of Br query rows at a time, walking
 * over blocks of Bc keys with the online softmax of lesson 02. Each (Br x Bc) score tile lives in
 * registers only; the output block is rescaled and accumulated in fp32 and written once.
 *
 * C part: the blocked loop order in fp32 on the CPU.
 * CUDA part: bf16 inputs and outputs, fp32 accumulation, tensor cores (mma.sync m16n8k16).
 *
 * Layouts (common/README.md, "Conventions"): q, o [B, M, H, D]; k, v [B, N, G, D]; lse [B, H, M]
 * (natural log, fp32). bf16 values are stored as uint16_t (see attn.h for conversions).
 */
#ifndef FLASH_ATTENTION_H
#define FLASH_ATTENTION_H

#include <cuda_runtime_api.h>

#include "attn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- C part (host memory, fp32) */

/* Attention in FlashAttention-2's blocked loop order: for each block of Br query rows (of one
 * (b, h)), keep a running max m, a running sum l and an accumulator per row; for each block of Bc
 * keys, compute the Br x Bc score tile, mask it (causal: key s visible iff s <= t), update m, l
 * and the accumulator (rescaled by exp(m_old - m_new)), then o = acc / l, lse = m + log(l).
 * Blocks of Br and Bc need not divide M and N. Causal key blocks entirely in the future of a
 * query block are skipped, not masked. Requires Br, Bc in [1, 256]. */
int flash_blocked_cpu(const attn_shape *shape, const float *q, const float *k, const float *v, float *o,
                      float *lse, int Br, int Bc);

/* ---------------------------------------------------------------- CUDA part (device memory) */

/* Flash attention forward, bf16 in and out, fp32 lse. Any B, M <= N, H % G == 0; D = 64 or 128;
 * causal or not. q, k, v, o must be 16-byte aligned (cudaMalloc'd buffers are). */
int flash_attention_cuda(const attn_shape *shape, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                         uint16_t *o, float *lse, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
