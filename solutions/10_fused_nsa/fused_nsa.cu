/*
 * fused_nsa.cu - lesson 10, CUDA part: the whole NSA forward on the GPU (bf16 in, fp32 accumulation,
 * bf16 out), in three launches that follow the math, and the attention-weights inspection kernels.
 *
 *   compress_kernel      k_cmp = phi(k + pos), v_cmp = phi(v) into the workspace (bf16), one thread per
 *                        output element
 *   cmp_select_kernel    one warp per (b, i, list): compressed attention of each head of the list (o_cmp
 *                        into the workspace in fp32, lse_cmp), its importance summed into the list's block
 *                        scores, then the top-n list
 *   slc_swa_kernel       one warp per (b, i, h): the selected blocks and the window in one walk over the
 *                        keys (each key's score once), then o = g_cmp o_cmp + g_slc o_slc + g_swa o_swa
 *
 * This is the clear version: every score is a warp-wide dot product (a lane holds D/32 dimensions of q
 * and of each output row) and the softmaxes are lesson 02's online updates in fp32. The launches section
 * of the README describes it; a fused tensor-core version keeps this file's entry points.
 */
#include <cuda_runtime.h>
#include <math.h>

#include "attn_gpu.h"
#include "fused_nsa.h"
#include "ptx.cuh"

using namespace ptx;

namespace {

constexpr int kWarps = 4; /* warps per block of the row kernels */
constexpr int kThreads = kWarps * 32;

/* ---------------------------------------------------------------- the workspace (given)
 *
 * Offsets from the workspace's start, each a multiple of 256 bytes. `lists` is used only when the caller
 * passes block_indices = NULL; `p_cmp` holds one row's compressed scores, then probabilities, while the
 * row's importance is summed; `scores` the block scores of each (b, i, list) until its top-n is taken. */
struct Layout {
    size_t k_cmp, v_cmp; /* bf16 [B, NC, G, D] */
    size_t o_cmp;        /* fp32 [B, M, H, D], ungated */
    size_t lists;        /* int32 [B, M, L, n] */
    size_t p_cmp;        /* fp32 [B, M, L, NC] */
    size_t scores;       /* fp32 [B, M, L, NB] */
    size_t total;
};

size_t round_up(size_t x) { return (x + 255) / 256 * 256; }

Layout layout_of(const attn_shape *s, const attn_nsa_params *p)
{
    const size_t NC = (size_t)attn_nsa_num_cmp(s->N, p), NB = (size_t)attn_nsa_num_blocks(s->N, p);
    const size_t rows = (size_t)s->B * s->M * attn_nsa_list_heads(s, p); /* (b, i, list) */
    Layout w;
    size_t at = 0;
    w.k_cmp = at, at += round_up((size_t)s->B * NC * s->G * s->D * 2);
    w.v_cmp = at, at += round_up((size_t)s->B * NC * s->G * s->D * 2);
    w.o_cmp = at, at += round_up(attn_q_elems(s) * 4);
    w.lists = at, at += round_up(rows * p->n * 4);
    w.p_cmp = at, at += round_up(rows * NC * 4);
    w.scores = at, at += round_up(rows * NB * 4);
    w.total = at;
    return w;
}

/* ---------------------------------------------------------------- warp helpers (given) */

__device__ __forceinline__ float bf16_lo(uint32_t u) { return __uint_as_float(u << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t u) { return __uint_as_float(u & 0xffff0000u); }
__device__ __forceinline__ float bf16_to_f32(uint16_t x) { return __uint_as_float((uint32_t)x << 16); }
__device__ __forceinline__ uint16_t f32_to_bf16(float x) { return (uint16_t)(pack_bf16(x, 0.f) & 0xffffu); }

/* Dimensions lane * DPL .. lane * DPL + DPL - 1 of a bf16 row (DPL = D / 32: 2 or 4, so 4 or 8 bytes). */
template <int DPL>
__device__ __forceinline__ void load_lane(const uint16_t *row, int lane, float *x)
{
    const uint32_t *w = reinterpret_cast<const uint32_t *>(row + lane * DPL);
#pragma unroll
    for (int k = 0; k < DPL / 2; ++k) {
        const uint32_t u = __ldg(w + k);
        x[2 * k] = bf16_lo(u), x[2 * k + 1] = bf16_hi(u);
    }
}

/* The sum of a value over the warp, the same in every lane (a fixed butterfly: deterministic). */
__device__ __forceinline__ float warp_sum(float x)
{
#pragma unroll
    for (int off = 16; off > 0; off /= 2) x += __shfl_xor_sync(0xffffffffu, x, off);
    return x;
}

/* nsa.h's index rules on the device (its inline functions are host code). */
__device__ __forceinline__ long visible_count(long t, long nc, const attn_nsa_params &p)
{
    if (t < p.l - 1) return 0;
    const long c = (t - (p.l - 1)) / p.d + 1;
    return c < nc ? c : nc;
}
__device__ __forceinline__ long overlap(long c, long j, const attn_nsa_params &p)
{
    long lo = c * p.d, hi = c * p.d + p.l - 1;
    const long blo = j * p.l_sel, bhi = (j + 1) * (long)p.l_sel - 1;
    lo = lo > blo ? lo : blo, hi = hi < bhi ? hi : bhi;
    return hi >= lo ? hi - lo + 1 : 0;
}
__device__ __forceinline__ int list_heads(const attn_shape &s, const attn_nsa_params &p)
{
    return p.heads_share_selection ? s.G : s.H;
}

/* One lane's share of an online softmax row: the running max m and sum l (the same in every lane) and
 * DPL output dimensions. */
template <int DPL>
struct OnlineRow {
    float m = -INFINITY, l = 0.f, acc[DPL];
    __device__ OnlineRow()
    {
#pragma unroll
        for (int c = 0; c < DPL; ++c) acc[c] = 0.f;
    }
    /* key score x (natural-log units), the lane's dimensions of its value row */
    __device__ __forceinline__ void add(float x, const float *vd)
    {
        const float m_new = fmaxf(m, x), alpha = expf(m - m_new), p = expf(x - m_new);
        l = l * alpha + p;
#pragma unroll
        for (int c = 0; c < DPL; ++c) acc[c] = acc[c] * alpha + p * vd[c];
        m = m_new;
    }
    __device__ __forceinline__ float out(int c) const { return l > 0.f ? acc[c] / l : 0.f; }
    __device__ __forceinline__ float lse() const { return l > 0.f ? m + logf(l) : -INFINITY; }
};

/* ---------------------------------------------------------------- compression
 *
 * kv_cmp [B, NC, G, D] = phi(kv): one thread per output element (b, c, g, e), grid-stride. Mean: the sum
 * of the token's l rows at dimension e, / l. Linear: sum_{r, col} bf16(x[r][col] + pos[r][col]) *
 * w[g][r*D + col][e], where x[r] is key c*d + r (pos NULL for values: x itself). Neighbouring threads
 * take neighbouring e, so the reads of w are coalesced and those of x broadcast. Rounded to bf16 once. */
__global__ void __launch_bounds__(256) compress_kernel(attn_shape sh, attn_nsa_params p, long nc,
                                                       const uint16_t *__restrict__ kv,
                                                       const uint16_t *__restrict__ w,
                                                       const uint16_t *__restrict__ pos, uint16_t *__restrict__ out)
{
    /* BEGIN SOLUTION */
    /* HINT: x = flat output index: e = x % D, g = x / D % G, c = x / (D*G) % NC, b = x / (D*G*NC); every offset
     * in size_t. Accumulate in fp32; in linear mode round xc = x + pos to bf16 (f32_to_bf16, then back) before
     * multiplying it with w, as a tensor-core map would read it. */
    const int D = sh.D, G = sh.G;
    const size_t total = (size_t)sh.B * nc * G * D;
    for (size_t x = blockIdx.x * (size_t)blockDim.x + threadIdx.x; x < total; x += (size_t)gridDim.x * blockDim.x) {
        const int e = (int)(x % D), g = (int)(x / D % G);
        const size_t c = x / ((size_t)D * G) % nc, b = x / ((size_t)D * G * nc);
        float acc = 0.f;
        for (int r = 0; r < p.l; ++r) {
            const uint16_t *row = kv + ((b * sh.N + c * p.d + r) * G + g) * D;
            if (p.mode == ATTN_NSA_MEAN) {
                acc += bf16_to_f32(row[e]);
                continue;
            }
            const uint16_t *wr = w + ((size_t)g * p.l + r) * D * D + e; /* column e of rows r*D .. r*D + D - 1 */
            for (int col = 0; col < D; ++col) {
                float xc = bf16_to_f32(row[col]);
                if (pos) xc = bf16_to_f32(f32_to_bf16(xc + bf16_to_f32(pos[(size_t)r * D + col])));
                acc += xc * bf16_to_f32(wr[(size_t)col * D]);
            }
        }
        out[x] = f32_to_bf16(p.mode == ATTN_NSA_MEAN ? acc / (float)p.l : acc);
    }
    /* END SOLUTION */
}

/* ---------------------------------------------------------------- compressed attention and selection
 *
 * One warp per (b, i, list), list = kv group g (shared selection: heads g*H/G .. g*H/G + H/G - 1) or head
 * h (per head). For each head of the list:
 *   1. the compressed attention over tokens c < vis(t), a warp-wide dot product per token: o_cmp (fp32,
 *      workspace) and lse_cmp (written when asked); the scaled scores go to the row's p_cmp scratch;
 *   2. (only when the list must rank: more candidates than n) p_cmp = exp(score - lse_cmp) in place, then
 *      lane j % 32 adds block j's share, sum over the tokens c overlapping j of p_cmp[c] overlap(c, j) / d,
 *      to scores[j]: each block is owned by one lane for every head, in the same order, so equal inputs
 *      give equal scores (exact ties stay ties).
 * Then the top-n: the forced blocks are marked chosen (score -1: real scores are >= 0), n - 3 rounds of a
 * warp-wide argmax over the unchosen candidates (ties to the lower index), and the chosen blocks written
 * in ascending order by ballots over 32 blocks at a time. */
template <int D>
__global__ void __launch_bounds__(kThreads) cmp_select_kernel(attn_shape sh, attn_nsa_params p, long nc, float scale,
                                                              const uint16_t *__restrict__ q,
                                                              const uint16_t *__restrict__ k_cmp,
                                                              const uint16_t *__restrict__ v_cmp,
                                                              float *__restrict__ o_cmp, float *__restrict__ lse_cmp,
                                                              float *__restrict__ p_cmp, float *__restrict__ scores,
                                                              int32_t *__restrict__ lists)
{
    constexpr int DPL = D / 32;
    const int lane = threadIdx.x % 32;
    /* BEGIN SOLUTION */
    /* HINT: rows = B*M*L with L = list_heads(sh, p); warp-stride over them: row = (b*M + i)*L + list. With
     * t = N - M + i: vis = visible_count(t, NC, p), cur = t / l', cand = cur + 1, and the row's
     * scratch p_cmp + row*NC, scores + row*NB, lists + row*n. Heads: list*H/G .. + H/G - 1 when shared, else
     * h = list. Per token c: k_cmp row ((b*NC + c)*G + g)*D, load_lane, warp_sum of q.k, x = scale * dot,
     * lane c % 32 stores x, OnlineRow::add with the v_cmp row. __syncwarp between the phases that read what
     * other lanes wrote (and before the next head overwrites p_cmp). cand <= n: the list is 0 .. cand-1 then
     * -1, no ranking. */
    const int L = list_heads(sh, p), hpg = sh.H / sh.G, n = p.n;
    const long NB = (sh.N + p.l_sel - 1) / p.l_sel;
    const size_t rows = (size_t)sh.B * sh.M * L, stride = (size_t)sh.G * D;
    const size_t warps = (size_t)gridDim.x * kWarps;
    for (size_t row = (size_t)blockIdx.x * kWarps + threadIdx.x / 32; row < rows; row += warps) {
        const int list = (int)(row % L), i = (int)(row / L % sh.M);
        const size_t b = row / ((size_t)L * sh.M);
        const long t = (long)sh.N - sh.M + i, vis = visible_count(t, nc, p);
        const long cur = t / p.l_sel, cand = cur + 1;
        const bool rank = cand > n;
        float *pc = p_cmp + row * nc, *sc = scores + row * NB;
        int32_t *out = lists + row * n;
        if (rank)
            for (long j = lane; j < cand; j += 32) sc[j] = 0.f;

        const int h0 = p.heads_share_selection ? list * hpg : list, h1 = p.heads_share_selection ? h0 + hpg : h0 + 1;
        for (int h = h0; h < h1; ++h) {
            const int g = h / hpg;
            const size_t qrow = (b * sh.M + i) * sh.H + h;
            float qd[DPL];
            load_lane<DPL>(q + qrow * D, lane, qd);
            const uint16_t *kb = k_cmp + b * nc * stride + (size_t)g * D, *vb = v_cmp + b * nc * stride + (size_t)g * D;
            OnlineRow<DPL> r;
            for (long c = 0; c < vis; ++c) {
                float kd[DPL], vd[DPL], dot = 0.f;
                load_lane<DPL>(kb + c * stride, lane, kd);
#pragma unroll
                for (int e = 0; e < DPL; ++e) dot += qd[e] * kd[e];
                const float x = scale * warp_sum(dot);
                if (rank && lane == (int)(c % 32)) pc[c] = x;
                load_lane<DPL>(vb + c * stride, lane, vd);
                r.add(x, vd);
            }
            const float lse = r.lse();
#pragma unroll
            for (int e = 0; e < DPL; ++e) o_cmp[qrow * D + lane * DPL + e] = r.out(e);
            if (lse_cmp && lane == 0) lse_cmp[(b * sh.H + h) * sh.M + i] = lse;
            if (!rank) continue;
            /* importance: the lane that stored a score turns it into p_cmp; the block sums read every lane's */
            for (long c = lane; c < vis; c += 32) pc[c] = expf(pc[c] - lse);
            __syncwarp();
            for (long j = lane; j < cand; j += 32) {
                const long first = j * p.l_sel, last = first + p.l_sel - 1;
                long c_lo = first - p.l + 1 > 0 ? (first - p.l + 1 + p.d - 1) / p.d : 0; /* spans ending >= first */
                long c_hi = last / p.d < vis - 1 ? last / p.d : vis - 1;                 /* spans starting <= last */
                float acc = 0.f;
                for (long c = c_lo; c <= c_hi; ++c) acc += pc[c] * ((float)overlap(c, j, p) / (float)p.d);
                sc[j] += acc;
            }
            __syncwarp(); /* the next head overwrites p_cmp */
        }

        if (!rank) {
            for (int e = lane; e < n; e += 32) out[e] = e < cand ? e : -1;
            continue;
        }
        /* top-n: forced blocks first (cand > n >= 3: cur >= 3, three different blocks) */
        if (lane == 0) sc[0] = -1.f, sc[cur - 1] = -1.f, sc[cur] = -1.f;
        __syncwarp();
        for (int count = 3; count < n; ++count) {
            float best = -2.f; /* below every candidate, chosen (-1) or not */
            long best_j = 0x7fffffffffffffffL;
            for (long j = lane; j < cand; j += 32) /* ascending with a strict >: the lowest index of a tie */
                if (sc[j] >= 0.f && sc[j] > best) best = sc[j], best_j = j;
#pragma unroll
            for (int off = 16; off > 0; off /= 2) {
                const float ob = __shfl_xor_sync(0xffffffffu, best, off);
                const long oj = __shfl_xor_sync(0xffffffffu, best_j, off);
                if (ob > best || (ob == best && oj < best_j)) best = ob, best_j = oj;
            }
            if (lane == 0) sc[best_j] = -1.f;
            __syncwarp();
        }
        int written = 0;
        for (long base = 0; base < cand; base += 32) {
            const long j = base + lane;
            const bool chosen = j < cand && sc[j] == -1.f;
            const unsigned mask = __ballot_sync(0xffffffffu, chosen);
            if (chosen) out[written + __popc(mask & ((1u << lane) - 1u))] = (int32_t)j;
            written += __popc(mask);
        }
    }
    /* END SOLUTION */
}

/* ---------------------------------------------------------------- selected and window attention
 *
 * One warp per (b, i, h). The walk: the listed blocks in list order up to the first -1, keys first ..
 * min(first + l' - 1, t) of each, every key's score added to the selected row and, when it lies in the
 * window t - w + 1 .. t, to the window row too; then the window's keys in the blocks that are not listed
 * (those in listed blocks were added already). Epilogue: o = g_cmp o_cmp + g_slc o_slc + g_swa o_swa in
 * bf16, lse_slc and lse_swa when asked. */
template <int D>
__global__ void __launch_bounds__(kThreads) slc_swa_kernel(attn_shape sh, attn_nsa_params p, float scale,
                                                           const uint16_t *__restrict__ q,
                                                           const uint16_t *__restrict__ k,
                                                           const uint16_t *__restrict__ v,
                                                           const int32_t *__restrict__ lists,
                                                           const float *__restrict__ o_cmp,
                                                           const float *__restrict__ g_cmp,
                                                           const float *__restrict__ g_slc,
                                                           const float *__restrict__ g_swa, uint16_t *__restrict__ o,
                                                           float *__restrict__ lse_slc, float *__restrict__ lse_swa)
{
    constexpr int DPL = D / 32;
    const int lane = threadIdx.x % 32;
    /* BEGIN SOLUTION */
    /* HINT: row = (b*M + i)*H + h over B*M*H rows (warp-stride); g = h / (H/G); the list (b, i, g or h) at
     * lists + ((b*M + i)*L + list)*n. Two OnlineRow<DPL>, one per branch. Window keys lo = max(0, t - w + 1)
     * .. t; its blocks lo / l' .. t / l': skip a block that is on the list (a loop over the entries up to the
     * first -1). The same key must never enter one row twice. Epilogue: lane writes dims lane*DPL .. as bf16
     * pairs (pack_bf16) of g_cmp[row] * o_cmp + g_slc[row] * slc.out(e) + g_swa[row] * swa.out(e). */
    const int L = list_heads(sh, p), hpg = sh.H / sh.G, n = p.n;
    const size_t rows = (size_t)sh.B * sh.M * sh.H, stride = (size_t)sh.G * D;
    const size_t warps = (size_t)gridDim.x * kWarps;
    for (size_t row = (size_t)blockIdx.x * kWarps + threadIdx.x / 32; row < rows; row += warps) {
        const int h = (int)(row % sh.H), i = (int)(row / sh.H % sh.M), g = h / hpg;
        const size_t b = row / ((size_t)sh.H * sh.M);
        const long t = (long)sh.N - sh.M + i, lo = t - p.w + 1 > 0 ? t - p.w + 1 : 0;
        const int32_t *list = lists + ((b * sh.M + i) * L + (p.heads_share_selection ? g : h)) * n;
        const uint16_t *kb = k + b * sh.N * stride + (size_t)g * D, *vb = v + b * sh.N * stride + (size_t)g * D;
        float qd[DPL];
        load_lane<DPL>(q + row * D, lane, qd);
        OnlineRow<DPL> slc, swa;
        int n_list = 0; /* entries up to the first -1 */
        while (n_list < n && list[n_list] >= 0) ++n_list;
        for (int e = 0; e < n_list; ++e) {
            const long first = (long)list[e] * p.l_sel;
            const long last = first + p.l_sel - 1 < t ? first + p.l_sel - 1 : t; /* the token causal rule */
            for (long s = first; s <= last; ++s) {
                float kd[DPL], vd[DPL], dot = 0.f;
                load_lane<DPL>(kb + s * stride, lane, kd);
#pragma unroll
                for (int c = 0; c < DPL; ++c) dot += qd[c] * kd[c];
                const float x = scale * warp_sum(dot);
                load_lane<DPL>(vb + s * stride, lane, vd);
                slc.add(x, vd);
                if (s >= lo) swa.add(x, vd);
            }
        }
        for (long j = lo / p.l_sel; j <= t / p.l_sel; ++j) {
            bool listed = false;
            for (int e = 0; e < n_list; ++e) listed |= list[e] == j;
            if (listed) continue; /* its window keys are in swa already */
            const long first = j * p.l_sel > lo ? j * p.l_sel : lo;
            const long last = j * p.l_sel + p.l_sel - 1 < t ? j * p.l_sel + p.l_sel - 1 : t;
            for (long s = first; s <= last; ++s) {
                float kd[DPL], vd[DPL], dot = 0.f;
                load_lane<DPL>(kb + s * stride, lane, kd);
#pragma unroll
                for (int c = 0; c < DPL; ++c) dot += qd[c] * kd[c];
                load_lane<DPL>(vb + s * stride, lane, vd);
                swa.add(scale * warp_sum(dot), vd);
            }
        }
        const float gc = g_cmp[row], gs = g_slc[row], gw = g_swa[row];
        const float *oc = o_cmp + row * D + lane * DPL;
        uint32_t *orow = reinterpret_cast<uint32_t *>(o + row * D + lane * DPL);
#pragma unroll
        for (int c = 0; c < DPL; c += 2)
            orow[c / 2] = pack_bf16(gc * oc[c] + gs * slc.out(c) + gw * swa.out(c),
                                    gc * oc[c + 1] + gs * slc.out(c + 1) + gw * swa.out(c + 1));
        if (lane == 0) {
            if (lse_slc) lse_slc[(b * sh.H + h) * sh.M + i] = slc.lse();
            if (lse_swa) lse_swa[(b * sh.H + h) * sh.M + i] = swa.lse();
        }
    }
    /* END SOLUTION */
}

/* ---------------------------------------------------------------- attention weights
 *
 * One thread per entry (i, col) of the [M, cols] matrix of (b, h): a D-long dot product of its own. keys:
 * the branch's key rows of kv group g (the compressed ones for CMP), row s at keys + s * stride. */
__global__ void __launch_bounds__(256) weights_kernel(attn_shape sh, attn_nsa_params p, int kind, int b, int h,
                                                      long cols, float scale, const uint16_t *__restrict__ q,
                                                      const uint16_t *__restrict__ keys, size_t stride,
                                                      const int32_t *__restrict__ lists,
                                                      const float *__restrict__ lse, float *__restrict__ weights)
{
    /* BEGIN SOLUTION */
    /* HINT: x = i * cols + col; t = N - M + i; the row's lse at (b*H + h)*M + i. Visible: CMP col*d + l - 1 <= t;
     * SLC col <= t and block col / l' on list (b, i, g or h) up to its first -1; SWA t - w + 1 <= col <= t.
     * weights[x] = visible and lse > -inf ? expf(scale * q.key - lse) : 0. */
    const int D = sh.D, L = list_heads(sh, p), g = h / (sh.H / sh.G);
    const size_t total = (size_t)sh.M * cols;
    for (size_t x = blockIdx.x * (size_t)blockDim.x + threadIdx.x; x < total; x += (size_t)gridDim.x * blockDim.x) {
        const int i = (int)(x / cols);
        const long s = (long)(x % cols), t = (long)sh.N - sh.M + i;
        const float row_lse = lse[((size_t)b * sh.H + h) * sh.M + i];
        bool visible;
        if (kind == NSA_WEIGHTS_CMP) {
            visible = s * p.d + p.l - 1 <= t;
        } else if (kind == NSA_WEIGHTS_SLC) {
            const int32_t *list = lists + (((size_t)b * sh.M + i) * L + (p.heads_share_selection ? g : h)) * p.n;
            visible = false;
            for (int e = 0; e < p.n && list[e] >= 0; ++e) visible |= list[e] == s / p.l_sel;
            visible = visible && s <= t;
        } else {
            visible = s <= t && s >= t - p.w + 1;
        }
        float w = 0.f;
        if (visible && row_lse > -INFINITY) {
            const uint16_t *qrow = q + (((size_t)b * sh.M + i) * sh.H + h) * D, *krow = keys + (size_t)s * stride;
            float dot = 0.f;
            for (int e = 0; e < D; ++e) dot += bf16_to_f32(qrow[e]) * bf16_to_f32(krow[e]);
            w = expf(scale * dot - row_lse);
        }
        weights[x] = w;
    }
    /* END SOLUTION */
}

/* One thread per key entry (i, s): the tokens c with c*d <= s <= c*d + l - 1 share their weight / l. */
__global__ void __launch_bounds__(256) spread_kernel(attn_shape sh, attn_nsa_params p, long nc,
                                                     const float *__restrict__ cmp_weights,
                                                     float *__restrict__ key_weights)
{
    /* BEGIN SOLUTION */
    /* HINT: x = i * N + s; tokens c from ceil((s - l + 1) / d) (at least 0) to min(s / d, NC - 1); the sum of
     * cmp_weights[i * NC + c], divided by l. */
    const size_t total = (size_t)sh.M * sh.N;
    for (size_t x = blockIdx.x * (size_t)blockDim.x + threadIdx.x; x < total; x += (size_t)gridDim.x * blockDim.x) {
        const size_t i = x / sh.N;
        const long s = (long)(x % sh.N);
        const long c_lo = s - p.l + 1 > 0 ? (s - p.l + 1 + p.d - 1) / p.d : 0, c_hi = s / p.d < nc - 1 ? s / p.d : nc - 1;
        float sum = 0.f;
        for (long c = c_lo; c <= c_hi; ++c) sum += cmp_weights[i * nc + c];
        key_weights[x] = sum / (float)p.l;
    }
    /* END SOLUTION */
}

/* ---------------------------------------------------------------- host side (given) */

/* Blocks for `work` items at `per_block` per block, capped (the kernels loop). */
unsigned grid_for(size_t work, size_t per_block)
{
    const size_t b = (work + per_block - 1) / per_block;
    return (unsigned)(b < 1 ? 1 : b > 1048576 ? 1048576 : b);
}

int check_problem(const char *fn, const attn_shape *shape, const attn_nsa_params *p)
{
    int st = attn_check_shape(shape);
    if (st) return st;
    if ((st = attn_nsa_check(p)) != ATTN_OK) return st;
    if (!shape->causal)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "%s: NSA is causal by definition, shape->causal must be 1", fn);
    if (shape->D != 64 && shape->D != 128)
        return attn_fail(ATTN_ERR_UNSUPPORTED_D, "%s: D=%d, this kernel supports 64 and 128", fn, shape->D);
    return ATTN_OK;
}

bool misaligned(const void *ptr, size_t bytes) { return ((uintptr_t)ptr % bytes) != 0; }

template <int D>
int launch_forward(const attn_shape *sh, const attn_nsa_params *p, const Layout &lay, const uint16_t *q,
                   const uint16_t *k, const uint16_t *v, const uint16_t *w_k, const uint16_t *w_v,
                   const uint16_t *pos, const float *g_cmp, const float *g_slc, const float *g_swa, uint16_t *o,
                   float *lse_cmp, float *lse_slc, float *lse_swa, int32_t *lists, uint8_t *ws, cudaStream_t stream)
{
    const long nc = attn_nsa_num_cmp(sh->N, p);
    const float scale = attn_softmax_scale(sh);
    uint16_t *k_cmp = reinterpret_cast<uint16_t *>(ws + lay.k_cmp), *v_cmp = reinterpret_cast<uint16_t *>(ws + lay.v_cmp);
    float *o_cmp = reinterpret_cast<float *>(ws + lay.o_cmp);
    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: three launches on `stream`, each followed by attn_cuda_launch_status: compress_kernel for k (with
     * w_k and pos in linear mode) and v (w_v, no pos) when NC > 0 (a grid of 0 blocks is an error), then
     * cmp_select_kernel<D> over B*M*L rows and slc_swa_kernel<D> over B*M*H rows, kWarps rows per block
     * (grid_for caps the grid; the kernels loop). Mean mode passes w = pos = nullptr. */
    const int linear = p->mode == ATTN_NSA_LINEAR;
    const size_t n_cmp = (size_t)sh->B * nc * sh->G * sh->D;
    if (n_cmp) {
        compress_kernel<<<grid_for(n_cmp, 256), 256, 0, stream>>>(*sh, *p, nc, k, linear ? w_k : nullptr,
                                                                  linear ? pos : nullptr, k_cmp);
        int st = attn_cuda_launch_status("compress_kernel (keys)");
        if (st) return st;
        compress_kernel<<<grid_for(n_cmp, 256), 256, 0, stream>>>(*sh, *p, nc, v, linear ? w_v : nullptr, nullptr,
                                                                  v_cmp);
        if ((st = attn_cuda_launch_status("compress_kernel (values)")) != ATTN_OK) return st;
    }
    const size_t list_rows = (size_t)sh->B * sh->M * attn_nsa_list_heads(sh, p);
    cmp_select_kernel<D><<<grid_for(list_rows, kWarps), kThreads, 0, stream>>>(
        *sh, *p, nc, scale, q, k_cmp, v_cmp, o_cmp, lse_cmp, reinterpret_cast<float *>(ws + lay.p_cmp),
        reinterpret_cast<float *>(ws + lay.scores), lists);
    int st = attn_cuda_launch_status("cmp_select_kernel");
    if (st) return st;
    const size_t rows = (size_t)sh->B * sh->M * sh->H;
    slc_swa_kernel<D><<<grid_for(rows, kWarps), kThreads, 0, stream>>>(*sh, *p, scale, q, k, v, lists, o_cmp, g_cmp,
                                                                      g_slc, g_swa, o, lse_slc, lse_swa);
    return attn_cuda_launch_status("slc_swa_kernel");
    /* END SOLUTION */
}

} // namespace

extern "C" size_t nsa_forward_workspace_bytes(const attn_shape *shape, const attn_nsa_params *p)
{
    if (check_problem("nsa_forward_workspace_bytes", shape, p) != ATTN_OK) return 0;
    return layout_of(shape, p).total;
}

extern "C" int nsa_forward_cuda(const attn_shape *shape, const attn_nsa_params *p, const uint16_t *q,
                                const uint16_t *k, const uint16_t *v, const uint16_t *w_k, const uint16_t *w_v,
                                const uint16_t *pos, const float *g_cmp, const float *g_slc, const float *g_swa,
                                uint16_t *o, float *lse_cmp, float *lse_slc, float *lse_swa, int32_t *block_indices,
                                void *workspace, size_t workspace_bytes, cudaStream_t stream)
{
    int st = check_problem("nsa_forward_cuda", shape, p);
    if (st) return st;
    if (!q || !k || !v || !o || !g_cmp || !g_slc || !g_swa || !workspace)
        return attn_fail(ATTN_ERR_NULL_POINTER, "nsa_forward_cuda: q, k, v, the gates, o and workspace must not be NULL");
    const int linear = p->mode == ATTN_NSA_LINEAR;
    if (linear && (!w_k || !w_v || !pos))
        return attn_fail(ATTN_ERR_NULL_POINTER, "nsa_forward_cuda: linear mode needs w_k, w_v and pos");
    if (misaligned(q, 16) || misaligned(k, 16) || misaligned(v, 16) || misaligned(o, 16) || misaligned(workspace, 16) ||
        (linear && (misaligned(w_k, 16) || misaligned(w_v, 16) || misaligned(pos, 16))))
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "nsa_forward_cuda: q, k, v, o, w_k, w_v, pos and workspace must be "
                                                "16-byte aligned");
    if (misaligned(g_cmp, 4) || misaligned(g_slc, 4) || misaligned(g_swa, 4) || misaligned(lse_cmp, 4) ||
        misaligned(lse_slc, 4) || misaligned(lse_swa, 4) || misaligned(block_indices, 4))
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "nsa_forward_cuda: gates, lse and block_indices must be 4-byte aligned");
    const Layout lay = layout_of(shape, p);
    if (workspace_bytes < lay.total)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "nsa_forward_cuda: workspace of %zu bytes, this problem needs %zu "
                                                "(nsa_forward_workspace_bytes)", workspace_bytes, lay.total);
    uint8_t *ws = static_cast<uint8_t *>(workspace);
    int32_t *lists = block_indices ? block_indices : reinterpret_cast<int32_t *>(ws + lay.lists);
    if (shape->D == 64)
        return launch_forward<64>(shape, p, lay, q, k, v, w_k, w_v, pos, g_cmp, g_slc, g_swa, o, lse_cmp, lse_slc,
                                  lse_swa, lists, ws, stream);
    return launch_forward<128>(shape, p, lay, q, k, v, w_k, w_v, pos, g_cmp, g_slc, g_swa, o, lse_cmp, lse_slc,
                               lse_swa, lists, ws, stream);
}

extern "C" int nsa_weights_cuda(const attn_shape *shape, const attn_nsa_params *p, int kind, int b, int h,
                                const uint16_t *q, const uint16_t *k, const uint16_t *w_k, const uint16_t *pos,
                                const int32_t *block_indices, const float *lse_cmp, const float *lse_slc,
                                const float *lse_swa, float *weights, void *workspace, size_t workspace_bytes,
                                cudaStream_t stream)
{
    int st = check_problem("nsa_weights_cuda", shape, p);
    if (st) return st;
    if (kind < NSA_WEIGHTS_CMP || kind > NSA_WEIGHTS_SWA)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "nsa_weights_cuda: kind %d is not CMP (0), SLC (1) or SWA (2)", kind);
    if (b < 0 || b >= shape->B || h < 0 || h >= shape->H)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "nsa_weights_cuda: (b=%d, h=%d) outside B=%d, H=%d", b, h, shape->B,
                         shape->H);
    const float *lse = kind == NSA_WEIGHTS_CMP ? lse_cmp : kind == NSA_WEIGHTS_SLC ? lse_slc : lse_swa;
    if (!q || !k || !weights || !lse)
        return attn_fail(ATTN_ERR_NULL_POINTER, "nsa_weights_cuda: q, k, weights and the branch's lse must not be NULL");
    if (kind == NSA_WEIGHTS_SLC && !block_indices)
        return attn_fail(ATTN_ERR_NULL_POINTER, "nsa_weights_cuda: the selected branch needs block_indices");
    const int linear = p->mode == ATTN_NSA_LINEAR;
    if (kind == NSA_WEIGHTS_CMP && linear && (!w_k || !pos))
        return attn_fail(ATTN_ERR_NULL_POINTER, "nsa_weights_cuda: linear mode needs w_k and pos");
    if (kind == NSA_WEIGHTS_CMP && !workspace)
        return attn_fail(ATTN_ERR_NULL_POINTER, "nsa_weights_cuda: the compressed branch needs the workspace");
    if (misaligned(q, 16) || misaligned(k, 16) || misaligned(workspace, 16) ||
        (kind == NSA_WEIGHTS_CMP && linear && (misaligned(w_k, 16) || misaligned(pos, 16))) || misaligned(lse, 4) ||
        misaligned(weights, 4) || misaligned(block_indices, 4))
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "nsa_weights_cuda: q, k, w_k, pos and workspace must be 16-byte "
                                                "aligned, lse, weights and block_indices 4-byte aligned");
    const size_t need = layout_of(shape, p).total;
    if (kind == NSA_WEIGHTS_CMP && workspace_bytes < need)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "nsa_weights_cuda: workspace of %zu bytes, at least %zu "
                                                "(nsa_forward_workspace_bytes)", workspace_bytes, need);
    const long nc = attn_nsa_num_cmp(shape->N, p), cols = kind == NSA_WEIGHTS_CMP ? nc : shape->N;
    const size_t stride = (size_t)shape->G * shape->D;
    (void)cols, (void)stride;

    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: CMP first compresses batch b's keys into the workspace: compress_kernel on a copy of the shape with
     * B = 1 and k + b*N*G*D (w_k, pos in linear mode), when NC > 0; its keys are then token c of kv group g at
     * workspace + g*D + c*G*D. SLC and SWA read k + b*N*G*D + g*D directly. Then weights_kernel over the M*cols
     * entries (nothing to launch when there are none). */
    const int g = h / (shape->H / shape->G);
    const uint16_t *keys = k + (size_t)b * shape->N * stride + (size_t)g * shape->D;
    if (kind == NSA_WEIGHTS_CMP) {
        attn_shape one = *shape;
        one.B = 1;
        uint16_t *k_cmp = static_cast<uint16_t *>(workspace);
        const size_t n_cmp = (size_t)nc * stride;
        if (n_cmp) {
            compress_kernel<<<grid_for(n_cmp, 256), 256, 0, stream>>>(one, *p, nc, k + (size_t)b * shape->N * stride,
                                                                      linear ? w_k : nullptr, linear ? pos : nullptr,
                                                                      k_cmp);
            if ((st = attn_cuda_launch_status("compress_kernel (weights)")) != ATTN_OK) return st;
        }
        keys = k_cmp + (size_t)g * shape->D;
    }
    const size_t entries = (size_t)shape->M * cols;
    if (!entries) return ATTN_OK;
    weights_kernel<<<grid_for(entries, 256), 256, 0, stream>>>(*shape, *p, kind, b, h, cols, attn_softmax_scale(shape), q,
                                                               keys, stride, block_indices, lse, weights);
    return attn_cuda_launch_status("weights_kernel");
    /* END SOLUTION */
}

extern "C" int nsa_cmp_weights_to_keys_cuda(const attn_shape *shape, const attn_nsa_params *p, const float *cmp_weights,
                                            float *key_weights, cudaStream_t stream)
{
    int st = attn_check_shape(shape);
    if (st) return st;
    if ((st = attn_nsa_check(p)) != ATTN_OK) return st;
    if (!shape->causal)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "nsa_cmp_weights_to_keys_cuda: NSA is causal, shape->causal must be 1");
    if (!cmp_weights || !key_weights)
        return attn_fail(ATTN_ERR_NULL_POINTER, "nsa_cmp_weights_to_keys_cuda: cmp_weights and key_weights must not be NULL");
    if (misaligned(cmp_weights, 4) || misaligned(key_weights, 4))
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "nsa_cmp_weights_to_keys_cuda: the weights must be 4-byte aligned");
    const long nc = attn_nsa_num_cmp(shape->N, p);
    (void)nc;

    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: one launch of spread_kernel over the M*N entries. */
    spread_kernel<<<grid_for((size_t)shape->M * shape->N, 256), 256, 0, stream>>>(*shape, *p, nc, cmp_weights,
                                                                                  key_weights);
    return attn_cuda_launch_status("spread_kernel");
    /* END SOLUTION */
}
