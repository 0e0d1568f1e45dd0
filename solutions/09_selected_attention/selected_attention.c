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

    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: L = attn_nsa_list_heads(shape, p) lists per query, NB = attn_nsa_num_blocks(N, p) blocks.
     * List (b, i, l) starts at indices + ((b * M + i) * L + l) * n (in size_t). Keep a flag `ended`:
     * before the first -1 an entry lies in [0, NB) and is above the previous one; after it, only -1.
     * Name the offending (b, i, list, entry) and its value in the message. */
    const int L = attn_nsa_list_heads(shape, p), n = p->n;
    const long NB = attn_nsa_num_blocks(shape->N, p);
    for (int b = 0; b < shape->B; ++b)
        for (int i = 0; i < shape->M; ++i)
            for (int l = 0; l < L; ++l) {
                const int32_t *list = indices + (((size_t)b * shape->M + i) * L + l) * n;
                int ended = 0;
                for (int e = 0; e < n; ++e) {
                    const int32_t j = list[e];
                    const int ok = ended ? j == -1 : (j == -1 || (j >= 0 && j < NB && (e == 0 || j > list[e - 1])));
                    if (!ok)
                        return attn_fail(ATTN_ERR_BAD_ARGUMENT,
                                         "selection list (b=%d, i=%d, %s %d) entry %d is %d: lists hold ascending "
                                         "blocks in [0, %ld) without repeats, then -1 padding",
                                         b, i, p->heads_share_selection ? "group" : "head", l, e, (int)j, NB);
                    if (j == -1) ended = 1;
                }
            }
    return ATTN_OK;
    /* END SOLUTION */
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

    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: per (b, i, h): t = N - M + i, g = h / (H/G), and the list (b, i, l) with l = g when heads
     * share the selection, l = h otherwise. row_begin; for each entry j until the first -1 (it ends the
     * list: there is no block -1), row_add the keys j*l' .. min((j+1)*l' - 1, t) (t < N, so this also
     * stops at the last key; a block that starts after t gives an empty loop); lse = row_end. */
    const int B = shape->B, M = shape->M, N = shape->N, H = shape->H, G = shape->G, D = shape->D;
    const int L = attn_nsa_list_heads(shape, p), n = p->n;
    const float scale = attn_softmax_scale(shape);
    for (int b = 0; b < B; ++b)
        for (int i = 0; i < M; ++i)
            for (int h = 0; h < H; ++h) {
                const int g = h / (H / G);
                const long t = (long)N - M + i;
                const int32_t *list = indices + (((size_t)b * M + i) * L + (p->heads_share_selection ? g : h)) * n;
                const float *qi = q + (((size_t)b * M + i) * H + h) * D;
                online_row row;
                row_begin(&row, o + (((size_t)b * M + i) * H + h) * D, D);
                for (int e = 0; e < n; ++e) {
                    const int32_t j = list[e];
                    if (j < 0) break; /* -1 pads the list: no block after it */
                    const long first = (long)j * p->l_sel;
                    long last = first + p->l_sel - 1;
                    if (last > t) last = t; /* the token causal rule inside the block holding t */
                    for (long s = first; s <= last; ++s) {
                        const size_t key = ((size_t)b * N + s) * G + g;
                        row_add(&row, scale * row_dot(qi, k + key * D, D), v + key * D);
                    }
                }
                lse[((size_t)b * H + h) * M + i] = row_end(&row);
            }
    return ATTN_OK;
    /* END SOLUTION */
}
