/*
 * oracle.h - the double-precision reference every lesson is graded against.
 *
 * Dense attention straight from the definition, in double, one (b, h, i) row at a time:
 *
 *     S[s]  = scale * sum_d q[b,i,h,d] * k[b,s,g,d]        g = h / (H/G), for visible keys s
 *     lse   = log(sum_s exp(S[s]))                          (natural log; -inf if nothing visible)
 *     P[s]  = exp(S[s] - lse)                               (0 for keys that are not visible)
 *     o[d]  = gate[b,i,h] * sum_s P[s] * v[b,s,g,d]         (gate = 1 without gating)
 *
 * A key is visible when every rule that is switched on allows it (t = N - M + i):
 *     causal         s <= t
 *     window w > 0   t - w + 1 <= s <= t            (w keys including the query's own position)
 *     block list     s lies in one of the blocks listed for (b, i, g): block_indices[b,i,g,0..T-1],
 *                    block j covering keys [j*block_size, (j+1)*block_size - 1]; -1 pads the list.
 *                    With lists_per_head the lists are per query head instead: block_indices[b,i,h,..]
 *                    ([B, M, H, T], NSA's selection with heads_share_selection = 0)
 *     callback       visible(ctx, b, h, i, t, s) != 0
 *     key weights    key_weights[b,s,g] > 0
 * With key weights (lesson 06's token keep-masks), a visible key's probability is also multiplied by
 * its weight before normalisation: S[s] gains log(key_weights[b,s,g]), so that
 *     P[s] = w_s exp(S[s]) / sum_s' w_s' exp(S[s']),   lse = log(sum_s w_s exp(S[s])).
 * A row with no visible key has o = 0 and lse = -inf.
 *
 * It shares no code with any solution: keep it slow and obvious.
 */
#ifndef ATTN_ORACLE_H
#define ATTN_ORACLE_H

#include "attn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef int (*attn_visible_fn)(void *ctx, int b, int h, int i, long t, long s);

typedef struct {
    attn_shape shape;             /* B, M, N, H, G, D, scale, causal */
    int window;                   /* 0: no window; w > 0: keys t-w+1 .. t */
    const int32_t *block_indices; /* NULL, or [B, M, G, T] ascending, padded with -1 */
    int num_blocks;               /* T */
    int block_size;               /* keys per block */
    attn_visible_fn visible;      /* NULL, or an arbitrary extra rule */
    void *visible_ctx;
    const float *gates;           /* NULL, or [B, M, H]: o is multiplied by the gate */
    const float *key_weights;     /* NULL, or [B, N, G]: weight w >= 0 of each key (0 hides it) */
    int lists_per_head;           /* 0: block_indices is [B, M, G, T], one list per kv group (the default);
                                     1: [B, M, H, T], one list per query head */
} attn_oracle_opts;

/* Options for plain dense attention of the given shape (no window, blocks, callback, gates; lists per
 * kv group should block_indices be set). */
attn_oracle_opts attn_oracle_dense(const attn_shape *shape);

/* 1 if key s is visible from query i of head h in batch b under every rule in opts. */
int attn_oracle_visible(const attn_oracle_opts *opts, int b, int h, int i, long s);

/* Inputs are float (bf16 lessons convert theirs first). Outputs are double:
 *   o   [B, M, H, D]  required
 *   lse [B, H, M]     optional (NULL)
 *   p   [B, H, M, N]  optional (NULL): the probabilities, 0 on invisible keys
 * Returns ATTN_OK or an error for bad options. */
int attn_oracle_forward(const attn_oracle_opts *opts, const float *q, const float *k, const float *v,
                        double *o, double *lse, double *p);

/* Scores only: s [B, H, M, N] = scale * q.k (+ log w with key weights) on visible keys, -inf elsewhere. */
int attn_oracle_scores(const attn_oracle_opts *opts, const float *q, const float *k, double *s);

/* Row softmax of x [rows, n] in double: y = exp(x - max) / sum; a row of all -inf gives zeros.
 * lse (optional, [rows]) receives log(sum exp(x)). */
void attn_oracle_softmax_rows(const float *x, long rows, int n, double *y, double *lse);

#ifdef __cplusplus
}
#endif
#endif
