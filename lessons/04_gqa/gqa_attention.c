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

    /* TODO (about 5 lines): consecutive query heads share a kv head: groups of H / G heads. */
    return ATTN_ERR_NOT_IMPLEMENTED;
}

int gqa_kv_cache_bytes(long layers, long batch, long tokens, int G, int D, int bytes_per_elem, uint64_t *bytes)
{
    if (!bytes) return attn_fail(ATTN_ERR_NULL_POINTER, "gqa_kv_cache_bytes: bytes must not be NULL");
    if (layers < 1 || batch < 1 || tokens < 1 || G < 1 || D < 1 || bytes_per_elem < 1)
        return attn_fail(ATTN_ERR_BAD_SHAPE,
                         "gqa_kv_cache_bytes: layers=%ld batch=%ld tokens=%ld G=%d D=%d bytes=%d must be >= 1", layers,
                         batch, tokens, G, D, bytes_per_elem);

    /* TODO (about 5 lines): two tensors (K and V) per layer, each batch x tokens x G x D elements; compute in
     * uint64_t (a 128k-token cache of a large model passes 2^32 bytes). */
    return ATTN_ERR_NOT_IMPLEMENTED;
}

int gqa_repeat_kv_cpu(const attn_shape *shape, const float *kv, float *kv_rep)
{
    int st = attn_check_shape(shape);
    if (st) return st;
    if (!kv || !kv_rep) return attn_fail(ATTN_ERR_NULL_POINTER, "gqa_repeat_kv_cpu: kv and kv_rep must not be NULL");

    /* TODO (about 10 lines): loops b, s, h, d: kv_rep[((b * N + s) * H + h) * D + d] = kv[((b * N + s) * G + g) * D + d]. */
    return ATTN_ERR_NOT_IMPLEMENTED;
}
