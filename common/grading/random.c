/* random.c - the tests' random data (see random.h). */
#include "random.h"

#include <math.h>
#include <stdlib.h>
#include <time.h>

/* splitmix64: tiny, fast, and good enough for test data. */
void attn_rng_seed(attn_rng *rng, uint64_t seed) { rng->state = seed; }

uint64_t attn_rng_u64(attn_rng *rng)
{
    uint64_t z = (rng->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double attn_rng_uniform(attn_rng *rng) { return (double)(attn_rng_u64(rng) >> 11) * 0x1.0p-53; }

double attn_rng_normal(attn_rng *rng)
{
    /* Box-Muller; 1 - u keeps the logarithm's argument in (0, 1] */
    double u1 = 1.0 - attn_rng_uniform(rng), u2 = attn_rng_uniform(rng);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

uint64_t attn_test_seed(void)
{
    const char *env = getenv("ATTN_SEED");
    if (env && *env) return strtoull(env, NULL, 0);
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return ((uint64_t)ts.tv_sec * 1000003u) ^ (uint64_t)ts.tv_nsec;
}

void attn_fill_random(float *x, size_t n, size_t row, float scale, attn_rng *rng)
{
    if (row == 0) row = n;
    double row_scale = 1.0;
    for (size_t i = 0; i < n; ++i) {
        if (i % row == 0) row_scale = 0.25 + 1.75 * attn_rng_uniform(rng);
        double v = attn_rng_normal(rng) * row_scale;
        if (attn_rng_uniform(rng) < 0.01) v *= 4.0; /* a few outliers */
        x[i] = (float)(v * scale);
    }
}

