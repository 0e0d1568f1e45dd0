/* attn.c - errors, shapes, bf16 and host buffers (see attn.h). */
#include "attn.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- errors */

static const char *const status_text[ATTN_ERR_COUNT] = {
    [ATTN_OK] = "ok",
    [ATTN_ERR_NULL_POINTER] = "a required pointer is NULL",
    [ATTN_ERR_BAD_SHAPE] = "a size (B, M, N, H or G) is smaller than 1",
    [ATTN_ERR_HEADS_NOT_DIVISIBLE] = "H is not a multiple of G",
    [ATTN_ERR_UNSUPPORTED_D] = "unsupported head dimension D",
    [ATTN_ERR_M_GT_N] = "more queries than keys (M > N)",
    [ATTN_ERR_BAD_ARGUMENT] = "bad argument",
    [ATTN_ERR_NOT_IMPLEMENTED] = "not implemented yet: fill in the TODO in the lesson",
    [ATTN_ERR_CUDA] = "a CUDA call failed",
    [ATTN_ERR_OUT_OF_MEMORY] = "out of memory",
    [ATTN_ERR_NO_DEVICE] = "no CUDA device",
};

static const char *const status_name[ATTN_ERR_COUNT] = {
    [ATTN_OK] = "ATTN_OK",
    [ATTN_ERR_NULL_POINTER] = "ATTN_ERR_NULL_POINTER",
    [ATTN_ERR_BAD_SHAPE] = "ATTN_ERR_BAD_SHAPE",
    [ATTN_ERR_HEADS_NOT_DIVISIBLE] = "ATTN_ERR_HEADS_NOT_DIVISIBLE",
    [ATTN_ERR_UNSUPPORTED_D] = "ATTN_ERR_UNSUPPORTED_D",
    [ATTN_ERR_M_GT_N] = "ATTN_ERR_M_GT_N",
    [ATTN_ERR_BAD_ARGUMENT] = "ATTN_ERR_BAD_ARGUMENT",
    [ATTN_ERR_NOT_IMPLEMENTED] = "ATTN_ERR_NOT_IMPLEMENTED",
    [ATTN_ERR_CUDA] = "ATTN_ERR_CUDA",
    [ATTN_ERR_OUT_OF_MEMORY] = "ATTN_ERR_OUT_OF_MEMORY",
    [ATTN_ERR_NO_DEVICE] = "ATTN_ERR_NO_DEVICE",
};

const char *attn_strerror(int status)
{
    if (status < 0 || status >= ATTN_ERR_COUNT) return "unknown status code";
    return status_text[status];
}

const char *attn_status_name(int status)
{
    if (status < 0 || status >= ATTN_ERR_COUNT) return "ATTN_ERR_UNKNOWN";
    return status_name[status];
}

static _Thread_local char error_detail[512];

const char *attn_error_detail(void) { return error_detail; }

void attn_clear_error(void) { error_detail[0] = '\0'; }

int attn_fail(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error_detail, sizeof error_detail, fmt, ap);
    va_end(ap);
    return status;
}

/* ---------------------------------------------------------------- shapes */

attn_shape attn_make_shape(int B, int M, int N, int H, int G, int D, int causal)
{
    attn_shape s = {B, M, N, H, G, D, 0.0f, causal};
    return s;
}

float attn_softmax_scale(const attn_shape *s)
{
    return s->scale != 0.0f ? s->scale : 1.0f / sqrtf((float)s->D);
}

int attn_check_shape(const attn_shape *s)
{
    if (!s) return attn_fail(ATTN_ERR_NULL_POINTER, "shape is NULL");
    if (s->B < 1 || s->M < 1 || s->N < 1 || s->H < 1 || s->G < 1)
        return attn_fail(ATTN_ERR_BAD_SHAPE, "B=%d M=%d N=%d H=%d G=%d: every size must be >= 1",
                         s->B, s->M, s->N, s->H, s->G);
    if (s->H % s->G != 0)
        return attn_fail(ATTN_ERR_HEADS_NOT_DIVISIBLE,
                         "H=%d query heads cannot be shared evenly by G=%d kv heads", s->H, s->G);
    if (s->M > s->N)
        return attn_fail(ATTN_ERR_M_GT_N, "M=%d queries but N=%d keys: queries are the last M of N positions",
                         s->M, s->N);
    if (s->D < 1 || s->D > ATTN_MAX_D)
        return attn_fail(ATTN_ERR_UNSUPPORTED_D, "D=%d: head dimension must be in [1, %d]", s->D, ATTN_MAX_D);
    if (!(s->scale >= 0.0f) || isinf(s->scale))
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "scale=%g: must be finite and >= 0 (0 means 1/sqrt(D))",
                         (double)s->scale);
    return ATTN_OK;
}

size_t attn_q_elems(const attn_shape *s) { return (size_t)s->B * s->M * s->H * s->D; }
size_t attn_kv_elems(const attn_shape *s) { return (size_t)s->B * s->N * s->G * s->D; }
size_t attn_lse_elems(const attn_shape *s) { return (size_t)s->B * s->H * s->M; }

double attn_visible_pairs(const attn_shape *s)
{
    double per_head;
    if (s->causal) {
        /* query i sees t + 1 = N - M + i + 1 keys: sum over i of (N - M + 1 + i) */
        double first = (double)s->N - s->M + 1, last = (double)s->N;
        per_head = (first + last) * s->M / 2.0;
    } else {
        per_head = (double)s->M * s->N;
    }
    return per_head * s->B * s->H;
}

double attn_flops(const attn_shape *s) { return 4.0 * s->D * attn_visible_pairs(s); }

double attn_block_list_pairs(const attn_shape *s, const int32_t *lists, int T, int query_block, int key_block)
{
    const int QB = (s->M + query_block - 1) / query_block;
    double pairs = 0.0; /* per query head of the group */
    for (int b = 0; b < s->B; ++b)
        for (int qb = 0; qb < QB; ++qb)
            for (int g = 0; g < s->G; ++g) {
                const int32_t *list = lists + (((size_t)b * QB + qb) * s->G + g) * T;
                for (int e = 0; e < T && list[e] >= 0; ++e)
                    for (int i = qb * query_block; i < (qb + 1) * query_block && i < s->M; ++i) {
                        const long s0 = (long)list[e] * key_block, t = attn_query_pos(s, i);
                        long s1 = s0 + key_block - 1;
                        if (s1 > s->N - 1) s1 = s->N - 1;
                        if (s->causal && s1 > t) s1 = t;
                        if (s1 >= s0) pairs += (double)(s1 - s0 + 1);
                    }
            }
    return pairs * (s->H / s->G);
}

/* ---------------------------------------------------------------- bf16 */

uint16_t attn_f32_to_bf16(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u); /* quiet NaN */
    /* round to nearest, ties to even: add 0x7fff plus the lowest kept bit, then truncate */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float attn_bf16_to_f32(uint16_t x)
{
    uint32_t u = (uint32_t)x << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

void attn_f32_to_bf16_array(const float *x, uint16_t *y, size_t n)
{
    for (size_t i = 0; i < n; ++i) y[i] = attn_f32_to_bf16(x[i]);
}

void attn_bf16_to_f32_array(const uint16_t *x, float *y, size_t n)
{
    for (size_t i = 0; i < n; ++i) y[i] = attn_bf16_to_f32(x[i]);
}

/* ---------------------------------------------------------------- host buffers */

float *attn_alloc_f32(size_t n) { return (float *)malloc((n ? n : 1) * sizeof(float)); }
double *attn_alloc_f64(size_t n) { return (double *)malloc((n ? n : 1) * sizeof(double)); }
uint16_t *attn_alloc_bf16(size_t n) { return (uint16_t *)malloc((n ? n : 1) * sizeof(uint16_t)); }
int32_t *attn_alloc_i32(size_t n) { return (int32_t *)malloc((n ? n : 1) * sizeof(int32_t)); }

void attn_poison(void *p, size_t bytes)
{
    if (p) memset(p, ATTN_POISON_BYTE, bytes);
}

int attn_is_poison_f32(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u == 0xffffffffu;
}

int attn_is_poison_bf16(uint16_t x) { return x == 0xffffu; }
