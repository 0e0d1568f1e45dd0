/*
 * nsa_select_ref.h - slow and obvious GPU references of NSA's block selection (lesson 08), for the
 * tests only: shapes where the double-precision CPU oracle (nsa.h) would take minutes, and the
 * checked timing of the lesson-08 kernel. Lesson code may not call them (the grader's audit refuses
 * it): they compute the answers. FROZEN, like the baselines: never tune them.
 */
#ifndef ATTN_NSA_SELECT_REF_H
#define ATTN_NSA_SELECT_REF_H

#include <cuda_runtime_api.h>
#include <stdint.h>

#include "attn.h"
#include "nsa.h"

#ifdef __cplusplus
extern "C" {
#endif

/* lse_cmp [B, H, M] (natural log, fp32) of compressed attention: log sum_i exp(scale * q.k_cmp_i) over
 * the compressed tokens visible from t = N - M + i (-inf where none is). One warp per (b, h, i) row. */
int attn_ref_nsa_lse_cmp(const attn_shape *s, const attn_nsa_params *p, const uint16_t *q, const uint16_t *k_cmp,
                         float *lse_cmp, cudaStream_t stream);

/* Block scores [B, M, L, NB] (fp32, written to device memory: `scores` is the reference's work space
 * and what a checker reads to judge near-ties) and top-n lists [B, M, L, n], L = G or H, by the rules
 * of nsa.h. One warp per (b, i, list) row: a lane per block, fp32 dot products and expf, then one lane
 * ranks the row. */
int attn_ref_nsa_select(const attn_shape *s, const attn_nsa_params *p, const uint16_t *q, const uint16_t *k_cmp,
                        const float *lse_cmp, float *scores, int32_t *indices, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
