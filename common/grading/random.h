/*
 * random.h - the tests' random data: a seeded generator, the run's seed and non-uniform fills. For the
 * grader's side only: nothing a lesson may call can reach the seed or the generator's state, so a
 * submission cannot replay the inputs a test will draw.
 */
#ifndef ATTN_RANDOM_H
#define ATTN_RANDOM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    uint64_t state;
} attn_rng;

void attn_rng_seed(attn_rng *rng, uint64_t seed);
uint64_t attn_rng_u64(attn_rng *rng);
double attn_rng_uniform(attn_rng *rng); /* [0, 1) */
double attn_rng_normal(attn_rng *rng);  /* standard normal */

/* Seed for a test run: $ATTN_SEED when set (to reproduce a failure), otherwise fresh from the
 * clock. Tests print it in every failure message. */
uint64_t attn_test_seed(void);

/* Non-uniform test data: normal values times `scale`, with a per-row (every `row` elements)
 * scale between 0.25x and 2x and a few outliers, so that softmax rows differ in sharpness. */
void attn_fill_random(float *x, size_t n, size_t row, float scale, attn_rng *rng);

#ifdef __cplusplus
}
#endif
#endif
