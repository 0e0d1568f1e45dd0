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
    /* TODO (about 5 lines): none while t < l - 1; then one more every d positions: (t - (l - 1)) / d + 1, capped at NC. */
    return 0;
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
    /* TODO (about 25 lines): lesson 07's mean kernel over both tensors: flat index x over 2 * B * NC * G * (D / 8) pieces;
     * the second half are the values (x - per_tensor). Piece e: c = e % (D/8), then g, then i, then b; sum
     * the l rows kv + ((b*N + i*d + r)*G + g)*D + 8c (one uint4 = 8 bf16 each, in fp32), times 1/l, 8 bf16 to
     * out + 8e. Every offset in size_t. */
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

    /* TODO (about 95 lines): lesson 07's compress_linear_kernel, with the block's (tile, tensor, g, b) unpacked from blockIdx.x
     * (tile fastest, then the tensor: 0 keys with w_k and pos, 1 values with w_v and no pos). Thread tid stages
     * 16-byte piece tid % 8 of X rows tid / 8 + 16 it (it = 0..3), zeros for tokens >= NC; W rows by cp.async;
     * loop: wait + barrier, issue step s+1's loads, mma on step s (X like Q, W like V with ldmatrix.trans), store
     * step s+1's X. Epilogue: rows gid, gid + 8 of the warp's 16 tokens as bf16 pairs. */
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
    /* TODO (about 15 lines): lane (gid, tig) holds rows (mt, rr) and columns nt * 8 + 2 tig + e of each n8 tile; the entry is
     * s[mt][nt][2 rr + e]; the row's position t = w.pos(R), once per row. */
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
    /* TODO (about 50 lines): lesson 07's cmp_attention_kernel on these rows, then its epilogue by hand. (1) The compressed K/V of
     * (b, g) start at ((b * NC) * G + g) * D: batch b is NC tokens further, not N. (2) Tiles: ceil(cmp_visible(t
     * of the last row) / 64), possibly 0 (then load no K at all); mask_cmp on a tile that reaches past what the
     * first row sees, with each lane row's t (rows past Rc_end: the last row's t). (3) After the loop:
     * cp_async_wait_all (with no tile the Q copy is still in flight), acc.sum_rows(), then per lane row lse2, the
     * gate g_cmp[w.row(H, R)] (0 past the end), acc.rescale(mt, rr, l > 0 ? gate / l : 0) (a row without tokens
     * gets o_cmp = 0, never 0 / 0), lse_cmp[(b H + h) M + i] = lse2 ln 2 from lane tig = 0 when asked; then
     * flash::store_o into o. */
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
    /* TODO (about 45 lines): cur + 1 <= n: write 0 .. cur, then -1. Otherwise mark the forced blocks (0, cur - 1, cur), then
     * n - 3 rounds of a warp argmax over the unmarked blocks (the largest score; among equal scores the lowest
     * index), each marking its winner; then a ballot over the marked blocks, in order. Lesson 08's rank_list. */
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

    /* TODO (about 110 lines): 1. the block: rows_per_list = shared ? H/G : 1, rows per block = lists_per_block * rows_per_list;
     *    blockIdx.x = (b * chunks + (chunks - 1 - chunk)) * G + g. Zero the score rows [0, cur] of the lists
     *    that rank (cur + 1 > n).
     * 2. per chunk of 128 rows: cmp_attention (pass 1); then pass 2: wait + barrier, Q fragments into registers
     *    (flash::load_q_fragments), the first K tile, barrier (Q's bytes become the staging). Per tile: wait +
     *    barrier, prefetch the next K tile, flash::scores, p = 2^(s scale_log2 - lse2) for tokens < the row's
     *    visible count (else 0) as float2 into the staging, barrier, then a thread per (list, block j the
     *    tile's tokens reach, j <= cur): the sum above into a.scores. A barrier after the chunk.
     * 3. barrier, then a warp per list: rank_list on its row, into a.lists. */
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
    /* TODO (about 10 lines): token x = 2 nt + e of the lane is s[nt][2 rr + e]; it is visible when T0 + 16 tig + x < vis. The
     * common case (T0 + 64 <= vis) needs no compare. */
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
    /* TODO (about 30 lines): the r - 1 tokens before the lane's first from lane tig - 1 by __shfl_sync (tig 0: carry; every lane
     * passes its last ones on: the next tile's carry). Token x counts in w(x) = min(x + r - 1, c1) - max(x, c0)
     * + 1 of block [c0, c1]'s units: add the tokens of equal weight first, then each weight class with one FMA. */
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

    /* TODO (about 100 lines): optional, after cmp_select_kernel works: blockIdx.x = (b * chunks + (chunks - 1 - chunk)) * G + g
     * with 8 positions (128 rows) per chunk; cmp_attention for the block's rows; then lesson 08's
     * select_g16_kernel loop on the permuted K tiles (KTileCopy): per m16 tile (a position) row_probs of rows 0
     * and 1 added, lane_block_sums, the reduce-scatter over lane masks 16, 8, 4, += into the warp's score row;
     * rank_list per position. */
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
    /* TODO (about 5 lines): clip [first, last] to [s0, s0 + 63]; n = its length (0: no bits); (2^n - 1) << (start - s0), with
     * n = 64 as all ones (a shift by 64 is undefined). */
    return 0;
}

/* Index of the first usable entry of list[from .. n): a negative entry ends the list; a block that starts
 * after t has no visible key and is skipped. n when none is left (lesson 09). */
__device__ __forceinline__ int next_entry(const int32_t *list, int from, int n, long t, int l_sel)
{
    /* TODO (about 5 lines): walk from `from`: j = list[e]; j < 0 ends the list (return n); (long)j * l_sel <= t is the answer;
     * anything else is skipped. */
    return n;
}

/* The first window tile at or after s0 (64-aligned) that holds a key of the window [lo, t] in no listed
 * block; e = -2 when there is none. */
__device__ __forceinline__ Tile window_tile(const int32_t *list, int n, long t, long lo, int l_sel, long s0)
{
    /* TODO (about 10 lines): for each tile s0, s0 + 64, ... up to t: the listed keys (key_bits of every usable entry's block
     * j l' .. j l' + l' - 1), then swa = key_bits(s0, lo, t) & ~listed; the first tile with swa != 0 is the
     * answer (slc = 0, e = -1). */
    return Tile{s0, 0ull, 0ull, -2};
}

/* Tile s0 of the block of list entry e: the selected branch counts its keys up to t (the token mask in the
 * block holding t), the window those of them at or after lo. */
__device__ __forceinline__ Tile selected_tile(const int32_t *list, int e, long s0, long t, long lo, int l_sel)
{
    /* TODO (about 5 lines): the block's keys first = j l' .. last = min(j l' + l' - 1, t); slc = key_bits(s0, first, last),
     * swa = key_bits(s0, max(first, lo), last). */
    return Tile{s0, 0ull, 0ull, -2};
}

/* The tile after `cur` in the walk (the first one for cur.e = -3). */
__device__ __forceinline__ Tile next_tile(const Tile &cur, const int32_t *list, int n, long t, long lo, int l_sel)
{
    /* TODO (about 10 lines): a selected tile goes on in its block while s0 + 64 <= its last key (min(j l' + l' - 1, t)), then to
     * the next usable entry's first tile (next_entry); after the last entry, the window from its 64-aligned
     * first tile (lo / 64) * 64; a window tile goes on from s0 + 64. */
    return Tile{0, 0ull, 0ull, -2};
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
    /* TODO (about 35 lines): acc.sum_rows(); barrier (the bytes are the K/V tiles, or the other branch's partials); each warp
     * writes its rows gid, gid + 8: m and l (tig 0) and O (float2 at columns dt 8 + 2 tig); barrier; then
     * flash::merge_weights over the 4 warps' (m, l) of row r, and for r < rows: res += gate[r] / l *
     * sum_u f_u O_u (float4 reads), lse = ln 2 (m scale_log2 + log2 l) or -inf when l = 0 (and then no o). */
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

    /* TODO (about 90 lines): 1. the block: unpack blockIdx.x (see above); rows = min(16, heads per list - 16 chunk), head0, g =
     *    head0 / (H/G), t, lo = max(0, t - w + 1), the list (b, i, list). Q [rows][D] into q_s (zeros below).
     * 2. the walk: cur = next_tile(Tile{0, 0, 0, -3}); the first K tile (limit t + 1); wait, barrier, Q
     *    fragments. Per tile: nxt = next_tile(cur); wait, barrier, V; the warp's 16 bits of cur.slc and cur.swa
     *    (>> 16 warp); with any: flash::scores, then per branch a copy masked by its bits (mask_bits, skipped for
     *    all ones) and update_skip_unit_alpha; wait, barrier, next K; accumulate each branch that had bits.
     * 3. merge_branch for the selected branch (g_slc, lse_slc), then the window (g_swa, lse_swa), into one res
     *    per thread; res + the bf16 o already there (4 at a time), as bf16. */
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
            /* TODO (about 20 lines): the token mask first (keys after t hide from both branches: only the block holding t has
             * them), then the selected branch (update_skip_unit_alpha, pv), then, for the window, keys before lo
             * hidden too and the window's state. P is one array reused by the two branches. */
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
        /* TODO (about 40 lines): sum_rows() for both states; per row rr (r = gid + 8 rr): w_slc = l_slc > 0 ? g_slc[r] / l_slc : 0,
         * the same for the window; per k = 0..3 the lane's packed pairs of n8 tiles 4k + x (x = 0..3) of w_slc
         * O_slc + w_swa O_swa, the quad transpose of lesson 09's PositionSoftmax::store (shuffles with lane
         * tig ^ sft), then the 16 bytes of o at row r, columns (4k + tig) 8 .. + 7: added, rounded, stored. */
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

    /* TODO (about 90 lines): optional, once slc_swa_kernel passes; lesson 09's selected_window_kernel with 32 slots per warp.
     * (1) Slots: lane e < 16 reads list entry e (a negative entry ends the list, a block with j 64 > t is
     * skipped); lane 16 + x is window block lo / 64 + x when it is <= t / 64 and not on the list (16 shuffles
     * of the list lanes' blocks). Valid slots write key (block << 32 | warp 32 + lane), the others all ones.
     * (2) The bitonic sort, a barrier after every step. (3) Union indices as in lesson 09, every warp holding
     * 32 keys (misc[warp] the firsts of each warp, misc[8] the union's size). (4) Each warp ranks its union
     * indices (32 shuffles) and keeps the r-th, | kSlcSlot for a list slot, in lane r. Q to registers, barrier,
     * thread 0 issues the first kRing union blocks. (5) The walk: wait for the stage to hold u, mbar_wait,
     * pb.tile(stage, s0, t, lo, list slot?, s0 + 63 >= lo), count down, refill (lesson 09). (6) pb.store. */
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
    /* TODO (about 25 lines): x = i * cols + col; t = N - M + i; the row's lse at (b*H + h)*M + i. Visible: CMP col*d + l - 1 <= t;
     * SLC col <= t and block col / l' on list (b, i, g or h) up to its first -1; SWA t - w + 1 <= col <= t.
     * weights[x] = visible and lse > -inf ? expf(scale * q.key - lse) : 0. */
}

/* One thread per key entry (i, s): the tokens c with c*d <= s <= c*d + l - 1 share their weight / l. */
__global__ void __launch_bounds__(256) spread_kernel(attn_shape sh, attn_nsa_params p, long nc,
                                                     const float *__restrict__ cmp_weights,
                                                     float *__restrict__ key_weights)
{
    /* TODO (about 10 lines): x = i * N + s; tokens c from ceil((s - l + 1) / d) (at least 0) to min(s / d, NC - 1); the sum of
     * cmp_weights[i * NC + c], divided by l. */
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
    /* TODO (about 15 lines): mean mode: compress_mean_kernel<D> over tensors * B * NC * G * D / 8 pieces, 256 threads a block
     * (grid_for caps the grid: it loops). Linear mode: compress_linear_kernel<D> with 2 * 64 * 64 * 2 + 2 * 64
     * * D * 2 bytes of dynamic shared memory (cudaFuncSetAttribute), one block per (64 tokens, tensor, g, b):
     * B * G * tensors * ceil(NC / 64) blocks of 128 threads. attn_cuda_launch_status after each. */
    return ATTN_ERR_NOT_IMPLEMENTED;
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
    /* TODO (about 20 lines): the general kernel first: lists_per_block = shared ? max(1, 128 / (H/G)) : 128; a grid of B *
     * ceil(M H/G / (lists_per_block rows_per_list)) * G blocks of 128 threads; dynamic shared memory:
     * max(128 D 2, 128 72 4) + 2 * 64 * D * 2 bytes (cudaFuncSetAttribute). The fast path (optional) goes
     * first for shared lists with H/G = 16: launch_cmp_g16<D, r, bs> when r = l / d and bs = l' / d are 1 or
     * 2 and 1 or 4; ATTN_ERR_BAD_ARGUMENT from it means "not taken". */
    return ATTN_ERR_NOT_IMPLEMENTED;
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
    /* TODO (about 20 lines): the general kernel: a.chunks = ceil(heads per list / 16), a grid of B * L * chunks * M blocks of 128
     * threads, slc_smem_bytes<D>() of dynamic shared memory. The fast path (optional) first, when
     * window_refusal(sh, p) is NULL: K and V tensor maps (attn_kv_tensor_map, boxes of 64 x 64 with the 128-byte
     * swizzle), kWinSmem bytes, a grid of (ceil(M / 8) * G, B) blocks of 256 threads. */
    return ATTN_ERR_NOT_IMPLEMENTED;
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
    /* TODO (about 5 lines): three launches on `stream`, in this order: launch_compress<D> when NC > 0 (a grid of 0 blocks is an
     * error), launch_cmp_select<D>, launch_slc_swa<D>; return the first status that is not ATTN_OK. */
    return ATTN_ERR_NOT_IMPLEMENTED;
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

    /* TODO (about 20 lines): CMP first compresses batch b's keys into the workspace, as the forward does: launch_compress<D> with
     * a copy of the shape with B = 1, k + b*N*G*D (w_k, pos in linear mode) and tensors = 1, when NC > 0; its keys
     * are then token c of kv group g at workspace + g*D + c*G*D. SLC and SWA read k + b*N*G*D + g*D directly.
     * Then weights_kernel over the M*cols entries (nothing to launch when there are none). */
    return ATTN_ERR_NOT_IMPLEMENTED;
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

    /* TODO (about 5 lines): one launch of spread_kernel over the M*N entries. */
    return ATTN_ERR_NOT_IMPLEMENTED;
}
