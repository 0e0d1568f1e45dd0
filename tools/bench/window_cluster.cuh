/*
 * window_cluster.cuh - an experimental version of lesson 09's window kernel (selected_window_kernel) in
 * which two blocks of a thread-block cluster, two neighbouring windows of 8 positions of one kv group,
 * read a tile that both windows chose from L2 once: the copy engine multicasts it into both blocks'
 * shared memory. Included by the edit `cluster` of window_variants.py in place of the kernel; never part
 * of a lesson. Needs sm_90 (clusters, distributed shared memory, multicast tensor copies).
 *
 * Why: the window kernel's transport alone (nothing computed) moves its tiles at about 8.3 TB/s, and so
 * does the transport of a 16-position union (change 13 of docs/NSA_PERFORMANCE.md). If L2 limits that
 * rate, reading the 16-position union from L2 while each multiprocessor still receives only its own
 * window's union (and keeps its 7 stages and Q in registers) takes the kernel towards the 16-position
 * floor; if the multiprocessors' intake limits it, nothing changes. With ATTN_WIN_NOCOMPUTE = 1 this
 * file is that measurement (the warps wait for their tiles and release them, nothing computed: wrong
 * output).
 *
 * Design, on top of the committed kernel (its union, its warps, its PositionSoftmax):
 *   match   after each block has built its window's union, a cluster barrier; each block copies the
 *           other's union (blk[], distributed shared memory) and marks its own union blocks that the
 *           other also has. Both unions are ascending, so the shared blocks come in the same order in
 *           both: shared block s is the s-th in both blocks. The others are private, numbered p.
 *   rings   the ring's 7 stages are split: kPriv private stages (private block p in stage p % kPriv,
 *           filled by the block itself as the committed kernel does) and kSh shared stages (shared
 *           block s in stage kPriv + s % kSh, the same stage and barrier offset in both blocks, which a
 *           multicast copy needs).
 *   shared  a shared stage is refilled when both blocks have released it: the last user in each block
 *           sets the stage's users and number, arms its own full barrier (expect-tx), then adds one to
 *           the stage's counter in block 0's shared memory (an acq_rel atomic at cluster scope); the
 *           block that finds the counter odd, the second, issues the four copies with the multicast
 *           mask of both blocks. Both blocks walk the shared blocks in the same order, so the counter
 *           only ever pairs the two releases of one shared block.
 *   end     a cluster barrier before exit: block 0's counters must outlive block 1's last release.
 * Deadlock-free as the committed kernel: in each block the smallest unfinished union block sits in its
 * stage (if private, as before; if shared, both blocks have finished every shared block before it, by
 * induction on the shared order, so both have released its stage), and its warps have finished all
 * their earlier blocks.
 * Knobs: ATTN_WIN_SHARED_STAGES (default 2 of the 7: on the bar's random lists at 64k about a quarter of
 * a window's union is also in its neighbour's), ATTN_WIN_NOCOMPUTE.
 */
#ifndef ATTN_WIN_SHARED_STAGES
#define ATTN_WIN_SHARED_STAGES 2
#endif
#ifndef ATTN_WIN_NOCOMPUTE
#define ATTN_WIN_NOCOMPUTE 0
#endif
constexpr int kSh = ATTN_WIN_SHARED_STAGES, kPriv = kRing - kSh;
static_assert(kSh >= 1 && kPriv >= 1, "both rings need a stage");
/* beside the committed kernel's bookkeeping (up to kOffMisc + 32) */
constexpr int kOffCode = kOffMisc + 8 * 4;            /* uint16 code[kWinKeys]: 0x8000 | s, or p */
constexpr int kOffPrivU = kOffCode + kWinKeys * 2;    /* uint8 priv_u[kWinKeys]: the union index of private p */
constexpr int kOffShU = kOffPrivU + kWinKeys;         /* uint8 sh_u[kWinKeys]: the union index of shared s */
constexpr int kOffCnt = kOffShU + kWinKeys;           /* int cnt[8]: shared per scan warp (0-3), ns (4), np (5) */
constexpr int kOffReady = kOffCnt + 8 * 4;            /* int ready[8]: releases per shared stage (block 0's) */
constexpr int kClusterSmem = kOffReady + 8 * 4 + 1024;
static_assert(kClusterSmem <= 227 * 1024, "the cluster kernel's shared memory must fit an H100 / H200 block");
static_assert(kWinKeys <= 255, "union indices are stored in a byte");

#if ATTN_HAVE_TMA
__device__ __forceinline__ unsigned cluster_rank()
{
    unsigned r;
    asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
    return r;
}
/* every thread of both blocks (warp-uniform) */
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
__device__ __forceinline__ unsigned add_cluster(uint32_t addr, unsigned x)
{
    unsigned old;
    asm volatile("atom.acq_rel.cluster.shared::cluster.add.u32 %0, [%1], %2;\n" : "=r"(old) : "r"(addr), "r"(x) : "memory");
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

/* The cluster's shared state, as addresses and pointers of this block. */
struct ClusterRing {
    const CUtensorMap *tk, *tv;
    uint32_t ring, full, ready0; /* ready0: block 0's ready[] */
    int *left, *slot;
    const int *blk;
    const uint16_t *upos;
    const uint8_t *priv_u, *sh_u;
    int row_base, g;

    __device__ __forceinline__ void copy4(int st, int u, bool multicast) const
    {
        const uint32_t bar = full + 8 * st, dst = ring + st * kPair;
        const int row = row_base + blk[u] * 64;
        if (multicast) {
            tma_load_3d_mc(dst, tk, 0, g, row, bar, 3);
            tma_load_3d_mc(dst + kBox, tk, 64, g, row, bar, 3);
            tma_load_3d_mc(dst + 2 * kBox, tv, 0, g, row, bar, 3);
            tma_load_3d_mc(dst + 3 * kBox, tv, 64, g, row, bar, 3);
        } else {
            tma_load_3d(dst, tk, 0, g, row, bar);
            tma_load_3d(dst + kBox, tk, 64, g, row, bar);
            tma_load_3d(dst + 2 * kBox, tv, 0, g, row, bar);
            tma_load_3d(dst + 3 * kBox, tv, 64, g, row, bar);
        }
    }
    /* stage st: its users and number, then the expect-tx arrival for the next phase */
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
        copy4(st, u, false);
    }
    /* this block's half of shared block s: arm, count the release; the second of the two issues */
    __device__ __forceinline__ void issue_shared(int s) const
    {
        const int st = kPriv + s % kSh, u = sh_u[s];
        arm(st, u, s);
        if (add_cluster(ready0 + 4 * (s % kSh), 1u) & 1u) copy4(st, u, true);
    }
};
#endif

__global__ void __cluster_dims__(2, 1, 1) __launch_bounds__(kWinThreads, 1)
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
    uint16_t *code = reinterpret_cast<uint16_t *>(smem + kOffCode);
    uint8_t *priv_u = smem + kOffPrivU, *sh_u = smem + kOffShU;
    int *cnt = reinterpret_cast<int *>(smem + kOffCnt);
    int *ready = reinterpret_cast<int *>(smem + kOffReady);
    /* before the first copy the ring holds the sort keys and union indices (stage 0) and Q (stage 1) */
    unsigned long long *keys = reinterpret_cast<unsigned long long *>(smem);
    int *uid_of = reinterpret_cast<int *>(smem + kWinKeys * 8); /* [warp][entry] */
    int *peer_blk = reinterpret_cast<int *>(smem); /* stage 0 again, once the keys are done */

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int g = blockIdx.x / windows, win = windows - 1 - (int)(blockIdx.x % windows); /* last window first */
    const int b = blockIdx.y, hpg = sh.H / sh.G;
    const int i = win * kWinWarps + warp; /* this warp's query; none when i >= M */
    const bool active = i < sh.M;
    const long t = (long)sh.N - sh.M + i;
    const size_t row0 = ((size_t)b * sh.M + i) * sh.H + (size_t)g * hpg; /* the warp's first row of q and o */
    const uint32_t q_s = base + kPair + warp * (kRows * 256);
    const unsigned rank = cluster_rank(), peer = rank ^ 1u;

    if (threadIdx.x == 0) {
        for (int st = 0; st < kRing; ++st) {
            mbar_init(full + 8 * st, 1);
            slot_u[st] = -1;
        }
        for (int x = 0; x < 8; ++x) ready[x] = 0, cnt[x] = 0;
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

    /* the window's union, as the committed kernel builds it */
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
    const int my_u = valid ? uid_of[warp * kWinMaxN + lane] : 0x7fffffff;
    int rank_e = 0;
#pragma unroll
    for (int e = 0; e < kWinMaxN; ++e) {
        const int other = __shfl_sync(0xffffffffu, my_u, e);
        rank_e += other < my_u || (other == my_u && e < lane);
    }
    const int count = __popc(__ballot_sync(0xffffffffu, valid));
    __syncwarp();
    if (valid) uid_of[warp * kWinMaxN + rank_e] = my_u;
    __syncwarp();
    const int seq = lane < count ? uid_of[warp * kWinMaxN + lane] : 0;
    const int nu = misc[7];
    cp_async_wait_all();
    __syncwarp(); /* the warp's Q has landed */
    ps.init(q_s);
    __syncthreads(); /* stages 0 and 1 are free: every warp has read its union indices and its Q */

    /* match: the neighbour's union (its blk[] and size, ready since its side of the cluster barrier) */
    cluster_sync();
    const int nu_p = ld_cluster(map_rank(smem_addr(misc + 7), peer));
    if (threadIdx.x < nu_p) peer_blk[threadIdx.x] = ld_cluster(map_rank(smem_addr(blk + threadIdx.x), peer));
    __syncthreads();
    bool shared = false;
    if (threadIdx.x < nu) { /* binary search of blk[x] in the neighbour's ascending union */
        const int want = blk[threadIdx.x];
        int lo = 0, hi = nu_p;
        while (lo < hi) {
            const int mid = (lo + hi) >> 1;
            if (peer_blk[mid] < want) lo = mid + 1;
            else hi = mid;
        }
        shared = lo < nu_p && peer_blk[lo] == want;
    }
    const unsigned shb = __ballot_sync(0xffffffffu, shared);
    if (warp < kWinKeys / 32 && lane == 0) cnt[warp] = __popc(shb);
    __syncthreads();
    if (threadIdx.x < nu) {
        int s = __popc(shb & ((1u << lane) - 1u));
        for (int w = 0; w < warp; ++w) s += cnt[w];
        const int p = threadIdx.x - s;
        code[threadIdx.x] = shared ? (uint16_t)(0x8000 | s) : (uint16_t)p;
        if (shared) sh_u[s] = (uint8_t)threadIdx.x;
        else priv_u[p] = (uint8_t)threadIdx.x;
        if (threadIdx.x == nu - 1) cnt[4] = s + shared, cnt[5] = p + !shared;
    }
    __syncthreads();
    const int ns = cnt[4], np = cnt[5];

    ClusterRing cr;
    cr.tk = &tk, cr.tv = &tv, cr.ring = base, cr.full = full, cr.ready0 = map_rank(smem_addr(ready), 0);
    cr.left = left, cr.slot = slot_u, cr.blk = blk, cr.upos = upos, cr.priv_u = priv_u, cr.sh_u = sh_u;
    cr.row_base = b * sh.N, cr.g = g; /* the launcher checks B * N < 2^31 */
    if (threadIdx.x == 0) {
        for (int p = 0; p < min(np, kPriv); ++p) cr.issue_private(p);
        for (int s = 0; s < min(ns, kSh); ++s) cr.issue_shared(s);
    }
    if (active) {
        for (int r = 0; r < count; ++r) {
            const int u = __shfl_sync(0xffffffffu, seq, r), c = code[u], idx = c & 0x7fff;
            const bool shd = c & 0x8000;
            const int st = shd ? kPriv + idx % kSh : idx % kPriv;
            const unsigned parity = (unsigned)(shd ? idx / kSh : idx / kPriv) & 1u;
            if (lane == 0) {
                const long long start = clock64();
                while (atomicAdd(&slot_u[st], 0) != idx) { /* the stage still holds an earlier block */
                    __nanosleep(32);
                    if (clock64() - start > (1ll << 32)) __trap();
                }
            }
            __syncwarp();
            mbar_wait(full + 8 * st, parity);
#if !ATTN_WIN_NOCOMPUTE
            const long s0 = (long)blk[u] * 64;
            ps.tile(base + st * kPair, s0, min(t, s0 + 63), scale_log2);
#endif
            __syncwarp(); /* every lane is done reading the stage */
            if (lane == 0) {
                __threadfence_block();
                if (atomicSub(&left[st], 1) == 1) { /* the stage's last use in this block: refill it */
                    __threadfence_block();
                    if (shd && idx + kSh < ns) cr.issue_shared(idx + kSh);
                    else if (!shd && idx + kPriv < np) cr.issue_private(idx + kPriv);
                }
            }
        }
#if ATTN_WIN_NOCOMPUTE
        ps.m_i[0] = ps.m_i[1] = 0.f;
        ps.l_i[0] = ps.l_i[1] = 1.f;
#endif
        ps.store(o + row0 * 128, lse + ((size_t)b * sh.H + (size_t)g * hpg) * sh.M + i, sh.M, scale_log2);
    }
    cluster_sync(); /* block 0's counters, and both blocks' shared memory, until both are done */
#endif
}

