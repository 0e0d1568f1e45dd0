// nsa_tiles.cuh - the tile copies of the NSA fast paths, written once for the lessons that share them
// (CUDA C++, device code only):
//
//   the permuted K tile    lesson 08's fast selection (topn_select_g16.cu, and token_of_row in both of its
//                          kernels) and lesson 10's launch 2 (cmp_select_g16_kernel): token_of_row, KTileCopy
//   the copy-engine ring   lesson 09's window of 8 positions (selected_window.cu) and lesson 10's launch 3
//                          (slc_swa_window_kernel): kRing, kBox, kPair, tma_offset, issue_pair
//
// Both are given code in every lesson that uses them: the lessons teach what is built on them (the block
// sums and the ranking, the union of the lists and the walk of the ring), so they live here instead of in
// a copy per lesson. A lesson's kernel names them with `using nsa::...;`.
#ifndef ATTN_NSA_TILES_CUH
#define ATTN_NSA_TILES_CUH

#include <stdint.h>

#include "ptx.cuh"

// The copy engine (TMA) and mbarrier transaction counts: the ring's pieces are compiled for sm_90 and later only.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define ATTN_HAVE_TMA 1
#else
#define ATTN_HAVE_TMA 0
#endif

namespace nsa {

// ---------------------------------------------------------------- the permuted K tile (lesson 08)

constexpr int kKTile = 64; // compressed tokens per K tile

// Smem row c of a permuted K tile holds token tok(c) of the tile: the m16n8 accumulator gives lane tig the
// columns nt * 8 + 2 tig + e, which then are the consecutive tokens 16 tig + 2 nt + e.
__device__ __forceinline__ int token_of_row(int c) { return 16 * ((c % 8) / 2) + 2 * (c / 8) + (c % 2); }

// A permuted K tile copy for a block of kThreadCount threads (a count known at compile time): each thread
// fills the same chunk column of rows r, r + step, r + 2 step, ... of every tile, so its swizzled offsets
// and its tokens (tok(r + 8 k) = tok(r) + 2 k) are worked out once, in init, instead of for every 16-byte
// copy of every tile: a plain loop over the tile's chunks spends about 50 integer instructions per copy on
// them, a third of what lesson 08's select_g16_kernel executes at the bar's shape.
template <int D, int kThreadCount>
struct KTileCopy {
    static constexpr int kChunks = D / 8, kRowStep = kThreadCount / kChunks, kPasses = kKTile / kRowStep;
    static_assert(kRowStep % 8 == 0 && kKTile % kRowStep == 0, "rows r + k * step must keep r's swizzle and token pattern");
    static constexpr int kTokStep = 2 * (kRowStep / 8); // tokens between the rows of two passes
    uint32_t dst; // swizzled byte offset of the thread's first chunk in a tile
    int tok;      // the token of its first row, within the tile
    int col;      // the first element of its chunk in a row of K

    __device__ __forceinline__ void init()
    {
        const int r = threadIdx.x / kChunks, c = threadIdx.x % kChunks;
        dst = ptx::swizzle<D>(r, c), tok = token_of_row(r), col = c * 8;
    }

    // Tokens T0 .. T0 + 63 of k_bg (token u at k_bg + u * stride) into the tile at `tile`, zeros past NC.
    __device__ __forceinline__ void copy(uint32_t tile, const uint16_t *k_bg, size_t stride, long T0, long NC) const
    {
        const long left = NC - T0 - tok; // tokens from the thread's first one to the end of k_cmp
        const uint16_t *src = k_bg + (size_t)(T0 + tok) * stride + col;
#pragma unroll
        for (int it = 0; it < kPasses; ++it) {
            const bool valid = it * kTokStep < left;
            ptx::cp_async_16(tile + dst + it * kRowStep * D * 2, valid ? src + (size_t)(it * kTokStep) * stride : k_bg,
                             valid);
        }
    }
};

// ---------------------------------------------------------------- the copy-engine ring (lesson 09)
//
// kRing stages of one K/V tile pair (64 keys x 128 columns of K and of V: 32 KB, D = 128), filled by the
// copy engine (four 8 KB tensor-map boxes with the 128-byte swizzle) in the order of the union of the lists
// of a window of positions: union block u goes to stage u % kRing. full[stage] is an mbarrier that
// completes when its bytes have landed, slot_u[stage] says which union block the stage holds or awaits,
// left[stage] how many warps have still to read it. The lessons' READMEs walk through the ring.

constexpr int kRing = 7;           // K/V tile pairs resident or in flight
constexpr int kBox = 64 * 64 * 2;  // one TMA box: 64 keys x 64 columns, 8 KB
constexpr int kPair = 4 * kBox;    // K and V of one 64-key tile, D = 128: 32 KB

#if ATTN_HAVE_TMA
// Send union block u to its stage: record its number of users (upos[u + 1] - upos[u]) and its index, then
// one expect-tx arrival and the four copies (K then V, columns 0-63 then 64-127) of the block's 64 token
// rows (row_base + blk[u] * 64 ..) of kv head g. Rows past the end of K are zero-filled by the copy engine;
// keys past t are masked by each warp.
__device__ __forceinline__ void issue_pair(const CUtensorMap *tk, const CUtensorMap *tv, uint32_t ring, uint32_t full,
                                           int *left, int *slot_u, const int *blk, const uint16_t *upos, int u,
                                           int row_base, int g)
{
    const int st = u % kRing;
    left[st] = upos[u + 1] - upos[u];
    atomicExch(&slot_u[st], u); // an atomic: warps poll it (a plain store and load would race)
    const uint32_t bar = full + 8 * st, dst = ring + st * kPair;
    const int row = row_base + blk[u] * 64;
    ptx::fence_proxy_async(); // the stage was last read by ldmatrix (the generic proxy); the copy engine writes it next
    ptx::mbar_arrive_expect_tx(bar, kPair);
    ptx::tma_load_3d(dst, tk, 0, g, row, bar);
    ptx::tma_load_3d(dst + kBox, tk, 64, g, row, bar);
    ptx::tma_load_3d(dst + 2 * kBox, tv, 0, g, row, bar);
    ptx::tma_load_3d(dst + 3 * kBox, tv, 64, g, row, bar);
}

// Byte offset of 16-byte chunk c (0..15) of key row r in a TMA tile: two boxes of [64 rows][128 bytes],
// chunk c % 8 of a row stored at (c % 8) ^ (r % 8) (the copy engine's 128-byte swizzle).
__device__ __forceinline__ uint32_t tma_offset(int r, int c)
{
    return (uint32_t)((c >> 3) * kBox + r * 128 + (((c & 7) ^ (r & 7)) << 4));
}
#endif

} // namespace nsa

#endif
