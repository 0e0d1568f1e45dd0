/* check.c - comparisons with diagnostics and speed reporting (see check.h). */
#include "check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *plural(size_t n, const char *one, const char *many) { return n == 1 ? one : many; }

/* Sizes of the four layout axes for a shape. */
static void layout_dims(attn_layout layout, const attn_shape *s, long dims[4])
{
    dims[0] = dims[1] = dims[2] = dims[3] = 1;
    switch (layout) {
    case ATTN_LAYOUT_BMHD: dims[0] = s->B, dims[1] = s->M, dims[2] = s->H, dims[3] = s->D; break;
    case ATTN_LAYOUT_BHM: dims[0] = s->B, dims[1] = s->H, dims[2] = s->M, dims[3] = 1; break;
    case ATTN_LAYOUT_BHMN: dims[0] = s->B, dims[1] = s->H, dims[2] = s->M, dims[3] = s->N; break;
    case ATTN_LAYOUT_ROWS: dims[0] = 1, dims[1] = 1, dims[2] = s->M, dims[3] = s->N; break;
    }
}

static void unflatten(size_t idx, const long dims[4], int c[4])
{
    for (int a = 3; a >= 0; --a) {
        c[a] = (int)(idx % (size_t)dims[a]);
        idx /= (size_t)dims[a];
    }
}

/* Query index i (the row, for ROWS) and head h of a coordinate tuple. */
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
    case ATTN_LAYOUT_ROWS: return snprintf(buf, n, "row %d, column %d", c[2], c[3]);
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

/* How far an element is out of tolerance, in units of the tolerance (> 1: bad). Infinite
 * references must be matched exactly: a masked score is -inf, an empty row's lse is -inf. */
static double excess_of(double got, double ref, attn_tol tol)
{
    if (!isfinite(ref)) return got == ref ? 0.0 : INFINITY;
    if (!isfinite(got)) return INFINITY;
    return fabs(got - ref) / (tol.atol + tol.rtol * fabs(ref));
}

/* What the pattern-based hints look at, gathered while comparing. */
typedef struct {
    unsigned char *bad_row, *bad_head, *bad_b; /* any bad element in row i / head h / batch b */
    unsigned char *nonfinite_row;              /* a NaN/Inf where a finite value was expected */
    int min_bad_dim;
    /* scores (BHMN) only: -inf where a score was expected, i.e. a visible key masked ... */
    size_t n_hidden, n_hidden_offset, n_hidden_own;
    /* ... and a finite score where -inf was expected, i.e. a masked key left visible */
    size_t n_shown, n_shown_next;
} cmp_stats;

/* Hints for a plain row matrix (a row softmax). */
static const char *rows_hint(const attn_cmp *r, const attn_shape *s, const cmp_input *in, const cmp_stats *st)
{
    const int rows = s->M, cols = s->N;
    if (r->n_nonfinite) {
        int empty_row = 0, other_row = 0;
        for (int i = 0; i < rows; ++i) {
            if (!st->nonfinite_row[i]) continue;
            int all_zero = 1;
            for (int j = 0; j < cols; ++j) all_zero &= ref_at(in, (size_t)i * cols + j) == 0.0;
            if (all_zero) empty_row = 1;
            else other_row = 1;
        }
        if (empty_row && !other_row)
            return "NaN in a row whose entries are all -inf: there max = -inf and exp(-inf - (-inf)) = NaN; check "
                   "for max == -inf first and write zeros";
        if (!empty_row)
            return "NaN/Inf in rows of finite entries: exp overflows float above 88.7, so subtract the row max first "
                   "(y = exp(x - max) / sum exp(x - max))";
        return "NaN/Inf: exp overflows float above 88.7 (subtract the row max first), and a row whose entries are "
               "all -inf gives exp(-inf - (-inf)) = NaN (check for max == -inf first and write zeros)";
    }
    if (r->n_bad * 100 < r->count || (r->n_bad < 4 && r->count >= 64))
        return "only a few elements are slightly out of tolerance: this looks like rounding (summation order, a "
               "lower-precision intermediate) rather than a logic error";
    /* A wrong normaliser shows as rows that do not sum to 1; everything else as wrong values. */
    int bad_sum = 0, bad_rows = 0;
    for (int i = 0; i < rows; ++i) {
        if (!st->bad_row[i]) continue;
        double sum_got = 0.0, sum_ref = 0.0;
        for (int j = 0; j < cols; ++j) {
            sum_got += got_at(in, (size_t)i * cols + j);
            sum_ref += ref_at(in, (size_t)i * cols + j);
        }
        bad_rows++;
        if (fabs(sum_got - sum_ref) > 1e-3) bad_sum++;
    }
    if (bad_sum == bad_rows)
        return "the wrong rows do not sum to 1 (or, for a row of all -inf, to 0): divide by the sum of exp(x - max) "
               "over the whole row; a one-pass sum must be rescaled whenever the max grows "
               "(l = l * exp(m_old - m_new) + exp(x - m_new))";
    return "the rows sum to 1 but the values are off: y_j = exp(x_j - max) / sum_k exp(x_k - max), with the same "
           "max and sum for every entry of the row";
}

/* The visibility rule in words (see attn_visibility_rule_text); with_t adds where t comes from. */
static const char *rule_words(const attn_shape *s, int window, const attn_oracle_opts *opts, const attn_rule *rule,
                              int with_t, char *buf, size_t n)
{
    if (opts && window == 0) window = opts->window;
    if (rule && rule->kind == ATTN_RULE_COMPRESSED) {
        snprintf(buf, n,
                 "compressed token i (keys i*d .. i*d + l - 1, here l = %d, d = %d) is visible iff i*d + l - 1 <= t: "
                 "a token counts once its last key is at or before t, so positions t < l - 1 = %d see none%s",
                 rule->l, rule->d, rule->l - 1,
                 with_t ? " (t is the query's position, N - M + its row)" : "");
        return buf;
    }
    char edge[64] = "";
    if (window > 0)
        snprintf(edge, sizeof edge, "t - w + 1 <= s <= t (w = %d)", window);
    else if (s->causal)
        snprintf(edge, sizeof edge, "s <= t");
    const char *extra = opts && opts->key_weights ? " (and its key weight is not 0)"
                        : opts && opts->visible   ? " (and the case's own mask keeps it)"
                                                  : "";
    const char *t_text = with_t && edge[0] ? ", with t = N - M + i" : "";
    if (opts && opts->block_indices && opts->block_size > 0) {
        const int bs = opts->block_size;
        snprintf(buf, n, "key s is visible iff it lies in a block listed for its query (block j holds keys j*%d .. "
                         "j*%d + %d)%s%s%s%s",
                 bs, bs, bs - 1, edge[0] ? " and " : "", edge, extra, t_text);
    } else if (edge[0]) {
        snprintf(buf, n, "key s is visible iff %s%s%s", edge, extra, t_text);
    } else {
        snprintf(buf, n, "every key is visible%s: this case is not causal", extra);
    }
    return buf;
}

const char *attn_visibility_rule_text(const attn_shape *shape, int window, const attn_oracle_opts *opts,
                                      const attn_rule *rule, char *buf, size_t n)
{
    return rule_words(shape, window, opts, rule, 1, buf, n);
}

/* What the hints know of the rule: its words, and whether it is the plain rule of the shape (dense
 * causal or a window, no block list, not compressed tokens), which the oldest hints spell out. */
typedef struct {
    const char *text;
    int plain, compressed;
} hint_rule;

/* The first hint whose pattern matches the failures. */
static const char *pick_hint(const attn_cmp *r, attn_layout layout, const attn_shape *s, int window,
                             const hint_rule *hr, const cmp_input *in, const cmp_stats *st, char *buf, size_t n)
{
    if (r->n_unwritten)
        return "some elements still hold the NaN poison, i.e. were never written: does the grid cover every "
               "(b, i, h) row and every d? look at the bounds checks and the grid size";
    if (layout == ATTN_LAYOUT_ROWS) return rows_hint(r, s, in, st);
    const int masked = s->causal || window > 0 || !hr->plain;
    if (layout == ATTN_LAYOUT_BHMN && st->n_hidden && st->n_hidden == r->n_nonfinite) {
        if (!masked)
            return "-inf where a score was expected: this case is NOT causal, no key should be masked";
        if (s->causal && s->M < s->N && st->n_hidden_offset == st->n_hidden)
            return "keys that query i should see are masked, exactly those after key i: the queries are the LAST M "
                   "positions, so query i is at t = N - M + i (not i) and key s is visible iff s <= t";
        if (st->n_hidden_own == st->n_hidden)
            return "the query's own key (s = t) is masked: key s is visible iff s <= t, not s < t";
        snprintf(buf, n, "keys that should be visible are masked (-inf where a score was expected): %s", hr->text);
        return buf;
    }
    if (layout == ATTN_LAYOUT_BHMN && st->n_shown && !r->n_nonfinite) {
        if (st->n_shown_next == st->n_shown)
            return "key t + 1 is left visible (s <= t + 1): mask every key s > t, starting at t + 1";
        if (window > 0 && hr->plain)
            return "keys that should be masked are visible (a finite score where -inf was expected): keys "
                   "t - w + 1 .. t are visible, with t = N - M + i";
        if (hr->plain)
            return "keys that should be masked are visible (a finite score where -inf was expected): is the causal "
                   "mask applied? key s is visible iff s <= t with t = N - M + i";
        snprintf(buf, n, "keys that should be masked are visible (a finite score where -inf was expected): %s",
                 hr->text);
        return buf;
    }
    int rows_bad = 0, heads_bad = 0, batches_bad = 0;
    for (int i = 0; i < s->M; ++i) rows_bad += st->bad_row[i];
    for (int h = 0; h < s->H; ++h) heads_bad += st->bad_head[h];
    for (int b = 0; b < s->B; ++b) batches_bad += st->bad_b[b];
    if (r->n_nonfinite) {
        /* Under a mask the early queries see the fewest keys: NaN there only (not in the last row, which sees
         * the most) points at rows left with no key, not at an overflow, which would hit any row. */
        if (masked && s->M > 1 && !st->nonfinite_row[s->M - 1]) {
            if (hr->compressed)
                snprintf(buf, n, "NaN/Inf only in early rows (not in the last, which sees the most tokens): a row "
                                 "that sees no compressed token must get o = 0, lse = -inf, not exp(-inf - (-inf)) = "
                                 "NaN. The rule: %s", hr->text);
            else if (hr->plain && window == 0)
                return "NaN/Inf only in early rows (not in the last, which sees the most keys): your mask leaves those "
                       "queries no key, and exp(-inf - (-inf)) = NaN. Key s is visible iff s <= t with t = N - M + i "
                       "(the query's own key included), and a row with no visible key gets o = 0, lse = -inf";
            else
                snprintf(buf, n, "NaN/Inf only in early rows (not in the last): your mask leaves those queries no key, "
                                 "and exp(-inf - (-inf)) = NaN. The rule: %s; a row with no visible key gets o = 0, "
                                 "lse = -inf", hr->text);
            return buf;
        }
        return "NaN/Inf where a finite value is expected: exp overflows if the row max is not subtracted first, "
               "and a row or tile where every key is masked gives exp(-inf - (-inf)) = NaN";
    }
    if (r->n_bad * 100 < r->count || (r->n_bad < 4 && r->count >= 64))
        return "only a few elements are slightly out of tolerance: this looks like rounding (summation order, "
               "float exp of large arguments, a lower-precision intermediate) rather than a logic error";
    if (s->B > 1 && !st->bad_b[0] && batches_bad)
        return "only batches b >= 1 are wrong: check the batch offset of each tensor (and use 64-bit offsets)";
    if (s->H > 1 && heads_bad < s->H) {
        if (s->H != s->G)
            return "only some heads are wrong: check the GQA mapping, query head h reads kv head h / (H/G)";
        return "only some heads are wrong: check the head offset in your indexing";
    }
    if (window > 0) {
        int only_past_w = 1;
        for (int i = 0; i < s->M; ++i)
            if (st->bad_row[i] && attn_query_pos(s, i) < window) only_past_w = 0;
        if (only_past_w && rows_bad)
            return "only positions t >= w are wrong: check the window's lower edge (keys t - w + 1 .. t)";
    }
    if (s->M > 1 && rows_bad && !st->bad_row[s->M - 1]) {
        if (s->causal && hr->plain && window == 0)
            return "the last query (which sees every key) is right but earlier rows are wrong: check the causal "
                   "mask, key s is visible iff s <= t with t = N - M + i";
        if (masked) {
            snprintf(buf, n, "the last query is right but earlier rows are wrong: check which %s each row sees: %s",
                     hr->compressed ? "compressed tokens" : "keys", hr->text);
            return buf;
        }
        return "the last query is right but earlier rows are wrong: this case is NOT causal, is a mask applied "
               "where none was asked for?";
    }
    if (s->causal && s->M > 1 && rows_bad && rows_bad < s->M && st->bad_row[s->M - 1] && !st->bad_row[0])
        return "late rows are wrong but early ones are right: check how you handle rows that see many keys "
               "(rescaling of the running sum and accumulator between tiles?)";
    if (layout == ATTN_LAYOUT_BMHD && st->min_bad_dim > 0) {
        snprintf(buf, n, "only dims d >= %d are wrong: check the loop over D and how threads split it",
                 st->min_bad_dim);
        return buf;
    }
    if (rows_bad == s->M) {
        /* Queries placed at 0..M-1 hide keys from every row when M < N, which looks like any global error. */
        if (s->causal && s->M < s->N)
            return "every row is off. Here M < N: the queries are the LAST M positions, query i is at t = N - M + i "
                   "(not i), and placing them at 0..M-1 hides keys from every row; if that is right, check the "
                   "scale (1/sqrt(D)), the max subtraction and the division by the row sum";
        if (layout == ATTN_LAYOUT_BHMN)
            return "every row is off: check the scale (1/sqrt(D)) and the indexing of the dot product";
        return "every row is off: check the softmax scale (1/sqrt(D)), the max subtraction and the division by "
               "the row sum";
    }
    return NULL;
}

static int source_gives_ref(const attn_cmp_source *src, attn_layout layout, const double *ref, attn_tol tol);

static int compare_impl(attn_cmp *r, const char *what, attn_layout layout, const attn_shape *s, int window,
                        const cmp_input *in, attn_tol tol, const attn_cmp_source *src, const attn_rule *rule)
{
    long dims[4];
    layout_dims(layout, s, dims);
    memset(r, 0, sizeof *r);
    r->count = (size_t)dims[0] * dims[1] * dims[2] * dims[3];
    cmp_stats st = {0};
    st.bad_row = calloc((size_t)s->M, 1), st.bad_head = calloc((size_t)s->H, 1), st.bad_b = calloc((size_t)s->B, 1);
    st.nonfinite_row = calloc((size_t)s->M, 1);
    st.min_bad_dim = s->D;
    double worst_excess = -1.0;
    int c[4];
    for (size_t i = 0; i < r->count; ++i) {
        double got = got_at(in, i), ref = ref_at(in, i), excess;
        int poisoned = poison_at(in, i);
        if (poisoned) {
            excess = INFINITY;
            r->n_unwritten++;
        } else {
            excess = excess_of(got, ref, tol);
            if (isfinite(ref) && !isfinite(got)) r->n_nonfinite++;
        }
        if (excess > 1.0) {
            r->n_bad++;
            unflatten(i, dims, c);
            const int row = coord_query(layout, c);
            st.bad_row[row] = 1;
            st.bad_head[coord_head(layout, c)] = 1;
            st.bad_b[c[0]] = 1;
            if (layout == ATTN_LAYOUT_BMHD && c[3] < st.min_bad_dim) st.min_bad_dim = c[3];
            if (!poisoned && isfinite(ref) && !isfinite(got)) st.nonfinite_row[row] = 1;
            if (layout == ATTN_LAYOUT_BHMN && !poisoned) {
                const long t = attn_query_pos(s, row), key = c[3];
                if (isfinite(ref) && got == -INFINITY) {
                    st.n_hidden++;
                    st.n_hidden_offset += key > row && key <= t;
                    st.n_hidden_own += key == t;
                } else if (ref == -INFINITY && isfinite(got)) {
                    st.n_shown++;
                    st.n_shown_next += key == t + 1;
                }
            }
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
        snprintf(r->message, sizeof r->message, "%s: %s %zu %s within %.0e + %.0e*|ref|", what,
                 r->count == 1 ? "the" : "all", r->count, plural(r->count, "element is", "elements are"), tol.atol,
                 tol.rtol);
    } else {
        char where[160], hint_buf[512];
        format_coord(where, sizeof where, layout, s, r->coord);
        const char *hint = NULL;
        /* Elements never written come first: a recomputation cannot explain holes. */
        if (src && !r->n_unwritten && layout != ATTN_LAYOUT_ROWS && in->ref64 &&
            source_gives_ref(src, layout, in->ref64, tol)) {
            r->wrong = attn_match_known_wrong(src, layout, in->f32, in->f32 ? NULL : in->bf16, tol);
            if (r->wrong != ATTN_WRONG_NONE) hint = attn_wrong_rule_hint(r->wrong, src->opts, hint_buf, sizeof hint_buf);
        }
        if (!hint) {
            char rule_buf[320];
            const attn_oracle_opts *opts = src ? src->opts : NULL;
            const int compressed = rule && rule->kind == ATTN_RULE_COMPRESSED;
            const hint_rule hr = {rule_words(s, window, opts, rule, 1, rule_buf, sizeof rule_buf),
                                  !compressed && !(opts && opts->block_indices), compressed};
            hint = pick_hint(r, layout, s, window, &hr, in, &st, hint_buf, sizeof hint_buf);
        }
        snprintf(r->message, sizeof r->message,
                 "%s: %zu of %zu %s out of tolerance |x - ref| <= %.0e + %.0e*|ref| (%zu never written, "
                 "%zu NaN/Inf); worst at %s: got %.7g%s, expected %.7g.%s%s",
                 what, r->n_bad, r->count, plural(r->count, "element", "elements"), tol.atol, tol.rtol,
                 r->n_unwritten, r->n_nonfinite, where, r->got,
                 poison_at(in, r->worst) ? " (the NaN poison: never written)" : "", r->expected,
                 hint ? " Hint: " : "", hint ? hint : "");
    }
    free(st.bad_row);
    free(st.bad_head);
    free(st.bad_b);
    free(st.nonfinite_row);
    return r->ok;
}

int attn_compare_f32(attn_cmp *r, const char *what, attn_layout layout, const attn_shape *shape, int window,
                     const float *got, const double *ref, attn_tol tol)
{
    cmp_input in = {got, NULL, ref, NULL};
    return compare_impl(r, what, layout, shape, window, &in, tol, NULL, NULL);
}

int attn_compare_bf16(attn_cmp *r, const char *what, attn_layout layout, const attn_shape *shape, int window,
                      const uint16_t *got, const double *ref, attn_tol tol)
{
    cmp_input in = {NULL, got, ref, NULL};
    return compare_impl(r, what, layout, shape, window, &in, tol, NULL, NULL);
}

int attn_compare_f32_f32(attn_cmp *r, const char *what, attn_layout layout, const attn_shape *shape,
                         const float *got, const float *ref, attn_tol tol)
{
    cmp_input in = {got, NULL, NULL, ref};
    return compare_impl(r, what, layout, shape, 0, &in, tol, NULL, NULL);
}

int attn_compare_rows_f32(attn_cmp *r, const char *what, int rows, int cols, const float *got, const double *ref,
                          attn_tol tol)
{
    /* Rows stand in for queries and columns for keys; the other axes are 1 and never printed. */
    const attn_shape as_rows = attn_make_shape(1, rows, cols, 1, 1, 1, 0);
    cmp_input in = {got, NULL, ref, NULL};
    return compare_impl(r, what, ATTN_LAYOUT_ROWS, &as_rows, 0, &in, tol, NULL, NULL);
}

int attn_compare_f32_src(attn_cmp *r, const char *what, attn_layout layout, const attn_cmp_source *src,
                         const float *got, const double *ref, attn_tol tol)
{
    cmp_input in = {got, NULL, ref, NULL};
    return compare_impl(r, what, layout, &src->opts->shape, src->opts->window, &in, tol, src, NULL);
}

int attn_compare_bf16_src(attn_cmp *r, const char *what, attn_layout layout, const attn_cmp_source *src,
                          const uint16_t *got, const double *ref, attn_tol tol)
{
    cmp_input in = {NULL, got, ref, NULL};
    return compare_impl(r, what, layout, &src->opts->shape, src->opts->window, &in, tol, src, NULL);
}

int attn_compare_f32_rule(attn_cmp *r, const char *what, attn_layout layout, const attn_shape *shape,
                          const attn_rule *rule, const float *got, const double *ref, attn_tol tol)
{
    cmp_input in = {got, NULL, ref, NULL};
    return compare_impl(r, what, layout, shape, 0, &in, tol, NULL, rule);
}

int attn_compare_bf16_rule(attn_cmp *r, const char *what, attn_layout layout, const attn_shape *shape,
                           const attn_rule *rule, const uint16_t *got, const double *ref, attn_tol tol)
{
    cmp_input in = {NULL, got, ref, NULL};
    return compare_impl(r, what, layout, shape, 0, &in, tol, NULL, rule);
}

/* ---------------------------------------------------------------- known mistakes reproduced */

/* The oracle's visibility callback for a known-wrong rule: it replaces the causal and window rules
 * (switched off in the options it is given) and passes the original callback on, with the original
 * head number when the heads were permuted. */
typedef struct {
    const attn_oracle_opts *orig;
    attn_wrong_rule rule;
    const int *orig_head; /* NULL, or the original head of each permuted head */
    int mask_rule;        /* 1: this callback applies the causal and window rules */
} wrong_ctx;

static int wrong_visible(void *ctx, int b, int h, int i, long t, long s)
{
    const wrong_ctx *w = ctx;
    const attn_oracle_opts *o = w->orig;
    if (w->mask_rule) {
        const long tq = w->rule == ATTN_WRONG_QUERY_AT_I ? (long)i : t;
        int causal = o->shape.causal, win = o->window;
        if (w->rule == ATTN_WRONG_NO_CAUSAL) causal = 0;
        if (w->rule == ATTN_WRONG_NO_WINDOW) win = 0, causal = 1;
        if (w->rule == ATTN_WRONG_MASK_NOT_ASKED) causal = 1;
        const long last = tq + (w->rule == ATTN_WRONG_NEXT_KEY) - (w->rule == ATTN_WRONG_OWN_KEY_HIDDEN);
        if ((causal || win > 0) && s > last) return 0;
        if (win > 0 && s < tq - win + 1 - (w->rule == ATTN_WRONG_WINDOW_PLUS_ONE)) return 0;
    }
    const int h0 = w->orig_head ? w->orig_head[h] : h;
    if (o->visible && !o->visible(o->visible_ctx, b, h0, i, t, s)) return 0;
    return 1;
}

/* 1 if the rule differs from the true rules on this shape (else it cannot explain a failure). */
static int rule_applies(attn_wrong_rule rule, const attn_oracle_opts *o)
{
    const attn_shape *s = &o->shape;
    const int masked = s->causal || o->window > 0;
    const double scale = attn_softmax_scale(s), D = s->D;
    switch (rule) {
    case ATTN_WRONG_QUERY_AT_I: return masked && s->M < s->N;
    case ATTN_WRONG_OWN_KEY_HIDDEN: return masked;
    case ATTN_WRONG_NEXT_KEY: return masked && s->M > 1;
    case ATTN_WRONG_WINDOW_PLUS_ONE: return o->window > 0;
    case ATTN_WRONG_NO_CAUSAL: return s->causal && o->window == 0;
    case ATTN_WRONG_NO_WINDOW: return o->window > 0;
    case ATTN_WRONG_MASK_NOT_ASKED: return !masked && s->M > 1;
    /* heads are moved to other slots to model h % G; per-head block lists would not move with them */
    case ATTN_WRONG_GQA_MODULO: return s->G > 1 && s->G < s->H && !(o->block_indices && o->lists_per_head);
    case ATTN_WRONG_SCALE_ONE: return fabs(scale - 1.0) > 1e-6;
    case ATTN_WRONG_SCALE_1_OVER_D: return D > 1 && fabs(scale - 1.0 / D) > 1e-6 * scale;
    case ATTN_WRONG_SCALE_DEFAULT:
        return s->scale != 0.0f && fabs(s->scale - 1.0 / sqrt(D)) > 1e-6 * fabs((double)s->scale);
    default: return 0;
    }
}

static attn_quantity quantity_of(const attn_cmp_source *src, attn_layout layout)
{
    if (src->quantity != ATTN_QTY_DEFAULT) return src->quantity;
    switch (layout) {
    case ATTN_LAYOUT_BMHD: return ATTN_QTY_O;
    case ATTN_LAYOUT_BHM: return ATTN_QTY_LSE;
    case ATTN_LAYOUT_BHMN: return ATTN_QTY_SCORES;
    default: return ATTN_QTY_DEFAULT;
    }
}

/* The reference under a known-wrong rule: out (the quantity's layout) and, except for scores, the
 * rows' lse [B, H, M] (-inf marks a row that sees no key under the rule). Returns 0 on success. */
static int wrong_reference(const attn_cmp_source *src, attn_quantity qty, attn_wrong_rule rule, double *out,
                           double *lse)
{
    const attn_oracle_opts *orig = src->opts;
    attn_oracle_opts o = *orig;
    wrong_ctx w = {orig, rule, NULL, 0};
    const attn_shape *s = &orig->shape;
    const float *q = src->q;
    float *q_perm = NULL, *gates_perm = NULL;
    int *perm = NULL, *orig_head = NULL;
    switch (rule) {
    case ATTN_WRONG_SCALE_ONE: o.shape.scale = 1.0f; break;
    case ATTN_WRONG_SCALE_1_OVER_D: o.shape.scale = 1.0f / (float)s->D; break;
    case ATTN_WRONG_SCALE_DEFAULT: o.shape.scale = 0.0f; break;
    case ATTN_WRONG_GQA_MODULO: {
        /* The oracle reads kv head h / (H/G). Moving query head h to slot perm[h] = (h % G)(H/G) + h / G,
         * a bijection, makes that kv head h % G; the outputs are moved back afterwards. */
        const int H = s->H, G = s->G, D = s->D, hpg = H / G;
        const size_t rows = (size_t)s->B * s->M;
        perm = malloc(sizeof *perm * H), orig_head = malloc(sizeof *orig_head * H);
        q_perm = attn_alloc_f32(attn_q_elems(s));
        if (orig->gates) gates_perm = attn_alloc_f32(rows * H);
        if (!perm || !orig_head || !q_perm || (orig->gates && !gates_perm)) goto fail;
        for (int h = 0; h < H; ++h) perm[h] = (h % G) * hpg + h / G, orig_head[perm[h]] = h;
        for (size_t r = 0; r < rows; ++r)
            for (int h = 0; h < H; ++h) {
                memcpy(q_perm + (r * H + perm[h]) * D, q + (r * H + h) * D, sizeof(float) * D);
                if (gates_perm) gates_perm[r * H + perm[h]] = orig->gates[r * H + h];
            }
        q = q_perm;
        if (gates_perm) o.gates = gates_perm;
        w.orig_head = orig_head;
        if (orig->visible) o.visible = wrong_visible, o.visible_ctx = &w;
        break;
    }
    default:
        w.mask_rule = 1;
        o.shape.causal = 0, o.window = 0;
        o.visible = wrong_visible, o.visible_ctx = &w;
        break;
    }
    int st;
    double *o_tmp = NULL;
    if (qty == ATTN_QTY_SCORES) {
        st = attn_oracle_scores(&o, q, src->k, out);
    } else {
        if (qty != ATTN_QTY_O && !(o_tmp = attn_alloc_f64(attn_q_elems(s)))) goto fail;
        st = attn_oracle_forward(&o, q, src->k, src->v, qty == ATTN_QTY_O ? out : o_tmp,
                                 qty == ATTN_QTY_LSE ? out : lse, qty == ATTN_QTY_PROBS ? out : NULL);
        if (qty == ATTN_QTY_LSE) memcpy(lse, out, sizeof(double) * attn_lse_elems(s));
        free(o_tmp);
    }
    if (st != ATTN_OK) goto fail;
    if (perm) {
        /* back from slot perm[h] to head h: [B, M, H, D] rows of D, or [B, H, ...] blocks */
        const int H = s->H;
        const size_t inner = qty == ATTN_QTY_O ? (size_t)s->D
                             : qty == ATTN_QTY_LSE ? (size_t)s->M
                                                   : (size_t)s->M * s->N;
        const size_t outer = qty == ATTN_QTY_O ? (size_t)s->B * s->M : (size_t)s->B;
        double *tmp = attn_alloc_f64((size_t)H * (inner > (size_t)s->M ? inner : (size_t)s->M));
        if (!tmp) goto fail;
        for (size_t r = 0; r < outer; ++r) {
            double *blk = out + r * H * inner;
            for (int h = 0; h < H; ++h) memcpy(tmp + (size_t)h * inner, blk + (size_t)perm[h] * inner, sizeof(double) * inner);
            memcpy(blk, tmp, sizeof(double) * H * inner);
        }
        if (lse && qty != ATTN_QTY_SCORES && qty != ATTN_QTY_LSE)
            for (int b = 0; b < s->B; ++b) {
                double *blk = lse + (size_t)b * H * s->M;
                for (int h = 0; h < H; ++h)
                    memcpy(tmp + (size_t)h * s->M, blk + (size_t)perm[h] * s->M, sizeof(double) * s->M);
                memcpy(blk, tmp, sizeof(double) * H * s->M);
            }
        if (qty == ATTN_QTY_LSE) memcpy(lse, out, sizeof(double) * attn_lse_elems(s));
        free(tmp);
    }
    free(q_perm), free(gates_perm), free(perm), free(orig_head);
    return 0;
fail:
    free(q_perm), free(gates_perm), free(perm), free(orig_head);
    return 1;
}

/* The quantity and the size of the tensor a source describes in `layout`; 0 when the source cannot be
 * recomputed (missing inputs, a layout that does not fit the quantity, a shape above the size limit). */
static size_t source_count(const attn_cmp_source *src, attn_layout layout, attn_quantity *qty)
{
    if (!src || !src->opts || !src->q || !src->k) return 0;
    const attn_shape *s = &src->opts->shape;
    *qty = quantity_of(src, layout);
    if (*qty == ATTN_QTY_DEFAULT || attn_check_shape(s) != ATTN_OK) return 0;
    if (*qty != ATTN_QTY_SCORES && !src->v) return 0;
    if ((double)s->B * s->H * s->M * s->N * s->D > ATTN_DIAG_MAX_WORK) return 0;
    const attn_layout want = *qty == ATTN_QTY_O ? ATTN_LAYOUT_BMHD : *qty == ATTN_QTY_LSE ? ATTN_LAYOUT_BHM
                                                                                          : ATTN_LAYOUT_BHMN;
    if (layout != want) return 0;
    long dims[4];
    layout_dims(layout, s, dims);
    return (size_t)dims[0] * dims[1] * dims[2] * dims[3];
}

/* A source that does not describe the reference (say, the causal shape of a problem whose unmasked
 * scores are compared) would name mistakes against the wrong rules: check it gives ref first. */
static int source_gives_ref(const attn_cmp_source *src, attn_layout layout, const double *ref, attn_tol tol)
{
    attn_quantity qty;
    const size_t count = source_count(src, layout, &qty);
    if (!count) return 0;
    double *mine = attn_alloc_f64(count), *lse = attn_alloc_f64(attn_lse_elems(&src->opts->shape));
    int same = mine && lse && !wrong_reference(src, qty, ATTN_WRONG_NONE, mine, lse);
    for (size_t e = 0; same && e < count; ++e) same = excess_of(ref[e], mine[e], tol) <= 1.0;
    free(mine), free(lse);
    return same;
}

attn_wrong_rule attn_match_known_wrong(const attn_cmp_source *src, attn_layout layout, const float *got_f32,
                                       const uint16_t *got_bf16, attn_tol tol)
{
    attn_quantity qty;
    const size_t count = source_count(src, layout, &qty);
    if (!count || (!got_f32 && !got_bf16)) return ATTN_WRONG_NONE;
    const attn_shape *s = &src->opts->shape;
    long dims[4];
    layout_dims(layout, s, dims);
    double *alt = attn_alloc_f64(count), *lse = attn_alloc_f64(attn_lse_elems(s));
    attn_wrong_rule found = ATTN_WRONG_NONE;
    cmp_input in = {got_f32, got_f32 ? NULL : got_bf16, NULL, NULL};
    for (int rule = ATTN_WRONG_NONE + 1; alt && lse && rule < ATTN_WRONG_COUNT && !found; ++rule) {
        if (!rule_applies((attn_wrong_rule)rule, src->opts)) continue;
        if (wrong_reference(src, qty, (attn_wrong_rule)rule, alt, lse)) continue;
        size_t bad = 0;
        int c[4];
        for (size_t e = 0; e < count && bad == 0; ++e) {
            const double got = got_at(&in, e);
            if (excess_of(got, alt[e], tol) <= 1.0) continue;
            /* A row that sees no key under the rule: exp(-inf - (-inf)) = NaN is what that mistake gives. */
            if (isnan(got) && qty != ATTN_QTY_SCORES) {
                unflatten(e, dims, c);
                const size_t row = layout == ATTN_LAYOUT_BMHD ? ((size_t)c[0] * s->H + c[2]) * s->M + c[1]
                                                              : ((size_t)c[0] * s->H + c[1]) * s->M + c[2];
                if (lse[row] == -INFINITY) continue;
            }
            bad++;
        }
        if (bad == 0) found = (attn_wrong_rule)rule;
    }
    free(alt), free(lse);
    return found;
}

const char *attn_wrong_rule_hint(attn_wrong_rule rule, const attn_oracle_opts *opts, char *buf, size_t n)
{
    const attn_shape *s = &opts->shape;
    const char *intro = "your output matches, within tolerance, what";
    char words[320];
    switch (rule) {
    case ATTN_WRONG_QUERY_AT_I:
        if (opts->block_indices)
            snprintf(buf, n,
                     "%s you get with query i at position i. With M = %d < N = %d the queries are the LAST M "
                     "positions: query i is at t = N - M + i = %d + i, and %s",
                     intro, s->M, s->N, s->N - s->M, rule_words(s, opts->window, opts, NULL, 0, words, sizeof words));
        else
            snprintf(buf, n,
                     "%s you get with query i at position i. With M = %d < N = %d the queries are the LAST M "
                     "positions: query i is at t = N - M + i = %d + i, and key s is visible iff s <= t%s",
                     intro, s->M, s->N, s->N - s->M, opts->window > 0 ? " and s >= t - w + 1" : "");
        break;
    case ATTN_WRONG_OWN_KEY_HIDDEN:
        snprintf(buf, n,
                 "%s you get when a query does not see its own key (s < t): key s is visible iff s <= t, its "
                 "own position included (with s < t the query at t = 0 sees no key at all)",
                 intro);
        break;
    case ATTN_WRONG_NEXT_KEY:
        snprintf(buf, n, "%s you get when each query also sees key t + 1 (s <= t + 1): mask every key s > t", intro);
        break;
    case ATTN_WRONG_WINDOW_PLUS_ONE:
        snprintf(buf, n,
                 "%s you get with a window of w + 1 = %d keys (t - w .. t): the window holds w = %d keys, "
                 "t - w + 1 .. t, the query's own included",
                 intro, opts->window + 1, opts->window);
        break;
    case ATTN_WRONG_NO_CAUSAL:
        snprintf(buf, n, "%s you get without the causal mask: is it applied? %s", intro,
                 rule_words(s, opts->window, opts, NULL, 1, words, sizeof words));
        break;
    case ATTN_WRONG_NO_WINDOW:
        snprintf(buf, n,
                 "%s you get with the causal mask but no window: keys before t - w + 1 (w = %d) must be "
                 "hidden too",
                 intro, opts->window);
        break;
    case ATTN_WRONG_MASK_NOT_ASKED:
        snprintf(buf, n, "%s you get with a causal mask, but this case is NOT causal: mask only when shape.causal "
                         "is set", intro);
        break;
    case ATTN_WRONG_GQA_MODULO:
        snprintf(buf, n,
                 "%s you get when query head h reads kv head h %% G: it reads kv head h / (H/G) = h / %d "
                 "(consecutive query heads share a kv head)",
                 intro, s->H / s->G);
        break;
    case ATTN_WRONG_SCALE_ONE:
        snprintf(buf, n, "%s you get with no softmax scale: multiply every score by %s = %.6g", intro,
                 s->scale != 0.0f ? "shape.scale" : "1/sqrt(D)", (double)attn_softmax_scale(s));
        break;
    case ATTN_WRONG_SCALE_1_OVER_D:
        snprintf(buf, n, "%s you get with a scale of 1/D (applied twice?): the scale is %s = %.6g, once", intro,
                 s->scale != 0.0f ? "shape.scale" : "1/sqrt(D)", (double)attn_softmax_scale(s));
        break;
    case ATTN_WRONG_SCALE_DEFAULT:
        snprintf(buf, n,
                 "%s you get with the scale 1/sqrt(D), but this shape sets its own scale %.6g: use "
                 "attn_softmax_scale(shape)",
                 intro, (double)s->scale);
        break;
    default: snprintf(buf, n, "no known mistake matches"); break;
    }
    return buf;
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
