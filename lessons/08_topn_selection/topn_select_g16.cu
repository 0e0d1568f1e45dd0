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

    /* TODO (about 105 lines): optional, after select_kernel works: the same pipeline with 8 positions per block, one per
     * m16 tile, and the group sum done in registers (the probabilities of rows gid and gid + 8 added
     * before lane_block_sums, then __shfl_xor_sync over lane masks 16, 8, 4, each step keeping half of
     * the values), straight into the warp's own score rows. */
}

/* Launch select_g16_kernel for the block ratios R = l / d and BS = l' / d; ATTN_ERR_BAD_ARGUMENT, and
 * nothing launched, for a call it does not take. */
template <int R, int BS>
int launch_g16(const attn_shape *sh, const attn_nsa_params *p, const uint16_t *q, const uint16_t *k_cmp,
               const float *lse_cmp, int32_t *indices, cudaStream_t stream)
{
    /* TODO (about 30 lines): optional, with select_g16_kernel: shared lists with H/G = 16 and D = 128 go to it when its
     * shared memory (two K tiles, then Q or the 8 score rows) fits the GPU's limit (smem_limit), with 128
     * threads per block; every other call returns attn_fail(ATTN_ERR_BAD_ARGUMENT, "...why...") and
     * launches nothing. */
    return ATTN_ERR_NOT_IMPLEMENTED;
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
