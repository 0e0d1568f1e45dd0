/*
 * lesson_06.cu - the benchmark's entries of lesson 06 (token masks vs block sparsity), from the tree
 * the program is linked with, each swept over --keep (percent kept) and compared with the dense causal
 * frozen flash kernel (the lesson's speed targets), checked against the fp32 GPU reference:
 *   mask_bf16    the hard token mask keeping --keep percent of the keys (uniform random retention,
 *                threshold 1 - keep/100)
 *   blocks_bf16  every (query block, kv head) lists --keep percent of the key blocks it may see
 *                (random, at least one)
 */
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "random.h"
#include "sparsity.h"

typedef struct {
    bench_attn a;      /* first: the kit's functions take the state as a bench_attn */
    float *retention;  /* mask: [B, N, G] */
    float *weights;    /* mask: 1 where the hard mask keeps the key, else 0 (the reference's key weights) */
    float threshold;
    int32_t *lists;    /* blocks: [B, QB, G, T] */
    int T;
    double flops;      /* of the pairs kept, counted when the inputs are made */
} sparse_state;

static void teardown_sparse(void *state)
{
    sparse_state *s = (sparse_state *)state;
    if (!s) return;
    bench_attn_release(&s->a);
    attn_dfree(s->retention);
    attn_dfree(s->weights);
    attn_dfree(s->lists);
    free(s);
}

static sparse_state *new_state(const bench_case *c, int *st)
{
    sparse_state *s = (sparse_state *)calloc(1, sizeof *s);
    if (!s) {
        *st = attn_fail(ATTN_ERR_OUT_OF_MEMORY, "host memory for the bench state");
        return NULL;
    }
    *st = bench_attn_init(&s->a, c, 2, 1, 0);
    if (*st) {
        free(s);
        return NULL;
    }
    return s;
}

/* uniform random retention [B, N, G]; the hard mask with threshold 1 - keep/100 keeps that share of
 * the keys, so the kernel is credited with keep/100 of the visible pairs' FLOPs */
static int setup_mask(const bench_case *c, void **state)
{
    int st;
    sparse_state *s = new_state(c, &st);
    if (!s) return st;
    const attn_shape *sh = &c->shape;
    const size_t n = (size_t)sh->B * sh->N * sh->G;
    float *r = attn_alloc_f32(n), *w = attn_alloc_f32(n);
    if (!r || !w) st = attn_fail(ATTN_ERR_OUT_OF_MEMORY, "host memory for the retention weights");
    s->threshold = 1.0f - c->keep / 100.0f;
    if (!st) {
        attn_rng rng;
        attn_rng_seed(&rng, bench_seed(c, 3) * 977 + (uint64_t)c->keep);
        for (size_t e = 0; e < n; ++e) {
            r[e] = (float)attn_rng_uniform(&rng);
            w[e] = r[e] >= s->threshold ? 1.0f : 0.0f; /* keep_weights_cpu's rule for KEEP_HARD */
        }
        st = attn_dalloc((void **)&s->retention, n * sizeof(float));
    }
    if (!st) st = attn_h2d(s->retention, r, n * sizeof(float));
    if (!st) st = attn_dalloc((void **)&s->weights, n * sizeof(float));
    if (!st) st = attn_h2d(s->weights, w, n * sizeof(float));
    free(r);
    free(w);
    s->flops = c->keep / 100.0 * attn_flops(sh);
    if (st) teardown_sparse(s);
    else *state = s;
    return st;
}

/* every (b, query block, kv head) lists each key block its queries may see with probability keep/100
 * (at least one); the kernel is credited with the visible pairs of the listed blocks */
static int setup_blocks(const bench_case *c, void **state)
{
    int st;
    sparse_state *s = new_state(c, &st);
    if (!s) return st;
    const attn_shape *sh = &c->shape;
    const int QB = sparse_query_blocks(sh->M), KB = sparse_key_blocks(sh->N);
    const size_t n = (size_t)sh->B * QB * sh->G * KB;
    int32_t *lists = (int32_t *)malloc(n * sizeof(int32_t));
    if (!lists) st = attn_fail(ATTN_ERR_OUT_OF_MEMORY, "host memory for the block lists");
    if (!st) {
        attn_rng rng;
        attn_rng_seed(&rng, bench_seed(c, 4) * 131 + (uint64_t)c->keep);
        for (int b = 0; b < sh->B; ++b)
            for (int qb = 0; qb < QB; ++qb)
                for (int g = 0; g < sh->G; ++g) {
                    int32_t *list = lists + (((size_t)b * QB + qb) * sh->G + g) * KB;
                    const int i0 = qb * SPARSE_QUERY_BLOCK;
                    const int i1 = i0 + SPARSE_QUERY_BLOCK < sh->M ? i0 + SPARSE_QUERY_BLOCK : sh->M;
                    const long t_last = (long)sh->N - sh->M + i1 - 1;
                    const int last = sh->causal ? (int)(t_last / SPARSE_KEY_BLOCK) : KB - 1;
                    int count = 0;
                    for (int j = 0; j <= last; ++j)
                        if (attn_rng_uniform(&rng) < c->keep / 100.0) list[count++] = j;
                    if (count == 0) list[count++] = (int)(attn_rng_u64(&rng) % (uint64_t)(last + 1));
                    for (int e = count; e < KB; ++e) list[e] = -1;
                }
        s->T = KB;
        s->flops = 4.0 * sh->D * attn_block_list_pairs(sh, lists, KB, SPARSE_QUERY_BLOCK, SPARSE_KEY_BLOCK);
        st = attn_dalloc((void **)&s->lists, n * sizeof(int32_t));
    }
    if (!st) st = attn_h2d(s->lists, lists, n * sizeof(int32_t));
    free(lists);
    if (st) teardown_sparse(s);
    else *state = s;
    return st;
}

static int launch_mask(void *ctx, cudaStream_t stream)
{
    const sparse_state *s = (const sparse_state *)ctx;
    const bench_attn *a = &s->a;
    return masked_attention_cuda(&a->c.shape, KEEP_HARD, s->threshold, s->retention, (const uint16_t *)a->q,
                                 (const uint16_t *)a->k, (const uint16_t *)a->v, (uint16_t *)a->o, a->lse, stream);
}

static int launch_blocks(void *ctx, cudaStream_t stream)
{
    const sparse_state *s = (const sparse_state *)ctx;
    const bench_attn *a = &s->a;
    return block_sparse_attention_cuda(&a->c.shape, s->lists, s->T, (const uint16_t *)a->q, (const uint16_t *)a->k,
                                       (const uint16_t *)a->v, (uint16_t *)a->o, a->lse, stream);
}

static double sparse_flops(const bench_case *c, const void *state)
{
    (void)c;
    return ((const sparse_state *)state)->flops;
}

static int check_mask(const bench_case *c, void *state, int *failed, char *msg, size_t msg_len)
{
    (void)c;
    const sparse_state *s = (const sparse_state *)state;
    attn_gpu_ref_opts ro = {};
    ro.key_weights = s->weights;
    return bench_check_reference(&s->a, &ro, failed, msg, msg_len);
}

static int check_blocks(const bench_case *c, void *state, int *failed, char *msg, size_t msg_len)
{
    (void)c;
    const sparse_state *s = (const sparse_state *)state;
    attn_gpu_ref_opts ro = {};
    ro.block_indices = s->lists;
    ro.num_blocks = s->T;
    ro.block_size = SPARSE_KEY_BLOCK;
    ro.query_block = SPARSE_QUERY_BLOCK;
    return bench_check_reference(&s->a, &ro, failed, msg, msg_len);
}

static double sparse_device_bytes(const bench_case *c)
{
    const attn_shape *sh = &c->shape;
    return bench_attn_device_bytes_bf16(c) + 2.0 * sh->B * sh->N * sh->G * 4.0 +
           (double)sh->B * sparse_query_blocks(sh->M) * sh->G * sparse_key_blocks(sh->N) * 4.0;
}

BENCH_LESSON(6)
{
    bench_entry *e = bench_add(t, "mask_bf16", BENCH_SOLUTION,
                               "masked_attention_cuda, hard token mask keeping --keep percent of the keys, bf16");
    bench_dense_entry(e, 2, launch_mask);
    e->params = BENCH_KEEP;
    e->setup = setup_mask;
    e->teardown = teardown_sparse;
    e->device_bytes = sparse_device_bytes;
    e->flops = sparse_flops;
    e->check = check_mask;
    e->baseline = "frozen_flash_bf16";
    e = bench_add(t, "blocks_bf16", BENCH_SOLUTION,
                  "block_sparse_attention_cuda, each query block listing --keep percent of its key blocks, bf16");
    bench_dense_entry(e, 2, launch_blocks);
    e->params = BENCH_KEEP;
    e->setup = setup_blocks;
    e->teardown = teardown_sparse;
    e->device_bytes = sparse_device_bytes;
    e->flops = sparse_flops;
    e->check = check_blocks;
    e->baseline = "frozen_flash_bf16";
}
