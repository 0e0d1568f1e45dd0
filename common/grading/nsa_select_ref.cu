// nsa_select_ref.cu - slow and obvious GPU references of NSA's block selection (see nsa_select_ref.h).
// FROZEN: the checked timing of lesson 08 compares against them. Straight from the rules of nsa.h, one
// warp per row, fp32 arithmetic, no shared memory, no tensor cores.
#include <cuda_bf16.h>
#include <math.h>

#include "attn_gpu.h"
#include "nsa_select_ref.h"

namespace {

__device__ float bf16_to_f32(uint16_t x) { return __uint_as_float((uint32_t)x << 16); }

__device__ float dot_bf16(const uint16_t *a, const uint16_t *b, int D)
{
    float acc = 0.f;
    for (int e = 0; e < D; ++e) acc = fmaf(bf16_to_f32(a[e]), bf16_to_f32(b[e]), acc);
    return acc;
}

__device__ long visible_count(long t, long NC, attn_nsa_params p)
{
    if (t < p.l - 1) return 0;
    const long c = (t - (p.l - 1)) / p.d + 1;
    return c < NC ? c : NC;
}

__device__ long overlap(long i, long j, attn_nsa_params p)
{
    long lo = i * p.d, hi = i * p.d + p.l - 1;
    const long blo = j * p.l_sel, bhi = (j + 1) * (long)p.l_sel - 1;
    if (blo > lo) lo = blo;
    if (bhi < hi) hi = bhi;
    return hi >= lo ? hi - lo + 1 : 0;
}

// one warp per (b, h, i): lanes over the visible tokens, then max and sum across the warp
__global__ void lse_kernel(attn_shape sh, attn_nsa_params p, long NC, float scale, const uint16_t *q,
                           const uint16_t *k, float *lse)
{
    const long row = (long)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= (long)sh.B * sh.H * sh.M) return;
    const int i = (int)(row % sh.M), h = (int)(row / sh.M % sh.H), b = (int)(row / sh.M / sh.H);
    const int g = h / (sh.H / sh.G);
    const long t = (long)sh.N - sh.M + i, vis = visible_count(t, NC, p);
    const uint16_t *qh = q + (((size_t)b * sh.M + i) * sh.H + h) * sh.D;
    float m = -INFINITY;
    for (long c = lane; c < vis; c += 32)
        m = fmaxf(m, scale * dot_bf16(qh, k + (((size_t)b * NC + c) * sh.G + g) * sh.D, sh.D));
    for (int o = 16; o > 0; o /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    float sum = 0.f;
    for (long c = lane; c < vis; c += 32)
        sum += expf(scale * dot_bf16(qh, k + (((size_t)b * NC + c) * sh.G + g) * sh.D, sh.D) - m);
    for (int o = 16; o > 0; o /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if (lane == 0) lse[row] = vis > 0 ? m + logf(sum) : -INFINITY; // row = (b*H + h)*M + i
}

// does block a rank before block b: a higher score, or the same score and a lower index
__device__ bool before(const float *s, long a, long b) { return s[a] > s[b] || (s[a] == s[b] && a < b); }

// one warp per (b, i, list): lane per block for the scores, then lane 0 ranks the row
__global__ void select_kernel(attn_shape sh, attn_nsa_params p, long NC, long NB, float scale, const uint16_t *q,
                              const uint16_t *k, const float *lse, float *scores, int32_t *indices)
{
    const int L = p.heads_share_selection ? sh.G : sh.H, hpg = sh.H / sh.G;
    const long row = (long)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= (long)sh.B * sh.M * L) return;
    const int list = (int)(row % L), i = (int)(row / L % sh.M), b = (int)(row / L / sh.M);
    const long t = (long)sh.N - sh.M + i, vis = visible_count(t, NC, p), cur = t / p.l_sel;
    const int h0 = p.heads_share_selection ? list * hpg : list, nh = p.heads_share_selection ? hpg : 1;
    float *srow = scores + row * NB;
    for (long j = lane; j < NB; j += 32) {
        const long x = j * p.l_sel - p.l + 1; // first token whose span reaches block j
        const long c_lo = x <= 0 ? 0 : (x + p.d - 1) / p.d;
        long c_hi = ((j + 1) * (long)p.l_sel - 1) / p.d;
        if (c_hi > vis - 1) c_hi = vis - 1;
        float acc = 0.f;
        for (int h = h0; h < h0 + nh; ++h) {
            const int g = h / hpg;
            const uint16_t *qh = q + (((size_t)b * sh.M + i) * sh.H + h) * sh.D;
            const float lse_h = lse[((size_t)b * sh.H + h) * sh.M + i];
            for (long c = c_lo; c <= c_hi; ++c) {
                const long ov = overlap(c, j, p);
                if (!ov) continue;
                const float logit = scale * dot_bf16(qh, k + (((size_t)b * NC + c) * sh.G + g) * sh.D, sh.D);
                acc += expf(logit - lse_h) * (float)ov / (float)p.d;
            }
        }
        srow[j] = acc;
    }
    __syncwarp();
    if (lane != 0) return;
    int32_t *out = indices + row * p.n;
    const long cand = cur + 1;
    if (cand <= p.n) {
        for (int e = 0; e < p.n; ++e) out[e] = e < cand ? e : -1;
        return;
    }
    // forced blocks, then the candidates in rank order: each pick is the best one ranked after the last
    int count = 0;
    out[count++] = 0, out[count++] = (int32_t)(cur - 1), out[count++] = (int32_t)cur;
    long prev = -1;
    while (count < p.n) {
        long best = -1;
        for (long j = 1; j < cur - 1; ++j)
            if ((prev < 0 || before(srow, prev, j)) && (best < 0 || before(srow, j, best))) best = j;
        out[count++] = (int32_t)best;
        prev = best;
    }
    for (int a = 1; a < p.n; ++a) // ascending: insertion sort
        for (int c = a; c > 0 && out[c - 1] > out[c]; --c) {
            const int32_t tmp = out[c];
            out[c] = out[c - 1], out[c - 1] = tmp;
        }
}

int check(const char *fn, const attn_shape *s, const attn_nsa_params *p, const void *q, const void *k)
{
    int st = attn_check_shape(s);
    if (!st) st = attn_nsa_check(p);
    if (st) return st;
    if (!q || (attn_nsa_num_cmp(s->N, p) > 0 && !k)) return attn_fail(ATTN_ERR_NULL_POINTER, "%s: NULL input", fn);
    return ATTN_OK;
}

} // namespace

extern "C" int attn_ref_nsa_lse_cmp(const attn_shape *s, const attn_nsa_params *p, const uint16_t *q,
                                    const uint16_t *k_cmp, float *lse_cmp, cudaStream_t stream)
{
    int st = check("attn_ref_nsa_lse_cmp", s, p, q, k_cmp);
    if (st) return st;
    if (!lse_cmp) return attn_fail(ATTN_ERR_NULL_POINTER, "attn_ref_nsa_lse_cmp: lse_cmp is NULL");
    const long rows = (long)s->B * s->H * s->M;
    lse_kernel<<<(unsigned)((rows + 7) / 8), 256, 0, stream>>>(*s, *p, attn_nsa_num_cmp(s->N, p),
                                                                attn_softmax_scale(s), q, k_cmp, lse_cmp);
    return attn_cuda_launch_status("attn_ref_nsa_lse_cmp");
}

extern "C" int attn_ref_nsa_select(const attn_shape *s, const attn_nsa_params *p, const uint16_t *q,
                                   const uint16_t *k_cmp, const float *lse_cmp, float *scores, int32_t *indices,
                                   cudaStream_t stream)
{
    int st = check("attn_ref_nsa_select", s, p, q, k_cmp);
    if (st) return st;
    if (!lse_cmp || !scores || !indices)
        return attn_fail(ATTN_ERR_NULL_POINTER, "attn_ref_nsa_select: lse_cmp, scores and indices must not be NULL");
    const long rows = (long)s->B * s->M * attn_nsa_list_heads(s, p);
    select_kernel<<<(unsigned)((rows + 7) / 8), 256, 0, stream>>>(*s, *p, attn_nsa_num_cmp(s->N, p),
                                                                   attn_nsa_num_blocks(s->N, p), attn_softmax_scale(s),
                                                                   q, k_cmp, lse_cmp, scores, indices);
    return attn_cuda_launch_status("attn_ref_nsa_select");
}
