/*
 * decoding.cu - lesson 11, CUDA part: the KV cache's append, the split-KV dense decode and the NSA decode
 * (bf16 in, fp32 accumulation, bf16 out). Decoding is bound by memory and by latency: each step reads the
 * whole cache (dense) or its NSA share (compressed cache, selected blocks, window) once, for one query row
 * per head, so the kernels are about keeping enough bytes in flight on every multiprocessor, and about few
 * launches.
 *
 *   kv_cache_append_cuda   check_kernel (given: the cache's problems, on the device), append_kernel (the
 *                          new rows, and the compressed tokens the append completes), commit_kernel (the
 *                          lengths): three launches, nothing written when the check found a problem
 *   decode_dense_cuda      dense_split_kernel: one block per (chunk of keys, kv head, sequence) streams its
 *                          chunk of K and V through a cp.async ring, the kv head's query heads as the 16
 *                          rows of one tensor-core tile (lesson 04), and leaves a partial (o, lse);
 *                          combine_kernel merges a row's partials by their lse. One launch when one chunk
 *                          covers the cache.
 *   decode_nsa_cuda        nsa_decode_kernel, ONE launch: a thread-block cluster per (sequence, kv head).
 *                          Its blocks split the compressed cache, exchange their partial softmax statistics
 *                          through distributed shared memory to rank the selection blocks, split the selected
 *                          blocks and the window, and merge the three branches' partials by lse at the end.
 *
 * The tile step is common/flash_tile.cuh's (lessons 03-09): S = Q K^T on mma.sync, the online softmax,
 * P V. Here the warps split the keys of a tile (each warp its own 16 or 32 keys and its own softmax),
 * and every partial, of a warp, a block or a cluster rank, is merged by lse.
 */
#include <cuda_runtime.h>
#include <math.h>

#include "attn_gpu.h"
#include "decoding.h"
#include "flash_tile.cuh"

namespace {

constexpr int kThreads = 128, kWarps = kThreads / 32;
constexpr int kRows = 16;         /* one m16 tile of packed query rows: the heads of a kv head */
constexpr int kTile = 64;         /* keys (or compressed tokens) per K/V tile */
constexpr int kTargetCtas = 264;  /* dense: about two blocks per multiprocessor of a 132-SM GPU */
constexpr int kMinChunk = 256;    /* dense: at least four tiles per split, so the partial's write stays small */
constexpr int kMaxSplits = 1024;  /* dense: the combine's weights live in shared memory */
constexpr int kDenseStages = 3;   /* dense: tiles in the ring (2 in flight while one is computed) */
constexpr int kNsaStages = 2;     /* NSA: a smaller ring keeps two blocks (cluster ranks) per multiprocessor */

/* ---------------------------------------------------------------- small helpers (given) */

template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

__device__ __forceinline__ float bf16_to_f32(uint16_t x) { return __uint_as_float((uint32_t)x << 16); }
__device__ __forceinline__ uint16_t f32_to_bf16(float x) { return (uint16_t)(ptx::pack_bf16(x, 0.f) & 0xffffu); }

/* A length read on the device, clamped to the cache: a bad value must not make a kernel read out of bounds. */
__device__ __forceinline__ long clamp_length(int32_t L, int L_max) { return L < 0 ? 0 : L > L_max ? L_max : L; }

/* nsa.h's index rules on the device (its inline functions are host code). */
__device__ __forceinline__ long num_cmp(long L, const attn_nsa_params &p) { return L < p.l ? 0 : (L - p.l) / p.d + 1; }
__device__ __forceinline__ long overlap(long c, long j, const attn_nsa_params &p)
{
    long lo = c * p.d, hi = c * p.d + p.l - 1;
    const long blo = j * p.l_sel, bhi = (j + 1) * (long)p.l_sel - 1;
    lo = lo > blo ? lo : blo, hi = hi < bhi ? hi : bhi;
    return hi >= lo ? hi - lo + 1 : 0;
}

/* Deterministic block reductions (a fixed tree: the same inputs give the same bits). Every thread calls
 * them; `red` is kWarps floats of shared memory. */
__device__ __forceinline__ float block_max(float x, float *red)
{
    for (int off = 16; off > 0; off /= 2) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, off));
    __syncthreads();
    if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = x;
    __syncthreads();
    float m = red[0];
    for (int w = 1; w < kWarps; ++w) m = fmaxf(m, red[w]);
    return m;
}
__device__ __forceinline__ float block_sum(float x, float *red)
{
    for (int off = 16; off > 0; off /= 2) x += __shfl_xor_sync(0xffffffffu, x, off);
    __syncthreads();
    if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = x;
    __syncthreads();
    float s = red[0];
    for (int w = 1; w < kWarps; ++w) s += red[w];
    return s;
}

/* ---------------------------------------------------------------- thread-block clusters (given)
 *
 * sm_90 runs blocks of a cluster at once on neighbouring multiprocessors and lets them read each other's
 * shared memory (distributed shared memory, DSMEM) and wait for each other (barrier.cluster). On older
 * GPUs a kernel runs as clusters of one block: rank 0 of 1, the barrier a __syncthreads, and a "remote"
 * address is the block's own. */
__device__ __forceinline__ int cluster_rank()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    unsigned r;
    asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
    return (int)r;
#else
    return 0;
#endif
}
__device__ __forceinline__ int cluster_size()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    unsigned n;
    asm volatile("mov.u32 %0, %%cluster_nctarank;\n" : "=r"(n));
    return (int)n;
#else
    return 1;
#endif
}
/* Every thread of every block of the cluster: what a thread wrote before (shared memory of any rank,
 * global memory) is seen by every thread of the cluster after. */
__device__ __forceinline__ void cluster_sync()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.arrive.release.aligned;\n"
                 "barrier.cluster.wait.acquire.aligned;\n" ::: "memory");
#else
    __syncthreads();
#endif
}
/* The address of the same shared-memory location in block `rank` of the cluster. */
__device__ __forceinline__ uint32_t cluster_map(uint32_t addr, int rank)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    uint32_t out;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(out) : "r"(addr), "r"(rank));
    return out;
#else
    (void)rank;
    return addr;
#endif
}
__device__ __forceinline__ float cluster_ld_f32(uint32_t addr)
{
    float x;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("ld.shared::cluster.f32 %0, [%1];\n" : "=f"(x) : "r"(addr) : "memory");
#else
    asm volatile("ld.shared.f32 %0, [%1];\n" : "=f"(x) : "r"(addr) : "memory");
#endif
    return x;
}
__device__ __forceinline__ int cluster_ld_s32(uint32_t addr)
{
    int x;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("ld.shared::cluster.s32 %0, [%1];\n" : "=r"(x) : "r"(addr) : "memory");
#else
    asm volatile("ld.shared.s32 %0, [%1];\n" : "=r"(x) : "r"(addr) : "memory");
#endif
    return x;
}

/* ---------------------------------------------------------------- the K/V tile ring (given)
 *
 * kStages slots of [K tile | V tile], each tile [64][D] bf16 swizzled (flash::load_tile). stream_tiles
 * runs n tiles through it: issue(i, k_tile, v_tile) enqueues the cp.async copies of tile i, compute(i,
 * k_tile, v_tile) works on it once every thread's copies have landed. Tile i + kStages - 1 is issued into
 * the slot of tile i - 1 after the barrier that ends everyone's work on it, so kStages - 1 tiles are in
 * flight while one is computed. Copy groups committed before the call (a Q tile) have landed by the first
 * compute. On return every copy has landed and every thread is done: the ring may be reused. */
template <int D, int kStages>
struct Ring {
    static constexpr uint32_t kTileBytes = kTile * D * 2;
    static constexpr uint32_t kBytes = kStages * 2 * kTileBytes;
    uint32_t base;
    __device__ __forceinline__ uint32_t k(int slot) const { return base + (uint32_t)slot * 2 * kTileBytes; }
    __device__ __forceinline__ uint32_t v(int slot) const { return k(slot) + kTileBytes; }
};

template <int D, int kStages, class Issue, class Compute>
__device__ __forceinline__ void stream_tiles(const Ring<D, kStages> &ring, int n, Issue issue, Compute compute)
{
#pragma unroll
    for (int s = 0; s < kStages - 1; ++s) {
        if (s < n) issue(s, ring.k(s), ring.v(s));
        ptx::cp_async_commit();
    }
    for (int i = 0; i < n; ++i) {
        cp_async_wait<kStages - 2>(); /* this thread's copies of tile i have landed */
        __syncthreads();              /* ... everyone's; and everyone is done with tile i - 1 */
        const int next = i + kStages - 1;
        if (next < n) issue(next, ring.k(next % kStages), ring.v(next % kStages));
        ptx::cp_async_commit();
        compute(i, ring.k(i % kStages), ring.v(i % kStages));
    }
    cp_async_wait<0>();
    __syncthreads();
}

/* ---------------------------------------------------------------- partials merged by lse (given)
 *
 * A partial of a query row is (o, lse): its softmax over some of the keys, normalised, and the natural log
 * of its denominator. Two partials over disjoint keys merge as m = max lse_u, w_u = exp(lse_u - m),
 * o = sum w_u o_u / sum w_u, lse = m + ln sum w_u: the same rule for the warps of a block, the blocks of a
 * cluster and the splits of the dense decode. */

/* A warp's 16 rows (after sum_rows) as partial `slot` of a scratch [slots][16][D] (o) and [slots][16] (lse). */
template <int D>
__device__ __forceinline__ void store_warp_partial(const flash::OnlineSoftmax<D, 1> &st, float scale_log2, float *o_s,
                                                   float *lse_s, int slot)
{
    const int gid = (int)(threadIdx.x % 32) / 4, tig = (int)(threadIdx.x % 4);
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
        const int row = gid + 8 * rr;
        const float l = st.l[0][rr], inv = l > 0.f ? 1.f / l : 0.f;
        float *dst = o_s + ((size_t)slot * kRows + row) * D + tig * 2;
#pragma unroll
        for (int dt = 0; dt < D / 8; ++dt)
            *reinterpret_cast<float2 *>(dst + dt * 8) = make_float2(st.o[0][dt][2 * rr] * inv, st.o[0][dt][2 * rr + 1] * inv);
        if (tig == 0) lse_s[slot * kRows + row] = st.lse(0, rr, scale_log2);
    }
}

/* Partials first .. first + count - 1 of the scratch merged, element by element over the block's threads:
 * out(row, d, o, lse) receives each of the 16 x D results (lse is the row's). */
template <int D, class Out>
__device__ __forceinline__ void merge_slots(const float *o_s, const float *lse_s, int first, int count, Out out)
{
    for (int e = threadIdx.x; e < kRows * D; e += kThreads) {
        const int row = e / D, d = e % D;
        float m = -INFINITY;
        for (int u = 0; u < count; ++u) m = fmaxf(m, lse_s[(first + u) * kRows + row]);
        float wsum = 0.f, acc = 0.f;
        if (m != -INFINITY)
            for (int u = 0; u < count; ++u) {
                const float w = exp2f((lse_s[(first + u) * kRows + row] - m) * flash::kLog2e);
                wsum += w;
                acc += w * o_s[((size_t)(first + u) * kRows + row) * D + d];
            }
        out(row, d, wsum > 0.f ? acc / wsum : 0.f, wsum > 0.f ? m + logf(wsum) : -INFINITY);
    }
}

/* ================================================================ the cache: append */

struct AppendArgs {
    attn_shape sh;
    attn_nsa_params p;
    int has_cmp;  /* 0: no NSA parameters, no compressed cache */
    int linear;   /* p.mode == ATTN_NSA_LINEAR */
    long nc_max;  /* compressed tokens of a full cache */
    int new_max;  /* the most compressed tokens one sequence can gain in this call: ceil(M / d) */
    const uint16_t *k_new, *v_new, *w_k, *w_v, *pos;
    const int32_t *counts; /* NULL: M each */
    uint16_t *k_cache, *v_cache, *k_cmp, *v_cmp;
    int32_t *lengths, *cmp_lengths, *problem;
};

__device__ __forceinline__ long count_of(const AppendArgs &a, int b) { return a.counts ? a.counts[b] : a.sh.M; }

/* problem = {kind, b} of the first sequence whose append is impossible (kv_cache_problem), {0, -1} when
 * none is: the host cannot check what lives on the device. One thread: B is the batch of a decoding step. */
__global__ void check_kernel(AppendArgs a)
{
    if (threadIdx.x != 0 || blockIdx.x != 0) return;
    int kind = KV_CACHE_OK, bad = -1;
    for (int b = 0; b < a.sh.B && kind == KV_CACHE_OK; ++b) {
        const long L = a.lengths[b], count = count_of(a, b);
        if (L < 0 || L > a.sh.N) kind = KV_CACHE_BAD_LENGTH;
        else if (count < 0 || count > a.sh.M) kind = KV_CACHE_BAD_COUNT;
        else if (a.has_cmp && a.cmp_lengths[b] != num_cmp(L, a.p)) kind = KV_CACHE_CMP_MISMATCH;
        else if (L + count > a.sh.N) kind = KV_CACHE_FULL;
        if (kind != KV_CACHE_OK) bad = b;
    }
    a.problem[0] = kind;
    a.problem[1] = bad;
}

/* Blocks [0, row_blocks): the new rows, 16 bytes a thread (grid-stride over B*M*G*D/8 chunks); blocks from
 * row_blocks on: the compressed tokens the append completes, one thread per output element of k_cmp or
 * v_cmp (grid-stride over 2*B*new_max*G*D), reading the span's old rows from the cache and its new rows
 * from k_new, v_new (the rows' copies run in other blocks of this launch). Nothing when problem[0] != 0. */
__global__ void __launch_bounds__(256) append_kernel(AppendArgs a, unsigned row_blocks)
{
    /* TODO (about 45 lines): first `if (a.problem[0] != KV_CACHE_OK) return;` (check_kernel ran before on the stream).
     * Rows: chunk x of the B*M*G*D/8: b = x / (M*G*D/8), r = x / (G*D/8) % M, the rest within the row;
     * r < count_of(a, b) goes to row lengths[b] + r of the caches (uint4 loads and stores, size_t offsets).
     * Tokens: x over 2*B*new_max*G*D: which (k or v), b, j, g, e; c = num_cmp(L) + j is new when
     * c < num_cmp(L + count). Row s = c*d + r of its span is cache row s when s < L, else row s - L of
     * k_new/v_new. Mean: fp32 sum / l. Linear: sum of bf16(x + pos) (keys; x alone for values) times
     * w[((g*l + r)*D + col)*D + e]. Store f32_to_bf16 at ((b*nc_max + c)*G + g)*D + e. */
}

/* The lengths grow, once every block of append_kernel has read the old ones. Nothing when problem[0] != 0. */
__global__ void commit_kernel(AppendArgs a)
{
    /* TODO (about 5 lines): the same guard; then for b = threadIdx.x, + blockDim.x, ...: lengths[b] += count_of(a, b) and,
     * with a compressed cache, cmp_lengths[b] = num_cmp(the new length). */
}

/* ================================================================ dense decode: split-KV and the combine */

/* How decode_dense_cuda cuts the cache (a function of the shape only, so that the workspace size is too):
 * enough splits for about kTargetCtas blocks over the batch, each at least kMinChunk keys, a multiple of 64. */
struct DensePlan {
    int chunk, splits, row_tiles;
    size_t o_part, lse_part, total; /* workspace offsets (bytes); no partials when splits == 1 */
};

size_t round_up(size_t x) { return (x + 255) / 256 * 256; }

DensePlan dense_plan(const attn_shape *s)
{
    DensePlan p;
    p.row_tiles = (s->H / s->G + kRows - 1) / kRows;
    const long pairs = (long)s->B * s->G * p.row_tiles, most = (s->N + kMinChunk - 1) / kMinChunk;
    long splits = (kTargetCtas + pairs - 1) / pairs;
    splits = splits < 1 ? 1 : splits > most ? most : splits > kMaxSplits ? kMaxSplits : splits;
    const long per = (s->N + splits - 1) / splits;
    p.chunk = (int)((per + kTile - 1) / kTile * kTile);
    p.splits = (s->N + p.chunk - 1) / p.chunk;
    const size_t rows = (size_t)s->B * s->H;
    p.o_part = 0;
    p.lse_part = p.splits > 1 ? round_up(rows * p.splits * s->D * 4) : 0;
    p.total = p.splits > 1 ? p.lse_part + round_up(rows * p.splits * 4) : 256;
    return p;
}

struct DenseArgs {
    attn_shape sh;
    float scale_log2;
    int chunk, splits, row_tiles;
    const uint16_t *q, *k, *v;
    const int32_t *lengths;
    uint16_t *o;
    float *lse;             /* may be NULL */
    float *o_part, *lse_part; /* [B, H, splits, D], [B, H, splits] */
};

/* One block per (split u, kv head g and row tile, sequence b): the keys [u chunk, min((u+1) chunk, L)) of
 * (b, g) through the ring, the rows the query heads g*H/G + 16 rt .. (at most 16; rows past H/G are zero and
 * dropped). Warp w takes keys 16 w .. 16 w + 15 of each tile (NT = 2) with a softmax of its own; the four
 * partials are merged by lse into the split's partial (o_part, lse_part), or, with one split, into o and
 * lse themselves. A split that starts at or after L writes nothing: the combine does not read it. */
template <int D>
__global__ void __launch_bounds__(kThreads) dense_split_kernel(const __grid_constant__ DenseArgs a)
{
    extern __shared__ __align__(128) uint8_t smem[];
    const int u = blockIdx.x, g = blockIdx.y / a.row_tiles, rt = blockIdx.y % a.row_tiles, b = blockIdx.z;
    const int H = a.sh.H, G = a.sh.G, hpg = H / G, warp = threadIdx.x / 32;
    const int h0 = g * hpg + rt * kRows, rows = min(kRows, hpg - rt * kRows); /* this block's query heads */
    const long L = clamp_length(a.lengths[b], a.sh.N), first = (long)u * a.chunk;
    const long last = first + a.chunk < L ? first + a.chunk : L; /* keys [first, last) */
    /* TODO (about 45 lines): return when first >= L unless this is the only split (splits == 1: it must write o = 0, lse = -inf
     * for an empty sequence). Shared memory: the Q tile [16][D] bf16 at smem, then the Ring<D, kDenseStages>.
     * Load Q with flash::load_rows (row R = head h0 + R, valid when R < rows), commit, then stream_tiles over
     * ceil((last - first) / 64) tiles: issue = two flash::load_tile<D, kTile, kThreads> (rows first + 64 i ..,
     * limit last, row stride G*D, from (b, g) = ((b*N)*G + g)*D); compute = at the first tile
     * flash::load_q_fragments once, then flash::scores with Operand<D>::k(k_tile, 16 warp), flash::mask on a
     * tile that crosses `last`, update_skip_unit_alpha, accumulate with Operand<D>::v(v_tile, 16 warp). After
     * it: sum_rows, store_warp_partial into the (now free) ring, __syncthreads, merge_slots over the four
     * warps, writing row < rows to o_part/lse_part at ((b*H + h0 + row)*splits + u), or bf16 o and lse. */
}

struct CombineArgs {
    attn_shape sh;
    int chunk, splits;
    const int32_t *lengths;
    const float *o_part, *lse_part;
    uint16_t *o;
    float *lse;
};

/* One block per row (h, b): the partials of the splits that hold keys, u < ceil(L / chunk), weighted by
 * their lse. */
template <int D>
__global__ void __launch_bounds__(kThreads) combine_kernel(const __grid_constant__ CombineArgs a)
{
    __shared__ float w_s[kMaxSplits], red[kWarps], acc_s[kThreads];
    const int h = blockIdx.x, b = blockIdx.y;
    const size_t row = (size_t)b * a.sh.H + h;
    const long L = clamp_length(a.lengths[b], a.sh.N);
    /* TODO (about 30 lines): used = ceil(L / chunk) splits hold keys (the last may be partial). None: o = 0, lse = -inf. Else
     * m = block_max of their lse_part[row*splits + u], w_u = exp2f((lse_u - m) * kLog2e) into w_s, their sum
     * with block_sum (which also makes w_s visible), then thread (d = tid % D, part = tid / D) adds w_u
     * o_part[(row*splits + u)*D + d] over u = part, part + 128/D, ...; the parts' sums go through acc_s; o =
     * total / sum in bf16, lse = m + logf(sum). */
}

/* ================================================================ NSA decode: one cluster per (b, g)
 *
 * The phases, with a cluster barrier after each (S blocks, rank r):
 *   1. compressed attention: rank r takes tiles r*per .. of the NC = num_cmp(L) compressed tokens (all of
 *      them visible from t = L - 1); its partial (o, lse) of every row goes to part_o[0], part_lse[0], and
 *      every raw score q.k_cmp to the workspace, for the importance.
 *   2. selection: every rank merges the S lse_cmp partials (DSMEM), then scores the candidate blocks it owns
 *      (a contiguous share of 0 .. t/l') from the raw scores, keeps its best n - 3 per list (the forced
 *      blocks aside); after the barrier every rank merges the S x (n - 3) candidates into the same lists
 *      (ties to the lower index), as a bitmap of listed blocks and the ascending list.
 *   3. selected and window attention: the 64-key tiles that a listed block or the window touches, dealt
 *      out round-robin to the ranks; warps 0-1 compute the selected branch (each 32 keys of a tile), warps
 *      2-3 the window, each key masked per row by the rules; partials to part_o[1], part_o[2].
 *   4. the output: rank r merges rows r, r + S, ... of the three branches over the S ranks (DSMEM), gates
 *      and stores them; rank 0 writes the lists. The last barrier keeps every block's shared memory alive
 *      until all have read it.
 */

/* Where everything lives in a block's shared memory (bytes from its start), and the sizes behind it. The
 * host computes it (the launch needs the total); the kernel reads it from its arguments. */
struct NsaLayout {
    int S;           /* cluster size */
    int lists;       /* lists per (b, g): 1 (shared selection) or H/G (per head) */
    int keep;        /* n - 3: candidates a rank keeps per list */
    int own_max;     /* candidate blocks a rank scores at most: ceil(NB_max / S) */
    int nbw, ntw;    /* words of a list's block bitmap (NB_max bits) and of the tile bitmap (NTiles_max bits) */
    int max_jobs;    /* distinct 64-key tiles phase 3 can visit */
    uint32_t q, ring, part_o, part_lse, lse_cmp, cand_s, cand_j, list, bitmap, tiles, jobs, njobs, wts, total;
    uint32_t own_s, gather_s, gather_j; /* phase-2 scratch inside the ring's region */
};

size_t align16(size_t x) { return (x + 15) / 16 * 16; }

template <int D>
NsaLayout nsa_layout(const attn_shape *s, const attn_nsa_params *p, int S)
{
    NsaLayout y;
    const int hpg = s->H / s->G;
    const long NB = attn_nsa_num_blocks(s->N, p), NT = (s->N + kTile - 1) / kTile;
    y.S = S;
    y.lists = p->heads_share_selection ? 1 : hpg;
    y.keep = p->n - 3;
    y.own_max = (int)((NB + S - 1) / S);
    y.nbw = (int)((NB + 31) / 32), y.ntw = (int)((NT + 31) / 32);
    const long spans = (long)y.lists * p->n * ((p->l_sel + kTile - 1) / kTile + 1) + (p->w + kTile - 1) / kTile + 1;
    y.max_jobs = (int)(spans < NT ? spans : NT);
    const int keep1 = y.keep > 0 ? y.keep : 1;
    size_t at = 0;
    y.q = (uint32_t)at, at += align16((size_t)kRows * D * 2);
    const size_t ring = Ring<D, kNsaStages>::kBytes;
    const size_t warp_parts = (size_t)kWarps * kRows * (D + 1) * 4; /* the warps' partials, after a phase's loads */
    const size_t phase2 = align16((size_t)y.lists * y.own_max * 4) + 2 * align16((size_t)kWarps * S * keep1 * 4);
    y.ring = (uint32_t)at;
    y.own_s = 0, y.gather_s = (uint32_t)align16((size_t)y.lists * y.own_max * 4);
    y.gather_j = y.gather_s + (uint32_t)align16((size_t)kWarps * S * keep1 * 4);
    size_t region = ring > warp_parts ? ring : warp_parts;
    region = region > phase2 ? region : phase2;
    at += align16(region);
    y.part_o = (uint32_t)at, at += align16((size_t)3 * kRows * D * 4);
    y.part_lse = (uint32_t)at, at += align16((size_t)3 * kRows * 4);
    y.lse_cmp = (uint32_t)at, at += align16((size_t)kRows * 4);
    y.cand_s = (uint32_t)at, at += align16((size_t)y.lists * keep1 * 4);
    y.cand_j = (uint32_t)at, at += align16((size_t)y.lists * keep1 * 4);
    y.list = (uint32_t)at, at += align16((size_t)y.lists * p->n * 4);
    y.bitmap = (uint32_t)at, at += align16((size_t)y.lists * y.nbw * 4);
    y.tiles = (uint32_t)at, at += align16((size_t)y.ntw * 4);
    y.jobs = (uint32_t)at, at += align16((size_t)y.max_jobs * 4);
    y.njobs = (uint32_t)at, at += 16;
    y.wts = (uint32_t)at, at += align16((size_t)3 * kRows * (S + 1) * 4);
    y.total = (uint32_t)at;
    return y;
}

struct NsaArgs {
    attn_shape sh;
    attn_nsa_params p;
    NsaLayout y;
    float scale_log2;
    long nc_max;
    const uint16_t *q, *k, *v, *kc, *vc;
    const int32_t *lengths;
    const float *g_cmp, *g_slc, *g_swa;
    uint16_t *o;
    float *lse_cmp, *lse_slc, *lse_swa; /* each may be NULL */
    int32_t *lists_out;                 /* may be NULL */
    float *raw;                         /* workspace: raw scores [B, G, 16, nc_max] */
};

/* What every phase of a block knows. */
struct NsaCta {
    int b, g, r, S, hpg;
    long L, t, NC, cur, cand, lo;
    bool rank; /* more candidates than n: the lists are chosen by score */
};

template <class T>
__device__ __forceinline__ T *at(uint8_t *smem, uint32_t offset) { return reinterpret_cast<T *>(smem + offset); }

/* Whether block j is on list `list` (its bitmap in shared memory). */
__device__ __forceinline__ bool listed(const uint32_t *bitmap, int nbw, int list, long j)
{
    return (bitmap[(size_t)list * nbw + (j >> 5)] >> (j & 31)) & 1u;
}

/* The set bits of words [0, words) of a bitmap, ascending, into out (at most max_out); returns how many.
 * One warp, every lane. */
__device__ __forceinline__ int bitmap_to_list(const uint32_t *bm, int words, int32_t *out, int max_out)
{
    const int lane = threadIdx.x % 32;
    int base = 0;
    for (int w0 = 0; w0 < words; w0 += 32) {
        const uint32_t word = w0 + lane < words ? bm[w0 + lane] : 0u;
        const int cnt = __popc(word);
        int incl = cnt; /* inclusive scan of the lanes' counts */
        for (int off = 1; off < 32; off *= 2) {
            const int y = __shfl_up_sync(0xffffffffu, incl, off);
            if (lane >= off) incl += y;
        }
        int pos = base + incl - cnt;
        for (uint32_t x = word; x; x &= x - 1, ++pos)
            if (pos < max_out) out[pos] = (w0 + lane) * 32 + __ffs(x) - 1;
        base += __shfl_sync(0xffffffffu, incl, 31);
    }
    return base < max_out ? base : max_out;
}

/* ---------------------------------------------------------------- phase 1: the compressed cache */

template <int D>
__device__ __forceinline__ void nsa_phase_cmp(const NsaArgs &a, const NsaCta &c, uint8_t *smem, uint32_t (&qa)[1][D / 16][4])
{
    /* TODO (about 50 lines): tiles of 64 tokens: n1 = ceil(NC / 64), this rank's are [r*per, min((r+1)*per, n1)) with
     * per = ceil(n1 / S). Load the Q tile (rows g*H/G + R for R < H/G) and commit, then stream_tiles over your
     * tiles from the compressed caches of (b, g) (batch b at b*nc_max tokens; limit NC). In compute: the Q
     * fragments once; scores with warp w's 16 tokens; the raw scores of rows < H/G and tokens < NC to
     * a.raw[((b*G + g)*16 + row)*nc_max + token] (before any mask); mask tokens >= NC; update, accumulate.
     * If you had no tile, load the fragments after it (Q has landed: stream_tiles waited). Then sum_rows,
     * store_warp_partial into the ring region, __syncthreads, merge_slots of the 4 warps into part_o[0],
     * part_lse[0]. */
}

/* ---------------------------------------------------------------- phase 2: scores and local candidates */

template <int D>
__device__ __forceinline__ void nsa_phase_score(const NsaArgs &a, const NsaCta &c, uint8_t *smem)
{
    /* TODO (about 65 lines): threads tid < 16 merge row tid's lse_cmp over the S ranks (cluster_ld_f32 of part_lse[0] at
     * cluster_map(address, u)) into lse_cmp[16]; __syncthreads. Without ranking (cand <= n) that is all. Else
     * this rank owns blocks [r*own, min((r+1)*own, cand)), own = ceil(cand / S): for each (list, block) the
     * score sum over the list's heads (in order) of sum over the tokens c overlapping j (c < NC) of
     * exp2(raw * scale_log2 - lse_cmp * log2e) * overlap / d, raw read with __ldcg (another rank wrote it);
     * the forced blocks 0, cur - 1, cur get -1 (not ranked). Scores into own_s [lists][own_max].
     * __syncthreads, then warp w for lists w, w + 4, ...: n - 3 rounds of a warp argmax over the owned
     * scores >= 0 (strict >, the lower index on a tie), the winner marked -1, kept in cand_s/cand_j (score,
     * block) or (-1, -1) when none is left. */
}

/* ---------------------------------------------------------------- phase 2b: the lists */

template <int D>
__device__ __forceinline__ void nsa_phase_lists(const NsaArgs &a, const NsaCta &c, uint8_t *smem)
{
    /* TODO (about 55 lines): every rank builds the same lists. Zero the block bitmaps [lists][nbw]; without ranking set bits
     * 0 .. cand - 1. With it, warp w for lists w, w + 4, ...: gather the S x (n - 3) candidates of every rank
     * (cluster_ld_f32 / cluster_ld_s32 of cand_s, cand_j) into the warp's gather buffers, set the forced bits
     * (0, cur - 1, cur), then n - 3 rounds of a warp argmax over the gathered candidates (a valid one has
     * j >= 0; larger score first, the lower block on a tie), setting the winner's bit and retiring it. Then
     * each list in ascending order from its bitmap (bitmap_to_list), -1 padded to n. */
}

/* ---------------------------------------------------------------- phase 3: selected blocks and window */

template <int D>
__device__ __forceinline__ void nsa_phase_slc_swa(const NsaArgs &a, const NsaCta &c, uint8_t *smem,
                                                  const uint32_t (&qa)[1][D / 16][4])
{
    /* TODO (about 60 lines): mark the 64-key tiles to visit in the tile bitmap: for every list entry j >= 0 the tiles of keys
     * j*l' .. min(j*l' + l' - 1, t), and those of the window lo .. t (atomicOr); warp 0 turns it into the
     * ascending job list (bitmap_to_list) and its length. Rank r takes jobs r, r + S, ... through
     * stream_tiles (cache rows of (b, g), limit L). Warps 0-1 are the selected branch, 2-3 the window; warp w
     * takes keys 32 (w % 2) .. of each tile (NT = 4), skips a tile in which its branch sees none of them, and
     * masks key s of row R: s <= t and, selected: R < H/G and block s / l' listed for R's list; window:
     * s >= lo. Then sum_rows, store_warp_partial, __syncthreads, merge warps 0-1 into part_o[1] and 2-3 into
     * part_o[2] (and their part_lse). */
}

/* ---------------------------------------------------------------- phase 4: the output */

template <int D>
__device__ __forceinline__ void nsa_phase_out(const NsaArgs &a, const NsaCta &c, uint8_t *smem)
{
    /* TODO (about 45 lines): this rank's rows are R = r, r + S, ... < H/G. Threads (branch, k-th row) first read the S ranks'
     * part_lse[branch][R] (DSMEM), keep the normalised weights w_u / sum w_u in wts and write lse_* when
     * asked; __syncthreads; then element (k, d): for each branch the weighted sum of the ranks' part_o (DSMEM),
     * o = g_cmp o_cmp + g_slc o_slc + g_swa o_swa (gates at b*H + h) stored in bf16. Rank 0 writes the lists
     * to lists_out at ((b*Ltotal + list index)*n) when it is not NULL (list index g shared, g*H/G + list per
     * head). */
}

/* A sequence of length 0: nothing to attend to (rank 0 writes it all). */
__device__ __forceinline__ void nsa_empty(const NsaArgs &a, int b, int g, int hpg)
{
    const int H = a.sh.H, D = a.sh.D, n = a.p.n, lists = a.y.lists, L_all = lists == 1 ? a.sh.G : H;
    for (int x = threadIdx.x; x < hpg * D; x += kThreads) a.o[((size_t)b * H + g * hpg) * D + x] = f32_to_bf16(0.f);
    for (int x = threadIdx.x; x < hpg; x += kThreads) {
        const size_t bh = (size_t)b * H + g * hpg + x;
        if (a.lse_cmp) a.lse_cmp[bh] = -INFINITY;
        if (a.lse_slc) a.lse_slc[bh] = -INFINITY;
        if (a.lse_swa) a.lse_swa[bh] = -INFINITY;
    }
    if (a.lists_out)
        for (int x = threadIdx.x; x < lists * n; x += kThreads) {
            const int list = x / n, idx = lists == 1 ? g : g * hpg + list;
            a.lists_out[((size_t)b * L_all + idx) * n + x % n] = -1;
        }
}

/* The kernel (given): a cluster of S blocks per (b, g), grid (S, G, B). */
template <int D>
__global__ void __launch_bounds__(kThreads) nsa_decode_kernel(const __grid_constant__ NsaArgs a)
{
    extern __shared__ __align__(128) uint8_t smem[];
    NsaCta c;
    c.b = blockIdx.z, c.g = blockIdx.y, c.r = cluster_rank(), c.S = cluster_size(), c.hpg = a.sh.H / a.sh.G;
    c.L = clamp_length(a.lengths[c.b], a.sh.N), c.t = c.L - 1;
    if (c.L == 0) { /* the whole cluster returns here: no barrier is left waiting */
        if (c.r == 0) nsa_empty(a, c.b, c.g, c.hpg);
        return;
    }
    c.NC = num_cmp(c.L, a.p); /* every token in the cache is visible from t = L - 1 */
    c.cur = c.t / a.p.l_sel, c.cand = c.cur + 1, c.rank = c.cand > a.p.n;
    c.lo = c.t - a.p.w + 1 > 0 ? c.t - a.p.w + 1 : 0;
    uint32_t qa[1][D / 16][4];
    nsa_phase_cmp<D>(a, c, smem, qa);
    __threadfence(); /* the raw scores in global memory, for the other ranks */
    cluster_sync();
    nsa_phase_score<D>(a, c, smem);
    cluster_sync();
    nsa_phase_lists<D>(a, c, smem);
    nsa_phase_slc_swa<D>(a, c, smem, qa);
    cluster_sync();
    nsa_phase_out<D>(a, c, smem);
    cluster_sync(); /* no block leaves while another may still read its shared memory */
}

/* ---------------------------------------------------------------- host side (given) */

bool misaligned(const void *ptr, size_t bytes) { return ((uintptr_t)ptr % bytes) != 0; }

int check_cuda_shape(const char *fn, const attn_shape *shape)
{
    int st = attn_check_shape(shape);
    if (st) return st;
    if (!shape->causal)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "%s: a KV cache is causal by construction, shape->causal must be 1", fn);
    if (shape->D != 64 && shape->D != 128)
        return attn_fail(ATTN_ERR_UNSUPPORTED_D, "%s: D=%d, this kernel supports 64 and 128", fn, shape->D);
    if (shape->B > 65535)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "%s: B=%d, at most 65535 sequences (a grid dimension)", fn, shape->B);
    return ATTN_OK;
}

int check_decode_cuda(const char *fn, const attn_shape *shape)
{
    int st = check_cuda_shape(fn, shape);
    if (st) return st;
    if (shape->M != 1)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "%s: M=%d, a decoding step has one query per sequence (M = 1)", fn,
                         shape->M);
    return ATTN_OK;
}

int check_nsa_cuda(const char *fn, const attn_shape *shape, const attn_nsa_params *p)
{
    int st = check_decode_cuda(fn, shape);
    if (st) return st;
    if ((st = attn_nsa_check(p)) != ATTN_OK) return st;
    if (shape->H / shape->G > kRows)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "%s: H/G=%d query heads per kv head, this kernel takes at most %d (the "
                                                "rows of one tensor-core tile)", fn, shape->H / shape->G, kRows);
    if (shape->G > 65535)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "%s: G=%d, at most 65535 kv heads (a grid dimension)", fn, shape->G);
    return ATTN_OK;
}

/* The workspace of decode_nsa_cuda: the raw compressed scores [B, G, 16, NC_max] fp32. */
size_t nsa_workspace(const attn_shape *s, const attn_nsa_params *p)
{
    const size_t nc = (size_t)attn_nsa_num_cmp(s->N, p);
    const size_t bytes = round_up((size_t)s->B * s->G * kRows * nc * 4);
    return bytes ? bytes : 256;
}

/* The cluster size and the layout it gives: 16 blocks per (b, g) when the batch leaves most multiprocessors
 * idle and the GPU can place such clusters, else 8 (the portable size); 1 before sm_90. */
template <int D>
int nsa_pick_cluster(const attn_shape *s, const attn_nsa_params *p, NsaLayout *y)
{
    int dev = 0, major = 0, sms = 0, optin = 0;
    int st = attn_cuda_status(cudaGetDevice(&dev), "cudaGetDevice");
    if (!st) st = attn_cuda_status(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev), "attribute");
    if (!st) st = attn_cuda_status(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev), "attribute");
    if (!st) st = attn_cuda_status(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev), "attribute");
    if (st) return st;
    const int candidates[] = {16, 8, 4, 2, 1};
    const long pairs = (long)s->B * s->G;
    for (int i = 0; i < 5; ++i) {
        const int S = candidates[i];
        if (major < 9 && S > 1) continue;
        if (S == 16 && pairs * 16 > sms) continue; /* big batches fill the GPU with clusters of 8 */
        *y = nsa_layout<D>(s, p, S);
        if ((int)y->total > optin) continue;
        if ((st = attn_cuda_status(cudaFuncSetAttribute(nsa_decode_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                        (int)y->total), "cudaFuncSetAttribute")))
            return st;
        if (S == 1) return ATTN_OK;
        if (S > 8 && cudaFuncSetAttribute(nsa_decode_kernel<D>, cudaFuncAttributeNonPortableClusterSizeAllowed, 1) !=
                         cudaSuccess) {
            cudaGetLastError();
            continue;
        }
        cudaLaunchConfig_t cfg = {};
        cudaLaunchAttribute attr[1];
        attr[0].id = cudaLaunchAttributeClusterDimension;
        attr[0].val.clusterDim.x = S, attr[0].val.clusterDim.y = 1, attr[0].val.clusterDim.z = 1;
        cfg.gridDim = dim3(S, s->G, s->B), cfg.blockDim = dim3(kThreads), cfg.dynamicSmemBytes = y->total;
        cfg.attrs = attr, cfg.numAttrs = 1;
        int clusters = 0;
        if (cudaOccupancyMaxActiveClusters(&clusters, nsa_decode_kernel<D>, &cfg) == cudaSuccess && clusters > 0)
            return ATTN_OK;
        cudaGetLastError();
    }
    return attn_fail(ATTN_ERR_BAD_ARGUMENT, "decode_nsa_cuda: L_max=%d needs more shared memory per block than this GPU "
                                            "has (%d bytes)", s->N, optin);
}

template <int D>
int launch_nsa(NsaArgs &args, cudaStream_t stream)
{
    const attn_shape *s = &args.sh;
    int st = nsa_pick_cluster<D>(s, &args.p, &args.y);
    if (st) return st;
    /* TODO (about 10 lines): one cudaLaunchKernelEx of nsa_decode_kernel<D>: grid (S, G, B), kThreads threads, args.y.total
     * bytes of dynamic shared memory, on `stream`, with the launch attribute cudaLaunchAttributeClusterDimension
     * {S, 1, 1} when S > 1; then attn_cuda_launch_status. */
    return ATTN_ERR_NOT_IMPLEMENTED;
}

template <int D>
int launch_dense(const DenseArgs &args, const CombineArgs &comb, cudaStream_t stream)
{
    const size_t smem = (size_t)kRows * D * 2 + Ring<D, kDenseStages>::kBytes;
    int st = attn_cuda_status(cudaFuncSetAttribute(dense_split_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                   (int)smem), "cudaFuncSetAttribute");
    if (st) return st;
    /* TODO (about 5 lines): dense_split_kernel<D> on grid (splits, G * row_tiles, B) with kThreads threads and `smem` bytes,
     * then, when splits > 1, combine_kernel<D> on grid (H, B); attn_cuda_launch_status after each. */
    return ATTN_ERR_NOT_IMPLEMENTED;
}

} // namespace

/* ================================================================ the API */

extern "C" int kv_cache_append_cuda(const attn_shape *shape, const attn_nsa_params *p, const uint16_t *k_new,
                                    const uint16_t *v_new, const int32_t *counts, const uint16_t *w_k,
                                    const uint16_t *w_v, const uint16_t *pos, uint16_t *k_cache, uint16_t *v_cache,
                                    uint16_t *k_cmp_cache, uint16_t *v_cmp_cache, int32_t *lengths,
                                    int32_t *cmp_lengths, int32_t *problem, cudaStream_t stream)
{
    int st = check_cuda_shape("kv_cache_append_cuda", shape);
    if (st) return st;
    if (p && (st = attn_nsa_check(p)) != ATTN_OK) return st;
    if (!k_new || !v_new || !k_cache || !v_cache || !lengths || !problem)
        return attn_fail(ATTN_ERR_NULL_POINTER, "kv_cache_append_cuda: k_new, v_new, k_cache, v_cache, lengths and "
                                                "problem must not be NULL");
    const int linear = p && p->mode == ATTN_NSA_LINEAR;
    if (p && (!k_cmp_cache || !v_cmp_cache || !cmp_lengths))
        return attn_fail(ATTN_ERR_NULL_POINTER, "kv_cache_append_cuda: with NSA parameters, k_cmp_cache, v_cmp_cache "
                                                "and cmp_lengths must not be NULL");
    if (linear && (!w_k || !w_v || !pos))
        return attn_fail(ATTN_ERR_NULL_POINTER, "kv_cache_append_cuda: linear mode needs w_k, w_v and pos");
    if (misaligned(k_new, 16) || misaligned(v_new, 16) || misaligned(k_cache, 16) || misaligned(v_cache, 16) ||
        (p && (misaligned(k_cmp_cache, 2) || misaligned(v_cmp_cache, 2))) ||
        (linear && (misaligned(w_k, 2) || misaligned(w_v, 2) || misaligned(pos, 2))))
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "kv_cache_append_cuda: k_new, v_new and the caches must be 16-byte "
                                                "aligned");
    if (misaligned(counts, 4) || misaligned(lengths, 4) || misaligned(cmp_lengths, 4) || misaligned(problem, 4))
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "kv_cache_append_cuda: counts, lengths, cmp_lengths and problem must "
                                                "be 4-byte aligned");
    AppendArgs a = {};
    a.sh = *shape;
    if (p) a.p = *p;
    a.has_cmp = p != nullptr, a.linear = linear;
    a.nc_max = p ? attn_nsa_num_cmp(shape->N, p) : 0;
    a.new_max = p ? (shape->M + p->d - 1) / p->d : 0;
    a.k_new = k_new, a.v_new = v_new, a.w_k = w_k, a.w_v = w_v, a.pos = pos, a.counts = counts;
    a.k_cache = k_cache, a.v_cache = v_cache, a.k_cmp = k_cmp_cache, a.v_cmp = v_cmp_cache;
    a.lengths = lengths, a.cmp_lengths = cmp_lengths, a.problem = problem;
    check_kernel<<<1, 32, 0, stream>>>(a);
    if ((st = attn_cuda_launch_status("check_kernel"))) return st;
    /* TODO (about 10 lines): append_kernel with 256 threads: row_blocks blocks for the B*M*G*D/8 16-byte chunks of the new
     * rows, plus blocks for the 2*B*new_max*G*D compressed elements when there is a compressed cache (each
     * part capped, the kernel loops); then commit_kernel<<<1, 256>>>. attn_cuda_launch_status after each. */
    return ATTN_ERR_NOT_IMPLEMENTED;
}

extern "C" size_t decode_dense_workspace_bytes(const attn_shape *shape)
{
    if (check_decode_cuda("decode_dense_workspace_bytes", shape) != ATTN_OK) return 0;
    return dense_plan(shape).total;
}

extern "C" int decode_dense_cuda(const attn_shape *shape, const uint16_t *q, const uint16_t *k_cache,
                                 const uint16_t *v_cache, const int32_t *lengths, uint16_t *o, float *lse,
                                 void *workspace, size_t workspace_bytes, cudaStream_t stream)
{
    int st = check_decode_cuda("decode_dense_cuda", shape);
    if (st) return st;
    if (!q || !k_cache || !v_cache || !lengths || !o || !workspace)
        return attn_fail(ATTN_ERR_NULL_POINTER, "decode_dense_cuda: q, k_cache, v_cache, lengths, o and workspace must "
                                                "not be NULL");
    if (misaligned(q, 16) || misaligned(k_cache, 16) || misaligned(v_cache, 16) || misaligned(o, 16) ||
        misaligned(workspace, 16))
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "decode_dense_cuda: q, the caches, o and workspace must be 16-byte "
                                                "aligned");
    if (misaligned(lengths, 4) || misaligned(lse, 4))
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "decode_dense_cuda: lengths and lse must be 4-byte aligned");
    const DensePlan plan = dense_plan(shape);
    if (workspace_bytes < plan.total)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "decode_dense_cuda: workspace of %zu bytes, this problem needs %zu "
                                                "(decode_dense_workspace_bytes)", workspace_bytes, plan.total);
    uint8_t *ws = static_cast<uint8_t *>(workspace);
    DenseArgs a = {};
    a.sh = *shape, a.scale_log2 = attn_softmax_scale(shape) * flash::kLog2e;
    a.chunk = plan.chunk, a.splits = plan.splits, a.row_tiles = plan.row_tiles;
    a.q = q, a.k = k_cache, a.v = v_cache, a.lengths = lengths, a.o = o, a.lse = lse;
    a.o_part = reinterpret_cast<float *>(ws + plan.o_part), a.lse_part = reinterpret_cast<float *>(ws + plan.lse_part);
    CombineArgs c = {};
    c.sh = *shape, c.chunk = plan.chunk, c.splits = plan.splits, c.lengths = lengths;
    c.o_part = a.o_part, c.lse_part = a.lse_part, c.o = o, c.lse = lse;
    return shape->D == 64 ? launch_dense<64>(a, c, stream) : launch_dense<128>(a, c, stream);
}

extern "C" size_t decode_nsa_workspace_bytes(const attn_shape *shape, const attn_nsa_params *p)
{
    if (check_nsa_cuda("decode_nsa_workspace_bytes", shape, p) != ATTN_OK) return 0;
    return nsa_workspace(shape, p);
}

extern "C" int decode_nsa_cuda(const attn_shape *shape, const attn_nsa_params *p, const uint16_t *q,
                               const uint16_t *k_cache, const uint16_t *v_cache, const uint16_t *k_cmp_cache,
                               const uint16_t *v_cmp_cache, const int32_t *lengths, const float *g_cmp,
                               const float *g_slc, const float *g_swa, uint16_t *o, float *lse_cmp, float *lse_slc,
                               float *lse_swa, int32_t *block_indices, void *workspace, size_t workspace_bytes,
                               cudaStream_t stream)
{
    int st = check_nsa_cuda("decode_nsa_cuda", shape, p);
    if (st) return st;
    if (!q || !k_cache || !v_cache || !k_cmp_cache || !v_cmp_cache || !lengths || !g_cmp || !g_slc || !g_swa || !o ||
        !workspace)
        return attn_fail(ATTN_ERR_NULL_POINTER, "decode_nsa_cuda: q, the four caches, lengths, the gates, o and "
                                                "workspace must not be NULL");
    if (misaligned(q, 16) || misaligned(k_cache, 16) || misaligned(v_cache, 16) || misaligned(k_cmp_cache, 16) ||
        misaligned(v_cmp_cache, 16) || misaligned(o, 16) || misaligned(workspace, 16))
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "decode_nsa_cuda: q, the caches, o and workspace must be 16-byte aligned");
    if (misaligned(lengths, 4) || misaligned(g_cmp, 4) || misaligned(g_slc, 4) || misaligned(g_swa, 4) ||
        misaligned(lse_cmp, 4) || misaligned(lse_slc, 4) || misaligned(lse_swa, 4) || misaligned(block_indices, 4))
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "decode_nsa_cuda: lengths, gates, lse and block_indices must be 4-byte "
                                                "aligned");
    if (workspace_bytes < nsa_workspace(shape, p))
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "decode_nsa_cuda: workspace of %zu bytes, this problem needs %zu "
                                                "(decode_nsa_workspace_bytes)", workspace_bytes, nsa_workspace(shape, p));
    NsaArgs a = {};
    a.sh = *shape, a.p = *p, a.scale_log2 = attn_softmax_scale(shape) * flash::kLog2e;
    a.nc_max = attn_nsa_num_cmp(shape->N, p);
    a.q = q, a.k = k_cache, a.v = v_cache, a.kc = k_cmp_cache, a.vc = v_cmp_cache, a.lengths = lengths;
    a.g_cmp = g_cmp, a.g_slc = g_slc, a.g_swa = g_swa, a.o = o;
    a.lse_cmp = lse_cmp, a.lse_slc = lse_slc, a.lse_swa = lse_swa, a.lists_out = block_indices;
    a.raw = static_cast<float *>(workspace);
    return shape->D == 64 ? launch_nsa<64>(a, stream) : launch_nsa<128>(a, stream);
}
