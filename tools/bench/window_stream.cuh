/*
 * window_stream.cuh - an experimental selected_window_kernel for lesson 09 (maintainers only): several
 * windows per block, their tiles streamed through one ring, optionally in a different order.
 *
 * Not part of the course's build. tools/bench/window_variants.py's edit `stream` (after `early`) puts
 * `#include` of this file in place of the kernel in a scratch copy of
 * solutions/09_selected_attention/selected_attention.cu, and tools/bench/window_profile.sh builds and
 * times it. It uses that file's constants, PositionSoftmax (with `early`'s init from global memory)
 * and helpers, and keeps the kernel's name and parameters, so the launcher stays as it is but for the
 * grid and the shared memory.
 *
 * What changes against the committed kernel (docs/NSA_PERFORMANCE.md, change 12, says why):
 *   windows  a block serves kPer neighbouring windows of one kv group (ATTN_WIN_PER_BLOCK, 1-3). Their
 *            lists are sorted together (kPer bitonic sorts of 128 keys side by side, one
 *            compare-exchange per thread and step, so no more steps than for one window), and their
 *            unions are numbered one after the other: global union index u runs over window 0's
 *            union, then window 1's, ... The ring takes u into stage u % kSRing as before, so it does
 *            not drain between the windows of a block: the last user of tile u sends tile u + kSRing,
 *            whatever window it belongs to. A warp serves its position in window 0, stores it, loads
 *            the Q of its position in window 1 (asked of L2 at the start), and so on. The prologue
 *            (about 3.7 µs per block on the H200) is paid once for kPer windows.
 *   order    with ATTN_WIN_ORDER = 1, a window's union is sent in the order of the smallest list rank
 *            of each block (the lowest entry index e among the lists that chose it; ties by block), not
 *            ascending: each "round" of the ring then holds about one tile per warp, and the ring
 *            turns over at the pace of all 8 warps. A warp still walks its blocks in ring order.
 *            tools/bench/window_model.py --order compares the orders.
 *   lookahead with ATTN_WIN_LOOKAHEAD = 1, a warp computes S = Q K^T of its next tile before the softmax
 *            and P V of this one, when the next tile's stage has been issued and its bytes have landed
 *            (both tested without waiting, so a warp never waits for a tile while holding one): the
 *            tensor cores then work during the softmax, and the partner warp on the scheduler need not
 *            be computing to hide it. 32 more registers live across the softmax.
 *   transport with ATTN_WIN_NOCOMPUTE = 1 (a measurement, not a kernel: its output is wrong), the warps
 *            wait for each of their tiles and release it without computing: the time the ring
 *            itself needs to move the windows' unions, the floor of this design at kSRing stages.
 *   joint    with ATTN_WIN_JOINT = 1 (and 2 windows per block), one union of all 16 lists instead of one
 *            per window: a sort of 256 keys, and each warp serves its positions in both windows at
 *            once, two PositionSoftmax states, walking their entries merged in ring order (a tile both
 *            chose: two entries, each counted down). The 16 neighbours share more than two windows of 8
 *            (on the bar's random lists 9.9 tiles per position against 11.2; window_model.py
 *            --positions-per-warp 2), but the second Q and O take 100 registers: ptxas sm_90 gives 255
 *            and spills 104 bytes (the window of 12 lost 7% to 44 bytes, NSA_PERFORMANCE change 11).
 *            The transport floor (with ATTN_WIN_NOCOMPUTE) says what the sharing alone is worth.
 *   stages   ATTN_WIN_STAGES (default 7, the committed kernel's kRing): the ring's stages of 32 KB.
 *   Q in smem with ATTN_WIN_QSMEM = 1 (with ATTN_WIN_JOINT and at most 5 stages): the Q of the 16
 *            positions waits in shared memory (64 KB beside the ring), and each warp's two positions
 *            (SmemQPosition) read their A fragments by ldmatrix at each k16 step of each tile: the
 *            joint kernel without the 64 registers of two Qs (ptxas sm_90: 244 registers, no spill,
 *            against 255 and 104 bytes spilled), at the cost of 2 of the 7 stages and 4 KB more
 *            shared-memory reads per tile. NSA_PERFORMANCE change 16 says why: L2's throughput limits
 *            the window of 8, so the bar needs the smaller union of 16 positions.
 *   tiles    one int per union tile: block << kUserBits | users (users <= 128: 8 lists of 16 entries, 8
 *            bits; 256 with ATTN_WIN_JOINT, 9 bits; the launcher sends calls with N > 2^28 to the
 *            general kernel so that the block fits 22 bits).
 *
 * Deadlock-free as the committed kernel: the smallest global union index not yet done sits in its
 * stage (every tile kSRing before it is done), and each of its users has finished all its tiles before
 * it, since a warp walks its tiles in ascending global index (window by window, ring order within;
 * with ATTN_WIN_JOINT both positions' entries merged, a tile's two entries one after the other).
 */
#ifndef ATTN_WIN_PER_BLOCK
#define ATTN_WIN_PER_BLOCK 2
#endif
#ifndef ATTN_WIN_ORDER
#define ATTN_WIN_ORDER 1
#endif
#ifndef ATTN_WIN_LOOKAHEAD
#define ATTN_WIN_LOOKAHEAD 0
#endif
#ifndef ATTN_WIN_NOCOMPUTE
#define ATTN_WIN_NOCOMPUTE 0
#endif
#ifndef ATTN_WIN_JOINT
#define ATTN_WIN_JOINT 0
#endif
#ifndef ATTN_WIN_STAGES
#define ATTN_WIN_STAGES 7
#endif
#ifndef ATTN_WIN_QSMEM
#define ATTN_WIN_QSMEM 0
#endif

constexpr int kPer = ATTN_WIN_PER_BLOCK; /* windows per block */
constexpr int kSRing = ATTN_WIN_STAGES;  /* the ring's stages (the committed kernel's kRing is 7) */
static_assert(kSRing >= 2 && kSRing <= 8, "ATTN_WIN_STAGES: 2-8 (the bookkeeping arrays hold 8)");
static_assert(!ATTN_WIN_QSMEM || ATTN_WIN_JOINT, "ATTN_WIN_QSMEM: with ATTN_WIN_JOINT");
constexpr int kAll = kPer * kWinKeys;    /* sort keys of a block */
static_assert(kPer >= 1 && kPer <= 3, "at most 3 windows per block: their tile table must fit beside the ring");
/* the sorts: one per window, or with ATTN_WIN_JOINT one of all the block's lists (2 windows, 16 positions) */
constexpr int kSort = ATTN_WIN_JOINT ? kAll : kWinKeys; /* keys per sort, and per union */
static_assert(!ATTN_WIN_JOINT || (kPer == 2 && !ATTN_WIN_LOOKAHEAD),
              "ATTN_WIN_JOINT: 2 windows per block, without the lookahead");
/* the sort key's low bits: e << kSlotBits | position slot (warp, or with ATTN_WIN_JOINT window * 8 + warp) */
constexpr int kSlotBits = ATTN_WIN_JOINT ? 4 : 3;
/* a tile's int: block << kUserBits | users; users <= 16 entries x the lists of one union (the launcher
 * sends N > 2^28 to the general kernel, so that block << 9 fits) */
constexpr int kUserBits = ATTN_WIN_JOINT ? 9 : 8;
/* shared memory beside the ring (from the 1024-aligned base) */
constexpr int kSOffQ = kSRing * kPair;             /* with ATTN_WIN_QSMEM: Q of the 16 positions, 4 KB each */
constexpr int kSOffTile = kSOffQ + (ATTN_WIN_QSMEM ? 16 * 4096 : 0); /* int tile[kAll]: block << 8 | users, by global union index */
constexpr int kSOffLeft = kSOffTile + kAll * 4;  /* int left[8] */
constexpr int kSOffSlot = kSOffLeft + 8 * 4;     /* int slot_u[8] */
constexpr int kSOffFull = kSOffSlot + 8 * 4;     /* uint64 full[8] */
constexpr int kSOffMisc = kSOffFull + 8 * 8;     /* int misc[16]: distinct blocks per chunk of 32 sorted keys */
constexpr int kStreamSmem = kSOffMisc + 16 * 4 + 1024;
static_assert(kStreamSmem <= 227 * 1024, "the tile table must fit beside the ring");
static_assert(kAll / 32 <= 16, "misc[] holds a count per chunk of 32 sort keys");
/* scratch in the ring's last stage, until its first copy */
constexpr int kScrKeys = 0;                      /* uint64 keys[kAll] */
constexpr int kScrUid = kScrKeys + kAll * 8;     /* int uid_of[kPer][8 warps][16 entries] */
constexpr int kScrMap = kScrUid + kAll * 4;      /* int map[kAll]: block-order union index -> ring order */
constexpr int kScrHist = kScrMap + kAll * 4;     /* int hist[kAll / kSort][16]: groups per smallest rank */
constexpr int kScrChunk = kScrHist + kPer * 64;  /* int chunk_hist[kAll / 32][16] */
constexpr int kScrEnd = kScrChunk + (kAll / 32) * 64;
static_assert(kScrEnd <= kPair, "the prologue's scratch fits one stage");

#if ATTN_HAVE_TMA
/* Send global union tile u (block << 8 | users in tile[u]) to stage u % kSRing. */
__device__ __forceinline__ void issue_tile(const CUtensorMap *tk, const CUtensorMap *tv, uint32_t ring, uint32_t full,
                                           int *left, int *slot_u, const int *tile, int u, int row_base, int g)
{
    const int st = u % kSRing, meta = tile[u];
    left[st] = meta & ((1 << kUserBits) - 1);
    atomicExch(&slot_u[st], u);
    const uint32_t bar = full + 8 * st, dst = ring + st * kPair;
    const int row = row_base + (meta >> kUserBits) * 64;
    fence_proxy_async();
    mbar_arrive_expect_tx(bar, kPair);
    tma_load_3d(dst, tk, 0, g, row, bar);
    tma_load_3d(dst + kBox, tk, 64, g, row, bar);
    tma_load_3d(dst + 2 * kBox, tv, 0, g, row, bar);
    tma_load_3d(dst + 3 * kBox, tv, 64, g, row, bar);
}

/* Whether the phase of parity `parity` of the mbarrier at `bar` has completed, without waiting. */
__device__ __forceinline__ bool mbar_test(uint32_t bar, unsigned parity)
{
    unsigned done;
    asm volatile("{\n"
                 ".reg .pred p;\n"
                 "mbarrier.test_wait.parity.shared::cta.b64 p, [%1], %2;\n"
                 "selp.u32 %0, 1, 0, p;\n"
                 "}\n"
                 : "=r"(done)
                 : "r"(bar), "r"(parity)
                 : "memory");
    return done != 0;
}

#if ATTN_WIN_QSMEM
/* A position whose Q stays in shared memory (q_s: its swizzled [16][128] copy, 4 KB), read by ldmatrix
 * at each k16 step of each tile: 4 KB more shared-memory reads per tile (an eighth of the tile's), and
 * 32 registers fewer than PositionSoftmax, whose qa[] it never touches (so it takes no registers). */
struct SmemQPosition : PositionSoftmax {
    uint32_t q_s;

    __device__ __forceinline__ void begin(uint32_t q_copy)
    {
        q_s = q_copy;
#pragma unroll
        for (int dt = 0; dt < 16; ++dt) o_acc[dt][0] = o_acc[dt][1] = o_acc[dt][2] = o_acc[dt][3] = 0.f;
        m_i[0] = m_i[1] = -INFINITY;
        l_i[0] = l_i[1] = 0.f;
    }

    /* PositionSoftmax::tile with Q's A fragment loaded per k16 step */
    __device__ __forceinline__ void tile(uint32_t k_s, long s0, long last, float scale_log2)
    {
        const int lane = threadIdx.x % 32;
        float s[8][4];
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < 8; ++kk) {
            uint32_t a[4];
            ldmatrix_x4(a, q_s + swizzle<128>(lane % 16, 2 * kk + lane / 16));
#pragma unroll
            for (int np = 0; np < 4; ++np) {
                uint32_t bk[4];
                ldmatrix_x4(bk, k_s + tma_offset(np * 16 + lane % 8 + (lane / 16) * 8, 2 * kk + (lane / 8) % 2));
                mma_bf16(s[2 * np], a, bk[0], bk[1]);
                mma_bf16(s[2 * np + 1], a, bk[2], bk[3]);
            }
        }
        finish(s, k_s + 2 * kBox, s0, last, scale_log2);
    }
};
#endif

/* a[k] for a runtime k, with a[] kept in registers */
__device__ __forceinline__ int pick(const int (&a)[kPer], int k)
{
    int r = a[0];
#pragma unroll
    for (int x = 1; x < kPer; ++x) r = k == x ? a[x] : r;
    return r;
}
#endif

__global__ void __launch_bounds__(kWinThreads, 1)
    selected_window_kernel(const __grid_constant__ CUtensorMap tk, const __grid_constant__ CUtensorMap tv,
                           attn_shape sh, int n_sel, int windows, float scale_log2, const uint16_t *__restrict__ q,
                           const int32_t *__restrict__ indices, uint16_t *__restrict__ o, float *__restrict__ lse)
{
#if ATTN_HAVE_TMA
    extern __shared__ uint8_t smem_raw[];
    uint8_t *smem = smem_raw + (1024 - smem_addr(smem_raw) % 1024) % 1024;
    const uint32_t base = smem_addr(smem), full = base + kSOffFull;
    int *tile = reinterpret_cast<int *>(smem + kSOffTile);
    int *left = reinterpret_cast<int *>(smem + kSOffLeft);
    int *slot_u = reinterpret_cast<int *>(smem + kSOffSlot);
    int *misc = reinterpret_cast<int *>(smem + kSOffMisc);
    uint8_t *scr = smem + (kSRing - 1) * kPair;
    unsigned long long *keys = reinterpret_cast<unsigned long long *>(scr + kScrKeys);
    int *uid_of = reinterpret_cast<int *>(scr + kScrUid);
    int *map = reinterpret_cast<int *>(scr + kScrMap);
    int *hist = reinterpret_cast<int *>(scr + kScrHist);
    int *chunk_hist = reinterpret_cast<int *>(scr + kScrChunk);

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int chunks = (windows + kPer - 1) / kPer;
    const int g = blockIdx.x / chunks, first_win = windows - 1 - (int)(blockIdx.x % chunks) * kPer; /* last first */
    const int b = blockIdx.y, hpg = sh.H / sh.G;
    /* window k of the block is first_win - k; the warp's query in it is i_of(k), none when it is past M
     * or the window does not exist (the block's last chunk may be short) */
    auto i_of = [&](int k) { return (first_win - k) * kWinWarps + warp; };
    auto active_of = [&](int k) { return first_win - k >= 0 && i_of(k) < sh.M; };
    auto row0_of = [&](int k) { return ((size_t)b * sh.M + i_of(k)) * sh.H + (size_t)g * hpg; };

    if (threadIdx.x == 0) {
        for (int st = 0; st < kSRing; ++st) {
            mbar_init(full + 8 * st, 1);
            slot_u[st] = -1;
        }
        mbar_init_fence();
    }
    for (int x = threadIdx.x; x < kPer * 16 + (kAll / 32) * 16; x += kWinThreads) hist[x] = 0; /* chunk_hist follows */
#if ATTN_WIN_QSMEM
    /* the warp copies the Q rows of its two positions (windows 0 and 1) to slots warp and 8 + warp */
#pragma unroll
    for (int k = 0; k < 2; ++k)
        if (active_of(k))
#pragma unroll
            for (int it = 0; it < 8; ++it) {
                const int r = it * 2 + lane / 16, c = lane % 16;
                cp_async_16(base + kSOffQ + (k * 8 + warp) * 4096 + swizzle<128>(r, c),
                            q + (row0_of(k) + r) * 128 + c * 8, true);
            }
    cp_async_commit();
    SmemQPosition ps;
    ps.begin(base + kSOffQ + warp * 4096);
#else
    PositionSoftmax ps; /* Q of window 0 straight into registers; later windows' Q asked of L2 now */
    ps.init(q + (active_of(0) ? row0_of(0) : 0) * 128);
    if (lane == 0)
        for (int k = 1; k < kPer; ++k)
            if (active_of(k))
                asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(q + row0_of(k) * 128), "r"(4096) : "memory");
#endif

    /* the lists: key (block << 32 | e << kSlotBits | slot), so that a block's first sorted entry has
     * its smallest list rank e; the slot is the warp, or with ATTN_WIN_JOINT k * 8 + warp */
    int j[kPer];
#pragma unroll
    for (int k = 0; k < kPer; ++k) {
        j[k] = -1;
        if (active_of(k) && lane < n_sel) j[k] = indices[(((size_t)b * sh.M + i_of(k)) * sh.G + g) * n_sel + lane];
    }
    bool valid[kPer];
#pragma unroll
    for (int k = 0; k < kPer; ++k) {
        const unsigned ends = __ballot_sync(0xffffffffu, lane < n_sel && j[k] < 0);
        const int n_list = ends ? __ffs(ends) - 1 : n_sel;
        const long t = (long)sh.N - sh.M + i_of(k);
        valid[k] = active_of(k) && lane < n_list && (long)j[k] * 64 <= t;
        if (lane < kWinMaxN)
            keys[k * kWinKeys + warp * kWinMaxN + lane] =
                valid[k] ? (unsigned long long)(unsigned)j[k] << 32 | (unsigned)(lane << kSlotBits | (ATTN_WIN_JOINT ? k * 8 : 0) | warp)
                         : ~0ull;
    }
    __syncthreads();
    /* kAll / kSort bitonic sorts of kSort keys side by side: thread (s, p) compares pair p of sort s */
    for (int kk = 2; kk <= kSort; kk <<= 1)
        for (int jj = kk >> 1; jj > 0; jj >>= 1) {
            if (threadIdx.x < kAll / 2) {
                const int s = threadIdx.x / (kSort / 2), p = threadIdx.x % (kSort / 2);
                const int x = ((p & ~(jj - 1)) << 1) | (p & (jj - 1)), y = x + jj;
                unsigned long long *ks = keys + s * kSort;
                const unsigned long long a = ks[x], c = ks[y];
                if ((a > c) == ((x & kk) == 0)) ks[x] = c, ks[y] = a;
            }
            __syncthreads();
        }

    /* the union: sorted entry f (sort f / kSort) is a group's first if valid and its block differs
     * from entry f - 1's within the same sort */
    constexpr int kPasses = (kAll + kWinThreads - 1) / kWinThreads;
    unsigned long long key[kPasses];
    bool first[kPasses];
    unsigned firsts[kPasses];
    int mr[kPasses];
#pragma unroll
    for (int pass = 0; pass < kPasses; ++pass) {
        const int f = threadIdx.x + pass * kWinThreads;
        key[pass] = ~0ull, first[pass] = false, mr[pass] = 0;
        if (f < kAll) {
            key[pass] = keys[f];
            first[pass] = key[pass] != ~0ull && (f % kSort == 0 || keys[f - 1] >> 32 != key[pass] >> 32);
            mr[pass] = (int)(key[pass] >> kSlotBits) & 15;
        }
        firsts[pass] = __ballot_sync(0xffffffffu, first[pass]);
        if (f < kAll && lane == 0) misc[f / 32] = __popc(firsts[pass]);
#if ATTN_WIN_ORDER
        if (first[pass]) {
            atomicAdd(&hist[(f / kSort) * 16 + mr[pass]], 1);
            atomicAdd(&chunk_hist[(f / 32) * 16 + mr[pass]], 1);
        }
#endif
    }
    __syncthreads();
    int nu = 0; /* the union sizes of all kPer windows together */
    for (int c = 0; c < kAll / 32; ++c) nu += misc[c];
#pragma unroll
    for (int pass = 0; pass < kPasses; ++pass) {
        const int f = threadIdx.x + pass * kWinThreads, c = f / 32, s = f / kSort;
#if ATTN_WIN_ORDER
        /* the groups of this chunk with the same smallest rank and a lower block: lanes before this one */
        const unsigned peers = __match_any_sync(0xffffffffu, first[pass] ? mr[pass] : 32 + lane);
        const int same_before = __popc(peers & firsts[pass] & ((1u << lane) - 1u));
#endif
        if (f < kAll && key[pass] != ~0ull) {
            int u = __popc(firsts[pass] & (0xffffffffu >> (31 - lane))) - 1; /* block order, global */
            for (int c2 = 0; c2 < c; ++c2) u += misc[c2];
            if (first[pass]) {
                int users = 1;
                while (f + users < (s + 1) * kSort && keys[f + users] >> 32 == key[pass] >> 32) ++users;
                int u_ring = u;
#if ATTN_WIN_ORDER
                int wbase = 0; /* the sort's first global union index */
                for (int c2 = 0; c2 < s * (kSort / 32); ++c2) wbase += misc[c2];
                u_ring = wbase;
                for (int r = 0; r < mr[pass]; ++r) u_ring += hist[s * 16 + r];
                for (int c2 = s * (kSort / 32); c2 < c; ++c2) u_ring += chunk_hist[c2 * 16 + mr[pass]];
                u_ring += same_before;
#endif
                map[u] = u_ring;
                tile[u_ring] = (int)(key[pass] >> 32) << kUserBits | users;
            }
        }
    }
    __syncthreads();
#pragma unroll
    for (int pass = 0; pass < kPasses; ++pass) {
        const int f = threadIdx.x + pass * kWinThreads;
        if (f < kAll && key[pass] != ~0ull) {
            int u = __popc(firsts[pass] & (0xffffffffu >> (31 - lane))) - 1;
            for (int c2 = 0; c2 < f / 32; ++c2) u += misc[c2];
            const int slot = (int)(key[pass] & 0xffffffffu); /* e << kSlotBits | slot */
            const int sl = slot & ((1 << kSlotBits) - 1), e = slot >> kSlotBits;
            uid_of[(ATTN_WIN_JOINT ? 0 : (f / kWinKeys) * kWinKeys) + sl * kWinMaxN + e] = map[u];
        }
    }
    __syncthreads();
    const int row_base = b * sh.N; /* the launcher checks B * N < 2^31 */
    if (threadIdx.x == 0) /* the unions are known: the first tiles go out while the warps rank theirs */
        for (int u = 0; u < min(nu, kSRing - 1); ++u) issue_tile(&tk, &tv, base, full, left, slot_u, tile, u, row_base, g);
#if !ATTN_WIN_JOINT
    /* each warp's tiles of window k in ring order, the r-th in lane r of seq[k] */
    int seq[kPer], count[kPer];
#pragma unroll
    for (int k = 0; k < kPer; ++k) {
        int *mine = uid_of + k * kWinKeys + warp * kWinMaxN;
        const int my_u = valid[k] ? mine[lane] : 0x7fffffff;
        int rank = 0;
#pragma unroll
        for (int e = 0; e < kWinMaxN; ++e) {
            const int other = __shfl_sync(0xffffffffu, my_u, e);
            rank += other < my_u || (other == my_u && e < lane);
        }
        count[k] = __popc(__ballot_sync(0xffffffffu, valid[k]));
        __syncwarp();
        if (valid[k]) mine[rank] = my_u;
        __syncwarp();
        seq[k] = lane < count[k] ? mine[lane] : 0;
    }
#else
    /* both positions' tiles merged in ring order: lane k * 16 + e takes entry e of window k, and the
     * r-th of the warp's entries goes to lane r as u << 1 | k (a tile both chose: two entries, k = 0
     * first). map[] is free now: warp w keeps its 32 in map[32 w ..] */
    int seq2, count2;
    {
        const int k = lane / 16, e = lane % 16;
        const bool v0 = __shfl_sync(0xffffffffu, valid[0], e), v1 = __shfl_sync(0xffffffffu, valid[1], e);
        const bool v = k ? v1 : v0;
        const int my_u = v ? uid_of[k * kWinKeys + warp * kWinMaxN + e] : 0x7fffffff;
        int rank = 0;
#pragma unroll
        for (int x = 0; x < 32; ++x) {
            const int other = __shfl_sync(0xffffffffu, my_u, x);
            rank += other < my_u || (other == my_u && x < lane);
        }
        count2 = __popc(__ballot_sync(0xffffffffu, v));
        int *mine = map + warp * 32;
        __syncwarp();
        if (v) mine[rank] = my_u << 1 | k;
        __syncwarp();
        seq2 = lane < count2 ? mine[lane] : 0;
    }
#endif
    __syncthreads(); /* the last stage is free: every warp has read its tiles */
    if (threadIdx.x == 0 && nu >= kSRing) issue_tile(&tk, &tv, base, full, left, slot_u, tile, kSRing - 1, row_base, g);

    /* until union tile u is in stage st (the stage may still hold an earlier one) and has landed */
    auto wait_for_tile = [&](int u, int st) {
        if (lane == 0) {
            const long long start = clock64();
            while (atomicAdd(&slot_u[st], 0) != u) {
                __nanosleep(32);
                if (clock64() - start > (1ll << 32)) __trap();
            }
        }
        __syncwarp();
        mbar_wait(full + 8 * st, (unsigned)(u / kSRing) & 1u);
    };
    /* one user of union tile u (stage st) is done with it: the last sends tile u + kSRing */
    auto release = [&](int u, int st) {
        __syncwarp();
        if (lane == 0) {
            __threadfence_block();
            if (atomicSub(&left[st], 1) == 1 && u + kSRing < nu) {
                __threadfence_block();
                issue_tile(&tk, &tv, base, full, left, slot_u, tile, u + kSRing, row_base, g);
            }
        }
    };
#if ATTN_WIN_JOINT
    {
#if ATTN_WIN_QSMEM
        SmemQPosition ps1; /* the warp's position in window 1: its Q in slot 8 + warp */
        ps1.begin(base + kSOffQ + (8 + warp) * 4096);
        cp_async_wait_all();
        __syncwarp(); /* the warp's two Q copies have landed (each warp reads only its own) */
#else
        PositionSoftmax ps1; /* the warp's position in window 1 (its Q asked of L2 at the start) */
        ps1.init(q + (active_of(1) ? row0_of(1) : 0) * 128);
#endif
        const int t0 = sh.N - sh.M + i_of(0), t1 = sh.N - sh.M + i_of(1); /* N <= 2^28 here */
        for (int r = 0; r < count2; ++r) {
            const int x = __shfl_sync(0xffffffffu, seq2, r), u = x >> 1, st = u % kSRing;
            const int s0 = (tile[u] >> kUserBits) * 64;
            wait_for_tile(u, st);
#if !ATTN_WIN_NOCOMPUTE
            if (x & 1) /* warp-uniform */
                ps1.tile(base + st * kPair, s0, min(t1, s0 + 63), scale_log2);
            else
                ps.tile(base + st * kPair, s0, min(t0, s0 + 63), scale_log2);
#else
            (void)s0, (void)t0, (void)t1;
#endif
            release(u, st);
        }
#if ATTN_WIN_NOCOMPUTE
        ps.m_i[0] = ps.m_i[1] = ps1.m_i[0] = ps1.m_i[1] = 0.f;
        ps.l_i[0] = ps.l_i[1] = ps1.l_i[0] = ps1.l_i[1] = 1.f;
#endif
        if (active_of(0))
            ps.store(o + row0_of(0) * 128, lse + ((size_t)b * sh.H + (size_t)g * hpg) * sh.M + i_of(0), sh.M, scale_log2);
        if (active_of(1))
            ps1.store(o + row0_of(1) * 128, lse + ((size_t)b * sh.H + (size_t)g * hpg) * sh.M + i_of(1), sh.M, scale_log2);
    }
#else
    for (int k = 0; k < kPer; ++k) {
        if (!active_of(k)) continue; /* no entries either: nothing of this window waits for the warp */
        if (k > 0) ps.init(q + row0_of(k) * 128);
        const long t = (long)sh.N - sh.M + i_of(k);
        const int my_seq = pick(seq, k), my_count = pick(count, k);
#if ATTN_WIN_LOOKAHEAD
        float s_next[8][4]; /* S of the next tile, when it was ready early */
        bool have_next = false;
#endif
        for (int r = 0; r < my_count; ++r) {
            const int u = __shfl_sync(0xffffffffu, my_seq, r), st = u % kSRing;
            const long s0 = (long)(tile[u] >> kUserBits) * 64;
#if ATTN_WIN_NOCOMPUTE
            wait_for_tile(u, st); /* landed: released at once */
            (void)s0;
#elif ATTN_WIN_LOOKAHEAD
            float s[8][4];
            if (have_next) {
#pragma unroll
                for (int nt = 0; nt < 8; ++nt)
#pragma unroll
                    for (int c = 0; c < 4; ++c) s[nt][c] = s_next[nt][c];
            } else {
                wait_for_tile(u, st);
                ps.scores(base + st * kPair, s);
            }
            have_next = false;
            if (r + 1 < my_count) { /* the next tile, if it is already there: its S now */
                const int un = __shfl_sync(0xffffffffu, my_seq, r + 1), stn = un % kSRing;
                int ready = 0;
                if (lane == 0)
                    ready = atomicAdd(&slot_u[stn], 0) == un && mbar_test(full + 8 * stn, (unsigned)(un / kSRing) & 1u);
                if (__shfl_sync(0xffffffffu, ready, 0)) {
                    mbar_wait(full + 8 * stn, (unsigned)(un / kSRing) & 1u); /* landed: returns at once, for every lane */
                    ps.scores(base + stn * kPair, s_next);
                    have_next = true;
                }
            }
            ps.finish(s, base + st * kPair + 2 * kBox, s0, min(t, s0 + 63), scale_log2);
#else
            wait_for_tile(u, st);
            ps.tile(base + st * kPair, s0, min(t, s0 + 63), scale_log2);
#endif
            release(u, st);
        }
#if ATTN_WIN_NOCOMPUTE
        ps.m_i[0] = ps.m_i[1] = 0.f, ps.l_i[0] = ps.l_i[1] = 1.f; /* finite outputs (o = 0), so that bench_nsa times it */
#endif
        ps.store(o + row0_of(k) * 128, lse + ((size_t)b * sh.H + (size_t)g * hpg) * sh.M + i_of(k), sh.M, scale_log2);
    }
#endif /* ATTN_WIN_JOINT */
#endif
}
