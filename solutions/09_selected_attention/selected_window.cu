/*
 * selected_window.cu - lesson 09, CUDA part, optional task 6: the fast path of selected attention, a
 * window of 8 positions that share their tiles (sm_90: the copy engine and mbarriers).
 * nsa_selected_attention_window_cuda (selected_attention.h) is its entry point, and
 * nsa_selected_attention_cuda (selected_attention.cu) calls it first: every call it does not take
 * (ATTN_ERR_BAD_ARGUMENT), or every call while it is a stub (ATTN_ERR_NOT_IMPLEMENTED), goes to the
 * general kernel, which passes every test on its own.
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
 *          have landed, slot_u[stage] says which union block the stage holds or awaits. Its pieces
 *          (kRing, issue_pair, tma_offset) are in common/nsa_tiles.cuh: lesson 10 uses the same ring.
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
 * as the header says). Needs sm_90 (TMA, mbarrier transaction counts); elsewhere the entry point
 * returns ATTN_ERR_BAD_ARGUMENT, and nsa_selected_attention_cuda uses its general kernel.
 */
#include <cuda_runtime.h>
#include <math.h>

#include "attn_gpu.h"
#include "nsa_tiles.cuh" /* the copy-engine ring: kRing, kBox, kPair, issue_pair, tma_offset */
#include "ptx.cuh"
#include "selected_attention.h"
#include "selected_common.cuh" /* kRows, kLog2e, kLn2, check_arguments, online_softmax_step */

using namespace ptx;
using nsa::kBox;
using nsa::kPair;
using nsa::kRing;

namespace {

constexpr int kWinWarps = 8;                    /* positions per block, one warp each */
constexpr int kWinThreads = kWinWarps * 32;     /* 256 */
constexpr int kWinMaxN = 16;                    /* list entries the fast path takes */
constexpr int kWinKeys = kWinWarps * kWinMaxN;  /* 128 sort keys */
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

#if ATTN_HAVE_TMA /* the kernel's pieces: compiled for sm_90 and later only (ATTN_HAVE_TMA: nsa_tiles.cuh) */
using nsa::issue_pair; /* sends union block u to stage u % kRing: its users, its index, the four copies */
using nsa::tma_offset; /* byte offset of chunk c of key row r in a stage (the copy engine's swizzle) */

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

    /* BEGIN SOLUTION */
    /* HINT: optional (task 6), once selected_attention_kernel passes. (1) The warp's list: lane e < n
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
    int j = -1;
    if (active && lane < n_sel) j = indices[(((size_t)b * sh.M + i) * sh.G + g) * n_sel + lane];
    const unsigned ends = __ballot_sync(0xffffffffu, lane < n_sel && j < 0);
    const int n_list = ends ? __ffs(ends) - 1 : n_sel;
    const bool valid = active && lane < n_list && (long)j * 64 <= t;
    if (lane < kWinMaxN)
        keys[warp * kWinMaxN + lane] =
            valid ? (unsigned long long)(unsigned)j << 32 | (unsigned)(warp * kWinMaxN + lane) : ~0ull;
    __syncthreads();
    for (int k = 2; k <= kWinKeys; k <<= 1) /* bitonic sort, ascending: invalid keys (all ones) go last */
        for (int jj = k >> 1; jj > 0; jj >>= 1) {
            const int x = threadIdx.x, y = x ^ jj;
            if (x < kWinKeys && y > x) {
                const unsigned long long a = keys[x], c = keys[y];
                if ((a > c) == ((x & k) == 0)) keys[x] = c, keys[y] = a;
            }
            __syncthreads();
        }
    /* the union index of each sorted entry: the number of distinct blocks up to it, minus one */
    unsigned long long key = ~0ull;
    bool first = false;
    if (threadIdx.x < kWinKeys) {
        key = keys[threadIdx.x];
        first = key != ~0ull && (threadIdx.x == 0 || keys[threadIdx.x - 1] >> 32 != key >> 32);
    }
    const unsigned firsts = __ballot_sync(0xffffffffu, first);
    if (warp < kWinKeys / 32 && lane == 0) misc[warp] = __popc(firsts);
    __syncthreads();
    if (threadIdx.x < kWinKeys && key != ~0ull) {
        int u = __popc(firsts & (0xffffffffu >> (31 - lane))) - 1;
        for (int w = 0; w < warp; ++w) u += misc[w];
        uid_of[key & 0xffffffffu] = u;
        if (first) blk[u] = (int)(key >> 32), upos[u] = (uint16_t)threadIdx.x;
        if (threadIdx.x == kWinKeys - 1 || keys[threadIdx.x + 1] == ~0ull) /* the last valid entry */
            misc[7] = u + 1, upos[u + 1] = (uint16_t)(threadIdx.x + 1);
    }
    __syncthreads();
    /* the warp's blocks in union order (ties: list order), the r-th in lane r */
    const int my_u = valid ? uid_of[warp * kWinMaxN + lane] : 0x7fffffff;
    int rank = 0;
#pragma unroll
    for (int e = 0; e < kWinMaxN; ++e) {
        const int other = __shfl_sync(0xffffffffu, my_u, e);
        rank += other < my_u || (other == my_u && e < lane);
    }
    const int count = __popc(__ballot_sync(0xffffffffu, valid));
    __syncwarp();
    if (valid) uid_of[warp * kWinMaxN + rank] = my_u;
    __syncwarp();
    const int seq = lane < count ? uid_of[warp * kWinMaxN + lane] : 0;
    const int nu = misc[7];
    cp_async_wait_all();
    __syncwarp(); /* the warp's Q has landed */
    ps.init(q_s);
    __syncthreads(); /* stages 0 and 1 are free: every warp has read its union indices and its Q */

    const int row_base = b * sh.N; /* the launcher checks B * N < 2^31 */
    if (threadIdx.x == 0)
        for (int u = 0; u < min(nu, kRing); ++u)
            issue_pair(&tk, &tv, base, full, left, slot_u, blk, upos, u, row_base, g);
    if (!active) return;
    for (int r = 0; r < count; ++r) {
        const int u = __shfl_sync(0xffffffffu, seq, r), st = u % kRing;
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
        ps.tile(base + st * kPair, s0, min(t, s0 + 63), scale_log2);
        __syncwarp(); /* every lane is done reading the stage */
        if (lane == 0) {
            __threadfence_block();
            if (atomicSub(&left[st], 1) == 1 && u + kRing < nu) { /* the stage's last use: refill it */
                __threadfence_block();
                issue_pair(&tk, &tv, base, full, left, slot_u, blk, upos, u + kRing, row_base, g);
            }
        }
    }
    /* END SOLUTION */
    if (active) ps.store(o + row0 * 128, lse + ((size_t)b * sh.H + (size_t)g * hpg) * sh.M + i, sh.M, scale_log2);
#endif
}

/* Whether the window kernel serves this call, and if not, why (NULL: it does): shared lists, H/G = 16,
 * D = 128, l' = 64, n <= 16, a grid of at most 65535 batches, token rows addressable by the copy
 * engine's 32-bit coordinates, and a GPU and a binary with sm_90 code. */
static const char *window_path_refusal(const attn_shape *sh, const attn_nsa_params *p)
{
    if (!p->heads_share_selection || sh->H / sh->G != 16 || sh->D != 128 || p->l_sel != 64 || p->n > kWinMaxN ||
        sh->B > 65535 || (long long)sh->B * sh->N >= (1ll << 31))
        return "it takes shared lists with H/G = 16, D = 128, l' = 64, n <= 16, B <= 65535 and B N < 2^31 only";
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
        (void)cudaGetLastError();
        return "no CUDA device answered for its compute capability";
    }
    cudaFuncAttributes fa;
    if (major < 9 || cudaFuncGetAttributes(&fa, selected_window_kernel) != cudaSuccess || fa.binaryVersion < 90) {
        (void)cudaGetLastError();
        return "it needs a GPU of compute capability 9.0 or newer and a build with sm_90 code";
    }
    return NULL;
}

/* Launch the window kernel; ATTN_ERR_BAD_ARGUMENT, and nothing launched, for a call it does not take.
 * (maybe_unused: the stub does not call it) */
[[maybe_unused]] static int launch_window(const attn_shape *sh, const attn_nsa_params *p, float scale_log2,
                                          const uint16_t *q, const uint16_t *k, const uint16_t *v,
                                          const int32_t *indices, uint16_t *o, float *lse, cudaStream_t stream)
{
    const char *why = window_path_refusal(sh, p);
    if (why)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT,
                         "nsa_selected_attention_window_cuda: not taken: %s (here shared lists %d, H/G = %d, D = %d, "
                         "l' = %d, n = %d, B = %d, N = %d)",
                         why, p->heads_share_selection, sh->H / sh->G, sh->D, p->l_sel, p->n, sh->B, sh->N);
    CUtensorMap tk, tv; /* K and V as (128 columns, G heads, B N tokens), boxes of 64 x 64 with the 128-byte swizzle */
    if (attn_kv_tensor_map(&tk, k, sh, 64, 64, 1) != ATTN_OK || attn_kv_tensor_map(&tv, v, sh, 64, 64, 1) != ATTN_OK)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "nsa_selected_attention_window_cuda: not taken: the driver cannot "
                                                "encode the copy engine's tensor maps of K and V");
    int st = attn_cuda_status(
        cudaFuncSetAttribute(selected_window_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kWinSmem),
        "cudaFuncSetAttribute (shared memory)");
    if (st) return st;
    const int windows = (sh->M + kWinWarps - 1) / kWinWarps;
    const dim3 grid((unsigned)windows * (unsigned)sh->G, (unsigned)sh->B);
    selected_window_kernel<<<grid, kWinThreads, kWinSmem, stream>>>(tk, tv, *sh, p->n, windows, scale_log2, q,
                                                                    indices, o, lse);
    return attn_cuda_launch_status("selected_window_kernel");
}

} // namespace

extern "C" int nsa_selected_attention_window_cuda(const attn_shape *shape, const attn_nsa_params *p,
                                                  const uint16_t *q, const uint16_t *k, const uint16_t *v,
                                                  const int32_t *indices, uint16_t *o, float *lse, cudaStream_t stream)
{
    int st = check_arguments("nsa_selected_attention_window_cuda", shape, p, q, k, v, indices, o, lse);
    if (st) return st;
    const float scale_log2 = attn_softmax_scale(shape) * kLog2e;
    (void)scale_log2;

    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: once the body of selected_window_kernel is written: return launch_window(shape, p, scale_log2, q,
     * k, v, indices, o, lse, stream); it returns ATTN_ERR_BAD_ARGUMENT for the calls the kernel does not take,
     * which nsa_selected_attention_cuda then gives to the general kernel. */
    return launch_window(shape, p, scale_log2, q, k, v, indices, o, lse, stream);
    /* END SOLUTION */
}
