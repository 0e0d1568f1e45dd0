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
 * The fast path (optional task 6) is in selected_window.cu: for shared lists with H/G = 16, D = 128,
 * l' = 64 and n <= 16 on sm_90, a block serves 8 neighbouring positions and loads each tile that any of
 * them chose once, through the copy engine. The entry point below tries it first; this kernel serves
 * every call it does not take. What both files use (kRows, the argument checks, online_softmax_step) is
 * in selected_common.cuh.
 */
#include <cuda_runtime.h>
#include <math.h>

#include "attn_gpu.h"
#include "flash_tile.cuh"
#include "ptx.cuh"
#include "selected_attention.h"
#include "selected_common.cuh"

using namespace ptx;

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kBc = 64;                    /* keys per tile */
constexpr int kKeysPerWarp = kBc / kWarps; /* 16: two n8 tiles of S, one k16 step of P V */
constexpr int kPad = 8;                    /* floats after each row of a partial output (no bank conflicts) */
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
    /* BEGIN SOLUTION stub="w.b = w.i = w.list = w.head0 = w.rows = w.g = 0; w.t = 0;" */
    /* HINT: blockIdx.x = (list * chunks + chunk) * M + (M - 1 - i): neighbouring blocks are neighbouring
     * positions of one list, the last first. A list is read by per_list = share ? H/G : 1 heads, the
     * first being list * per_list; chunk c takes 16 of them from c * 16 on. Their kv head is
     * head0 / (H/G). Batch: blockIdx.y. */
    const int hpg = sh.H / sh.G, per_list = share ? hpg : 1;
    const long x = blockIdx.x;
    w.i = sh.M - 1 - (int)(x % sh.M);
    const long rest = x / sh.M;
    const int chunk = (int)(rest % chunks);
    w.list = (int)(rest / chunks);
    w.head0 = w.list * per_list + chunk * kRows;
    w.rows = min(kRows, per_list - chunk * kRows);
    w.g = w.head0 / hpg;
    w.b = blockIdx.y;
    w.t = (long)sh.N - sh.M + w.i;
    /* END SOLUTION */
    return w;
}

/* Index of the first usable entry of list[from .. n): a negative entry ends the list; a block that
 * starts after t (j * l' > t, which includes every block past the last key) has no visible key and is
 * skipped. n when none is left. */
__device__ __forceinline__ int next_entry(const int32_t *list, int from, int n, long t, int l_sel)
{
    /* BEGIN SOLUTION stub="return n;" */
    /* HINT: walk from `from`: j = list[e]; j < 0 ends the list (return n); (long)j * l_sel <= t is the
     * answer; anything else is skipped. */
    for (int e = from; e < n; ++e) {
        const int j = list[e];
        if (j < 0) return n;
        if ((long)j * l_sel <= t) return e;
    }
    return n;
    /* END SOLUTION */
}

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

    /* the tile step of common/flash_tile.cuh, on the warp's 16 keys of each tile (rows 16 warp ..
     * 16 warp + 15 of the K and V tiles); compact operands: the kernel is capped at 128 registers */
    const flash::CompactOperand<D> k_op = flash::CompactOperand<D>::k(k_s, warp * kKeysPerWarp),
                                   v_op = flash::CompactOperand<D>::v(v_s, warp * kKeysPerWarp);
    flash::OnlineSoftmax<D, 1> acc; /* O, m, l of the lane's rows gid, gid + 8 over the warp's keys */
    uint32_t qa[1][D / 16][4];      /* Q as A fragments, loaded once: every warp needs all 16 rows */
    load_q<D>(q_s, q + row0 * D, w.rows);

    /* BEGIN SOLUTION */
    /* HINT: lesson 06's list walk with two changes. (1) The unit is a tile of 64 keys, and a block of l'
     * keys is ceil(l' / 64) tiles: keep (e, s0, last) = (entry, first key of the tile, last key this
     * block shows position t: min(t, j * l' + l' - 1)); the next tile is s0 + 64 if that is <= last,
     * otherwise the first tile of next_entry(list, e + 1, ...). (2) Load tiles with limit last + 1 (no
     * key past t or the block is read) and mask keys > last to -INFINITY when s0 + 63 > last: the rule
     * is the same for all 16 rows. Before the loop: the first K, commit, wait, barrier,
     * flash::load_q_fragments(qa, flash::Operand<D>::a(q_s, 0)). Per tile (the step of
     * common/flash_tile.cuh): wait, barrier, V, commit; flash::scores(s, qa, k_op), flash::mask(s, 0,
     * key0, ...) with key0 the warp's first key, acc.update_skip_unit_alpha; wait, barrier, next K,
     * commit; acc.accumulate(p, v_op). A warp whose 16 keys all lie past `last` may skip its three
     * steps (not the barriers). */
    int e = next_entry(list, 0, n_sel, w.t, l_sel);
    long s0 = 0, last = -1; /* the tile's first key; the last key of its block that position t sees */
    if (e < n_sel) {
        s0 = (long)list[e] * l_sel;
        last = min(w.t, s0 + l_sel - 1);
        load_kv_tile<D>(k_s, k_bg, kv_stride, s0, last + 1);
    }
    cp_async_commit();
    cp_async_wait_all();
    __syncthreads(); /* Q has landed for everyone */
    flash::load_q_fragments(qa, flash::Operand<D>::a(q_s, 0));

    while (e < n_sel) {
        /* the tile after this one: the next 64 keys of this block, or the first 64 of the next listed block */
        int e_next = e;
        long s_next = s0 + kBc, last_next = last;
        if (s_next > last) {
            e_next = next_entry(list, e + 1, n_sel, w.t, l_sel);
            if (e_next < n_sel) {
                s_next = (long)list[e_next] * l_sel;
                last_next = min(w.t, s_next + l_sel - 1);
            }
        }
        cp_async_wait_all();
        __syncthreads(); /* K has landed for everyone; nobody still reads the previous V */
        load_kv_tile<D>(v_s, v_bg, kv_stride, s0, last + 1);
        cp_async_commit();

        const long key0 = s0 + warp * kKeysPerWarp; /* the warp's first key */
        const bool has_keys = key0 <= last;
        uint32_t p[1][2][2];
        if (has_keys) {
            float s[1][2][4];
            flash::scores(s, qa, k_op);
            if (key0 + kKeysPerWarp - 1 > last) /* the block's end or the token causal rule cuts the keys */
                flash::mask(s, 0, key0, [&](long, long key) { return key <= last; });
            acc.update_skip_unit_alpha(s, p, scale_log2); /* 16 keys a warp: the max soon stops moving */
        }

        cp_async_wait_all();
        __syncthreads(); /* V has landed for everyone; nobody still reads K */
        if (e_next < n_sel) {
            load_kv_tile<D>(k_s, k_bg, kv_stride, s_next, last_next + 1);
            cp_async_commit();
        }
        if (has_keys) acc.accumulate(p, v_op);
        e = e_next, s0 = s_next, last = last_next;
    }
    /* END SOLUTION */

    /* Merge the four warps' partial softmaxes: o = sum_w 2^(m_w - m) O_w / sum_w 2^(m_w - m) l_w, with
     * m the largest m_w (in base-2 units). */
    float *part_o = reinterpret_cast<float *>(smem);         /* [kWarps][kRows][D + kPad] */
    float *part_m = part_o + kWarps * kRows * (D + kPad);    /* [kWarps][kRows], score units */
    float *part_l = part_m + kWarps * kRows;                 /* [kWarps][kRows] */
    /* BEGIN SOLUTION */
    /* HINT: reduce l_i over the 4 lanes of a row (shuffles, as in lesson 03's store). Barrier (nobody
     * still reads K or V, whose bytes these arrays reuse). Each warp writes its rows gid and gid + 8:
     * m_i and l (lane tig == 0) and o_acc[dt][2rr..2rr+1] at columns dt*8 + tig*2 (a float2). Barrier.
     * Then thread (r = tid / 8, c = tid % 8) owns row r: m = max_w m_w, f_w = 2^(m_w*scale_log2 - m*scale_log2)
     * (use 0 for m when it is -inf), l = sum_w f_w l_w, and for the columns d = 32 k + 4 c (float4 reads)
     * o = sum_w f_w O_w / l, stored as 4 bf16 if r < rows. lse = ln 2 * (m * scale_log2 + log2 l), or
     * -inf (and o = 0) when l = 0. */
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
        acc.l[0][rr] += __shfl_xor_sync(0xffffffffu, acc.l[0][rr], 1);
        acc.l[0][rr] += __shfl_xor_sync(0xffffffffu, acc.l[0][rr], 2);
    }
    __syncthreads(); /* nobody still reads K or V: their bytes now hold the partial results */
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
        const int r = warp * kRows + gid + rr * 8;
        if (tig == 0) part_m[r] = acc.m[0][rr], part_l[r] = acc.l[0][rr];
#pragma unroll
        for (int dt = 0; dt < D / 8; ++dt)
            *reinterpret_cast<float2 *>(part_o + r * (D + kPad) + dt * 8 + tig * 2) =
                make_float2(acc.o[0][dt][2 * rr], acc.o[0][dt][2 * rr + 1]);
    }
    __syncthreads(); /* every warp's partial result is there */

    const int r = threadIdx.x / 8, c = threadIdx.x % 8; /* 16 rows x 8 threads */
    float m = -INFINITY;
#pragma unroll
    for (int u = 0; u < kWarps; ++u) m = fmaxf(m, part_m[u * kRows + r]);
    const float m_scaled = m == -INFINITY ? 0.f : m * scale_log2;
    float f[kWarps], l = 0.f;
#pragma unroll
    for (int u = 0; u < kWarps; ++u) {
        f[u] = fast_exp2(part_m[u * kRows + r] * scale_log2 - m_scaled); /* 0 for a warp that saw no key */
        l += f[u] * part_l[u * kRows + r];
    }
    if (r < w.rows) {
        const float inv_l = l > 0.f ? 1.f / l : 0.f;
        uint16_t *o_row = o + (row0 + r) * D;
#pragma unroll
        for (int kc = 0; kc < D / 32; ++kc) {
            const int d = kc * 32 + c * 4;
            float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
            for (int u = 0; u < kWarps; ++u) {
                const float4 x = *reinterpret_cast<const float4 *>(part_o + (u * kRows + r) * (D + kPad) + d);
                acc.x = fmaf(f[u], x.x, acc.x), acc.y = fmaf(f[u], x.y, acc.y);
                acc.z = fmaf(f[u], x.z, acc.z), acc.w = fmaf(f[u], x.w, acc.w);
            }
            *reinterpret_cast<uint2 *>(o_row + d) =
                make_uint2(pack_bf16(acc.x * inv_l, acc.y * inv_l), pack_bf16(acc.z * inv_l, acc.w * inv_l));
        }
        if (c == 0)
            lse[((size_t)w.b * sh.H + w.head0 + r) * sh.M + w.i] = l > 0.f ? (m_scaled + log2f(l)) * kLn2 : -INFINITY;
    }
    /* END SOLUTION */
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
    int st = check_arguments("nsa_selected_attention_cuda", shape, p, q, k, v, indices, o, lse);
    if (st) return st;
    const int per_list = p->heads_share_selection ? shape->H / shape->G : 1;
    const double blocks = (double)shape->M * ((per_list + kRows - 1) / kRows) * attn_nsa_list_heads(shape, p);
    if (shape->B > 65535 || blocks > 2147483647.0)
        return attn_fail(ATTN_ERR_BAD_SHAPE,
                         "nsa_selected_attention_cuda: B=%d must be <= 65535 and M * lists * ceil(heads per list / 16) "
                         "< 2^31 (here %.0f)",
                         shape->B, blocks);
    const float scale_log2 = attn_softmax_scale(shape) * kLog2e;
    (void)scale_log2;

    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: once the kernel is written: launch<64>(...) or launch<128>(...) by shape->D. The optional fast
     * path (selected_window.cu) goes first: st = nsa_selected_attention_window_cuda(the same arguments);
     * return st unless it is ATTN_ERR_BAD_ARGUMENT (a call it does not take: another shape, another GPU)
     * or ATTN_ERR_NOT_IMPLEMENTED (its stub): those calls are this kernel's. */
    st = nsa_selected_attention_window_cuda(shape, p, q, k, v, indices, o, lse, stream);
    if (st != ATTN_ERR_BAD_ARGUMENT && st != ATTN_ERR_NOT_IMPLEMENTED) return st; /* it ran, or failed */
    if (shape->D == 64) return launch<64>(shape, p, scale_log2, q, k, v, indices, o, lse, stream);
    return launch<128>(shape, p, scale_log2, q, k, v, indices, o, lse, stream);
    /* END SOLUTION */
}
