/*
 * selected_attention.c - lesson 09, C part: checking block lists, and attention over the listed
 * blocks of each query (NSA's selected branch) on the CPU.
 */
#include "selected_attention.h"

#include <math.h>

#include "online_row.h" /* row_begin, row_dot, row_add, row_end: lesson 02's streaming softmax, given */

/* The checks both functions share: shape, parameters, causal. */
static int check_problem(const char *fn, const attn_shape *shape, const attn_nsa_params *p)
{
    int st = attn_check_shape(shape);
    if (st) return st;
    if ((st = attn_nsa_check(p)) != ATTN_OK) return st;
    if (!shape->causal)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "%s: selected attention is causal, shape->causal must be 1", fn);
    return ATTN_OK;
}

int nsa_selection_check(const attn_shape *shape, const attn_nsa_params *p, const int32_t *indices)
{
    int st = check_problem("nsa_selection_check", shape, p);
    if (st) return st;
    if (!indices) return attn_fail(ATTN_ERR_NULL_POINTER, "nsa_selection_check: indices must not be NULL");

    /* TODO (about 20 lines): L = attn_nsa_list_heads(shape, p) lists per query, NB = attn_nsa_num_blocks(N, p) blocks.
     * List (b, i, l) starts at indices + ((b * M + i) * L + l) * n (in size_t). Keep a flag `ended`:
     * before the first -1 an entry lies in [0, NB) and is above the previous one; after it, only -1.
     * Name the offending (b, i, list, entry) and its value in the message. */
    return ATTN_ERR_NOT_IMPLEMENTED;
}

int nsa_selected_attention_cpu(const attn_shape *shape, const attn_nsa_params *p, const float *q, const float *k,
                               const float *v, const int32_t *indices, float *o, float *lse)
{
    int st = check_problem("nsa_selected_attention_cpu", shape, p);
    if (st) return st;
    if (!q || !k || !v || !indices || !o || !lse)
        return attn_fail(ATTN_ERR_NULL_POINTER,
                         "nsa_selected_attention_cpu: q, k, v, indices, o and lse must not be NULL");
    if ((st = nsa_selection_check(shape, p, indices)) != ATTN_OK) return st;

    /* TODO (about 25 lines): per (b, i, h): t = N - M + i, g = h / (H/G), and the list (b, i, l) with l = g when heads
     * share the selection, l = h otherwise. row_begin; for each entry j until the first -1 (it ends the
     * list: there is no block -1), row_add the keys j*l' .. min((j+1)*l' - 1, t) (t < N, so this also
     * stops at the last key; a block that starts after t gives an empty loop); lse = row_end. */
    return ATTN_ERR_NOT_IMPLEMENTED;
}
