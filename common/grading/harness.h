/*
 * harness.h - GPU helpers for the tests only: fresh device inputs, comparisons on the device, a simple
 * fp32 GPU reference for large shapes, and checked A/B timing. Lesson code may not call anything
 * declared here (the grader's audit refuses it; see common/README.md): these functions compute
 * answers, and a lesson that called them would be graded on the harness's work.
 */
#ifndef ATTN_HARNESS_H
#define ATTN_HARNESS_H

#include <cuda_runtime_api.h>
#include <stdint.h>

#include "attn.h"
#include "attn_gpu.h"
#include "check.h"
#include "timing.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- fresh inputs on the device */

/* Fill dst[0..n) with random values drawn on the device from `seed`: normal-like values times
 * `scale`, with a per-row (every `row` elements) factor between 0.25 and 2 and rare outliers, like
 * attn_fill_random. The same seed gives the same values; a different seed, different content at
 * the same address (what the checked timing uses between timed calls). */
int attn_dfill_random_bf16(uint16_t *dst, size_t n, size_t row, float scale, uint64_t seed, cudaStream_t stream);
int attn_dfill_random_f32(float *dst, size_t n, size_t row, float scale, uint64_t seed, cudaStream_t stream);

/* dst[e] = src[e] converted from bf16 to fp32 (fp32 baselines read the same values as bf16 kernels). */
int attn_dbf16_to_f32(const uint16_t *src, float *dst, size_t n, cudaStream_t stream);

/* ---------------------------------------------------------------- comparisons on the device */

/* Result of a device comparison: elements out of tolerance (poison and NaN included), of them
 * never written (the all-ones poison) and NaN/Inf; the worst element's flat index and values. */
typedef struct {
    size_t count, n_bad, n_unwritten, n_nonfinite, worst;
    double got, expected;
} attn_dcmp;

/* |got - ref| <= atol + rtol |ref| for every element (an infinite ref must be matched exactly).
 * Types: got bf16 or fp32, ref bf16 or fp32 (the letters say which). Synchronous. */
int attn_dcompare_bf16_f32(const uint16_t *got, const float *ref, size_t n, attn_tol tol, attn_dcmp *out);
int attn_dcompare_bf16_bf16(const uint16_t *got, const uint16_t *ref, size_t n, attn_tol tol, attn_dcmp *out);
int attn_dcompare_f32_f32(const float *got, const float *ref, size_t n, attn_tol tol, attn_dcmp *out);

/* ---------------------------------------------------------------- a GPU reference for large shapes */

/* Attention in fp32 on the GPU, one warp per (b, h, i) row, straight from the definition: slow and
 * obvious, like the oracle (tested against it in tests/test_common.c), for shapes where the CPU
 * oracle would take minutes. Visibility rules (all that are set apply), t = positions - M + i:
 *   causal (shape.causal)   key s visible iff s <= t
 *   window > 0              t - window + 1 <= s <= t
 *   blocks                  s in a listed block: lists [B, L, G, T] where L = M (one list per query)
 *                           or ceil(M / query_block) when query_block > 0 (one per block of queries),
 *                           per kv head g (or per query head h, [B, L, H, T], with lists_per_head);
 *                           block j covers keys [j*block_size, (j+1)*block_size - 1]; -1 pads
 *   key_weights             [B, N, G]: weight w >= 0 multiplies the key's probability (0 hides it)
 *   cmp_l > 0               the keys are NSA compressed tokens: key i visible iff i*cmp_d + cmp_l - 1 <= t
 * `positions` (0: shape.N) is the length of the sequence the queries sit in; it differs from the
 * number of keys shape.N only for compressed tokens. Inputs bf16 (the kernels' inputs), outputs
 * fp32: o [B, M, H, D] (rows that see nothing: 0) and lse [B, H, M] (-inf there). */
typedef struct {
    attn_shape shape;
    long positions;
    int window;
    const int32_t *block_indices; /* device pointer or NULL */
    int num_blocks, block_size, query_block, lists_per_head;
    const float *key_weights; /* device pointer or NULL */
    int cmp_l, cmp_d;
} attn_gpu_ref_opts;

int attn_gpu_reference(const attn_gpu_ref_opts *opts, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                       float *o, float *lse, cudaStream_t stream);

/* ---------------------------------------------------------------- checked A/B timing */

/* A guarded input: device memory a test hands to the kernels (optional, at most ATTN_MAX_GUARDED
 * per run, in attn_timing_checks.inputs below). After every (A, B) pair, before check, each must
 * hold exactly what it held after prepare (a keyed hash of its bytes, read back to the host). A kernel that overwrites its inputs (empties the block lists, zeroes K) so
 * that a reference computed afterwards from them is trivial fails the run. */
#define ATTN_MAX_GUARDED 8
typedef struct {
    const void *ptr; /* device memory */
    size_t bytes;
    const char *name;
} attn_guarded;

/* What attn_time_ab_checked does around every run, warm-up included (none of it is timed):
 *   prepare(ctx, rep)  give the inputs of both kernels new content (same addresses: a kernel that
 *                      remembers its last input or output gains nothing) and poison the outputs;
 *   check(ctx, rep)    after both kernels ran on that content: compare the student's output with the
 *                      baseline's (or a reference's) over every element; return 0 when it matches,
 *                      otherwise nonzero with a message in msg;
 *   inputs             hashed before and after the two calls (see attn_guarded). */
typedef struct {
    int (*prepare)(void *ctx, int rep, cudaStream_t stream);
    int (*check)(void *ctx, int rep, char *msg, size_t msg_len);
    void *ctx;
    attn_guarded inputs[ATTN_MAX_GUARDED]; /* zero-filled entries (ptr NULL) are ignored */
} attn_timing_checks;

/* Time A (the baseline, in this process) and B (the lesson's call, through the RPC proxy) for
 * warmup + reps rounds. Each round: stop the runner; time prepare with no runner alive; start a fresh
 * runner and warm it up with one call on other content (rep 1000000 + r); prepare again, timed, and
 * fail when it takes clearly longer than alone (the runner kept the GPU busy after answering); hash
 * the guarded inputs; flush the L2 and time B by the wall clock from request to answer (the runner
 * answers when its device is idle); stop the runner, so that work it left running is lost; flush and
 * time A (launch to device idle) with no runner alive; hash again; check. Returns ATTN_OK, or nonzero
 * with the reason in `why` (a CUDA error, a guarded input that changed, or the first failed check:
 * "timed run 3: ..."). Medians of the timed rounds go to ta and tb. */
int attn_time_ab_checked(attn_launch_fn fa, void *ca, attn_launch_fn fb, void *cb, const attn_timing_checks *checks,
                         int warmup, int reps, attn_timing *ta, attn_timing *tb, char *why, size_t why_len);

#ifdef __cplusplus
}
#endif
#endif
