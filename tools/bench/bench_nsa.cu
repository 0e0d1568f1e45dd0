/*
 * bench_nsa.cu - time the Native Sparse Attention branches of lessons 07-09 (solutions/) stage by stage
 * on the course's bar shape, and judge them against the bar at N = 65536.
 *
 * Measuring the bar on an H200 (from the repository root; the CSV is named like figures/bench_*_<device>.csv):
 *
 *   cmake -S . -B build && cmake --build build --target bench_nsa -j && \
 *     build/bin/bench_nsa --N 8192,16384,32768,65536 --config mean,paper --reps 10 \
 *                         --csv figures/bench_nsa_h200.csv
 *
 * Shape: B = 1, H = 64, G = 4, D = 128, bf16, causal, M = N (every position is a query), for each N of
 * --N and each NSA configuration of --config (n = 16 selected blocks and shared selection in both):
 *   mean    attn_nsa_mean_pool():      l = d = l' = 64 (what flash-linear-attention's Triton NSA computes)
 *   paper   attn_nsa_paper_defaults(): l = 32, d = 16, l' = 64
 * The stages, in pipeline order, each fed by the one before (inputs are random bf16 made on the device):
 *   compress            nsa_compress_cuda on K, then on V (lesson 07)
 *   cmp_attention       nsa_cmp_attention_cuda: q over the compressed tokens, o and lse_cmp (lesson 07)
 *   select              nsa_select_cuda: block scores from q . k_cmp and lse_cmp, top-n lists (lesson 08)
 *   selected_attention  nsa_selected_attention_cuda over the lists of `select` (lesson 09)
 *   K/V loads only      (selected_kv_floor_2 and _3 in the CSV) the selected branch's floor: the K and V
 *                       tiles lesson 09 reads on the same lists, in the same order, through a cp.async ring
 *                       of 2 or 3 (K, V) stages, with nothing computed; its GB/s is the rate at which this
 *                       access pattern streams from L2: a kernel that reads the same bytes the same way
 *                       cannot be faster
 *   K/V loads, TMA      (selected_kv_floor_tma_6 and _tma_3x2) the same tiles through the copy engine
 *                       (sm_90): 3-D tensor-map copies, a few blocks that stay resident and walk the
 *                       (position, group) pairs, one producer thread and a ring of 6 tile pairs (one
 *                       block per multiprocessor) or of 3 (two blocks): whether a deeper pipeline gets
 *                       more of L2's rate than the cp.async ring; skipped before sm_90
 *   dense               the frozen dense causal flash kernel (attn_baseline_flash_bf16), for reference;
 *                       it does not depend on the configuration, so it is timed once per N and its
 *                       row repeated in each configuration's group (--no-dense skips it)
 * and one derived row, cmp_plus_select = cmp_attention + select: the first half of the bar.
 *
 * Timing: attn_time (common/attn_gpu.h), as bench.cu does: --warmup untimed runs, then --reps runs,
 * each after an L2 flush, timed with CUDA events; the median is reported. Each stage is timed alone.
 *
 * Rates: 4 D FLOPs per visible (query head, key) pair, as everywhere in the course:
 *   cmp_attention       pairs = B H sum_t (compressed tokens visible from t), attn_nsa_cmp_visible_count
 *   select              the same pairs, 2 D FLOPs each (the kernel recomputes q . k_cmp; the top-n
 *                       ranking is not counted)
 *   selected_attention  pairs = the keys s <= t of the blocks on the lists `select` produced (copied
 *                       to the host once), times the H / G heads that share a list
 *   dense               attn_flops (the causal pairs)
 *   compress            no FLOPs worth counting: GB/s instead (K and V read, k_cmp and v_cmp written),
 *                       in the table only; its CSV tflops field is empty
 *
 * Checks (no reference: the tests compare against one): before a stage is timed, its outputs are
 * poisoned, it runs once, and every element is scanned on the device: no NaN, no Inf, no poison left
 * (never written); lse may be -inf exactly on the rows that see nothing (the compressed branch's first
 * l - 1 positions), nowhere else. The lists are checked on the host: ascending, in range, causal, block
 * 0, the block of t and the one before present, min(n, t / l' + 1) entries. A stage that fails its check
 * is reported as BROKEN and not timed, nor are the stages it feeds; the program goes on and exits 1.
 *
 * The bar (the course's, from the lesson READMEs), on an H200 at N = 65536:
 *   mean    cmp_attention + select <= 10.5 ms    selected_attention <= 10.3 ms
 *   paper   cmp_attention + select <= 21.3 ms    selected_attention <= 10.2 ms
 * Compression is not part of the first sum (the READMEs name compressed attention, scores and top-n);
 * the summary also prints the sum with compression for the record. PASS / MISS is printed for every
 * configuration measured at N = 65536; a MISS is a result, not an error (exit status 0).
 *
 * CSV (--csv FILE): device,config,stage,N,ms,tflops, one row per (N, config, stage).
 *
 * Exit status: 0 on success (whatever the bars say), 1 when a stage is broken or an operation fails,
 * 2 on a usage error, 77 when there is no usable CUDA device (nothing was measured).
 */
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn.h"
#include "attn_gpu.h"
#include "baselines.h"
#include "bench_csv.h"
#include "compressed_attention.h"
#include "harness.h"
#include "nsa.h"
#include "ptx.cuh"
#include "selected_attention.h"
#include "topn_selection.h"
#include "timing.h"
#include "oracle_nsa.h"
#include "random.h"

#define BENCH_NO_GPU 77
#define MAX_LIST 64
#define BAR_N 65536

/* The bar shape besides N: one sequence, 64 query heads in 4 kv groups, D = 128. */
enum { SHAPE_B = 1, SHAPE_H = 64, SHAPE_G = 4, SHAPE_D = 128 };

/* ---------------------------------------------------------------- configurations and the bar */

typedef struct {
    const char *name;
    attn_nsa_params (*params)(void);
    double bar_cmp_select_ms; /* cmp_attention + select at N = BAR_N */
    double bar_selected_ms;   /* selected_attention at N = BAR_N */
} nsa_config;

static const nsa_config kConfigs[] = {
    {"mean", attn_nsa_mean_pool, 10.5, 10.3},
    {"paper", attn_nsa_paper_defaults, 21.3, 10.2},
};
#define CONFIG_COUNT ((int)(sizeof kConfigs / sizeof kConfigs[0]))

/* ---------------------------------------------------------------- stages */

typedef enum {
    S_COMPRESS,
    S_CMP,
    S_SELECT,
    S_SUM,
    S_SELECTED,
    S_FLOOR2,
    S_FLOOR3,
    S_FLOOR_TMA6,
    S_FLOOR_TMA3X2,
    S_DENSE,
    STAGE_COUNT
} stage_id;

static const char *const kStageNames[STAGE_COUNT] = {
    "compress",           "cmp_attention",       "select",
    "cmp_plus_select",    "selected_attention",  "selected_kv_floor_2",
    "selected_kv_floor_3", "selected_kv_floor_tma_6", "selected_kv_floor_tma_3x2",
    "dense"};
static const char *const kStageLabels[STAGE_COUNT] = {"compress (K and V)",
                                                      "cmp_attention",
                                                      "select (scores + top-n)",
                                                      "cmp + scores + top-n",
                                                      "selected_attention",
                                                      "  K/V loads only, ring 2",
                                                      "  K/V loads only, ring 3",
                                                      "  K/V loads, TMA, ring 6",
                                                      "  K/V loads, TMA, 2 x 3",
                                                      "dense (frozen flash)"};

typedef enum { R_NONE, R_OK, R_BROKEN, R_SKIPPED } stage_state;

typedef struct {
    stage_state state;
    double ms;    /* median */
    double flops; /* 0: not counted (compress) */
    double bytes; /* compress only: bytes read + written */
} stage_result;

/* Everything the launches read and write; attn_time calls the launch functions with it. */
typedef struct {
    attn_shape sh;
    attn_nsa_params p;
    long nc;                   /* compressed tokens */
    uint16_t *q, *k, *v, *o;   /* o: the output of whichever attention stage ran last */
    uint16_t *kc, *vc;         /* compressed keys and values [B, NC, G, D] */
    float *lse_cmp, *lse;      /* lse_cmp feeds select; lse takes the other stages' */
    int32_t *lists;            /* [B, M, G, n] */
} nsa_run;

static int launch_compress(void *ctx, cudaStream_t stream)
{
    const nsa_run *r = (const nsa_run *)ctx;
    int st = nsa_compress_cuda(&r->sh, &r->p, r->k, NULL, NULL, r->kc, stream);
    if (!st) st = nsa_compress_cuda(&r->sh, &r->p, r->v, NULL, NULL, r->vc, stream);
    return st;
}

static int launch_cmp(void *ctx, cudaStream_t stream)
{
    const nsa_run *r = (const nsa_run *)ctx;
    return nsa_cmp_attention_cuda(&r->sh, &r->p, r->q, r->kc, r->vc, r->o, r->lse_cmp, stream);
}

static int launch_select(void *ctx, cudaStream_t stream)
{
    const nsa_run *r = (const nsa_run *)ctx;
    return nsa_select_cuda(&r->sh, &r->p, r->q, r->kc, r->lse_cmp, r->lists, stream);
}

static int launch_selected(void *ctx, cudaStream_t stream)
{
    const nsa_run *r = (const nsa_run *)ctx;
    return nsa_selected_attention_cuda(&r->sh, &r->p, r->q, r->k, r->v, r->lists, r->o, r->lse, stream);
}

static int launch_dense(void *ctx, cudaStream_t stream)
{
    const nsa_run *r = (const nsa_run *)ctx;
    return attn_baseline_flash_bf16(&r->sh, r->q, r->k, r->v, r->o, r->lse, stream);
}

/* ---------------------------------------------------------------- the selected branch's load floor */

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

static int launch_floor(const nsa_run *r, int stages, cudaStream_t stream)
{
    const attn_shape *sh = &r->sh;
    if (sh->D != 128 || !r->p.heads_share_selection || sh->H / sh->G > 16)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "the K/V floor runs on the bar's shape only (D = 128, shared lists)");
    const int bytes = stages * 2 * 64 * 128 * 2;
    const dim3 grid((unsigned)((long)sh->M * sh->G), (unsigned)sh->B);
    if (stages == 2) {
        int st = attn_cuda_status(
            cudaFuncSetAttribute(kv_floor_kernel<128, 2>, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes), "floor");
        if (st) return st;
        kv_floor_kernel<128, 2><<<grid, 128, bytes, stream>>>(sh->M, sh->N, sh->G, r->p.n, r->p.l_sel, r->lists, r->k,
                                                              r->v, (unsigned *)r->lse);
    } else {
        int st = attn_cuda_status(
            cudaFuncSetAttribute(kv_floor_kernel<128, 3>, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes), "floor");
        if (st) return st;
        kv_floor_kernel<128, 3><<<grid, 128, bytes, stream>>>(sh->M, sh->N, sh->G, r->p.n, r->p.l_sel, r->lists, r->k,
                                                              r->v, (unsigned *)r->lse);
    }
    return attn_cuda_launch_status("kv_floor_kernel");
}

static int launch_floor2(void *ctx, cudaStream_t stream) { return launch_floor((const nsa_run *)ctx, 2, stream); }
static int launch_floor3(void *ctx, cudaStream_t stream) { return launch_floor((const nsa_run *)ctx, 3, stream); }

/* The same floor through the copy engine (TMA, sm_90). Per tile, four 3-D tensor-map copies (K and V,
 * columns 0-63 and 64-127 of 64 tokens: 8 KB each) instead of 2048 16-byte cp.async. The blocks stay
 * resident (gridDim.x = S == 6 ? one : two per multiprocessor) and walk the (position, group) pairs in
 * the cp.async floor's order, x = blockIdx.x, + gridDim.x, ...; thread 0 issues the copies up to S tiles
 * ahead, and warp 1 waits for each tile, reads a word, and hands the stage back: so up to S tile pairs
 * (32 KB each) are in flight per block, against one per block of the cp.async floor. A copy always
 * moves the whole box, so the block holding t is read to its end (about 3% more bytes than the floor
 * counts: the GB/s printed is a little low). (A first try with one cp.async.bulk per 256-byte row, 128
 * per tile, took 34.8 ms at 64k, twice the cp.async floor; not kept.) */
/* (mbar_init, mbar_wait, tma_load_3d: common/ptx.cuh; mbar_wait traps after about 2 s, so a mistake
 * fails the stage with an error instead of hanging the bench) */
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

static int launch_floor_tma(const nsa_run *r, int stages, cudaStream_t stream)
{
    const attn_shape *sh = &r->sh;
    if (sh->D != 128 || !r->p.heads_share_selection || sh->H / sh->G > 16)
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
        kv_floor_tma_kernel<6><<<grid, 64, bytes, stream>>>(tk, tv, sh->B, sh->M, sh->N, sh->G, r->p.n, r->p.l_sel,
                                                            r->lists, (unsigned *)r->lse);
    } else {
        st = attn_cuda_status(
            cudaFuncSetAttribute(kv_floor_tma_kernel<3>, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes), "floor");
        if (st) return st;
        kv_floor_tma_kernel<3><<<grid, 64, bytes, stream>>>(tk, tv, sh->B, sh->M, sh->N, sh->G, r->p.n, r->p.l_sel,
                                                            r->lists, (unsigned *)r->lse);
    }
    return attn_cuda_launch_status("kv_floor_tma_kernel");
}

static int launch_floor_tma6(void *ctx, cudaStream_t stream) { return launch_floor_tma((const nsa_run *)ctx, 6, stream); }
static int launch_floor_tma3(void *ctx, cudaStream_t stream) { return launch_floor_tma((const nsa_run *)ctx, 3, stream); }

/* ---------------------------------------------------------------- output scans on the device */

/* What a scan counts. Poison (all bits set) is a NaN too; it is counted as poison only, so that the
 * message can tell "never written" from "computed a NaN". */
enum { C_POISON, C_NAN, C_POS_INF, C_NEG_INF, C_COUNT };

/* The class of one element: C_POISON .. C_NEG_INF, or -1 for a finite number. Host and device, so that
 * the rule can be tried without a GPU. */
static __host__ __device__ inline int classify_bf16(uint16_t b)
{
    if (b == 0xFFFFu) return C_POISON;
    if ((b & 0x7F80u) != 0x7F80u) return -1; /* exponent not all ones: finite */
    if (b & 0x007Fu) return C_NAN;
    return (b & 0x8000u) ? C_NEG_INF : C_POS_INF;
}

static __host__ __device__ inline int classify_f32(unsigned int b)
{
    if (b == 0xFFFFFFFFu) return C_POISON;
    if ((b & 0x7F800000u) != 0x7F800000u) return -1;
    if (b & 0x007FFFFFu) return C_NAN;
    return (b & 0x80000000u) ? C_NEG_INF : C_POS_INF;
}

/* A grid-stride scan; each thread adds its counts once, and only the nonzero ones, so that a healthy
 * buffer (all counts 0) costs no atomics at all. */
static __global__ void scan_bf16_kernel(const uint16_t *x, size_t n, unsigned long long *counts)
{
    unsigned long long c[C_COUNT] = {0, 0, 0, 0};
    for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        const int k = classify_bf16(x[e]);
        if (k >= 0) ++c[k];
    }
    for (int i = 0; i < C_COUNT; ++i)
        if (c[i]) atomicAdd(&counts[i], c[i]);
}

static __global__ void scan_f32_kernel(const float *x, size_t n, unsigned long long *counts)
{
    unsigned long long c[C_COUNT] = {0, 0, 0, 0};
    for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        const int k = classify_f32(__float_as_uint(x[e]));
        if (k >= 0) ++c[k];
    }
    for (int i = 0; i < C_COUNT; ++i)
        if (c[i]) atomicAdd(&counts[i], c[i]);
}

/* Scan n elements (bf16 when is_bf16, else fp32) on the legacy stream; counts[C_COUNT] on the host. */
static int scan_device(const void *x, size_t n, int is_bf16, unsigned long long *counts)
{
    unsigned long long *dcounts = NULL;
    int st = attn_dalloc((void **)&dcounts, C_COUNT * sizeof(unsigned long long));
    if (!st) st = attn_cuda_status(cudaMemset(dcounts, 0, C_COUNT * sizeof(unsigned long long)), "cudaMemset");
    if (!st) {
        const unsigned int blocks = 4096; /* enough to fill any GPU; the grid-stride loop does the rest */
        if (is_bf16) scan_bf16_kernel<<<blocks, 256>>>((const uint16_t *)x, n, dcounts);
        else scan_f32_kernel<<<blocks, 256>>>((const float *)x, n, dcounts);
        st = attn_cuda_launch_status("scan kernel");
    }
    if (!st) st = attn_d2h(counts, dcounts, C_COUNT * sizeof(unsigned long long));
    attn_dfree(dcounts);
    return st;
}

/* Scan a stage's output. Returns a CUDA error status, or ATTN_OK with *bad set and msg filled when the
 * output holds poison, NaN, +Inf, or a number of -Inf other than neg_inf_expected (bf16 outputs: 0). */
static int check_output(const char *what, const void *x, size_t n, int is_bf16, unsigned long long neg_inf_expected,
                        int *bad, char *msg, size_t msg_len)
{
    unsigned long long c[C_COUNT];
    int st = scan_device(x, n, is_bf16, c);
    if (st) return st;
    if (c[C_POISON] || c[C_NAN] || c[C_POS_INF] || c[C_NEG_INF] != neg_inf_expected) {
        *bad = 1;
        snprintf(msg, msg_len, "%s: of %zu elements %llu never written (poison), %llu NaN, %llu +Inf, %llu -Inf "
                               "(%llu expected)",
                 what, n, c[C_POISON], c[C_NAN], c[C_POS_INF], c[C_NEG_INF], neg_inf_expected);
    }
    return ATTN_OK;
}

/* ---------------------------------------------------------------- the lists, on the host */

/* Check every list [B, M, G, n] by the rules of common/nsa.h that need no scores: ascending, causal
 * (j * l' <= t), block 0, the block of t and the one before present, exactly min(n, t / l' + 1)
 * entries (fewer candidates than n: all of them), then -1. A list the kernel never wrote is all -1
 * (the poison as int32) and fails the count. Returns 0, or 1 with the first bad list in msg. */
static int check_lists(const nsa_run *r, const int32_t *lists, char *msg, size_t msg_len)
{
    const attn_shape *sh = &r->sh;
    const int n = r->p.n, L = attn_nsa_list_heads(sh, &r->p);
    for (size_t row = 0; row < (size_t)sh->B * sh->M * L; ++row) {
        const int32_t *list = lists + row * n;
        const long i = (long)((row / L) % sh->M), t = attn_query_pos(sh, (int)i);
        const long cur = t / r->p.l_sel, want = cur + 1 < n ? cur + 1 : n;
        long count = 0, prev = -1;
        int has0 = 0, has_cur = 0, has_prev = cur == 0;
        const char *why = NULL;
        for (int e = 0; e < n && !why; ++e) {
            const long j = list[e];
            if (j < 0) {
                if (j != -1) why = "a negative entry other than -1";
                continue;
            }
            if (count != e) why = "an entry after a -1";
            else if (j <= prev) why = "entries not strictly ascending";
            else if (j > cur) why = "a block that starts after t";
            prev = j;
            ++count;
            has0 |= j == 0;
            has_cur |= j == cur;
            has_prev |= j == cur - 1;
        }
        if (!why && count != want) why = "a wrong number of entries";
        if (!why && !(has0 && has_cur && has_prev)) why = "a forced block (0, t / l', t / l' - 1) missing";
        if (why) {
            char entries[16 * 12] = "";
            for (int e = 0; e < n; ++e)
                snprintf(entries + strlen(entries), sizeof entries - strlen(entries), "%s%d", e ? " " : "",
                         (int)list[e]);
            snprintf(msg, msg_len, "block list of (b=%ld, i=%ld, list %ld), t=%ld: %s (want %ld entries); it holds "
                                   "[%s]",
                     (long)(row / L / sh->M), i, (long)(row % L), t, why, want, entries);
            return 1;
        }
    }
    return 0;
}

/* Visible (query head, key) pairs of the lists: the keys s <= t of each listed block, times the heads
 * that read the list. What selected_attention is credited with. */
static double list_pairs(const nsa_run *r, const int32_t *lists)
{
    const attn_shape *sh = &r->sh;
    const int n = r->p.n, L = attn_nsa_list_heads(sh, &r->p);
    const int per_list = r->p.heads_share_selection ? sh->H / sh->G : 1;
    double pairs = 0.0;
    for (size_t row = 0; row < (size_t)sh->B * sh->M * L; ++row) {
        const long t = attn_query_pos(sh, (int)((row / L) % sh->M));
        for (int e = 0; e < n && lists[row * n + e] >= 0; ++e) {
            const long first = (long)lists[row * n + e] * r->p.l_sel;
            long last = first + r->p.l_sel - 1;
            if (last > t) last = t;
            if (last > (long)sh->N - 1) last = (long)sh->N - 1;
            if (last >= first) pairs += (double)(last - first + 1) * per_list;
        }
    }
    return pairs;
}

/* Visible (query head, compressed token) pairs, summed over B and H. */
static double cmp_pairs(const nsa_run *r)
{
    double pairs = 0.0;
    for (int i = 0; i < r->sh.M; ++i)
        pairs += (double)attn_nsa_cmp_visible_count(attn_query_pos(&r->sh, i), r->nc, &r->p);
    return pairs * r->sh.B * r->sh.H;
}

/* Rows (b, h, i) that see no compressed token: where lse_cmp is -inf by definition. */
static unsigned long long cmp_empty_rows(const nsa_run *r)
{
    unsigned long long rows = 0;
    for (int i = 0; i < r->sh.M; ++i) rows += attn_nsa_cmp_visible_count(attn_query_pos(&r->sh, i), r->nc, &r->p) == 0;
    return rows * (unsigned long long)r->sh.B * r->sh.H;
}

/* ---------------------------------------------------------------- options */

typedef struct {
    int n;
    int v[MAX_LIST];
} int_list;

typedef struct {
    int_list N;
    int n_configs;
    int configs[CONFIG_COUNT];
    int warmup, reps;
    int dense;
    const char *csv_path;
    uint64_t seed;
    int local; /* --local-queries */
} options;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench_nsa [options]\n"
            "Time the NSA stages of lessons 07-09 (solutions/) at B=%d, H=%d, G=%d, D=%d, bf16, causal, M = N;\n"
            "check each output once for NaN/poison first; judge the course's bar at N = %d.\n"
            "  --N LIST       sequence lengths (default 8192,16384,32768,65536)\n"
            "  --config LIST  mean (l = d = l' = 64) and/or paper (l = 32, d = 16, l' = 64); n = 16\n"
            "                 (default mean,paper)\n"
            "  --warmup K     untimed runs before timing each stage (default 3)\n"
            "  --reps K       timed runs, each after an L2 flush; the median is reported (default 10)\n"
            "  --no-dense     skip the frozen dense causal flash kernel (the reference row)\n"
            "  --csv FILE     write device,config,stage,N,ms,tflops, one row per (N, config, stage)\n"
            "  --seed S       seed of the random inputs (default 1)\n"
            "  --local-queries  the queries of each window of 64 positions share most of their direction\n"
            "                 (q = a + z / 4, a per window and head, z per row), so neighbouring positions\n"
            "                 choose mostly the same blocks, as a trained model's do; the configurations are\n"
            "                 then named mean-local and paper-local. The bar is defined on plain random inputs\n"
            "LIST is comma-separated, e.g. --N 16384,65536.\n"
            "Exit status: 0 ok (bars met or not), 1 a stage is broken or an operation failed, 2 usage error,\n"
            "77 no usable CUDA device.\n",
            SHAPE_B, SHAPE_H, SHAPE_G, SHAPE_D, BAR_N);
}

static int parse_n_list(const char *text, int_list *out)
{
    out->n = 0;
    const char *p = text;
    while (*p) {
        if (out->n == MAX_LIST) {
            fprintf(stderr, "bench_nsa: --N: at most %d values\n", MAX_LIST);
            return 0;
        }
        char *end = NULL;
        const long value = strtol(p, &end, 10);
        /* 2^24 keeps every count of the kernels' launchers well inside their limits */
        if (end == p || (*end != ',' && *end != '\0') || value < 1 || value > (1L << 24)) {
            fprintf(stderr, "bench_nsa: --N: bad value in \"%s\" (integers 1 .. 16777216, comma-separated)\n", text);
            return 0;
        }
        out->v[out->n++] = (int)value;
        p = *end == ',' ? end + 1 : end;
    }
    if (out->n == 0) {
        fprintf(stderr, "bench_nsa: --N: empty list\n");
        return 0;
    }
    return 1;
}

static int parse_configs(const char *text, options *o)
{
    o->n_configs = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", text);
    for (char *name = strtok(buf, ","); name; name = strtok(NULL, ",")) {
        int found = -1;
        for (int c = 0; c < CONFIG_COUNT; ++c)
            if (strcmp(name, kConfigs[c].name) == 0) found = c;
        if (found < 0) {
            fprintf(stderr, "bench_nsa: --config: unknown configuration \"%s\" (mean, paper)\n", name);
            return 0;
        }
        int dup = 0;
        for (int i = 0; i < o->n_configs; ++i) dup |= o->configs[i] == found;
        if (!dup) o->configs[o->n_configs++] = found;
    }
    if (o->n_configs == 0) {
        fprintf(stderr, "bench_nsa: --config: empty list\n");
        return 0;
    }
    return 1;
}

/* Returns 1 to run, 0 after --help, -1 on a usage error (already printed). */
static int parse_args(int argc, char **argv, options *o)
{
    memset(o, 0, sizeof *o);
    parse_n_list("8192,16384,32768,65536", &o->N);
    parse_configs("mean,paper", o);
    o->warmup = 3;
    o->reps = 10;
    o->dense = 1;
    o->seed = 1;
    for (int i = 1; i < argc; ++i) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--no-dense") == 0) {
            o->dense = 0;
            continue;
        }
        if (strcmp(a, "--local-queries") == 0) {
            o->local = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "bench_nsa: %s needs a value (see --help)\n", a);
            return -1;
        }
        const char *val = argv[++i];
        int ok = 1;
        if (strcmp(a, "--N") == 0) ok = parse_n_list(val, &o->N);
        else if (strcmp(a, "--config") == 0) ok = parse_configs(val, o);
        else if (strcmp(a, "--warmup") == 0 || strcmp(a, "--reps") == 0) {
            char *end = NULL;
            const long k = strtol(val, &end, 10);
            const int is_reps = a[2] == 'r';
            ok = end != val && *end == '\0' && k >= (is_reps ? 1 : 0) && k <= 100000;
            if (ok) *(is_reps ? &o->reps : &o->warmup) = (int)k;
            else fprintf(stderr, "bench_nsa: %s: bad value \"%s\"\n", a, val);
        } else if (strcmp(a, "--csv") == 0) o->csv_path = val;
        else if (strcmp(a, "--seed") == 0) {
            char *end = NULL;
            o->seed = strtoull(val, &end, 0);
            ok = end != val && *end == '\0';
            if (!ok) fprintf(stderr, "bench_nsa: --seed: bad value \"%s\"\n", val);
        } else {
            fprintf(stderr, "bench_nsa: unknown option %s (see --help)\n", a);
            ok = 0;
        }
        if (!ok) return -1;
    }
    return 1;
}

/* ---------------------------------------------------------------- reporting */

static void print_row(const char *config, int N, stage_id s, const stage_result *r, const char *device, FILE *csv)
{
    if (r->state == R_NONE) return;
    if (r->state != R_OK) {
        printf("%-11s %6d  %-24s %10s\n", config, N, kStageLabels[s], r->state == R_BROKEN ? "BROKEN" : "not timed");
        fflush(stdout);
        return;
    }
    const double sec = r->ms * 1e-3;
    char tflops[32] = "-", gbs[32] = "-";
    if (r->flops > 0.0) snprintf(tflops, sizeof tflops, "%.2f", r->flops / sec / 1e12);
    if (r->bytes > 0.0) snprintf(gbs, sizeof gbs, "%.1f", r->bytes / sec / 1e9);
    printf("%-11s %6d  %-24s %10.4f %9s %9s\n", config, N, kStageLabels[s], r->ms, tflops, gbs);
    fflush(stdout);
    if (csv) {
        csv_text(csv, device);
        fprintf(csv, ",%s,%s,%d,%.6g,", config, kStageNames[s], N, r->ms);
        if (r->flops > 0.0) fprintf(csv, "%.4f", r->flops / sec / 1e12);
        fputc('\n', csv);
        fflush(csv); /* a run cut short keeps every row measured so far */
    }
}

/* What the summary needs of one configuration at N = BAR_N. */
typedef struct {
    int measured;
    stage_result res[STAGE_COUNT];
} bar_record;

static void print_bar_line(const char *config, const char *what, const stage_result *r, double bar)
{
    if (r->state != R_OK) {
        printf("  %-11s %-34s %7s      bar %5.1f ms  %s\n", config, what, "-", bar,
               r->state == R_BROKEN ? "BROKEN" : "NOT MEASURED");
        return;
    }
    printf("  %-11s %-34s %7.3f ms   bar %5.1f ms  %s\n", config, what, r->ms, bar, r->ms <= bar ? "PASS" : "MISS");
}

/* The name a configuration is printed under: mean, paper, or mean-local, paper-local. */
static const char *config_name(const options *o, int c)
{
    static char names[CONFIG_COUNT][32];
    snprintf(names[c], sizeof names[c], "%s%s", kConfigs[c].name, o->local ? "-local" : "");
    return names[c];
}

static void print_bars(const options *o, const bar_record *bars)
{
    printf("\nThe course's bar at N = %d (B=%d H=%d G=%d D=%d, bf16, causal; set on an H200):\n", BAR_N, SHAPE_B,
           SHAPE_H, SHAPE_G, SHAPE_D);
    if (o->local)
        printf("  (--local-queries: lists with locality; the bar itself is defined on plain random inputs)\n");
    int any = 0;
    for (int ic = 0; ic < o->n_configs; ++ic) {
        const int c = o->configs[ic];
        const bar_record *b = &bars[c];
        if (!b->measured) continue;
        any = 1;
        print_bar_line(config_name(o, c), "cmp_attention + select", &b->res[S_SUM], kConfigs[c].bar_cmp_select_ms);
        print_bar_line(config_name(o, c), "selected_attention", &b->res[S_SELECTED], kConfigs[c].bar_selected_ms);
        /* For the record: the sum with the compression of K and V, which the bar leaves out. */
        if (b->res[S_SUM].state == R_OK && b->res[S_COMPRESS].state == R_OK) {
            const double with = b->res[S_SUM].ms + b->res[S_COMPRESS].ms;
            printf("  %-11s %-34s %7.3f ms   bar %5.1f ms  %s (compression is not part of the bar)\n",
                   config_name(o, c), "compress + cmp_attention + select", with, kConfigs[c].bar_cmp_select_ms,
                   with <= kConfigs[c].bar_cmp_select_ms ? "within" : "over");
        }
    }
    if (!any) printf("  not measured: add %d to --N\n", BAR_N);
    fflush(stdout);
}

/* ---------------------------------------------------------------- one stage */

/* Report a stage that failed to run or failed its check. */
static void report_broken(const char *config, int N, stage_id s, const char *why)
{
    fprintf(stderr, "bench_nsa: %s N=%d %s: BROKEN, not timed: %s\n", config, N, kStageNames[s], why);
}

/* The launch of a stage, run once on the legacy stream (outputs poisoned before by the caller) and
 * synchronised, so that its outputs can be checked. A launcher that refuses (a bad argument, or a
 * launch error that leaves the device usable, such as too much shared memory at this N) breaks the
 * stage only: *broken = 1, the detail in why, ATTN_OK. A sticky CUDA error (an illegal address, say)
 * leaves the context unusable: that status is returned and the program stops. */
static int run_once(attn_launch_fn fn, nsa_run *r, int *broken, char *why, size_t why_len)
{
    attn_clear_error();
    int st = fn(r, 0);
    if (!st) st = attn_dsync();
    if (!st) return ATTN_OK;
    snprintf(why, why_len, "%s: %s", attn_strerror(st), attn_error_detail());
    if (st == ATTN_ERR_CUDA) {
        cudaGetLastError(); /* clears a launch error that is not sticky; a sticky one comes back below */
        if (cudaDeviceSynchronize() != cudaSuccess || cudaGetLastError() != cudaSuccess) return st;
    } else if (st == ATTN_ERR_OUT_OF_MEMORY) {
        return st;
    }
    *broken = 1;
    return ATTN_OK;
}

/* ---------------------------------------------------------------- one N */

/* Run, check and time the dense reference on r's buffers (its o and lse). */
static int bench_dense(const options *o, nsa_run *r, stage_result *res, int *failures)
{
    const size_t nq = attn_q_elems(&r->sh), nl = attn_lse_elems(&r->sh);
    char why[512] = "";
    int broken = 0;
    int st = attn_dpoison(r->o, nq * 2);
    if (!st) st = attn_dpoison(r->lse, nl * 4);
    if (!st) st = run_once(launch_dense, r, &broken, why, sizeof why);
    if (!st && !broken) st = check_output("o", r->o, nq, 1, 0, &broken, why, sizeof why);
    if (!st && !broken) st = check_output("lse", r->lse, nl, 0, 0, &broken, why, sizeof why);
    if (st) {
        fprintf(stderr, "bench_nsa: N=%d: stopped in stage dense\n", r->sh.N);
        return st;
    }
    if (broken) {
        report_broken("dense", r->sh.N, S_DENSE, why);
        res->state = R_BROKEN;
        ++*failures;
        return ATTN_OK;
    }
    attn_timing t;
    st = attn_time(launch_dense, r, o->warmup, o->reps, &t);
    if (st) return st;
    res->state = R_OK;
    res->ms = t.median_ms;
    res->flops = attn_flops(&r->sh);
    return ATTN_OK;
}

/* The four NSA stages of one configuration on r's inputs (q, k, v filled, o, lse, lse_cmp allocated):
 * allocates the compressed tensors and the lists, then for each stage in order: poison its outputs,
 * run it once, check, time. A broken stage leaves the ones it feeds R_SKIPPED. */
static int bench_config(const options *o, const nsa_config *cfg, nsa_run *r, stage_result *res, int *failures)
{
    const attn_shape *sh = &r->sh;
    const int N = sh->N;
    r->p = cfg->params();
    r->nc = attn_nsa_num_cmp(N, &r->p);
    const size_t nq = attn_q_elems(sh), nl = attn_lse_elems(sh);
    const size_t ncmp = (size_t)r->nc * sh->B * sh->G * sh->D;
    const size_t nlist = (size_t)sh->B * sh->M * attn_nsa_list_heads(sh, &r->p) * r->p.n;
    int32_t *host_lists = (int32_t *)malloc(nlist * sizeof(int32_t));
    int32_t *host_lists2 = (int32_t *)malloc(nlist * sizeof(int32_t));
    int st = host_lists && host_lists2 ? ATTN_OK : attn_fail(ATTN_ERR_OUT_OF_MEMORY, "host memory for the lists");
    /* NC = 0 (N < l) is legal for the kernels but leaves nothing to compress: allocate one element */
    if (!st) st = attn_dalloc((void **)&r->kc, (ncmp ? ncmp : 1) * 2);
    if (!st) st = attn_dalloc((void **)&r->vc, (ncmp ? ncmp : 1) * 2);
    if (!st) st = attn_dalloc((void **)&r->lists, nlist * sizeof(int32_t));

    static const stage_id order[4] = {S_COMPRESS, S_CMP, S_SELECT, S_SELECTED};
    static const attn_launch_fn launches[4] = {launch_compress, launch_cmp, launch_select, launch_selected};
    int upstream_broken = 0;
    stage_id at = S_COMPRESS; /* the stage running when a fatal error stops the loop */
    for (int k = 0; k < 4 && !st; ++k) {
        const stage_id s = order[k];
        at = s;
        if (upstream_broken) {
            res[s].state = R_SKIPPED;
            continue;
        }
        char why[1024] = "";
        int broken = 0;
        /* poison what the stage writes: anything it leaves unwritten shows up in the check */
        switch (s) {
        case S_COMPRESS:
            st = attn_dpoison(r->kc, ncmp * 2);
            if (!st) st = attn_dpoison(r->vc, ncmp * 2);
            break;
        case S_CMP:
        case S_SELECTED:
            st = attn_dpoison(r->o, nq * 2);
            if (!st) st = attn_dpoison(s == S_CMP ? r->lse_cmp : r->lse, nl * 4);
            break;
        default:
            st = attn_dpoison(r->lists, nlist * sizeof(int32_t));
            break;
        }
        if (!st) st = run_once(launches[k], r, &broken, why, sizeof why);
        if (!st && !broken) {
            switch (s) {
            case S_COMPRESS:
                st = check_output("k_cmp", r->kc, ncmp, 1, 0, &broken, why, sizeof why);
                if (!st && !broken) st = check_output("v_cmp", r->vc, ncmp, 1, 0, &broken, why, sizeof why);
                break;
            case S_CMP:
                st = check_output("o", r->o, nq, 1, 0, &broken, why, sizeof why);
                if (!st && !broken)
                    st = check_output("lse_cmp", r->lse_cmp, nl, 0, cmp_empty_rows(r), &broken, why, sizeof why);
                break;
            case S_SELECT:
                st = attn_d2h(host_lists, r->lists, nlist * sizeof(int32_t));
                if (!st) broken = check_lists(r, host_lists, why, sizeof why);
                break;
            default:
                st = check_output("o", r->o, nq, 1, 0, &broken, why, sizeof why);
                if (!st && !broken) st = check_output("lse", r->lse, nl, 0, 0, &broken, why, sizeof why);
                break;
            }
        }
        if (st) break;
        if (broken) {
            report_broken(cfg->name, N, s, why);
            res[s].state = R_BROKEN;
            upstream_broken = 1;
            ++*failures;
            continue;
        }
        attn_timing t;
        st = attn_time(launches[k], r, o->warmup, o->reps, &t);
        if (st) break;
        res[s].state = R_OK;
        res[s].ms = t.median_ms;
        switch (s) {
        case S_COMPRESS:
            res[s].bytes = 2.0 * (double)(attn_kv_elems(sh) + ncmp) * 2; /* K and V read, k_cmp and v_cmp written */
            break;
        case S_CMP:
            res[s].flops = 4.0 * sh->D * cmp_pairs(r);
            break;
        case S_SELECT:
            res[s].flops = 2.0 * sh->D * cmp_pairs(r);
            /* the timed runs rewrote the lists: selected attention reads those, so count their pairs */
            st = attn_d2h(host_lists2, r->lists, nlist * sizeof(int32_t));
            if (!st && memcmp(host_lists, host_lists2, nlist * sizeof(int32_t)) != 0)
                fprintf(stderr, "note: %s N=%d: the lists of the timed select runs differ from the first run's "
                                "(a non-deterministic kernel?); selected_attention is credited with the last\n",
                        cfg->name, N);
            break;
        default:
            res[s].flops = 4.0 * sh->D * list_pairs(r, host_lists2);
            break;
        }
    }
    /* the load floor of the selected branch on the same lists (a measurement aid, not part of the bar) */
    static const stage_id floors[4] = {S_FLOOR2, S_FLOOR3, S_FLOOR_TMA6, S_FLOOR_TMA3X2};
    static int (*const floor_launch[4])(void *, cudaStream_t) = {launch_floor2, launch_floor3, launch_floor_tma6,
                                                                  launch_floor_tma3};
    for (int k = 0; k < 4 && !st && res[S_SELECTED].state == R_OK && res[S_SELECT].state == R_OK; ++k) {
        const stage_id s = floors[k];
        attn_timing t;
        st = attn_time(floor_launch[k], r, o->warmup, o->reps, &t);
        if (st) {
            fprintf(stderr, "bench_nsa: %s N=%d: the K/V floor %s did not run; going on\n", cfg->name, N,
                    kStageNames[s]);
            st = ATTN_OK;
            if (cudaGetLastError() != cudaSuccess || cudaDeviceSynchronize() != cudaSuccess) {
                fprintf(stderr, "bench_nsa: the CUDA context is broken after %s; stopping\n", kStageNames[s]);
                st = ATTN_ERR_CUDA;
            }
            continue;
        }
        res[s].state = R_OK;
        res[s].ms = t.median_ms;
        /* the bytes lesson 09 reads: K and V rows of the visible keys of the listed blocks, per (position,
         * group); list_pairs counts them once per query head of the group */
        res[s].bytes = list_pairs(r, host_lists2) / (sh->H / sh->G) * 2.0 * sh->D * 2.0;
    }
    if (st) fprintf(stderr, "bench_nsa: %s N=%d: stopped in stage %s\n", cfg->name, N, kStageNames[at]);
    if (!st) {
        res[S_SUM].state = res[S_CMP].state == R_OK && res[S_SELECT].state == R_OK ? R_OK
                           : res[S_CMP].state == R_BROKEN || res[S_SELECT].state == R_BROKEN ? R_BROKEN
                                                                                             : R_SKIPPED;
        if (res[S_SUM].state == R_OK) {
            res[S_SUM].ms = res[S_CMP].ms + res[S_SELECT].ms;
            res[S_SUM].flops = res[S_CMP].flops + res[S_SELECT].flops;
        }
    }
    attn_dfree(r->kc);
    attn_dfree(r->vc);
    attn_dfree(r->lists);
    r->kc = r->vc = NULL;
    r->lists = NULL;
    free(host_lists);
    free(host_lists2);
    return st;
}

/* --local-queries: out[row] = a + z / 4, with z = q[row] and a = q of the first position of the row's
 * window of 64 positions (the same head): q [B, M, H, D] is read, out is written. */
__global__ void local_queries_kernel(const uint16_t *q, uint16_t *out, long elems, int M, int H, int D)
{
    for (long e = blockIdx.x * (long)blockDim.x + threadIdx.x; e < elems; e += (long)gridDim.x * blockDim.x) {
        const long hd = (long)H * D, pos_row = e / hd; /* b M + i */
        const long i = pos_row % M, anchor = (pos_row - i + (i / 64) * 64) * hd + e % hd;
        const float z = __bfloat162float(__ushort_as_bfloat16(q[e]));
        const float a = __bfloat162float(__ushort_as_bfloat16(q[anchor]));
        out[e] = __bfloat16_as_ushort(__float2bfloat16(a + 0.25f * z));
    }
}

/* One N: the inputs, the dense reference, then each configuration; prints each configuration's group. */
static int bench_n(const options *o, int N, const char *device, FILE *csv, bar_record *bars, int *failures)
{
    nsa_run r;
    memset(&r, 0, sizeof r);
    r.sh = attn_make_shape(SHAPE_B, N, N, SHAPE_H, SHAPE_G, SHAPE_D, 1);
    const size_t nq = attn_q_elems(&r.sh), nkv = attn_kv_elems(&r.sh), nl = attn_lse_elems(&r.sh);

    /* Room for q, o, k, v, two lse, and the largest configuration's compressed tensors (NC <= N / 16 at
     * d = 16) and lists (n = 16); a shape that does not fit is skipped with a note, as bench.cu does. */
    size_t free_b = 0, total_b = 0;
    int st = attn_cuda_status(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
    if (st) return st;
    const double need = (2.0 * nq + 2.0 * nkv + 2.0 * nkv / 16) * 2 + 2.0 * nl * 4 + (double)N * SHAPE_G * 16 * 4;
    if (need > 0.9 * (double)free_b) {
        fprintf(stderr, "note: N=%d skipped: %.1f GiB of buffers do not fit in %.1f GiB of free device memory\n", N,
                need / 1073741824.0, free_b / 1073741824.0);
        return ATTN_OK;
    }

    st = attn_dalloc((void **)&r.q, nq * 2);
    if (!st) st = attn_dalloc((void **)&r.k, nkv * 2);
    if (!st) st = attn_dalloc((void **)&r.v, nkv * 2);
    if (!st) st = attn_dalloc((void **)&r.o, nq * 2);
    if (!st) st = attn_dalloc((void **)&r.lse, nl * 4);
    if (!st) st = attn_dalloc((void **)&r.lse_cmp, nl * 4);
    /* different data per N and per tensor; rows of D values, each with its own scale (harness.h) */
    const uint64_t seed = o->seed * 1000003ull + (uint64_t)N;
    if (!st) st = attn_dfill_random_bf16(r.q, nq, SHAPE_D, 1.0f, seed, 0);
    if (!st) st = attn_dfill_random_bf16(r.k, nkv, SHAPE_D, 1.0f, seed + 1, 0);
    if (!st) st = attn_dfill_random_bf16(r.v, nkv, SHAPE_D, 1.0f, seed + 2, 0);
    if (!st && o->local) { /* mixed into o, then copied back: every row reads its window's first row as it was */
        local_queries_kernel<<<4 * 132, 256>>>(r.q, r.o, (long)nq, r.sh.M, SHAPE_H, SHAPE_D);
        st = attn_cuda_launch_status("local_queries_kernel");
        if (!st) st = attn_cuda_status(cudaMemcpy(r.q, r.o, nq * 2, cudaMemcpyDeviceToDevice), "local queries");
    }
    /* attn_time runs on a stream of its own that does not wait for the legacy stream: finish the fills */
    if (!st) st = attn_dsync();

    stage_result dense;
    memset(&dense, 0, sizeof dense);
    if (!st && o->dense) {
        r.p = kConfigs[0].params(); /* not read by the dense kernel; keeps r complete */
        st = bench_dense(o, &r, &dense, failures);
    }
    for (int ic = 0; ic < o->n_configs && !st; ++ic) {
        const int c = o->configs[ic];
        stage_result res[STAGE_COUNT];
        memset(res, 0, sizeof res);
        st = bench_config(o, &kConfigs[c], &r, res, failures);
        if (st) break;
        res[S_DENSE] = dense;
        static const stage_id shown[STAGE_COUNT] = {S_COMPRESS, S_CMP,    S_SELECT,     S_SUM,          S_SELECTED,
                                                    S_FLOOR2,   S_FLOOR3, S_FLOOR_TMA6, S_FLOOR_TMA3X2, S_DENSE};
        for (int k = 0; k < STAGE_COUNT; ++k) print_row(config_name(o, c), N, shown[k], &res[shown[k]], device, csv);
        if (N == BAR_N) {
            bars[c].measured = 1;
            memcpy(bars[c].res, res, sizeof res);
        }
    }
    attn_dfree(r.q);
    attn_dfree(r.k);
    attn_dfree(r.v);
    attn_dfree(r.o);
    attn_dfree(r.lse);
    attn_dfree(r.lse_cmp);
    return st;
}

int main(int argc, char **argv)
{
    options opt;
    const int parsed = parse_args(argc, argv, &opt);
    if (parsed <= 0) return parsed == 0 ? 0 : 2;

    char why[256];
    if (!attn_gpu_available(why, sizeof why)) {
        fprintf(stderr, "bench_nsa: %s\n", why);
        fprintf(stderr, "bench_nsa: nothing measured: the NSA benchmark needs a CUDA GPU (exit %d)\n", BENCH_NO_GPU);
        return BENCH_NO_GPU;
    }
    char device[256];
    attn_gpu_describe(device, sizeof device);
    printf("device: %s\n", device);
    printf("shape: B=%d H=%d G=%d D=%d, bf16, causal, M = N; n = 16, shared selection; median of %d runs after "
           "%d warm-up, L2 flushed before each\n",
           SHAPE_B, SHAPE_H, SHAPE_G, SHAPE_D, opt.reps, opt.warmup);
    for (int ic = 0; ic < opt.n_configs; ++ic) {
        const attn_nsa_params p = kConfigs[opt.configs[ic]].params();
        printf("config %-6s l=%d d=%d l'=%d n=%d\n", kConfigs[opt.configs[ic]].name, p.l, p.d, p.l_sel, p.n);
    }
    fflush(stdout);

    FILE *csv = NULL;
    if (opt.csv_path) {
        csv = fopen(opt.csv_path, "w");
        if (!csv) {
            fprintf(stderr, "bench_nsa: cannot write %s\n", opt.csv_path);
            return 1;
        }
        fprintf(csv, "device,config,stage,N,ms,tflops\n");
    }

    printf("\n%-11s %6s  %-24s %10s %9s %9s\n", "config", "N", "stage", "ms", "TFLOP/s", "GB/s");
    bar_record bars[CONFIG_COUNT];
    memset(bars, 0, sizeof bars);
    int st = ATTN_OK, failures = 0;
    attn_clear_error();
    for (int in = 0; in < opt.N.n && !st; ++in) st = bench_n(&opt, opt.N.v[in], device, csv, bars, &failures);
    if (!st) print_bars(&opt, bars);
    if (st) fprintf(stderr, "bench_nsa: %s: %s\n", attn_strerror(st), attn_error_detail());
    if (csv && fclose(csv) != 0 && !st) {
        fprintf(stderr, "bench_nsa: error writing %s\n", opt.csv_path);
        st = 1;
    }
    if (!st && opt.csv_path) fprintf(stderr, "wrote %s\n", opt.csv_path);
    if (!st && failures) fprintf(stderr, "bench_nsa: %d stage(s) broken (see above): not timed\n", failures);
    return st || failures ? 1 : 0;
}
