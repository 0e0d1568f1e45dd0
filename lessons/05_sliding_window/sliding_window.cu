/*
 * sliding_window.cu - lesson 05, CUDA part: sliding-window attention. Query t sees the w keys
 * t - w + 1 .. t (its own position included). Tiles wholly outside that band are never loaded,
 * so the cost is O(N w) instead of O(N^2).
 *
 * Lesson 04's kernel (packed GQA rows, shared K/V tiles), with its tile step from
 * common/flash_tile.cuh (load Q, S = Q K^T, the mask, the online softmax, P V, the epilogue). What
 * is new is which tiles a block walks and which keys a row sees:
 *   - the key loop starts at the tile holding the block's first visible key, t_first - w + 1,
 *     instead of at key 0;
 *   - a tile is masked when it crosses the causal diagonal (s > t), the lower window edge
 *     (s < t - w + 1) or the end of the keys; every other tile runs unmasked.
 * A block of 128 packed rows covers 128 / hpg positions, so it walks about (w + 128 / hpg) / 64
 * key tiles whatever N is.
 *
 * Parallelisation (lesson 04's): one block per (packed row block, kv head), batch in grid.y; 4 warps
 * of 32 packed rows each (two m16 tiles per warp, all 64 keys of a tile); shared Q [128][D] and one K
 * and one V tile [64][D], bf16, swizzled; cp.async: V_j loads during S = Q K_j^T, K_{j+1} during P V_j.
 */
#include <cuda_runtime.h>
#include <math.h>

#include "attn_gpu.h"
#include "flash_tile.cuh"
#include "sliding_window.h"
#include "ptx.cuh"

using namespace ptx;

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kBr = 128;                   /* packed rows per block */
constexpr int kBc = 64;                    /* keys per tile */
constexpr int kRowsPerWarp = kBr / kWarps; /* 32 */
constexpr int kMTiles = kRowsPerWarp / 16;
constexpr int kNTiles = kBc / 8;
constexpr float kLog2e = flash::kLog2e;

template <int D>
__global__ void __launch_bounds__(kThreads, 2)
    window_attention_kernel(attn_shape sh, int window, float scale_log2, int groups_per_chunk, const uint16_t *__restrict__ q,
                         const uint16_t *__restrict__ k, const uint16_t *__restrict__ v, uint16_t *__restrict__ o,
                         float *__restrict__ lse)
{
    extern __shared__ __align__(128) uint8_t smem[];
    const uint32_t q_s = smem_addr(smem), k_s = q_s + kBr * D * 2, v_s = k_s + kBc * D * 2;
    const flash::PackedRows<kBr> w(sh, groups_per_chunk); /* lesson 04's block: rows R0 .. R0 + 127 of (b, g) */
    const size_t kv_stride = (size_t)sh.G * D;
    const uint16_t *k_bg = k + ((size_t)w.b * sh.N * sh.G + w.g) * D;
    const uint16_t *v_bg = v + ((size_t)w.b * sh.N * sh.G + w.g) * D;
    const int warp_row0 = (threadIdx.x / 32) * kRowsPerWarp; /* the warp's first row of the block */

    /* TODO (about 35 lines): lesson 04's loop, with the tile step of common/flash_tile.cuh. (1) Which tiles: from the one
     * holding first_key = max(0, t_first - w + 1) to the one holding t_last (a window is causal).
     * (2) Prologue: Q by flash::load_rows<D, kBr, kThreads>(q_s, w.R0, R -> w.q_row<D>(sh, q, R), q),
     * the K tile of the first tile (not K_0) by flash::load_tile<D, kBc, kThreads>, commit; then the
     * ldmatrix operands (flash::Operand<D>::a(q_s, warp_row0), ::k(k_s, 0), ::v(v_s, 0)) and the state
     * flash::OnlineSoftmax<D, kMTiles> acc. (3) Per tile s0: wait, barrier, V tile, commit;
     * flash::scores; when the tile crosses the end of the keys, the diagonal of t_first, or starts
     * before the window of t_last: flash::mask(s, w.R0 + warp_row0, s0, predicate (R, key) -> is key
     * before N and inside the window of position t = w.pos(R)); acc.update; wait, barrier, the next K,
     * commit; acc.accumulate. (4) acc.store(scale_log2, w.R0 + warp_row0, R -> w.dst<D>(sh, o, lse, R)). */
}

template <int D>
int launch(const attn_shape *shape, int window, float scale_log2, const uint16_t *q, const uint16_t *k, const uint16_t *v,
           uint16_t *o, float *lse, cudaStream_t stream)
{
    const int smem_bytes = (kBr + 2 * kBc) * D * 2;
    int st = attn_cuda_status(
        cudaFuncSetAttribute(window_attention_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes),
        "cudaFuncSetAttribute (shared memory)");
    int dev = 0, l2_bytes = 0;
    if (!st) st = attn_cuda_status(cudaGetDevice(&dev), "cudaGetDevice");
    if (!st) st = attn_cuda_status(cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, dev), "L2 size");
    if (st) return st;
    /* kv heads whose K and V fit in half of L2 together */
    const int groups_per_chunk = (int)fmax(1.0, fmin((double)shape->G, 0.5 * l2_bytes / (4.0 * shape->N * D)));
    const long packed_rows = (long)shape->M * (shape->H / shape->G);
    const dim3 grid((unsigned)((packed_rows + kBr - 1) / kBr) * (unsigned)shape->G, shape->B);
    window_attention_kernel<D><<<grid, kThreads, smem_bytes, stream>>>(*shape, window, scale_log2, groups_per_chunk, q, k, v, o,
                                                                          lse);
    return attn_cuda_launch_status("window_attention_kernel");
}

} // namespace

extern "C" int window_attention_cuda(const attn_shape *shape, int window, const uint16_t *q, const uint16_t *k,
                                     const uint16_t *v, uint16_t *o, float *lse, cudaStream_t stream)
{
    int st = attn_check_shape(shape);
    if (st) return st;
    if (!q || !k || !v || !o || !lse)
        return attn_fail(ATTN_ERR_NULL_POINTER, "window_attention_cuda: q, k, v, o and lse must not be NULL");
    if (shape->D != 64 && shape->D != 128)
        return attn_fail(ATTN_ERR_UNSUPPORTED_D, "window_attention_cuda: D=%d, this kernel supports 64 and 128", shape->D);
    if (((uintptr_t)q | (uintptr_t)k | (uintptr_t)v | (uintptr_t)o) % 16 != 0)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "window_attention_cuda: q, k, v and o must be 16-byte aligned");
    const double blocks = ceil((double)shape->M * (shape->H / shape->G) / kBr) * shape->G;
    if (shape->B > 65535 || blocks > 2147483647.0)
        return attn_fail(ATTN_ERR_BAD_SHAPE, "window_attention_cuda: B=%d must be <= 65535 and the grid < 2^31 blocks",
                         shape->B);
    if (window < 1) return attn_fail(ATTN_ERR_BAD_ARGUMENT, "window_attention_cuda: window=%d must be >= 1", window);
    if (!shape->causal)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "window_attention_cuda: a sliding window is causal (shape->causal = 0)");
    const float scale_log2 = attn_softmax_scale(shape) * kLog2e;
    (void)scale_log2;

    /* TODO (about 5 lines): once the kernel body is written: launch<64>(...) or launch<128>(...) by shape->D. */
    return ATTN_ERR_NOT_IMPLEMENTED;
}
