// harness.cu - the tests' GPU helpers: fresh device inputs, device comparisons, an fp32 GPU reference
// and checked A/B timing (see harness.h). Nothing here is tuned: it must be obviously right.
#include <cuda_runtime.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "rpc.h"

namespace {

/* ---------------------------------------------------------------- random numbers on the device */

__device__ __forceinline__ uint64_t mix64(uint64_t x)
{
    /* splitmix64's finaliser: consecutive indices give independent-looking 64-bit values */
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

__device__ __forceinline__ float uniform01(uint64_t bits) { return (float)(bits >> 40) * (1.0f / 16777216.0f); }

/* Value e of a stream: an approximately normal value (sum of four uniforms, variance 1), times a
 * per-row factor in [0.25, 2], with one element in 512 an outlier of 4x. */
__device__ float random_value(uint64_t seed, size_t e, size_t row, float scale)
{
    const uint64_t r = mix64(seed ^ mix64((uint64_t)(e / row) + 0x1234567ull));
    const float row_factor = 0.25f + 1.75f * uniform01(r);
    const uint64_t a = mix64(seed + 2 * (uint64_t)e), b = mix64(a ^ 0xabcdefull);
    float x = (uniform01(a) + uniform01(a << 24) + uniform01(b) + uniform01(b << 24) - 2.0f) * 1.7320508f;
    if ((b & 511u) == 7u) x *= 4.0f;
    return x * row_factor * scale;
}

__global__ void fill_bf16_kernel(uint16_t *dst, size_t n, size_t row, float scale, uint64_t seed)
{
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        const float x = random_value(seed, e, row, scale);
        uint32_t u = __float_as_uint(x);
        u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even (values are finite) */
        dst[e] = (uint16_t)(u >> 16);
    }
}

__global__ void fill_f32_kernel(float *dst, size_t n, size_t row, float scale, uint64_t seed)
{
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x)
        dst[e] = random_value(seed, e, row, scale);
}

__global__ void bf16_to_f32_kernel(const uint16_t *src, float *dst, size_t n)
{
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x)
        dst[e] = __uint_as_float((uint32_t)src[e] << 16);
}

dim3 grid_for(size_t n)
{
    const size_t blocks = (n + 255) / 256;
    return dim3((unsigned)(blocks < 65536 ? (blocks ? blocks : 1) : 65536));
}

/* ---------------------------------------------------------------- comparisons */

__device__ __forceinline__ float bf16_to_f32(uint16_t x) { return __uint_as_float((uint32_t)x << 16); }

struct CmpAccum {
    unsigned long long n_bad, n_unwritten, n_nonfinite;
    unsigned long long worst_key; /* (excess rank << 40) | index: the max picks the worst element */
};

/* Excess of one element in units of the tolerance, as a sortable key: poison > non-finite > finite. */
template <typename Got, typename Ref>
__global__ void compare_kernel(const Got *got, const Ref *ref, size_t n, float atol, float rtol, CmpAccum *acc)
{
    unsigned long long bad = 0, unwritten = 0, nonfinite = 0, worst = 0;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        float g, r;
        bool poison;
        if constexpr (sizeof(Got) == 2) {
            poison = ((const uint16_t *)got)[e] == 0xFFFFu;
            g = bf16_to_f32(((const uint16_t *)got)[e]);
        } else {
            poison = __float_as_uint(((const float *)got)[e]) == 0xFFFFFFFFu;
            g = ((const float *)got)[e];
        }
        if constexpr (sizeof(Ref) == 2) r = bf16_to_f32(((const uint16_t *)ref)[e]);
        else r = ((const float *)ref)[e];
        float rank; /* excess over the tolerance, capped; 1e30 for NaN/Inf, 2e30 for poison */
        if (poison) {
            rank = 2e30f;
            unwritten++;
        } else if (!isfinite(r)) {
            rank = (g == r) ? 0.f : 1e30f;
        } else if (!isfinite(g)) {
            rank = 1e30f;
            nonfinite++;
        } else {
            rank = fabsf(g - r) / (atol + rtol * fabsf(r));
        }
        if (rank > 1.f) {
            bad++;
            /* 24 bits of the float's exponent+mantissa order the ranks; the index keeps 40 bits */
            const unsigned long long key = ((unsigned long long)(__float_as_uint(fminf(rank, 3e30f)) >> 8) << 40) |
                                           (unsigned long long)(e & 0xFFFFFFFFFFull);
            if (key > worst) worst = key;
        }
    }
    if (bad) atomicAdd(&acc->n_bad, bad);
    if (unwritten) atomicAdd(&acc->n_unwritten, unwritten);
    if (nonfinite) atomicAdd(&acc->n_nonfinite, nonfinite);
    if (worst) atomicMax(&acc->worst_key, worst);
}

template <typename Got, typename Ref>
int compare(const Got *got, const Ref *ref, size_t n, attn_tol tol, attn_dcmp *out)
{
    memset(out, 0, sizeof *out);
    out->count = n;
    CmpAccum *acc = nullptr;
    int st = attn_cuda_status(cudaMalloc(&acc, sizeof(CmpAccum)), "cudaMalloc (compare)");
    if (!st) st = attn_cuda_status(cudaMemset(acc, 0, sizeof(CmpAccum)), "cudaMemset (compare)");
    if (!st && n) {
        compare_kernel<Got, Ref><<<grid_for(n), 256>>>(got, ref, n, (float)tol.atol, (float)tol.rtol, acc);
        st = attn_cuda_launch_status("compare_kernel");
    }
    CmpAccum h = {};
    if (!st) st = attn_cuda_status(cudaMemcpy(&h, acc, sizeof h, cudaMemcpyDeviceToHost), "cudaMemcpy (compare)");
    cudaFree(acc);
    if (st) return st;
    out->n_bad = h.n_bad, out->n_unwritten = h.n_unwritten, out->n_nonfinite = h.n_nonfinite;
    if (h.n_bad) {
        /* the worst element's index is exact below 2^40 elements (1 TB of bf16) */
        out->worst = (size_t)(h.worst_key & 0xFFFFFFFFFFull);
        Got g;
        Ref r;
        st = attn_cuda_status(cudaMemcpy(&g, got + out->worst, sizeof g, cudaMemcpyDeviceToHost), "cudaMemcpy");
        if (!st) st = attn_cuda_status(cudaMemcpy(&r, ref + out->worst, sizeof r, cudaMemcpyDeviceToHost), "cudaMemcpy");
        if (st) return st;
        if constexpr (sizeof(Got) == 2) out->got = attn_bf16_to_f32((uint16_t)g);
        else out->got = (double)g;
        if constexpr (sizeof(Ref) == 2) out->expected = attn_bf16_to_f32((uint16_t)r);
        else out->expected = (double)r;
    }
    return ATTN_OK;
}

/* ---------------------------------------------------------------- the fp32 GPU reference */

/* One warp per (b, h, i) row. Lane c holds dimensions c, c + 32, ... of q and of the output. Keys
 * are visited in ascending order; each score is a warp-wide dot product (shuffle reduction), and
 * the running max, sum and output follow the online softmax in fp32. */
constexpr int kRefMaxDPerLane = ATTN_MAX_D / 32;

__device__ bool ref_key_visible(const attn_gpu_ref_opts &o, long t, long s, int b, int g)
{
    if (o.shape.causal && o.cmp_l == 0 && s > t) return false;
    if (o.window > 0 && (s > t || s < t - o.window + 1)) return false;
    if (o.cmp_l > 0 && !((long)s * o.cmp_d + o.cmp_l - 1 <= t)) return false;
    if (o.key_weights && !(o.key_weights[((size_t)b * o.shape.N + s) * o.shape.G + g] > 0.f)) return false;
    return true;
}

__global__ void reference_kernel(attn_gpu_ref_opts o, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                                 float *out, float *lse)
{
    const attn_shape sh = o.shape;
    const int lane = threadIdx.x % 32;
    const size_t row = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    const size_t rows = (size_t)sh.B * sh.H * sh.M;
    if (row >= rows) return;
    const int i = (int)(row % sh.M), h = (int)((row / sh.M) % sh.H), b = (int)(row / ((size_t)sh.M * sh.H));
    const int g = h / (sh.H / sh.G), D = sh.D;
    const long positions = o.positions > 0 ? o.positions : sh.N;
    const long t = positions - sh.M + i;
    const float scale = sh.scale != 0.f ? sh.scale : 1.f / sqrtf((float)D);

    float qd[kRefMaxDPerLane], acc[kRefMaxDPerLane];
    const uint16_t *qrow = q + (((size_t)b * sh.M + i) * sh.H + h) * D;
#pragma unroll
    for (int c = 0; c < kRefMaxDPerLane; ++c) {
        const int d = lane + 32 * c;
        qd[c] = d < D ? bf16_to_f32(qrow[d]) : 0.f;
        acc[c] = 0.f;
    }
    float m = -INFINITY, l = 0.f;

    /* the keys to visit: a block list, or every key (the rules above filter them) */
    const int32_t *list = nullptr;
    int n_list = 1;
    if (o.block_indices) {
        const long L = o.query_block > 0 ? (sh.M + o.query_block - 1) / o.query_block : sh.M;
        const long li = o.query_block > 0 ? i / o.query_block : i;
        const int heads = o.lists_per_head ? sh.H : sh.G, who = o.lists_per_head ? h : g;
        list = o.block_indices + (((size_t)b * L + li) * heads + who) * (size_t)o.num_blocks;
        n_list = o.num_blocks;
    }
    for (int e = 0; e < n_list; ++e) {
        long s_begin = 0, s_end = sh.N;
        if (list) {
            const int j = list[e];
            if (j < 0) continue;
            s_begin = (long)j * o.block_size;
            s_end = min((long)sh.N, s_begin + o.block_size);
            /* a block listed twice counts once: skip repeats of an earlier entry */
            bool repeat = false;
            for (int e2 = 0; e2 < e; ++e2) repeat |= list[e2] == j;
            if (repeat) continue;
        }
        for (long s = s_begin; s < s_end; ++s) {
            if (!ref_key_visible(o, t, s, b, g)) continue;
            const uint16_t *krow = k + (((size_t)b * sh.N + s) * sh.G + g) * D;
            float dot = 0.f;
#pragma unroll
            for (int c = 0; c < kRefMaxDPerLane; ++c) {
                const int d = lane + 32 * c;
                if (d < D) dot += qd[c] * bf16_to_f32(krow[d]);
            }
#pragma unroll
            for (int off = 16; off > 0; off /= 2) dot += __shfl_xor_sync(0xffffffffu, dot, off);
            float x = dot * scale;
            if (o.key_weights) x += logf(o.key_weights[((size_t)b * sh.N + s) * sh.G + g]);
            const float m_new = fmaxf(m, x);
            const float alpha = expf(m - m_new), p = expf(x - m_new);
            l = l * alpha + p;
            const uint16_t *vrow = v + (((size_t)b * sh.N + s) * sh.G + g) * D;
#pragma unroll
            for (int c = 0; c < kRefMaxDPerLane; ++c) {
                const int d = lane + 32 * c;
                if (d < D) acc[c] = acc[c] * alpha + p * bf16_to_f32(vrow[d]);
            }
            m = m_new;
        }
    }
    float *orow = out + (((size_t)b * sh.M + i) * sh.H + h) * D;
    const float inv = l > 0.f ? 1.f / l : 0.f;
#pragma unroll
    for (int c = 0; c < kRefMaxDPerLane; ++c) {
        const int d = lane + 32 * c;
        if (d < D) orow[d] = acc[c] * inv;
    }
    if (lane == 0 && lse) lse[((size_t)b * sh.H + h) * sh.M + i] = l > 0.f ? m + logf(l) : -INFINITY;
}

/* ---------------------------------------------------------------- timing */

/* Runs are timed on the legacy default stream: it waits for, and is waited for by, every blocking
 * stream (the per-thread default stream too), so the stop event covers all the work a launch
 * queued, wherever it queued it. Lesson code cannot create non-blocking streams (the audit). */

} // namespace

extern "C" int attn_dfill_random_bf16(uint16_t *dst, size_t n, size_t row, float scale, uint64_t seed,
                                      cudaStream_t stream)
{
    if (!dst || row == 0) return attn_fail(ATTN_ERR_BAD_ARGUMENT, "attn_dfill_random_bf16: bad arguments");
    if (!n) return ATTN_OK;
    fill_bf16_kernel<<<grid_for(n), 256, 0, stream>>>(dst, n, row, scale, seed);
    return attn_cuda_launch_status("fill_bf16_kernel");
}

extern "C" int attn_dfill_random_f32(float *dst, size_t n, size_t row, float scale, uint64_t seed, cudaStream_t stream)
{
    if (!dst || row == 0) return attn_fail(ATTN_ERR_BAD_ARGUMENT, "attn_dfill_random_f32: bad arguments");
    if (!n) return ATTN_OK;
    fill_f32_kernel<<<grid_for(n), 256, 0, stream>>>(dst, n, row, scale, seed);
    return attn_cuda_launch_status("fill_f32_kernel");
}

extern "C" int attn_dbf16_to_f32(const uint16_t *src, float *dst, size_t n, cudaStream_t stream)
{
    if (!src || !dst) return attn_fail(ATTN_ERR_NULL_POINTER, "attn_dbf16_to_f32: NULL pointer");
    if (!n) return ATTN_OK;
    bf16_to_f32_kernel<<<grid_for(n), 256, 0, stream>>>(src, dst, n);
    return attn_cuda_launch_status("bf16_to_f32_kernel");
}

extern "C" int attn_dcompare_bf16_f32(const uint16_t *got, const float *ref, size_t n, attn_tol tol, attn_dcmp *out)
{
    return compare(got, ref, n, tol, out);
}

extern "C" int attn_dcompare_bf16_bf16(const uint16_t *got, const uint16_t *ref, size_t n, attn_tol tol,
                                       attn_dcmp *out)
{
    return compare(got, ref, n, tol, out);
}

extern "C" int attn_dcompare_f32_f32(const float *got, const float *ref, size_t n, attn_tol tol, attn_dcmp *out)
{
    return compare(got, ref, n, tol, out);
}

extern "C" int attn_gpu_reference(const attn_gpu_ref_opts *opts, const uint16_t *q, const uint16_t *k,
                                  const uint16_t *v, float *o, float *lse, cudaStream_t stream)
{
    if (!opts || !q || !k || !v || !o) return attn_fail(ATTN_ERR_NULL_POINTER, "attn_gpu_reference: NULL argument");
    /* compressed tokens: the M queries are the last M of `positions`, and there may be fewer keys */
    attn_shape checked = opts->shape;
    if (opts->positions > 0) {
        if (opts->shape.M > opts->positions)
            return attn_fail(ATTN_ERR_M_GT_N, "attn_gpu_reference: M=%d queries but %ld positions", opts->shape.M,
                             opts->positions);
        if (checked.N < checked.M) checked.N = checked.M;
    }
    int st = attn_check_shape(&checked);
    if (st) return st;
    if (opts->shape.D > ATTN_MAX_D) return attn_fail(ATTN_ERR_UNSUPPORTED_D, "attn_gpu_reference: D > %d", ATTN_MAX_D);
    if (opts->block_indices && (opts->num_blocks < 1 || opts->block_size < 1))
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "attn_gpu_reference: block list with T=%d, block size %d",
                         opts->num_blocks, opts->block_size);
    if (opts->cmp_l > 0 && opts->cmp_d < 1)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "attn_gpu_reference: compressed rule with d=%d", opts->cmp_d);
    const size_t rows = (size_t)opts->shape.B * opts->shape.H * opts->shape.M;
    const int warps = 8;
    reference_kernel<<<(unsigned)((rows + warps - 1) / warps), warps * 32, 0, stream>>>(*opts, q, k, v, o, lse);
    return attn_cuda_launch_status("reference_kernel");
}

/* A keyed 64-bit hash of n bytes of device memory, read back in chunks (synchronous). Four lanes of
 * multiply-xorshift over 8-byte words, the tail bytes packed into one more word, the key (different
 * for every run) mixed into each lane, so that no fixed change of the bytes keeps the hash. */
static int guarded_hash(const void *dev, size_t n, uint64_t key, uint8_t *buf, size_t buf_len, uint64_t *out)
{
    const uint64_t mul = 0x9e3779b97f4a7c15ull;
    uint64_t lane[4] = {key ^ 0x243f6a8885a308d3ull, key ^ 0x13198a2e03707344ull, key ^ 0xa4093822299f31d0ull,
                        key ^ 0x082efa98ec4e6c89ull};
    size_t word = 0;
    for (size_t off = 0; off < n; off += buf_len) {
        const size_t len = n - off < buf_len ? n - off : buf_len;
        int st = attn_cuda_status(cudaMemcpy(buf, (const uint8_t *)dev + off, len, cudaMemcpyDeviceToHost),
                                  "cudaMemcpy (the guarded inputs)");
        if (st) return st;
        size_t e = 0;
        for (; e + 8 <= len; e += 8, ++word) {
            uint64_t w;
            memcpy(&w, buf + e, 8);
            uint64_t h = (lane[word & 3] ^ w) * mul;
            lane[word & 3] = h ^ (h >> 29);
        }
        if (e < len) { /* only in the last chunk: buf_len is a multiple of 8 */
            uint64_t w = 0;
            memcpy(&w, buf + e, len - e);
            uint64_t h = (lane[word & 3] ^ w ^ (uint64_t)(len - e) << 56) * mul;
            lane[word & 3] = h ^ (h >> 29);
        }
    }
    uint64_t h = (uint64_t)n * mul;
    for (int x = 0; x < 4; ++x) h = ((h ^ lane[x]) * mul) ^ (h >> 31);
    *out = h;
    return ATTN_OK;
}

/* The hashes of the guarded inputs under `key`; ATTN_OK or a CUDA error. */
static int guarded_hashes(const attn_timing_checks *checks, uint64_t key, uint8_t *buf, size_t buf_len,
                          uint64_t (&out)[ATTN_MAX_GUARDED])
{
    for (int x = 0; x < ATTN_MAX_GUARDED; ++x) {
        out[x] = 0;
        const attn_guarded *g = &checks->inputs[x];
        if (!g->ptr || !g->bytes) continue;
        const int st = guarded_hash(g->ptr, g->bytes, key + 0x632be59bd9b4e019ull * (uint64_t)(x + 1), buf, buf_len, &out[x]);
        if (st) return st;
    }
    return ATTN_OK;
}

static double wall_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}

/* prepare(ctx, rep) timed on the device: how long the test's own input refresh takes. */
static int timed_prepare(const attn_timing_checks *checks, int rep, cudaEvent_t e0, cudaEvent_t e1, double *ms)
{
    int st = attn_cuda_status(cudaEventRecord(e0, cudaStreamLegacy), "cudaEventRecord");
    if (!st) st = checks->prepare(checks->ctx, rep, cudaStreamLegacy);
    if (!st) st = attn_cuda_status(cudaEventRecord(e1, cudaStreamLegacy), "cudaEventRecord");
    if (!st) st = attn_cuda_status(cudaDeviceSynchronize(), "cudaDeviceSynchronize (after prepare)");
    float f = 0.0f;
    if (!st) st = attn_cuda_status(cudaEventElapsedTime(&f, e0, e1), "cudaEventElapsedTime");
    *ms = f;
    return st;
}

/* The L2 flush, then one call timed by this process's clock until the device is idle again. */
static int wall_run(attn_launch_fn fn, void *ctx, void *flush, size_t flush_bytes, double *ms)
{
    int st = attn_cuda_status(cudaMemsetAsync(flush, 0, flush_bytes, cudaStreamLegacy), "L2 flush");
    if (!st) st = attn_cuda_status(cudaDeviceSynchronize(), "cudaDeviceSynchronize (after the L2 flush)");
    const double t0 = wall_ms();
    if (!st) st = fn(ctx, cudaStreamLegacy);
    if (!st) st = attn_cuda_status(cudaDeviceSynchronize(), "cudaDeviceSynchronize (after a timed run)");
    *ms = wall_ms() - t0;
    return st;
}

/* Each round, with the lesson's code in a runner process (common/grading/rpc.h):
 *   1. no runner is alive; the timed inputs are prepared once, timed (how long preparing takes when
 *      nothing else uses the GPU);
 *   2. a fresh runner warms up on other inputs (a call on content of its own, untimed, unchecked);
 *   3. the timed inputs are prepared again, timed: if that takes clearly longer than in 1, the runner
 *      kept the GPU busy after it answered (a kernel left running to work on the inputs as they are
 *      written), and the run fails;
 *   4. the student's call, timed by this process's clock from the request to the answer (the runner
 *      answers when its device work is done), after an L2 flush;
 *   5. the runner is killed at once and waited for: work it left running is lost, so an answer given
 *      before the work was done leaves outputs unwritten, which the check sees;
 *   6. the baseline on the same inputs, timed the same way, with no runner alive;
 *   7. the guarded inputs are hashed again and the outputs checked.
 * Without a runner (both kernels in this process) the same steps time both. */
#define ATTN_PREPARE_SLACK_MS 0.5

extern "C" int attn_time_ab_checked(attn_launch_fn fa, void *ca, attn_launch_fn fb, void *cb,
                                    const attn_timing_checks *checks, int warmup, int reps, attn_timing *ta,
                                    attn_timing *tb, char *why, size_t why_len)
{
    if (why && why_len) why[0] = '\0';
    if (!fa || !fb || !checks || !checks->prepare || !checks->check || !ta || !tb || reps < 1 || warmup < 0) {
        if (why) snprintf(why, why_len, "attn_time_ab_checked: bad arguments");
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "attn_time_ab_checked: bad arguments");
    }
    int dev = 0, l2 = 0;
    int st = attn_cuda_status(cudaGetDevice(&dev), "cudaGetDevice");
    if (!st) st = attn_cuda_status(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev), "L2 size");
    const size_t flush_bytes = 2 * (size_t)(l2 > 0 ? l2 : (64 << 20));
    void *flush = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    if (!st) st = attn_cuda_status(cudaMalloc(&flush, flush_bytes), "cudaMalloc (L2 flush)");
    if (!st) st = attn_cuda_status(cudaEventCreate(&e0), "cudaEventCreate");
    if (!st) st = attn_cuda_status(cudaEventCreate(&e1), "cudaEventCreate");
    double *ma = (double *)calloc((size_t)reps, sizeof(double));
    double *mb = (double *)calloc((size_t)reps, sizeof(double)), dummy;
    char msg[1024] = "";
    int guarded = 0;
    for (int x = 0; x < ATTN_MAX_GUARDED; ++x) guarded |= checks->inputs[x].ptr != NULL && checks->inputs[x].bytes > 0;
    const size_t buf_len = (size_t)16 << 20; /* a multiple of 8 */
    uint8_t *buf = guarded ? (uint8_t *)malloc(buf_len) : NULL;
    if (!st && guarded && !buf) st = attn_fail(ATTN_ERR_OUT_OF_MEMORY, "attn_time_ab_checked: no host memory for the guard");
    uint64_t before[ATTN_MAX_GUARDED], after[ATTN_MAX_GUARDED];
    for (int r = 0; !st && r < warmup + reps; ++r) {
        const int timed = r - warmup; /* < 0 during warm-up */
        double *a_ms = timed >= 0 ? &ma[timed] : &dummy, *b_ms = timed >= 0 ? &mb[timed] : &dummy;
        /* the key changes with every run and is drawn from the clock, so lesson code cannot know it */
        const uint64_t key = 0xd1b54a32d192ed03ull * (uint64_t)(r + 1) ^ (uint64_t)clock() << 17 ^ (uint64_t)(uintptr_t)buf;
        double alone = 0.0, again = 0.0;
        attn_rpc_stop();
        st = timed_prepare(checks, r, e0, e1, &alone);
        /* warm-up of a fresh runner on content of its own (the same buffers; rep numbers past any
         * timed one give other inputs) */
        if (!st) st = checks->prepare(checks->ctx, 1000000 + r, cudaStreamLegacy);
        if (!st) st = attn_cuda_status(cudaDeviceSynchronize(), "cudaDeviceSynchronize (after prepare)");
        if (!st) st = fb(cb, cudaStreamLegacy);
        if (!st) st = attn_cuda_status(cudaDeviceSynchronize(), "cudaDeviceSynchronize (after the warm-up call)");
        if (st) {
            if (why) snprintf(why, why_len, "the warm-up call of run %d: %s: %s", r, attn_status_name(st), attn_error_detail());
            break;
        }
        st = timed_prepare(checks, r, e0, e1, &again);
        if (!st && attn_rpc_alive() && again > 1.5 * alone + ATTN_PREPARE_SLACK_MS) {
            if (why)
                snprintf(why, why_len, "run %d: preparing the inputs took %.3f ms while your process was alive "
                         "and %.3f ms without it: your code kept the GPU busy after its call returned (work "
                         "left running between calls is not allowed: a call returns when its work is done)",
                         r, again, alone);
            st = ATTN_ERR_BAD_ARGUMENT;
            break;
        }
        if (!st && guarded) st = guarded_hashes(checks, key, buf, buf_len, before);
        if (!st) st = wall_run(fb, cb, flush, flush_bytes, b_ms);
        attn_rpc_stop(); /* kill the runner now: what it left running is lost */
        if (!st) st = wall_run(fa, ca, flush, flush_bytes, a_ms);
        if (!st && guarded) st = guarded_hashes(checks, key, buf, buf_len, after);
        if (st) {
            if (why) snprintf(why, why_len, "run %d: %s: %s", r, attn_status_name(st), attn_error_detail());
            break;
        }
        for (int x = 0; x < ATTN_MAX_GUARDED && guarded; ++x)
            if (before[x] != after[x]) {
                const attn_guarded *g = &checks->inputs[x];
                if (why)
                    snprintf(why, why_len,
                             "%s run %d: the input %s (%zu bytes) changed during the timed calls: a kernel wrote "
                             "memory it may only read, and the check after the run would be computed from it",
                             timed >= 0 ? "timed" : "warm-up", timed >= 0 ? timed : r, g->name ? g->name : "?",
                             g->bytes);
                st = ATTN_ERR_BAD_ARGUMENT;
                break;
            }
        if (st) break;
        msg[0] = '\0';
        if (checks->check(checks->ctx, r, msg, sizeof msg) != 0) {
            if (why)
                snprintf(why, why_len, "%s run %d of %d (fresh inputs, poisoned outputs): %s",
                         timed >= 0 ? "timed" : "warm-up", timed >= 0 ? timed : r, timed >= 0 ? reps : warmup, msg);
            st = ATTN_ERR_BAD_ARGUMENT;
            break;
        }
    }
    attn_rpc_stop();
    if (!st) {
        attn_timing_summarize(ma, reps, ta);
        attn_timing_summarize(mb, reps, tb);
    }
    free(ma);
    free(mb);
    free(buf);
    if (flush) cudaFree(flush);
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    return st;
}
