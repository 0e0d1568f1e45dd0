/*
 * sparsity.cu - lesson 06, CUDA part: the same flash-attention machinery driven two ways.
 *
 *   masked_attention_kernel        a token keep-mask. Every key tile of the causal range is loaded
 *                                  and multiplied; the mask only changes the scores (log k_s added,
 *                                  -inf for deleted keys). Deleting 90% of the tokens saves nothing.
 *   block_sparse_attention_kernel  a block list. A block of queries walks the key tiles its list
 *                                  names and no others: the work, and the time, follow the list.
 *
 * Both are lesson 04's kernel (packed GQA rows, K/V tiles shared by the H/G heads of a group,
 * cp.async double buffering of K and V, mma.sync m16n8k16, online softmax in base 2), cut here into
 * the four steps of one key tile (RowBlock below) so that the two loops read side by side.
 *
 * Parallelisation (both kernels): a block of 4 warps owns 128 packed rows of one (b, kv head g); a
 * packed row R is query i = R / hpg of head g * hpg + R % hpg (hpg = H / G). Each warp owns 32 rows,
 * each thread the mma fragments of two 16-row tiles. Shared memory holds the Q rows, one K tile and
 * one V tile (64 keys each, XOR-swizzled), and for the mask kernel the log2 keep weights of the tile's
 * 64 keys.
 * A key block of a block list is exactly one key tile (SPARSE_KEY_BLOCK = 64), and the 128 * hpg rows
 * of a query block (SPARSE_QUERY_BLOCK = 128 queries) are a whole number of row blocks, so every row of
 * a thread block reads the same list.
 */
#include <cuda_runtime.h>
#include <math.h>

#include "attn_gpu.h"
#include "ptx.cuh"
#include "sparsity.h"

using namespace ptx;

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kBr = 128;                   /* packed rows per block */
constexpr int kBc = SPARSE_KEY_BLOCK;      /* keys per tile: one key block */
constexpr int kRowsPerWarp = kBr / kWarps; /* 32 */
constexpr int kMTiles = kRowsPerWarp / 16;
constexpr int kNTiles = kBc / 8;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
static_assert(kBc == 64, "the tile loops below assume 64-key tiles");
static_assert(SPARSE_QUERY_BLOCK % kBr == 0, "a row block must not straddle two query blocks");

/* Copy K or V rows [first, first + kBc) of kv head g into a swizzled tile (zeros past `limit`). */
template <int D>
__device__ __forceinline__ void load_kv_tile(uint32_t tile, const uint16_t *base, size_t stride, long first, long limit)
{
    constexpr int kChunks = D / 8, kRowStep = kThreads / kChunks;
    const int r0 = threadIdx.x / kChunks, c = threadIdx.x % kChunks;
    const uint32_t dst = tile + swizzle<D>(r0, c);
    const uint16_t *src = base + (size_t)(first + r0) * stride + c * 8;
#pragma unroll
    for (int it = 0; it < kBc / kRowStep; ++it) {
        const bool valid = first + r0 + it * kRowStep < limit;
        cp_async_16(dst + it * kRowStep * D * 2, valid ? src + (size_t)it * kRowStep * stride : base, valid);
    }
}

/* Where a thread block works: lesson 04's launch order (the row blocks of an L2-sized chunk of kv
 * heads run together, the longest causal rows first). */
struct Work {
    int b, g, hpg;
    long R0, packed_rows, offset, t_first, t_last;
};

__device__ __forceinline__ Work find_work(const attn_shape &sh, int groups_per_chunk)
{
    Work w;
    w.hpg = sh.H / sh.G;
    w.packed_rows = (long)sh.M * w.hpg;
    const int row_blocks = (int)((w.packed_rows + kBr - 1) / kBr);
    const int chunk = blockIdx.x / (row_blocks * groups_per_chunk);
    const int rem = blockIdx.x % (row_blocks * groups_per_chunk);
    const int groups_here = min(groups_per_chunk, sh.G - chunk * groups_per_chunk);
    w.g = chunk * groups_per_chunk + rem % groups_here;
    w.b = blockIdx.y;
    w.R0 = (long)(row_blocks - 1 - rem / groups_here) * kBr;
    w.offset = (long)sh.N - sh.M;
    w.t_first = w.offset + w.R0 / w.hpg;
    w.t_last = w.offset + (min(w.R0 + kBr, w.packed_rows) - 1) / w.hpg;
    return w;
}

/* One thread's share of a block of kBr packed rows: lesson 03's accumulators and the four steps of
 * a key tile. Everything is inlined, so the arrays stay in registers. */
template <int D>
struct RowBlock {
    static constexpr int kDTiles = D / 8;
    static constexpr int kRowBytes = D * 2;
    float o_acc[kMTiles][kDTiles][4];
    float m_i[kMTiles][2], l_i[kMTiles][2]; /* running max (score units) and sum of each row */
    uint32_t q_addr[4], k_addr[4], v_addr[4];

    __device__ __forceinline__ void init(uint32_t q_s, uint32_t k_s, uint32_t v_s)
    {
        const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
            for (int dt = 0; dt < kDTiles; ++dt) o_acc[mt][dt][0] = o_acc[mt][dt][1] = o_acc[mt][dt][2] = o_acc[mt][dt][3] = 0.f;
            m_i[mt][0] = m_i[mt][1] = -INFINITY;
            l_i[mt][0] = l_i[mt][1] = 0.f;
        }
#pragma unroll
        for (int c = 0; c < 4; ++c) {
            q_addr[c] = q_s + (warp * kRowsPerWarp + lane % 16) * kRowBytes + (((2 * c + lane / 16) ^ (lane % 8)) * 16);
            k_addr[c] = k_s + (lane % 8 + (lane / 16) * 8) * kRowBytes + (((2 * c + (lane / 8) % 2) ^ (lane % 8)) * 16);
            v_addr[c] = v_s + (lane % 8 + ((lane / 8) % 2) * 8) * kRowBytes + (((2 * c + lane / 16) ^ (lane % 8)) * 16);
        }
    }

    /* s = Q K^T for the K tile in shared memory (raw dot products). */
    __device__ __forceinline__ void scores(float s[kMTiles][kNTiles][4]) const
    {
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
            for (int nt = 0; nt < kNTiles; ++nt) s[mt][nt][0] = s[mt][nt][1] = s[mt][nt][2] = s[mt][nt][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
            uint32_t a[kMTiles][4];
#pragma unroll
            for (int mt = 0; mt < kMTiles; ++mt) ldmatrix_x4(a[mt], q_addr[kk % 4] + mt * 16 * kRowBytes + (kk / 4) * 128);
#pragma unroll
            for (int np = 0; np < kNTiles / 2; ++np) {
                uint32_t bk[4];
                ldmatrix_x4(bk, k_addr[kk % 4] + np * 16 * kRowBytes + (kk / 4) * 128);
#pragma unroll
                for (int mt = 0; mt < kMTiles; ++mt) {
                    mma_bf16(s[mt][2 * np], a[mt], bk[0], bk[1]);
                    mma_bf16(s[mt][2 * np + 1], a[mt], bk[2], bk[3]);
                }
            }
        }
    }

    /* The online-softmax update for one tile. Probabilities are 2^(s * scale_log2 - m): pass the
     * softmax scale times log2(e) for raw scores, or 1 for scores already in base-2 units; -inf
     * hides a key. P leaves as bf16 A fragments for the PV product. */
    __device__ __forceinline__ void softmax(float s[kMTiles][kNTiles][4], uint32_t p[kMTiles][kNTiles][2],
                                            float scale_log2)
    {
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
            for (int rr = 0; rr < 2; ++rr) {
                float mx = m_i[mt][rr];
#pragma unroll
                for (int nt = 0; nt < kNTiles; ++nt) mx = fmaxf(mx, fmaxf(s[mt][nt][2 * rr], s[mt][nt][2 * rr + 1]));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                /* a row that has seen no key yet keeps m = -inf: use 0 so that -inf - m is not NaN */
                const float m_scaled = mx == -INFINITY ? 0.f : mx * scale_log2;
                const float alpha = fast_exp2(m_i[mt][rr] * scale_log2 - m_scaled);
                m_i[mt][rr] = mx;
                float row_sum = 0.f;
#pragma unroll
                for (int nt = 0; nt < kNTiles; ++nt) {
                    const float p0 = fast_exp2(fmaf(s[mt][nt][2 * rr], scale_log2, -m_scaled));
                    const float p1 = fast_exp2(fmaf(s[mt][nt][2 * rr + 1], scale_log2, -m_scaled));
                    row_sum += p0 + p1;
                    p[mt][nt][rr] = pack_bf16(p0, p1);
                }
                l_i[mt][rr] = l_i[mt][rr] * alpha + row_sum;
#pragma unroll
                for (int dt = 0; dt < kDTiles; ++dt) {
                    o_acc[mt][dt][2 * rr] *= alpha;
                    o_acc[mt][dt][2 * rr + 1] *= alpha;
                }
            }
    }

    /* O += P V for the V tile in shared memory. */
    __device__ __forceinline__ void accumulate(const uint32_t p[kMTiles][kNTiles][2])
    {
#pragma unroll
        for (int kk = 0; kk < kBc / 16; ++kk) {
            uint32_t a[kMTiles][4];
#pragma unroll
            for (int mt = 0; mt < kMTiles; ++mt) {
                a[mt][0] = p[mt][2 * kk][0], a[mt][1] = p[mt][2 * kk][1];
                a[mt][2] = p[mt][2 * kk + 1][0], a[mt][3] = p[mt][2 * kk + 1][1];
            }
#pragma unroll
            for (int dp = 0; dp < D / 16; ++dp) {
                uint32_t bv[4];
                ldmatrix_x4_trans(bv, v_addr[dp % 4] + kk * 16 * kRowBytes + (dp / 4) * 128);
#pragma unroll
                for (int mt = 0; mt < kMTiles; ++mt) {
                    mma_bf16(o_acc[mt][2 * dp], a[mt], bv[0], bv[1]);
                    mma_bf16(o_acc[mt][2 * dp + 1], a[mt], bv[2], bv[3]);
                }
            }
        }
    }

    /* o = acc / l and lse = ln(sum) for this thread's rows; a row that saw no key writes 0 and -inf. */
    __device__ __forceinline__ void store(const attn_shape &sh, const Work &w, float scale_log2, uint16_t *o, float *lse) const
    {
        const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gid = lane / 4, tig = lane % 4;
        uint16_t *o_bg = o + ((size_t)w.b * sh.M * sh.H + (size_t)w.g * w.hpg) * D;
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
            for (int rr = 0; rr < 2; ++rr) {
                float l = l_i[mt][rr];
                l += __shfl_xor_sync(0xffffffffu, l, 1);
                l += __shfl_xor_sync(0xffffffffu, l, 2);
                const long R = w.R0 + warp * kRowsPerWarp + mt * 16 + gid + rr * 8;
                if (R >= w.packed_rows) continue;
                const long i = R / w.hpg;
                const int h = w.g * w.hpg + (int)(R % w.hpg);
                const float inv_l = l > 0.f ? 1.f / l : 0.f;
                uint16_t *o_row = o_bg + ((size_t)i * sh.H + R % w.hpg) * D;
#pragma unroll
                for (int dt = 0; dt < kDTiles; ++dt)
                    *reinterpret_cast<uint32_t *>(o_row + dt * 8 + tig * 2) =
                        pack_bf16(o_acc[mt][dt][2 * rr] * inv_l, o_acc[mt][dt][2 * rr + 1] * inv_l);
                if (tig == 0)
                    lse[((size_t)w.b * sh.H + h) * sh.M + i] =
                        l > 0.f ? (m_i[mt][rr] * scale_log2 + log2f(l)) * kLn2 : -INFINITY;
            }
    }
};

/* Copy the Q rows [R0, R0 + kBr) of (b, g) into a swizzled tile (zeros past the last row). */
template <int D>
__device__ __forceinline__ void load_q(uint32_t q_s, const attn_shape &sh, const Work &w, const uint16_t *q)
{
    constexpr int kChunks = D / 8, kRowStep = kThreads / kChunks;
    const uint16_t *q_bg = q + ((size_t)w.b * sh.M * sh.H + (size_t)w.g * w.hpg) * D;
    const int r0 = threadIdx.x / kChunks, c = threadIdx.x % kChunks;
#pragma unroll
    for (int it = 0; it < kBr / kRowStep; ++it) {
        const long R = w.R0 + r0 + it * kRowStep;
        const bool valid = R < w.packed_rows;
        const uint16_t *src = valid ? q_bg + ((size_t)(R / w.hpg) * sh.H + R % w.hpg) * D + c * 8 : q;
        cp_async_16(q_s + swizzle<D>(r0 + it * kRowStep, c), src, valid);
    }
}

/* ---------------------------------------------------------------- token keep-mask */

/* log2 of the keep weight of retention r: 0 (kept), log2 r (soft delete) or -inf (deleted).
 * Device data cannot be checked: an r above 1 counts as 1, a negative or NaN r deletes the key. */
__device__ __forceinline__ float keep_log2_weight(int mode, float threshold, float r)
{
    /* BEGIN SOLUTION stub="return 0.0f;" */
    /* HINT: KEEP_SOFT: r > 0 ? log2f(fminf(r, 1)) : -INFINITY. KEEP_HARD: r >= threshold ? 0 : -INFINITY.
     * Written with `r > 0` and `r >= threshold`, a NaN falls on the deleting side by itself. */
    if (mode == KEEP_SOFT) return r > 0.f ? log2f(fminf(r, 1.f)) : -INFINITY;
    if (mode == KEEP_HARD) return r >= threshold ? 0.f : -INFINITY;
    return 0.f;
    /* END SOLUTION */
}

/* Retention of key `key` of this kv head, read early (a plain load: its latency hides behind a
 * tile's work); keys past the end, and KEEP_BASELINE (retention may be NULL), read nothing. */
__device__ __forceinline__ float load_retention(const float *retention, size_t offset_bg, int mode, int G, long key,
                                                long N)
{
    return mode != KEEP_BASELINE && key < N ? __ldg(retention + offset_bg + (size_t)key * G) : 1.f;
}

template <int D>
__global__ void __launch_bounds__(kThreads, 2)
    masked_attention_kernel(attn_shape sh, int mode, float threshold, float scale_log2, int groups_per_chunk,
                            const float *__restrict__ retention, const uint16_t *__restrict__ q,
                            const uint16_t *__restrict__ k, const uint16_t *__restrict__ v, uint16_t *__restrict__ o,
                            float *__restrict__ lse)
{
    extern __shared__ __align__(128) uint8_t smem[];
    const uint32_t q_s = smem_addr(smem), k_s = q_s + kBr * D * 2, v_s = k_s + kBc * D * 2;
    /* w2_s[c]: log2 of the keep weight of key s0 + c of the current tile, -inf past the end of the keys */
    float *w2_s = reinterpret_cast<float *>(smem + (kBr + 2 * kBc) * D * 2);
    const Work w = find_work(sh, groups_per_chunk);
    const size_t kv_stride = (size_t)sh.G * D;
    const uint16_t *k_bg = k + ((size_t)w.b * sh.N * sh.G + w.g) * D;
    const uint16_t *v_bg = v + ((size_t)w.b * sh.N * sh.G + w.g) * D;
    const size_t retention_bg = (size_t)w.b * sh.N * sh.G + w.g; /* offset of (b, key 0, g) */
    const long last_key = sh.causal ? w.t_last : sh.N - 1;
    const int n_tiles = (int)(last_key / kBc) + 1; /* every tile of the causal range: the mask skips nothing */

    RowBlock<D> rb;
    rb.init(q_s, k_s, v_s);
    load_q<D>(q_s, sh, w, q);
    load_kv_tile<D>(k_s, k_bg, kv_stride, 0, sh.N);
    cp_async_commit();
    /* threads 0..63 each own one key of a tile: its weight is computed once and shared through w2_s */
    if (threadIdx.x < kBc) {
        const long key = threadIdx.x;
        const float r = load_retention(retention, retention_bg, mode, sh.G, key, sh.N);
        w2_s[threadIdx.x] = key < sh.N ? keep_log2_weight(mode, threshold, r) : -INFINITY;
    }

    for (int j = 0; j < n_tiles; ++j) {
        const long s0 = (long)j * kBc;
        cp_async_wait_all();
        __syncthreads(); /* K_j and w2_j are there for everyone; nobody still reads V_{j-1} */
        load_kv_tile<D>(v_s, v_bg, kv_stride, s0, sh.N);
        cp_async_commit();
        const long next_key = s0 + kBc + threadIdx.x; /* this thread's key of tile j + 1 */
        const float r_next = threadIdx.x < kBc ? load_retention(retention, retention_bg, mode, sh.G, next_key, sh.N) : 0.f;

        float s[kMTiles][kNTiles][4];
        rb.scores(s);

        /* BEGIN SOLUTION */
        /* HINT: every score becomes x = s * scale_log2 + w2 (one fmaf), w2 = w2_s[column] the log2 keep
         * weight of its key (-inf for a deleted key or one past N, so fmaf gives -inf by itself). Thread
         * (warp, lane) holds rows warp * 32 + mt * 16 + lane / 4 + rr * 8 and columns
         * nt * 8 + (lane % 4) * 2 + e of s[mt][nt][2 * rr + e], as in lesson 03. Tiles that cross the
         * causal diagonal also need -INFINITY past each row's position t (lesson 04's test). */
        const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gid = lane / 4, tig = lane % 4;
        const bool diagonal = sh.causal && s0 + kBc - 1 > w.t_first;
        int last_col[kMTiles][2]; /* each row's last visible column of this tile (< 0: none) */
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
            for (int rr = 0; rr < 2; ++rr) {
                const long t = w.offset + (w.R0 + warp * kRowsPerWarp + mt * 16 + gid + rr * 8) / w.hpg;
                last_col[mt][rr] = diagonal ? (int)max(-1L, min((long)kBc - 1, t - s0)) : kBc - 1;
            }
#pragma unroll
        for (int nt = 0; nt < kNTiles; ++nt) {
            const float2 w2 = *reinterpret_cast<const float2 *>(w2_s + nt * 8 + tig * 2); /* same for all rows */
#pragma unroll
            for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
                for (int rr = 0; rr < 2; ++rr) {
                    float &x0 = s[mt][nt][2 * rr], &x1 = s[mt][nt][2 * rr + 1];
                    x0 = fmaf(x0, scale_log2, w2.x);
                    x1 = fmaf(x1, scale_log2, w2.y);
                    if (diagonal) {
                        if (nt * 8 + tig * 2 > last_col[mt][rr]) x0 = -INFINITY;
                        if (nt * 8 + tig * 2 + 1 > last_col[mt][rr]) x1 = -INFINITY;
                    }
                }
        }
        /* END SOLUTION */
        uint32_t p[kMTiles][kNTiles][2];
        rb.softmax(s, p, 1.0f); /* the scores are in base-2 units now */

        cp_async_wait_all();
        __syncthreads(); /* V_j has landed for everyone; nobody still reads K_j or w2_j */
        if (j + 1 < n_tiles) {
            load_kv_tile<D>(k_s, k_bg, kv_stride, s0 + kBc, sh.N);
            cp_async_commit();
            if (threadIdx.x < kBc)
                w2_s[threadIdx.x] = next_key < sh.N ? keep_log2_weight(mode, threshold, r_next) : -INFINITY;
        }
        rb.accumulate(p);
    }
    /* scores were in base-2 units: m * 1 is already log2 */
    rb.store(sh, w, 1.0f, o, lse);
}

/* ---------------------------------------------------------------- block list */

/* Index of the first usable entry of list[from .. T): the list ends at a negative entry; blocks
 * past `last_block` (no key this row block may see) are skipped. T when none is left. */
__device__ __forceinline__ int next_listed(const int32_t *list, int from, int T, int last_block)
{
    /* BEGIN SOLUTION stub="return T;" */
    /* HINT: walk from `from`: a negative entry ends the list (return T); an entry <= last_block is
     * the answer; anything larger is skipped. */
    for (int n = from; n < T; ++n) {
        const int j = list[n];
        if (j < 0) return T;
        if (j <= last_block) return n;
    }
    return T;
    /* END SOLUTION */
}

template <int D>
__global__ void __launch_bounds__(kThreads, 2)
    block_sparse_attention_kernel(attn_shape sh, const int32_t *__restrict__ block_indices, int T, float scale_log2,
                                  int groups_per_chunk, const uint16_t *__restrict__ q, const uint16_t *__restrict__ k,
                                  const uint16_t *__restrict__ v, uint16_t *__restrict__ o, float *__restrict__ lse)
{
    extern __shared__ __align__(128) uint8_t smem[];
    const uint32_t q_s = smem_addr(smem), k_s = q_s + kBr * D * 2, v_s = k_s + kBc * D * 2;
    const Work w = find_work(sh, groups_per_chunk);
    const size_t kv_stride = (size_t)sh.G * D;
    const uint16_t *k_bg = k + ((size_t)w.b * sh.N * sh.G + w.g) * D;
    const uint16_t *v_bg = v + ((size_t)w.b * sh.N * sh.G + w.g) * D;

    RowBlock<D> rb;
    rb.init(q_s, k_s, v_s);
    load_q<D>(q_s, sh, w, q);

    /* BEGIN SOLUTION */
    /* HINT: the list of this block's rows is (b, qb = (R0 / hpg) / SPARSE_QUERY_BLOCK, g). The last
     * block any row may see is t_last / kBc (causal) or the last key block. Walk the list with
     * next_listed: load K of the first usable block before the loop, and while processing entry n,
     * load K of entry n_next after the middle barrier - the loop of masked_attention_kernel with
     * `j + 1` replaced by "the next listed block". Mask only the tiles that cross the end of the keys
     * or (causal) the diagonal, as lesson 04 does. */
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gid = lane / 4, tig = lane % 4;
    const int qb = (int)((w.R0 / w.hpg) / SPARSE_QUERY_BLOCK);
    const int32_t *list = block_indices + (((size_t)w.b * ((sh.M + SPARSE_QUERY_BLOCK - 1) / SPARSE_QUERY_BLOCK) + qb) * sh.G + w.g) * T;
    const int last_block = (int)((sh.causal ? w.t_last : sh.N - 1) / kBc);

    int n = next_listed(list, 0, T, last_block);
    if (n < T) load_kv_tile<D>(k_s, k_bg, kv_stride, (long)list[n] * kBc, sh.N);
    cp_async_commit();

    while (n < T) {
        const long s0 = (long)list[n] * kBc;
        const int n_next = next_listed(list, n + 1, T, last_block);
        cp_async_wait_all();
        __syncthreads(); /* K_j has landed for everyone; nobody still reads the previous V */
        load_kv_tile<D>(v_s, v_bg, kv_stride, s0, sh.N);
        cp_async_commit();

        float s[kMTiles][kNTiles][4];
        rb.scores(s);
        if (s0 + kBc > sh.N || (sh.causal && s0 + kBc - 1 > w.t_first)) {
#pragma unroll
            for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
                for (int rr = 0; rr < 2; ++rr) {
                    const long t = w.offset + (w.R0 + warp * kRowsPerWarp + mt * 16 + gid + rr * 8) / w.hpg;
                    const long last = sh.causal ? t : sh.N - 1;
#pragma unroll
                    for (int nt = 0; nt < kNTiles; ++nt)
#pragma unroll
                        for (int e = 0; e < 2; ++e)
                            if (s0 + nt * 8 + tig * 2 + e > last) s[mt][nt][2 * rr + e] = -INFINITY;
                }
        }
        uint32_t p[kMTiles][kNTiles][2];
        rb.softmax(s, p, scale_log2);

        cp_async_wait_all();
        __syncthreads(); /* V_j has landed for everyone; nobody still reads K_j */
        if (n_next < T) {
            load_kv_tile<D>(k_s, k_bg, kv_stride, (long)list[n_next] * kBc, sh.N);
            cp_async_commit();
        }
        rb.accumulate(p);
        n = n_next;
    }
    /* END SOLUTION */
    rb.store(sh, w, scale_log2, o, lse);
}

/* ---------------------------------------------------------------- host side */

int l2_groups_per_chunk(const attn_shape *shape, int D, int *groups)
{
    int dev = 0, l2_bytes = 0;
    int st = attn_cuda_status(cudaGetDevice(&dev), "cudaGetDevice");
    if (!st) st = attn_cuda_status(cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, dev), "L2 size");
    /* kv heads whose K and V fit in half of L2 together */
    *groups = (int)fmax(1.0, fmin((double)shape->G, 0.5 * l2_bytes / (4.0 * shape->N * D)));
    return st;
}

dim3 grid_of(const attn_shape *shape)
{
    const long packed_rows = (long)shape->M * (shape->H / shape->G);
    return dim3((unsigned)((packed_rows + kBr - 1) / kBr) * (unsigned)shape->G, shape->B);
}

template <int D>
int launch_masked(const attn_shape *shape, int mode, float threshold, float scale_log2, const float *retention,
                  const uint16_t *q, const uint16_t *k, const uint16_t *v, uint16_t *o, float *lse, cudaStream_t stream)
{
    const int smem_bytes = (kBr + 2 * kBc) * D * 2 + kBc * (int)sizeof(float);
    int groups = 1;
    int st = attn_cuda_status(
        cudaFuncSetAttribute(masked_attention_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes),
        "cudaFuncSetAttribute (shared memory)");
    if (!st) st = l2_groups_per_chunk(shape, D, &groups);
    if (st) return st;
    masked_attention_kernel<D><<<grid_of(shape), kThreads, smem_bytes, stream>>>(*shape, mode, threshold, scale_log2,
                                                                                 groups, retention, q, k, v, o, lse);
    return attn_cuda_launch_status("masked_attention_kernel");
}

template <int D>
int launch_block_sparse(const attn_shape *shape, const int32_t *block_indices, int T, float scale_log2, const uint16_t *q,
                        const uint16_t *k, const uint16_t *v, uint16_t *o, float *lse, cudaStream_t stream)
{
    const int smem_bytes = (kBr + 2 * kBc) * D * 2;
    int groups = 1;
    int st = attn_cuda_status(cudaFuncSetAttribute(block_sparse_attention_kernel<D>,
                                                   cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes),
                              "cudaFuncSetAttribute (shared memory)");
    if (!st) st = l2_groups_per_chunk(shape, D, &groups);
    if (st) return st;
    block_sparse_attention_kernel<D><<<grid_of(shape), kThreads, smem_bytes, stream>>>(*shape, block_indices, T, scale_log2,
                                                                                       groups, q, k, v, o, lse);
    return attn_cuda_launch_status("block_sparse_attention_kernel");
}

/* The checks both entry points share. */
int check_common(const char *fn, const attn_shape *shape, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                 const uint16_t *o, const float *lse)
{
    int st = attn_check_shape(shape);
    if (st) return st;
    if (!q || !k || !v || !o || !lse) return attn_fail(ATTN_ERR_NULL_POINTER, "%s: q, k, v, o and lse must not be NULL", fn);
    if (shape->D != 64 && shape->D != 128)
        return attn_fail(ATTN_ERR_UNSUPPORTED_D, "%s: D=%d, this kernel supports 64 and 128", fn, shape->D);
    if (((uintptr_t)q | (uintptr_t)k | (uintptr_t)v | (uintptr_t)o) % 16 != 0)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "%s: q, k, v and o must be 16-byte aligned", fn);
    const double blocks = ceil((double)shape->M * (shape->H / shape->G) / kBr) * shape->G;
    if (shape->B > 65535 || blocks > 2147483647.0)
        return attn_fail(ATTN_ERR_BAD_SHAPE, "%s: B=%d must be <= 65535 and the grid < 2^31 blocks", fn, shape->B);
    return ATTN_OK;
}

} // namespace

extern "C" int masked_attention_cuda(const attn_shape *shape, keep_mode mode, float threshold, const float *retention,
                                     const uint16_t *q, const uint16_t *k, const uint16_t *v, uint16_t *o, float *lse,
                                     cudaStream_t stream)
{
    int st = check_common("masked_attention_cuda", shape, q, k, v, o, lse);
    if (st) return st;
    if (mode != KEEP_BASELINE && mode != KEEP_SOFT && mode != KEEP_HARD)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "masked_attention_cuda: unknown keep mode %d", (int)mode);
    if (mode == KEEP_HARD && !(threshold >= 0.0f && threshold <= 1.0f))
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "masked_attention_cuda: threshold %g must lie in [0, 1]", threshold);
    if (!retention && mode != KEEP_BASELINE)
        return attn_fail(ATTN_ERR_NULL_POINTER, "masked_attention_cuda: retention must not be NULL (mode %d)", (int)mode);
    if ((uintptr_t)retention % 4 != 0)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "masked_attention_cuda: retention must be 4-byte aligned");
    const float scale_log2 = attn_softmax_scale(shape) * kLog2e;
    (void)scale_log2;

    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: once the kernel's mask step is written: launch_masked<64> or <128> by shape->D. */
    if (shape->D == 64) return launch_masked<64>(shape, mode, threshold, scale_log2, retention, q, k, v, o, lse, stream);
    return launch_masked<128>(shape, mode, threshold, scale_log2, retention, q, k, v, o, lse, stream);
    /* END SOLUTION */
}

extern "C" int block_sparse_attention_cuda(const attn_shape *shape, const int32_t *block_indices, int T,
                                           const uint16_t *q, const uint16_t *k, const uint16_t *v, uint16_t *o,
                                           float *lse, cudaStream_t stream)
{
    int st = check_common("block_sparse_attention_cuda", shape, q, k, v, o, lse);
    if (st) return st;
    if (!block_indices) return attn_fail(ATTN_ERR_NULL_POINTER, "block_sparse_attention_cuda: block_indices must not be NULL");
    if (T < 1) return attn_fail(ATTN_ERR_BAD_ARGUMENT, "block_sparse_attention_cuda: T=%d must be >= 1", T);
    if ((uintptr_t)block_indices % 4 != 0)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "block_sparse_attention_cuda: block_indices must be 4-byte aligned");
    const float scale_log2 = attn_softmax_scale(shape) * kLog2e;
    (void)scale_log2;

    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: once the kernel's list walk is written: launch_block_sparse<64> or <128> by shape->D. */
    if (shape->D == 64) return launch_block_sparse<64>(shape, block_indices, T, scale_log2, q, k, v, o, lse, stream);
    return launch_block_sparse<128>(shape, block_indices, T, scale_log2, q, k, v, o, lse, stream);
    /* END SOLUTION */
}
