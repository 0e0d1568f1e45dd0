/*
 * topn_select_g16.cu - lesson 08, CUDA part, optional: the fast path of the selection for H/G = 16.
 * nsa_select_g16_cuda (topn_selection.h) is its entry point, and nsa_select_cuda (topn_selection.cu)
 * calls it first: every call it does not take (ATTN_ERR_BAD_ARGUMENT), or every call while it is a stub
 * (ATTN_ERR_NOT_IMPLEMENTED), goes to the general select_kernel, which passes every test on its own.
 *
 * select_g16_kernel is select_kernel with 8 positions per block, one per m16 tile, and the group sum
 * done in registers (see its comment). It is built from the same device functions (topn_common.cuh),
 * plus KTileCopy (common/nsa_tiles.cuh), a K tile copy for a thread count known at compile time.
 */
#include <cuda_runtime.h>
#include <math.h>

#include "attn_gpu.h"
#include "nsa_tiles.cuh"
#include "ptx.cuh"
#include "topn_common.cuh"
#include "topn_selection.h"

using namespace ptx;

namespace {

/* KTileCopy (common/nsa_tiles.cuh) is load_k_tile of topn_selection.cu when the block's thread count is
 * known at compile time: each thread fills the same chunk column of rows r, r + step, r + 2 step, ... of
 * every tile, so its swizzled offsets and its tokens (tok(r + 8 k) = tok(r) + 2 k) are worked out once,
 * in init, instead of for every 16-byte copy of every tile: the plain loop of load_k_tile spends about 50
 * integer instructions per copy on them, a third of what select_g16_kernel executes at the bar's shape.
 * k_copy.copy(tile, k_bg, stride, T0, NC) is load_k_tile(tile, k_bg, stride, T0, NC). */
using nsa::KTileCopy;

/* The fast path for the most common GQA shape, H/G = 16 heads per kv group with shared lists (H = 64,
 * G = 4 in the course's bar), D = 128: the 16 heads of one position are exactly the rows of one m16
 * tile. The group sum then needs no staging and no barrier: the two rows of a lane (heads gid and
 * gid + 8) are added, then a reduce-scatter of shuffles over the 8 lanes of one tig (lane bits 4, 3,
 * 2) leaves each lane with 2 (mean-pool) or 1 (paper) finished block scores of its position, which it
 * adds to the warp's own score row. Each warp owns its two positions' lists from the first tile to the
 * ranking, so the only barrier per tile is the one of the K pipeline, and the smaller shared memory
 * (no staging tile) lets three blocks share a multiprocessor. */
template <int D, int R, int BS>
__global__ void __launch_bounds__(kMaxWarps * 32, 3)
    select_g16_kernel(attn_shape sh, attn_nsa_params p, long NC, long NB, float scale_log2,
                      const uint16_t *__restrict__ q, const uint16_t *__restrict__ k_cmp,
                      const float *__restrict__ lse, int32_t *__restrict__ indices)
{
    constexpr int kRowBytes = D * 2;
    constexpr int kV = 16 / BS;                  /* block sums per lane per row, before the reduction */
    constexpr int kKeep = kV >= 8 ? kV / 8 : 1;  /* finished block scores per lane after it */
    constexpr int kRows = kMaxWarps * 32;        /* 8 positions x 16 heads */
    extern __shared__ __align__(128) uint8_t smem[];
    const uint32_t k_s = smem_addr(smem), q_s = k_s + 2 * kTile * kRowBytes;
    float *sc = reinterpret_cast<float *>(smem + 2 * kTile * kRowBytes); /* [8 lists][NB], after Q */

    /* BEGIN SOLUTION */
    /* HINT: optional, after select_kernel works: the same pipeline with 8 positions per block, one per
     * m16 tile, and the group sum done in registers (the probabilities of rows gid and gid + 8 added
     * before lane_block_sums, then __shfl_xor_sync over lane masks 16, 8, 4, each step keeping half of
     * the values), straight into the warp's own score rows. */
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int gid = lane / 4, tig = lane % 4;
    const int b = blockIdx.y, g = blockIdx.x % sh.G;
    const long packed_rows = (long)sh.M * 16;
    const long n_chunks = (packed_rows + kRows - 1) / kRows;
    const long R0 = (n_chunks - 1 - blockIdx.x / sh.G) * (long)kRows;
    const long R_end = min(R0 + kRows, packed_rows);
    const long offset = (long)sh.N - sh.M;
    const size_t k_stride = (size_t)sh.G * D;
    const uint16_t *k_bg = k_cmp + ((size_t)b * NC * sh.G + g) * D;
    const int n_tiles = (int)((visible_count(offset + (R_end - 1) / 16, NC, p) + kTile - 1) / kTile);

    load_q_rows<D>(q_s, q, sh, b, g, R0, R_end, kRows);
    KTileCopy<D, kMaxWarps * 32> k_copy;
    k_copy.init();
    if (n_tiles > 0) k_copy.copy(k_s, k_bg, k_stride, 0, NC);
    cp_async_commit();

    /* m16 tile mt of this warp is position i[mt]; its rows gid and gid + 8 are heads gid and gid + 8 */
    long pos[kMTiles];
    int vis[kMTiles];
    float lse2[kMTiles][2];
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt) {
        const long row0 = R0 + warp * 32 + mt * 16;
        pos[mt] = row0 / 16;
        vis[mt] = row0 < R_end ? (int)visible_count(offset + pos[mt], NC, p) : 0;
#pragma unroll
        for (int rr = 0; rr < 2; ++rr)
            lse2[mt][rr] =
                vis[mt] > 0 ? lse[((size_t)b * sh.H + (size_t)g * 16 + gid + rr * 8) * sh.M + pos[mt]] * kLog2e : 0.f;
    }

    cp_async_wait_all();
    __syncthreads(); /* Q and the first K tile have landed */
    uint32_t qf[kMTiles][D / 16][4];
    load_q_fragments<D>(qf, q_s, warp * 32, lane);
    __syncthreads(); /* every warp holds its Q: the bytes become the score rows */
    float *my_rows = sc + (size_t)warp * kMTiles * NB; /* this warp's two lists, nobody else's */
    for (long e = lane; e < kMTiles * NB; e += 32) my_rows[e] = 0.f;
    __syncwarp();

    float carry[kMTiles][R > 1 ? R - 1 : 1] = {}; /* of the two rows' summed probabilities, for tig 0 */

    for (int m = 0; m < n_tiles; ++m) {
        const int T0 = m * kTile;
        const uint32_t k_buf = k_s + (m % 2) * kTile * kRowBytes;
        cp_async_wait_all();
        __syncthreads(); /* tile m has landed; nobody reads tile m - 1 any more */
        if (m + 1 < n_tiles) {
            k_copy.copy(k_s + ((m + 1) % 2) * kTile * kRowBytes, k_bg, k_stride, T0 + kTile, NC);
            cp_async_commit();
        }

        float s[kMTiles][kNTiles][4];
        tile_scores<D>(s, qf, k_buf, lane);

#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt) {
            float v[kV]; /* heads gid and gid + 8 of this lane's 16 tokens, block by block */
#pragma unroll
            for (int c = 0; c < kV; ++c) v[c] = 0.f;
            /* heads gid and gid + 8 see the same tokens, and the group sum is linear: add their
             * probabilities first, then map the sum to units and blocks once */
            float pv[16], pv8[16];
            row_probs(s[mt], 0, T0, vis[mt], lse2[mt][0], scale_log2, lane, pv);
            row_probs(s[mt], 1, T0, vis[mt], lse2[mt][1], scale_log2, lane, pv8);
#pragma unroll
            for (int x = 0; x < 16; ++x) pv[x] += pv8[x];
            lane_block_sums<R, BS>(pv, carry[mt], lane, v);
            /* Reduce-scatter over the 8 lanes of this tig (gid = lane bits 4, 3, 2): at each step a lane
             * keeps one half of its values (the upper half if its bit is set), sends the other half to its
             * partner and adds the partner's copy of its own half. Every block is summed by the same tree
             * of lanes, so equal inputs still give equal scores. With fewer values than steps (paper:
             * 4 values, 3 steps) the last step adds both copies of the last value. */
            int c_base = 0;
#pragma unroll
            for (int step = 0; step < 3; ++step) {
                const int mask = 16 >> step;
                const bool upper = (lane & mask) != 0;
                constexpr int kWidth0 = kV;
                const int half = (kWidth0 >> step) / 2; /* a constant once the loop is unrolled */
                if (half >= 1) {
#pragma unroll
                    for (int c = 0; c < 8; ++c) {
                        if (c < half) {
                            const float send = upper ? v[c] : v[half + c];
                            const float keep = upper ? v[half + c] : v[c];
                            v[c] = keep + __shfl_xor_sync(0xffffffffu, send, mask);
                        }
                    }
                    if (upper) c_base += half;
                } else {
                    v[0] += __shfl_xor_sync(0xffffffffu, v[0], mask);
                }
            }
            /* this lane's finished blocks: (T0 + 16 tig) / BS + c_base + e; with one value per lane the
             * two lanes that share it (lane bit 2) hold the same bits, the lower one writes */
            if (kV >= 8 || (lane & 4) == 0) {
                const long j = (T0 + 16 * tig) / BS + c_base;
#pragma unroll
                for (int e = 0; e < kKeep; ++e)
                    if (j + e < NB) my_rows[(size_t)mt * NB + j + e] += v[e];
            }
        }
    }
    __syncwarp(); /* this warp's score rows are complete (no other warp touches them) */

#pragma unroll 1
    for (int mt = 0; mt < kMTiles; ++mt) {
        if (R0 + warp * 32 + mt * 16 >= R_end) break;
        rank_list(my_rows + (size_t)mt * NB, (int)((offset + pos[mt]) / p.l_sel), p.n,
                  indices + (((size_t)b * sh.M + pos[mt]) * sh.G + g) * p.n, lane);
    }
    /* END SOLUTION */
}

/* Launch select_g16_kernel for the block ratios R = l / d and BS = l' / d; ATTN_ERR_BAD_ARGUMENT, and
 * nothing launched, for a call it does not take. */
template <int R, int BS>
int launch_g16(const attn_shape *sh, const attn_nsa_params *p, const uint16_t *q, const uint16_t *k_cmp,
               const float *lse_cmp, int32_t *indices, cudaStream_t stream)
{
    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: optional, with select_g16_kernel: shared lists with H/G = 16 and D = 128 go to it when its
     * shared memory (two K tiles, then Q or the 8 score rows) fits the GPU's limit (smem_limit), with 128
     * threads per block; every other call returns attn_fail(ATTN_ERR_BAD_ARGUMENT, "...why...") and
     * launches nothing. */
    constexpr int D = 128;
    const int hpg = sh->H / sh->G;
    if (!p->heads_share_selection || hpg != 16 || sh->D != D)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT,
                         "nsa_select_g16_cuda: not taken: it takes shared lists with H/G = 16 and D = 128 (here "
                         "shared lists %d, H/G = %d, D = %d)",
                         p->heads_share_selection, hpg, sh->D);
    const long NC = attn_nsa_num_cmp(sh->N, p), NB = attn_nsa_num_blocks(sh->N, p);
    int max_smem = 0;
    int st = smem_limit(&max_smem);
    if (st) return st;
    const size_t kv_bytes = 2 * (size_t)kTile * D * 2, q_bytes = 128 * (size_t)D * 2;
    const size_t rows_bytes = 8 * (size_t)NB * sizeof(float);
    const size_t g16_bytes = kv_bytes + (q_bytes > rows_bytes ? q_bytes : rows_bytes);
    if (g16_bytes > (size_t)max_smem)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT,
                         "nsa_select_g16_cuda: not taken: the score rows of %ld selection blocks need %zu bytes of "
                         "shared memory, more than the %d this GPU gives a block",
                         NB, g16_bytes, max_smem);
    const long chunks = ((long)sh->M * 16 + 127) / 128;
    if (chunks * sh->G > 2147483647L || sh->B > 65535)
        return attn_fail(ATTN_ERR_BAD_SHAPE, "nsa_select_g16_cuda: B=%d must be <= 65535 and the grid < 2^31 blocks",
                         sh->B);
    st = attn_cuda_status(cudaFuncSetAttribute(select_g16_kernel<D, R, BS>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               (int)g16_bytes),
                          "cudaFuncSetAttribute (shared memory)");
    if (st) return st;
    const dim3 grid((unsigned)(chunks * sh->G), (unsigned)sh->B);
    select_g16_kernel<D, R, BS><<<grid, kMaxWarps * 32, g16_bytes, stream>>>(
        *sh, *p, NC, NB, attn_softmax_scale(sh) * kLog2e, q, k_cmp, lse_cmp, indices);
    return attn_cuda_launch_status("select_g16_kernel");
    /* END SOLUTION */
}

} // namespace

extern "C" int nsa_select_g16_cuda(const attn_shape *shape, const attn_nsa_params *p, const uint16_t *q,
                                   const uint16_t *k_cmp, const float *lse_cmp, int32_t *indices, cudaStream_t stream)
{
    int st = check_arguments("nsa_select_g16_cuda", shape, p, q, k_cmp, lse_cmp, indices);
    if (st) return st;
    const int r = p->l / p->d, bs = p->l_sel / p->d; /* check_arguments allows r in {1, 2}, bs in {1, 4} */
    if (r == 1 && bs == 1) return launch_g16<1, 1>(shape, p, q, k_cmp, lse_cmp, indices, stream);
    if (r == 1 && bs == 4) return launch_g16<1, 4>(shape, p, q, k_cmp, lse_cmp, indices, stream);
    if (r == 2 && bs == 1) return launch_g16<2, 1>(shape, p, q, k_cmp, lse_cmp, indices, stream);
    return launch_g16<2, 4>(shape, p, q, k_cmp, lse_cmp, indices, stream);
}
