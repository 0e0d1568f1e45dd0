// nsa_forward_ref.cu - slow GPU helpers for checking lesson 10 (see nsa_forward_ref.h). Nothing here is
// tuned: it must be obviously right.
#include <cuda_runtime.h>

#include "attn_gpu.h"
#include "nsa_forward_ref.h"

namespace {

__device__ __forceinline__ float bf16_to_f32(uint16_t x) { return __uint_as_float((uint32_t)x << 16); }

__device__ __forceinline__ uint16_t f32_to_bf16(float x)
{
    uint32_t u = __float_as_uint(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);                                                /* nearest, ties to even */
    return (uint16_t)(u >> 16);
}

/* One thread per output element (b, c, g, e), grid-stride. */
__global__ void compress_kernel(attn_shape s, attn_nsa_params p, long nc, const uint16_t *kv, const uint16_t *w,
                                const uint16_t *pos, uint16_t *out)
{
    const int D = s.D, G = s.G;
    const size_t total = (size_t)s.B * nc * G * D;
    for (size_t x = blockIdx.x * (size_t)blockDim.x + threadIdx.x; x < total; x += (size_t)gridDim.x * blockDim.x) {
        const int e = (int)(x % D), g = (int)(x / D % G);
        const long c = (long)(x / ((size_t)D * G) % nc);
        const size_t b = x / ((size_t)D * G * nc);
        float acc = 0.f;
        for (int r = 0; r < p.l; ++r) {
            const uint16_t *row = kv + ((b * s.N + (size_t)c * p.d + r) * G + g) * D;
            if (p.mode == ATTN_NSA_MEAN) {
                acc += bf16_to_f32(row[e]);
                continue;
            }
            for (int col = 0; col < D; ++col) {
                float xc = bf16_to_f32(row[col]);
                if (pos) xc = bf16_to_f32(f32_to_bf16(xc + bf16_to_f32(pos[(size_t)r * D + col])));
                acc += xc * bf16_to_f32(w[(((size_t)g * p.l + r) * D + col) * D + e]);
            }
        }
        out[x] = f32_to_bf16(p.mode == ATTN_NSA_MEAN ? acc / (float)p.l : acc);
    }
}

__global__ void gate_add_kernel(size_t n, int D, const float *branch, const float *gate, float *sum, int first)
{
    for (size_t x = blockIdx.x * (size_t)blockDim.x + threadIdx.x; x < n; x += (size_t)gridDim.x * blockDim.x)
        sum[x] = (first ? 0.f : sum[x]) + gate[x / D] * branch[x];
}

unsigned blocks_for(size_t n)
{
    const size_t b = (n + 255) / 256;
    return (unsigned)(b < 65536 ? (b ? b : 1) : 65536);
}

} // namespace

extern "C" int attn_ref_nsa_compress(const attn_shape *s, const attn_nsa_params *p, const uint16_t *kv,
                                     const uint16_t *w, const uint16_t *pos, uint16_t *kv_cmp, cudaStream_t stream)
{
    int st = attn_check_shape(s);
    if (st) return st;
    if ((st = attn_nsa_check(p)) != ATTN_OK) return st;
    if (!kv || !kv_cmp || (p->mode == ATTN_NSA_LINEAR && !w))
        return attn_fail(ATTN_ERR_NULL_POINTER, "attn_ref_nsa_compress: kv, kv_cmp (and w in linear mode) are needed");
    const long nc = attn_nsa_num_cmp(s->N, p);
    const size_t total = (size_t)s->B * nc * s->G * s->D;
    if (!total) return ATTN_OK;
    compress_kernel<<<blocks_for(total), 256, 0, stream>>>(*s, *p, nc, kv, w, p->mode == ATTN_NSA_LINEAR ? pos : nullptr,
                                                           kv_cmp);
    return attn_cuda_launch_status("attn_ref_nsa_compress");
}

extern "C" int attn_ref_nsa_gate_add(const attn_shape *s, const float *branch, const float *gate, float *sum, int first,
                                     cudaStream_t stream)
{
    if (!s || !branch || !gate || !sum) return attn_fail(ATTN_ERR_NULL_POINTER, "attn_ref_nsa_gate_add: NULL argument");
    const size_t n = attn_q_elems(s);
    if (!n) return ATTN_OK;
    gate_add_kernel<<<blocks_for(n), 256, 0, stream>>>(n, s->D, branch, gate, sum, first);
    return attn_cuda_launch_status("attn_ref_nsa_gate_add");
}
