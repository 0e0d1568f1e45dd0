/*
 * online_row.h - lesson 02's streaming softmax for one query row, on the CPU, for the C parts of the
 * lessons that are about WHICH keys a row visits (06: masks and block lists, 09: NSA's selected
 * blocks), not about the update itself.
 *
 * Start with row_begin, feed each visited key to row_add (x: its score, natural-log units; v: its
 * value row), end with row_end. Everything is static inline: it compiles into your object and calls
 * nothing but the C math library.
 */
#ifndef ONLINE_ROW_H
#define ONLINE_ROW_H

#include <math.h>

typedef struct {
    float m, l; /* running max and sum */
    float *o;   /* the output row, the running sum of p * v until row_end */
    int D;
} online_row;

static inline void row_begin(online_row *r, float *o, int D)
{
    r->m = -INFINITY, r->l = 0.0f, r->o = o, r->D = D;
    for (int d = 0; d < D; ++d) o[d] = 0.0f;
}

static inline float row_dot(const float *a, const float *b, int D)
{
    float dot = 0.0f;
    for (int d = 0; d < D; ++d) dot += a[d] * b[d];
    return dot;
}

static inline void row_add(online_row *r, float x, const float *v)
{
    const float m_new = fmaxf(r->m, x), alpha = expf(r->m - m_new), p = expf(x - m_new);
    r->l = r->l * alpha + p;
    for (int d = 0; d < r->D; ++d) r->o[d] = r->o[d] * alpha + p * v[d];
    r->m = m_new;
}

/* o = sum / l; returns lse = m + log l, or -inf (and o = 0) when the row visited no key. */
static inline float row_end(online_row *r)
{
    if (r->l == 0.0f) return -INFINITY;
    for (int d = 0; d < r->D; ++d) r->o[d] /= r->l;
    return r->m + logf(r->l);
}

#endif
