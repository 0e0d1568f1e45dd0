/*
 * selected_common.cuh - lesson 09: what the two CUDA files of the lesson share. Given code: nothing to
 * write here.
 *
 *   selected_attention.cu   the general, group-centric kernel (tasks 1-5): every shape
 *   selected_window.cu      the optional fast path (task 6): 8 neighbouring positions share their tiles
 *
 * Each .cu file is compiled on its own (no device code is linked across files), so what both use is
 * here: the constants of an m16 tile of heads, the argument checks of the two entry points, and lesson
 * 03's online-softmax step. Everything is in an anonymous namespace: each file gets its own copy.
 */
#ifndef SELECTED_COMMON_CUH
#define SELECTED_COMMON_CUH

#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "attn_gpu.h"
#include "ptx.cuh"
#include "selected_attention.h"

namespace {

using namespace ptx;

constexpr int kRows = 16; /* query rows of one m16 tile: the heads of one position that read one list */
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

/* The argument checks of nsa_selected_attention_cuda and nsa_selected_attention_window_cuda (fn names
 * the caller in the messages): the shape, the parameters, causal, no NULL pointer, D = 64 or 128, the
 * alignments. */
static inline int check_arguments(const char *fn, const attn_shape *shape, const attn_nsa_params *p,
                                  const uint16_t *q, const uint16_t *k, const uint16_t *v, const int32_t *indices,
                                  const uint16_t *o, const float *lse)
{
    int st = attn_check_shape(shape);
    if (st) return st;
    if ((st = attn_nsa_check(p)) != ATTN_OK) return st;
    if (!shape->causal)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "%s: selected attention is causal, shape->causal must be 1", fn);
    if (!q || !k || !v || !indices || !o || !lse)
        return attn_fail(ATTN_ERR_NULL_POINTER, "%s: q, k, v, indices, o and lse must not be NULL", fn);
    if (shape->D != 64 && shape->D != 128)
        return attn_fail(ATTN_ERR_UNSUPPORTED_D, "%s: D=%d, this kernel supports 64 and 128", fn, shape->D);
    if (((uintptr_t)q | (uintptr_t)k | (uintptr_t)v | (uintptr_t)o) % 16 != 0 || (uintptr_t)indices % 4 != 0)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "%s: q, k, v and o must be 16-byte aligned, indices 4-byte aligned",
                         fn);
    return ATTN_OK;
}

/* Lesson 03's online-softmax step for the two rows a lane holds (gid and gid + 8), over NT n8 tiles of
 * raw scores s (probabilities 2^(s * scale_log2 - m); -inf hides a key): the running max m_i (score
 * units) and this lane's part of the running sum l_i are updated, the DT n8 tiles of o_acc rescaled,
 * and P leaves as NT / 2 bf16 A fragments of the P V product, p[4 f .. 4 f + 3] for keys 16 f .. 16 f + 15
 * (a0 a1: n8 tile 2 f, a2 a3: n8 tile 2 f + 1). */
template <int NT, int DT>
__device__ __forceinline__ void online_softmax_step(float (&s)[NT][4], uint32_t (&p)[2 * NT], float (&m_i)[2],
                                                    float (&l_i)[2], float (&o_acc)[DT][4], float scale_log2)
{
    float alpha[2];
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
        float mx = m_i[rr];
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) mx = fmaxf(mx, fmaxf(s[nt][2 * rr], s[nt][2 * rr + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        /* a row that has seen no key yet keeps m = -inf: use 0 so that -inf - m is not NaN */
        const float m_scaled = mx == -INFINITY ? 0.f : mx * scale_log2;
        alpha[rr] = fast_exp2(m_i[rr] * scale_log2 - m_scaled);
        m_i[rr] = mx;
        float row_sum = 0.f;
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
            const float p0 = fast_exp2(fmaf(s[nt][2 * rr], scale_log2, -m_scaled));
            const float p1 = fast_exp2(fmaf(s[nt][2 * rr + 1], scale_log2, -m_scaled));
            row_sum += p0 + p1;
            p[2 * nt + rr] = pack_bf16(p0, p1);
        }
        l_i[rr] = l_i[rr] * alpha[rr] + row_sum;
    }
    /* alpha is exactly 1 where the max did not move (2^0): after the first tiles, mostly. Skipping the
     * multiplication by 1 changes no bit, and saves 2 DT multiplications per lane. */
    if (__all_sync(0xffffffffu, alpha[0] == 1.f && alpha[1] == 1.f)) return;
#pragma unroll
    for (int dt = 0; dt < DT; ++dt) o_acc[dt][0] *= alpha[0], o_acc[dt][1] *= alpha[0], o_acc[dt][2] *= alpha[1],
                                    o_acc[dt][3] *= alpha[1];
}

} // namespace

#endif
