/*
 * bench.cu - time the course's attention kernels over a sweep of shapes; print a table, write CSV.
 *
 * For every combination of the listed sizes (the cartesian product of the lists) and every chosen
 * kernel, the program fills q, k and v with random data, times the kernel with attn_time (warm-up
 * runs, then an L2 flush before each timed run, the median of the timed runs) and reports the time,
 * TFLOP/s and GB/s, and both rates as fractions of the device's measured peaks:
 *   - memory bandwidth: a large device-to-device copy, counting bytes read + bytes written;
 *   - bf16 tensor throughput: an 8192 x 8192 x 8192 cuBLAS GEMM, bf16 in and out, fp32 accumulation.
 * It times; it does not check results (./course grade does).
 *
 * Kernels of the lessons (from the tree the program is linked against: solutions/ for build/bin/bench)
 *   naive_cuda_f32  lesson 01: naive_attention_cuda, fp32, the N x N scores in memory
 *   online_f32      lesson 02: fused attention with the online softmax, fp32, D = 64 or 128
 *   flash_bf16      lesson 03: flash attention on tensor cores, bf16, D = 64 or 128
 *   gqa_bf16        lesson 04: the query heads of a kv group share each K/V tile, bf16
 *   window_bf16     lesson 05: sliding-window attention (--window W, causal only), bf16; _w<W> suffix
 *   mask_bf16       lesson 06: token keep-mask kernel, hard mask keeping --keep percent of the keys
 *                   (uniform random retention, threshold 1 - keep/100); the name gets a _k<keep> suffix
 *   blocks_bf16     lesson 06: block-sparse kernel, every (query block, kv head) listing --keep percent
 *                   of the key blocks it may see (random, at least one); _k<keep> suffix
 * Frozen baselines (common/grading/baselines.h; in every build of this program)
 *   naive_f32              lesson 01's frozen naive kernel: fp32, the N x N scores in memory
 *   frozen_online_f32      lesson 02's frozen fused kernel, fp32, D = 64 or 128
 *   frozen_flash_bf16      lesson 03's frozen flash kernel, bf16 (G < H allowed), D = 64 or 128
 *   frozen_repeat_kv_bf16  lesson 04's baseline: K and V repeated to H heads, then the frozen flash kernel
 *
 * Which lessons are built in: the macros BENCH_L01 .. BENCH_L06 (tools/bench/CMakeLists.txt). The
 * learner's functions and the solutions' have the same names, so one program holds one tree; the
 * course builds build/bin/bench (every solution) and, on demand for ./course bench, one program per
 * lesson and tree (bench_NN_lessons, bench_NN_solutions) plus bench_frozen (the baselines only).
 *
 * Build and run (from the repository root)
 *   cmake -S . -B build && cmake --build build --target bench -j
 *   build/bin/bench --kernels flash_bf16 --N 1024,2048,4096,8192 --H 64 --G 64 --D 128 --causal 1 \
 *                   --csv figures/bench_h100.csv
 *   tools/bench/plot.py figures/bench_h100.csv --out figures/
 *   build/bin/bench --kernels gqa_bf16,mask_bf16,blocks_bf16 --keep 100,50,25,10,5 --N 8192 --H 64 --G 4 \
 *                   --csv figures/bench_sparsity_h100.csv && tools/bench/plot.py --vs-keep figures/bench_sparsity_h100.csv
 *   tools/bench/readme_figures.sh h200     every figure and CSV of the README, named *_h200
 * `build/bin/bench --help` lists every option.
 *
 * What the rates mean
 *   tflops = attn_flops(shape) / time: 4 * D FLOPs per VISIBLE (query, key) pair, so a causal run is
 *            credited with about half the work of a full one, whatever the kernel computes and masks;
 *            window, mask and block kernels with the pairs their window, kept keys or listed blocks
 *            leave visible.
 *   gbs    = the bytes no kernel can avoid (q, k, v read once, o written once, lse written once by
 *            the kernels that write it, in the kernel's element size) / time. The naive kernels' round
 *            trips of the N x N scores through memory and the repeated K/V of frozen_repeat_kv_bf16 are
 *            not counted, on purpose: the figure says how far a kernel is from the floor, not how busy
 *            it kept the memory.
 *
 * Exit status: 0 on success, 1 when an operation fails (the error is printed), 2 on a usage error,
 * 77 when there is no usable CUDA device (nothing was measured).
 */
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn.h"
#include "attn_gpu.h"
#include "baselines.h"
#include "bench_csv.h"
#ifdef BENCH_L01
#include "naive_attention.h"
#endif
#ifdef BENCH_L02
#include "online_softmax.h"
#endif
#ifdef BENCH_L03
#include "flash_attention.h"
#endif
#ifdef BENCH_L04
#include "gqa_attention.h"
#endif
#ifdef BENCH_L05
#include "sliding_window.h"
#endif
#ifdef BENCH_L06
#include "sparsity.h"
#include "timing.h"
#include "oracle_nsa.h"
#include "random.h"
#endif

#define BENCH_NO_GPU 77

/* ---------------------------------------------------------------- kernels */

typedef enum {
    K_NAIVE_F32, K_FROZEN_ONLINE_F32, K_FROZEN_FLASH_BF16, K_FROZEN_REPEAT_KV_BF16,
    K_NAIVE_CUDA_F32, K_ONLINE_F32, K_FLASH_BF16, K_GQA_BF16, K_WINDOW_BF16, K_MASK_BF16, K_BLOCKS_BF16, KERNEL_COUNT
} kernel_id;

typedef struct {
    const char *name;
    size_t elem_bytes; /* size of one element of q, k, v and o */
    int writes_lse;
    int lesson;        /* the lesson whose tree provides it; 0: a frozen baseline (always built in) */
} kernel_info;

static const kernel_info kKernels[KERNEL_COUNT] = {
    {"naive_f32", sizeof(float), 0, 0},
    {"frozen_online_f32", sizeof(float), 1, 0},
    {"frozen_flash_bf16", sizeof(uint16_t), 1, 0},
    {"frozen_repeat_kv_bf16", sizeof(uint16_t), 1, 0},
    {"naive_cuda_f32", sizeof(float), 0, 1},
    {"online_f32", sizeof(float), 1, 2},
    {"flash_bf16", sizeof(uint16_t), 1, 3},
    {"gqa_bf16", sizeof(uint16_t), 1, 4},
    {"window_bf16", sizeof(uint16_t), 1, 5},
    {"mask_bf16", sizeof(uint16_t), 1, 6},
    {"blocks_bf16", sizeof(uint16_t), 1, 6},
};

/* Whether this build of the program holds lesson `lesson`'s kernels (0: the frozen baselines). */
static int lesson_built(int lesson)
{
    switch (lesson) {
    case 0: return 1;
#ifdef BENCH_L01
    case 1: return 1;
#endif
#ifdef BENCH_L02
    case 2: return 1;
#endif
#ifdef BENCH_L03
    case 3: return 1;
#endif
#ifdef BENCH_L04
    case 4: return 1;
#endif
#ifdef BENCH_L05
    case 5: return 1;
#endif
#ifdef BENCH_L06
    case 6: return 1;
#endif
    default: return 0;
    }
}

/* "a, b, c": the kernels built into this program. */
static const char *built_kernel_names(void)
{
    static char buf[512];
    buf[0] = '\0';
    for (int k = 0; k < KERNEL_COUNT; ++k)
        if (lesson_built(kKernels[k].lesson))
            snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%s", buf[0] ? ", " : "", kKernels[k].name);
    return buf;
}

/* Kernels timed once per --keep value. */
static int uses_keep(kernel_id kernel) { return kernel == K_MASK_BF16 || kernel == K_BLOCKS_BF16; }

static int is_naive(kernel_id kernel) { return kernel == K_NAIVE_F32 || kernel == K_NAIVE_CUDA_F32; }

static int kernel_supports_d(kernel_id kernel, int D)
{
    if (is_naive(kernel)) return D >= 1 && D <= ATTN_MAX_D;
    return D == 64 || D == 128;
}

/* Everything one timed launch needs; attn_time calls launch() with it. */
typedef struct {
    kernel_id kernel;
    attn_shape shape;
    void *q, *k, *v, *o; /* float or bf16 (uint16_t), as the kernel wants */
    float *lse;          /* NULL for kernels that do not write it */
    void *workspace;     /* naive kernels: the B*H*M*N scores; frozen_repeat_kv_bf16: k and v repeated */
    int window;          /* window_bf16 only: keys t - w + 1 .. t */
    float *retention;    /* mask_bf16 only: [B, N, G] */
    float threshold;     /* mask_bf16 only */
    int32_t *lists;      /* blocks_bf16 only: [B, QB, G, T] */
    int T;
} bench_run;

/* frozen_repeat_kv_bf16: repeat k and v to H heads in the workspace, then frozen flash with G = H. */
static int launch_repeat_kv(const bench_run *r, cudaStream_t stream)
{
    attn_shape mha = r->shape;
    mha.G = mha.H;
    uint16_t *k_rep = (uint16_t *)r->workspace, *v_rep = k_rep + attn_kv_elems(&mha);
    int st = attn_baseline_repeat_kv_bf16(&r->shape, (const uint16_t *)r->k, k_rep, stream);
    if (!st) st = attn_baseline_repeat_kv_bf16(&r->shape, (const uint16_t *)r->v, v_rep, stream);
    if (!st) st = attn_baseline_flash_bf16(&mha, (const uint16_t *)r->q, k_rep, v_rep, (uint16_t *)r->o, r->lse, stream);
    return st;
}

static int launch(void *ctx, cudaStream_t stream)
{
    const bench_run *r = (const bench_run *)ctx;
    switch (r->kernel) {
    case K_NAIVE_F32:
        return attn_baseline_naive_f32(&r->shape, (const float *)r->q, (const float *)r->k, (const float *)r->v,
                                       (float *)r->o, (float *)r->workspace, stream);
    case K_FROZEN_ONLINE_F32:
        return attn_baseline_online_f32(&r->shape, (const float *)r->q, (const float *)r->k, (const float *)r->v,
                                        (float *)r->o, r->lse, stream);
    case K_FROZEN_FLASH_BF16:
        return attn_baseline_flash_bf16(&r->shape, (const uint16_t *)r->q, (const uint16_t *)r->k,
                                        (const uint16_t *)r->v, (uint16_t *)r->o, r->lse, stream);
    case K_FROZEN_REPEAT_KV_BF16:
        return launch_repeat_kv(r, stream);
#ifdef BENCH_L01
    case K_NAIVE_CUDA_F32:
        return naive_attention_cuda(&r->shape, (const float *)r->q, (const float *)r->k, (const float *)r->v,
                                    (float *)r->o, (float *)r->workspace, stream);
#endif
#ifdef BENCH_L02
    case K_ONLINE_F32:
        return online_attention_cuda(&r->shape, (const float *)r->q, (const float *)r->k, (const float *)r->v,
                                     (float *)r->o, r->lse, stream);
#endif
#ifdef BENCH_L03
    case K_FLASH_BF16:
        return flash_attention_cuda(&r->shape, (const uint16_t *)r->q, (const uint16_t *)r->k,
                                    (const uint16_t *)r->v, (uint16_t *)r->o, r->lse, stream);
#endif
#ifdef BENCH_L04
    case K_GQA_BF16:
        return gqa_attention_cuda(&r->shape, (const uint16_t *)r->q, (const uint16_t *)r->k,
                                  (const uint16_t *)r->v, (uint16_t *)r->o, r->lse, stream);
#endif
#ifdef BENCH_L05
    case K_WINDOW_BF16:
        return window_attention_cuda(&r->shape, r->window, (const uint16_t *)r->q, (const uint16_t *)r->k,
                                     (const uint16_t *)r->v, (uint16_t *)r->o, r->lse, stream);
#endif
#ifdef BENCH_L06
    case K_MASK_BF16:
        return masked_attention_cuda(&r->shape, KEEP_HARD, r->threshold, r->retention, (const uint16_t *)r->q,
                                     (const uint16_t *)r->k, (const uint16_t *)r->v, (uint16_t *)r->o, r->lse,
                                     stream);
    case K_BLOCKS_BF16:
        return block_sparse_attention_cuda(&r->shape, r->lists, r->T, (const uint16_t *)r->q, (const uint16_t *)r->k,
                                           (const uint16_t *)r->v, (uint16_t *)r->o, r->lse, stream);
#endif
    default:
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "kernel %s is not built into this program", kKernels[r->kernel].name);
    }
}

/* Bytes of device workspace a kernel needs besides q, k, v, o and lse. */
static size_t workspace_bytes(kernel_id kid, const attn_shape *sh)
{
    if (kid == K_NAIVE_F32) return attn_baseline_naive_workspace_bytes(sh);
#ifdef BENCH_L01
    if (kid == K_NAIVE_CUDA_F32) return naive_attention_workspace_bytes(sh);
#endif
    if (kid == K_FROZEN_REPEAT_KV_BF16) {
        attn_shape mha = *sh;
        mha.G = mha.H;
        return 2 * attn_kv_elems(&mha) * sizeof(uint16_t);
    }
    return 0;
}

/* ---------------------------------------------------------------- random inputs */

/* Generating 1.6 billion normal numbers on the CPU (q, k and v at N = 64k, H = 64, D = 128) would take
 * longer than timing the kernel. So each tensor is filled from a pool of POOL_ELEMS random values,
 * repeated as often as needed. The values still vary row by row (attn_fill_random gives every row
 * of D values its own scale), and no kernel's speed depends on data repeating every 4M elements. */
#define POOL_ELEMS ((size_t)1 << 22)

typedef struct {
    int D;              /* rows of D values; 0: not made yet */
    float *f32[3];      /* pools for q, k, v */
    uint16_t *bf16[3];  /* the same values rounded to bf16 */
} input_pool;

static void pool_free(input_pool *p)
{
    for (int t = 0; t < 3; ++t) {
        free(p->f32[t]);
        free(p->bf16[t]);
        p->f32[t] = NULL;
        p->bf16[t] = NULL;
    }
    p->D = 0;
}

static int pool_make(input_pool *p, int D, uint64_t seed)
{
    attn_rng rng;
    attn_rng_seed(&rng, seed ^ (0x9E3779B97F4A7C15ull * (uint64_t)D)); /* different data per D */
    for (int t = 0; t < 3; ++t) {
        p->f32[t] = attn_alloc_f32(POOL_ELEMS);
        p->bf16[t] = attn_alloc_bf16(POOL_ELEMS);
        if (!p->f32[t] || !p->bf16[t]) {
            pool_free(p);
            return attn_fail(ATTN_ERR_OUT_OF_MEMORY, "host memory for the random input pools");
        }
        attn_fill_random(p->f32[t], POOL_ELEMS, (size_t)D, 1.0f, &rng);
        attn_f32_to_bf16_array(p->f32[t], p->bf16[t], POOL_ELEMS);
    }
    p->D = D;
    return ATTN_OK;
}

/* Fill `elems` device elements with the pool: one upload, then copies that double the filled
 * prefix (device-to-device copies run at memory speed, uploads at PCIe speed). */
static int fill_device(void *dst, size_t elems, size_t elem_bytes, const void *pool)
{
    const size_t total = elems * elem_bytes;
    size_t done = (elems < POOL_ELEMS ? elems : POOL_ELEMS) * elem_bytes;
    int st = attn_h2d(dst, pool, done);
    while (!st && done < total) {
        size_t n = total - done < done ? total - done : done;
        st = attn_cuda_status(cudaMemcpy((char *)dst + done, dst, n, cudaMemcpyDeviceToDevice),
                              "cudaMemcpy (tiling the inputs)");
        done += n;
    }
    return st;
}

/* ---------------------------------------------------------------- device peaks */

typedef struct {
    int measured;
    double tflops; /* bf16 tensor-core GEMM, TFLOP/s */
    double gbs;    /* device-to-device copy, bytes read + written, GB/s */
} device_peaks;

typedef struct {
    void *dst;
    const void *src;
    size_t bytes;
} copy_run;

static int launch_copy(void *ctx, cudaStream_t stream)
{
    const copy_run *c = (const copy_run *)ctx;
    return attn_cuda_status(cudaMemcpyAsync(c->dst, c->src, c->bytes, cudaMemcpyDeviceToDevice, stream),
                            "cudaMemcpyAsync (bandwidth peak)");
}

static int cublas_status(cublasStatus_t s, const char *where)
{
    if (s == CUBLAS_STATUS_SUCCESS) return ATTN_OK;
    return attn_fail(ATTN_ERR_CUDA, "%s: %s", where, cublasGetStatusString(s));
}

typedef struct {
    cublasHandle_t handle;
    int n;
    const uint16_t *a, *b;
    uint16_t *c;
} gemm_run;

static int launch_gemm(void *ctx, cudaStream_t stream)
{
    const gemm_run *g = (const gemm_run *)ctx;
    const float alpha = 1.0f, beta = 0.0f; /* fp32 scalars: the compute type is CUBLAS_COMPUTE_32F */
    int st = cublas_status(cublasSetStream(g->handle, stream), "cublasSetStream");
    if (st) return st;
    return cublas_status(cublasGemmEx(g->handle, CUBLAS_OP_N, CUBLAS_OP_N, g->n, g->n, g->n, &alpha, g->a,
                                      CUDA_R_16BF, g->n, g->b, CUDA_R_16BF, g->n, &beta, g->c, CUDA_R_16BF, g->n,
                                      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                         "cublasGemmEx (bf16 peak)");
}

/* Both peaks are timed with attn_time, like the kernels: the same events, the same L2 flush
 * (which changes nothing here: the copy and the GEMM's operands are far larger than L2). */
static int measure_peaks(device_peaks *pk, uint64_t seed)
{
    const int warmup = 3, reps = 10;
    attn_timing t;
    size_t free_b = 0, total_b = 0;
    int st = attn_cuda_status(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
    if (st) return st;

    /* Bandwidth: 2 GiB copied (4 GiB moved), less on a small device; far larger than L2. */
    copy_run copy = {NULL, NULL, (size_t)2 << 30};
    while (copy.bytes > ((size_t)64 << 20) && 4 * copy.bytes > free_b) copy.bytes /= 2;
    void *src = NULL;
    st = attn_dalloc(&src, copy.bytes);
    if (!st) st = attn_dalloc(&copy.dst, copy.bytes);
    copy.src = src;
    if (!st) st = attn_time(launch_copy, &copy, warmup, reps, &t);
    if (!st) {
        pk->gbs = 2.0 * (double)copy.bytes / (t.median_ms * 1e-3) / 1e9;
        fprintf(stderr, "peak memory bandwidth: %.1f GB/s (device-to-device copy of %.2f GiB, bytes read + "
                        "written, median of %d)\n",
                pk->gbs, copy.bytes / (double)(1 << 30), reps);
    }
    attn_dfree(src);
    attn_dfree(copy.dst);
    if (st) return st;

    /* Tensor throughput: random operands (zeros would flatter the GEMM: less switching, less power). */
    gemm_run gemm;
    memset(&gemm, 0, sizeof gemm);
    gemm.n = 8192;
    const size_t elems = (size_t)gemm.n * gemm.n;
    input_pool pool;
    memset(&pool, 0, sizeof pool);
    void *a = NULL, *b = NULL, *c = NULL;
    st = pool_make(&pool, gemm.n, seed);
    if (!st) st = attn_dalloc(&a, elems * sizeof(uint16_t));
    if (!st) st = attn_dalloc(&b, elems * sizeof(uint16_t));
    if (!st) st = attn_dalloc(&c, elems * sizeof(uint16_t));
    if (!st) st = fill_device(a, elems, sizeof(uint16_t), pool.bf16[0]);
    if (!st) st = fill_device(b, elems, sizeof(uint16_t), pool.bf16[1]);
    if (!st) st = cublas_status(cublasCreate(&gemm.handle), "cublasCreate");
    gemm.a = (const uint16_t *)a;
    gemm.b = (const uint16_t *)b;
    gemm.c = (uint16_t *)c;
    if (!st) st = attn_time(launch_gemm, &gemm, warmup, reps, &t);
    if (!st) {
        pk->tflops = 2.0 * (double)gemm.n * gemm.n * gemm.n / (t.median_ms * 1e-3) / 1e12;
        fprintf(stderr, "peak bf16 tensor throughput: %.1f TFLOP/s (cublasGemmEx %d x %d x %d, bf16 in and out, "
                        "fp32 accumulation, median of %d)\n",
                pk->tflops, gemm.n, gemm.n, gemm.n, reps);
    }
    if (gemm.handle) cublasDestroy(gemm.handle);
    attn_dfree(a);
    attn_dfree(b);
    attn_dfree(c);
    pool_free(&pool);
    if (!st) pk->measured = 1;
    return st;
}

/* ---------------------------------------------------------------- options */

#define MAX_LIST 64

typedef struct {
    int n;
    int v[MAX_LIST];
} int_list;

typedef struct {
    int n_kernels;
    kernel_id kernels[KERNEL_COUNT];
    int_list B, M, N, H, G, D, causal; /* M: 0 stands for "M = N" */
    int warmup, reps;
    const char *csv_path;
    int peaks;
    uint64_t seed;
    int window; /* window_bf16: keys t - w + 1 .. t */
    int_list keep; /* mask_bf16, blocks_bf16: percent of keys / key blocks kept */
    const char *tag;     /* --tag: kernel names become "<tag>:<name>" */
    double peak_tflops;  /* --peak-tflops / --peak-gbs: given peaks (not measured); 0: not given */
    double peak_gbs;
    int keep_going;      /* --keep-going: a kernel that fails is reported and the sweep goes on */
} options;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench [options]\n"
            "Time attention kernels over the cartesian product of the listed sizes; print a table, write CSV.\n"
            "  --window W       window of window_bf16 (default 512)\n"
            "  --keep LIST      percent of keys (mask_bf16) or key blocks (blocks_bf16) kept, 1..100 (default 10)\n"
            "  --kernels LIST   kernels to time (default flash_bf16 when held); this program holds:\n"
            "                   %s\n"
            "  --N LIST         keys per sequence (default 1024,2048,4096)\n"
            "  --M LIST         queries, the last M positions; N means M = N (default N; 1 for decoding)\n"
            "  --B LIST         batch (default 1)\n"
            "  --H LIST         query heads (default 64)\n"
            "  --G LIST         key/value heads, H %% G == 0 (default 64)\n"
            "  --D LIST         head dimension (default 128)\n"
            "  --causal LIST    0 or 1 (default 1)\n"
            "  --warmup K       untimed runs before timing (default 3)\n"
            "  --reps K         timed runs; the median is reported (default 10)\n"
            "  --csv FILE       write the results as CSV (default: table only)\n"
            "  --seed S         seed of the random inputs (default 1)\n"
            "  --no-peaks       skip measuring the device's bandwidth and bf16 GEMM peaks\n"
            "  --peak-tflops X  with --peak-gbs Y: use these peaks (e.g. from an earlier run's CSV), measure nothing\n"
            "  --peak-gbs Y\n"
            "  --tag TEXT       name the kernels TEXT:<kernel> in the table and CSV (e.g. yours, solution)\n"
            "  --keep-going     a kernel that fails is reported and skipped; the rest still run (exit 1 at the end)\n"
            "  --list           print the kernels this program holds, one a line, and exit\n"
            "LIST is comma-separated, e.g. --N 1024,2048,4096. Combinations with H %% G != 0, M > N or a D\n"
            "that a kernel does not support are skipped with a note on stderr.\n"
            "Exit status: 0 ok, 1 an operation failed, 2 usage error, 77 no usable CUDA device.\n",
            built_kernel_names());
}

/* "1024,2048" -> {1024, 2048}. With allow_n, the word N stands for 0 (M = N). */
static int parse_list(const char *opt, const char *text, int_list *out, int min_value, int allow_n)
{
    out->n = 0;
    const char *p = text;
    while (*p) {
        if (out->n == MAX_LIST) {
            fprintf(stderr, "bench: %s: at most %d values\n", opt, MAX_LIST);
            return 0;
        }
        char *end = NULL;
        long value;
        if (allow_n && (*p == 'N' || *p == 'n') && (p[1] == ',' || p[1] == '\0')) {
            value = 0;
            end = (char *)p + 1;
        } else {
            value = strtol(p, &end, 10);
            if (end == p || (*end != ',' && *end != '\0') || value < min_value || value > (1L << 30)) {
                fprintf(stderr, "bench: %s: bad value in \"%s\" (integers >= %d, comma-separated)\n", opt, text,
                        min_value);
                return 0;
            }
        }
        out->v[out->n++] = (int)value;
        p = *end == ',' ? end + 1 : end;
    }
    if (out->n == 0) {
        fprintf(stderr, "bench: %s: empty list\n", opt);
        return 0;
    }
    return 1;
}

static int parse_kernels(const char *text, options *o)
{
    o->n_kernels = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", text);
    for (char *name = strtok(buf, ","); name; name = strtok(NULL, ",")) {
        int found = -1;
        for (int k = 0; k < KERNEL_COUNT; ++k)
            if (strcmp(name, kKernels[k].name) == 0) found = k;
        if (found < 0) {
            fprintf(stderr, "bench: unknown kernel \"%s\" (this program holds: %s)\n", name, built_kernel_names());
            return 0;
        }
        if (!lesson_built(kKernels[found].lesson)) {
            fprintf(stderr, "bench: kernel %s (lesson %02d) is not built into this program (it holds: %s)\n", name,
                    kKernels[found].lesson, built_kernel_names());
            return 0;
        }
        int dup = 0;
        for (int i = 0; i < o->n_kernels; ++i) dup |= o->kernels[i] == (kernel_id)found;
        if (!dup) o->kernels[o->n_kernels++] = (kernel_id)found;
    }
    if (o->n_kernels == 0) {
        fprintf(stderr, "bench: --kernels: empty list\n");
        return 0;
    }
    return 1;
}

/* Returns 1 to run, 0 after --help, -1 on a usage error (already printed). */
static int parse_args(int argc, char **argv, options *o)
{
    memset(o, 0, sizeof *o); /* no --kernels: flash_bf16, or the first kernel of a lesson this program holds */
    parse_list("--N", "1024,2048,4096", &o->N, 1, 0);
    parse_list("--M", "N", &o->M, 1, 1);
    parse_list("--B", "1", &o->B, 1, 0);
    parse_list("--H", "64", &o->H, 1, 0);
    parse_list("--G", "64", &o->G, 1, 0);
    parse_list("--D", "128", &o->D, 1, 0);
    parse_list("--causal", "1", &o->causal, 0, 0);
    o->warmup = 3;
    o->reps = 10;
    o->peaks = 1;
    o->seed = 1;
    o->window = 512;
    parse_list("--keep", "10", &o->keep, 1, 0);

    for (int i = 1; i < argc; ++i) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--no-peaks") == 0) {
            o->peaks = 0;
            continue;
        }
        if (strcmp(a, "--keep-going") == 0) {
            o->keep_going = 1;
            continue;
        }
        if (strcmp(a, "--list") == 0) {
            for (int k = 0; k < KERNEL_COUNT; ++k)
                if (lesson_built(kKernels[k].lesson)) printf("%s\n", kKernels[k].name);
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "bench: %s needs a value (see --help)\n", a);
            return -1;
        }
        const char *val = argv[++i];
        int ok = 1;
        if (strcmp(a, "--kernels") == 0) ok = parse_kernels(val, o);
        else if (strcmp(a, "--N") == 0) ok = parse_list(a, val, &o->N, 1, 0);
        else if (strcmp(a, "--M") == 0) ok = parse_list(a, val, &o->M, 1, 1);
        else if (strcmp(a, "--B") == 0) ok = parse_list(a, val, &o->B, 1, 0);
        else if (strcmp(a, "--H") == 0) ok = parse_list(a, val, &o->H, 1, 0);
        else if (strcmp(a, "--G") == 0) ok = parse_list(a, val, &o->G, 1, 0);
        else if (strcmp(a, "--D") == 0) ok = parse_list(a, val, &o->D, 1, 0);
        else if (strcmp(a, "--causal") == 0) {
            ok = parse_list(a, val, &o->causal, 0, 0);
            for (int j = 0; ok && j < o->causal.n; ++j) o->causal.v[j] = o->causal.v[j] != 0;
        } else if (strcmp(a, "--warmup") == 0 || strcmp(a, "--reps") == 0) {
            char *end = NULL;
            long k = strtol(val, &end, 10);
            int is_reps = a[2] == 'r';
            ok = end != val && *end == '\0' && k >= (is_reps ? 1 : 0) && k <= 100000;
            if (ok) *(is_reps ? &o->reps : &o->warmup) = (int)k;
            else fprintf(stderr, "bench: %s: bad value \"%s\"\n", a, val);
        } else if (strcmp(a, "--csv") == 0) o->csv_path = val;
        else if (strcmp(a, "--tag") == 0) o->tag = val;
        else if (strcmp(a, "--peak-tflops") == 0 || strcmp(a, "--peak-gbs") == 0) {
            char *end = NULL;
            double x = strtod(val, &end);
            ok = end != val && *end == '\0' && x > 0.0;
            if (ok) *(a[7] == 't' ? &o->peak_tflops : &o->peak_gbs) = x;
            else fprintf(stderr, "bench: %s: bad value \"%s\" (a positive number)\n", a, val);
        }
        else if (strcmp(a, "--seed") == 0) o->seed = strtoull(val, NULL, 0);
        else if (strcmp(a, "--keep") == 0) {
            ok = parse_list(a, val, &o->keep, 1, 0);
            for (int j = 0; ok && j < o->keep.n; ++j)
                if (o->keep.v[j] > 100) {
                    fprintf(stderr, "bench: --keep: %d is over 100 (percent)\n", o->keep.v[j]);
                    ok = 0;
                }
        } else if (strcmp(a, "--window") == 0) {
            o->window = atoi(val);
            ok = o->window >= 1;
            if (!ok) fprintf(stderr, "bench: --window: bad value \"%s\"\n", val);
        }
        else {
            fprintf(stderr, "bench: unknown option %s (see --help)\n", a);
            ok = 0;
        }
        if (!ok) return -1;
    }
    if (o->n_kernels == 0) {
        kernel_id def = K_FROZEN_FLASH_BF16;
        for (int k = KERNEL_COUNT - 1; k >= 0; --k)
            if (kKernels[k].lesson && lesson_built(kKernels[k].lesson)) def = (kernel_id)k;
        if (lesson_built(kKernels[K_FLASH_BF16].lesson)) def = K_FLASH_BF16;
        o->kernels[o->n_kernels++] = def;
    }
    if ((o->peak_tflops > 0.0) != (o->peak_gbs > 0.0)) {
        fprintf(stderr, "bench: --peak-tflops and --peak-gbs go together\n");
        return -1;
    }
    return 1;
}

/* ---------------------------------------------------------------- one measurement */

static void print_table_header(void)
{
    printf("%-21s %3s %6s %6s %4s %4s %4s %3s %11s %9s %9s %8s %8s\n", "kernel", "B", "M", "N", "H", "G", "D",
           "cau", "ms", "TFLOP/s", "GB/s", "%flops", "%bw");
    fflush(stdout);
}

#ifdef BENCH_L06
/* mask_bf16: uniform random retention [B, N, G]; the hard mask with threshold 1 - keep/100 keeps that
 * share of the keys. *flops: the FLOPs of the pairs it keeps, about keep/100 of the visible ones. */
static int make_retention(bench_run *run, int keep, uint64_t seed, double *flops)
{
    const attn_shape *sh = &run->shape;
    const size_t n = (size_t)sh->B * sh->N * sh->G;
    float *r = attn_alloc_f32(n);
    if (!r) return attn_fail(ATTN_ERR_OUT_OF_MEMORY, "host memory for the retention weights");
    attn_rng rng;
    attn_rng_seed(&rng, seed * 977 + (uint64_t)keep);
    for (size_t e = 0; e < n; ++e) r[e] = (float)attn_rng_uniform(&rng);
    run->threshold = 1.0f - keep / 100.0f;
    int st = attn_dalloc((void **)&run->retention, n * sizeof(float));
    if (!st) st = attn_h2d(run->retention, r, n * sizeof(float));
    free(r);
    *flops = keep / 100.0 * attn_flops(sh);
    return st;
}

/* blocks_bf16: every (b, query block, kv head) lists each key block its queries may see with
 * probability keep/100 (at least one). *flops: the FLOPs of the visible pairs in the listed blocks. */
static int make_block_lists(bench_run *run, int keep, uint64_t seed, double *flops)
{
    const attn_shape *sh = &run->shape;
    const int QB = sparse_query_blocks(sh->M), KB = sparse_key_blocks(sh->N);
    const size_t n = (size_t)sh->B * QB * sh->G * KB;
    int32_t *lists = (int32_t *)malloc(n * sizeof(int32_t));
    if (!lists) return attn_fail(ATTN_ERR_OUT_OF_MEMORY, "host memory for the block lists");
    attn_rng rng;
    attn_rng_seed(&rng, seed * 131 + (uint64_t)keep);
    for (int b = 0; b < sh->B; ++b)
        for (int qb = 0; qb < QB; ++qb)
            for (int g = 0; g < sh->G; ++g) {
                int32_t *list = lists + (((size_t)b * QB + qb) * sh->G + g) * KB;
                const int i0 = qb * SPARSE_QUERY_BLOCK, i1 = i0 + SPARSE_QUERY_BLOCK < sh->M ? i0 + SPARSE_QUERY_BLOCK : sh->M;
                const long t_last = (long)sh->N - sh->M + i1 - 1;
                const int last = sh->causal ? (int)(t_last / SPARSE_KEY_BLOCK) : KB - 1;
                int count = 0;
                for (int j = 0; j <= last; ++j)
                    if (attn_rng_uniform(&rng) < keep / 100.0) list[count++] = j;
                if (count == 0) list[count++] = (int)(attn_rng_u64(&rng) % (uint64_t)(last + 1));
                for (int e = count; e < KB; ++e) list[e] = -1;
            }
    run->T = KB;
    *flops = 4.0 * sh->D * attn_block_list_pairs(sh, lists, KB, SPARSE_QUERY_BLOCK, SPARSE_KEY_BLOCK);
    int st = attn_dalloc((void **)&run->lists, n * sizeof(int32_t));
    if (!st) st = attn_h2d(run->lists, lists, n * sizeof(int32_t));
    free(lists);
    return st;
}
#endif /* BENCH_L06 */

/* Time one kernel on one shape; print a table row and a CSV row. A shape whose buffers do not fit
 * in free device memory is skipped with a note (and no row), not treated as an error. */
static int bench_one(kernel_id kid, const attn_shape *sh, const options *opt, int keep, const input_pool *pool,
                     const device_peaks *pk, const char *device, FILE *csv)
{
    const kernel_info *ki = &kKernels[kid];
    const size_t es = ki->elem_bytes;
    const size_t nq = attn_q_elems(sh), nkv = attn_kv_elems(sh), nlse = attn_lse_elems(sh);
    const size_t ws_bytes = workspace_bytes(kid, sh);
    const size_t lse_bytes = ki->writes_lse ? nlse * sizeof(float) : 0;
    const size_t io_bytes = (2 * nq + 2 * nkv) * es + lse_bytes; /* q, k, v, o and lse once each */

    size_t free_b = 0, total_b = 0;
    int st = attn_cuda_status(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
    if (st) return st;
    /* The naive kernel's N x N scores grow fastest: leave room for everything else. */
    if (ws_bytes > 0.4 * (double)free_b) {
        fprintf(stderr, "note: %s B=%d M=%d N=%d H=%d: skipped, its %.1f GiB workspace is over 40%% of the "
                        "%.1f GiB of free device memory\n",
                ki->name, sh->B, sh->M, sh->N, sh->H, ws_bytes / 1073741824.0, free_b / 1073741824.0);
        return ATTN_OK;
    }
    if (io_bytes + ws_bytes > 0.9 * (double)free_b) {
        fprintf(stderr, "note: %s B=%d M=%d N=%d H=%d D=%d: skipped, %.1f GiB of buffers do not fit in %.1f GiB "
                        "of free device memory\n",
                ki->name, sh->B, sh->M, sh->N, sh->H, sh->D, (io_bytes + ws_bytes) / 1073741824.0,
                free_b / 1073741824.0);
        return ATTN_OK;
    }

    bench_run run;
    memset(&run, 0, sizeof run);
    run.kernel = kid;
    run.shape = *sh;
    run.window = opt->window;
    if (kid == K_WINDOW_BF16 && !sh->causal) {
        fprintf(stderr, "note: window_bf16 runs causal shapes only: skipped a non-causal one\n");
        return ATTN_OK;
    }
    /* FLOPs of the visible pairs: a window sees min(t + 1, w) keys at position t */
    double flops = attn_flops(sh);
    if (kid == K_WINDOW_BF16) {
        double pairs = 0.0;
        for (long i = 0; i < sh->M; ++i) {
            const long t = (long)sh->N - sh->M + i;
            pairs += t + 1 < opt->window ? t + 1 : opt->window;
        }
        flops = 4.0 * sh->D * sh->H * sh->B * pairs;
    }
    char name[128];
    const char *tag = opt->tag ? opt->tag : "", *colon = opt->tag ? ":" : "";
    if (kid == K_WINDOW_BF16) snprintf(name, sizeof name, "%s%s%s_w%d", tag, colon, ki->name, opt->window);
    else if (uses_keep(kid)) snprintf(name, sizeof name, "%s%s%s_k%d", tag, colon, ki->name, keep);
    else snprintf(name, sizeof name, "%s%s%s", tag, colon, ki->name);
#ifdef BENCH_L06
    if (uses_keep(kid))
        st = kid == K_MASK_BF16 ? make_retention(&run, keep, opt->seed, &flops)
                                : make_block_lists(&run, keep, opt->seed, &flops);
#endif
    if (!st) st = attn_dalloc(&run.q, nq * es);
    if (!st) st = attn_dalloc(&run.k, nkv * es);
    if (!st) st = attn_dalloc(&run.v, nkv * es);
    if (!st) st = attn_dalloc(&run.o, nq * es);
    if (!st && lse_bytes) st = attn_dalloc((void **)&run.lse, lse_bytes);
    if (!st && ws_bytes) st = attn_dalloc(&run.workspace, ws_bytes);
    void *inputs[3] = {run.q, run.k, run.v};
    const size_t counts[3] = {nq, nkv, nkv};
    for (int t = 0; t < 3 && !st; ++t)
        st = fill_device(inputs[t], counts[t], es, es == sizeof(float) ? (const void *)pool->f32[t]
                                                                        : (const void *)pool->bf16[t]);

    attn_timing timing;
    if (!st) st = attn_time(launch, &run, opt->warmup, opt->reps, &timing);
    if (!st) {
        const double sec = timing.median_ms * 1e-3;
        const double tflops = flops / sec / 1e12;
        const double gbs = (double)io_bytes / sec / 1e9;
        char fflops[16] = "-", fbw[16] = "-";
        if (pk->measured) {
            snprintf(fflops, sizeof fflops, "%.1f%%", 100.0 * tflops / pk->tflops);
            snprintf(fbw, sizeof fbw, "%.1f%%", 100.0 * gbs / pk->gbs);
        }
        printf("%-21s %3d %6d %6d %4d %4d %4d %3d %11.4f %9.2f %9.1f %8s %8s\n", name, sh->B, sh->M, sh->N,
               sh->H, sh->G, sh->D, sh->causal, timing.median_ms, tflops, gbs, fflops, fbw);
        fflush(stdout);
        if (csv) {
            csv_text(csv, device);
            fprintf(csv, ",%s,%d,%d,%d,%d,%d,%d,%d,%.6g,%.4f,%.2f,", name, sh->B, sh->M, sh->N, sh->H, sh->G,
                    sh->D, sh->causal, timing.median_ms, tflops, gbs);
            if (pk->measured)
                fprintf(csv, "%.2f,%.2f,%.5f,%.5f\n", pk->tflops, pk->gbs, tflops / pk->tflops, gbs / pk->gbs);
            else
                fprintf(csv, ",,,\n"); /* no peaks measured (--no-peaks): empty fields */
            fflush(csv); /* a run cut short keeps every row measured so far */
        }
    }
    attn_dfree(run.q);
    attn_dfree(run.k);
    attn_dfree(run.v);
    attn_dfree(run.o);
    attn_dfree(run.lse);
    attn_dfree(run.workspace);
    attn_dfree(run.retention);
    attn_dfree(run.lists);
    return st;
}

/* ---------------------------------------------------------------- the sweep */

static int any_kernel_supports(const options *o, int D)
{
    for (int i = 0; i < o->n_kernels; ++i)
        if (kernel_supports_d(o->kernels[i], D)) return 1;
    return 0;
}

/* Notes for the combinations that will be skipped, once each rather than once per shape. */
static void print_skip_notes(const options *o)
{
    for (int i = 0; i < o->H.n; ++i)
        for (int j = 0; j < o->G.n; ++j)
            if (o->H.v[i] % o->G.v[j])
                fprintf(stderr, "note: H=%d G=%d skipped: H must be a multiple of G\n", o->H.v[i], o->G.v[j]);
    for (int i = 0; i < o->n_kernels; ++i)
        for (int j = 0; j < o->D.n; ++j)
            if (!kernel_supports_d(o->kernels[i], o->D.v[j]))
                fprintf(stderr, "note: %s skipped for D=%d: it supports %s\n", kKernels[o->kernels[i]].name,
                        o->D.v[j], is_naive(o->kernels[i]) ? "1 <= D <= 256" : "D = 64 or 128");
    for (int i = 0; i < o->M.n; ++i)
        for (int j = 0; j < o->N.n; ++j)
            if (o->M.v[i] > o->N.v[j])
                fprintf(stderr, "note: M=%d N=%d skipped: the M queries are the last M of N positions\n", o->M.v[i],
                        o->N.v[j]);
}

/* With --keep-going, a kernel that fails is reported, counted in *failures and skipped. */
static int run_sweep(const options *o, const device_peaks *pk, const char *device, FILE *csv, int *failures)
{
    input_pool pools[MAX_LIST]; /* one per entry of the D list, made when first needed */
    memset(pools, 0, sizeof pools);
    int st = ATTN_OK;
    print_table_header();
    for (int ib = 0; ib < o->B.n && !st; ++ib)
    for (int ih = 0; ih < o->H.n && !st; ++ih)
    for (int ig = 0; ig < o->G.n && !st; ++ig) {
        if (o->H.v[ih] % o->G.v[ig]) continue;
        for (int id = 0; id < o->D.n && !st; ++id) {
            const int D = o->D.v[id];
            if (!any_kernel_supports(o, D)) continue;
            if (!pools[id].D) st = pool_make(&pools[id], D, o->seed);
            for (int ic = 0; ic < o->causal.n && !st; ++ic)
            for (int im = 0; im < o->M.n && !st; ++im)
            for (int in = 0; in < o->N.n && !st; ++in) {
                const int N = o->N.v[in], M = o->M.v[im] ? o->M.v[im] : N;
                if (M > N) continue;
                const attn_shape sh = attn_make_shape(o->B.v[ib], M, N, o->H.v[ih], o->G.v[ig], D, o->causal.v[ic]);
                /* kernels innermost: the table shows them side by side on each shape */
                for (int ik = 0; ik < o->n_kernels && !st; ++ik)
                    for (int ip = 0; ip < (uses_keep(o->kernels[ik]) ? o->keep.n : 1) && !st; ++ip)
                        if (kernel_supports_d(o->kernels[ik], D)) {
                            st = bench_one(o->kernels[ik], &sh, o, o->keep.v[ip], &pools[id], pk, device, csv);
                            if (st && o->keep_going) {
                                fprintf(stderr, "bench: %s%s%s failed on B=%d M=%d N=%d H=%d G=%d D=%d causal=%d: %s: %s\n",
                                        o->tag ? o->tag : "", o->tag ? ":" : "", kKernels[o->kernels[ik]].name,
                                        sh.B, sh.M, sh.N, sh.H, sh.G, sh.D, sh.causal, attn_strerror(st),
                                        attn_error_detail());
                                attn_clear_error();
                                cudaGetLastError(); /* clear a launch error that is not sticky */
                                ++*failures;
                                st = ATTN_OK;
                            }
                        }
            }
        }
    }
    for (int i = 0; i < o->D.n; ++i) pool_free(&pools[i]);
    return st;
}

int main(int argc, char **argv)
{
    options opt;
    int parsed = parse_args(argc, argv, &opt);
    if (parsed <= 0) return parsed == 0 ? 0 : 2;

    char why[256];
    if (!attn_gpu_available(why, sizeof why)) {
        fprintf(stderr, "bench: %s\n", why);
        return BENCH_NO_GPU;
    }
    char device[256];
    attn_gpu_describe(device, sizeof device);
    printf("device: %s\n", device);
    fflush(stdout);

    FILE *csv = NULL;
    if (opt.csv_path) {
        csv = fopen(opt.csv_path, "w");
        if (!csv) {
            fprintf(stderr, "bench: cannot write %s\n", opt.csv_path);
            return 1;
        }
        fprintf(csv, "device,kernel,B,M,N,H,G,D,causal,ms,tflops,gbs,peak_tflops,peak_gbs,frac_peak_flops,"
                     "frac_peak_bw\n");
    }

    device_peaks peaks;
    memset(&peaks, 0, sizeof peaks);
    attn_clear_error();
    int st = ATTN_OK, failures = 0;
    if (opt.peak_tflops > 0.0) {
        peaks.measured = 1;
        peaks.tflops = opt.peak_tflops;
        peaks.gbs = opt.peak_gbs;
        fprintf(stderr, "peaks (given, not measured): %.1f TFLOP/s bf16 GEMM, %.1f GB/s copy\n", peaks.tflops,
                peaks.gbs);
    } else if (opt.peaks) {
        st = measure_peaks(&peaks, opt.seed);
    }
    if (!st) {
        print_skip_notes(&opt);
        st = run_sweep(&opt, &peaks, device, csv, &failures);
    }
    if (st) fprintf(stderr, "bench: %s: %s\n", attn_strerror(st), attn_error_detail());
    if (csv && fclose(csv) != 0 && !st) {
        fprintf(stderr, "bench: error writing %s\n", opt.csv_path);
        st = 1;
    }
    if (!st && opt.csv_path) fprintf(stderr, "wrote %s\n", opt.csv_path);
    if (!st && failures) fprintf(stderr, "bench: %d kernel run(s) failed (see above)\n", failures);
    return st || failures ? 1 : 0;
}
