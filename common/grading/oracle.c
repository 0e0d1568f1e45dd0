/* oracle.c - double-precision dense attention from the definition (see oracle.h). */
#include "oracle.h"

#include <math.h>
#include <stdlib.h>

attn_oracle_opts attn_oracle_dense(const attn_shape *shape)
{
    attn_oracle_opts o = {0};
    o.shape = *shape;
    return o;
}

static int check_opts(const attn_oracle_opts *opts)
{
    if (!opts) return attn_fail(ATTN_ERR_NULL_POINTER, "oracle options are NULL");
    int st = attn_check_shape(&opts->shape);
    if (st) return st;
    if (opts->window < 0) return attn_fail(ATTN_ERR_BAD_ARGUMENT, "window=%d must be >= 0", opts->window);
    if (opts->block_indices && (opts->num_blocks < 1 || opts->block_size < 1))
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "block list with T=%d blocks of size %d", opts->num_blocks,
                         opts->block_size);
    if (opts->lists_per_head != 0 && opts->lists_per_head != 1)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "lists_per_head=%d must be 0 or 1", opts->lists_per_head);
    return ATTN_OK;
}

int attn_oracle_visible(const attn_oracle_opts *opts, int b, int h, int i, long s)
{
    const attn_shape *sh = &opts->shape;
    long t = (long)sh->N - sh->M + i;
    if (s < 0 || s >= sh->N) return 0;
    if (sh->causal && s > t) return 0;
    if (opts->window > 0 && (s > t || s < t - opts->window + 1)) return 0;
    if (opts->block_indices) {
        /* one list per kv group [B, M, G, T], or per query head [B, M, H, T] */
        const int lists = opts->lists_per_head ? sh->H : sh->G;
        const int who = opts->lists_per_head ? h : h / (sh->H / sh->G);
        const int32_t *list =
            opts->block_indices + (((size_t)b * sh->M + i) * lists + who) * (size_t)opts->num_blocks;
        int found = 0;
        for (int j = 0; j < opts->num_blocks; ++j)
            if (list[j] >= 0 && s / opts->block_size == list[j]) found = 1;
        if (!found) return 0;
    }
    if (opts->visible && !opts->visible(opts->visible_ctx, b, h, i, t, s)) return 0;
    if (opts->key_weights && !(opts->key_weights[((size_t)b * sh->N + s) * sh->G + h / (sh->H / sh->G)] > 0.0f))
        return 0;
    return 1;
}

/* Scores of one (b, h, i) row into row[N]; -inf where invisible. */
static void score_row(const attn_oracle_opts *opts, const float *q, const float *k, int b, int h, int i,
                      double *row)
{
    const attn_shape *sh = &opts->shape;
    const int D = sh->D, g = h / (sh->H / sh->G);
    const double scale = sh->scale != 0.0f ? (double)sh->scale : 1.0 / sqrt((double)D);
    const float *qrow = q + (((size_t)b * sh->M + i) * sh->H + h) * D;
    for (long s = 0; s < sh->N; ++s) {
        if (!attn_oracle_visible(opts, b, h, i, s)) {
            row[s] = -INFINITY;
            continue;
        }
        const float *krow = k + (((size_t)b * sh->N + s) * sh->G + g) * D;
        double dot = 0.0;
        for (int d = 0; d < D; ++d) dot += (double)qrow[d] * (double)krow[d];
        row[s] = dot * scale;
        if (opts->key_weights) row[s] += log((double)opts->key_weights[((size_t)b * sh->N + s) * sh->G + g]);
    }
}

int attn_oracle_scores(const attn_oracle_opts *opts, const float *q, const float *k, double *s)
{
    int st = check_opts(opts);
    if (st) return st;
    if (!q || !k || !s) return attn_fail(ATTN_ERR_NULL_POINTER, "oracle scores: q, k and s must not be NULL");
    const attn_shape *sh = &opts->shape;
    for (int b = 0; b < sh->B; ++b)
        for (int h = 0; h < sh->H; ++h)
            for (int i = 0; i < sh->M; ++i)
                score_row(opts, q, k, b, h, i, s + (((size_t)b * sh->H + h) * sh->M + i) * sh->N);
    return ATTN_OK;
}

int attn_oracle_forward(const attn_oracle_opts *opts, const float *q, const float *k, const float *v,
                        double *o, double *lse, double *p)
{
    int st = check_opts(opts);
    if (st) return st;
    if (!q || !k || !v || !o)
        return attn_fail(ATTN_ERR_NULL_POINTER, "oracle forward: q, k, v and o must not be NULL");
    const attn_shape *sh = &opts->shape;
    const int D = sh->D, N = sh->N;
    double *row = attn_alloc_f64((size_t)N);
    if (!row) return attn_fail(ATTN_ERR_OUT_OF_MEMORY, "oracle: %d doubles", N);

    for (int b = 0; b < sh->B; ++b)
        for (int i = 0; i < sh->M; ++i)
            for (int h = 0; h < sh->H; ++h) {
                const int g = h / (sh->H / sh->G);
                score_row(opts, q, k, b, h, i, row);
                double mx = -INFINITY;
                for (int s = 0; s < N; ++s)
                    if (row[s] > mx) mx = row[s];
                double sum = 0.0;
                if (mx > -INFINITY)
                    for (int s = 0; s < N; ++s) sum += exp(row[s] - mx); /* exp(-inf) = 0 */
                const double row_lse = mx > -INFINITY ? mx + log(sum) : -INFINITY;
                const double gate = opts->gates ? (double)opts->gates[((size_t)b * sh->M + i) * sh->H + h] : 1.0;

                double *orow = o + (((size_t)b * sh->M + i) * sh->H + h) * D;
                double *prow = p ? p + (((size_t)b * sh->H + h) * sh->M + i) * N : NULL;
                for (int d = 0; d < D; ++d) orow[d] = 0.0;
                for (int s = 0; s < N; ++s) {
                    const double ps = row_lse > -INFINITY ? exp(row[s] - row_lse) : 0.0;
                    if (prow) prow[s] = ps;
                    if (ps == 0.0) continue;
                    const float *vrow = v + (((size_t)b * N + s) * sh->G + g) * D;
                    for (int d = 0; d < D; ++d) orow[d] += ps * (double)vrow[d];
                }
                for (int d = 0; d < D; ++d) orow[d] *= gate;
                if (lse) lse[((size_t)b * sh->H + h) * sh->M + i] = row_lse;
            }
    free(row);
    return ATTN_OK;
}

void attn_oracle_softmax_rows(const float *x, long rows, int n, double *y, double *lse)
{
    for (long r = 0; r < rows; ++r) {
        const float *xr = x + (size_t)r * n;
        double *yr = y + (size_t)r * n;
        double mx = -INFINITY, sum = 0.0;
        for (int j = 0; j < n; ++j)
            if ((double)xr[j] > mx) mx = xr[j];
        if (mx == -INFINITY) {
            for (int j = 0; j < n; ++j) yr[j] = 0.0;
            if (lse) lse[r] = -INFINITY;
            continue;
        }
        for (int j = 0; j < n; ++j) sum += exp((double)xr[j] - mx);
        for (int j = 0; j < n; ++j) yr[j] = exp((double)xr[j] - mx) / sum;
        if (lse) lse[r] = mx + log(sum);
    }
}
