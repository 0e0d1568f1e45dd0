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

    /* BEGIN SOLUTION stub="st = ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: loops b, h, then query blocks i0 = 0, Br, 2Br, ... (rows = min(Br, M - i0)). Reset m to
     * -INFINITY, l and acc to 0. Key blocks s0 = 0, Bc, ... up to the last key any row of the block
     * may see (causal: t of the block's last row; else N - 1). For each: fill s[r][c] with scale * q.k
     * or -INFINITY when masked (key >= N, or key > t when causal); per row take m_new = max(m, row max),
     * alpha = exp(m - m_new) (1 while m_new is still -inf), p = exp(s - m_new), l = alpha * l + sum p,
     * acc = alpha * acc + p V. After the last key block: o = acc / l, lse = m + log(l). */
    const int B = shape->B, M = shape->M, N = shape->N, H = shape->H, G = shape->G;
    const float scale = attn_softmax_scale(shape);
    for (int b = 0; b < B; ++b)
        for (int h = 0; h < H; ++h) {
            const int g = h / (H / G);
            for (int i0 = 0; i0 < M; i0 += Br) {
                const int rows = M - i0 < Br ? M - i0 : Br;
                for (int r = 0; r < rows; ++r) {
                    m[r] = -INFINITY, l[r] = 0.0f;
                    for (int d = 0; d < D; ++d) acc[(size_t)r * D + d] = 0.0f;
                }
                const long t_first = (long)N - M + i0, t_last = t_first + rows - 1;
                const long last_key = shape->causal ? t_last : (long)N - 1;
                for (long s0 = 0; s0 <= last_key; s0 += Bc) {
                    /* S = Q_blk K_blk^T, masked */
                    for (int r = 0; r < rows; ++r) {
                        const float *qr = q + (((size_t)b * M + i0 + r) * H + h) * D;
                        const long t = t_first + r;
                        for (int c = 0; c < Bc; ++c) {
                            const long key = s0 + c;
                            float *sc = &s[(size_t)r * Bc + c];
                            if (key >= N || (shape->causal && key > t)) {
                                *sc = -INFINITY;
                                continue;
                            }
                            const float *kc = k + (((size_t)b * N + key) * G + g) * D;
                            float dot = 0.0f;
                            for (int d = 0; d < D; ++d) dot += qr[d] * kc[d];
                            *sc = scale * dot;
                        }
                    }
                    /* online softmax update, row by row, then acc += P V_blk */
                    for (int r = 0; r < rows; ++r) {
                        float *sr = &s[(size_t)r * Bc], *ar = &acc[(size_t)r * D];
                        float m_new = m[r];
                        for (int c = 0; c < Bc; ++c) m_new = fmaxf(m_new, sr[c]);
                        if (m_new == -INFINITY) continue; /* nothing visible yet in this row */
                        const float alpha = expf(m[r] - m_new);
                        float row_sum = 0.0f;
                        for (int c = 0; c < Bc; ++c) {
                            sr[c] = expf(sr[c] - m_new);
                            row_sum += sr[c];
                        }
                        l[r] = alpha * l[r] + row_sum;
                        for (int d = 0; d < D; ++d) ar[d] *= alpha;
                        for (int c = 0; c < Bc; ++c) {
                            if (sr[c] == 0.0f) continue;
                            const float *vc = v + (((size_t)b * N + s0 + c) * G + g) * D;
                            for (int d = 0; d < D; ++d) ar[d] += sr[c] * vc[d];
                        }
                        m[r] = m_new;
                    }
                }
                for (int r = 0; r < rows; ++r) {
                    float *orow = o + (((size_t)b * M + i0 + r) * H + h) * D;
                    const float inv_l = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
                    for (int d = 0; d < D; ++d) orow[d] = acc[(size_t)r * D + d] * inv_l;
                    lse[((size_t)b * H + h) * M + i0 + r] = l[r] > 0.0f ? m[r] + logf(l[r]) : -INFINITY;
                }
            }
        }
    /* END SOLUTION */

    free(m), free(l), free(acc), free(s);
    return st;
}
