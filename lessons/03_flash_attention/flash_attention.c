/*
 * flash_attention.c - lesson 03, C part: FlashAttention-2's blocked loop order on the CPU (fp32).
 *
 * The GPU kernel runs one query block per thread block and walks the key blocks in the inner
 * loop; this is the same loop nest, one block at a time, so that the bookkeeping (running max m,
 * running sum l, the rescale of the accumulator, skipping causal blocks in the future) can be
 * read and debugged in plain C before it is spread over warps and tensor cores.
 */
#include "flash_attention.h"

#include <math.h>
#include <stdlib.h>

int flash_blocked_cpu(const attn_shape *shape, const float *q, const float *k, const float *v, float *o,
                      float *lse, int Br, int Bc)
{
    int st = attn_check_shape(shape);
    if (st) return st;
    if (!q || !k || !v || !o || !lse)
        return attn_fail(ATTN_ERR_NULL_POINTER, "flash_blocked_cpu: q, k, v, o and lse must not be NULL");
    if (Br < 1 || Br > 256 || Bc < 1 || Bc > 256)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "flash_blocked_cpu: Br=%d, Bc=%d must be in [1, 256]", Br, Bc);
    const int D = shape->D;
    /* per-block state: m[Br], l[Br], acc[Br][D] and the score tile s[Br][Bc] */
    float *m = malloc(sizeof(float) * Br), *l = malloc(sizeof(float) * Br);
    float *acc = malloc(sizeof(float) * (size_t)Br * D), *s = malloc(sizeof(float) * (size_t)Br * Bc);
    if (!m || !l || !acc || !s) {
        free(m), free(l), free(acc), free(s);
        return attn_fail(ATTN_ERR_OUT_OF_MEMORY, "flash_blocked_cpu: Br=%d Bc=%d D=%d", Br, Bc, D);
    }
    st = ATTN_OK;

    /* TODO (about 60 lines): loops b, h, then query blocks i0 = 0, Br, 2Br, ... (rows = min(Br, M - i0)). Reset m to
     * -INFINITY, l and acc to 0. Key blocks s0 = 0, Bc, ... up to the last key any row of the block
     * may see (causal: t of the block's last row; else N - 1). For each: fill s[r][c] with scale * q.k
     * or -INFINITY when masked (key >= N, or key > t when causal); per row take m_new = max(m, row max),
     * alpha = exp(m - m_new) (1 while m_new is still -inf), p = exp(s - m_new), l = alpha * l + sum p,
     * acc = alpha * acc + p V. After the last key block: o = acc / l, lse = m + log(l). */
    st = ATTN_ERR_NOT_IMPLEMENTED;

    free(m), free(l), free(acc), free(s);
    return st;
}
