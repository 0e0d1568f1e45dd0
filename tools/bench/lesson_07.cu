/*
 * lesson_07.cu - the benchmark's entries of lesson 07 (NSA compression and compressed attention), from
 * the tree the program is linked with, swept over --config and compared with the dense causal frozen
 * flash kernel, as the lesson's speed tests are:
 *   compress       nsa_compress_cuda on K, then on V; checked against the oracle's compression (host)
 *   cmp_attention  nsa_cmp_attention_cuda: q over the compressed tokens (random, with the spread of a
 *                  mean of l keys), o and lse_cmp; checked against the fp32 GPU reference
 *   cmp_branch     the two together: what the lesson's speed target times
 * and the suite nsa: the NSA branches of lessons 05 and 07-09 and lesson 10's fused forward on the course's
 * bar shape.
 */
#include <stdlib.h>

#include "bench.h"
#include "check.h"
#include "compressed_attention.h"
#include "oracle_nsa.h"

/* ---------------------------------------------------------------- compression */

typedef struct {
    bench_case c;
    long nc;
    uint16_t *k, *v, *kc, *vc; /* K and V [B, N, G, D]; their compressions [B, NC, G, D] */
} compress_state;

static size_t cmp_elems(const bench_case *c)
{
    const attn_shape *s = &c->shape;
    return (size_t)attn_nsa_num_cmp(s->N, &c->nsa) * s->B * s->G * s->D;
}

static void teardown_compress(void *state)
{
    compress_state *s = (compress_state *)state;
    if (!s) return;
    attn_dfree(s->k);
    attn_dfree(s->v);
    attn_dfree(s->kc);
    attn_dfree(s->vc);
    free(s);
}

static int setup_compress(const bench_case *c, void **state)
{
    compress_state *s = (compress_state *)calloc(1, sizeof *s);
    if (!s) return attn_fail(ATTN_ERR_OUT_OF_MEMORY, "host memory for the bench state");
    s->c = *c;
    s->nc = attn_nsa_num_cmp(c->shape.N, &c->nsa);
    const size_t nkv = attn_kv_elems(&c->shape), ncmp = cmp_elems(c);
    int st = attn_dalloc((void **)&s->k, nkv * 2);
    if (!st) st = attn_dalloc((void **)&s->v, nkv * 2);
    if (!st) st = attn_dalloc((void **)&s->kc, ncmp * 2);
    if (!st) st = attn_dalloc((void **)&s->vc, ncmp * 2);
    if (!st) st = bench_fill(s->k, 2, nkv, (size_t)c->shape.D, 1.0f, bench_seed(c, 1));
    if (!st) st = bench_fill(s->v, 2, nkv, (size_t)c->shape.D, 1.0f, bench_seed(c, 2));
    if (st) teardown_compress(s);
    else *state = s;
    return st;
}

static int launch_compress(void *ctx, cudaStream_t stream)
{
    const compress_state *s = (const compress_state *)ctx;
    int st = nsa_compress_cuda(&s->c.shape, &s->c.nsa, s->k, NULL, NULL, s->kc, stream);
    if (!st) st = nsa_compress_cuda(&s->c.shape, &s->c.nsa, s->v, NULL, NULL, s->vc, stream);
    return st;
}

/* One compressed tensor against the oracle's compression of the device input, on the host. */
static int check_one(const compress_state *s, const uint16_t *in_dev, const uint16_t *got_dev, const char *what,
                     int *failed, char *msg, size_t msg_len)
{
    const size_t nkv = attn_kv_elems(&s->c.shape), ncmp = cmp_elems(&s->c);
    uint16_t *in16 = attn_alloc_bf16(nkv), *got = attn_alloc_bf16(ncmp);
    float *in = attn_alloc_f32(nkv);
    double *ref = attn_alloc_f64(ncmp);
    int st = in16 && got && in && ref ? ATTN_OK : attn_fail(ATTN_ERR_OUT_OF_MEMORY, "host memory for the check");
    if (!st) st = attn_d2h(in16, in_dev, nkv * 2);
    if (!st) st = attn_d2h(got, got_dev, ncmp * 2);
    if (!st) {
        attn_bf16_to_f32_array(in16, in, nkv);
        st = attn_oracle_nsa_compress(&s->c.shape, &s->c.nsa, in, NULL, NULL, ref);
    }
    if (!st) {
        const attn_shape *sh = &s->c.shape;
        const attn_shape cs = attn_make_shape(sh->B, (int)s->nc, (int)s->nc, sh->G, sh->G, sh->D, 0);
        attn_cmp r;
        attn_compare_bf16(&r, what, ATTN_LAYOUT_BMHD, &cs, 0, got, ref, ATTN_TOL_BF16);
        if (!r.ok) {
            *failed = 1;
            snprintf(msg, msg_len, "%s [i = compressed token, h = kv head]", r.message);
        }
    }
    free(in16);
    free(got);
    free(in);
    free(ref);
    return st;
}

static int check_compress(const bench_case *c, void *state, int *failed, char *msg, size_t msg_len)
{
    (void)c;
    const compress_state *s = (const compress_state *)state;
    *failed = 0;
    int st = check_one(s, s->k, s->kc, "k_cmp", failed, msg, msg_len);
    if (!st && !*failed) st = check_one(s, s->v, s->vc, "v_cmp", failed, msg, msg_len);
    return st;
}

/* no FLOPs worth counting: K and V read, k_cmp and v_cmp written */
static double compress_bytes(const bench_case *c, const void *state)
{
    (void)state;
    return 2.0 * ((double)attn_kv_elems(&c->shape) + (double)cmp_elems(c)) * 2;
}

static double compress_device_bytes(const bench_case *c)
{
    return 2.0 * ((double)attn_kv_elems(&c->shape) + (double)cmp_elems(c)) * 2;
}

/* ---------------------------------------------------------------- compressed attention */

/* a bench_attn whose k and v are the compressed tokens [B, NC, G, D], lse the branch's lse_cmp */
static int setup_cmp(const bench_case *c, void **state)
{
    bench_attn *a = (bench_attn *)calloc(1, sizeof *a);
    if (!a) return attn_fail(ATTN_ERR_OUT_OF_MEMORY, "host memory for the bench state");
    a->c = *c;
    a->es = 2;
    const attn_shape *s = &c->shape;
    const long nc = attn_nsa_num_cmp(s->N, &c->nsa);
    const size_t nq = attn_q_elems(s), ncmp = cmp_elems(c);
    int st = attn_dalloc(&a->q, nq * 2);
    if (!st) st = attn_dalloc(&a->k, ncmp * 2);
    if (!st) st = attn_dalloc(&a->v, ncmp * 2);
    if (!st) st = attn_dalloc(&a->o, nq * 2);
    if (!st) st = attn_dalloc((void **)&a->lse, attn_lse_elems(s) * 4);
    if (!st) st = bench_fill_queries(c, a->q, 2);
    if (!st) st = bench_fill_compressed(c, (uint16_t *)a->k, nc, 0);
    if (!st) st = bench_fill_compressed(c, (uint16_t *)a->v, nc, 1);
    if (st) bench_attn_teardown(a);
    else *state = a;
    return st;
}

static int launch_cmp(void *ctx, cudaStream_t stream)
{
    const bench_attn *a = (const bench_attn *)ctx;
    return nsa_cmp_attention_cuda(&a->c.shape, &a->c.nsa, (const uint16_t *)a->q, (const uint16_t *)a->k,
                                  (const uint16_t *)a->v, (uint16_t *)a->o, a->lse, stream);
}

static int check_cmp(const bench_case *c, void *state, int *failed, char *msg, size_t msg_len)
{
    attn_gpu_ref_opts ro = {};
    ro.shape = c->shape;
    ro.shape.N = (int)attn_nsa_num_cmp(c->shape.N, &c->nsa); /* the keys are the compressed tokens */
    ro.positions = c->shape.N;
    ro.cmp_l = c->nsa.l;
    ro.cmp_d = c->nsa.d;
    return bench_check_reference((const bench_attn *)state, &ro, failed, msg, msg_len);
}

/* 4 D FLOPs per visible (query head, compressed token) pair */
static double cmp_flops(const bench_case *c, const void *state)
{
    (void)state;
    return 4.0 * c->shape.D * bench_cmp_pairs(c);
}

/* q and o, k_cmp and v_cmp once each, lse_cmp written */
static double cmp_bytes(const bench_case *c, const void *state)
{
    (void)state;
    const attn_shape *s = &c->shape;
    return (2.0 * attn_q_elems(s) + 2.0 * (double)cmp_elems(c)) * 2 + attn_lse_elems(s) * 4.0;
}

static double cmp_device_bytes(const bench_case *c)
{
    const attn_shape *s = &c->shape;
    return cmp_bytes(c, NULL) + attn_q_elems(s) * 4.0 + attn_lse_elems(s) * 4.0;
}

BENCH_LESSON(7)
{
    bench_entry *e = bench_add(t, "compress", BENCH_SOLUTION,
                               "nsa_compress_cuda on K, then on V (mean of each block of l keys, stride d)");
    e->params = BENCH_NSA;
    e->suites = "nsa";
    e->supports = bench_supports_nsa;
    e->device_bytes = compress_device_bytes;
    e->setup = setup_compress;
    e->launch = launch_compress;
    e->check = check_compress;
    e->teardown = teardown_compress;
    e->bytes = compress_bytes;
    e->baseline = "frozen_flash_bf16";

    e = bench_add(t, "cmp_attention", BENCH_SOLUTION,
                  "nsa_cmp_attention_cuda: q over the compressed tokens it may see, o and lse_cmp");
    e->params = BENCH_NSA;
    e->suites = "nsa";
    e->supports = bench_supports_nsa;
    e->device_bytes = cmp_device_bytes;
    e->setup = setup_cmp;
    e->launch = launch_cmp;
    e->check = check_cmp;
    e->teardown = bench_attn_teardown;
    e->flops = cmp_flops;
    e->bytes = cmp_bytes;
    e->baseline = "frozen_flash_bf16";

    e = bench_add(t, "cmp_branch", BENCH_SUM, "compress + cmp_attention: the branch the lesson's speed target times");
    e->params = BENCH_NSA;
    e->suites = "nsa";
    e->parts[0] = "compress";
    e->parts[1] = "cmp_attention";
    e->baseline = "frozen_flash_bf16";

    bench_add_suite(t, "nsa",
                    "the NSA branches on the course's bar shape: the sliding window (lesson 05), compression and "
                    "compressed attention (07), block selection (08), selected attention and its floors (09), the "
                    "fused forward and the sum of the separate branches (10), against dense causal flash",
                    "--B 1 --N 8192,16384,32768,65536 --H 64 --G 4 --D 128 --causal 1 --window 512 --config mean,paper");
}
