/*
 * check.h - comparing results with the oracle, and reporting speed.
 *
 * A comparison passes when every element satisfies |got - ref| <= atol + rtol * |ref|
 * (infinite references must be matched exactly: a masked score is -inf, an empty row's lse
 * is -inf). On failure the report names the worst element by its coordinates, got vs
 * expected, how many elements failed, and a hint when the pattern of failures looks like a
 * common mistake (a causal mask off by one, a GQA mapping, an unwritten tile...).
 *
 * Hints come in three strengths, the strongest that applies wins:
 *   1. elements never written (the NaN poison): nothing else can be judged before they are;
 *   2. a known mistake reproduced: given the inputs (attn_compare_*_src), a failed comparison
 *      recomputes the reference with the oracle under known-wrong rules (t = i, s < t, ...) and,
 *      when the output matches one of them, names it: a match is close to a proof;
 *   3. the pattern of the failures (which rows, heads, batches, dims; where NaN or -inf appear).
 * A hint about which keys a query sees states the lesson's own rule (dense causal, window, block
 * list, NSA compressed tokens: see attn_visibility_rule_text).
 */
#ifndef ATTN_CHECK_H
#define ATTN_CHECK_H

#include "attn.h"
#include "oracle.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    double atol, rtol;
} attn_tol;

/* fp32 kernels (lessons 01-02): rounding of float sums of up to a few thousand terms. */
#define ATTN_TOL_F32 ((attn_tol){2e-5, 2e-5})
/* fp32 with large logits (scores ~ 120, where exp overflows without the max): a float near 120
 * has a spacing of 7.6e-6 and the dot product behind it rounds at the scale of its largest terms,
 * so each score carries 1e-5..1e-4 of absolute error, which exp turns into the same relative
 * error on the probabilities. These tests exist to catch overflow and NaN, not to grade rounding. */
#define ATTN_TOL_F32_LARGE ((attn_tol){5e-4, 5e-4})
/* bf16 inputs/outputs, fp32 accumulation. bf16 keeps 8 significant bits: the output's own rounding
 * is 2^-9 ~ 2e-3 relative, and the probabilities enter P V as bf16 too, each with up to 2^-9
 * relative error; with |v| up to ~8 (the test data has outliers) a row can be off by ~1e-2 in
 * absolute terms, seen on an H100 over 16M outputs. Logic errors are 10x to 100x larger. */
#define ATTN_TOL_BF16 ((attn_tol){2e-2, 2e-2})

typedef enum {
    ATTN_LAYOUT_BMHD, /* o, q: [B, M, H, D] */
    ATTN_LAYOUT_BHM,  /* lse: [B, H, M] */
    ATTN_LAYOUT_BHMN, /* scores, probabilities: [B, H, M, N] */
    ATTN_LAYOUT_ROWS, /* a plain matrix [rows, cols] (a row softmax): shape M = rows, N = cols */
} attn_layout;

/* The known-wrong rules a failed comparison is checked against (see attn_compare_f32_src). */
typedef enum {
    ATTN_WRONG_NONE = 0,
    ATTN_WRONG_QUERY_AT_I,     /* causal/window with t = i instead of t = N - M + i (shows when M < N) */
    ATTN_WRONG_OWN_KEY_HIDDEN, /* s < t instead of s <= t */
    ATTN_WRONG_NEXT_KEY,       /* s <= t + 1 */
    ATTN_WRONG_WINDOW_PLUS_ONE,/* a window of w + 1 keys, t - w .. t */
    ATTN_WRONG_NO_CAUSAL,      /* the causal mask is not applied */
    ATTN_WRONG_NO_WINDOW,      /* causal, but the window's lower edge is not applied */
    ATTN_WRONG_MASK_NOT_ASKED, /* a causal mask applied to a non-causal case */
    ATTN_WRONG_GQA_MODULO,     /* query head h reads kv head h % G instead of h / (H/G) */
    ATTN_WRONG_SCALE_ONE,      /* no softmax scale */
    ATTN_WRONG_SCALE_1_OVER_D, /* 1/D instead of 1/sqrt(D) (the scale applied twice) */
    ATTN_WRONG_SCALE_DEFAULT,  /* 1/sqrt(D) where the shape sets its own scale */
    ATTN_WRONG_COUNT
} attn_wrong_rule;

typedef struct {
    int ok;                 /* 1 when every element is within tolerance */
    size_t count;           /* elements compared */
    size_t n_bad;           /* elements out of tolerance (NaN included) */
    size_t n_nonfinite;     /* NaN/Inf where a finite value was expected (poison excluded) */
    size_t n_unwritten;     /* elements still holding the NaN poison */
    size_t worst;           /* flat index of the worst element */
    int coord[4];           /* its coordinates in the layout's order */
    double got, expected;   /* at the worst element */
    attn_wrong_rule wrong;  /* the known mistake the output reproduces (ATTN_WRONG_NONE if none found) */
    char message[1536];     /* ready to print: summary, worst element, hint */
} attn_cmp;

/* Compare got (float) with ref (double). `what` names the tensor in the message ("o", "lse").
 * `window` (0 if none) only feeds the hints. Returns r->ok. */
int attn_compare_f32(attn_cmp *r, const char *what, attn_layout layout, const attn_shape *shape, int window,
                     const float *got, const double *ref, attn_tol tol);

/* Same for bf16 results stored as uint16_t. */
int attn_compare_bf16(attn_cmp *r, const char *what, attn_layout layout, const attn_shape *shape, int window,
                      const uint16_t *got, const double *ref, attn_tol tol);

/* Compare two float arrays of the same layout (a kernel against a frozen baseline). */
int attn_compare_f32_f32(attn_cmp *r, const char *what, attn_layout layout, const attn_shape *shape,
                         const float *got, const float *ref, attn_tol tol);

/* A plain row matrix [rows, cols] (a row softmax): the worst element is named "row r, column j" and
 * the hints speak of rows (their max, their sum), not of queries, heads or batches. */
int attn_compare_rows_f32(attn_cmp *r, const char *what, int rows, int cols, const float *got, const double *ref,
                          attn_tol tol);

/* ---------------------------------------------------------------- the rule the hints state */

/* A hint that points at which keys a query sees states the lesson's own visibility rule. By default
 * it follows from the comparison's shape and window and, in the *_src comparisons, from the source's
 * oracle options: dense causal (key s is visible iff s <= t), a window (t - w + 1 <= s <= t), a block
 * list (s lies in a block listed for the query, and s <= t). Attention over NSA's compressed tokens
 * (lesson 07), whose keys are not the positions the shape counts, names its rule with
 * attn_compare_*_rule and attn_rule_compressed(l, d): token i is visible iff i*d + l - 1 <= t. */
typedef enum {
    ATTN_RULE_OF_SHAPE = 0, /* the shape's causal flag, the window and the source's block list */
    ATTN_RULE_COMPRESSED,   /* NSA compressed tokens: token i covers keys i*d .. i*d + l - 1 */
} attn_rule_kind;

typedef struct {
    attn_rule_kind kind;
    int l, d; /* ATTN_RULE_COMPRESSED: the block length l and the stride d */
} attn_rule;

static inline attn_rule attn_rule_compressed(int l, int d)
{
    attn_rule r = {ATTN_RULE_COMPRESSED, l, d};
    return r;
}

/* attn_compare_f32 / attn_compare_bf16 whose hints state `rule` (NULL: the shape's rule). */
int attn_compare_f32_rule(attn_cmp *r, const char *what, attn_layout layout, const attn_shape *shape,
                          const attn_rule *rule, const float *got, const double *ref, attn_tol tol);
int attn_compare_bf16_rule(attn_cmp *r, const char *what, attn_layout layout, const attn_shape *shape,
                           const attn_rule *rule, const uint16_t *got, const double *ref, attn_tol tol);

/* The visibility rule in the words the hints use, e.g. "key s is visible iff s <= t, with
 * t = N - M + i", from the shape and window, `opts` (NULL, or the oracle options: their window, block
 * list and callback) and `rule` (NULL: the shape's). Returns buf. */
const char *attn_visibility_rule_text(const attn_shape *shape, int window, const attn_oracle_opts *opts,
                                      const attn_rule *rule, char *buf, size_t n);

/* ---------------------------------------------------------------- known mistakes reproduced */

/* What the compared tensor is. DEFAULT follows the layout: o for BMHD, lse for BHM, scores (-inf
 * on invisible keys, as attn_oracle_scores) for BHMN. */
typedef enum {
    ATTN_QTY_DEFAULT = 0,
    ATTN_QTY_O,      /* [B, M, H, D] */
    ATTN_QTY_LSE,    /* [B, H, M] */
    ATTN_QTY_SCORES, /* [B, H, M, N], -inf where invisible */
    ATTN_QTY_PROBS,  /* [B, H, M, N], 0 where invisible */
} attn_quantity;

/* Where a reference came from: the oracle's rules and the float inputs (bf16 lessons: the rounded
 * values the oracle saw). v may be NULL for scores. */
typedef struct {
    const attn_oracle_opts *opts;
    const float *q, *k, *v;
    attn_quantity quantity;
} attn_cmp_source;

/* Above this many multiply-adds per recomputation (B*H*M*N*D) a failed comparison skips the
 * recomputation and gives the pattern-based hint only: the CPU oracle would take seconds. */
#define ATTN_DIAG_MAX_WORK ((double)(1 << 25))

/* attn_compare_f32 / attn_compare_bf16 (shape and window from src->opts) that, on failure, also try
 * the known-wrong rules: when the output matches the oracle under one of them, r->wrong names it and
 * the hint says what the mistake is. A passing comparison never touches src beyond its shape. On
 * failure the search is skipped when elements were never written, above ATTN_DIAG_MAX_WORK, or when
 * src does not reproduce ref (a source describing other rules than the reference's would name
 * mistakes against the wrong rules); the pattern-based hint is then given. Cost of a failure: one
 * oracle run per rule that applies to the shape (at most a few tenths of a second). */
int attn_compare_f32_src(attn_cmp *r, const char *what, attn_layout layout, const attn_cmp_source *src,
                         const float *got, const double *ref, attn_tol tol);
int attn_compare_bf16_src(attn_cmp *r, const char *what, attn_layout layout, const attn_cmp_source *src,
                          const uint16_t *got, const double *ref, attn_tol tol);

/* The same search on its own: the first known-wrong rule (in enum order) whose oracle output matches
 * got (f32, or bf16 when got_f32 is NULL) within tol; ATTN_WRONG_NONE if none does, if the shape is
 * too large, or if the inputs are unusable. A row that sees no key under the rule may hold NaN in got
 * (exp(-inf - (-inf))) and still match. */
attn_wrong_rule attn_match_known_wrong(const attn_cmp_source *src, attn_layout layout, const float *got_f32,
                                       const uint16_t *got_bf16, attn_tol tol);

/* The hint for a rule, in the words of the shape (e.g. its N - M). Returns buf. */
const char *attn_wrong_rule_hint(attn_wrong_rule rule, const attn_oracle_opts *opts, char *buf, size_t n);

/* ---------------------------------------------------------------- speed */

/* Score of a speed ratio t_baseline / t_student against a target: 1 at or above the target,
 * falling linearly to 0 at half the target, 0 below that. */
double attn_speed_score(double ratio, double target);

typedef struct {
    const char *lesson;    /* "02" */
    const char *name;      /* "online_vs_naive" */
    const char *shape_text;/* "B=1 M=N=2048 H=16 D=64 causal" */
    double ms_baseline, ms_student;
    double target;         /* 0: reported only, no target */
    double flops;          /* for the achieved rate; 0 to omit */
    double bytes;          /* minimal bytes moved; 0 to omit */
} attn_speed_result;

/* Print the speed line on stderr (ratio, target, score, GFLOP/s, GB/s) and, when $ATTN_REPORT
 * names a file, append the same as one JSON object per line for the grader. Returns the score. */
double attn_report_speed(const attn_speed_result *res);

#ifdef __cplusplus
}
#endif
#endif
