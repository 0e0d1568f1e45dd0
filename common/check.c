/* check.c - comparisons with diagnostics and speed reporting (see check.h). */
#include "check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Sizes of the four layout axes for a shape. */
static void layout_dims(attn_layout layout, const attn_shape *s, long dims[4])
{
    dims[0] = dims[1] = dims[2] = dims[3] = 1;
    switch (layout) {
    case ATTN_LAYOUT_BMHD: dims[0] = s->B, dims[1] = s->M, dims[2] = s->H, dims[3] = s->D; break;
    case ATTN_LAYOUT_BHM: dims[0] = s->B, dims[1] = s->H, dims[2] = s->M, dims[3] = 1; break;
    case ATTN_LAYOUT_BHMN: dims[0] = s->B, dims[1] = s->H, dims[2] = s->M, dims[3] = s->N; break;
    }
}

static void unflatten(size_t idx, const long dims[4], int c[4])
{
    for (int a = 3; a >= 0; --a) {
        c[a] = (int)(idx % (size_t)dims[a]);
        idx /= (size_t)dims[a];
    }
}

/* Query index i and head h of a coordinate tuple. */
static int coord_query(attn_layout layout, const int c[4]) { return layout == ATTN_LAYOUT_BMHD ? c[1] : c[2]; }
static int coord_head(attn_layout layout, const int c[4]) { return layout == ATTN_LAYOUT_BMHD ? c[2] : c[1]; }

static int format_coord(char *buf, size_t n, attn_layout layout, const attn_shape *s, const int c[4])
{
    long t = attn_query_pos(s, coord_query(layout, c));
    switch (layout) {
    case ATTN_LAYOUT_BMHD:
        return snprintf(buf, n, "b=%d i=%d (t=%ld) h=%d d=%d", c[0], c[1], t, c[2], c[3]);
    case ATTN_LAYOUT_BHM: return snprintf(buf, n, "b=%d h=%d i=%d (t=%ld)", c[0], c[1], c[2], t);
    case ATTN_LAYOUT_BHMN:
        return snprintf(buf, n, "b=%d h=%d i=%d (t=%ld) key s=%d", c[0], c[1], c[2], t, c[3]);
    }
    return 0;
}

typedef struct {
    const float *f32;
    const uint16_t *bf16;
    const double *ref64;
    const float *ref32;
} cmp_input;

static double got_at(const cmp_input *in, size_t i)
{
    return in->f32 ? (double)in->f32[i] : (double)attn_bf16_to_f32(in->bf16[i]);
}
static int poison_at(const cmp_input *in, size_t i)
{
    return in->f32 ? attn_is_poison_f32(in->f32[i]) : attn_is_poison_bf16(in->bf16[i]);
}
static double ref_at(const cmp_input *in, size_t i) { return in->ref64 ? in->ref64[i] : (double)in->ref32[i]; }

/* The first hint whose pattern matches the failures. */
static const char *pick_hint(const attn_cmp *r, attn_layout layout, const attn_shape *s, int window,
                             const unsigned char *bad_row, const unsigned char *bad_head, const unsigned char *bad_b,
                             int min_bad_dim, char *buf, size_t n)
{
    if (r->n_unwritten)
        return "some elements still hold the NaN poison, i.e. were never written: does the grid cover every "
               "(b, i, h) row and every d? look at the bounds checks and the grid size";
    if (r->n_nonfinite)
        return "NaN/Inf where a finite value is expected: exp overflows if the row max is not subtracted first, "
               "and a row or tile where every key is masked gives exp(-inf - (-inf)) = NaN";
    if (r->n_bad * 100 < r->count || (r->n_bad < 4 && r->count >= 64))
        return "only a few elements are slightly out of tolerance: this looks like rounding (summation order, "
               "float exp of large arguments, a lower-precision intermediate) rather than a logic error";
    int rows_bad = 0, heads_bad = 0, batches_bad = 0;
    for (int i = 0; i < s->M; ++i) rows_bad += bad_row[i];
    for (int h = 0; h < s->H; ++h) heads_bad += bad_head[h];
    for (int b = 0; b < s->B; ++b) batches_bad += bad_b[b];
    if (s->B > 1 && !bad_b[0] && batches_bad)
        return "only batches b >= 1 are wrong: check the batch offset of each tensor (and use 64-bit offsets)";
    if (s->H > 1 && heads_bad < s->H) {
        if (s->H != s->G)
            return "only some heads are wrong: check the GQA mapping, query head h reads kv head h / (H/G)";
        return "only some heads are wrong: check the head offset in your indexing";
    }
    if (window > 0) {
        int only_past_w = 1;
        for (int i = 0; i < s->M; ++i)
            if (bad_row[i] && attn_query_pos(s, i) < window) only_past_w = 0;
        if (only_past_w && rows_bad)
            return "only positions t >= w are wrong: check the window's lower edge (keys t - w + 1 .. t)";
    }
    if (s->M > 1 && rows_bad && !bad_row[s->M - 1]) {
        if (s->causal)
            return "the last query (which sees every key) is right but earlier rows are wrong: check the causal "
                   "mask, key s is visible iff s <= t with t = N - M + i";
        return "the last query is right but earlier rows are wrong: this case is NOT causal, is a mask applied "
               "where none was asked for?";
    }
    if (s->causal && s->M > 1 && rows_bad && rows_bad < s->M && bad_row[s->M - 1] && !bad_row[0])
        return "late rows are wrong but early ones are right: check how you handle rows that see many keys "
               "(rescaling of the running sum and accumulator between tiles?)";
    if (layout == ATTN_LAYOUT_BMHD && min_bad_dim > 0) {
        snprintf(buf, n, "only dims d >= %d are wrong: check the loop over D and how threads split it",
                 min_bad_dim);
        return buf;
    }
    if (rows_bad == s->M)
        return "every row is off: check the softmax scale (1/sqrt(D)), the max subtraction and the division by "
               "the row sum";
    return NULL;
}

static int compare_impl(attn_cmp *r, const char *what, attn_layout layout, const attn_shape *s, int window,
                        const cmp_input *in, attn_tol tol)
{
    long dims[4];
    layout_dims(layout, s, dims);
    memset(r, 0, sizeof *r);
    r->count = (size_t)dims[0] * dims[1] * dims[2] * dims[3];
    unsigned char *bad_row = calloc((size_t)s->M, 1), *bad_head = calloc((size_t)s->H, 1),
                  *bad_b = calloc((size_t)s->B, 1);
    int min_bad_dim = s->D;
    double worst_excess = -1.0;
    int c[4];
    for (size_t i = 0; i < r->count; ++i) {
        double got = got_at(in, i), ref = ref_at(in, i), excess;
        int poisoned = poison_at(in, i);
        if (poisoned) {
            excess = INFINITY;
            r->n_unwritten++;
        } else if (!isfinite(ref)) {
            excess = (got == ref) ? 0.0 : INFINITY;
        } else if (!isfinite(got)) {
            excess = INFINITY;
            r->n_nonfinite++;
        } else {
            excess = fabs(got - ref) / (tol.atol + tol.rtol * fabs(ref));
        }
        if (excess > 1.0) {
            r->n_bad++;
            unflatten(i, dims, c);
            bad_row[coord_query(layout, c)] = 1;
            bad_head[coord_head(layout, c)] = 1;
            bad_b[c[0]] = 1;
            if (layout == ATTN_LAYOUT_BMHD && c[3] < min_bad_dim) min_bad_dim = c[3];
            /* unwritten elements are the most telling: report one of them first */
            double key = poisoned ? INFINITY : (isinf(excess) ? 1e300 : excess);
            if (key > worst_excess) {
                worst_excess = key;
                r->worst = i;
                r->got = got;
                r->expected = ref;
                memcpy(r->coord, c, sizeof c);
            }
        }
    }
    r->ok = r->n_bad == 0;
    if (r->ok) {
        snprintf(r->message, sizeof r->message, "%s: all %zu elements within %.0e + %.0e*|ref|", what, r->count,
                 tol.atol, tol.rtol);
    } else {
        char where[160], hint_buf[200];
        format_coord(where, sizeof where, layout, s, r->coord);
        const char *hint = pick_hint(r, layout, s, window, bad_row, bad_head, bad_b, min_bad_dim, hint_buf,
                                     sizeof hint_buf);
        snprintf(r->message, sizeof r->message,
                 "%s: %zu of %zu elements out of tolerance |x - ref| <= %.0e + %.0e*|ref| (%zu never written, "
                 "%zu NaN/Inf); worst at %s: got %.7g%s, expected %.7g.%s%s",
                 what, r->n_bad, r->count, tol.atol, tol.rtol, r->n_unwritten, r->n_nonfinite, where, r->got,
                 poison_at(in, r->worst) ? " (the NaN poison: never written)" : "", r->expected,
                 hint ? " Hint: " : "", hint ? hint : "");
    }
    free(bad_row);
    free(bad_head);
    free(bad_b);
    return r->ok;
}

int attn_compare_f32(attn_cmp *r, const char *what, attn_layout layout, const attn_shape *shape, int window,
                     const float *got, const double *ref, attn_tol tol)
{
    cmp_input in = {got, NULL, ref, NULL};
    return compare_impl(r, what, layout, shape, window, &in, tol);
}

int attn_compare_bf16(attn_cmp *r, const char *what, attn_layout layout, const attn_shape *shape, int window,
                      const uint16_t *got, const double *ref, attn_tol tol)
{
    cmp_input in = {NULL, got, ref, NULL};
    return compare_impl(r, what, layout, shape, window, &in, tol);
}

int attn_compare_f32_f32(attn_cmp *r, const char *what, attn_layout layout, const attn_shape *shape,
                         const float *got, const float *ref, attn_tol tol)
{
    cmp_input in = {got, NULL, NULL, ref};
    return compare_impl(r, what, layout, shape, 0, &in, tol);
}

/* ---------------------------------------------------------------- speed */

double attn_speed_score(double ratio, double target)
{
    if (!(target > 0.0)) return 1.0;
    if (!(ratio > 0.0)) return 0.0;
    if (ratio >= target) return 1.0;
    double s = (ratio - 0.5 * target) / (0.5 * target);
    return s > 0.0 ? s : 0.0;
}

double attn_report_speed(const attn_speed_result *res)
{
    double ratio = res->ms_student > 0.0 ? res->ms_baseline / res->ms_student : 0.0;
    double score = attn_speed_score(ratio, res->target);
    double gflops = res->flops > 0.0 && res->ms_student > 0.0 ? res->flops / (res->ms_student * 1e6) : 0.0;
    double gbs = res->bytes > 0.0 && res->ms_student > 0.0 ? res->bytes / (res->ms_student * 1e6) : 0.0;
    char target_text[64];
    if (res->target > 0.0)
        snprintf(target_text, sizeof target_text, "target %.2fx, score %.0f%%", res->target, 100.0 * score);
    else
        snprintf(target_text, sizeof target_text, "reported only");
    fprintf(stderr,
            "[speed] lesson %s %s (%s): baseline %.3f ms, yours %.3f ms, speed-up %.2fx (%s); %.1f GFLOP/s, "
            "%.1f GB/s\n",
            res->lesson, res->name, res->shape_text ? res->shape_text : "", res->ms_baseline, res->ms_student,
            ratio, target_text, gflops, gbs);
    const char *path = getenv("ATTN_REPORT");
    if (path && *path) {
        FILE *f = fopen(path, "a");
        if (f) {
            fprintf(f,
                    "{\"lesson\": \"%s\", \"name\": \"%s\", \"shape\": \"%s\", \"ms_baseline\": %.6f, "
                    "\"ms_student\": %.6f, \"ratio\": %.4f, \"target\": %.4f, \"score\": %.4f, "
                    "\"gflops\": %.3f, \"gbs\": %.3f}\n",
                    res->lesson, res->name, res->shape_text ? res->shape_text : "", res->ms_baseline,
                    res->ms_student, ratio, res->target, score, gflops, gbs);
            fclose(f);
        }
    }
    return score;
}
