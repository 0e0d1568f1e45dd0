#!/usr/bin/env python3
"""window_variants.py - experimental edits of lesson 09's window kernel, for tools/bench/window_profile.sh.

    python3 tools/bench/window_variants.py FILE EDIT[,EDIT...]

rewrites FILE (a scratch copy of solutions/09_selected_attention/selected_attention.cu, never the
committed one) with the named edits, in the order given. Each edit is a list of (anchor, replacement)
pairs; an anchor must occur exactly once, or the tool stops with the anchor's first line (the kernel
has changed: update the edit). The edits:

  profile   cycle counters per warp (compiled only with -DATTN_WIN_PROFILE): each launch prints one
            "[prof]" line with an average warp's cycles per phase and the block's span.
  prefetch  with -DATTN_WIN_PREFETCH=K, warp 0 asks L2 for the Q rows and lists of the block K places
            later in the grid, likely the next one to start on this multiprocessor when K is the
            number of multiprocessors.
  early     the first kRing - 1 tiles are issued as soon as the union is known, before the warps rank
            their blocks; the sort keys wait in the ring's last stage, and Q is read from global memory
            straight into its A fragments (no copy in shared memory, nothing to wait for before the
            first issue). A candidate for the kept kernel: its tests are run by window_profile.sh.
  stream    (after `early`) tools/bench/window_stream.cuh in place of the kernel: a block serves
            ATTN_WIN_PER_BLOCK windows (1-3, default 2) whose tiles go through one ring, and with
            ATTN_WIN_ORDER=1 (the default) a window's union is sent in the order of each block's
            smallest list rank instead of ascending; with ATTN_WIN_LOOKAHEAD=1 a warp computes its
            next tile's S before this tile's softmax when that tile is already there; with
            ATTN_WIN_JOINT=1 (2 windows per block) one union of all 16 lists, each warp serving its
            two positions at once; with ATTN_WIN_NOCOMPUTE=1 nothing is computed (the ring's own
            floor; wrong output). The launcher's
            grid and shared memory follow, and PositionSoftmax::tile is split in two (scores,
            finish; the same instructions, in PTX, as the one function).

  cluster   tools/bench/window_cluster.cuh included before the kernel, and the kernel's ring (from
            its first issue to its end) replaced with its functions (on the committed kernel, not
            after `early`): the union, Q and warps stay the committed ones; clusters of
            ATTN_WIN_CLUSTER blocks (2 or 4, default 2), neighbouring windows, and a tile that two
            or more of them chose read from L2 once and multicast into the rings of those that
            chose it; ATTN_WIN_SHARED_STAGES (default 2 with 2 windows, 4 with 4) of the 7 stages
            take the shared tiles; with ATTN_WIN_NOCOMPUTE=1 nothing is computed (the
            transport floor; wrong output). The launcher's grid (whole clusters of windows) and shared
            memory follow.
  split     (on the committed kernel) a tile's K and V (ATTN_WIN_SPLIT=2, the default) or its four
            8 KB boxes (=4) in stages of their own (14 or 28 in the places of the 7 pairs), each with
            its own barrier and count of users: a warp releases a part as soon as it has read it (K
            once S is computed), so the next one is on its way while the warp finishes the tile.

`profile` and `prefetch` apply on top of `early` as well (give `early` first); `stream` takes the
place of the kernel that `profile` and `prefetch` edit, so it goes with `early` alone.

An edit's pair is (anchor, replacement); a triple (start, end, replacement) replaces everything from
start up to, not including, end (each found exactly once, end after start).
"""
import sys

PROFILE = [
    ("""__global__ void __launch_bounds__(kWinThreads, 1)
    selected_window_kernel(""", """#ifdef ATTN_WIN_PROFILE
__device__ unsigned long long g_prof[16];
__device__ unsigned g_prof_done;
#endif
__global__ void __launch_bounds__(kWinThreads, 1)
    selected_window_kernel("""),
    ("""    extern __shared__ uint8_t smem_raw[];
    uint8_t *smem = smem_raw""", """#ifdef ATTN_WIN_PROFILE
    const long long p_start = clock64();
    long long p_slot = 0, p_data = 0, p_comp = 0, p_rel = 0, p_loop0 = 0, p_list = 0, p_sort = 0, p_union = 0;
#endif
    extern __shared__ uint8_t smem_raw[];
    uint8_t *smem = smem_raw"""),
    ("""        misc[7] = 0; /* the union's size, should no list have an entry */
    }""", """        misc[7] = 0; /* the union's size, should no list have an entry */
#ifdef ATTN_WIN_PROFILE
        *reinterpret_cast<unsigned long long *>(misc + 4) = 0ull;
        misc[6] = 0;
#endif
    }"""),
    ("""    const int n_list = ends ? __ffs(ends) - 1 : n_sel;
""", """    const int n_list = ends ? __ffs(ends) - 1 : n_sel;
#ifdef ATTN_WIN_PROFILE
    p_list = clock64();
#endif
"""),
    ("""    /* the union index of each sorted entry: the number of distinct blocks up to it, minus one */
""", """#ifdef ATTN_WIN_PROFILE
    p_sort = clock64();
#endif
    /* the union index of each sorted entry: the number of distinct blocks up to it, minus one */
"""),
    ("""    /* the warp's blocks in union order (ties: list order), the r-th in lane r */
""", """#ifdef ATTN_WIN_PROFILE
    p_union = clock64();
#endif
    /* the warp's blocks in union order (ties: list order), the r-th in lane r */
"""),
    ("""    if (!active) return;
    for (int r = 0; r < count; ++r) {
        const int u = __shfl_sync(0xffffffffu, seq, r), st = u % kRing;
""", """    if (!active) return;
#ifdef ATTN_WIN_PROFILE
    p_loop0 = clock64();
#endif
    for (int r = 0; r < count; ++r) {
        const int u = __shfl_sync(0xffffffffu, seq, r), st = u % kRing;
#ifdef ATTN_WIN_PROFILE
        const long long c0 = clock64();
#endif
"""),
    ("""        __syncwarp();
        mbar_wait(full + 8 * st, (unsigned)(u / kRing) & 1u);
        const long s0 = (long)blk[u] * 64;
        ps.tile(base + st * kPair, s0, min(t, s0 + 63), scale_log2);
        __syncwarp(); /* every lane is done reading the stage */
""", """        __syncwarp();
#ifdef ATTN_WIN_PROFILE
        const long long c1 = clock64();
#endif
        mbar_wait(full + 8 * st, (unsigned)(u / kRing) & 1u);
#ifdef ATTN_WIN_PROFILE
        const long long c2 = clock64();
#endif
        const long s0 = (long)blk[u] * 64;
        ps.tile(base + st * kPair, s0, min(t, s0 + 63), scale_log2);
        __syncwarp(); /* every lane is done reading the stage */
#ifdef ATTN_WIN_PROFILE
        const long long c3 = clock64();
        p_slot += c1 - c0, p_data += c2 - c1, p_comp += c3 - c2;
#endif
"""),
    ("""                issue_pair(&tk, &tv, base, full, left, slot_u, blk, upos, u + kRing, row_base, g);
            }
        }
    }
""", """                issue_pair(&tk, &tv, base, full, left, slot_u, blk, upos, u + kRing, row_base, g);
            }
        }
#ifdef ATTN_WIN_PROFILE
        __syncwarp();
        p_rel += clock64() - c3;
#endif
    }
#ifdef ATTN_WIN_PROFILE
    const long long p_store0 = clock64();
#endif
"""),
    ("""    if (active) ps.store(o + row0 * 128, lse + ((size_t)b * sh.H + (size_t)g * hpg) * sh.M + i, sh.M, scale_log2);
#endif
}""", """    if (active) ps.store(o + row0 * 128, lse + ((size_t)b * sh.H + (size_t)g * hpg) * sh.M + i, sh.M, scale_log2);
#ifdef ATTN_WIN_PROFILE
    if (lane == 0) { /* needs every warp active (M a multiple of 8): an inactive warp never gets here */
        const long long p_end = clock64();
        unsigned long long *gp = g_prof;
        atomicAdd(gp + 0, (unsigned long long)(p_list - p_start));
        atomicAdd(gp + 1, (unsigned long long)(p_sort - p_start));
        atomicAdd(gp + 2, (unsigned long long)(p_union - p_start));
        atomicAdd(gp + 3, (unsigned long long)(p_loop0 - p_start));
        atomicAdd(gp + 4, (unsigned long long)p_slot);
        atomicAdd(gp + 5, (unsigned long long)p_data);
        atomicAdd(gp + 6, (unsigned long long)p_comp);
        atomicAdd(gp + 7, (unsigned long long)p_rel);
        atomicAdd(gp + 8, (unsigned long long)(p_end - p_store0));
        atomicAdd(gp + 9, (unsigned long long)(p_end - p_start));
        atomicAdd(gp + 11, (unsigned long long)count);
        atomicAdd(gp + 12, 1ull);
        if (warp == 0) atomicAdd(gp + 13, (unsigned long long)nu);
        atomicMax(reinterpret_cast<unsigned long long *>(misc + 4), (unsigned long long)p_end);
        __threadfence_block();
        if (atomicAdd(&misc[6], 1) == kWinWarps - 1) { /* the block's last warp: its span */
            __threadfence_block();
            const long long span =
                (long long)atomicAdd(reinterpret_cast<unsigned long long *>(misc + 4), 0ull) - p_start;
            atomicAdd(gp + 10, (unsigned long long)span);
            atomicAdd(gp + 14, 1ull);
        }
        __threadfence();
        if (atomicAdd(&g_prof_done, 1u) == gridDim.x * gridDim.y * kWinWarps - 1) { /* the launch's last warp */
            const double w = (double)gp[12], c = (double)gp[14];
            printf("[prof] warps %.0f tiles/warp %.2f union/window %.2f | cycles per warp: list %.0f sort %.0f "
                   "union %.0f loop0 %.0f | slot %.0f data %.0f compute %.0f release %.0f store %.0f | total %.0f "
                   "| block span %.0f\\n",
                   w, gp[11] / w, gp[13] / c, gp[0] / w, gp[1] / w, gp[2] / w, gp[3] / w, gp[4] / w, gp[5] / w,
                   gp[6] / w, gp[7] / w, gp[8] / w, gp[9] / w, gp[10] / c);
            for (int x = 0; x < 16; ++x) gp[x] = 0;
            g_prof_done = 0;
        }
    }
#endif
#endif
}"""),
]

PREFETCH = [
    ("""    PositionSoftmax ps;""", """#ifdef ATTN_WIN_PREFETCH
    { /* warm L2 with the Q rows and lists of the block that is likely to follow this one here */
        const unsigned nx = blockIdx.x + ATTN_WIN_PREFETCH;
        if (warp == 0 && lane < kWinWarps && nx < gridDim.x) {
            const int g2 = nx / windows, i2 = (windows - 1 - (int)(nx % windows)) * kWinWarps + lane;
            if (i2 < sh.M) {
                const uint16_t *qp = q + (((size_t)b * sh.M + i2) * sh.H + (size_t)g2 * hpg) * 128;
                const int32_t *ip = indices + (((size_t)b * sh.M + i2) * sh.G + g2) * n_sel;
                asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(qp), "r"(4096) : "memory");
                asm volatile("prefetch.global.L2 [%0];" ::"l"(ip) : "memory");
            }
        }
    }
#endif
    PositionSoftmax ps;"""),
]

EARLY = [
    ("""static_assert(kWinKeys * 12 <= kPair && kWinWarps * kRows * 128 * 2 <= kPair,
              "the sort keys and union indices (stage 0) and the Q rows (stage 1) wait in the ring");""",
     """static_assert(kWinKeys * 12 <= kPair, "the sort keys and union indices wait in the ring's last stage");"""),
    ("""    /* Q from the warp's swizzled [16][128] copy in shared memory. */
    __device__ __forceinline__ void init(uint32_t q_s)
    {
        const int lane = threadIdx.x % 32;
#pragma unroll
        for (int kk = 0; kk < 8; ++kk) ldmatrix_x4(qa[kk], q_s + swizzle<128>(lane % 16, 2 * kk + lane / 16));""",
     """    /* Q straight from global memory into the A fragments (no copy in shared memory): the 16 rows of
     * q_rows, 128 columns each. A lane holds columns 2 tig, 2 tig + 1 (and + 8) of each k16 step, of
     * rows gid and gid + 8: 32 four-byte loads, issued together. */
    __device__ __forceinline__ void init(const uint16_t *q_rows)
    {
        const int lane = threadIdx.x % 32, gid = lane / 4, tig = lane % 4;
        const uint32_t *r0 = reinterpret_cast<const uint32_t *>(q_rows + gid * 128) + tig;
        const uint32_t *r8 = r0 + 8 * 64; /* row gid + 8 */
#pragma unroll
        for (int kk = 0; kk < 8; ++kk) {
            qa[kk][0] = __ldg(r0 + 8 * kk), qa[kk][1] = __ldg(r8 + 8 * kk);
            qa[kk][2] = __ldg(r0 + 8 * kk + 4), qa[kk][3] = __ldg(r8 + 8 * kk + 4);
        }"""),
    ("""    /* before the first copy the ring holds the sort keys and union indices (stage 0) and Q (stage 1) */
    unsigned long long *keys = reinterpret_cast<unsigned long long *>(smem);
    int *uid_of = reinterpret_cast<int *>(smem + kWinKeys * 8); /* [warp][entry] */""",
     """    /* until its first copy, the ring's last stage holds the sort keys and union indices */
    unsigned long long *keys = reinterpret_cast<unsigned long long *>(smem + (kRing - 1) * kPair);
    int *uid_of = reinterpret_cast<int *>(smem + (kRing - 1) * kPair + kWinKeys * 8); /* [warp][entry] */"""),
    ("""    const uint32_t q_s = base + kPair + warp * (kRows * 256);
""", ""),
    ("""    if (active) /* the warp's 16 rows of Q: heads 16 g .. 16 g + 15 of its position, 4 KB in a row */
#pragma unroll
        for (int it = 0; it < 8; ++it) {
            const int r = it * 2 + lane / 16, c = lane % 16;
            cp_async_16(q_s + swizzle<128>(r, c), q + (row0 + r) * 128 + c * 8, true);
        }
    cp_async_commit();
    PositionSoftmax ps;
""", """    PositionSoftmax ps; /* Q: heads 16 g .. 16 g + 15 of the warp's position, 16 rows in a row */
    ps.init(q + (active ? row0 : 0) * 128);
"""),
    ("""     * = x; the last valid entry writes misc[7] = u + 1 and upos[u + 1] = x + 1. Barrier. (4) Each warp
     * ranks its union indices (16 shuffles) and keeps the r-th in lane r. cp_async_wait_all, __syncwarp,
     * ps.init(q_s). Barrier: stage 0 and 1 are free. (5) Thread 0 issues union blocks 0 .. min(nu, kRing)
     * - 1. (6) The loop""", """     * = x; the last valid entry writes misc[7] = u + 1 and upos[u + 1] = x + 1. Barrier. (4) Thread 0
     * issues union blocks 0 .. min(nu, kRing - 1) - 1 (the last stage still holds the keys). Each warp
     * ranks its union indices (16 shuffles) and keeps the r-th in lane r. Barrier: the last stage is
     * free; thread 0 issues union block kRing - 1 if there is one. (6) The loop"""),
    ("""    __syncthreads();
    /* the warp's blocks in union order (ties: list order), the r-th in lane r */""", """    __syncthreads();
    const int nu = misc[7];
    const int row_base = b * sh.N; /* the launcher checks B * N < 2^31 */
    if (threadIdx.x == 0) /* the union is known: its first tiles go out while the warps rank their blocks */
        for (int u = 0; u < min(nu, kRing - 1); ++u)
            issue_pair(&tk, &tv, base, full, left, slot_u, blk, upos, u, row_base, g);
    /* the warp's blocks in union order (ties: list order), the r-th in lane r */"""),
    ("""    const int seq = lane < count ? uid_of[warp * kWinMaxN + lane] : 0;
    const int nu = misc[7];
    cp_async_wait_all();
    __syncwarp(); /* the warp's Q has landed */
    ps.init(q_s);
    __syncthreads(); /* stages 0 and 1 are free: every warp has read its union indices and its Q */

    const int row_base = b * sh.N; /* the launcher checks B * N < 2^31 */
    if (threadIdx.x == 0)
        for (int u = 0; u < min(nu, kRing); ++u)
            issue_pair(&tk, &tv, base, full, left, slot_u, blk, upos, u, row_base, g);""",
     """    const int seq = lane < count ? uid_of[warp * kWinMaxN + lane] : 0;
    __syncthreads(); /* the last stage is free: every warp has read its union indices */
    if (threadIdx.x == 0 && nu >= kRing)
        issue_pair(&tk, &tv, base, full, left, slot_u, blk, upos, kRing - 1, row_base, g);"""),
]

STREAM = [
    # PositionSoftmax::tile split in two, scores (S = Q K^T) and finish (mask, softmax, P V), so that
    # the kernel may compute the next tile's S before this tile's softmax (ATTN_WIN_LOOKAHEAD)
    ("""    __device__ __forceinline__ void tile(uint32_t k_s, long s0, long last, float scale_log2)
    {
        const int lane = threadIdx.x % 32, tig = lane % 4;
        const uint32_t v_s = k_s + 2 * kBox;
        float s[8][4]; /* S = Q K^T, n8 tile nt = keys s0 + 8 nt .. */
""", """    __device__ __forceinline__ void tile(uint32_t k_s, long s0, long last, float scale_log2)
    {
        float s[8][4];
        scores(k_s, s);
        finish(s, k_s + 2 * kBox, s0, last, scale_log2);
    }

    /* S = Q K^T of the stage's K tile (k_s): n8 tile nt = keys s0 + 8 nt .. */
    __device__ __forceinline__ void scores(uint32_t k_s, float (&s)[8][4]) const
    {
        const int lane = threadIdx.x % 32;
"""),
    ("""        if (s0 + 63 > last) { /* the token causal rule cuts the block that holds t */
#pragma unroll
            for (int nt = 0; nt < 8; ++nt)
#pragma unroll
                for (int c = 0; c < 4; ++c) s[nt][c] = s0 + nt * 8 + tig * 2 + (c & 1) > last ? -INFINITY : s[nt][c];""",
     """    }

    /* The rest of a tile: S masked past `last`, the online softmax, O += P V (v_s: the V tile). */
    __device__ __forceinline__ void finish(float (&s)[8][4], uint32_t v_s, long s0, long last, float scale_log2)
    {
        const int lane = threadIdx.x % 32, tig = lane % 4;
        if (s0 + 63 > last) { /* the token causal rule cuts the block that holds t */
#pragma unroll
            for (int nt = 0; nt < 8; ++nt)
#pragma unroll
                for (int c = 0; c < 4; ++c) s[nt][c] = s0 + nt * 8 + tig * 2 + (c & 1) > last ? -INFINITY : s[nt][c];"""),
    ("""__global__ void __launch_bounds__(kWinThreads, 1)
    selected_window_kernel(""", """/* Whether the window kernel serves this call""",
     """#include "../../tools/bench/window_stream.cuh"

"""),
    ("""(long long)sh->B * sh->N >= (1ll << 31))""", """(long long)sh->B * sh->N >= (1ll << 31) || sh->N > (1 << 28))"""),
    ("""cudaFuncAttributeMaxDynamicSharedMemorySize, kWinSmem),""",
     """cudaFuncAttributeMaxDynamicSharedMemorySize, kStreamSmem),"""),
    ("""    const dim3 grid((unsigned)windows * (unsigned)sh->G, (unsigned)sh->B);
    selected_window_kernel<<<grid, kWinThreads, kWinSmem, stream>>>""",
     """    const dim3 grid((unsigned)((windows + kPer - 1) / kPer) * (unsigned)sh->G, (unsigned)sh->B);
    selected_window_kernel<<<grid, kWinThreads, kStreamSmem, stream>>>"""),
]

CLUSTER = [
    ("""__global__ void __launch_bounds__(kWinThreads, 1)
    selected_window_kernel(""", """#include "../../tools/bench/window_cluster.cuh"

__global__ void __cluster_dims__(kCl, 1, 1) __launch_bounds__(kWinThreads, 1)
    selected_window_kernel("""),
    # the ring, from the first issue to the kernel's end: the cluster's (the union, Q and warps stay)
    ("""    const int row_base = b * sh.N; /* the launcher checks B * N < 2^31 */
    if (threadIdx.x == 0)
        for (int u = 0; u < min(nu, kRing); ++u)""", """/* Whether the window kernel serves this call""",
     """    const unsigned crank = cluster_rank();
    const int np = cluster_match(smem, nu, crank);
    const ClusterRing cr = cluster_ring(&tk, &tv, smem, crank, b * sh.N, g); /* the launcher checks B * N < 2^31 */
    if (threadIdx.x == 0) cr.issue_first(np, smem + kOffFirst);
    if (active) {
        cluster_walk(ps, cr, np, seq, count, t, scale_log2);
        ps.store(o + row0 * 128, lse + ((size_t)b * sh.H + (size_t)g * hpg) * sh.M + i, sh.M, scale_log2);
    }
    cluster_sync(); /* block 0's table, and every block's union, until all are done */
#endif
}

"""),
    ("""#include <math.h>
""", """#include <math.h>
#include <stdio.h>
"""),
    ("""cudaFuncAttributeMaxDynamicSharedMemorySize, kWinSmem),""",
     """cudaFuncAttributeMaxDynamicSharedMemorySize, kClusterSmem),"""),
    ("""    const int windows = (sh->M + kWinWarps - 1) / kWinWarps;
    const dim3 grid((unsigned)windows * (unsigned)sh->G, (unsigned)sh->B);
    selected_window_kernel<<<grid, kWinThreads, kWinSmem, stream>>>""",
     """    const int windows = ((sh->M + kWinWarps - 1) / kWinWarps + kCl - 1) / kCl * kCl; /* whole clusters */
    const dim3 grid((unsigned)windows * (unsigned)sh->G, (unsigned)sh->B);
    static bool told = false; /* once per process: how many clusters fit at once on this GPU */
    if (!told) {
        told = true;
        cudaLaunchConfig_t cfg = {};
        cfg.gridDim = grid, cfg.blockDim = dim3(kWinThreads), cfg.dynamicSmemBytes = kClusterSmem;
        int clusters = 0;
        if (cudaOccupancyMaxActiveClusters(&clusters, (void *)selected_window_kernel, &cfg) == cudaSuccess)
            fprintf(stderr, "[cluster] %d windows per cluster, %d shared stages: at most %d clusters resident (%d blocks)\\n",
                    kCl, kSh, clusters, clusters * kCl);
        else
            (void)cudaGetLastError();
    }
    selected_window_kernel<<<grid, kWinThreads, kClusterSmem, stream>>>"""),
]

SPLIT = [
    # PositionSoftmax::tile in parts: S over one K box (columns 0-63 or 64-127 of D), the mask and the
    # online softmax, P V into one V box's columns
    ("""    __device__ __forceinline__ void tile(uint32_t k_s, long s0, long last, float scale_log2)
    {""", """    /* o = O / l in bf16 to the 16 contiguous rows""",
     """    /* S += Q K^T over columns 64 C .. 64 C + 63 of D: K box C of the tile at k_s */
    template <int C> __device__ __forceinline__ void scores_part(uint32_t k_s, float (&s)[8][4]) const
    {
        const int lane = threadIdx.x % 32;
#pragma unroll
        for (int kk = 4 * C; kk < 4 * C + 4; ++kk)
#pragma unroll
            for (int np = 0; np < 4; ++np) {
                uint32_t bk[4];
                ldmatrix_x4(bk, k_s + tma_offset(np * 16 + lane % 8 + (lane / 16) * 8, 2 * kk + (lane / 8) % 2));
                mma_bf16(s[2 * np], qa[kk], bk[0], bk[1]);
                mma_bf16(s[2 * np + 1], qa[kk], bk[2], bk[3]);
            }
    }

    /* S masked past `last` (the token causal rule), the online softmax step, P as A fragments */
    __device__ __forceinline__ void softmax_part(float (&s)[8][4], uint32_t (&p)[16], long s0, long last,
                                                 float scale_log2)
    {
        const int tig = threadIdx.x % 4;
        if (s0 + 63 > last) {
#pragma unroll
            for (int nt = 0; nt < 8; ++nt)
#pragma unroll
                for (int c = 0; c < 4; ++c) s[nt][c] = s0 + nt * 8 + tig * 2 + (c & 1) > last ? -INFINITY : s[nt][c];
        }
        online_softmax_step<8, 16>(s, p, m_i, l_i, o_acc, scale_log2);
    }

    /* O[:, 64 C .. 64 C + 63] += P V: V box C of the tile whose V starts at v_s */
    template <int C> __device__ __forceinline__ void pv_part(const uint32_t (&p)[16], uint32_t v_s)
    {
        const int lane = threadIdx.x % 32;
#pragma unroll
        for (int ks = 0; ks < 4; ++ks)
#pragma unroll
            for (int dp = 4 * C; dp < 4 * C + 4; ++dp) {
                uint32_t bv[4];
                ldmatrix_x4_trans(bv, v_s + tma_offset(ks * 16 + lane % 8 + ((lane / 8) % 2) * 8, 2 * dp + lane / 16));
                mma_bf16(o_acc[2 * dp], &p[4 * ks], bv[0], bv[1]);
                mma_bf16(o_acc[2 * dp + 1], &p[4 * ks], bv[2], bv[3]);
            }
    }

"""),
    # a tile in kParts parts (ATTN_WIN_SPLIT: 2, K and V; or 4, the four boxes), each in a stage of its
    # own (kSlots = kParts x 7 of 32 / kParts KB, in the places of the 7 pairs): part h = kParts u + x of
    # union block u in stage h % kSlots, with its own barrier and count of users, released as soon as
    # the warp has read it, so the next part is on its way while the warp works on the rest
    ("""constexpr int kOffSlot = kOffLeft + 8 * 4;               /* int slot_u[kRing] */
constexpr int kOffFull = kOffSlot + 8 * 4;               /* uint64 full[kRing] */
constexpr int kOffMisc = kOffFull + 8 * 8;               /* int: distinct blocks per warp of the scan; union size */""",
     """#ifndef ATTN_WIN_SPLIT
#define ATTN_WIN_SPLIT 2
#endif
constexpr int kParts = ATTN_WIN_SPLIT;                   /* stages per tile pair: 2 (K, V) or 4 (boxes) */
static_assert(kParts == 2 || kParts == 4, "ATTN_WIN_SPLIT: 2 or 4");
constexpr int kSlots = kParts * kRing;                   /* part-stages of 32 / kParts KB */
constexpr int kOffSlot = kOffLeft + 32 * 4;              /* int slot_u[kSlots] (left[kSlots] before it) */
constexpr int kOffFull = kOffSlot + 32 * 4;              /* uint64 full[kSlots] */
constexpr int kOffMisc = kOffFull + 32 * 8;              /* int: distinct blocks per warp of the scan; union size */"""),
    # issue_pair, which the new ring no longer calls, gives way to issue_part and the part's wait and release
    ("""/* Send union block u to its stage: record its number of users""",
     """/* Byte offset of 16-byte chunk c (0..15) of key row r in a TMA tile""",
     """/* Send part h of the union's tiles (part h % kParts of union block h / kParts: K, V or one of their
 * boxes) to stage h % kSlots: its users, its index, one expect-tx arrival and its copies. */
__device__ __forceinline__ void issue_part(const CUtensorMap *tk, const CUtensorMap *tv, uint32_t ring,
                                           uint32_t full, int *left, int *slot_u, const int *blk,
                                           const uint16_t *upos, int h, int row_base, int g)
{
    const int u = h / kParts, hs = h % kSlots;
    left[hs] = upos[u + 1] - upos[u];
    atomicExch(&slot_u[hs], h);
    const uint32_t bar = full + 8 * hs, dst = ring + hs * (kPair / kParts);
    const int row = row_base + blk[u] * 64;
    fence_proxy_async();
    mbar_arrive_expect_tx(bar, kPair / kParts);
#pragma unroll
    for (int x = 0; x < 4 / kParts; ++x) {
        const int box = (h % kParts) * (4 / kParts) + x; /* 0, 1: K columns 0-63, 64-127; 2, 3: V */
        tma_load_3d(dst + x * kBox, box < 2 ? tk : tv, (box & 1) * 64, g, row, bar);
    }
}

/* A warp's wait for part h, and its release (the last user sends part h + kSlots). */
__device__ __forceinline__ void part_acquire(int *slot_u, uint32_t full, int h)
{
    const int hs = h % kSlots;
    if (threadIdx.x % 32 == 0) {
        const long long start = clock64();
        while (atomicAdd(&slot_u[hs], 0) != h) {
            __nanosleep(32);
            if (clock64() - start > (1ll << 32)) __trap();
        }
    }
    __syncwarp();
    mbar_wait(full + 8 * hs, (unsigned)(h / kSlots) & 1u);
}

__device__ __forceinline__ void part_release(const CUtensorMap *tk, const CUtensorMap *tv, uint32_t ring,
                                             uint32_t full, int *left, int *slot_u, const int *blk,
                                             const uint16_t *upos, int h, int nh, int row_base, int g)
{
    __syncwarp(); /* every lane is done reading the stage */
    if (threadIdx.x % 32 == 0) {
        __threadfence_block();
        if (atomicSub(&left[h % kSlots], 1) == 1 && h + kSlots < nh) {
            __threadfence_block();
            issue_part(tk, tv, ring, full, left, slot_u, blk, upos, h + kSlots, row_base, g);
        }
    }
}

/* Byte offset of 16-byte chunk c (0..15) of key row r in a TMA tile"""),
    ("""        for (int st = 0; st < kRing; ++st) {
            mbar_init(full + 8 * st, 1);""", """        for (int st = 0; st < kSlots; ++st) {
            mbar_init(full + 8 * st, 1);"""),
    ("""    const int row_base = b * sh.N; /* the launcher checks B * N < 2^31 */
    if (threadIdx.x == 0)
        for (int u = 0; u < min(nu, kRing); ++u)""", """    /* END SOLUTION */
    if (active) ps.store(""",
     """    const int row_base = b * sh.N; /* the launcher checks B * N < 2^31 */
    const int nh = kParts * nu;
    if (threadIdx.x == 0)
        for (int h = 0; h < min(nh, kSlots); ++h)
            issue_part(&tk, &tv, base, full, left, slot_u, blk, upos, h, row_base, g);
    if (!active) return;
#define PART(x, work)                                                                              \\
    part_acquire(slot_u, full, kParts * u + (x));                                                  \\
    work;                                                                                          \\
    part_release(&tk, &tv, base, full, left, slot_u, blk, upos, kParts * u + (x), nh, row_base, g)
    for (int r = 0; r < count; ++r) {
        const int u = __shfl_sync(0xffffffffu, seq, r), st = u % kRing;
        const uint32_t k_s = base + st * kPair, v_s = k_s + 2 * kBox;
        const long s0 = (long)blk[u] * 64;
        float s[8][4];
        uint32_t p[16];
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
        if (kParts == 4) {
            PART(0, ps.scores_part<0>(k_s, s));
            PART(1, ps.scores_part<1>(k_s, s));
            ps.softmax_part(s, p, s0, min(t, s0 + 63), scale_log2);
            PART(2, ps.pv_part<0>(p, v_s));
            PART(3, ps.pv_part<1>(p, v_s));
        } else {
            PART(0, (ps.scores_part<0>(k_s, s), ps.scores_part<1>(k_s, s)));
            ps.softmax_part(s, p, s0, min(t, s0 + 63), scale_log2);
            PART(1, (ps.pv_part<0>(p, v_s), ps.pv_part<1>(p, v_s)));
        }
    }
#undef PART
"""),
]

EDITS = {"profile": PROFILE, "prefetch": PREFETCH, "early": EARLY, "stream": STREAM, "cluster": CLUSTER, "split": SPLIT}


def apply(text, names):
    for name in names:
        for edit in EDITS[name]:
            anchors, replacement = edit[:-1], edit[-1]
            for anchor in anchors:
                n = text.count(anchor)
                if n != 1:
                    raise SystemExit("window_variants.py: edit '%s': anchor found %d times (want 1): %s"
                                     % (name, n, anchor.strip().splitlines()[0]))
            if len(anchors) == 1:
                text = text.replace(anchors[0], replacement)
                continue
            start, end = text.index(anchors[0]), text.index(anchors[1])
            if end < start:
                raise SystemExit("window_variants.py: edit '%s': the region's end comes before its start: %s"
                                 % (name, anchors[1].strip().splitlines()[0]))
            text = text[:start] + replacement + text[end:]
    return text


def main(argv):
    if len(argv) == 2 and argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    if len(argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    names = [x for x in argv[2].split(",") if x]
    unknown = [x for x in names if x not in EDITS]
    if unknown:
        raise SystemExit("window_variants.py: unknown edit(s) %s (known: %s)" % (", ".join(unknown), ", ".join(EDITS)))
    with open(argv[1]) as f:
        text = f.read()
    with open(argv[1], "w") as f:
        f.write(apply(text, names))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
