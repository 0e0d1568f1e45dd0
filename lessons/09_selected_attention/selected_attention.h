/*
 * selected_attention.h - lesson 09: NSA selected-block attention. The contract: do not edit.
 *
 * Native Sparse Attention's second branch (common/nsa.h has every rule). Lesson 08 chose, for every
 * query position t, n selection blocks of l' keys; block j covers keys [j*l', (j+1)*l' - 1]. Query t
 * of head h now attends to the keys of its list only, with the causal rule s <= t (which matters
 * inside the block that holds t):
 *
 *     S[s] = scale * q[t,h] . k[s,g]        for s in a listed block and s <= t    (g = h / (H/G))
 *     o_slc[t,h] = sum_s softmax(S)[s] v[s,g],   lse_slc[t,h] = log sum_s exp(S[s])
 *
 * Lists: indices [B, M, L, n] int32 with L = G when p->heads_share_selection = 1 (the paper's default:
 * the H/G heads of kv group g share list (b, i, g)) or L = H when 0 (list (b, i, h) per query head).
 * A list holds ascending block numbers in [0, ceil(N / l')), then -1 up to n entries. Lists made by
 * lesson 08 always hold block 0, the block of t and the one before it; this lesson accepts any list
 * with that layout (a block that starts after t adds nothing). A row whose list is empty sees no key:
 * o = 0, lse = -inf.
 *
 * Layouts (common/README.md, "Conventions"): q, o [B, M, H, D]; k, v [B, N, G, D]; lse [B, H, M]
 * (natural log). Query i sits at position t = N - M + i. Selected attention is causal by definition:
 * shape->causal must be 1. Only l' (p->l_sel), n (p->n) and heads_share_selection are used here, but
 * the whole parameter set must pass attn_nsa_check.
 */
#ifndef SELECTED_ATTENTION_H
#define SELECTED_ATTENTION_H

#include <cuda_runtime_api.h>

#include "attn.h"
#include "nsa.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- C part (host memory, fp32) */

/* ATTN_OK if every list of indices [B, M, L, n] keeps the layout above: entries strictly ascending
 * and in [0, ceil(N / l')) up to the first -1, then only -1. ATTN_ERR_BAD_ARGUMENT naming the first
 * offending (b, i, list, entry) otherwise. The CUDA kernel cannot check its lists: check a host copy
 * with this before uploading it. */
int nsa_selection_check(const attn_shape *shape, const attn_nsa_params *p, const int32_t *indices);

/* Selected attention on the CPU (fp32): for each (b, i, h), the keys of the listed blocks up to t, with
 * lesson 02's online softmax. Checks its lists with nsa_selection_check first. */
int nsa_selected_attention_cpu(const attn_shape *shape, const attn_nsa_params *p, const float *q, const float *k,
                               const float *v, const int32_t *indices, float *o, float *lse);

/* ---------------------------------------------------------------- CUDA part (device memory, bf16) */

/* Selected attention on the GPU: bf16 q, k, v, o (16-byte aligned), fp32 lse, int32 indices (4-byte
 * aligned), all device pointers; D = 64 or 128; any B, M <= N, H % G == 0, any l' and n. The kernel
 * loads each listed block once for the heads that share the list (H/G of them with
 * heads_share_selection = 1). It cannot check device lists; what it does with a bad one: a negative
 * entry ends the list, and an entry whose block starts after t (out of range included) is skipped,
 * so that no list makes it read out of bounds. A repeated entry counts its keys twice: check lists
 * on the host with nsa_selection_check. It tries nsa_selected_attention_window_cuda first and serves
 * every call that returns ATTN_ERR_BAD_ARGUMENT or ATTN_ERR_NOT_IMPLEMENTED itself. */
int nsa_selected_attention_cuda(const attn_shape *shape, const attn_nsa_params *p, const uint16_t *q,
                                const uint16_t *k, const uint16_t *v, const int32_t *indices, uint16_t *o,
                                float *lse, cudaStream_t stream);

/* Optional: the fast path for the paper's shape (selected_window.cu). The same arguments, results and
 * treatment of bad device lists as nsa_selected_attention_cuda, for shared lists
 * (heads_share_selection = 1) with H/G = 16, D = 128, l' = 64, n <= 16, B <= 65535 and B * N < 2^31, on
 * a GPU of compute capability 9.0 or newer, with sm_90 code in the build and a driver that encodes
 * tensor maps: a block serves 8 neighbouring positions of one kv group and loads each K/V tile that
 * any of them chose once. After the same argument checks (and their codes) as
 * nsa_selected_attention_cuda, any other call returns ATTN_ERR_BAD_ARGUMENT, launches nothing and
 * writes nothing; attn_error_detail() says what it does not take. The stub returns
 * ATTN_ERR_NOT_IMPLEMENTED for every call that passes the checks. */
int nsa_selected_attention_window_cuda(const attn_shape *shape, const attn_nsa_params *p, const uint16_t *q,
                                       const uint16_t *k, const uint16_t *v, const int32_t *indices, uint16_t *o,
                                       float *lse, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
