/*
 * check.h - comparing results with the oracle, and reporting speed.
 *
 * A comparison passes when every element satisfies |got - ref| <= atol + rtol * |ref|
 * (infinite references must be matched exactly: a masked score is -inf, an empty row's lse
 * is -inf). On failure the report names the worst element by its coordinates, got vs
 * expected, how many elements failed, and a hint when the pattern of failures looks like a
 * common mistake (a causal mask off by one, a GQA mapping, an unwritten tile...).
 */
#ifndef ATTN_CHECK_H
#define ATTN_CHECK_H

#include "attn.h"

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
} attn_layout;

typedef struct {
    int ok;                 /* 1 when every element is within tolerance */
    size_t count;           /* elements compared */
    size_t n_bad;           /* elements out of tolerance (NaN included) */
    size_t n_nonfinite;     /* NaN/Inf where a finite value was expected (poison excluded) */
    size_t n_unwritten;     /* elements still holding the NaN poison */
    size_t worst;           /* flat index of the worst element */
    int coord[4];           /* its coordinates in the layout's order */
    double got, expected;   /* at the worst element */
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
