/*
 * attn.h - the part of the course harness every lesson shares, plain C11.
 *
 * Error codes and messages, the problem shape, bf16 stored as uint16_t and host buffers with NaN
 * poisoning. GPU helpers live in attn_gpu.h. What only the grader uses (the oracle, comparisons,
 * random test data, timing, the frozen baselines) lives in common/grading/, out of lessons' reach.
 *
 * Conventions (common/README.md, "Conventions", has them all with the reasons):
 *   q [B, M, H, D]   k, v [B, N, G, D]   o [B, M, H, D]   lse [B, H, M] (natural log)
 *   query i sits at position t = N - M + i; causal: key s visible iff s <= t;
 *   query head h reads kv head h / (H / G).
 */
#ifndef ATTN_H
#define ATTN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- errors */

typedef enum {
    ATTN_OK = 0,
    ATTN_ERR_NULL_POINTER,        /* a required pointer is NULL */
    ATTN_ERR_BAD_SHAPE,           /* a size is < 1 (B, M, N, H, G) */
    ATTN_ERR_HEADS_NOT_DIVISIBLE, /* H % G != 0 */
    ATTN_ERR_UNSUPPORTED_D,       /* head dimension this kernel does not support */
    ATTN_ERR_M_GT_N,              /* more queries than keys: queries are the last M of N */
    ATTN_ERR_BAD_ARGUMENT,        /* any other bad argument (window < 1, bad block size...) */
    ATTN_ERR_NOT_IMPLEMENTED,     /* a lesson stub: fill in the TODO */
    ATTN_ERR_CUDA,                /* a CUDA call failed; attn_error_detail() names it */
    ATTN_ERR_OUT_OF_MEMORY,       /* host or device allocation failed */
    ATTN_ERR_NO_DEVICE,           /* no usable CUDA device */
    ATTN_ERR_COUNT
} attn_status;

/* Short fixed description of a status code ("H is not a multiple of G", ...). */
const char *attn_strerror(int status);

/* The code's name as written in C ("ATTN_ERR_M_GT_N"), for messages. */
const char *attn_status_name(int status);

/* Details of the most recent error raised in this thread (the values that were wrong,
 * the CUDA error name). Empty string when there is none. */
const char *attn_error_detail(void);

/* Forget the detail of an earlier error (call before an operation whose detail you will print). */
void attn_clear_error(void);

/* Record a detail message and return `status` (printf-style). Use as
 *   return attn_fail(ATTN_ERR_UNSUPPORTED_D, "D = %d, this kernel supports 64 or 128", D); */
int attn_fail(int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* ---------------------------------------------------------------- shapes */

#define ATTN_MAX_D 256

typedef struct {
    int B;       /* batch */
    int M;       /* queries: the last M positions of the sequence */
    int N;       /* keys / values */
    int H;       /* query heads */
    int G;       /* key/value heads; H % G == 0 */
    int D;       /* head dimension */
    float scale; /* softmax scale; 0 means 1/sqrt(D) */
    int causal;  /* 1: key s visible from query position t iff s <= t */
} attn_shape;

attn_shape attn_make_shape(int B, int M, int N, int H, int G, int D, int causal);

/* The scale actually used: shape->scale, or 1/sqrt(D) when that is 0. */
float attn_softmax_scale(const attn_shape *shape);

/* Generic checks every kernel makes: sizes >= 1, H % G == 0, M <= N, 1 <= D <= ATTN_MAX_D.
 * Returns ATTN_OK or an error code with a detail message. Lessons add their own D rules. */
int attn_check_shape(const attn_shape *shape);

/* Element counts of the conventional tensors (64-bit: long contexts overflow int). */
size_t attn_q_elems(const attn_shape *s);   /* B*M*H*D, also o */
size_t attn_kv_elems(const attn_shape *s);  /* B*N*G*D, each of k and v */
size_t attn_lse_elems(const attn_shape *s); /* B*H*M */

/* Position of query i and the kv head read by query head h. */
static inline long attn_query_pos(const attn_shape *s, int i) { return (long)s->N - s->M + i; }
static inline int attn_kv_head(const attn_shape *s, int h) { return h / (s->H / s->G); }

/* Exact number of (query, key) pairs that are visible (causal or not), summed over B and H.
 * FLOPs of attention = 4 * D * pairs (QK^T and PV, a multiply and an add each). */
double attn_visible_pairs(const attn_shape *s);
double attn_flops(const attn_shape *s);

/* The same count when each (b, query block, kv head) attends only to the key blocks on its list:
 * lists [B, ceil(M / query_block), G, T], each ascending and ended by -1 (lesson 06's layout), key
 * block j covering keys j * key_block .. j * key_block + key_block - 1, the causal rule inside. */
double attn_block_list_pairs(const attn_shape *s, const int32_t *lists, int T, int query_block, int key_block);

/* ---------------------------------------------------------------- bf16 */

/* bf16 is stored as uint16_t: the top half of an IEEE float. Conversion from float rounds to
 * nearest, ties to even; NaN stays NaN (quiet). */
uint16_t attn_f32_to_bf16(float x);
float attn_bf16_to_f32(uint16_t x);
void attn_f32_to_bf16_array(const float *x, uint16_t *y, size_t n);
void attn_bf16_to_f32_array(const uint16_t *x, float *y, size_t n);

/* ---------------------------------------------------------------- host buffers */

/* malloc that returns NULL for n == 0 never (allocates at least one element). Free with free(). */
float *attn_alloc_f32(size_t n);
double *attn_alloc_f64(size_t n);
uint16_t *attn_alloc_bf16(size_t n);
int32_t *attn_alloc_i32(size_t n); /* block lists and other int32 buffers */

/* Poison: all bits set. As float and as bf16 it is a NaN, so an element a kernel forgot to
 * write shows up both as NaN and, exactly, as the poison pattern. cudaMemset(p, 0xFF, bytes)
 * poisons device memory the same way. */
#define ATTN_POISON_BYTE 0xFF
void attn_poison(void *p, size_t bytes);
int attn_is_poison_f32(float x);
int attn_is_poison_bf16(uint16_t x);

#ifdef __cplusplus
}
#endif
#endif /* ATTN_H */
