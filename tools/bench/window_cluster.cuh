/*
 * window_cluster.cuh - an experimental version of lesson 09's window kernel (selected_window_kernel) in
 * which the C blocks of a thread-block cluster (C = 2 or 4), C neighbouring windows of 8 positions of
 * one kv group, read a tile that two or more of the windows chose from L2 once: the copy engine
 * multicasts it into the shared memory of the blocks that chose it. The edit `cluster` of
 * window_variants.py includes it before the committed kernel and replaces the kernel's ring (from the
 * first issue to the end) with calls of the functions below: the kernel's union, Q and warps stay its
 * own. Never part of a lesson. Needs sm_90 (clusters, distributed shared memory, multicast tensor
 * copies). tools/bench/cluster_protocol.py transcribes its
 * bookkeeping and ring protocol and checks them under random orders of events.
 *
 * Why: the window kernel's transport alone (nothing computed) moves its tiles at about 8.3 TB/s, and so
 * does the transport of a 16-position union (change 13 of docs/NSA_PERFORMANCE.md). If L2 limits that
 * rate, reading the cluster's union from L2 (about 0.62 of the independent reads for 16 positions,
 * 0.49 for 32, on the bar's random lists) while each multiprocessor still receives only its own
 * window's union (0.70), and keeps its 7 stages and Q in registers, takes the kernel below the floor
 * of a window of 8; if the multiprocessors' intake limits it, nothing changes. With
 * ATTN_WIN_NOCOMPUTE = 1 this file is that measurement (the warps wait for their tiles and release
 * them, nothing computed: wrong output).
 *
 * Design, on top of the committed kernel (its union, its warps, its PositionSoftmax):
 *   match   after each block has built its window's union, a cluster barrier; each block copies the C
 *           unions (blk[], distributed shared memory) and finds, for every block of every union, the
 *           unions that also hold it (binary searches): its mask. A block held by two or more unions
 *           is shared; the cluster numbers its shared blocks in ascending order, gidx, which every
 *           block can work out on its own (the shared blocks before it, counted once, at the lowest
 *           union that holds them). The others are private, numbered p in each block.
 *   rings   the ring's 7 stages are split: kPriv private stages (private block p in stage p % kPriv,
 *           filled by the block itself as the committed kernel does) and kSh shared stages (shared
 *           block gidx in stage kPriv + gidx % kSh in every block that holds it: a multicast copy
 *           writes one offset and completes the barrier at one offset in each). A block's shared
 *           stage takes its own shared blocks of that stage one after the other, so the phase of its
 *           barrier is the block's own count of them (the parity is stored with the entry).
 *   shared  a shared block is sent when every block that holds it has released the stage's previous
 *           block: the last user in each block sets the stage's users and number, arms its own full
 *           barrier (expect-tx), then sets its bit in the block's 4-bit field of a table in block 0
 *           (an acq_rel atomic OR at cluster scope); the block that completes the mask issues the four
 *           copies, multicast to the mask. One field per shared block, so releases of different
 *           shared blocks never mix, however far one block runs ahead of another.
 *   end     a cluster barrier before exit: block 0's table and every block's union must outlive the
 *           others' use of them.
 * Deadlock-free: take the smallest block id not yet done by every block that holds it, over the whole
 * cluster. Each block that holds it has finished everything smaller, so the stage it maps to holds it
 * or has been released and re-armed for it in every block that holds it: the copy goes out, and its
 * users, done with everything before it, take it.
 * Knobs: ATTN_WIN_CLUSTER (2 or 4 windows per cluster, default 2), ATTN_WIN_SHARED_STAGES (default 2
 * of the 7 with 2 windows, 4 with 4: on the bar's random lists about 26% and 54% of a window's union is
 * also in another window of its cluster), ATTN_WIN_NOCOMPUTE.
 */
#ifndef ATTN_WIN_CLUSTER
#define ATTN_WIN_CLUSTER 2
#endif
#ifndef ATTN_WIN_SHARED_STAGES
#define ATTN_WIN_SHARED_STAGES (ATTN_WIN_CLUSTER == 2 ? 2 : 4)
#endif
#ifndef ATTN_WIN_NOCOMPUTE
#define ATTN_WIN_NOCOMPUTE 0
#endif
constexpr int kCl = ATTN_WIN_CLUSTER, kSh = ATTN_WIN_SHARED_STAGES, kPriv = kRing - kSh;
static_assert(kCl == 2 || kCl == 4, "clusters of 2 or 4 windows");
static_assert(kSh >= 1 && kPriv >= 1, "both rings need a stage");
constexpr int kMaxShared = kCl * kWinKeys / 2; /* a shared block is in two unions or more */
/* an entry's code: bit 31 shared; then gidx (bits 0-8), the mask of unions (9-12), the parity of its
 * turn in its stage (13); private: p (bits 0-8) */
constexpr int kCodeShared = (int)0x80000000u, kCodeParity = 1 << 13;
static_assert(kMaxShared <= 512, "gidx fits 9 bits");
/* beside the committed kernel's bookkeeping (up to kOffMisc + 32), from the 1024-aligned base */
constexpr int kOffCode = kOffMisc + 8 * 4;            /* int code[kWinKeys] */
constexpr int kOffPrivU = kOffCode + kWinKeys * 4;    /* uint8 priv_u[kWinKeys]: the union index of private p */
constexpr int kOffNext = kOffPrivU + kWinKeys;        /* uint8 nxt[kWinKeys]: next shared entry, same stage */
constexpr int kOffFirst = kOffNext + kWinKeys;        /* uint8 first_of[8]: the first shared entry of a stage */
constexpr int kOffCnt = kOffFirst + 8;                /* int cnt[8]: per scan warp (0-3), np (4) */
constexpr int kOffTurns = kOffCnt + 8 * 4;            /* unsigned turns[kMaxShared / 8]: 4 bits per gidx (block 0's) */
constexpr int kClusterSmem = kOffTurns + kMaxShared / 2 + 1024;
static_assert(kClusterSmem <= 227 * 1024, "the cluster kernel's shared memory must fit an H100 / H200 block");
/* scratch of the match, in ring stage 0 before the first copy: the C unions, their sizes, flags, and
 * the prefix counts of the blocks each union is the first to hold among the shared ones */
constexpr int kScrBlk = 0;                                 /* int allblk[kCl][kWinKeys] */
constexpr int kScrNu = kScrBlk + kCl * kWinKeys * 4;       /* int nus[kCl] */
constexpr int kScrFlag = kScrNu + 4 * 4;                   /* uint8 flag[kCl][kWinKeys]: mask | canonical << 7 */
constexpr int kScrPc = kScrFlag + kCl * kWinKeys;          /* int pc[kCl][kWinKeys + 1] */
static_assert(kScrPc + kCl * (kWinKeys + 1) * 4 <= kPair, "the match's scratch fits one stage");

#if ATTN_HAVE_TMA
__device__ __forceinline__ unsigned cluster_rank()
{
    unsigned r;
    asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
    return r;
}
/* every thread of every block of the cluster (warp-uniform) */
__device__ __forceinline__ void cluster_sync()
{
    asm volatile("barrier.cluster.arrive.release.aligned;\n"
                 "barrier.cluster.wait.acquire.aligned;\n" ::
                     : "memory");
}
/* the address of the same shared variable in block `rank` of the cluster */
__device__ __forceinline__ uint32_t map_rank(uint32_t addr, unsigned rank)
{
    uint32_t r;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(r) : "r"(addr), "r"(rank));
    return r;
}
__device__ __forceinline__ int ld_cluster(uint32_t addr)
{
    int v;
    asm volatile("ld.shared::cluster.s32 %0, [%1];\n" : "=r"(v) : "r"(addr) : "memory");
    return v;
}
__device__ __forceinline__ unsigned or_cluster(uint32_t addr, unsigned x)
{
    unsigned old;
    asm volatile("atom.acq_rel.cluster.shared::cluster.or.b32 %0, [%1], %2;\n" : "=r"(old) : "r"(addr), "r"(x) : "memory");
    return old;
}
/* tma_load_3d into the same offset of every block of `mask`, completing on the barrier at `bar` in each */
__device__ __forceinline__ void tma_load_3d_mc(uint32_t dst, const CUtensorMap *map, int c0, int c1, int c2, uint32_t bar,
                                               uint16_t mask)
{
    asm volatile("cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes.multicast::cluster"
                 " [%0], [%1, {%2, %3, %4}], [%5], %6;\n" ::"r"(dst),
                 "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(bar), "h"(mask)
                 : "memory");
}
/* the first index in blk[0 .. n) whose block is >= want (blk ascending) */
__device__ __forceinline__ int lower_bound(const int *blk, int n, int want)
{
    int lo = 0, hi = n;
    while (lo < hi) {
        const int mid = (lo + hi) >> 1;
        if (blk[mid] < want) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* The cluster's shared state, as addresses and pointers of this block. */
struct ClusterRing {
    const CUtensorMap *tk, *tv;
    uint32_t ring, full, turns0; /* turns0: block 0's turns[] */
    unsigned rank;
    int *left, *slot;
    const int *blk, *code;
    const uint16_t *upos;
    const uint8_t *priv_u, *nxt;
    int row_base, g;

    __device__ __forceinline__ void copy4(int st, int u, uint16_t mask) const
    {
        const uint32_t bar = full + 8 * st, dst = ring + st * kPair;
        const int row = row_base + blk[u] * 64;
        if (mask) {
            tma_load_3d_mc(dst, tk, 0, g, row, bar, mask);
            tma_load_3d_mc(dst + kBox, tk, 64, g, row, bar, mask);
            tma_load_3d_mc(dst + 2 * kBox, tv, 0, g, row, bar, mask);
            tma_load_3d_mc(dst + 3 * kBox, tv, 64, g, row, bar, mask);
        } else {
            tma_load_3d(dst, tk, 0, g, row, bar);
            tma_load_3d(dst + kBox, tk, 64, g, row, bar);
            tma_load_3d(dst + 2 * kBox, tv, 0, g, row, bar);
            tma_load_3d(dst + 3 * kBox, tv, 64, g, row, bar);
        }
    }
    /* stage st: its users and number, then the expect-tx arrival for its next phase */
    __device__ __forceinline__ void arm(int st, int u, int idx) const
    {
        left[st] = upos[u + 1] - upos[u];
        atomicExch(&slot[st], idx); /* warps poll it */
        fence_proxy_async();        /* the stage was last read by ldmatrix; the copy engine writes it next */
        mbar_arrive_expect_tx(full + 8 * st, kPair);
    }
    __device__ __forceinline__ void issue_private(int p) const
    {
        const int st = p % kPriv, u = priv_u[p];
        arm(st, u, p);
        copy4(st, u, 0);
    }
    /* this block's part of shared entry u: arm, set its bit; the block that completes the mask issues */
    __device__ __forceinline__ void issue_shared(int u) const
    {
        const int c = code[u], gidx = c & 511;
        const unsigned mask = (unsigned)(c >> 9) & 15u, shift = 4u * (unsigned)(gidx % 8);
        const int st = kPriv + gidx % kSh;
        arm(st, u, gidx);
        const unsigned old = or_cluster(turns0 + 4 * (gidx / 8), (1u << rank) << shift);
        if ((((old >> shift) & 15u) | (1u << rank)) == mask) copy4(st, u, (uint16_t)mask);
    }
    /* thread 0, once the match is done: the first kPriv private blocks and each shared stage's first */
    __device__ __forceinline__ void issue_first(int np, const uint8_t *first_of) const
    {
        for (int p = 0; p < min(np, kPriv); ++p) issue_private(p);
        for (int st = 0; st < kSh; ++st)
            if (first_of[st] != 0xff) issue_shared(first_of[st]);
    }
};


/* The match (the whole block), right after the committed kernel has built its window's union (blk[],
 * upos[], nu = misc[7]) and every warp has taken its sequence and Q: stages 0 and 1 are free, and
 * stage 0 holds the scratch. Writes code[], priv_u[], nxt[] and first_of[], and returns np. */
__device__ int cluster_match(uint8_t *smem, int nu, unsigned rank)
{
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int *blk = reinterpret_cast<const int *>(smem + kOffBlk);
    const int *misc = reinterpret_cast<const int *>(smem + kOffMisc);
    int *code = reinterpret_cast<int *>(smem + kOffCode);
    uint8_t *priv_u = smem + kOffPrivU, *nxt = smem + kOffNext, *first_of = smem + kOffFirst;
    int *cnt = reinterpret_cast<int *>(smem + kOffCnt);
    unsigned *turns = reinterpret_cast<unsigned *>(smem + kOffTurns);
    int *allblk = reinterpret_cast<int *>(smem + kScrBlk), *nus = reinterpret_cast<int *>(smem + kScrNu);
    uint8_t *flag = smem + kScrFlag;
    int *pc = reinterpret_cast<int *>(smem + kScrPc);

    if (threadIdx.x == 0) {
        for (int x = 0; x < kMaxShared / 8; ++x) turns[x] = 0u;
        for (int x = 0; x < 8; ++x) cnt[x] = 0, first_of[x] = 0xff;
    }
    /* (1) the C unions into stage 0: past the cluster barrier every block's blk[] and size are ready,
     * and so are this block's table and counts (the barrier orders them for the whole cluster) */
    cluster_sync();
    if (threadIdx.x < kCl) nus[threadIdx.x] = ld_cluster(map_rank(smem_addr(misc + 7), threadIdx.x));
    for (int f = threadIdx.x; f < kCl * kWinKeys; f += kWinThreads) {
        const int c = f / kWinKeys, x = f % kWinKeys;
        allblk[f] = ld_cluster(map_rank(smem_addr(blk + x), (unsigned)c)); /* past the union's end: unused */
    }
    __syncthreads();
    /* (2) every union's blocks: which unions hold them, and whether this union is the first to */
    for (int f = threadIdx.x; f < kCl * kWinKeys; f += kWinThreads) {
        const int c = f / kWinKeys, x = f % kWinKeys;
        unsigned m = 0;
        if (x < nus[c]) {
            const int want = allblk[f];
            for (int c2 = 0; c2 < kCl; ++c2) {
                const int lo = c2 == c ? x : lower_bound(allblk + c2 * kWinKeys, nus[c2], want);
                if (lo < nus[c2] && allblk[c2 * kWinKeys + lo] == want) m |= 1u << c2;
            }
        }
        const bool canonical = __popc(m) >= 2 && (m & ((1u << c) - 1u)) == 0;
        flag[f] = (uint8_t)(m | (canonical ? 0x80u : 0u));
    }
    __syncthreads();
    /* (3) warp c < kCl: pc[c][x] = the canonical shared blocks of union c before x (x = 0 .. kWinKeys) */
    if (warp < kCl) {
        int run = 0;
        for (int x0 = 0; x0 < kWinKeys; x0 += 32) {
            const bool cn = flag[warp * kWinKeys + x0 + lane] & 0x80u;
            const unsigned bal = __ballot_sync(0xffffffffu, cn);
            pc[warp * (kWinKeys + 1) + x0 + lane] = run + __popc(bal & ((1u << lane) - 1u));
            run += __popc(bal);
        }
        if (lane == 0) pc[warp * (kWinKeys + 1) + kWinKeys] = run;
    }
    __syncthreads();
    /* (4) this union's entries: shared ones get gidx (the canonical shared blocks below theirs, over all
     * unions) and their mask, private ones their number p */
    bool shared = false;
    int gidx = 0;
    unsigned msk = 0;
    if (threadIdx.x < nu) {
        msk = flag[rank * kWinKeys + threadIdx.x] & 15u;
        shared = __popc(msk) >= 2;
        if (shared) {
            const int want = blk[threadIdx.x];
            for (int c2 = 0; c2 < kCl; ++c2)
                gidx += pc[c2 * (kWinKeys + 1) + lower_bound(allblk + c2 * kWinKeys, nus[c2], want)];
        }
    }
    const unsigned shb = __ballot_sync(0xffffffffu, shared);
    if (warp < kWinKeys / 32 && lane == 0) cnt[warp] = __popc(shb);
    __syncthreads();
    if (threadIdx.x < nu) {
        int s = __popc(shb & ((1u << lane) - 1u));
        for (int w = 0; w < warp; ++w) s += cnt[w];
        const int p = threadIdx.x - s;
        code[threadIdx.x] = shared ? (kCodeShared | (int)(msk << 9) | gidx) : p;
        if (!shared) priv_u[p] = (uint8_t)threadIdx.x;
        if (threadIdx.x == nu - 1) cnt[4] = p + !shared;
    }
    __syncthreads();
    /* (5) warp 0, stage by stage: each shared entry's next one in its stage (nxt), the stage's first
     * (first_of), and the parity of its turn in the stage (the block's own count of them before it) */
    if (warp == 0)
        for (int st = 0; st < kSh; ++st) {
            int run = 0, last = -1;
            for (int x0 = 0; x0 < nu; x0 += 32) {
                const int u = x0 + lane, c = u < nu ? code[u] : 0;
                const bool mine = c < 0 && (c & 511) % kSh == st;
                const unsigned bal = __ballot_sync(0xffffffffu, mine);
                if (mine) {
                    if ((run + __popc(bal & ((1u << lane) - 1u))) & 1) code[u] = c | kCodeParity;
                    const unsigned above = bal & ~((2u << lane) - 1u); /* lanes above (none for 31: 2u << 31 == 0) */
                    if (above) nxt[u] = (uint8_t)(x0 + __ffs(above) - 1);
                }
                if (bal) {
                    if (lane == 0) {
                        if (last >= 0) nxt[last] = (uint8_t)(x0 + __ffs(bal) - 1);
                        else first_of[st] = (uint8_t)(x0 + __ffs(bal) - 1);
                    }
                    last = x0 + 31 - __clz(bal), run += __popc(bal);
                }
            }
            if (lane == 0 && last >= 0) nxt[last] = 0xff;
        }
    __syncthreads();
    return cnt[4];
}

/* This block's view of the cluster's rings. */
__device__ __forceinline__ ClusterRing cluster_ring(const CUtensorMap *tk, const CUtensorMap *tv, uint8_t *smem,
                                                    unsigned rank, int row_base, int g)
{
    ClusterRing cr;
    const uint32_t base = smem_addr(smem);
    cr.tk = tk, cr.tv = tv, cr.ring = base, cr.full = base + kOffFull;
    cr.turns0 = map_rank(base + kOffTurns, 0), cr.rank = rank;
    cr.left = reinterpret_cast<int *>(smem + kOffLeft), cr.slot = reinterpret_cast<int *>(smem + kOffSlot);
    cr.blk = reinterpret_cast<const int *>(smem + kOffBlk), cr.code = reinterpret_cast<const int *>(smem + kOffCode);
    cr.upos = reinterpret_cast<const uint16_t *>(smem + kOffUpos);
    cr.priv_u = smem + kOffPrivU, cr.nxt = smem + kOffNext;
    cr.row_base = row_base, cr.g = g;
    return cr;
}

/* One warp's walk over its blocks (seq: the r-th union index in lane r, count of them), as the
 * committed kernel's loop but with each entry's stage and parity from its code. */
__device__ __forceinline__ void cluster_walk(PositionSoftmax &ps, const ClusterRing &cr, int np, int seq, int count,
                                             long t, float scale_log2)
{
    const int lane = threadIdx.x % 32;
    for (int r = 0; r < count; ++r) {
        const int u = __shfl_sync(0xffffffffu, seq, r), c = cr.code[u];
        const bool shd = c < 0;
        const int idx = c & 511;
        const int st = shd ? kPriv + idx % kSh : idx % kPriv;
        const unsigned parity = shd ? (c & kCodeParity ? 1u : 0u) : (unsigned)(idx / kPriv) & 1u;
        if (lane == 0) {
            const long long start = clock64();
            while (atomicAdd(&cr.slot[st], 0) != idx) { /* the stage still holds an earlier block */
                __nanosleep(32);
                if (clock64() - start > (1ll << 32)) __trap();
            }
        }
        __syncwarp();
        mbar_wait(cr.full + 8 * st, parity);
#if !ATTN_WIN_NOCOMPUTE
        const long s0 = (long)cr.blk[u] * 64;
        ps.tile(cr.ring + st * kPair, s0, min(t, s0 + 63), scale_log2);
#endif
        __syncwarp(); /* every lane is done reading the stage */
        if (lane == 0) {
            __threadfence_block();
            if (atomicSub(&cr.left[st], 1) == 1) { /* the stage's last use in this block: refill it */
                __threadfence_block();
                if (shd && cr.nxt[u] != 0xff) cr.issue_shared(cr.nxt[u]);
                else if (!shd && idx + kPriv < np) cr.issue_private(idx + kPriv);
            }
        }
    }
#if ATTN_WIN_NOCOMPUTE
    ps.m_i[0] = ps.m_i[1] = 0.f; /* a finite output to store */
    ps.l_i[0] = ps.l_i[1] = 1.f;
#endif
}
#endif
