/*
 * selected_attention.cu - lesson 09, CUDA part: NSA selected-block attention, group-centric (bf16 in,
 * fp32 accumulation, bf16 out, fp32 lse).
 *
 * The idea (the NSA paper's kernel): with heads_share_selection = 1, the H/G query heads of kv group g
 * at one position t read the same n blocks of the same K/V. Stack those heads as the 16 rows of one
 * m16 tile: every selected block is then loaded once for the group and multiplied against all of its
 * heads at once. The rows of a tile all sit at position t, so the causal rule s <= t is the same for
 * every row, and a key tile is either wholly visible or cut at t for all of them.
 *
 * Parallelisation
 *   grid   one block per (b, query i, list, chunk of 16 heads): the rows are the heads that read the
 *          list (H/G of them, or 1 with per-head lists), 16 at a time; batch in grid.y. The positions of
 *          one list run next to each other, last first, so a kv group's K/V stays in L2 while its
 *          positions are worked on, and neighbours that chose the same block find it there.
 *   block  4 warps. A tile holds 64 keys of a selected block; warp w owns its keys 16w .. 16w + 15 and
 *          keeps its own online softmax (running max, sum and output) over the keys it owned in every
 *          tile: a split of the keys, as in flash decoding. At the end the four partial softmaxes are
 *          merged through shared memory. A lane holds, as in lesson 03, rows gid and gid + 8 of the
 *          tile and column pair tig of each n8 tile.
 *   shared Q [16][D] (copied once, then held as mma fragments in registers), one K and one V tile
 *          [64][D] (bf16, swizzled; cp.async: V_j loads during S = Q K_j^T, K_{j+1} during P V_j). After
 *          the loop the same bytes hold the partial results [4 warps][16 rows][D + 8] fp32 and each
 *          warp's row max and sum.
 * A selection block of l' keys is ceil(l' / 64) tiles (one for the paper's l' = 64); keys past the
 * block's end or past t are zero-filled on load and masked to -inf.
 *
 * The fast path (selected_window_kernel, further down; optional task 6): for shared lists with H/G = 16,
 * D = 128, l' = 64 and n <= 16 on sm_90, a block serves 8 neighbouring positions and loads each tile
 * that any of them chose once, through the copy engine. This kernel serves every other call.
 */
#include <cuda_runtime.h>
#include <math.h>

#include "attn_gpu.h"
#include "ptx.cuh"
#include "selected_attention.h"

using namespace ptx;

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kRows = 16;                  /* query rows per block: one m16 tile of heads at one position */
constexpr int kBc = 64;                    /* keys per tile */
constexpr int kKeysPerWarp = kBc / kWarps; /* 16: two n8 tiles of S, one k16 step of P V */
constexpr int kPad = 8;                    /* floats after each row of a partial output (no bank conflicts) */
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
static_assert(kKeysPerWarp == 16, "the fragment code below assumes 16 keys per warp");

/* Copy K or V rows [first, first + kBc) of one kv head into a swizzled tile; rows at or past `limit`
 * are zero-filled (not read). A thread copies chunk c of rows r0, r0 + step, ...: the 64-bit row
 * arithmetic is done once per tile, and each copy costs an int compare and an add. */
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

/* Copy the block's `rows` query rows (consecutive heads of one position) into a swizzled [16][D] tile,
 * zeros below them. */
template <int D>
__device__ __forceinline__ void load_q(uint32_t q_s, const uint16_t *q_rows, int rows)
{
    constexpr int kChunks = D / 8, kRowStep = kThreads / kChunks;
    const int r0 = threadIdx.x / kChunks, c = threadIdx.x % kChunks;
#pragma unroll
    for (int it = 0; it < (kRows + kRowStep - 1) / kRowStep; ++it) {
        const int r = r0 + it * kRowStep;
        if (r >= kRows) break;
        const bool valid = r < rows;
        cp_async_16(q_s + swizzle<D>(r, c), valid ? q_rows + (size_t)r * D + c * 8 : q_rows, valid);
    }
}

/* What a block works on. */
struct Work {
    int b, i;   /* batch, query index */
    long t;     /* its position N - M + i */
    int list;   /* which list of (b, i): a kv group (shared selection) or a query head */
    int head0;  /* first query head of the block's rows */
    int rows;   /* rows in use, 1..16: heads head0 .. head0 + rows - 1 */
    int g;      /* their kv head */
};

/* chunks = ceil(heads per list / 16) blocks share one list. */
__device__ __forceinline__ Work find_work(const attn_shape &sh, int share, int chunks)
{
    Work w;
    /* TODO (about 10 lines): blockIdx.x = (list * chunks + chunk) * M + (M - 1 - i): neighbouring blocks are neighbouring
     * positions of one list, the last first. A list is read by per_list = share ? H/G : 1 heads, the
     * first being list * per_list; chunk c takes 16 of them from c * 16 on. Their kv head is
     * head0 / (H/G). Batch: blockIdx.y. */
    w.b = w.i = w.list = w.head0 = w.rows = w.g = 0; w.t = 0;
    return w;
}

/* Index of the first usable entry of list[from .. n): a negative entry ends the list; a block that
 * starts after t (j * l' > t, which includes every block past the last key) has no visible key and is
 * skipped. n when none is left. */
__device__ __forceinline__ int next_entry(const int32_t *list, int from, int n, long t, int l_sel)
{
    /* TODO (about 5 lines): walk from `from`: j = list[e]; j < 0 ends the list (return n); (long)j * l_sel <= t is the
     * answer; anything else is skipped. */
    return n;
}

/* Lesson 03's online-softmax step for the two rows a lane holds (gid and gid + 8), over NT n8 tiles of
 * raw scores s (probabilities 2^(s * scale_log2 - m); -inf hides a key): the running max m_i (score
 * units) and this lane's part of the running sum l_i are updated, the DT n8 tiles of o_acc rescaled,
 * and P leaves as NT / 2 bf16 A fragments of the P V product, p[4 f .. 4 f + 3] for keys 16 f .. 16 f + 15
 * (a0 a1: n8 tile 2 f, a2 a3: n8 tile 2 f + 1). Both kernels below use it. */
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

/* One warp's share of a block: the Q fragments, and an online softmax over the warp's 16 keys of
 * every tile. Everything is inlined, so the arrays stay in registers. */
template <int D>
struct WarpSoftmax {
    static constexpr int kDTiles = D / 8;
    static constexpr int kRowBytes = D * 2;
    uint32_t qa[D / 16][4];   /* Q as A fragments, one per k16 step of D */
    float o_acc[kDTiles][4];  /* rows gid, gid + 8 of O (unnormalised) */
    float m_i[2], l_i[2];     /* running max (score units) and this lane's part of the running sum */
    uint32_t k_row, v_row; /* this lane's ldmatrix row in the K and V tiles */
    int k_chunk, v_chunk;  /* and the 16-byte chunk it reads in the first k16 step (before the swizzle) */

    __device__ __forceinline__ void init(uint32_t k_s, uint32_t v_s)
    {
        const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
        for (int dt = 0; dt < kDTiles; ++dt) o_acc[dt][0] = o_acc[dt][1] = o_acc[dt][2] = o_acc[dt][3] = 0.f;
        m_i[0] = m_i[1] = -INFINITY;
        l_i[0] = l_i[1] = 0.f;
        /* lesson 03's ldmatrix addresses, moved to the warp's 16 keys (16w is a multiple of 8: same swizzle) */
        k_row = k_s + (warp * kKeysPerWarp + lane % 8 + (lane / 16) * 8) * kRowBytes;
        v_row = v_s + (warp * kKeysPerWarp + lane % 8 + ((lane / 8) % 2) * 8) * kRowBytes;
        k_chunk = (lane / 8) % 2, v_chunk = lane / 16;
    }

    /* Byte offset in a swizzled row (row % 8 = lane % 8) of chunk c (c = 2 kk + k_chunk, ...). */
    __device__ __forceinline__ static uint32_t chunk_offset(int c)
    {
        return (uint32_t)(((c & ~7) | ((c & 7) ^ (threadIdx.x % 8))) * 16);
    }

    /* Q from its swizzled tile into registers: every warp needs all 16 rows, and reading them once
     * saves a third of the shared-memory traffic of every tile. */
    __device__ __forceinline__ void load_q_fragments(uint32_t q_s)
    {
        const int lane = threadIdx.x % 32;
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk)
            ldmatrix_x4(qa[kk], q_s + (lane % 16) * kRowBytes + chunk_offset(2 * kk + lane / 16));
    }

    /* s = Q K^T for the warp's 16 keys of the K tile (raw dot products): s[nt] is n8 tile nt. */
    __device__ __forceinline__ void scores(float s[2][4]) const
    {
#pragma unroll
        for (int nt = 0; nt < 2; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
            uint32_t bk[4];
            ldmatrix_x4(bk, k_row + chunk_offset(2 * kk + k_chunk));
            mma_bf16(s[0], qa[kk], bk[0], bk[1]);
            mma_bf16(s[1], qa[kk], bk[2], bk[3]);
        }
    }

    /* The online-softmax update for the warp's keys of one tile (probabilities 2^(s * scale_log2 - m));
     * -inf hides a key. P leaves as the bf16 A fragment of the P V product. */
    __device__ __forceinline__ void softmax(float (&s)[2][4], uint32_t (&p)[4], float scale_log2)
    {
        online_softmax_step<2, kDTiles>(s, p, m_i, l_i, o_acc, scale_log2);
    }

    /* O += P V for the warp's 16 keys of the V tile: one k16 step. */
    __device__ __forceinline__ void accumulate(const uint32_t p[4])
    {
#pragma unroll
        for (int dp = 0; dp < D / 16; ++dp) {
            uint32_t bv[4];
            ldmatrix_x4_trans(bv, v_row + chunk_offset(2 * dp + v_chunk));
            mma_bf16(o_acc[2 * dp], p, bv[0], bv[1]);
            mma_bf16(o_acc[2 * dp + 1], p, bv[2], bv[3]);
        }
    }
};

/* Shared memory of a block: Q and one K and one V tile during the loop; the partial results after it. */
template <int D>
constexpr int smem_bytes()
{
    return (kRows * D * 2 + 2 * kBc * D * 2) > (kWarps * kRows * (D + kPad) * 4 + 2 * kWarps * kRows * 4)
               ? (kRows * D * 2 + 2 * kBc * D * 2)
               : (kWarps * kRows * (D + kPad) * 4 + 2 * kWarps * kRows * 4);
}

template <int D>
__global__ void __launch_bounds__(kThreads, 4)
    selected_attention_kernel(attn_shape sh, int l_sel, int n_sel, int share, int chunks, float scale_log2,
                              const uint16_t *__restrict__ q, const uint16_t *__restrict__ k,
                              const uint16_t *__restrict__ v, const int32_t *__restrict__ indices,
                              uint16_t *__restrict__ o, float *__restrict__ lse)
{
    constexpr int kRowBytes = D * 2;
    extern __shared__ __align__(128) uint8_t smem[];
    const uint32_t q_s = smem_addr(smem), k_s = q_s + kRows * kRowBytes, v_s = k_s + kBc * kRowBytes;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gid = lane / 4, tig = lane % 4;
    const Work w = find_work(sh, share, chunks);
    const int L = share ? sh.G : sh.H; /* lists per query */
    const int32_t *list = indices + (((size_t)w.b * sh.M + w.i) * L + w.list) * n_sel;
    const size_t kv_stride = (size_t)sh.G * D;
    const uint16_t *k_bg = k + ((size_t)w.b * sh.N * sh.G + w.g) * D;
    const uint16_t *v_bg = v + ((size_t)w.b * sh.N * sh.G + w.g) * D;
    const size_t row0 = ((size_t)w.b * sh.M + w.i) * sh.H + w.head0; /* the block's first row of q and o */

    WarpSoftmax<D> ws;
    ws.init(k_s, v_s);
    load_q<D>(q_s, q + row0 * D, w.rows);

    /* TODO (about 50 lines): lesson 06's list walk with two changes. (1) The unit is a tile of 64 keys, and a block of l'
     * keys is ceil(l' / 64) tiles: keep (e, s0, last) = (entry, first key of the tile, last key this
     * block shows position t: min(t, j * l' + l' - 1)); the next tile is s0 + 64 if that is <= last,
     * otherwise the first tile of next_entry(list, e + 1, ...). (2) Load tiles with limit last + 1 (no
     * key past t or the block is read) and mask keys > last to -INFINITY when s0 + 63 > last: the rule
     * is the same for all 16 rows. Before the loop: the first K, commit, wait, barrier,
     * ws.load_q_fragments(q_s). Per tile: wait, barrier, V, commit; ws.scores, mask, ws.softmax; wait,
     * barrier, next K, commit; ws.accumulate. A warp whose 16 keys all lie past `last` may skip its
     * three steps (not the barriers). */

    /* Merge the four warps' partial softmaxes: o = sum_w 2^(m_w - m) O_w / sum_w 2^(m_w - m) l_w, with
     * m the largest m_w (in base-2 units). */
    float *part_o = reinterpret_cast<float *>(smem);         /* [kWarps][kRows][D + kPad] */
    float *part_m = part_o + kWarps * kRows * (D + kPad);    /* [kWarps][kRows], score units */
    float *part_l = part_m + kWarps * kRows;                 /* [kWarps][kRows] */
    /* TODO (about 45 lines): reduce l_i over the 4 lanes of a row (shuffles, as in lesson 03's store). Barrier (nobody
     * still reads K or V, whose bytes these arrays reuse). Each warp writes its rows gid and gid + 8:
     * m_i and l (lane tig == 0) and o_acc[dt][2rr..2rr+1] at columns dt*8 + tig*2 (a float2). Barrier.
     * Then thread (r = tid / 8, c = tid % 8) owns row r: m = max_w m_w, f_w = 2^(m_w*scale_log2 - m*scale_log2)
     * (use 0 for m when it is -inf), l = sum_w f_w l_w, and for the columns d = 32 k + 4 c (float4 reads)
     * o = sum_w f_w O_w / l, stored as 4 bf16 if r < rows. lse = ln 2 * (m * scale_log2 + log2 l), or
     * -inf (and o = 0) when l = 0. */
}

/* ================================================================ the fast path: a window of 8 positions
 *
 * With shared lists, H/G = 16 and D = 128 (the paper's shape, and the course's bar) one warp can own a
 * whole position: its 16 heads are one m16 tile, and it takes all 64 keys of every tile (no merge at the
 * end). A block then serves a window of 8 neighbouring positions of one kv group, one per warp, and
 * loads every K/V tile that any of the 8 chose once for all of them. The selected branch is bound by
 * memory, not arithmetic: each (position, group) reads 512 KB of K and V from L2, and on the bar's
 * random lists 8 neighbours still share the three forced blocks and, early in the sequence, many chance
 * picks: at N = 64k the window loads about 0.7 of the tiles that 8 separate positions would, and on lists
 * with locality (a trained model's) far fewer.
 *
 *   union  the window's lists are sorted together (a bitonic sort of 128 keys, block << 32 | slot) into
 *          the ascending union of their blocks: blk[u], and upos[u], the first sorted entry of block u,
 *          so that upos[u + 1] - upos[u] is the number of entries (of the 8 lists) that chose block u.
 *   ring   kRing stages of one K/V tile pair (64 keys x 128 columns of K and of V: 32 KB), filled by the
 *          copy engine (TMA: four 8 KB tensor-map boxes with the 128-byte swizzle) in union order: union
 *          block u goes to stage u % kRing; full[stage] is an mbarrier that completes when its bytes
 *          have landed, slot_u[stage] says which union block the stage holds or awaits.
 *   warps  walk their own blocks in union order, independently: a warp waits only for the tiles it
 *          chose, computes, and counts the stage down (left[stage]). The warp that brings it to zero
 *          sends union block u + kRing to the stage. No block-wide barrier in the loop, so no warp idles
 *          on a tile it did not choose (a first version walked the union with a barrier per tile: on
 *          random lists three warps of four waited at every tile, and it was slower than one block per
 *          position).
 *   output each warp normalises its 16 rows, regroups them within each quad of lanes into 16-byte
 *          pieces and writes its 4 KB of o.
 * The time goes to waiting for tiles: how many bytes a multiprocessor has in flight sets the speed
 * (with 16 warps and 5 stages it was 15.6 ms at 64k, with 16 and 4 stages 17.2). So Q stays in
 * registers (all of a block's shared memory is ring: 7 stages, 224 KB) and the window is 8 positions.
 * Deadlock-free: the smallest union block not yet done always sits in its stage (everything kRing
 * before it is done), and its warps have finished all their earlier blocks. Each warp walks its blocks
 * sorted by union index, so a list that is not ascending cannot stall it (its duplicates count twice,
 * as the header says). Needs sm_90 (TMA, mbarrier transaction counts); elsewhere the launcher uses the
 * kernel above.
 */
constexpr int kWinWarps = 8;                    /* positions per block, one warp each */
constexpr int kWinThreads = kWinWarps * 32;     /* 256 */
constexpr int kWinMaxN = 16;                    /* list entries the fast path takes */
constexpr int kWinKeys = kWinWarps * kWinMaxN;  /* 128 sort keys */
constexpr int kRing = 7;                        /* K/V tile pairs resident or in flight */
constexpr int kBox = 64 * 64 * 2;               /* one TMA box: 64 keys x 64 columns, 8 KB */
constexpr int kPair = 4 * kBox;                 /* K and V of one 64-key tile, D = 128: 32 KB */
/* shared memory, from a 1024-byte aligned base (the 128-byte swizzle repeats every 1024 bytes) */
constexpr int kOffBlk = kRing * kPair;                   /* int blk[kWinKeys] */
constexpr int kOffUpos = kOffBlk + kWinKeys * 4;         /* uint16 upos[kWinKeys + 1] */
constexpr int kOffLeft = kOffUpos + (kWinKeys + 8) * 2;  /* int left[kRing] */
constexpr int kOffSlot = kOffLeft + 8 * 4;               /* int slot_u[kRing] */
constexpr int kOffFull = kOffSlot + 8 * 4;               /* uint64 full[kRing] */
constexpr int kOffMisc = kOffFull + 8 * 8;               /* int: distinct blocks per warp of the scan; union size */
constexpr int kWinSmem = kOffMisc + 8 * 4 + 1024;        /* + 1024: room to align the base */
static_assert(kRing <= 8 && kWinKeys / 32 < 8, "the bookkeeping arrays above hold 8 entries");
static_assert(kWinSmem <= 227 * 1024, "the fast path's shared memory must fit an H100 / H200 block");
static_assert(kWinKeys * 12 <= kPair && kWinWarps * kRows * 128 * 2 <= kPair,
              "the sort keys and union indices (stage 0) and the Q rows (stage 1) wait in the ring");

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define ATTN_HAVE_TMA 1
#else
#define ATTN_HAVE_TMA 0
#endif

#if ATTN_HAVE_TMA /* the kernel's pieces: compiled for sm_90 and later only */
/* Send union block u to its stage: record its number of users (upos[u + 1] - upos[u]) and its index,
 * then one expect-tx arrival and the four copies (K then V, columns 0-63 then 64-127) of the block's 64
 * token rows (row_base + blk[u] * 64 ..) of kv head g. Rows past the end of K are zero-filled by the
 * copy engine; keys past t are masked by each warp. */
__device__ __forceinline__ void issue_pair(const CUtensorMap *tk, const CUtensorMap *tv, uint32_t ring,
                                           uint32_t full, int *left, int *slot_u, const int *blk,
                                           const uint16_t *upos, int u, int row_base, int g)
{
    const int st = u % kRing;
    left[st] = upos[u + 1] - upos[u];
    atomicExch(&slot_u[st], u); /* an atomic: warps poll it (a plain store and load would race) */
    const uint32_t bar = full + 8 * st, dst = ring + st * kPair;
    const int row = row_base + blk[u] * 64;
    fence_proxy_async(); /* the stage was last read by ldmatrix (the generic proxy); the copy engine writes it next */
    mbar_arrive_expect_tx(bar, kPair);
    tma_load_3d(dst, tk, 0, g, row, bar);
    tma_load_3d(dst + kBox, tk, 64, g, row, bar);
    tma_load_3d(dst + 2 * kBox, tv, 0, g, row, bar);
    tma_load_3d(dst + 3 * kBox, tv, 64, g, row, bar);
}

/* Byte offset of 16-byte chunk c (0..15) of key row r in a TMA tile: two boxes of [64 rows][128 bytes],
 * chunk c % 8 of a row stored at (c % 8) ^ (r % 8) (the copy engine's 128-byte swizzle). */
__device__ __forceinline__ uint32_t tma_offset(int r, int c)
{
    return (uint32_t)((c >> 3) * kBox + r * 128 + (((c & 7) ^ (r & 7)) << 4));
}

/* One warp, one position: its 16 rows (heads) against all 64 keys of each tile, lesson 03's online
 * softmax with Q held as A fragments. A lane holds rows gid and gid + 8. */
struct PositionSoftmax {
    uint32_t qa[8][4];  /* Q, one A fragment per k16 step of D = 128 */
    float o_acc[16][4]; /* rows gid, gid + 8 of O (unnormalised), n8 tiles of D */
    float m_i[2], l_i[2];

    /* Q from the warp's swizzled [16][128] copy in shared memory. */
    __device__ __forceinline__ void init(uint32_t q_s)
    {
        const int lane = threadIdx.x % 32;
#pragma unroll
        for (int kk = 0; kk < 8; ++kk) ldmatrix_x4(qa[kk], q_s + swizzle<128>(lane % 16, 2 * kk + lane / 16));
#pragma unroll
        for (int dt = 0; dt < 16; ++dt) o_acc[dt][0] = o_acc[dt][1] = o_acc[dt][2] = o_acc[dt][3] = 0.f;
        m_i[0] = m_i[1] = -INFINITY;
        l_i[0] = l_i[1] = 0.f;
    }

    /* Keys s0 .. s0 + 63 of one stage (k_s: the K tile; V follows it), masked past `last`. */
    __device__ __forceinline__ void tile(uint32_t k_s, long s0, long last, float scale_log2)
    {
        const int lane = threadIdx.x % 32, tig = lane % 4;
        const uint32_t v_s = k_s + 2 * kBox;
        float s[8][4]; /* S = Q K^T, n8 tile nt = keys s0 + 8 nt .. */
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < 8; ++kk)
#pragma unroll
            for (int np = 0; np < 4; ++np) {
                uint32_t bk[4];
                ldmatrix_x4(bk, k_s + tma_offset(np * 16 + lane % 8 + (lane / 16) * 8, 2 * kk + (lane / 8) % 2));
                mma_bf16(s[2 * np], qa[kk], bk[0], bk[1]);
                mma_bf16(s[2 * np + 1], qa[kk], bk[2], bk[3]);
            }
        if (s0 + 63 > last) { /* the token causal rule cuts the block that holds t */
#pragma unroll
            for (int nt = 0; nt < 8; ++nt)
#pragma unroll
                for (int c = 0; c < 4; ++c) s[nt][c] = s0 + nt * 8 + tig * 2 + (c & 1) > last ? -INFINITY : s[nt][c];
        }
        uint32_t p[16]; /* P as four k16 A fragments */
        online_softmax_step<8, 16>(s, p, m_i, l_i, o_acc, scale_log2);
#pragma unroll
        for (int ks = 0; ks < 4; ++ks)
#pragma unroll
            for (int dp = 0; dp < 8; ++dp) {
                uint32_t bv[4];
                ldmatrix_x4_trans(bv, v_s + tma_offset(ks * 16 + lane % 8 + ((lane / 8) % 2) * 8, 2 * dp + lane / 16));
                mma_bf16(o_acc[2 * dp], &p[4 * ks], bv[0], bv[1]);
                mma_bf16(o_acc[2 * dp + 1], &p[4 * ks], bv[2], bv[3]);
            }
    }

    /* o = O / l in bf16 to the 16 contiguous rows at o_rows, lse of row r at lse_rows[r * lse_stride].
     * A lane holds two columns of each n8 tile; the four lanes of a quad swap them (a 4 x 4 transpose)
     * so that lane tig owns n8 tiles 4k + tig whole: 16-byte stores. A row that saw no key: o = 0,
     * lse = -inf. */
    __device__ __forceinline__ void store(uint16_t *o_rows, float *lse_rows, long lse_stride, float scale_log2)
    {
        const int lane = threadIdx.x % 32, gid = lane / 4, tig = lane % 4;
#pragma unroll
        for (int rr = 0; rr < 2; ++rr) {
            l_i[rr] += __shfl_xor_sync(0xffffffffu, l_i[rr], 1);
            l_i[rr] += __shfl_xor_sync(0xffffffffu, l_i[rr], 2);
            const float inv_l = l_i[rr] > 0.f ? 1.f / l_i[rr] : 0.f;
            const int r = gid + 8 * rr;
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                uint32_t mine[4], piece[4] = {0u, 0u, 0u, 0u}; /* mine[x]: this lane's columns of n8 tile 4k + x */
#pragma unroll
                for (int x = 0; x < 4; ++x)
                    mine[x] = pack_bf16(o_acc[4 * k + x][2 * rr] * inv_l, o_acc[4 * k + x][2 * rr + 1] * inv_l);
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
                *reinterpret_cast<uint4 *>(o_rows + r * 128 + (4 * k + tig) * 8) =
                    make_uint4(piece[0], piece[1], piece[2], piece[3]);
            }
            if (tig == 0)
                lse_rows[r * lse_stride] = l_i[rr] > 0.f ? (m_i[rr] * scale_log2 + log2f(l_i[rr])) * kLn2 : -INFINITY;
        }
    }
};
#endif

__global__ void __launch_bounds__(kWinThreads, 1)
    selected_window_kernel(const __grid_constant__ CUtensorMap tk, const __grid_constant__ CUtensorMap tv,
                           attn_shape sh, int n_sel, int windows, float scale_log2, const uint16_t *__restrict__ q,
                           const int32_t *__restrict__ indices, uint16_t *__restrict__ o, float *__restrict__ lse)
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
    int *uid_of = reinterpret_cast<int *>(smem + kWinKeys * 8); /* [warp][entry] */

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int g = blockIdx.x / windows, win = windows - 1 - (int)(blockIdx.x % windows); /* last window first */
    const int b = blockIdx.y, hpg = sh.H / sh.G;
    const int i = win * kWinWarps + warp; /* this warp's query; none when i >= M */
    const bool active = i < sh.M;
    const long t = (long)sh.N - sh.M + i;
    const size_t row0 = ((size_t)b * sh.M + i) * sh.H + (size_t)g * hpg; /* the warp's first row of q and o */
    const uint32_t q_s = base + kPair + warp * (kRows * 256);

    if (threadIdx.x == 0) {
        for (int st = 0; st < kRing; ++st) {
            mbar_init(full + 8 * st, 1);
            slot_u[st] = -1;
        }
        mbar_init_fence();
        misc[7] = 0; /* the union's size, should no list have an entry */
    }
    if (active) /* the warp's 16 rows of Q: heads 16 g .. 16 g + 15 of its position, 4 KB in a row */
#pragma unroll
        for (int it = 0; it < 8; ++it) {
            const int r = it * 2 + lane / 16, c = lane % 16;
            cp_async_16(q_s + swizzle<128>(r, c), q + (row0 + r) * 128 + c * 8, true);
        }
    cp_async_commit();
    PositionSoftmax ps;

    /* TODO (about 80 lines): optional (task 6), once selected_attention_kernel passes. (1) The warp's list: lane e < n
     * reads entry e; a negative entry ends the list (a ballot finds the first), a block with j * 64 > t
     * is skipped. Valid lanes write key (j << 32 | warp * 16 + e) to keys[warp * 16 + e], the others all
     * ones. Barrier. (2) A bitonic sort of the kWinKeys keys, a barrier after every step. (3) Thread x:
     * first = key valid and its block differs from keys[x - 1]'s; u = (firsts up to x, a ballot and the
     * counts of the warps before, in misc[]) - 1; uid_of[key & 0xffffffff] = u; if first: blk[u], upos[u]
     * = x; the last valid entry writes misc[7] = u + 1 and upos[u + 1] = x + 1. Barrier. (4) Each warp
     * ranks its union indices (16 shuffles) and keeps the r-th in lane r. cp_async_wait_all, __syncwarp,
     * ps.init(q_s). Barrier: stage 0 and 1 are free. (5) Thread 0 issues union blocks 0 .. min(nu, kRing)
     * - 1. (6) The loop over the warp's blocks: u, stage u % kRing; lane 0 polls slot_u[stage] (atomicAdd
     * of 0) until it is u; __syncwarp; mbar_wait(full + 8 * stage, (u / kRing) & 1); ps.tile(...);
     * __syncwarp; lane 0: __threadfence_block, atomicSub(&left[stage], 1), and if that was the last use
     * and u + kRing < nu, issue_pair for u + kRing. */
    if (active) ps.store(o + row0 * 128, lse + ((size_t)b * sh.H + (size_t)g * hpg) * sh.M + i, sh.M, scale_log2);
#endif
}

/* Whether the window kernel serves this call: shared lists, H/G = 16, D = 128, l' = 64, n <= 16, token
 * rows addressable by the copy engine's 32-bit coordinates, and a GPU and a binary with sm_90 code. */
static bool window_path_fits(const attn_shape *sh, const attn_nsa_params *p)
{
    if (!p->heads_share_selection || sh->H / sh->G != 16 || sh->D != 128 || p->l_sel != 64 || p->n > kWinMaxN ||
        (long long)sh->B * sh->N >= (1ll << 31))
        return false;
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
        (void)cudaGetLastError();
        return false;
    }
    cudaFuncAttributes fa;
    if (major < 9 || cudaFuncGetAttributes(&fa, selected_window_kernel) != cudaSuccess || fa.binaryVersion < 90) {
        (void)cudaGetLastError();
        return false;
    }
    return true;
}

/* 1: launched (or failed: *status says), 0: not taken. (maybe_unused: until task 6, a stub does not call it) */
[[maybe_unused]] static int launch_window(const attn_shape *sh, const attn_nsa_params *p, float scale_log2, const uint16_t *q,
                         const uint16_t *k, const uint16_t *v, const int32_t *indices, uint16_t *o, float *lse,
                         cudaStream_t stream, int *status)
{
    if (!window_path_fits(sh, p)) return 0;
    CUtensorMap tk, tv; /* K and V as (128 columns, G heads, B N tokens), boxes of 64 x 64 with the 128-byte swizzle */
    if (attn_kv_tensor_map(&tk, k, sh, 64, 64, 1) != ATTN_OK || attn_kv_tensor_map(&tv, v, sh, 64, 64, 1) != ATTN_OK)
        return 0; /* no encoder in this driver: the general kernel */
    *status = attn_cuda_status(
        cudaFuncSetAttribute(selected_window_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kWinSmem),
        "cudaFuncSetAttribute (shared memory)");
    if (*status) return 1;
    const int windows = (sh->M + kWinWarps - 1) / kWinWarps;
    const dim3 grid((unsigned)windows * (unsigned)sh->G, (unsigned)sh->B);
    selected_window_kernel<<<grid, kWinThreads, kWinSmem, stream>>>(tk, tv, *sh, p->n, windows, scale_log2, q,
                                                                    indices, o, lse);
    *status = attn_cuda_launch_status("selected_window_kernel");
    return 1;
}

template <int D>
int launch(const attn_shape *shape, const attn_nsa_params *p, float scale_log2, const uint16_t *q, const uint16_t *k,
           const uint16_t *v, const int32_t *indices, uint16_t *o, float *lse, cudaStream_t stream)
{
    constexpr int kSmem = smem_bytes<D>();
    int st = attn_cuda_status(
        cudaFuncSetAttribute(selected_attention_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem),
        "cudaFuncSetAttribute (shared memory)");
    if (st) return st;
    const int per_list = p->heads_share_selection ? shape->H / shape->G : 1;
    const int chunks = (per_list + kRows - 1) / kRows;
    const int lists = attn_nsa_list_heads(shape, p);
    const dim3 grid((unsigned)((long)shape->M * chunks * lists), (unsigned)shape->B);
    selected_attention_kernel<D><<<grid, kThreads, kSmem, stream>>>(*shape, p->l_sel, p->n, p->heads_share_selection,
                                                                    chunks, scale_log2, q, k, v, indices, o, lse);
    return attn_cuda_launch_status("selected_attention_kernel");
}

} // namespace

extern "C" int nsa_selected_attention_cuda(const attn_shape *shape, const attn_nsa_params *p, const uint16_t *q,
                                           const uint16_t *k, const uint16_t *v, const int32_t *indices, uint16_t *o,
                                           float *lse, cudaStream_t stream)
{
    int st = attn_check_shape(shape);
    if (st) return st;
    if ((st = attn_nsa_check(p)) != ATTN_OK) return st;
    if (!shape->causal)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT,
                         "nsa_selected_attention_cuda: selected attention is causal, shape->causal must be 1");
    if (!q || !k || !v || !indices || !o || !lse)
        return attn_fail(ATTN_ERR_NULL_POINTER,
                         "nsa_selected_attention_cuda: q, k, v, indices, o and lse must not be NULL");
    if (shape->D != 64 && shape->D != 128)
        return attn_fail(ATTN_ERR_UNSUPPORTED_D, "nsa_selected_attention_cuda: D=%d, this kernel supports 64 and 128",
                         shape->D);
    if (((uintptr_t)q | (uintptr_t)k | (uintptr_t)v | (uintptr_t)o) % 16 != 0 || (uintptr_t)indices % 4 != 0)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT,
                         "nsa_selected_attention_cuda: q, k, v and o must be 16-byte aligned, indices 4-byte aligned");
    const int per_list = p->heads_share_selection ? shape->H / shape->G : 1;
    const double blocks = (double)shape->M * ((per_list + kRows - 1) / kRows) * attn_nsa_list_heads(shape, p);
    if (shape->B > 65535 || blocks > 2147483647.0)
        return attn_fail(ATTN_ERR_BAD_SHAPE,
                         "nsa_selected_attention_cuda: B=%d must be <= 65535 and M * lists * ceil(heads per list / 16) "
                         "< 2^31 (here %.0f)",
                         shape->B, blocks);
    const float scale_log2 = attn_softmax_scale(shape) * kLog2e;
    (void)scale_log2;

    /* TODO (about 5 lines): once the kernel is written: launch<64>(...) or launch<128>(...) by shape->D. With task 6 (the
     * fast path) first: if (launch_window(shape, p, scale_log2, q, k, v, indices, o, lse, stream, &st))
     * return st; (it declines shapes and GPUs it does not serve). */
    return ATTN_ERR_NOT_IMPLEMENTED;
}
