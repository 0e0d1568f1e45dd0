/*
 * fused_nsa.h - lesson 10: the whole NSA forward, its three branches gated and summed. The contract:
 * do not edit.
 *
 * Native Sparse Attention (common/nsa.h has every rule; lessons 07-09 built the branches one by one)
 * gives query position t of head h three attentions over the same keys and mixes them:
 *
 *   o[t,h] = g_cmp[t,h] * o_cmp[t,h] + g_slc[t,h] * o_slc[t,h] + g_swa[t,h] * o_swa[t,h]
 *
 *   compression  k_cmp = phi(k), v_cmp = phi(v): token i summarises keys [i*d, i*d + l - 1],
 *                NC = max(0, floor((N - l) / d) + 1); mean mode phi = mean of the l rows; linear mode
 *                phi(x) = sum_{r,c} (x[r,c] + pos[r,c]) w[g, r*D + c, :] (w_k, w_v [G, l*D, D], pos [l, D]
 *                added to the keys only)
 *   compressed   attention over the tokens i with i*d + l - 1 <= t: o_cmp, lse_cmp (none: 0, -inf)
 *   importance   p_cmp = exp(scale q.k_cmp - lse_cmp); p_slc[j] = sum_i p_cmp[i] overlap(i, j) / d;
 *                summed over the H/G heads of a kv group (heads_share_selection = 1) or per head (0)
 *   top-n        candidates j*l' <= t; block 0, the block holding t and the one before it forced (they
 *                count towards n); the rest by fp32 score, ties to the lower index; fewer candidates than
 *                n: all, then -1; ascending
 *   selected     attention over the keys of the listed blocks with s <= t: o_slc, lse_slc
 *   window       attention over keys [t - w + 1, t]: o_swa, lse_swa
 *
 * Layouts (common/README.md, "Conventions"): q, o [B, M, H, D]; k, v [B, N, G, D]; gates g_cmp, g_slc,
 * g_swa [B, M, H] fp32 (any values; the model's are in [0, 1], all 1 is the plain sum); lse_* [B, H, M]
 * (natural log, fp32); block_indices [B, M, L, n] int32 with L = G (shared selection) or H (per head).
 * Query i sits at position t = N - M + i; query head h reads kv head h / (H / G). NSA is causal:
 * shape->causal must be 1. Mean mode ignores w_k, w_v and pos (they may be NULL); linear mode needs
 * all three. bf16 as uint16_t.
 *
 * The four "weights" outputs lse_cmp, lse_slc, lse_swa and block_indices are optional: NULL means not
 * returned (nothing is written there), and o is the same either way.
 */
#ifndef FUSED_NSA_H
#define FUSED_NSA_H

#include <cuda_runtime_api.h>

#include "attn.h"
#include "nsa.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- C part (host memory, fp32) */

/* The whole forward on the CPU in fp32, in the order the math reads: compression, compressed
 * attention, importance and top-n, selected and window attention, the gated sum. */
int nsa_forward_cpu(const attn_shape *shape, const attn_nsa_params *p, const float *q, const float *k,
                    const float *v, const float *w_k, const float *w_v, const float *pos, const float *g_cmp,
                    const float *g_slc, const float *g_swa, float *o, float *lse_cmp, float *lse_slc,
                    float *lse_swa, int32_t *block_indices);

/* ---------------------------------------------------------------- CUDA part (device memory, bf16) */

/* Bytes of device workspace nsa_forward_cuda needs for this problem (compressed K and V, o_cmp, the
 * lists when block_indices is NULL, the block scores). 0 for arguments nsa_forward_cuda rejects. */
size_t nsa_forward_workspace_bytes(const attn_shape *shape, const attn_nsa_params *p);

/* nsa_forward_cpu on the GPU: bf16 q, k, v, w_k, w_v, pos, o (16-byte aligned); fp32 gates and lse_*,
 * int32 block_indices (4-byte aligned); all device pointers; D = 64 or 128; any B, M <= N, H % G == 0,
 * both compression modes, shared and per-head selection. The compressed k and v are rounded to bf16,
 * and in linear mode each key row plus pos is rounded to bf16 before the map (what a tensor-core map
 * reads, lesson 07); everything else accumulates in fp32 and the top-n ranks fp32 scores. workspace:
 * at least nsa_forward_workspace_bytes(shape, p) bytes of device memory, 16-byte aligned. Graph-
 * capturable: it only enqueues work on `stream` (no allocation, no synchronisation). */
int nsa_forward_cuda(const attn_shape *shape, const attn_nsa_params *p, const uint16_t *q, const uint16_t *k,
                     const uint16_t *v, const uint16_t *w_k, const uint16_t *w_v, const uint16_t *pos,
                     const float *g_cmp, const float *g_slc, const float *g_swa, uint16_t *o, float *lse_cmp,
                     float *lse_slc, float *lse_swa, int32_t *block_indices, void *workspace,
                     size_t workspace_bytes, cudaStream_t stream);

/* ---------------------------------------------------------------- attention weights (inspection)
 *
 * One branch's probability matrix for one (b, h), rebuilt from q, k and that branch's lse as the
 * forward returned it: weights[i, s] = exp(scale q[b,i,h] . key_s - lse[b,h,i]) on the keys the branch
 * lets position t = N - M + i see, 0 elsewhere (and 0 on a row whose lse is -inf). Each rebuilt row sums
 * to 1 over its visible keys. */
typedef enum {
    NSA_WEIGHTS_CMP = 0,      /* [M, NC]: over the compressed tokens (key_s = k_cmp[s], lse_cmp) */
    NSA_WEIGHTS_SLC = 1,      /* [M, N]: over the keys of the listed blocks, s <= t (lse_slc) */
    NSA_WEIGHTS_SWA = 2,      /* [M, N]: over the window t - w + 1 .. t (lse_swa) */
    NSA_WEIGHTS_CMP_KEYS = 3, /* [M, N]: the compressed weights spread over the keys (nsa_cmp_weights_to_keys_*) */
} nsa_weights_kind;

/* The weights of branch `kind` (CMP, SLC or SWA) for batch b, head h into weights [M, NC] or [M, N].
 * The branch's own lse is read (lse_cmp, lse_slc or lse_swa); the other two may be NULL. CMP compresses
 * the keys of (b, h / (H/G)) again (w_k and pos in linear mode); SLC reads block_indices (otherwise
 * ignored, may be NULL). */
int nsa_weights_cpu(const attn_shape *shape, const attn_nsa_params *p, int kind, int b, int h, const float *q,
                    const float *k, const float *w_k, const float *pos, const int32_t *block_indices,
                    const float *lse_cmp, const float *lse_slc, const float *lse_swa, float *weights);

/* The compressed weights [M, NC] as a map over the keys [M, N]: token c's weight is shared equally by
 * the l keys it covers (weight / l each); a key covered by several overlapping tokens gets the sum.
 * A row keeps its sum. */
int nsa_cmp_weights_to_keys_cpu(const attn_shape *shape, const attn_nsa_params *p, const float *cmp_weights,
                                float *key_weights);

/* A summary of one weights matrix of `kind` for (b, h) (host memory, rebuilt on the CPU or downloaded).
 * A matrix without entries (CMP with NC = 0) has every statistic 0 but gate_mean. */
typedef struct {
    double mean, std, min, max; /* over all M x cols entries */
    double entropy;             /* -sum_s w ln w of each row that sees a key, averaged over those rows (nats);
                                   0 when no row sees one */
    double sparsity;            /* share of the entries that are exactly 0 */
    double gate_mean;           /* the mean of the branch's gate over the M positions of (b, h) */
} nsa_weights_stats;

/* gate: the branch's gates [B, M, H] (g_cmp for CMP and CMP_KEYS, g_slc, g_swa). */
int nsa_weights_summary(const attn_shape *shape, const attn_nsa_params *p, int kind, int b, int h,
                        const float *weights, const float *gate, nsa_weights_stats *stats);

/* *worst = the largest deviation of a weights matrix of `kind` for (b, h) from a probability matrix:
 * max over rows of |row sum over the visible keys - 1| (- 0 for a row that sees nothing), of any
 * negative entry and of any nonzero entry outside the visible keys (a NaN makes it infinite).
 * block_indices for SLC (otherwise ignored). ATTN_OK whatever the deviation. */
int nsa_weights_check(const attn_shape *shape, const attn_nsa_params *p, int kind, int b, int h,
                      const int32_t *block_indices, const float *weights, double *worst);

/* nsa_weights_cpu on the GPU: bf16 q, k, w_k, pos, fp32 lse_*, int32 block_indices, fp32 weights, all
 * device pointers; D = 64 or 128. CMP compresses the keys of batch b into `workspace` first (rounded
 * like the forward's, so that rows sum to 1 with the forward's lse_cmp): at least
 * nsa_forward_workspace_bytes(shape, p) bytes, 16-byte aligned (SLC and SWA use none: NULL, 0). */
int nsa_weights_cuda(const attn_shape *shape, const attn_nsa_params *p, int kind, int b, int h, const uint16_t *q,
                     const uint16_t *k, const uint16_t *w_k, const uint16_t *pos, const int32_t *block_indices,
                     const float *lse_cmp, const float *lse_slc, const float *lse_swa, float *weights,
                     void *workspace, size_t workspace_bytes, cudaStream_t stream);

/* nsa_cmp_weights_to_keys_cpu on the GPU (fp32 device pointers). */
int nsa_cmp_weights_to_keys_cuda(const attn_shape *shape, const attn_nsa_params *p, const float *cmp_weights,
                                 float *key_weights, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
