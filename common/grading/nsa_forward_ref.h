/*
 * nsa_forward_ref.h - slow and obvious GPU helpers for checking the whole NSA forward (lesson 10) where
 * the double-precision CPU oracle would take minutes: the compression and the gated sum. The branches
 * themselves are checked with attn_gpu_reference (harness.h) and the selection with attn_ref_nsa_select
 * (nsa_select_ref.h). For the tests only: lesson code may not call them (the grader's audit refuses
 * it). FROZEN, like the baselines: never tune them.
 */
#ifndef ATTN_NSA_FORWARD_REF_H
#define ATTN_NSA_FORWARD_REF_H

#include <cuda_runtime_api.h>
#include <stdint.h>

#include "attn.h"
#include "nsa.h"

#ifdef __cplusplus
extern "C" {
#endif

/* kv_cmp [B, NC, G, D] (bf16) = phi(kv) by the rules of nsa.h, one thread per output element, fp32
 * accumulation, rounded once to bf16 at the end; in linear mode (w [G, l*D, D], pos [l, D] or NULL) each
 * row plus pos is rounded to bf16 before the map, as the CUDA part of lesson 10 is allowed to. Mean mode:
 * w and pos are ignored. With NC = 0 nothing is written. */
int attn_ref_nsa_compress(const attn_shape *s, const attn_nsa_params *p, const uint16_t *kv, const uint16_t *w,
                          const uint16_t *pos, uint16_t *kv_cmp, cudaStream_t stream);

/* sum[b,i,h,:] = (first ? 0 : sum[b,i,h,:]) + gate[b,i,h] * branch[b,i,h,:] (fp32, [B, M, H, D] and
 * gate [B, M, H]): the gated sum of NSA, one branch at a time. */
int attn_ref_nsa_gate_add(const attn_shape *s, const float *branch, const float *gate, float *sum, int first,
                          cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
