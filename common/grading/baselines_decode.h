/*
 * baselines_decode.h - the FROZEN naive decode kernel: the speed baseline of lesson 11 (decoding with a KV
 * cache). A simple and obviously correct kernel, one thread block per (sequence, query head), written to be
 * read and never to be tuned: a faster baseline would silently raise the lesson's bar.
 */
#ifndef ATTN_BASELINES_DECODE_H
#define ATTN_BASELINES_DECODE_H

#include <cuda_runtime_api.h>
#include <stdint.h>

#include "attn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Dense decode of one query per sequence against a KV cache (lesson 11's layouts): q, o [B, 1, H, D] bf16,
 * k_cache, v_cache [B, L_max, G, D] bf16 with L_max = shape->N, lengths [B] int32 (device memory; values
 * outside 0 .. L_max are clamped), lse [B, H, 1] fp32 (may be NULL). Sequence b's query sits at position
 * t = lengths[b] - 1 and sees keys 0 .. t (a length of 0: o = 0, lse = -inf). shape->M must be 1,
 * D <= 256. Per block: the largest score, then the keys in chunks (their probabilities in shared memory,
 * then P V), reading K twice and V once for every query head. */
int attn_baseline_decode_naive_bf16(const attn_shape *shape, const uint16_t *q, const uint16_t *k_cache,
                                    const uint16_t *v_cache, const int32_t *lengths, uint16_t *o, float *lse,
                                    cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
