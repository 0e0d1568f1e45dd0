/*
 * gqa_attention.c - lesson 04, C part: the head mapping and what it saves.
 */
#include "gqa_attention.h"

int gqa_kv_head(int H, int G, int h, int *g)
{
    if (!g) return attn_fail(ATTN_ERR_NULL_POINTER, "gqa_kv_head: g must not be NULL");
    if (H < 1 || G < 1) return attn_fail(ATTN_ERR_BAD_SHAPE, "gqa_kv_head: H=%d, G=%d must be >= 1", H, G);
    if (H % G) return attn_fail(ATTN_ERR_HEADS_NOT_DIVISIBLE, "gqa_kv_head: H=%d is not a multiple of G=%d", H, G);
    if (h < 0 || h >= H) return attn_fail(ATTN_ERR_BAD_ARGUMENT, "gqa_kv_head: h=%d outside [0, %d)", h, H);

    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: consecutive query heads share a kv head: groups of H / G heads. */
    *g = h / (H / G);
    return ATTN_OK;
    /* END SOLUTION */
}

int gqa_kv_cache_bytes(long layers, long batch, long tokens, int G, int D, int bytes_per_elem, uint64_t *bytes)
{
    if (!bytes) return attn_fail(ATTN_ERR_NULL_POINTER, "gqa_kv_cache_bytes: bytes must not be NULL");
    if (layers < 1 || batch < 1 || tokens < 1 || G < 1 || D < 1 || bytes_per_elem < 1)
        return attn_fail(ATTN_ERR_BAD_SHAPE,
                         "gqa_kv_cache_bytes: layers=%ld batch=%ld tokens=%ld G=%d D=%d bytes=%d must be >= 1", layers,
                         batch, tokens, G, D, bytes_per_elem);

    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: two tensors (K and V) per layer, each batch x tokens x G x D elements; compute in
     * uint64_t (a 128k-token cache of a large model passes 2^32 bytes). */
    *bytes = 2ull * (uint64_t)layers * (uint64_t)batch * (uint64_t)tokens * (uint64_t)G * (uint64_t)D *
             (uint64_t)bytes_per_elem;
    return ATTN_OK;
    /* END SOLUTION */
}

int gqa_repeat_kv_cpu(const attn_shape *shape, const float *kv, float *kv_rep)
{
    int st = attn_check_shape(shape);
    if (st) return st;
    if (!kv || !kv_rep) return attn_fail(ATTN_ERR_NULL_POINTER, "gqa_repeat_kv_cpu: kv and kv_rep must not be NULL");

    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: loops b, s, h, d: kv_rep[((b * N + s) * H + h) * D + d] = kv[((b * N + s) * G + g) * D + d]. */
    const int B = shape->B, N = shape->N, H = shape->H, G = shape->G, D = shape->D;
    for (int b = 0; b < B; ++b)
        for (int s = 0; s < N; ++s)
            for (int h = 0; h < H; ++h) {
                const float *src = kv + (((size_t)b * N + s) * G + h / (H / G)) * D;
                float *dst = kv_rep + (((size_t)b * N + s) * H + h) * D;
                for (int d = 0; d < D; ++d) dst[d] = src[d];
            }
    return ATTN_OK;
    /* END SOLUTION */
}
