// baselines_decode.cu - FROZEN naive decode kernel, the speed baseline of lesson 11 (see
// baselines_decode.h). Do not tune it: a faster baseline silently raises the lesson's bar.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>

#include "attn_gpu.h"
#include "baselines_decode.h"

namespace decode_naive {

constexpr int kThreads = 256;
constexpr int kChunk = 1024; /* keys whose probabilities sit in shared memory at once */

__device__ float bf16_value(uint16_t x) { return __uint_as_float((uint32_t)x << 16); }

/* The block's total of one value per thread (every thread gets it). */
__device__ float block_reduce(float x, float *red, bool take_max)
{
    __syncthreads();
    red[threadIdx.x] = x;
    __syncthreads();
    for (int half = kThreads / 2; half > 0; half /= 2) {
        if (threadIdx.x < half)
            red[threadIdx.x] = take_max ? fmaxf(red[threadIdx.x], red[threadIdx.x + half])
                                        : red[threadIdx.x] + red[threadIdx.x + half];
        __syncthreads();
    }
    return red[0];
}

/* One block per (h, b): blockIdx.x = h, blockIdx.y = b. */
__global__ void __launch_bounds__(kThreads) decode_naive_kernel(attn_shape sh, float scale, const uint16_t *q,
                                                                const uint16_t *k, const uint16_t *v,
                                                                const int32_t *lengths, uint16_t *o, float *lse)
{
    __shared__ float qs[ATTN_MAX_D];
    __shared__ float p_s[kChunk];
    __shared__ float red[kThreads];
    const int h = blockIdx.x, b = blockIdx.y, D = sh.D, g = h / (sh.H / sh.G);
    const int len = lengths[b];
    const long L = len < 0 ? 0 : len > sh.N ? sh.N : len;
    const size_t row = (size_t)b * sh.H + h, stride = (size_t)sh.G * D;
    const uint16_t *kb = k + (size_t)b * sh.N * stride + (size_t)g * D, *vb = v + (size_t)b * sh.N * stride + (size_t)g * D;
    for (int d = threadIdx.x; d < D; d += kThreads) qs[d] = bf16_value(q[row * D + d]);
    __syncthreads();

    /* the largest score */
    float m = -INFINITY;
    for (long s = threadIdx.x; s < L; s += kThreads) {
        float dot = 0.f;
        for (int d = 0; d < D; ++d) dot += qs[d] * bf16_value(kb[s * stride + d]);
        m = fmaxf(m, dot * scale);
    }
    m = block_reduce(m, red, true);

    /* the probabilities chunk by chunk, the sum, and P V (thread d owns output dimension d) */
    float sum = 0.f, acc = 0.f;
    for (long s0 = 0; s0 < L; s0 += kChunk) {
        const long n = L - s0 < kChunk ? L - s0 : kChunk;
        __syncthreads(); /* the previous chunk's probabilities are no longer read */
        for (long j = threadIdx.x; j < n; j += kThreads) {
            float dot = 0.f;
            for (int d = 0; d < D; ++d) dot += qs[d] * bf16_value(kb[(s0 + j) * stride + d]);
            p_s[j] = expf(dot * scale - m);
            sum += p_s[j];
        }
        __syncthreads();
        if (threadIdx.x < D)
            for (long j = 0; j < n; ++j) acc += p_s[j] * bf16_value(vb[(s0 + j) * stride + threadIdx.x]);
    }
    sum = block_reduce(sum, red, false);
    if (threadIdx.x < D) o[row * D + threadIdx.x] = __bfloat16_as_ushort(__float2bfloat16_rn(sum > 0.f ? acc / sum : 0.f));
    if (threadIdx.x == 0 && lse) lse[row] = sum > 0.f ? m + logf(sum) : -INFINITY;
}

} // namespace decode_naive

extern "C" int attn_baseline_decode_naive_bf16(const attn_shape *shape, const uint16_t *q, const uint16_t *k_cache,
                                               const uint16_t *v_cache, const int32_t *lengths, uint16_t *o,
                                               float *lse, cudaStream_t stream)
{
    int st = attn_check_shape(shape);
    if (st) return st;
    if (shape->M != 1)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "attn_baseline_decode_naive_bf16: M=%d, one query per sequence", shape->M);
    if (shape->B > 65535)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "attn_baseline_decode_naive_bf16: B=%d, at most 65535", shape->B);
    if (!q || !k_cache || !v_cache || !lengths || !o)
        return attn_fail(ATTN_ERR_NULL_POINTER, "attn_baseline_decode_naive_bf16: q, the caches, lengths and o must "
                                                "not be NULL");
    decode_naive::decode_naive_kernel<<<dim3(shape->H, shape->B), decode_naive::kThreads, 0, stream>>>(
        *shape, attn_softmax_scale(shape), q, k_cache, v_cache, lengths, o, lse);
    return attn_cuda_launch_status("baseline decode_naive_kernel");
}
