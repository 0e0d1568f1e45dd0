/*
 * kv_floor.cuh - the load floor of lesson 09's selected attention, for tools/bench/lesson_09.cu: the K
 * and V tiles the kernel reads on the same lists, in the same order, with nothing computed. bytes / time
 * is the rate at which this access pattern streams from L2: a kernel that reads the same bytes the same
 * way cannot be faster. Two transports: cp.async through a ring of 2 or 3 (K, V) tile pairs per block,
 * and the copy engine (TMA, sm_90) with a few resident blocks and a deeper ring. Shared lists, D = 128
 * and H/G <= 16 only: the course's bar shape.
 */
#ifndef BENCH_KV_FLOOR_CUH
#define BENCH_KV_FLOOR_CUH

#include <cuda.h>
#include <cuda_runtime.h>

#include "attn.h"
#include "attn_gpu.h"
#include "nsa.h"
#include "ptx.cuh"

/* What both floors read: the lists [B, M, G, n] and K, V [B, N, G, D]; sink takes a word that keeps
 * the loads alive (written practically never). */
typedef struct {
    const attn_shape *sh;
    const attn_nsa_params *p;
    const int32_t *lists;
    const uint16_t *k, *v;
    unsigned *sink;
} kv_floor_args;

/* What lesson 09's kernel cannot beat on these lists: the same K and V tiles, read in the same order
 * (one block per (position, kv group), positions of a group next to each other, last first) through a
 * ring of `S` (K, V) tile pairs with cp.async, and nothing computed (one word of each tile is folded
 * into a checksum so that every load must land). bytes / time is the L2 stream rate of the selected
 * branch's access pattern. Shared lists and H/G <= 16 only (the bar's shape). */
template <int D, int S>
__global__ void __launch_bounds__(128) kv_floor_kernel(int M, int N, int G, int n, int l_sel, const int32_t *lists,
                                                       const uint16_t *k, const uint16_t *v, unsigned *sink)
{
    extern __shared__ __align__(128) uint8_t smem[];
    constexpr int kTileBytes = 64 * D * 2, kChunks = D / 8;
    const uint32_t base = (uint32_t)__cvta_generic_to_shared(smem);
    const long x = blockIdx.x;
    const int i = M - 1 - (int)(x % M), g = (int)(x / M), b = blockIdx.y;
    const long t = (long)N - M + i;
    const int32_t *list = lists + (((size_t)b * M + i) * G + g) * n;
    const uint16_t *k_bg = k + ((size_t)b * N * G + g) * D, *v_bg = v + ((size_t)b * N * G + g) * D;
    const size_t stride = (size_t)G * D;
    /* the walk: entry e, tile start s0, last visible key; e == n ends it */
    int le = 0, ce;
    long ls0 = 0, llast = -1, cs0, clast;
    auto next = [&](int &e, long &s0, long &last, bool first) {
        if (!first && s0 + 64 <= last) {
            s0 += 64;
            return;
        }
        for (e = first ? 0 : e + 1; e < n; ++e) {
            const int j = list[e];
            if (j < 0) {
                e = n;
                break;
            }
            if ((long)j * l_sel <= t) break;
        }
        if (e < n) s0 = (long)list[e] * l_sel, last = min(t, s0 + l_sel - 1);
    };
    auto load = [&](int stage, long s0, long last) {
        for (int c = threadIdx.x; c < 64 * kChunks; c += blockDim.x) {
            const int r = c / kChunks, ch = c % kChunks;
            const long row = s0 + r;
            const bool ok = row <= last;
            const uint32_t dst = base + stage * 2 * kTileBytes + (r * kChunks + ch) * 16;
            const uint16_t *ks = ok ? k_bg + row * stride + ch * 8 : k_bg, *vs = ok ? v_bg + row * stride + ch * 8 : v_bg;
            asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(ks), "r"(ok ? 16 : 0));
            asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst + kTileBytes), "l"(vs),
                         "r"(ok ? 16 : 0));
        }
    };
    next(le, ls0, llast, true);
    ce = le, cs0 = ls0, clast = llast;
#pragma unroll
    for (int st = 0; st < S - 1; ++st) {
        if (le < n) load(st, ls0, llast), next(le, ls0, llast, false);
        asm volatile("cp.async.commit_group;\n" ::);
    }
    unsigned acc = 0;
    for (int j = 0; ce < n; ++j) {
        asm volatile("cp.async.wait_group %0;\n" ::"n"(S - 2));
        __syncthreads(); /* tile j has landed; nobody reads tile j - 1 any more */
        if (le < n) load((j + S - 1) % S, ls0, llast), next(le, ls0, llast, false);
        asm volatile("cp.async.commit_group;\n" ::);
        acc ^= reinterpret_cast<const unsigned *>(smem + (j % S) * 2 * kTileBytes)[threadIdx.x];
        next(ce, cs0, clast, false);
    }
    asm volatile("cp.async.wait_group 0;\n" ::);
    if (acc == 0x9e3779b9u) sink[threadIdx.x] = acc; /* practically never: keeps the loads alive */
}

static int kv_floor_launch(const kv_floor_args *r, int stages, cudaStream_t stream)
{
    const attn_shape *sh = r->sh;
    if (sh->D != 128 || !r->p->heads_share_selection || sh->H / sh->G > 16)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "the K/V floor runs on the bar's shape only (D = 128, shared lists)");
    const int bytes = stages * 2 * 64 * 128 * 2;
    const dim3 grid((unsigned)((long)sh->M * sh->G), (unsigned)sh->B);
    if (stages == 2) {
        int st = attn_cuda_status(
            cudaFuncSetAttribute(kv_floor_kernel<128, 2>, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes), "floor");
        if (st) return st;
        kv_floor_kernel<128, 2><<<grid, 128, bytes, stream>>>(sh->M, sh->N, sh->G, r->p->n, r->p->l_sel, r->lists, r->k,
                                                              r->v, r->sink);
    } else {
        int st = attn_cuda_status(
            cudaFuncSetAttribute(kv_floor_kernel<128, 3>, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes), "floor");
        if (st) return st;
        kv_floor_kernel<128, 3><<<grid, 128, bytes, stream>>>(sh->M, sh->N, sh->G, r->p->n, r->p->l_sel, r->lists, r->k,
                                                              r->v, r->sink);
    }
    return attn_cuda_launch_status("kv_floor_kernel");
}

/* The same floor through the copy engine (TMA, sm_90). Per tile, four 3-D tensor-map copies (K and V,
 * columns 0-63 and 64-127 of 64 tokens: 8 KB each) instead of 2048 16-byte cp.async. The blocks stay
 * resident (gridDim.x = S == 6 ? one : two per multiprocessor) and walk the (position, group) pairs in
 * the cp.async floor's order, x = blockIdx.x, + gridDim.x, ...; thread 0 issues the copies up to S tiles
 * ahead, and warp 1 waits for each tile, reads a word, and hands the stage back: so up to S tile pairs
 * (32 KB each) are in flight per block, against one per block of the cp.async floor. A copy always
 * moves the whole box, so the block holding t is read to its end (about 3% more bytes than the floor
 * counts: the GB/s printed is a little low). */
/* (mbar_init, mbar_wait, tma_load_3d: common/ptx.cuh; mbar_wait traps after about 2 s, so a mistake
 * fails the row with an error instead of hanging the benchmark) */
template <int S>
__global__ void __launch_bounds__(64) kv_floor_tma_kernel(const __grid_constant__ CUtensorMap tk,
                                                          const __grid_constant__ CUtensorMap tv, int B, int M, int N,
                                                          int G, int n, int l_sel, const int32_t *lists, unsigned *sink)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    using namespace ptx;
    extern __shared__ __align__(128) uint8_t smem[];
    constexpr int kBox = 64 * 64 * 2, kTileBytes = 2 * kBox; /* a box: 64 tokens x 64 columns; a tile: D = 128 */
    const uint32_t base = (uint32_t)__cvta_generic_to_shared(smem);
    const uint32_t full = base + S * 2 * kTileBytes, empty = full + 8 * S; /* S + S mbarriers after the tiles */
    if (threadIdx.x == 0) {
        for (int st = 0; st < S; ++st) mbar_init(full + 8 * st, 1), mbar_init(empty + 8 * st, 1);
        mbar_init_fence();
    }
    __syncthreads();
    if (threadIdx.x > 0 && threadIdx.x < 32) return; /* warp 0: thread 0 alone issues the copies */
    const bool producer = threadIdx.x == 0;
    const long items = (long)B * G * M;
    long q = 0; /* tiles of this block so far: stage q % S, round q / S */
    unsigned acc = 0;
    for (long x = blockIdx.x; x < items; x += gridDim.x) {
        const int b = (int)(x / ((long)G * M));
        const long xr = x % ((long)G * M);
        const int i = M - 1 - (int)(xr % M), g = (int)(xr / M);
        const long t = (long)N - M + i;
        const int32_t *list = lists + (((size_t)b * M + i) * G + g) * n;
        for (int e = 0; e < n; ++e) {
            const int j = list[e];
            if (j < 0) break;
            const long first = (long)j * l_sel, last = min(t, first + l_sel - 1);
            for (long s0 = first; s0 <= last; s0 += 64, ++q) {
                const int st = (int)(q % S);
                const unsigned round = (unsigned)(q / S);
                if (producer) {
                    if (round > 0) mbar_wait(empty + 8 * st, (round - 1) & 1u); /* warp 1 is done with it */
                    const uint32_t bar = full + 8 * st, dst = base + st * 2 * kTileBytes;
                    mbar_arrive_expect_tx(bar, 4 * kBox);
                    const int row = (int)((long)b * N + s0);
                    tma_load_3d(dst, &tk, 0, g, row, bar);
                    tma_load_3d(dst + kBox, &tk, 64, g, row, bar);
                    tma_load_3d(dst + kTileBytes, &tv, 0, g, row, bar);
                    tma_load_3d(dst + kTileBytes + kBox, &tv, 64, g, row, bar);
                } else {
                    mbar_wait(full + 8 * st, round & 1u); /* tile q has landed */
                    acc ^= reinterpret_cast<const unsigned *>(smem + st * 2 * kTileBytes)[threadIdx.x - 32];
                    __syncwarp();
                    if (threadIdx.x == 32) mbar_arrive(empty + 8 * st);
                }
            }
        }
    }
    if (acc == 0x9e3779b9u) sink[threadIdx.x] = acc; /* practically never: keeps the loads alive */
#endif
}

static int kv_floor_tma_launch(const kv_floor_args *r, int stages, cudaStream_t stream)
{
    const attn_shape *sh = r->sh;
    if (sh->D != 128 || !r->p->heads_share_selection || sh->H / sh->G > 16)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "the K/V floor runs on the bar's shape only (D = 128, shared lists)");
    int dev = 0, major = 0, sms = 0;
    int st = attn_cuda_status(cudaGetDevice(&dev), "the TMA floor");
    if (!st) st = attn_cuda_status(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev), "the TMA floor");
    if (!st) st = attn_cuda_status(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev), "the TMA floor");
    if (st) return st;
    if (major < 9) return attn_fail(ATTN_ERR_NO_DEVICE, "the TMA floor needs sm_90 (this GPU is sm_%d0)", major);
    CUtensorMap tk, tv;
    /* K and V as (D columns, G heads, B N tokens), boxes of 64 x 64 without swizzle */
    if ((st = attn_kv_tensor_map(&tk, r->k, sh, 64, 64, 0)) || (st = attn_kv_tensor_map(&tv, r->v, sh, 64, 64, 0)))
        return st;
    const int bytes = stages * 2 * 64 * 128 * 2 + 2 * 8 * stages;
    const unsigned grid = (unsigned)(stages == 6 ? sms : 2 * sms);
    if (stages == 6) {
        st = attn_cuda_status(
            cudaFuncSetAttribute(kv_floor_tma_kernel<6>, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes), "floor");
        if (st) return st;
        kv_floor_tma_kernel<6><<<grid, 64, bytes, stream>>>(tk, tv, sh->B, sh->M, sh->N, sh->G, r->p->n, r->p->l_sel,
                                                            r->lists, r->sink);
    } else {
        st = attn_cuda_status(
            cudaFuncSetAttribute(kv_floor_tma_kernel<3>, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes), "floor");
        if (st) return st;
        kv_floor_tma_kernel<3><<<grid, 64, bytes, stream>>>(tk, tv, sh->B, sh->M, sh->N, sh->G, r->p->n, r->p->l_sel,
                                                            r->lists, r->sink);
    }
    return attn_cuda_launch_status("kv_floor_tma_kernel");
}

#endif
