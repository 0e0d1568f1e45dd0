/*
 * fused_nsa.cu - lesson 10, CUDA part: the whole NSA forward on the GPU (bf16 in, fp32 accumulation,
 * bf16 out) in three launches, and the attention-weights inspection kernels.
 *
 *   launch 1  compression   k_cmp = phi(k + pos), v_cmp = phi(v), keys and values in one launch, into the
 *                           workspace: compress_mean_kernel (memory-bound), or compress_linear_kernel (the
 *                           learned map on tensor cores, lesson 07's GEMM)
 *   launch 2  compressed    per block of packed GQA rows (the heads of one kv group at neighbouring
 *             attention     positions, lesson 04): pass 1 is flash attention over the compressed tokens
 *             and selection (o_cmp, lse_cmp); pass 2 computes the scores again, turns them into importance
 *                           with lse_cmp, maps it onto selection blocks, sums it over each list's heads and
 *                           ranks it: the top-n lists. g_cmp o_cmp goes into o, the lists to block_indices
 *                           (or the workspace). cmp_select_kernel takes every shape; cmp_select_g16_kernel
 *                           is the fast path for shared lists with H/G = 16 (the course's bar).
 *   launch 3  selected and  group-centric (the heads that read one list are the rows of one m16 tile,
 *             window        lesson 09): the keys of the listed blocks and of the window [t - w + 1, t], each
 *                           tile loaded once and fed to both softmaxes that see it (two states, two
 *                           normalisations), then o += g_slc o_slc + g_swa o_swa. slc_swa_kernel takes every
 *                           shape; slc_swa_window_kernel (sm_90) is the fast path for the bar's shape: 8
 *                           neighbouring positions share every tile any of them needs, through the copy engine.
 *
 * Why three: the lists need lse_cmp over every compressed token a position sees before any score can be
 * ranked, and the selected branch needs the lists of a whole group before its first tile; the compressed
 * tokens are read by every later position, so they are made once, before both. The README's section "The
 * launches" draws them. nsa_forward_cuda only enqueues work on the caller's stream: no allocation, no
 * synchronisation (a CUDA graph can capture it).
 */
#include <cuda_runtime.h>
#include <limits.h>
#include <math.h>

#include "attn_gpu.h"
#include "flash_tile.cuh"
#include "fused_nsa.h"
#include "nsa_tiles.cuh" /* lesson 08's permuted K tile (KTileCopy), lesson 09's copy-engine ring */
#include "ptx.cuh"

using namespace ptx;
using nsa::kBox;
using nsa::KTileCopy;
using nsa::kPair;
using nsa::kRing;

namespace {

constexpr int kWarps = 4; /* warps per block of launches 2 and 3 (general path) */
constexpr int kThreads = kWarps * 32;
constexpr int kBr = 128;                   /* packed rows of launch 2's passes: 4 warps x 32 rows */
constexpr int kBc = 64;                    /* keys, or compressed tokens, per tile */
constexpr int kRowsPerWarp = kBr / kWarps; /* 32: two m16 tiles */
constexpr int kMT = kRowsPerWarp / 16;
constexpr int kNT = kBc / 8;
constexpr int kStage = kBc + 8; /* floats per row of the general selection's staging tile (no bank conflicts) */
constexpr int kHeads = 16;      /* rows of launch 3's m16 tile: the heads that read one list */
constexpr int kPad = 8;         /* floats after each row of a warp's partial output (launch 3, general) */
constexpr float kLog2e = flash::kLog2e;
constexpr float kLn2 = flash::kLn2;

/* ---------------------------------------------------------------- the workspace (given)
 *
 * Offsets from the workspace's start, each a multiple of 256 bytes. `lists` is used only when the caller
 * passes block_indices = NULL; `scores` holds the block scores of the general selection kernel (the fast
 * path keeps its own in shared memory). g_cmp o_cmp needs no room of its own: launch 2 writes it into o,
 * and launch 3 adds the two other branches to it. */
struct Layout {
    size_t k_cmp, v_cmp; /* bf16 [B, NC, G, D] */
    size_t lists;        /* int32 [B, M, L, n] */
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
    w.lists = at, at += round_up(rows * p->n * 4);
    w.scores = at, at += round_up(rows * NB * 4);
    w.total = at;
    return w;
}

/* ---------------------------------------------------------------- helpers (given) */

__device__ __forceinline__ float bf16_lo(uint32_t u) { return __uint_as_float(u << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t u) { return __uint_as_float(u & 0xffff0000u); }
__device__ __forceinline__ float bf16_to_f32(uint16_t x) { return __uint_as_float((uint32_t)x << 16); }

/* nsa.h's index rules on the device (its inline functions are host code). */
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

/* Compressed tokens visible from position t: the c with c*d + l - 1 <= t, at most NC. */
__device__ __forceinline__ long cmp_visible(long t, int l, int d, long nc)
{
    /* BEGIN SOLUTION stub="return 0;" */
    /* HINT: none while t < l - 1; then one more every d positions: (t - (l - 1)) / d + 1, capped at NC. */
    const int u = (int)t - (l - 1); /* positions are < N < 2^31: the 32-bit division is the cheap one */
    return u < 0 ? 0 : min((long)(u / d + 1), nc);
    /* END SOLUTION */
}

/* ---------------------------------------------------------------- launch 1: compression
 *
 * Both tensors in one launch: the keys (with pos in linear mode) and the values, or the keys alone
 * (tensors = 1: nsa_weights_cuda). */
struct CmpInputs {
    const uint16_t *k, *v;     /* [B, N, G, D] */
    const uint16_t *w_k, *w_v; /* linear mode: [G, l*D, D] */
    const uint16_t *pos;       /* linear mode: [l, D], keys only */
    uint16_t *k_cmp, *v_cmp;   /* [B, NC, G, D] */
    int tensors;
};

/* Mean mode. Parallelisation: one thread per 8 output elements (16 bytes) of k_cmp, then of v_cmp, in
 * the layout's order, so that neighbouring threads read neighbouring 16-byte pieces of each key row
 * and write neighbouring pieces of the output; a grid-stride loop covers any size. No shared memory:
 * each input row is read l / d times in all, and L2 serves the repeats. */
template <int D>
__global__ void __launch_bounds__(256) compress_mean_kernel(attn_shape sh, int l, int d, long nc, CmpInputs in)
{
    /* BEGIN SOLUTION */
    /* HINT: lesson 07's mean kernel over both tensors: flat index x over 2 * B * NC * G * (D / 8) pieces;
     * the second half are the values (x - per_tensor). Piece e: c = e % (D/8), then g, then i, then b; sum
     * the l rows kv + ((b*N + i*d + r)*G + g)*D + 8c (one uint4 = 8 bf16 each, in fp32), times 1/l, 8 bf16 to
     * out + 8e. Every offset in size_t. */
    constexpr int kChunks = D / 8;
    const size_t per_tensor = (size_t)sh.B * nc * sh.G * kChunks, total = per_tensor * in.tensors;
    const size_t row = (size_t)sh.G * D; /* elements from one key to the next */
    const float inv_l = 1.0f / (float)l;
    for (size_t x = (size_t)blockIdx.x * blockDim.x + threadIdx.x; x < total; x += (size_t)gridDim.x * blockDim.x) {
        const bool values = x >= per_tensor;
        const size_t e = values ? x - per_tensor : x;
        const int c = (int)(e % kChunks);
        const int g = (int)((e / kChunks) % sh.G);
        const long i = (long)((e / ((size_t)kChunks * sh.G)) % nc);
        const size_t b = e / ((size_t)kChunks * sh.G * nc);
        const uint16_t *src = (values ? in.v : in.k) + ((b * sh.N + (size_t)i * d) * sh.G + g) * D + c * 8;
        float acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
#pragma unroll 4
        for (int r = 0; r < l; ++r) {
            const uint4 u = __ldg(reinterpret_cast<const uint4 *>(src + (size_t)r * row));
            const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
            for (int k = 0; k < 4; ++k) acc[2 * k] += bf16_lo(w[k]), acc[2 * k + 1] += bf16_hi(w[k]);
        }
        uint4 res;
        res.x = pack_bf16(acc[0] * inv_l, acc[1] * inv_l);
        res.y = pack_bf16(acc[2] * inv_l, acc[3] * inv_l);
        res.z = pack_bf16(acc[4] * inv_l, acc[5] * inv_l);
        res.w = pack_bf16(acc[6] * inv_l, acc[7] * inv_l);
        *reinterpret_cast<uint4 *>((values ? in.v_cmp : in.k_cmp) + e * 8) = res;
    }
    /* END SOLUTION */
}

/* Linear mode: out[i, :] = X_i W_g, X_i the l rows of token i's span laid end to end ([l*D], plus pos on
 * keys), W_g = w[g] ([l*D, D]): per kv head and tensor a GEMM [NC, l*D] x [l*D, D] on tensor cores
 * (lesson 07: 2 l D^2 FLOPs per token and head, compute-bound).
 * Parallelisation: one block per (64 tokens, tensor, kv head g, batch b), all in blockIdx.x; 4 warps,
 * warp w owns tokens 16w .. 16w + 15 and all D outputs. The reduction over l*D runs in steps of 64:
 * shared memory holds two X tiles [64 tokens][64] and two W tiles [64][D] (double buffered, swizzled).
 * W arrives by cp.async; X goes through registers, because pos is added on the way (x + pos rounded to
 * bf16 once, what a tensor-core map reads), its loads issued before a step's mmas and stored after. */
constexpr int kLinTokens = 64; /* tokens per block */
constexpr int kLinK = 64;      /* reduction step */
constexpr int kLinABytes = kLinTokens * kLinK * 2;

template <int D>
__global__ void __launch_bounds__(kThreads) compress_linear_kernel(attn_shape sh, int l, int d, long nc, CmpInputs in)
{
    constexpr int kDTiles = D / 8;
    constexpr int kBBytes = kLinK * D * 2;
    extern __shared__ __align__(128) uint8_t smem[];
    const uint32_t a_s = smem_addr(smem), b_s = a_s + 2 * kLinABytes; /* [2][64][64], [2][64][D] */

    /* BEGIN SOLUTION */
    /* HINT: lesson 07's compress_linear_kernel, with the block's (tile, tensor, g, b) unpacked from blockIdx.x
     * (tile fastest, then the tensor: 0 keys with w_k and pos, 1 values with w_v and no pos). Thread tid stages
     * 16-byte piece tid % 8 of X rows tid / 8 + 16 it (it = 0..3), zeros for tokens >= NC; W rows by cp.async;
     * loop: wait + barrier, issue step s+1's loads, mma on step s (X like Q, W like V with ldmatrix.trans), store
     * step s+1's X. Epilogue: rows gid, gid + 8 of the warp's 16 tokens as bf16 pairs. */
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gid = lane / 4, tig = lane % 4;
    const long tiles = (nc + kLinTokens - 1) / kLinTokens;
    long x = blockIdx.x;
    const long i0 = (x % tiles) * kLinTokens;
    x /= tiles;
    const bool values = (int)(x % in.tensors) == 1;
    x /= in.tensors;
    const int g = (int)(x % sh.G);
    const size_t b = (size_t)(x / sh.G);
    const uint16_t *kv = values ? in.v : in.k, *w = values ? in.w_v : in.w_k, *pos = values ? nullptr : in.pos;
    uint16_t *out = values ? in.v_cmp : in.k_cmp;
    const size_t row = (size_t)sh.G * D;
    const uint16_t *kv_bg = kv + (b * sh.N * sh.G + g) * D;
    const uint16_t *w_g = w + (size_t)g * l * D * D;
    const int n_steps = l * D / kLinK;

    /* this thread's X pieces: rows xr + 16 it, piece xc */
    const int xr = threadIdx.x / 8, xc = threadIdx.x % 8;
    uint4 x_regs[4], pos_reg = make_uint4(0u, 0u, 0u, 0u);
    auto load_x = [&](int s) {
        const int k0 = s * kLinK, r = k0 / D, c0 = k0 % D + xc * 8;
#pragma unroll
        for (int it = 0; it < 4; ++it) {
            const long i = i0 + xr + 16 * it;
            x_regs[it] = i < nc ? __ldg(reinterpret_cast<const uint4 *>(kv_bg + ((size_t)i * d + r) * row + c0))
                                : make_uint4(0u, 0u, 0u, 0u);
        }
        if (pos) pos_reg = __ldg(reinterpret_cast<const uint4 *>(pos + (size_t)r * D + c0));
    };
    auto store_x = [&](uint32_t dst) {
        const uint32_t pw[4] = {pos_reg.x, pos_reg.y, pos_reg.z, pos_reg.w};
#pragma unroll
        for (int it = 0; it < 4; ++it) {
            uint32_t xw[4] = {x_regs[it].x, x_regs[it].y, x_regs[it].z, x_regs[it].w};
            if (pos) /* keys: x + pos in fp32, rounded once to bf16 */
#pragma unroll
                for (int k = 0; k < 4; ++k)
                    xw[k] = pack_bf16(bf16_lo(xw[k]) + bf16_lo(pw[k]), bf16_hi(xw[k]) + bf16_hi(pw[k]));
            const uint32_t addr = dst + swizzle<kLinK>(xr + 16 * it, xc);
            asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "r"(xw[0]), "r"(xw[1]), "r"(xw[2]),
                         "r"(xw[3]));
        }
    };
    auto load_w = [&](uint32_t dst, int s) {
        constexpr int kChunks = D / 8, kRowStep = kThreads / kChunks;
        const int r0 = threadIdx.x / kChunks, c = threadIdx.x % kChunks;
        const uint16_t *src = w_g + ((size_t)s * kLinK + r0) * D + c * 8;
#pragma unroll
        for (int it = 0; it < kLinK / kRowStep; ++it)
            cp_async_16(dst + swizzle<D>(r0 + it * kRowStep, c), src + (size_t)it * kRowStep * D, true);
    };

    float acc[kDTiles][4];
#pragma unroll
    for (int nt = 0; nt < kDTiles; ++nt) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.f;
    uint32_t a_addr[4], b_addr[4];
#pragma unroll
    for (int c = 0; c < 4; ++c) {
        a_addr[c] = (warp * 16 + lane % 16) * (kLinK * 2) + (((2 * c + lane / 16) ^ (lane % 8)) * 16);
        b_addr[c] = (lane % 8 + ((lane / 8) % 2) * 8) * (D * 2) + (((2 * c + lane / 16) ^ (lane % 8)) * 16);
    }

    load_x(0);
    store_x(a_s);
    load_w(b_s, 0);
    cp_async_commit();
    for (int s = 0; s < n_steps; ++s) {
        const uint32_t a_cur = a_s + (s & 1) * kLinABytes, b_cur = b_s + (s & 1) * kBBytes;
        const uint32_t a_next = a_s + ((s + 1) & 1) * kLinABytes, b_next = b_s + ((s + 1) & 1) * kBBytes;
        const bool more = s + 1 < n_steps;
        cp_async_wait_all();
        __syncthreads(); /* step s's X and W are in place for everyone; nobody still reads step s - 1's */
        if (more) {
            load_w(b_next, s + 1);
            cp_async_commit();
            load_x(s + 1);
        }
#pragma unroll
        for (int kk = 0; kk < kLinK / 16; ++kk) {
            uint32_t a[4];
            ldmatrix_x4(a, a_cur + a_addr[kk]);
#pragma unroll
            for (int dp = 0; dp < D / 16; ++dp) {
                uint32_t bw[4];
                ldmatrix_x4_trans(bw, b_cur + b_addr[dp % 4] + kk * 16 * (D * 2) + (dp / 4) * 128);
                mma_bf16(acc[2 * dp], a, bw[0], bw[1]);
                mma_bf16(acc[2 * dp + 1], a, bw[2], bw[3]);
            }
        }
        if (more) store_x(a_next);
    }

#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
        const long i = i0 + warp * 16 + gid + rr * 8;
        if (i >= nc) continue;
        uint16_t *o_row = out + ((b * nc + i) * sh.G + g) * D;
#pragma unroll
        for (int nt = 0; nt < kDTiles; ++nt)
            *reinterpret_cast<uint32_t *>(o_row + nt * 8 + tig * 2) = pack_bf16(acc[nt][2 * rr], acc[nt][2 * rr + 1]);
    }
    /* END SOLUTION */
}

/* ---------------------------------------------------------------- launch 2: compressed attention and selection
 *
 * A block owns packed rows R0 .. R_end - 1 of kv group g in batch b, lesson 04's R = i * hpg + hh (query i,
 * head g * hpg + hh): the hpg heads of a group at one position are neighbours, and a block holds whole
 * lists (all the rows that share one: hpg rows with shared lists, one per head otherwise). Its passes work
 * on chunks of 128 rows (one chunk unless a list has more than 128 heads):
 *   pass 1  flash attention over the compressed tokens (cmp_attention): o_cmp, gated, into o, lse_cmp;
 *           lse_cmp stays in registers, in the lanes that hold the rows
 *   pass 2  the same scores again, p_cmp = 2^(s scale log2(e) - lse_cmp log2(e)), onto the selection
 *           blocks and summed over each list's heads: the block scores
 * then a warp per list ranks its scores (rank_list). */
struct CmpArgs {
    attn_shape sh;
    attn_nsa_params p;
    long nc, nb;
    float scale_log2;
    int lists_per_block; /* general kernel: the lists one block owns */
    int q_region;        /* fast path: bytes of shared memory before the K/V tiles (Q, then the score rows) */
    const uint16_t *q, *k_cmp, *v_cmp;
    const float *g_cmp;
    uint16_t *o;     /* receives g_cmp o_cmp */
    float *lse_cmp;  /* NULL: not returned */
    float *scores;   /* general kernel: score rows [B, M, L, NB] (workspace) */
    int32_t *lists;  /* [B, M, L, n] */
};

/* What a block of launch 2 owns: packed rows [R0, R_end) of (b, g), whole lists. Packed rows and positions
 * in 32 bits (the host checks that M H/G fits): the kernel is short of registers. */
struct CmpBlock {
    int b, g, hpg;
    int R0, R_end;
    int offset;      /* N - M: query i sits at position offset + i */
    size_t row_base; /* (b, i = 0, head g hpg) as a row of q, o and the gates [B M H] */
    __device__ __forceinline__ int pos(int R) const { return offset + R / hpg; }
    /* packed row R as a row of q, o and the gates */
    __device__ __forceinline__ size_t row(int H, int R) const
    {
        return row_base + (size_t)(R / hpg) * H + (size_t)(R % hpg);
    }
};

/* s = -inf where compressed token s0 + column is not visible from the row's position (its span ends
 * after t): token * d + l - 1 > t, for the warp's rows R = row0 + 16 mt + gid + 8 rr (rows past R_end: the
 * last row's position). In 32 bits: the host checks that the ends fit. */
__device__ __forceinline__ void mask_cmp(float (&s)[kMT][kNT][4], int s0, const CmpBlock &w, int row0, int R_end,
                                         int l, int d)
{
    /* BEGIN SOLUTION */
    /* HINT: lane (gid, tig) holds rows (mt, rr) and columns nt * 8 + 2 tig + e of each n8 tile; the entry is
     * s[mt][nt][2 rr + e]; the row's position t = w.pos(R), once per row. */
    const int gid = (threadIdx.x % 32) / 4, tig = threadIdx.x % 4;
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
        for (int rr = 0; rr < 2; ++rr) {
            const int R = row0 + mt * 16 + gid + rr * 8, t = w.pos(R < R_end ? R : R_end - 1);
#pragma unroll
            for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    const int token = s0 + nt * 8 + tig * 2 + e;
                    if (token * d + l - 1 > t) s[mt][nt][2 * rr + e] = -INFINITY;
                }
        }
    /* END SOLUTION */
}

/* Pass 1 for the block's rows [Rc, Rc_end) (at most 128): lesson 07's flash loop over the compressed tokens
 * of (b, g), with the tile step of common/flash_tile.cuh. Warp w owns rows 32 w .. 32 w + 31 of the chunk
 * (two m16 tiles); shared memory: Q [128][D] at q_s, one K and one V tile [64][D] at kv_s (cp.async, V_j
 * during S = Q K_j^T, K_{j+1} during P V_j). Writes o = g_cmp o_cmp (bf16) and lse_cmp (when asked) of every
 * valid row; lse2[mt][rr] gets the lane's rows' lse in base-2 units of the scaled scores (m scale_log2 +
 * log2 l; -inf for a row that sees no token), for pass 2. */
template <int D>
__device__ __forceinline__ void cmp_attention(const CmpArgs &a, const CmpBlock &w, int Rc, int Rc_end, uint32_t q_s,
                                              uint32_t kv_s, float (&lse2)[kMT][2])
{
    const attn_shape &sh = a.sh;
    const int lane = threadIdx.x % 32, gid = lane / 4, tig = lane % 4;
    const int warp_row0 = (threadIdx.x / 32) * kRowsPerWarp; /* the warp's first row of the chunk */
    const uint32_t k_s = kv_s, v_s = kv_s + kBc * D * 2;
    const size_t stride = (size_t)sh.G * D;
    const int l = a.p.l, d = a.p.d;
    /* BEGIN SOLUTION */
    /* HINT: lesson 07's cmp_attention_kernel on these rows, then its epilogue by hand. (1) The compressed K/V of
     * (b, g) start at ((b * NC) * G + g) * D: batch b is NC tokens further, not N. (2) Tiles: ceil(cmp_visible(t
     * of the last row) / 64), possibly 0 (then load no K at all); mask_cmp on a tile that reaches past what the
     * first row sees, with each lane row's t (rows past Rc_end: the last row's t). (3) After the loop:
     * cp_async_wait_all (with no tile the Q copy is still in flight), acc.sum_rows(), then per lane row lse2, the
     * gate g_cmp[w.row(H, R)] (0 past the end), acc.rescale(mt, rr, l > 0 ? gate / l : 0) (a row without tokens
     * gets o_cmp = 0, never 0 / 0), lse_cmp[(b H + h) M + i] = lse2 ln 2 from lane tig = 0 when asked; then
     * flash::store_o into o. */
    const uint16_t *k_bg = a.k_cmp + ((size_t)w.b * a.nc * sh.G + w.g) * D;
    const uint16_t *v_bg = a.v_cmp + ((size_t)w.b * a.nc * sh.G + w.g) * D;
    const long vis_first = cmp_visible(w.pos(Rc), l, d, a.nc), vis_last = cmp_visible(w.pos(Rc_end - 1), l, d, a.nc);
    const int n_tiles = (int)((vis_last + kBc - 1) / kBc);
    flash::load_rows<D, kBr, kThreads>(
        q_s, Rc, [&](long R) { return flash::Row<const uint16_t>{a.q + w.row(sh.H, (int)R) * D, R < Rc_end}; }, a.q);
    if (n_tiles > 0) flash::load_tile<D, kBc, kThreads>(k_s, k_bg, stride, 0, a.nc); /* no token to see: read none */
    cp_async_commit();
    /* compact operands (two registers each): the kernel holds O, S and what pass 2 needs within 255 */
    const flash::CompactOperand<D> q_op = flash::CompactOperand<D>::a(q_s, warp_row0),
                                   k_op = flash::CompactOperand<D>::k(k_s, 0), v_op = flash::CompactOperand<D>::v(v_s, 0);
    flash::OnlineSoftmax<D, kMT> acc; /* O, m, l of this thread's rows */

    for (int j = 0; j < n_tiles; ++j) {
        const long s0 = (long)j * kBc;
        cp_async_wait_all();
        __syncthreads(); /* K_j (and Q) have landed for everyone; nobody still reads V_{j-1} */
        flash::load_tile<D, kBc, kThreads>(v_s, v_bg, stride, s0, a.nc);
        cp_async_commit();

        float s[kMT][kNT][4];
        flash::scores(s, q_op, k_op);
        if (s0 + kBc > vis_first) mask_cmp(s, (int)s0, w, Rc + warp_row0, Rc_end, l, d);
        uint32_t p[kMT][kNT][2];
        acc.update(s, p, a.scale_log2);

        cp_async_wait_all();
        __syncthreads(); /* V_j has landed for everyone; nobody still reads K_j */
        if (j + 1 < n_tiles) {
            flash::load_tile<D, kBc, kThreads>(k_s, k_bg, stride, s0 + kBc, a.nc);
            cp_async_commit();
        }
        acc.accumulate(p, v_op);
    }
    cp_async_wait_all(); /* with no tile the Q copy is still in flight: let it land */
    acc.sum_rows();
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
        for (int rr = 0; rr < 2; ++rr) {
            const int R = Rc + warp_row0 + mt * 16 + gid + rr * 8;
            const bool valid = R < Rc_end;
            const float l_row = acc.l[mt][rr];
            lse2[mt][rr] = l_row > 0.f ? acc.m[mt][rr] * a.scale_log2 + log2f(l_row) : -INFINITY;
            const float gate = valid ? a.g_cmp[w.row(sh.H, R)] : 0.f;
            acc.rescale(mt, rr, l_row > 0.f ? gate / l_row : 0.f); /* no token seen: o_cmp = 0, not 0 / 0 */
            if (valid && a.lse_cmp && tig == 0)
                a.lse_cmp[((size_t)w.b * sh.H + (size_t)w.g * w.hpg + R % w.hpg) * sh.M + R / w.hpg] = lse2[mt][rr] * kLn2;
        }
    flash::store_o<D, kMT>(acc.o, Rc + warp_row0,
                           [&](long R) { return flash::Row<uint16_t>{a.o + w.row(sh.H, (int)R) * D, R < Rc_end}; });
    /* END SOLUTION */
}

/* Offer candidate (v, j) to a lane's best-first list (v: score bits, larger is better; among equal v the
 * entry that came first stays first, so a lane that offers its blocks in ascending order keeps ties
 * towards the lower index). Unrolled compare-and-swaps: the arrays stay in registers. (Lesson 08.) */
template <int K>
__device__ __forceinline__ void offer(int (&v)[K], int (&j)[K], int cv, int cj)
{
#pragma unroll
    for (int k = 0; k < K; ++k)
        if (cv > v[k]) {
            const int tv = v[k], tj = j[k];
            v[k] = cv, j[k] = cj;
            cv = tv, cj = tj;
        }
}

/* One warp ranks one list (lesson 08): the score row `row` (shared or global memory, candidates 0 .. cur)
 * becomes the n ascending block indices at `out` (every candidate and -1 padding when there are at most
 * n). The row is overwritten: chosen blocks are marked by a score of -inf. */
__device__ __forceinline__ void rank_list(float *row, int cur, int n, int32_t *out, int lane)
{
    /* BEGIN SOLUTION */
    /* HINT: cur + 1 <= n: write 0 .. cur, then -1. Otherwise mark the forced blocks (0, cur - 1, cur), then
     * n - 3 rounds of a warp argmax over the unmarked blocks (the largest score; among equal scores the lowest
     * index), each marking its winner; then a ballot over the marked blocks, in order. Lesson 08's rank_list. */
    const int cand = cur + 1;
    if (cand <= n) { /* every candidate, then -1 */
        for (int e = lane; e < n; e += 32) out[e] = e < cand ? e : -1;
        return;
    }
    if (lane == 0) row[0] = row[cur - 1] = row[cur] = -INFINITY; /* cand > n >= 3: three different blocks */
    __syncwarp();
    /* Scores are sums of probabilities, >= +0, and the bits of non-negative floats, read as int, order like
     * the floats; -inf (chosen) reads as a negative int. Each lane keeps its kKeep best unchosen blocks, best
     * first (-1: none), from one scan of its blocks j = lane, lane + 32, ... (ascending, so ties keep the
     * lower index). A round is two warp reductions over the lanes' first entries; only the winner's lane
     * moves on to its next entry, and scans its blocks again once its list is empty. */
    constexpr int kKeep = 4;
    int best[kKeep], best_j[kKeep];
    auto scan = [&]() {
#pragma unroll
        for (int k = 0; k < kKeep; ++k) best[k] = -1, best_j[k] = INT_MAX;
        for (int j = lane; j <= cur; j += 32) {
            const int v = __float_as_int(row[j]);
            if (v > best[kKeep - 1]) offer(best, best_j, v, j);
        }
    };
    scan();
    for (int pick = 3; pick < n; ++pick) {
        const int top = __reduce_max_sync(0xffffffffu, best[0]);
        const int j_top = (int)__reduce_min_sync(0xffffffffu, best[0] == top ? (unsigned)best_j[0] : 0xffffffffu);
        if (lane == j_top % 32) { /* the winner's lane: mark it, move on to its next entry */
            row[j_top] = -INFINITY;
#pragma unroll
            for (int k = 0; k + 1 < kKeep; ++k) best[k] = best[k + 1], best_j[k] = best_j[k + 1];
            best[kKeep - 1] = -1, best_j[kKeep - 1] = INT_MAX;
            if (best[0] < 0) scan(); /* its list is used up: its next best blocks, if it has any */
        }
    }
    __syncwarp();
    int base = 0; /* the marked blocks in order are the ascending list */
    for (int j0 = 0; j0 <= cur; j0 += 32) {
        const int j = j0 + lane;
        const bool chosen = j <= cur && row[j] == -INFINITY;
        const unsigned mask = __ballot_sync(0xffffffffu, chosen);
        if (chosen) out[base + __popc(mask & ((1u << lane) - 1))] = (int32_t)j;
        base += __popc(mask);
    }
    /* END SOLUTION */
}

/* The general kernel: every shape. Block x of the grid is (b, chunk of lists, g), the chunks of one (b, g)
 * from last to first (the last positions see the most tokens). Shared memory: Q [128][D] (pass 1), then
 * the staging tile [128][72] fp32 (pass 2: each row's p_cmp of one tile of 64 tokens), in the same bytes;
 * one K and one V tile (pass 1) or two K tiles (pass 2). The block scores are in device memory (a.scores,
 * one row of NB per list): a block of 128 single-head lists would need 128 NB floats, more than shared
 * memory holds at long contexts.
 * Pass 2 sums block j's share in ONE order whatever the tiles: for each token c overlapping j, in
 * increasing c, score += (the list's p_cmp of c summed over its rows in row order) * overlap(c, j) / d,
 * one addition at a time into the stored score. So blocks with equal inputs get equal scores (exact ties
 * stay ties) however they lie across tiles, for any l, d and l'. */
template <int D>
__global__ void __launch_bounds__(kThreads, 2) cmp_select_kernel(CmpArgs a)
{
    constexpr int kQBytes = kBr * D * 2, kStageBytes = kBr * kStage * 4;
    constexpr int kQRegion = kQBytes > kStageBytes ? kQBytes : kStageBytes;
    extern __shared__ __align__(128) uint8_t smem[];
    const uint32_t q_s = smem_addr(smem), kv_s = q_s + kQRegion;
    float *stage = reinterpret_cast<float *>(smem); /* pass 2: [128][kStage], over Q */
    const attn_shape &sh = a.sh;
    const attn_nsa_params &p = a.p;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gid = lane / 4, tig = lane % 4;
    const int warp_row0 = warp * kRowsPerWarp;

    /* BEGIN SOLUTION */
    /* HINT: 1. the block: rows_per_list = shared ? H/G : 1, rows per block = lists_per_block * rows_per_list;
     *    blockIdx.x = (b * chunks + (chunks - 1 - chunk)) * G + g. Zero the score rows [0, cur] of the lists
     *    that rank (cur + 1 > n).
     * 2. per chunk of 128 rows: cmp_attention (pass 1); then pass 2: wait + barrier, Q fragments into registers
     *    (flash::load_q_fragments), the first K tile, barrier (Q's bytes become the staging). Per tile: wait +
     *    barrier, prefetch the next K tile, flash::scores, p = 2^(s scale_log2 - lse2) for tokens < the row's
     *    visible count (else 0) as float2 into the staging, barrier, then a thread per (list, block j the
     *    tile's tokens reach, j <= cur): the sum above into a.scores. A barrier after the chunk.
     * 3. barrier, then a warp per list: rank_list on its row, into a.lists. */
    const int hpg = sh.H / sh.G, share = p.heads_share_selection, L = share ? sh.G : sh.H;
    const int rows_per_list = share ? hpg : 1;
    const int rows_per_block = a.lists_per_block * rows_per_list, packed_rows = sh.M * hpg;
    const int chunks = (packed_rows + rows_per_block - 1) / rows_per_block;
    CmpBlock w;
    w.g = (int)(blockIdx.x % sh.G);
    const int bc = (int)(blockIdx.x / sh.G);
    w.b = bc / chunks;
    w.hpg = hpg;
    w.R0 = (chunks - 1 - bc % chunks) * rows_per_block;
    w.R_end = min(w.R0 + rows_per_block, packed_rows);
    w.offset = sh.N - sh.M;
    w.row_base = (size_t)w.b * sh.M * sh.H + (size_t)w.g * hpg;
    const int n_lists = (int)((w.R_end - w.R0) / rows_per_list);
    const size_t stride = (size_t)sh.G * D;
    const uint16_t *k_bg = a.k_cmp + ((size_t)w.b * a.nc * sh.G + w.g) * D;

    /* the score rows of the lists that rank start at 0 (candidates 0 .. cur) */
    for (int x = warp; x < n_lists; x += kWarps) {
        const int Rx = w.R0 + x * rows_per_list, i = Rx / hpg, cur = (w.offset + i) / p.l_sel;
        if (cur + 1 <= p.n) continue;
        const int who = share ? w.g : w.g * hpg + (int)(Rx % hpg);
        float *row = a.scores + (((size_t)w.b * sh.M + i) * L + who) * a.nb;
        for (int j = lane; j <= cur; j += 32) row[j] = 0.f;
    }

    const int rpl = share ? min(hpg, kBr) : 1; /* rows of one list inside a chunk */
    for (int Rc = w.R0; Rc < w.R_end; Rc += kBr) {
        const int Rc_end = min(Rc + kBr, w.R_end);
        float lse2[kMT][2];
        cmp_attention<D>(a, w, Rc, Rc_end, q_s, kv_s, lse2);

        /* pass 2 */
        int vis[kMT][2]; /* tokens each of the lane's rows sees (0 past the end) */
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
            for (int rr = 0; rr < 2; ++rr) {
                const int R = Rc + warp_row0 + mt * 16 + gid + rr * 8;
                vis[mt][rr] = R < Rc_end ? (int)cmp_visible(w.pos(R), p.l, p.d, a.nc) : 0;
            }
        const int n_tiles = (int)((cmp_visible(w.pos(Rc_end - 1), p.l, p.d, a.nc) + kBc - 1) / kBc);
        const int chunk_rows = Rc_end - Rc, n_cl = (chunk_rows + rpl - 1) / rpl;
        cp_async_wait_all();
        __syncthreads(); /* Q is in place for everyone; nobody reads pass 1's K and V any more */
        uint32_t qa[kMT][D / 16][4];
        flash::load_q_fragments(qa, flash::Operand<D>::a(q_s, warp_row0));
        if (n_tiles > 0) flash::load_tile<D, kBc, kThreads>(kv_s, k_bg, stride, 0, a.nc);
        cp_async_commit();
        __syncthreads(); /* every warp holds its Q: the bytes become the staging */

        for (int m = 0; m < n_tiles; ++m) {
            const long T0 = (long)m * kBc;
            const uint32_t k_buf = kv_s + (m % 2) * kBc * D * 2;
            cp_async_wait_all();
            __syncthreads(); /* tile m has landed; nobody reads tile m - 1 or the staging any more */
            if (m + 1 < n_tiles) {
                flash::load_tile<D, kBc, kThreads>(kv_s + ((m + 1) % 2) * kBc * D * 2, k_bg, stride, T0 + kBc, a.nc);
                cp_async_commit();
            }
            float s[kMT][kNT][4];
            flash::scores(s, qa, flash::Operand<D>::k(k_buf, 0));
#pragma unroll
            for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
                for (int rr = 0; rr < 2; ++rr) {
                    const int lim = vis[mt][rr] - (int)T0; /* the row sees columns < lim */
                    float *dst = stage + (warp_row0 + mt * 16 + gid + rr * 8) * kStage + tig * 2;
#pragma unroll
                    for (int nt = 0; nt < kNT; ++nt) {
                        const int col = nt * 8 + tig * 2;
                        const float p0 = fast_exp2(fmaf(s[mt][nt][2 * rr], a.scale_log2, -lse2[mt][rr]));
                        const float p1 = fast_exp2(fmaf(s[mt][nt][2 * rr + 1], a.scale_log2, -lse2[mt][rr]));
                        *reinterpret_cast<float2 *>(dst + nt * 8) = make_float2(col < lim ? p0 : 0.f, col + 1 < lim ? p1 : 0.f);
                    }
                }
            __syncthreads(); /* the staging tile is complete */

            /* block j's share of this tile's tokens, for each list x of the chunk */
            const long j_lo = T0 * p.d / p.l_sel, j_hi = ((T0 + kBc - 1) * p.d + p.l - 1) / p.l_sel;
            const int n_jt = (int)(j_hi - j_lo + 1);
            for (int e = threadIdx.x; e < n_cl * n_jt; e += kThreads) {
                const int x = e / n_jt;
                const long j = j_lo + e % n_jt;
                const int Rx = Rc + x * rpl, i = Rx / hpg, t = w.offset + i;
                const long cur = t / p.l_sel;
                if (cur + 1 <= p.n || j > cur) continue; /* no ranking, or not a candidate */
                long c_lo = j * p.l_sel - p.l + 1; /* the first token whose span reaches block j */
                c_lo = c_lo <= 0 ? 0 : (c_lo + p.d - 1) / p.d;
                c_lo = max(c_lo, T0);
                const long c_hi = min(min((j * p.l_sel + p.l_sel - 1) / p.d, T0 + kBc - 1),
                                      cmp_visible(t, p.l, p.d, a.nc) - 1);
                if (c_lo > c_hi) continue;
                const int who = share ? w.g : w.g * hpg + (int)(Rx % hpg);
                float *sc = a.scores + (((size_t)w.b * sh.M + i) * L + who) * a.nb + j;
                const int r0 = x * rpl, r1 = min(r0 + rpl, chunk_rows);
                float acc = *sc;
                for (long c = c_lo; c <= c_hi; ++c) {
                    float p_list = 0.f; /* the list's p_cmp of token c: its rows, in order */
                    for (int r = r0; r < r1; ++r) p_list += stage[r * kStage + (int)(c - T0)];
                    acc += p_list * (float)(overlap(c, j, p) / p.d);
                }
                *sc = acc;
            }
        }
        __syncthreads(); /* the next chunk's Q overwrites the staging */
    }

    for (int x = warp; x < n_lists; x += kWarps) {
        const int Rx = w.R0 + x * rows_per_list, i = Rx / hpg;
        const int who = share ? w.g : w.g * hpg + Rx % hpg;
        const size_t list = ((size_t)w.b * sh.M + i) * L + who;
        rank_list(a.scores + list * a.nb, (w.offset + i) / p.l_sel, p.n, a.lists + list * p.n, lane);
    }
    /* END SOLUTION */
}

/* ---------------------------------------------------------------- launch 2, fast path (H/G = 16, shared lists)
 *
 * With 16 heads per group the heads of one position are exactly the rows of one m16 tile, so a block of
 * 128 rows is 8 positions, 2 per warp, and pass 2 needs no staging (lesson 08's select_g16_kernel): the K
 * tile is stored permuted so that lane tig's columns are 16 consecutive tokens, the lane adds its two
 * rows' (heads gid and gid + 8) probabilities, maps them to its blocks in registers (lane_block_sums), and
 * a reduce-scatter of shuffles over the 8 lanes of one tig leaves each lane finished block scores of its
 * position, which it adds to the warp's own score rows in shared memory. Each warp owns its two lists from
 * the first tile to the ranking: no barrier but the K pipeline's. For the block ratios r = l / d in {1, 2}
 * and bs = l' / d in {1, 4} (mean-pool and the paper's), where the score rows fit in shared memory. */

/* The K tile is stored permuted (lesson 08's KTileCopy, common/nsa_tiles.cuh: smem row c holds token
 * token_of_row(c)), so that lane tig's columns are the 16 consecutive tokens 16 tig .. 16 tig + 15. */
static_assert(nsa::kKTile == kBc, "KTileCopy's tiles are launch 2's K tiles");

/* The probabilities 2^(s scale_log2 - lse2) of the lane's 16 tokens in one row (rr) of an m16 tile, pv[x] =
 * token 16 tig + x of the tile (the permuted tile); only tokens below the row's visible count are kept. */
__device__ __forceinline__ void row_probs(const float (&s)[kNT][4], int rr, int T0, int vis, float lse2,
                                          float scale_log2, int lane, float (&pv)[16])
{
    /* BEGIN SOLUTION */
    /* HINT: token x = 2 nt + e of the lane is s[nt][2 rr + e]; it is visible when T0 + 16 tig + x < vis. The
     * common case (T0 + 64 <= vis) needs no compare. */
    const bool all = T0 + kBc <= vis;
    const int lim = min(max(vis - T0 - 16 * (lane % 4), 0), 16);
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            const int x = 2 * nt + e;
            const float px = fast_exp2(fmaf(s[nt][2 * rr + e], scale_log2, -lse2));
            pv[x] = all || x < lim ? px : 0.f;
        }
    /* END SOLUTION */
}

/* The lane's 16 probabilities pv (a sum of rows that share the tokens) to its 16 / BS block sums, ADDED to
 * blk (lesson 08's lane_block_sums). Every lane of the warp must call it (it shuffles). carry holds the p of
 * the r - 1 tokens before the tile (for tig 0) and is updated for the next tile. Unit c (d keys) receives the
 * r tokens ending at c; block b holds units b BS .. b BS + BS - 1; every block gets the same order of
 * operations, so exact ties stay exact. */
template <int R, int BS>
__device__ __forceinline__ void lane_block_sums(const float (&pv)[16], float (&carry)[R > 1 ? R - 1 : 1], int lane,
                                                float (&blk)[16 / BS])
{
    /* BEGIN SOLUTION */
    /* HINT: the r - 1 tokens before the lane's first from lane tig - 1 by __shfl_sync (tig 0: carry; every lane
     * passes its last ones on: the next tile's carry). Token x counts in w(x) = min(x + r - 1, c1) - max(x, c0)
     * + 1 of block [c0, c1]'s units: add the tokens of equal weight first, then each weight class with one FMA. */
    const int tig = lane % 4;
    float before[R > 1 ? R - 1 : 1];
#pragma unroll
    for (int x = 1; x < R; ++x) {
        const float left = __shfl_sync(0xffffffffu, pv[16 - x], (lane & ~3) | ((tig + 3) & 3));
        before[x - 1] = tig ? left : carry[x - 1];
        carry[x - 1] = left;
    }
#pragma unroll
    for (int b = 0; b < 16 / BS; ++b) {
        const int c0 = b * BS, c1 = b * BS + BS - 1;
        float acc = 0.f;
        bool have = false;
#pragma unroll
        for (int w = 1; w <= R; ++w) {
            float part = 0.f;
            bool any = false;
#pragma unroll
            for (int x = c0 - R + 1; x <= c1; ++x)
                if (min(x + R - 1, c1) - max(x, c0) + 1 == w) {
                    const float v = x >= 0 ? pv[x] : before[-x - 1];
                    part = any ? part + v : v;
                    any = true;
                }
            if (any) {
                acc = !have ? (w == 1 ? part : (float)w * part) : w == 1 ? acc + part : fmaf((float)w, part, acc);
                have = true;
            }
        }
        blk[b] += acc;
    }
    /* END SOLUTION */
}

template <int D, int R, int BS>
__global__ void __launch_bounds__(kThreads, 2) cmp_select_g16_kernel(CmpArgs a)
{
    constexpr int kV = 16 / BS;                 /* block sums per lane per row, before the reduction */
    constexpr int kKeep = kV >= 8 ? kV / 8 : 1; /* finished block scores per lane after it */
    extern __shared__ __align__(128) uint8_t smem[];
    const uint32_t q_s = smem_addr(smem), kv_s = q_s + a.q_region;
    float *sc = reinterpret_cast<float *>(smem); /* [8 lists][NB] over Q, once Q is in registers */
    const attn_shape &sh = a.sh;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, tig = lane % 4;

    /* BEGIN SOLUTION */
    /* HINT: optional, after cmp_select_kernel works: blockIdx.x = (b * chunks + (chunks - 1 - chunk)) * G + g
     * with 8 positions (128 rows) per chunk; cmp_attention for the block's rows; then lesson 08's
     * select_g16_kernel loop on the permuted K tiles (KTileCopy): per m16 tile (a position) row_probs of rows 0
     * and 1 added, lane_block_sums, the reduce-scatter over lane masks 16, 8, 4, += into the warp's score row;
     * rank_list per position. */
    const int packed_rows = sh.M * 16, chunks = (packed_rows + kBr - 1) / kBr;
    CmpBlock w;
    w.g = (int)(blockIdx.x % sh.G);
    const int bc = (int)(blockIdx.x / sh.G);
    w.b = bc / chunks;
    w.hpg = 16;
    w.R0 = (chunks - 1 - bc % chunks) * kBr;
    w.R_end = min(w.R0 + kBr, packed_rows);
    w.offset = sh.N - sh.M;
    w.row_base = (size_t)w.b * sh.M * sh.H + (size_t)w.g * 16;
    float lse2[kMT][2];
    cmp_attention<D>(a, w, w.R0, w.R_end, q_s, kv_s, lse2);

    /* pass 2: m16 tile mt of this warp is position pos[mt]; its rows gid and gid + 8 are heads gid and gid + 8 */
    const size_t stride = (size_t)sh.G * D;
    const uint16_t *k_bg = a.k_cmp + ((size_t)w.b * a.nc * sh.G + w.g) * D;
    int pos[kMT], vis[kMT];
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt) {
        const int row0 = w.R0 + warp * 32 + mt * 16;
        pos[mt] = row0 / 16;
        vis[mt] = row0 < w.R_end ? (int)cmp_visible(w.offset + pos[mt], a.p.l, a.p.d, a.nc) : 0;
    }
    const int n_tiles = (int)((cmp_visible(w.pos(w.R_end - 1), a.p.l, a.p.d, a.nc) + kBc - 1) / kBc);
    cp_async_wait_all();
    __syncthreads(); /* Q is in place for everyone; nobody reads pass 1's K and V any more */
    uint32_t qa[kMT][D / 16][4];
    flash::load_q_fragments(qa, flash::Operand<D>::a(q_s, warp * 32));
    KTileCopy<D, kThreads> k_copy;
    k_copy.init();
    if (n_tiles > 0) k_copy.copy(kv_s, k_bg, stride, 0, a.nc);
    cp_async_commit();
    __syncthreads(); /* every warp holds its Q: the bytes become the score rows */
    float *my_rows = sc + (size_t)warp * kMT * a.nb; /* this warp's two lists, nobody else's */
    for (long e = lane; e < kMT * a.nb; e += 32) my_rows[e] = 0.f;
    __syncwarp();

    float carry[kMT][R > 1 ? R - 1 : 1] = {}; /* of the two rows' summed probabilities, for tig 0 */
    for (int m = 0; m < n_tiles; ++m) {
        const int T0 = m * kBc;
        const uint32_t k_buf = kv_s + (m % 2) * kBc * D * 2;
        cp_async_wait_all();
        __syncthreads(); /* tile m has landed; nobody reads tile m - 1 any more */
        if (m + 1 < n_tiles) {
            k_copy.copy(kv_s + ((m + 1) % 2) * kBc * D * 2, k_bg, stride, T0 + kBc, a.nc);
            cp_async_commit();
        }
        float s[kMT][kNT][4];
        flash::scores(s, qa, flash::Operand<D>::k(k_buf, 0));
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) {
            float v[kV]; /* heads gid and gid + 8 of this lane's 16 tokens, block by block */
#pragma unroll
            for (int c = 0; c < kV; ++c) v[c] = 0.f;
            /* the two rows see the same tokens and the group sum is linear: add them first */
            float pv[16], pv8[16];
            row_probs(s[mt], 0, T0, vis[mt], lse2[mt][0], a.scale_log2, lane, pv);
            row_probs(s[mt], 1, T0, vis[mt], lse2[mt][1], a.scale_log2, lane, pv8);
#pragma unroll
            for (int x = 0; x < 16; ++x) pv[x] += pv8[x];
            lane_block_sums<R, BS>(pv, carry[mt], lane, v);
            /* Reduce-scatter over the 8 lanes of this tig (gid = lane bits 4, 3, 2): at each step a lane keeps
             * one half of its values (the upper half if its bit is set), sends the other half to its partner
             * and adds the partner's copy of its own half. Every block is summed by the same tree of lanes. With
             * fewer values than steps (paper: 4 values, 3 steps) the last step adds both copies of the last. */
            int c_base = 0;
#pragma unroll
            for (int step = 0; step < 3; ++step) {
                const int mask = 16 >> step;
                const bool upper = (lane & mask) != 0;
                const int half = (kV >> step) / 2; /* a constant once the loop is unrolled */
                if (half >= 1) {
#pragma unroll
                    for (int c = 0; c < 8; ++c) {
                        if (c < half) {
                            const float send = upper ? v[c] : v[half + c];
                            const float keep = upper ? v[half + c] : v[c];
                            v[c] = keep + __shfl_xor_sync(0xffffffffu, send, mask);
                        }
                    }
                    if (upper) c_base += half;
                } else {
                    v[0] += __shfl_xor_sync(0xffffffffu, v[0], mask);
                }
            }
            /* this lane's finished blocks: (T0 + 16 tig) / BS + c_base + e; with one value per lane the two
             * lanes that share it (lane bit 2) hold the same bits, the lower one writes */
            if (kV >= 8 || (lane & 4) == 0) {
                const long j = (T0 + 16 * tig) / BS + c_base;
#pragma unroll
                for (int e = 0; e < kKeep; ++e)
                    if (j + e < a.nb) my_rows[(size_t)mt * a.nb + j + e] += v[e];
            }
        }
    }
    __syncwarp(); /* this warp's score rows are complete (no other warp touches them) */
#pragma unroll 1
    for (int mt = 0; mt < kMT; ++mt) { /* not unrolled: the position from mt, not pos[mt] (local memory) */
        const int row0 = w.R0 + warp * 32 + mt * 16, i = row0 / 16;
        if (row0 >= w.R_end) break;
        rank_list(my_rows + (size_t)mt * a.nb, (w.offset + i) / a.p.l_sel, a.p.n,
                  a.lists + (((size_t)w.b * sh.M + i) * sh.G + w.g) * a.p.n, lane);
    }
    /* END SOLUTION */
}

/* ---------------------------------------------------------------- launch 3: selected and window attention
 *
 * Two branches over the same keys with two online softmaxes (never one softmax over the union): the
 * selected one over the keys s <= t of the listed blocks, the window over t - w + 1 .. t. One walk over
 * the tiles both need: first the listed blocks (ceil(l' / 64) tiles each), each key fed to the selected
 * state and, when it lies in the window, to the window's state too; then the window's tiles, 64-aligned,
 * with the keys that no listed block holds (those are in the window's state already). A tile says which of
 * its 64 keys each branch counts as two bit masks, so that no key enters a branch twice. */
struct SlcArgs {
    attn_shape sh;
    int l_sel, n, w, share, chunks;
    float scale_log2;
    const uint16_t *q, *k, *v;
    const int32_t *lists;
    const float *g_slc, *g_swa;
    uint16_t *o; /* holds g_cmp o_cmp (launch 2); receives the whole gated sum */
    float *lse_slc, *lse_swa; /* NULL: not returned */
};

/* One tile of the walk: keys s0 .. s0 + 63; bit x of slc (swa) says key s0 + x counts in the selected
 * (window) branch. e: the list entry of a selected tile, -1 for a window tile, -2 past the last tile. */
struct Tile {
    long s0;
    unsigned long long slc, swa;
    int e;
};

/* The bits of keys first .. last among s0 .. s0 + 63. */
__device__ __forceinline__ unsigned long long key_bits(long s0, long first, long last)
{
    /* BEGIN SOLUTION stub="return 0;" */
    /* HINT: clip [first, last] to [s0, s0 + 63]; n = its length (0: no bits); (2^n - 1) << (start - s0), with
     * n = 64 as all ones (a shift by 64 is undefined). */
    const long a = first > s0 ? first : s0, b = last < s0 + 63 ? last : s0 + 63;
    if (a > b) return 0ull;
    const int n = (int)(b - a + 1);
    return (n == 64 ? ~0ull : (1ull << n) - 1ull) << (a - s0);
    /* END SOLUTION */
}

/* Index of the first usable entry of list[from .. n): a negative entry ends the list; a block that starts
 * after t has no visible key and is skipped. n when none is left (lesson 09). */
__device__ __forceinline__ int next_entry(const int32_t *list, int from, int n, long t, int l_sel)
{
    /* BEGIN SOLUTION stub="return n;" */
    /* HINT: walk from `from`: j = list[e]; j < 0 ends the list (return n); (long)j * l_sel <= t is the answer;
     * anything else is skipped. */
    for (int e = from; e < n; ++e) {
        const int j = __ldg(list + e);
        if (j < 0) return n;
        if ((long)j * l_sel <= t) return e;
    }
    return n;
    /* END SOLUTION */
}

/* The first window tile at or after s0 (64-aligned) that holds a key of the window [lo, t] in no listed
 * block; e = -2 when there is none. */
__device__ __forceinline__ Tile window_tile(const int32_t *list, int n, long t, long lo, int l_sel, long s0)
{
    /* BEGIN SOLUTION stub="return Tile{s0, 0ull, 0ull, -2};" */
    /* HINT: for each tile s0, s0 + 64, ... up to t: the listed keys (key_bits of every usable entry's block
     * j l' .. j l' + l' - 1), then swa = key_bits(s0, lo, t) & ~listed; the first tile with swa != 0 is the
     * answer (slc = 0, e = -1). */
    for (; s0 <= t; s0 += kBc) {
        unsigned long long listed = 0ull;
        for (int e = 0; e < n; ++e) {
            const int j = __ldg(list + e);
            if (j < 0) break;
            const long first = (long)j * l_sel;
            if (first <= t) listed |= key_bits(s0, first, first + l_sel - 1);
        }
        const unsigned long long swa = key_bits(s0, lo, t) & ~listed; /* listed keys of the window: done already */
        if (swa) return Tile{s0, 0ull, swa, -1};
    }
    return Tile{s0, 0ull, 0ull, -2};
    /* END SOLUTION */
}

/* Tile s0 of the block of list entry e: the selected branch counts its keys up to t (the token mask in the
 * block holding t), the window those of them at or after lo. */
__device__ __forceinline__ Tile selected_tile(const int32_t *list, int e, long s0, long t, long lo, int l_sel)
{
    /* BEGIN SOLUTION stub="return Tile{s0, 0ull, 0ull, -2};" */
    /* HINT: the block's keys first = j l' .. last = min(j l' + l' - 1, t); slc = key_bits(s0, first, last),
     * swa = key_bits(s0, max(first, lo), last). */
    const long first = (long)__ldg(list + e) * l_sel, last = min(first + l_sel - 1, t);
    return Tile{s0, key_bits(s0, first, last), key_bits(s0, first > lo ? first : lo, last), e};
    /* END SOLUTION */
}

/* The tile after `cur` in the walk (the first one for cur.e = -3). */
__device__ __forceinline__ Tile next_tile(const Tile &cur, const int32_t *list, int n, long t, long lo, int l_sel)
{
    /* BEGIN SOLUTION stub="return Tile{0, 0ull, 0ull, -2};" */
    /* HINT: a selected tile goes on in its block while s0 + 64 <= its last key (min(j l' + l' - 1, t)), then to
     * the next usable entry's first tile (next_entry); after the last entry, the window from its 64-aligned
     * first tile (lo / 64) * 64; a window tile goes on from s0 + 64. */
    if (cur.e >= 0) {
        const long first = (long)__ldg(list + cur.e) * l_sel, last = min(first + l_sel - 1, t);
        if (cur.s0 + kBc <= last) return selected_tile(list, cur.e, cur.s0 + kBc, t, lo, l_sel);
    }
    if (cur.e >= 0 || cur.e == -3) {
        const int e = next_entry(list, cur.e >= 0 ? cur.e + 1 : 0, n, t, l_sel);
        if (e < n) return selected_tile(list, e, (long)__ldg(list + e) * l_sel, t, lo, l_sel);
        return window_tile(list, n, t, lo, l_sel, lo / kBc * kBc);
    }
    return window_tile(list, n, t, lo, l_sel, cur.s0 + kBc);
    /* END SOLUTION */
}

/* s = -inf where bit (column) of the warp's 16-key mask `bits` is clear: column nt * 8 + 2 tig + e. */
__device__ __forceinline__ void mask_bits(float (&s)[1][2][4], unsigned bits)
{
    const int tig = threadIdx.x % 4;
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
        for (int c = 0; c < 4; ++c)
            if (!((bits >> (nt * 8 + tig * 2 + (c & 1))) & 1u)) s[0][nt][c] = -INFINITY;
}

/* Copy K or V rows [first, first + 64) of one kv head into a swizzled tile; rows at or past `limit` are
 * zero-filled, not read (lesson 09's load_kv_tile). */
template <int D>
__device__ __forceinline__ void load_kv_tile(uint32_t tile, const uint16_t *base, size_t stride, long first, long limit)
{
    constexpr int kChunks = D / 8, kRowStep = kThreads / kChunks;
    const int r0 = threadIdx.x / kChunks, c = threadIdx.x % kChunks;
    const uint32_t dst = tile + swizzle<D>(r0, c);
    const long left = limit - first - r0; /* rows from the thread's first one to the limit */
    const uint16_t *src = base + (size_t)(first + r0) * stride + c * 8;
#pragma unroll
    for (int it = 0; it < kBc / kRowStep; ++it) {
        const bool valid = it * kRowStep < left;
        cp_async_16(dst + it * kRowStep * D * 2, valid ? src + (size_t)(it * kRowStep) * stride : base, valid);
    }
}

/* Merge the four warps' partial softmaxes of one branch (each over the keys it owned in every tile) through
 * shared memory, and add gate * o of the branch to the merging thread's part of its row: thread (r, c) owns
 * row r and columns 32 k + 4 c. lse of the row (natural log) to lse_out when it is not NULL. Every thread
 * of the block must call it (barriers). */
template <int D>
__device__ __forceinline__ void merge_branch(flash::OnlineSoftmax<D, 1> &acc, float *part, float scale_log2, int rows,
                                             const float *gate, float (&res)[D / 32][4], float *lse_out, long lse_stride)
{
    float *part_o = part, *part_m = part + kWarps * kHeads * (D + kPad), *part_l = part_m + kWarps * kHeads;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gid = lane / 4, tig = lane % 4;
    /* BEGIN SOLUTION */
    /* HINT: acc.sum_rows(); barrier (the bytes are the K/V tiles, or the other branch's partials); each warp
     * writes its rows gid, gid + 8: m and l (tig 0) and O (float2 at columns dt 8 + 2 tig); barrier; then
     * flash::merge_weights over the 4 warps' (m, l) of row r, and for r < rows: res += gate[r] / l *
     * sum_u f_u O_u (float4 reads), lse = ln 2 (m scale_log2 + log2 l) or -inf when l = 0 (and then no o). */
    acc.sum_rows();
    __syncthreads(); /* nobody reads the tiles or the other branch's partials any more */
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
        const int r = warp * kHeads + gid + rr * 8;
        if (tig == 0) part_m[r] = acc.m[0][rr], part_l[r] = acc.l[0][rr];
#pragma unroll
        for (int dt = 0; dt < D / 8; ++dt)
            *reinterpret_cast<float2 *>(part_o + r * (D + kPad) + dt * 8 + tig * 2) =
                make_float2(acc.o[0][dt][2 * rr], acc.o[0][dt][2 * rr + 1]);
    }
    __syncthreads(); /* every warp's partial result is there */
    const int r = threadIdx.x / 8, c = threadIdx.x % 8; /* 16 rows x 8 threads */
    float m_u[kWarps], l_u[kWarps], f[kWarps], l;
#pragma unroll
    for (int u = 0; u < kWarps; ++u) m_u[u] = part_m[u * kHeads + r], l_u[u] = part_l[u * kHeads + r];
    const float m_scaled = flash::merge_weights<kWarps>(m_u, l_u, scale_log2, f, l);
    if (r >= rows) return;
    const float wgt = l > 0.f ? gate[r] / l : 0.f; /* a branch that saw no key adds nothing */
#pragma unroll
    for (int kc = 0; kc < D / 32; ++kc) {
        const int d = kc * 32 + c * 4;
        float4 sum = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
        for (int u = 0; u < kWarps; ++u) {
            const float4 x = *reinterpret_cast<const float4 *>(part_o + (u * kHeads + r) * (D + kPad) + d);
            sum.x = fmaf(f[u], x.x, sum.x), sum.y = fmaf(f[u], x.y, sum.y);
            sum.z = fmaf(f[u], x.z, sum.z), sum.w = fmaf(f[u], x.w, sum.w);
        }
        res[kc][0] = fmaf(wgt, sum.x, res[kc][0]), res[kc][1] = fmaf(wgt, sum.y, res[kc][1]);
        res[kc][2] = fmaf(wgt, sum.z, res[kc][2]), res[kc][3] = fmaf(wgt, sum.w, res[kc][3]);
    }
    if (lse_out && c == 0) lse_out[r * lse_stride] = l > 0.f ? (m_scaled + log2f(l)) * kLn2 : -INFINITY;
    /* END SOLUTION */
}

/* Shared memory of slc_swa_kernel: Q and one K and one V tile during the walk; one branch's partial
 * results after it. */
template <int D>
constexpr int slc_smem_bytes()
{
    return (kHeads * D * 2 + 2 * kBc * D * 2) > (kWarps * kHeads * (D + kPad) * 4 + 2 * kWarps * kHeads * 4)
               ? (kHeads * D * 2 + 2 * kBc * D * 2)
               : (kWarps * kHeads * (D + kPad) * 4 + 2 * kWarps * kHeads * 4);
}

/* The general kernel: every shape, group-centric (lesson 09).
 *   grid   one block per (b, list, chunk of 16 of the list's heads, query i): the rows are the heads that
 *          read the list (H/G of them, or 1 with per-head lists), 16 at a time; blockIdx.x = ((b * L + list)
 *          * chunks + chunk) * M + M - 1 - i: the positions of one list next to each other, last first, so
 *          that a group's K/V stays in L2 while its neighbouring positions (their windows overlap almost
 *          fully) are worked on.
 *   block  4 warps; a tile holds 64 keys, warp w owns its keys 16 w .. 16 w + 15 and keeps two online
 *          softmaxes (selected, window) over the keys it owned in every tile, a split of the keys as in
 *          flash decoding; the partials are merged at the end, one branch after the other (merge_branch).
 *          A lane holds rows gid and gid + 8 and column pair tig of each n8 tile (lesson 03).
 *   shared Q [16][D] (then fragments in registers), one K and one V tile [64][D] (cp.async: V_j during
 *          S = Q K_j^T, K_{j+1} during P V_j); after the walk the same bytes hold one branch's partials.
 * The epilogue reads o (g_cmp o_cmp from launch 2) and writes o = that + g_slc o_slc + g_swa o_swa. */
template <int D>
__global__ void __launch_bounds__(kThreads, 2) slc_swa_kernel(SlcArgs a)
{
    constexpr int kRowBytes = D * 2;
    extern __shared__ __align__(128) uint8_t smem[];
    const uint32_t q_s = smem_addr(smem), k_s = q_s + kHeads * kRowBytes, v_s = k_s + kBc * kRowBytes;
    const attn_shape &sh = a.sh;
    const int warp = threadIdx.x / 32;

    /* BEGIN SOLUTION */
    /* HINT: 1. the block: unpack blockIdx.x (see above); rows = min(16, heads per list - 16 chunk), head0, g =
     *    head0 / (H/G), t, lo = max(0, t - w + 1), the list (b, i, list). Q [rows][D] into q_s (zeros below).
     * 2. the walk: cur = next_tile(Tile{0, 0, 0, -3}); the first K tile (limit t + 1); wait, barrier, Q
     *    fragments. Per tile: nxt = next_tile(cur); wait, barrier, V; the warp's 16 bits of cur.slc and cur.swa
     *    (>> 16 warp); with any: flash::scores, then per branch a copy masked by its bits (mask_bits, skipped for
     *    all ones) and update_skip_unit_alpha; wait, barrier, next K; accumulate each branch that had bits.
     * 3. merge_branch for the selected branch (g_slc, lse_slc), then the window (g_swa, lse_swa), into one res
     *    per thread; res + the bf16 o already there (4 at a time), as bf16. */
    const int hpg = sh.H / sh.G, per_list = a.share ? hpg : 1, L = a.share ? sh.G : sh.H;
    long x = blockIdx.x;
    const int i = sh.M - 1 - (int)(x % sh.M);
    x /= sh.M;
    const int chunk = (int)(x % a.chunks);
    x /= a.chunks;
    const int list_id = (int)(x % L), b = (int)(x / L);
    const int head0 = list_id * per_list + chunk * kHeads, rows = min(kHeads, per_list - chunk * kHeads);
    const int g = head0 / hpg;
    const long t = (long)sh.N - sh.M + i;
    const long lo = t - a.w + 1 > 0 ? t - a.w + 1 : 0; /* the window: keys lo .. t */
    const int32_t *list = a.lists + (((size_t)b * sh.M + i) * L + list_id) * a.n;
    const size_t kv_stride = (size_t)sh.G * D;
    const uint16_t *k_bg = a.k + ((size_t)b * sh.N * sh.G + g) * D, *v_bg = a.v + ((size_t)b * sh.N * sh.G + g) * D;
    const size_t row0 = ((size_t)b * sh.M + i) * sh.H + head0; /* the block's first row of q, o and the gates */

    { /* Q [rows][D], zeros below */
        constexpr int kChunks = D / 8, kRowStep = kThreads / kChunks;
        const int r0 = threadIdx.x / kChunks, c = threadIdx.x % kChunks;
#pragma unroll
        for (int it = 0; it < (kHeads + kRowStep - 1) / kRowStep; ++it) {
            const int r = r0 + it * kRowStep;
            if (r >= kHeads) break;
            const bool valid = r < rows;
            cp_async_16(q_s + swizzle<D>(r, c), valid ? a.q + (row0 + r) * D + c * 8 : a.q, valid);
        }
    }
    /* compact operands on the warp's 16 keys of each tile: the kernel holds two softmax states */
    const flash::CompactOperand<D> k_op = flash::CompactOperand<D>::k(k_s, warp * 16),
                                   v_op = flash::CompactOperand<D>::v(v_s, warp * 16);
    flash::OnlineSoftmax<D, 1> slc, swa;
    uint32_t qa[1][D / 16][4];

    Tile cur = next_tile(Tile{0, 0ull, 0ull, -3}, list, a.n, t, lo, a.l_sel);
    if (cur.e != -2) load_kv_tile<D>(k_s, k_bg, kv_stride, cur.s0, t + 1);
    cp_async_commit();
    cp_async_wait_all();
    __syncthreads(); /* Q has landed for everyone */
    flash::load_q_fragments(qa, flash::Operand<D>::a(q_s, 0));

    while (cur.e != -2) {
        const Tile nxt = next_tile(cur, list, a.n, t, lo, a.l_sel);
        cp_async_wait_all();
        __syncthreads(); /* K has landed for everyone; nobody still reads the previous V */
        load_kv_tile<D>(v_s, v_bg, kv_stride, cur.s0, t + 1);
        cp_async_commit();

        const unsigned ms = (unsigned)(cur.slc >> (16 * warp)) & 0xffffu, mw = (unsigned)(cur.swa >> (16 * warp)) & 0xffffu;
        uint32_t p_slc[1][2][2], p_swa[1][2][2];
        if (ms | mw) {
            float s[1][2][4];
            flash::scores(s, qa, k_op);
            if (ms) {
                float x_slc[1][2][4];
#pragma unroll
                for (int nt = 0; nt < 2; ++nt)
#pragma unroll
                    for (int c = 0; c < 4; ++c) x_slc[0][nt][c] = s[0][nt][c];
                if (ms != 0xffffu) mask_bits(x_slc, ms);
                slc.update_skip_unit_alpha(x_slc, p_slc, a.scale_log2);
            }
            if (mw) {
                if (mw != 0xffffu) mask_bits(s, mw);
                swa.update_skip_unit_alpha(s, p_swa, a.scale_log2);
            }
        }

        cp_async_wait_all();
        __syncthreads(); /* V has landed for everyone; nobody still reads K */
        if (nxt.e != -2) {
            load_kv_tile<D>(k_s, k_bg, kv_stride, nxt.s0, t + 1);
            cp_async_commit();
        }
        if (ms) slc.accumulate(p_slc, v_op);
        if (mw) swa.accumulate(p_swa, v_op);
        cur = nxt;
    }

    float res[D / 32][4];
#pragma unroll
    for (int kc = 0; kc < D / 32; ++kc) res[kc][0] = res[kc][1] = res[kc][2] = res[kc][3] = 0.f;
    float *part = reinterpret_cast<float *>(smem);
    const size_t lse0 = ((size_t)b * sh.H + head0) * sh.M + i; /* lse [B, H, M] of the block's first row */
    merge_branch<D>(slc, part, a.scale_log2, rows, a.g_slc + row0, res, a.lse_slc ? a.lse_slc + lse0 : nullptr, sh.M);
    merge_branch<D>(swa, part, a.scale_log2, rows, a.g_swa + row0, res, a.lse_swa ? a.lse_swa + lse0 : nullptr, sh.M);
    const int r = threadIdx.x / 8, c = threadIdx.x % 8;
    if (r < rows) {
        uint16_t *o_row = a.o + (row0 + r) * D;
#pragma unroll
        for (int kc = 0; kc < D / 32; ++kc) {
            const int d = kc * 32 + c * 4;
            uint2 old = *reinterpret_cast<const uint2 *>(o_row + d); /* g_cmp o_cmp */
            old.x = pack_bf16(bf16_lo(old.x) + res[kc][0], bf16_hi(old.x) + res[kc][1]);
            old.y = pack_bf16(bf16_lo(old.y) + res[kc][2], bf16_hi(old.y) + res[kc][3]);
            *reinterpret_cast<uint2 *>(o_row + d) = old;
        }
    }
    /* END SOLUTION */
}

/* ---------------------------------------------------------------- launch 3, fast path (sm_90)
 *
 * For shared lists with H/G = 16, D = 128 and l' = 64 (the bar's shape) one warp owns a whole position:
 * its 16 heads are one m16 tile and it takes all 64 keys of every tile, so no merge is needed. A block
 * serves 8 neighbouring positions of one kv group, one per warp, and loads every K/V tile that any of them
 * needs, for either branch, once for all of them (lesson 09's selected_window_kernel, with the window):
 *   union  each warp has 32 slots: its list's entries (slots 0-15) and the window's blocks lo / 64 .. t / 64
 *          that its list does not hold (slots 16-31). The 256 slots are sorted together (a bitonic sort of
 *          keys block << 32 | slot) into the ascending union of the blocks: blk[u], and upos[u], the first
 *          sorted slot of block u, so that upos[u + 1] - upos[u] warps use block u. Neighbours' windows
 *          overlap almost fully (8 positions: 519 keys), so the window adds about 8 tiles to a block's ~90.
 *   ring   kRing stages of one K/V tile pair (64 keys x 128 columns of K and of V: 32 KB), filled by the
 *          copy engine (four 8 KB tensor-map boxes with the 128-byte swizzle) in union order: block u goes
 *          to stage u % kRing; full[stage] completes when its bytes have landed, slot_u[stage] says which
 *          union block the stage holds or awaits (lesson 09's ring: kRing, issue_pair and tma_offset come
 *          from common/nsa_tiles.cuh).
 *   warps  walk their own blocks in union order, independently: a warp waits only for the tiles it needs,
 *          computes, and counts the stage down (left[stage]); the warp that brings it to zero sends union
 *          block u + kRing to the stage. A selected slot feeds the selected state (keys <= t) and, for a
 *          block that reaches the window, the window's state (keys >= lo) with the same scores; a window
 *          slot feeds only the window's.
 *   output each warp normalises its 16 rows of both branches, regroups them within each quad of lanes
 *          into 16-byte pieces, adds the g_cmp o_cmp already in o and writes o.
 * Deadlock-free (lesson 09): the smallest union block not yet done always sits in its stage (everything
 * kRing before it is done), and its warps have finished all their earlier blocks, because each walks its
 * blocks sorted by union index. Needs sm_90 (TMA, mbarrier transaction counts); elsewhere the host takes
 * the general kernel. */
constexpr int kWinWarps = 8;                   /* positions per block, one warp each */
constexpr int kWinThreads = kWinWarps * 32;    /* 256 */
constexpr int kWinMaxN = 16;                   /* list entries a warp takes */
constexpr int kWinSlots = 32;                  /* slots per warp: 16 list entries, 16 window blocks */
constexpr int kWinKeys = kWinWarps * kWinSlots; /* 256 sort keys */
/* shared memory, from a 1024-byte aligned base (the 128-byte swizzle repeats every 1024 bytes) */
constexpr int kOffBlk = kRing * kPair;                  /* int blk[kWinKeys] */
constexpr int kOffUpos = kOffBlk + kWinKeys * 4;        /* uint16 upos[kWinKeys + 1] */
constexpr int kOffLeft = kOffUpos + (kWinKeys + 8) * 2; /* int left[kRing] */
constexpr int kOffSlot = kOffLeft + 8 * 4;              /* int slot_u[kRing] */
constexpr int kOffFull = kOffSlot + 8 * 4;              /* uint64 full[kRing] */
constexpr int kOffMisc = kOffFull + 8 * 8;              /* int: union blocks first in each warp of the scan; [8] the union's size */
constexpr int kWinSmem = kOffMisc + 16 * 4 + 1024;      /* + 1024: room to align the base */
static_assert(kRing <= 8 && kOffFull % 8 == 0, "the bookkeeping arrays above hold 8 stages, full[] 8-byte aligned");
static_assert(kWinSmem <= 227 * 1024, "the fast path's shared memory must fit an H100 / H200 block");
static_assert(kWinKeys * 12 <= kPair && kWinWarps * kHeads * 128 * 2 <= kPair,
              "the sort keys and union indices (stage 0) and the Q rows (stage 1) wait in the ring");

#if ATTN_HAVE_TMA /* the kernel's pieces: compiled for sm_90 and later only (ATTN_HAVE_TMA: nsa_tiles.cuh) */
constexpr int kSlcSlot = 1 << 30; /* a warp's walk entry: union index | kSlcSlot for a list entry */
using nsa::issue_pair; /* sends union block u to stage u % kRing: its users, its index, the four copies */
using nsa::tma_offset; /* byte offset of chunk c of key row r in a stage (the copy engine's swizzle) */

/* One warp, one position: its 16 rows (heads) against all 64 keys of each tile, Q held as A fragments,
 * the two branches' online softmaxes (common/flash_tile.cuh's state and update; S and P V by hand on the
 * copy engine's layout). A lane holds rows gid and gid + 8. */
struct PositionBranches {
    uint32_t qa[8][4]; /* Q, one A fragment per k16 step of D = 128 */
    flash::OnlineSoftmax<128, 1> slc, swa;

    /* Q from the warp's swizzled [16][128] copy in shared memory. */
    __device__ __forceinline__ void init(uint32_t q_s)
    {
        const int lane = threadIdx.x % 32;
#pragma unroll
        for (int kk = 0; kk < 8; ++kk) ldmatrix_x4(qa[kk], q_s + swizzle<128>(lane % 16, 2 * kk + lane / 16));
    }

    /* O += P V for keys 32 half .. 32 half + 31 of the stage's V tile. */
    __device__ __forceinline__ void pv(flash::OnlineSoftmax<128, 1> &acc, const uint32_t (&p)[1][4][2], uint32_t v_s,
                                       int half)
    {
        const int lane = threadIdx.x % 32;
#pragma unroll
        for (int ks = 0; ks < 2; ++ks) {
            const uint32_t pa[4] = {p[0][2 * ks][0], p[0][2 * ks][1], p[0][2 * ks + 1][0], p[0][2 * ks + 1][1]};
            const int key = (2 * half + ks) * 16 + lane % 8 + ((lane / 8) % 2) * 8;
#pragma unroll
            for (int dp = 0; dp < 8; ++dp) {
                uint32_t bv[4];
                ldmatrix_x4_trans(bv, v_s + tma_offset(key, 2 * dp + lane / 16));
                mma_bf16(acc.o[0][2 * dp], pa, bv[0], bv[1]);
                mma_bf16(acc.o[0][2 * dp + 1], pa, bv[2], bv[3]);
            }
        }
    }

    /* Keys s0 .. s0 + 63 of one stage (k_s: the K tile; V follows it): to the selected state (keys <= t) when
     * `to_slc`, to the window's (keys lo .. t) when `to_swa`, each score computed once. In two halves of 32
     * keys: S and P of a half take half the registers, which two states of O leave room for. */
    __device__ __forceinline__ void tile(uint32_t k_s, long s0, long t, long lo, bool to_slc, bool to_swa,
                                         float scale_log2)
    {
        const int lane = threadIdx.x % 32, tig = lane % 4;
#pragma unroll
        for (int half = 0; half < 2; ++half) {
            const long h0 = s0 + 32 * half; /* the half's first key */
            if (h0 > t) break;             /* every key of it lies after t */
            const bool slc_here = to_slc, swa_here = to_swa && h0 + 31 >= lo;
            if (!slc_here && !swa_here) continue;
            float s[1][4][4]; /* S = Q K^T, n8 tile nt = keys h0 + 8 nt .. */
#pragma unroll
            for (int nt = 0; nt < 4; ++nt) s[0][nt][0] = s[0][nt][1] = s[0][nt][2] = s[0][nt][3] = 0.f;
#pragma unroll
            for (int kk = 0; kk < 8; ++kk)
#pragma unroll
                for (int np = 0; np < 2; ++np) {
                    uint32_t bk[4];
                    ldmatrix_x4(bk, k_s + tma_offset((2 * half + np) * 16 + lane % 8 + (lane / 16) * 8, 2 * kk + (lane / 8) % 2));
                    mma_bf16(s[0][2 * np], qa[kk], bk[0], bk[1]);
                    mma_bf16(s[0][2 * np + 1], qa[kk], bk[2], bk[3]);
                }
            /* BEGIN SOLUTION */
            /* HINT: the token mask first (keys after t hide from both branches: only the block holding t has
             * them), then the selected branch (update_skip_unit_alpha, pv), then, for the window, keys before lo
             * hidden too and the window's state. P is one array reused by the two branches. */
            if (h0 + 31 > t) /* the token causal rule cuts the block that holds t */
#pragma unroll
                for (int nt = 0; nt < 4; ++nt)
#pragma unroll
                    for (int c = 0; c < 4; ++c) s[0][nt][c] = h0 + nt * 8 + tig * 2 + (c & 1) > t ? -INFINITY : s[0][nt][c];
            uint32_t p[1][4][2];
            if (slc_here) {
                slc.update_skip_unit_alpha(s, p, scale_log2);
                pv(slc, p, k_s + 2 * kBox, half);
            }
            if (swa_here) {
                if (h0 < lo) /* the window starts inside this half */
#pragma unroll
                    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
                        for (int c = 0; c < 4; ++c)
                            s[0][nt][c] = h0 + nt * 8 + tig * 2 + (c & 1) < lo ? -INFINITY : s[0][nt][c];
                swa.update_skip_unit_alpha(s, p, scale_log2);
                pv(swa, p, k_s + 2 * kBox, half);
            }
            /* END SOLUTION */
        }
    }

    /* o = (o already there: g_cmp o_cmp) + g_slc O_slc / l_slc + g_swa O_swa / l_swa for the 16 contiguous
     * rows at o_rows (gates of row r at g_slc[r], g_swa[r]); lse of each branch to lse_slc[r * lse_stride]
     * when not NULL. A lane holds two columns of each n8 tile; the four lanes of a quad swap them (a 4 x 4
     * transpose) so that lane tig owns n8 tiles 4 k + tig whole: 16-byte loads and stores. A branch that saw
     * no key adds 0 (its lse is -inf). */
    __device__ __forceinline__ void store(uint16_t *o_rows, const float *g_slc, const float *g_swa, float *lse_slc,
                                          float *lse_swa, long lse_stride, float scale_log2)
    {
        const int lane = threadIdx.x % 32, gid = lane / 4, tig = lane % 4;
        /* BEGIN SOLUTION */
        /* HINT: sum_rows() for both states; per row rr (r = gid + 8 rr): w_slc = l_slc > 0 ? g_slc[r] / l_slc : 0,
         * the same for the window; per k = 0..3 the lane's packed pairs of n8 tiles 4k + x (x = 0..3) of w_slc
         * O_slc + w_swa O_swa, the quad transpose of lesson 09's PositionSoftmax::store (shuffles with lane
         * tig ^ sft), then the 16 bytes of o at row r, columns (4k + tig) 8 .. + 7: added, rounded, stored. */
        slc.sum_rows();
        swa.sum_rows();
#pragma unroll
        for (int rr = 0; rr < 2; ++rr) {
            const int r = gid + 8 * rr;
            const float ls = slc.l[0][rr], lw = swa.l[0][rr];
            const float w_slc = ls > 0.f ? g_slc[r] / ls : 0.f, w_swa = lw > 0.f ? g_swa[r] / lw : 0.f;
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                uint32_t mine[4], piece[4] = {0u, 0u, 0u, 0u}; /* mine[x]: this lane's columns of n8 tile 4k + x */
#pragma unroll
                for (int x = 0; x < 4; ++x) {
                    const float *os = slc.o[0][4 * k + x], *ow = swa.o[0][4 * k + x];
                    mine[x] = pack_bf16(fmaf(w_swa, ow[2 * rr], w_slc * os[2 * rr]),
                                        fmaf(w_swa, ow[2 * rr + 1], w_slc * os[2 * rr + 1]));
                }
#pragma unroll
                for (int sft = 0; sft < 4; ++sft) { /* lane tig ^ sft sends its columns of tile 4k + tig */
                    const int want = tig ^ sft;
                    const uint32_t send = want == 0 ? mine[0] : want == 1 ? mine[1] : want == 2 ? mine[2] : mine[3];
                    const uint32_t got = __shfl_xor_sync(0xffffffffu, send, sft);
                    piece[0] = (tig ^ sft) == 0 ? got : piece[0];
                    piece[1] = (tig ^ sft) == 1 ? got : piece[1];
                    piece[2] = (tig ^ sft) == 2 ? got : piece[2];
                    piece[3] = (tig ^ sft) == 3 ? got : piece[3];
                }
                uint4 *dst = reinterpret_cast<uint4 *>(o_rows + r * 128 + (4 * k + tig) * 8);
                const uint4 old = *dst; /* g_cmp o_cmp, from launch 2 */
                const uint32_t ow[4] = {old.x, old.y, old.z, old.w};
                uint32_t sum[4];
#pragma unroll
                for (int y = 0; y < 4; ++y)
                    sum[y] = pack_bf16(bf16_lo(ow[y]) + bf16_lo(piece[y]), bf16_hi(ow[y]) + bf16_hi(piece[y]));
                *dst = make_uint4(sum[0], sum[1], sum[2], sum[3]);
            }
            if (tig == 0) {
                if (lse_slc) lse_slc[r * lse_stride] = slc.lse(0, rr, scale_log2);
                if (lse_swa) lse_swa[r * lse_stride] = swa.lse(0, rr, scale_log2);
            }
        }
        /* END SOLUTION */
    }
};
#endif

__global__ void __launch_bounds__(kWinThreads, 1)
    slc_swa_window_kernel(const __grid_constant__ CUtensorMap tk, const __grid_constant__ CUtensorMap tv, SlcArgs a,
                          int windows)
{
#if ATTN_HAVE_TMA
    extern __shared__ uint8_t smem_raw[];
    uint8_t *smem = smem_raw + (1024 - smem_addr(smem_raw) % 1024) % 1024;
    const uint32_t base = smem_addr(smem), full = base + kOffFull;
    int *blk = reinterpret_cast<int *>(smem + kOffBlk);
    uint16_t *upos = reinterpret_cast<uint16_t *>(smem + kOffUpos);
    int *left = reinterpret_cast<int *>(smem + kOffLeft);
    int *slot_u = reinterpret_cast<int *>(smem + kOffSlot);
    int *misc = reinterpret_cast<int *>(smem + kOffMisc);
    /* before the first copy the ring holds the sort keys and union indices (stage 0) and Q (stage 1) */
    unsigned long long *keys = reinterpret_cast<unsigned long long *>(smem);
    int *uid_of = reinterpret_cast<int *>(smem + kWinKeys * 8); /* [warp][slot] */

    const attn_shape &sh = a.sh;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int g = blockIdx.x / windows, win = windows - 1 - (int)(blockIdx.x % windows); /* last window first */
    const int b = blockIdx.y, hpg = sh.H / sh.G;
    const int i = win * kWinWarps + warp; /* this warp's query; none when i >= M */
    const bool active = i < sh.M;
    const long t = (long)sh.N - sh.M + i, lo = t - a.w + 1 > 0 ? t - a.w + 1 : 0;
    const size_t row0 = ((size_t)b * sh.M + i) * sh.H + (size_t)g * hpg; /* the warp's first row of q, o, gates */
    const uint32_t q_s = base + kPair + warp * (kHeads * 256);

    if (threadIdx.x == 0) {
        for (int st = 0; st < kRing; ++st) {
            mbar_init(full + 8 * st, 1);
            slot_u[st] = -1;
        }
        mbar_init_fence();
        misc[8] = 0; /* the union's size, should no warp have a slot */
    }
    if (active) /* the warp's 16 rows of Q: heads 16 g .. 16 g + 15 of its position, 4 KB in a row */
#pragma unroll
        for (int it = 0; it < 8; ++it) {
            const int r = it * 2 + lane / 16, c = lane % 16;
            cp_async_16(q_s + swizzle<128>(r, c), a.q + (row0 + r) * 128 + c * 8, true);
        }
    cp_async_commit();
    PositionBranches pb;

    /* BEGIN SOLUTION */
    /* HINT: optional, once slc_swa_kernel passes; lesson 09's selected_window_kernel with 32 slots per warp.
     * (1) Slots: lane e < 16 reads list entry e (a negative entry ends the list, a block with j 64 > t is
     * skipped); lane 16 + x is window block lo / 64 + x when it is <= t / 64 and not on the list (16 shuffles
     * of the list lanes' blocks). Valid slots write key (block << 32 | warp 32 + lane), the others all ones.
     * (2) The bitonic sort, a barrier after every step. (3) Union indices as in lesson 09, every warp holding
     * 32 keys (misc[warp] the firsts of each warp, misc[8] the union's size). (4) Each warp ranks its union
     * indices (32 shuffles) and keeps the r-th, | kSlcSlot for a list slot, in lane r. Q to registers, barrier,
     * thread 0 issues the first kRing union blocks. (5) The walk: wait for the stage to hold u, mbar_wait,
     * pb.tile(stage, s0, t, lo, list slot?, s0 + 63 >= lo), count down, refill (lesson 09). (6) pb.store. */
    int j = -1;
    if (active && lane < a.n) j = __ldg(a.lists + (((size_t)b * sh.M + i) * sh.G + g) * a.n + lane);
    const unsigned ends = __ballot_sync(0xffffffffu, lane < a.n && j < 0);
    const int n_list = ends ? __ffs(ends) - 1 : a.n;
    const bool listed = active && lane < n_list && (long)j * 64 <= t; /* lanes 0-15 only (n <= 16) */
    const long jw = lo / 64 + (lane - kWinMaxN);                     /* lanes 16-31: the window's blocks */
    bool on_list = false;
#pragma unroll
    for (int e = 0; e < kWinMaxN; ++e) {
        const int je = __shfl_sync(0xffffffffu, j, e);
        const bool le = __shfl_sync(0xffffffffu, listed, e);
        on_list |= le && (long)je == jw;
    }
    const bool valid = lane < kWinMaxN ? listed : active && jw * 64 <= t && !on_list;
    const int block = lane < kWinMaxN ? j : (int)jw;
    keys[warp * kWinSlots + lane] =
        valid ? (unsigned long long)(unsigned)block << 32 | (unsigned)(warp * kWinSlots + lane) : ~0ull;
    __syncthreads();
    for (int k = 2; k <= kWinKeys; k <<= 1) /* bitonic sort, ascending: invalid keys (all ones) go last */
        for (int jj = k >> 1; jj > 0; jj >>= 1) {
            const int x = threadIdx.x, y = x ^ jj;
            if (y > x) {
                const unsigned long long ka = keys[x], kb = keys[y];
                if ((ka > kb) == ((x & k) == 0)) keys[x] = kb, keys[y] = ka;
            }
            __syncthreads();
        }
    /* the union index of each sorted slot: the number of distinct blocks up to it, minus one */
    const unsigned long long key = keys[threadIdx.x];
    const bool first = key != ~0ull && (threadIdx.x == 0 || keys[threadIdx.x - 1] >> 32 != key >> 32);
    const unsigned firsts = __ballot_sync(0xffffffffu, first);
    if (lane == 0) misc[warp] = __popc(firsts);
    __syncthreads();
    if (key != ~0ull) {
        int u = __popc(firsts & (0xffffffffu >> (31 - lane))) - 1;
        for (int w2 = 0; w2 < warp; ++w2) u += misc[w2];
        uid_of[key & 0xffffffffu] = u;
        if (first) blk[u] = (int)(key >> 32), upos[u] = (uint16_t)threadIdx.x;
        if (threadIdx.x == kWinKeys - 1 || keys[threadIdx.x + 1] == ~0ull) /* the last valid slot */
            misc[8] = u + 1, upos[u + 1] = (uint16_t)(threadIdx.x + 1);
    }
    __syncthreads();
    /* the warp's blocks in union order, the r-th in lane r, list slots flagged */
    const int my_u = valid ? uid_of[warp * kWinSlots + lane] : 0x7fffffff;
    int rank = 0;
#pragma unroll
    for (int e = 0; e < kWinSlots; ++e) {
        const int other = __shfl_sync(0xffffffffu, my_u, e);
        rank += other < my_u || (other == my_u && e < lane);
    }
    const int count = __popc(__ballot_sync(0xffffffffu, valid));
    __syncwarp();
    if (valid) uid_of[warp * kWinSlots + rank] = my_u | (lane < kWinMaxN ? kSlcSlot : 0);
    __syncwarp();
    const int seq = lane < count ? uid_of[warp * kWinSlots + lane] : 0;
    const int nu = misc[8];
    cp_async_wait_all();
    __syncwarp(); /* the warp's Q has landed */
    pb.init(q_s);
    __syncthreads(); /* stages 0 and 1 are free: every warp has read its union indices and its Q */

    const int row_base = b * sh.N; /* the host checks B * N < 2^31 */
    if (threadIdx.x == 0)
        for (int u = 0; u < min(nu, kRing); ++u) issue_pair(&tk, &tv, base, full, left, slot_u, blk, upos, u, row_base, g);
    if (!active) return;
    for (int r = 0; r < count; ++r) {
        const int entry = __shfl_sync(0xffffffffu, seq, r), u = entry & (kSlcSlot - 1), st = u % kRing;
        if (lane == 0) {
            const long long start = clock64();
            while (atomicAdd(&slot_u[st], 0) != u) { /* the stage still holds an earlier union block */
                __nanosleep(32);
                if (clock64() - start > (1ll << 32)) __trap();
            }
        }
        __syncwarp();
        mbar_wait(full + 8 * st, (unsigned)(u / kRing) & 1u);
        const long s0 = (long)blk[u] * 64;
        pb.tile(base + st * kPair, s0, t, lo, (entry & kSlcSlot) != 0, s0 + 63 >= lo, a.scale_log2);
        __syncwarp(); /* every lane is done reading the stage */
        if (lane == 0) {
            __threadfence_block();
            if (atomicSub(&left[st], 1) == 1 && u + kRing < nu) { /* the stage's last use: refill it */
                __threadfence_block();
                issue_pair(&tk, &tv, base, full, left, slot_u, blk, upos, u + kRing, row_base, g);
            }
        }
    }
    const size_t lse0 = ((size_t)b * sh.H + (size_t)g * hpg) * sh.M + i;
    pb.store(a.o + row0 * 128, a.g_slc + row0, a.g_swa + row0, a.lse_slc ? a.lse_slc + lse0 : nullptr,
             a.lse_swa ? a.lse_swa + lse0 : nullptr, sh.M, a.scale_log2);
    /* END SOLUTION */
#endif
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

/* What the kernels' index arithmetic assumes: token ends and grids in 32 bits. */
int check_limits(const char *fn, const attn_shape *s, const attn_nsa_params *p)
{
    if ((double)s->N + (double)kBc * p->d + p->l > 2147483647.0)
        return attn_fail(ATTN_ERR_BAD_SHAPE, "%s: N=%d with d=%d, l=%d: compressed token ends pass 2^31", fn, s->N,
                         p->d, p->l);
    const int hpg = s->H / s->G, L = attn_nsa_list_heads(s, p);
    if ((double)s->M * hpg + kBr > 2147483647.0)
        return attn_fail(ATTN_ERR_BAD_SHAPE, "%s: M=%d queries of H/G=%d heads: packed rows pass 2^31", fn, s->M, hpg);
    const double nc = (double)attn_nsa_num_cmp(s->N, p), rows = (double)s->M * hpg;
    const double per_block = p->heads_share_selection ? (hpg <= kBr ? kBr / hpg * hpg : hpg) : kBr;
    const double cmp_grid = (double)s->B * ceil(rows / per_block) * s->G, lin_grid = 2.0 * s->B * s->G * ceil(nc / kLinTokens);
    const double slc_grid = (double)s->B * L * ceil((p->heads_share_selection ? hpg : 1) / (double)kHeads) * s->M;
    if (cmp_grid > 2147483647.0 || lin_grid > 2147483647.0 || slc_grid > 2147483647.0)
        return attn_fail(ATTN_ERR_BAD_SHAPE, "%s: B=%d M=%d H=%d G=%d: a launch would need 2^31 blocks or more", fn, s->B,
                         s->M, s->H, s->G);
    return ATTN_OK;
}

bool misaligned(const void *ptr, size_t bytes) { return ((uintptr_t)ptr % bytes) != 0; }

/* The shared memory one block may use on this GPU (the opt-in limit). */
int smem_limit(int *bytes)
{
    int dev = 0;
    int st = attn_cuda_status(cudaGetDevice(&dev), "cudaGetDevice");
    if (!st)
        st = attn_cuda_status(cudaDeviceGetAttribute(bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev),
                              "shared memory limit");
    return st;
}

/* Launch 1: k_cmp (and v_cmp when in.tensors = 2) of `nc` > 0 tokens. */
template <int D>
int launch_compress(const attn_shape *sh, const attn_nsa_params *p, long nc, const CmpInputs &in, cudaStream_t stream)
{
    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: mean mode: compress_mean_kernel<D> over tensors * B * NC * G * D / 8 pieces, 256 threads a block
     * (grid_for caps the grid: it loops). Linear mode: compress_linear_kernel<D> with 2 * 64 * 64 * 2 + 2 * 64
     * * D * 2 bytes of dynamic shared memory (cudaFuncSetAttribute), one block per (64 tokens, tensor, g, b):
     * B * G * tensors * ceil(NC / 64) blocks of 128 threads. attn_cuda_launch_status after each. */
    if (p->mode == ATTN_NSA_MEAN) {
        const size_t pieces = (size_t)sh->B * nc * sh->G * (D / 8) * in.tensors;
        compress_mean_kernel<D><<<grid_for(pieces, 256), 256, 0, stream>>>(*sh, p->l, p->d, nc, in);
        return attn_cuda_launch_status("compress_mean_kernel");
    }
    const int smem_bytes = 2 * kLinABytes + 2 * kLinK * D * 2;
    int st = attn_cuda_status(
        cudaFuncSetAttribute(compress_linear_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes),
        "cudaFuncSetAttribute (shared memory)");
    if (st) return st;
    const long tiles = (nc + kLinTokens - 1) / kLinTokens;
    const unsigned blocks = (unsigned)(tiles * in.tensors * sh->G * sh->B);
    compress_linear_kernel<D><<<blocks, kThreads, smem_bytes, stream>>>(*sh, p->l, p->d, nc, in);
    return attn_cuda_launch_status("compress_linear_kernel");
    /* END SOLUTION */
}

/* Launch 2's fast path for the block ratios R = l / d, BS = l' / d; ATTN_ERR_BAD_ARGUMENT (nothing launched,
 * no error recorded) when its shared memory (Q, then the 8 score rows of NB blocks, and two K tiles) does
 * not fit this GPU's limit. (maybe_unused: the stub does not call it) */
template <int D, int R, int BS>
[[maybe_unused]] int launch_cmp_g16(const attn_shape *sh, CmpArgs a, int max_smem, cudaStream_t stream)
{
    const size_t rows_bytes = (8 * (size_t)a.nb * 4 + 1023) / 1024 * 1024, q_bytes = (size_t)kBr * D * 2;
    const size_t q_region = rows_bytes > q_bytes ? rows_bytes : q_bytes, bytes = q_region + 2 * (size_t)kBc * D * 2;
    if (bytes > (size_t)max_smem) return ATTN_ERR_BAD_ARGUMENT;
    a.q_region = (int)q_region;
    int st = attn_cuda_status(cudaFuncSetAttribute(cmp_select_g16_kernel<D, R, BS>,
                                                   cudaFuncAttributeMaxDynamicSharedMemorySize, max_smem),
                              "cudaFuncSetAttribute (shared memory)"); /* the cap, not this call's size: a graph
                                                                          captured with more stays valid */
    if (st) return st;
    const long chunks = ((long)sh->M * 16 + kBr - 1) / kBr;
    cmp_select_g16_kernel<D, R, BS><<<(unsigned)(sh->B * chunks * sh->G), kThreads, bytes, stream>>>(a);
    return attn_cuda_launch_status("cmp_select_g16_kernel");
}

/* Launch 2: the fast path when it takes the call (shared lists, H/G = 16, l / d in {1, 2}, l' / d in {1, 4},
 * its shared memory fits), else the general kernel. */
template <int D>
int launch_cmp_select(const attn_shape *sh, const attn_nsa_params *p, CmpArgs a, cudaStream_t stream)
{
    int max_smem = 0;
    int st = smem_limit(&max_smem);
    if (st) return st;
    const int hpg = sh->H / sh->G;
    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: the general kernel first: lists_per_block = shared ? max(1, 128 / (H/G)) : 128; a grid of B *
     * ceil(M H/G / (lists_per_block rows_per_list)) * G blocks of 128 threads; dynamic shared memory:
     * max(128 D 2, 128 72 4) + 2 * 64 * D * 2 bytes (cudaFuncSetAttribute). The fast path (optional) goes
     * first for shared lists with H/G = 16: launch_cmp_g16<D, r, bs> when r = l / d and bs = l' / d are 1 or
     * 2 and 1 or 4; ATTN_ERR_BAD_ARGUMENT from it means "not taken". */
    if (p->heads_share_selection && hpg == 16) {
        const int r = p->l / p->d, bs = p->l_sel / p->d;
        st = ATTN_ERR_BAD_ARGUMENT;
        if (r == 1 && bs == 1) st = launch_cmp_g16<D, 1, 1>(sh, a, max_smem, stream);
        else if (r == 1 && bs == 4) st = launch_cmp_g16<D, 1, 4>(sh, a, max_smem, stream);
        else if (r == 2 && bs == 1) st = launch_cmp_g16<D, 2, 1>(sh, a, max_smem, stream);
        else if (r == 2 && bs == 4) st = launch_cmp_g16<D, 2, 4>(sh, a, max_smem, stream);
        if (st != ATTN_ERR_BAD_ARGUMENT) return st; /* it ran, or failed */
    }
    a.lists_per_block = p->heads_share_selection ? (hpg < kBr ? kBr / hpg : 1) : kBr;
    const long rows_per_block = (long)a.lists_per_block * (p->heads_share_selection ? hpg : 1);
    const long chunks = ((long)sh->M * hpg + rows_per_block - 1) / rows_per_block;
    constexpr int kQBytes = kBr * D * 2, kStageBytes = kBr * kStage * 4;
    const int bytes = (kQBytes > kStageBytes ? kQBytes : kStageBytes) + 2 * kBc * D * 2;
    st = attn_cuda_status(cudaFuncSetAttribute(cmp_select_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes),
                          "cudaFuncSetAttribute (shared memory)");
    if (st) return st;
    cmp_select_kernel<D><<<(unsigned)(sh->B * chunks * sh->G), kThreads, bytes, stream>>>(a);
    return attn_cuda_launch_status("cmp_select_kernel");
    /* END SOLUTION */
}

/* Whether launch 3's fast path serves this call, and if not, why (NULL: it does): shared lists, H/G = 16,
 * D = 128, l' = 64, n <= 16, a window of at most 16 blocks ((w - 1) / 64 + 2 <= 16), a grid of at most 65535
 * batches, token rows addressable by the copy engine's 32-bit coordinates, and a GPU and a binary with
 * sm_90 code. */
const char *window_refusal(const attn_shape *sh, const attn_nsa_params *p)
{
    if (!p->heads_share_selection || sh->H / sh->G != kHeads || sh->D != 128 || p->l_sel != 64 || p->n > kWinMaxN ||
        (p->w - 1) / 64 + 2 > kWinSlots - kWinMaxN || sh->B > 65535 || (long long)sh->B * sh->N >= (1ll << 31))
        return "it takes shared lists with H/G = 16, D = 128, l' = 64, n <= 16, w <= 960, B <= 65535 and B N < 2^31";
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
        (void)cudaGetLastError();
        return "no CUDA device answered for its compute capability";
    }
    cudaFuncAttributes fa;
    if (major < 9 || cudaFuncGetAttributes(&fa, slc_swa_window_kernel) != cudaSuccess || fa.binaryVersion < 90) {
        (void)cudaGetLastError();
        return "it needs a GPU of compute capability 9.0 or newer and a build with sm_90 code";
    }
    return NULL;
}

/* Launch 3: the fast path when window_refusal says yes and the copy engine's maps can be encoded, else the
 * general kernel. */
template <int D>
int launch_slc_swa(const attn_shape *sh, const attn_nsa_params *p, SlcArgs a, cudaStream_t stream)
{
    int st = ATTN_OK;
    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: the general kernel: a.chunks = ceil(heads per list / 16), a grid of B * L * chunks * M blocks of 128
     * threads, slc_smem_bytes<D>() of dynamic shared memory. The fast path (optional) first, when
     * window_refusal(sh, p) is NULL: K and V tensor maps (attn_kv_tensor_map, boxes of 64 x 64 with the 128-byte
     * swizzle), kWinSmem bytes, a grid of (ceil(M / 8) * G, B) blocks of 256 threads. */
    CUtensorMap tk, tv;
    if (D == 128 && !window_refusal(sh, p) && attn_kv_tensor_map(&tk, a.k, sh, 64, 64, 1) == ATTN_OK &&
        attn_kv_tensor_map(&tv, a.v, sh, 64, 64, 1) == ATTN_OK) {
        st = attn_cuda_status(
            cudaFuncSetAttribute(slc_swa_window_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kWinSmem),
            "cudaFuncSetAttribute (shared memory)");
        if (st) return st;
        const int windows = (sh->M + kWinWarps - 1) / kWinWarps;
        const dim3 grid((unsigned)windows * (unsigned)sh->G, (unsigned)sh->B);
        slc_swa_window_kernel<<<grid, kWinThreads, kWinSmem, stream>>>(tk, tv, a, windows);
        return attn_cuda_launch_status("slc_swa_window_kernel");
    }
    const int per_list = p->heads_share_selection ? sh->H / sh->G : 1;
    a.chunks = (per_list + kHeads - 1) / kHeads;
    constexpr int kSmem = slc_smem_bytes<D>();
    st = attn_cuda_status(cudaFuncSetAttribute(slc_swa_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem),
                          "cudaFuncSetAttribute (shared memory)");
    if (st) return st;
    const size_t blocks = (size_t)sh->B * attn_nsa_list_heads(sh, p) * a.chunks * sh->M;
    slc_swa_kernel<D><<<(unsigned)blocks, kThreads, kSmem, stream>>>(a);
    return attn_cuda_launch_status("slc_swa_kernel");
    /* END SOLUTION */
}

template <int D>
int launch_forward(const attn_shape *sh, const attn_nsa_params *p, const Layout &lay, const uint16_t *q,
                   const uint16_t *k, const uint16_t *v, const uint16_t *w_k, const uint16_t *w_v,
                   const uint16_t *pos, const float *g_cmp, const float *g_slc, const float *g_swa, uint16_t *o,
                   float *lse_cmp, float *lse_slc, float *lse_swa, int32_t *lists, uint8_t *ws, cudaStream_t stream)
{
    const long nc = attn_nsa_num_cmp(sh->N, p);
    const int linear = p->mode == ATTN_NSA_LINEAR;
    uint16_t *k_cmp = reinterpret_cast<uint16_t *>(ws + lay.k_cmp), *v_cmp = reinterpret_cast<uint16_t *>(ws + lay.v_cmp);
    const CmpInputs in = {k, v, linear ? w_k : nullptr, linear ? w_v : nullptr, linear ? pos : nullptr, k_cmp, v_cmp, 2};
    CmpArgs ca = {*sh, *p, nc, attn_nsa_num_blocks(sh->N, p), attn_softmax_scale(sh) * kLog2e, 0, 0, q, k_cmp, v_cmp,
                  g_cmp, o, lse_cmp, reinterpret_cast<float *>(ws + lay.scores), lists};
    const SlcArgs sa = {*sh, p->l_sel, p->n, p->w, p->heads_share_selection, 1, attn_softmax_scale(sh) * kLog2e, q, k, v,
                        lists, g_slc, g_swa, o, lse_slc, lse_swa};
    (void)in, (void)ca, (void)sa;
    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: three launches on `stream`, in this order: launch_compress<D> when NC > 0 (a grid of 0 blocks is an
     * error), launch_cmp_select<D>, launch_slc_swa<D>; return the first status that is not ATTN_OK. */
    int st = nc > 0 ? launch_compress<D>(sh, p, nc, in, stream) : ATTN_OK;
    if (!st) st = launch_cmp_select<D>(sh, p, ca, stream);
    if (!st) st = launch_slc_swa<D>(sh, p, sa, stream);
    return st;
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
    if ((st = check_limits("nsa_forward_cuda", shape, p)) != ATTN_OK) return st;
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
    /* HINT: CMP first compresses batch b's keys into the workspace, as the forward does: launch_compress<D> with
     * a copy of the shape with B = 1, k + b*N*G*D (w_k, pos in linear mode) and tensors = 1, when NC > 0; its keys
     * are then token c of kv group g at workspace + g*D + c*G*D. SLC and SWA read k + b*N*G*D + g*D directly.
     * Then weights_kernel over the M*cols entries (nothing to launch when there are none). */
    const int g = h / (shape->H / shape->G);
    const uint16_t *keys = k + (size_t)b * shape->N * stride + (size_t)g * shape->D;
    if (kind == NSA_WEIGHTS_CMP) {
        attn_shape one = *shape;
        one.B = 1;
        uint16_t *k_cmp = static_cast<uint16_t *>(workspace);
        const CmpInputs in = {k + (size_t)b * shape->N * stride, nullptr, linear ? w_k : nullptr, nullptr,
                              linear ? pos : nullptr, k_cmp, nullptr, 1};
        if (nc > 0) {
            st = shape->D == 64 ? launch_compress<64>(&one, p, nc, in, stream) : launch_compress<128>(&one, p, nc, in, stream);
            if (st) return st;
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
