/*
 * topn_selection.cu - lesson 08, CUDA part: NSA's block scores and top-n lists in one kernel. The
 * scores are recomputed from q . k_cmp on tensor cores (bf16 in, fp32 accumulators), turned into
 * importance with exp2 and a log2(e)-scaled lse, summed onto selection blocks and over the heads of a
 * group, and ranked in fp32; they live in shared memory only.
 *
 * The block mapping without a weight table. Cut the keys into stride units of d keys. Compressed token
 * i covers units i .. i + r - 1 (r = l / d), so unit c is covered by tokens c - r + 1 .. c and receives
 * u_c = p[c - r + 1] + ... + p[c], and
 * block j is the bs = l' / d units j*bs .. j*bs + bs - 1: score[j] = u_{j*bs} + ... + u_{j*bs+bs-1}.
 * For l = 32, d = 16, l' = 64 (r = 2, bs = 4) that is p[4j-1] + 2 p[4j] + 2 p[4j+1] + 2 p[4j+2] + p[4j+3],
 * the weights of nsa.h; for l = d = l' it is p[j]. r and bs are template parameters (1 or 2, 1 or 4).
 *
 * Parallelisation
 *   grid   one block per (chunk of packed rows, kv head g), batch in grid.y. Packed rows are lesson 04's
 *          R = i * hpg + hh (hpg = H / G heads of group g at position i). Shared lists: a chunk is P
 *          whole positions (P * hpg rows, P = floor(32 W / hpg)), one list each, so the group sum stays
 *          inside the block; per-head lists: 32 W rows, one list each. Chunks from last to first (the
 *          last positions see the most tokens).
 *   block  W warps (4, fewer when the lists' scores would not fit in shared memory); warp = 32 packed
 *          rows (two m16 tiles) against every 64-token tile of k_cmp its rows can see; lane = rows gid,
 *          gid + 8 of each m16 tile and 16 CONSECUTIVE tokens 16 tig .. 16 tig + 15 of the tile (the
 *          K tile's rows are stored permuted so that the mma's column pattern lands on them), so a
 *          lane sums its own units and blocks and needs only r - 1 tokens from its left neighbour.
 *   shared two K tiles [64][D] bf16 (cp.async, double-buffered, swizzled); Q [32 W][D] bf16 only until
 *          each warp holds its Q fragments in registers; the same bytes then hold a staging tile
 *          [32 W][64 / bs] fp32 (each row's block sums of one tile) and the score rows [lists][NB]
 *          fp32 that the top-n reads at the end. Nothing but the lists goes to device memory.
 *   top-n  a warp per list: forced blocks marked first, then n - 3 rounds of a warp argmax (ties to the
 *          lower index) that marks its winner; the marked blocks, read in order, are the ascending list.
 *
 * The device functions this kernel is built from (the Q rows and fragments, tile_scores, row_probs,
 * lane_block_sums, rank_list) are in topn_common.cuh, because the optional fast path for H/G = 16
 * (topn_select_g16.cu, select_g16_kernel) is built from them too. The entry point below tries that
 * fast path first; this kernel serves every call it does not take.
 */
#include <cuda_runtime.h>
#include <math.h>

#include "attn_gpu.h"
#include "ptx.cuh"
#include "topn_common.cuh"
#include "topn_selection.h"

using namespace ptx;

namespace {

/* Copy tokens T0 .. T0 + 63 of kv head g into a swizzled, permuted tile (zeros past NC). */
template <int D>
__device__ __forceinline__ void load_k_tile(uint32_t tile, const uint16_t *k_bg, size_t stride, long T0, long NC)
{
    constexpr int kChunks = D / 8;
    for (int e = threadIdx.x; e < kTile * kChunks; e += blockDim.x) {
        const int r = e / kChunks, c = e % kChunks;
        const long u = T0 + token_of_row(r);
        const bool valid = u < NC;
        cp_async_16(tile + swizzle<D>(r, c), valid ? k_bg + (size_t)u * stride + c * 8 : k_bg, valid);
    }
}

template <int D, int R, int BS>
__global__ void __launch_bounds__(kMaxWarps * 32, 1)
    select_kernel(attn_shape sh, attn_nsa_params p, long NC, long NB, float scale_log2, int rows_per_block,
                  int lists_per_block, const uint16_t *__restrict__ q, const uint16_t *__restrict__ k_cmp,
                  const float *__restrict__ lse, int32_t *__restrict__ indices)
{
    constexpr int kRowBytes = D * 2;
    constexpr int kJT = kTile / BS;    /* blocks per K tile */
    constexpr int kSJ = kJT + 4;       /* staging row stride (floats), keeps float4 alignment */
    constexpr int kLaneBlocks = 16 / BS; /* blocks per lane per row */
    extern __shared__ __align__(128) uint8_t smem[];
    const int n_warps = blockDim.x / 32, rows_cap = 32 * n_warps;
    const uint32_t k_s = smem_addr(smem), q_s = k_s + 2 * kTile * kRowBytes;
    float *stg = reinterpret_cast<float *>(smem + 2 * kTile * kRowBytes); /* after Q is in registers */
    float *sc = stg + (size_t)rows_cap * kSJ;

    /* TODO (about 90 lines): 1. coordinates: kv head g, the block's packed rows R0 .. R_end - 1, each row's position t,
     *          visible count and lse * log2(e); the number of token tiles from the last row's count.
     * 2. load_q_rows and the first K tile (load_k_tile stores it permuted); wait, barrier, ldmatrix Q
     *    into registers, barrier, zero the score rows (they reuse Q's bytes).
     * 3. per tile: wait + barrier, prefetch the next tile, S = Q K^T (lesson 04's ldmatrix/mma loops),
     *    for each of the lane's rows row_probs then lane_block_sums, staging store, barrier, then a
     *    thread per (list, block) adds the list's rows in a fixed order to the score row.
     * 4. barrier, then a warp per list: rank_list. */
}

/* Shared memory of a block of n_warps warps: two K tiles, then Q or (staging + score rows). */
template <int D, int BS>
size_t smem_bytes(int n_warps, int lists, long NB)
{
    const size_t rows = 32 * (size_t)n_warps, kv = 2 * (size_t)kTile * D * 2, q_bytes = rows * D * 2;
    const size_t work = (rows * (kTile / BS + 4) + (size_t)lists * NB) * sizeof(float);
    return kv + (q_bytes > work ? q_bytes : work);
}

template <int D, int R, int BS>
int launch(const attn_shape *sh, const attn_nsa_params *p, const uint16_t *q, const uint16_t *k_cmp,
           const float *lse_cmp, int32_t *indices, cudaStream_t stream)
{
    const long NC = attn_nsa_num_cmp(sh->N, p), NB = attn_nsa_num_blocks(sh->N, p);
    const int hpg = sh->H / sh->G;
    int max_smem = 0;
    int st = smem_limit(&max_smem);
    if (st) return st;
    /* the most warps whose lists' score rows fit */
    int n_warps = 0, rows = 0, lists = 0;
    size_t bytes = 0;
    for (int w = kMaxWarps; w >= 1 && !n_warps; w /= 2) {
        const int cap = 32 * w;
        const int l = p->heads_share_selection ? cap / hpg : cap;
        if (l < 1) continue;
        bytes = smem_bytes<D, BS>(w, l, NB);
        if (bytes <= (size_t)max_smem) n_warps = w, lists = l, rows = p->heads_share_selection ? l * hpg : cap;
    }
    if (!n_warps)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT,
                         "nsa_select_cuda: %ld selection blocks (N / l'): the score rows of one block's lists need "
                         "more than the %d bytes of shared memory this GPU gives a block (H/G = %d)",
                         NB, max_smem, hpg);
    const long chunks = ((long)sh->M * hpg + rows - 1) / rows;
    if (chunks * sh->G > 2147483647L || sh->B > 65535)
        return attn_fail(ATTN_ERR_BAD_SHAPE, "nsa_select_cuda: B=%d must be <= 65535 and the grid < 2^31 blocks",
                         sh->B);
    st = attn_cuda_status(cudaFuncSetAttribute(select_kernel<D, R, BS>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               (int)bytes),
                          "cudaFuncSetAttribute (shared memory)");
    if (st) return st;
    const dim3 grid((unsigned)(chunks * sh->G), (unsigned)sh->B);
    select_kernel<D, R, BS><<<grid, 32 * n_warps, bytes, stream>>>(
        *sh, *p, NC, NB, attn_softmax_scale(sh) * kLog2e, rows, lists, q, k_cmp, lse_cmp, indices);
    return attn_cuda_launch_status("select_kernel");
}

template <int D>
int launch_ratio(const attn_shape *sh, const attn_nsa_params *p, const uint16_t *q, const uint16_t *k_cmp,
                 const float *lse_cmp, int32_t *indices, cudaStream_t stream)
{
    const int r = p->l / p->d, bs = p->l_sel / p->d;
    if (r == 1 && bs == 1) return launch<D, 1, 1>(sh, p, q, k_cmp, lse_cmp, indices, stream);
    if (r == 1 && bs == 4) return launch<D, 1, 4>(sh, p, q, k_cmp, lse_cmp, indices, stream);
    if (r == 2 && bs == 1) return launch<D, 2, 1>(sh, p, q, k_cmp, lse_cmp, indices, stream);
    return launch<D, 2, 4>(sh, p, q, k_cmp, lse_cmp, indices, stream);
}

} // namespace

extern "C" int nsa_select_cuda(const attn_shape *shape, const attn_nsa_params *p, const uint16_t *q,
                               const uint16_t *k_cmp, const float *lse_cmp, int32_t *indices, cudaStream_t stream)
{
    int st = check_arguments("nsa_select_cuda", shape, p, q, k_cmp, lse_cmp, indices);
    if (st) return st;

    /* TODO (about 5 lines): once the kernel body is written: launch_ratio<64>(...) or launch_ratio<128>(...) by D. The
     * optional fast path (topn_select_g16.cu) goes first: st = nsa_select_g16_cuda(the same arguments);
     * return st unless it is ATTN_ERR_BAD_ARGUMENT (a call it does not take) or ATTN_ERR_NOT_IMPLEMENTED
     * (its stub): those calls are select_kernel's. */
    return ATTN_ERR_NOT_IMPLEMENTED;
}
