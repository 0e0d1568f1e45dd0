/*
 * bench_kit.cu - what the benchmark's entry files share (bench.h): attention buffers with random
 * inputs, the checks against a frozen kernel or the fp32 GPU reference, the NSA inputs made without
 * any lesson's code, and the counts of visible pairs the FLOP formulas use.
 */
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baselines.h"
#include "bench.h"
#include "nsa_select_ref.h"

/* lse of bf16 kernels: fp32 sums of bf16 products, as the tests compare them */
static const attn_tol kTolLse = {1e-3, 1e-4};

/* ---------------------------------------------------------------- random inputs */

uint64_t bench_seed(const bench_case *c, int which)
{
    const attn_shape *s = &c->shape;
    uint64_t h = c->seed * 1000003ull + (uint64_t)s->N;
    const int dims[6] = {s->B, s->M, s->H, s->G, s->D, s->causal};
    for (int i = 0; i < 6; ++i) h = h * 0x100000001B3ull + (uint64_t)dims[i];
    return h + (uint64_t)which;
}

int bench_fill(void *x, int es, size_t n, size_t row, float scale, uint64_t seed)
{
    if (es == 4) return attn_dfill_random_f32((float *)x, n, row, scale, seed, 0);
    return attn_dfill_random_bf16((uint16_t *)x, n, row, scale, seed, 0);
}

/* out = a + z / 4 with z = q's row and a = the row of the first position of its window of 64 (same
 * head); q [B, M, H, D] is read, out written. */
template <typename T>
__global__ void local_queries_kernel(const T *q, T *out, long elems, int M, int H, int D)
{
    for (long e = blockIdx.x * (long)blockDim.x + threadIdx.x; e < elems; e += (long)gridDim.x * blockDim.x) {
        const long hd = (long)H * D, pos_row = e / hd; /* b M + i */
        const long i = pos_row % M, anchor = (pos_row - i + (i / 64) * 64) * hd + e % hd;
        if constexpr (sizeof(T) == 4) {
            out[e] = q[anchor] + 0.25f * q[e];
        } else {
            const float z = __bfloat162float(__ushort_as_bfloat16(q[e]));
            const float a = __bfloat162float(__ushort_as_bfloat16(q[anchor]));
            out[e] = __bfloat16_as_ushort(__float2bfloat16(a + 0.25f * z));
        }
    }
}

int bench_fill_queries(const bench_case *c, void *q, int es)
{
    const attn_shape *s = &c->shape;
    const size_t nq = attn_q_elems(s);
    int st = bench_fill(q, es, nq, (size_t)s->D, 1.0f, bench_seed(c, 0));
    if (st || !c->local_queries) return st;
    /* mixed into a copy: every row must read its window's first row as it was */
    void *tmp = NULL;
    st = attn_dalloc(&tmp, nq * es);
    if (!st) {
        if (es == 4) local_queries_kernel<float><<<528, 256>>>((const float *)q, (float *)tmp, (long)nq, s->M, s->H, s->D);
        else local_queries_kernel<uint16_t><<<528, 256>>>((const uint16_t *)q, (uint16_t *)tmp, (long)nq, s->M, s->H, s->D);
        st = attn_cuda_launch_status("local_queries_kernel");
    }
    if (!st) st = attn_cuda_status(cudaMemcpy(q, tmp, nq * es, cudaMemcpyDeviceToDevice), "local queries");
    attn_dfree(tmp);
    return st;
}

/* ---------------------------------------------------------------- attention buffers */

int bench_attn_init(bench_attn *a, const bench_case *c, int es, int with_lse, size_t work_bytes)
{
    memset(a, 0, sizeof *a);
    a->c = *c;
    a->es = es;
    a->work_bytes = work_bytes;
    const attn_shape *s = &c->shape;
    const size_t nq = attn_q_elems(s), nkv = attn_kv_elems(s);
    int st = attn_dalloc(&a->q, nq * es);
    if (!st) st = attn_dalloc(&a->k, nkv * es);
    if (!st) st = attn_dalloc(&a->v, nkv * es);
    if (!st) st = attn_dalloc(&a->o, nq * es);
    if (!st && with_lse) st = attn_dalloc((void **)&a->lse, attn_lse_elems(s) * sizeof(float));
    if (!st && work_bytes) st = attn_dalloc(&a->work, work_bytes);
    if (!st) st = bench_fill_queries(c, a->q, es);
    if (!st) st = bench_fill(a->k, es, nkv, (size_t)s->D, 1.0f, bench_seed(c, 1));
    if (!st) st = bench_fill(a->v, es, nkv, (size_t)s->D, 1.0f, bench_seed(c, 2));
    if (st) bench_attn_release(a);
    return st;
}

void bench_attn_release(bench_attn *a)
{
    attn_dfree(a->q);
    attn_dfree(a->k);
    attn_dfree(a->v);
    attn_dfree(a->o);
    attn_dfree(a->lse);
    attn_dfree(a->work);
    a->q = a->k = a->v = a->o = a->work = NULL;
    a->lse = NULL;
}

static int attn_setup(const bench_case *c, void **state, int es)
{
    bench_attn *a = (bench_attn *)calloc(1, sizeof *a);
    if (!a) return attn_fail(ATTN_ERR_OUT_OF_MEMORY, "host memory for the bench state");
    const int st = bench_attn_init(a, c, es, 1, 0);
    if (st) {
        free(a);
        return st;
    }
    *state = a;
    return ATTN_OK;
}

int bench_attn_setup_f32(const bench_case *c, void **state) { return attn_setup(c, state, 4); }
int bench_attn_setup_bf16(const bench_case *c, void **state) { return attn_setup(c, state, 2); }

void bench_attn_teardown(void *state)
{
    if (!state) return;
    bench_attn_release((bench_attn *)state);
    free(state);
}

/* inputs, outputs and lse, and the check's reference outputs beside them */
static double attn_device_bytes(const bench_case *c, int es)
{
    const attn_shape *s = &c->shape;
    return (2.0 * attn_q_elems(s) + 2.0 * attn_kv_elems(s)) * es + attn_lse_elems(s) * 4.0 +
           attn_q_elems(s) * 4.0 + attn_lse_elems(s) * 4.0;
}

double bench_attn_device_bytes_f32(const bench_case *c) { return attn_device_bytes(c, 4); }
double bench_attn_device_bytes_bf16(const bench_case *c) { return attn_device_bytes(c, 2); }

double bench_flops_visible(const bench_case *c, const void *state)
{
    (void)state;
    return attn_flops(&c->shape);
}

double bench_bytes_io(const bench_case *c, const void *state)
{
    const bench_attn *a = (const bench_attn *)state;
    const attn_shape *s = &c->shape;
    return (2.0 * attn_q_elems(s) + 2.0 * attn_kv_elems(s)) * a->es + (a->lse ? attn_lse_elems(s) * 4.0 : 0.0);
}

int bench_supports_d64_128(const bench_case *c, char *why, size_t why_len)
{
    if (c->shape.D == 64 || c->shape.D == 128) return 1;
    snprintf(why, why_len, "it supports D = 64 or 128");
    return 0;
}

int bench_supports_causal_d64_128(const bench_case *c, char *why, size_t why_len)
{
    if (!c->shape.causal) {
        snprintf(why, why_len, "it runs causal shapes only");
        return 0;
    }
    return bench_supports_d64_128(c, why, why_len);
}

void bench_dense_entry(bench_entry *e, int es, attn_launch_fn launch)
{
    e->setup = es == 4 ? bench_attn_setup_f32 : bench_attn_setup_bf16;
    e->teardown = bench_attn_teardown;
    e->device_bytes = es == 4 ? bench_attn_device_bytes_f32 : bench_attn_device_bytes_bf16;
    e->supports = bench_supports_d64_128;
    e->flops = bench_flops_visible;
    e->bytes = bench_bytes_io;
    e->launch = launch;
}

/* ---------------------------------------------------------------- checks */

void bench_dcmp_text(const char *what, const attn_dcmp *r, char *msg, size_t msg_len)
{
    snprintf(msg, msg_len, "%s: %zu of %zu elements out of tolerance (%zu never written, %zu NaN/Inf); worst at flat "
             "index %zu: got %.6g, expected %.6g", what, r->n_bad, r->count, r->n_unwritten, r->n_nonfinite, r->worst,
             r->got, r->expected);
}

int bench_check_against(const bench_attn *a, bench_ref_fn ref, int *failed, char *msg, size_t msg_len)
{
    const attn_shape *s = &a->c.shape;
    const size_t nq = attn_q_elems(s), nl = attn_lse_elems(s);
    void *o_ref = NULL;
    float *lse_ref = NULL;
    int st = attn_dalloc(&o_ref, nq * a->es);
    if (!st && a->lse) st = attn_dalloc((void **)&lse_ref, nl * sizeof(float));
    if (!st) st = ref(a, o_ref, lse_ref);
    if (!st) st = attn_dsync();
    attn_dcmp r;
    *failed = 0;
    if (!st) {
        st = a->es == 4 ? attn_dcompare_f32_f32((const float *)a->o, (const float *)o_ref, nq, ATTN_TOL_F32, &r)
                        : attn_dcompare_bf16_bf16((const uint16_t *)a->o, (const uint16_t *)o_ref, nq, ATTN_TOL_BF16, &r);
        if (!st && r.n_bad) *failed = 1, bench_dcmp_text("o", &r, msg, msg_len);
    }
    if (!st && !*failed && a->lse) {
        st = attn_dcompare_f32_f32(a->lse, lse_ref, nl, a->es == 4 ? ATTN_TOL_F32 : kTolLse, &r);
        if (!st && r.n_bad) *failed = 1, bench_dcmp_text("lse", &r, msg, msg_len);
    }
    attn_dfree(o_ref);
    attn_dfree(lse_ref);
    return st;
}

static int flash_reference(const bench_attn *a, void *o_ref, float *lse_ref)
{
    float *lse = lse_ref;
    int st = ATTN_OK;
    if (!lse) st = attn_dalloc((void **)&lse, attn_lse_elems(&a->c.shape) * sizeof(float)); /* the kernel writes one */
    if (!st)
        st = attn_baseline_flash_bf16(&a->c.shape, (const uint16_t *)a->q, (const uint16_t *)a->k, (const uint16_t *)a->v,
                                      (uint16_t *)o_ref, lse, 0);
    if (!st) st = attn_dsync();
    if (lse != lse_ref) attn_dfree(lse);
    return st;
}

int bench_check_flash(const bench_case *c, void *state, int *failed, char *msg, size_t msg_len)
{
    (void)c;
    return bench_check_against((const bench_attn *)state, flash_reference, failed, msg, msg_len);
}

int bench_check_reference(const bench_attn *a, const attn_gpu_ref_opts *opts, int *failed, char *msg, size_t msg_len)
{
    attn_gpu_ref_opts ro = *opts;
    if (ro.shape.B == 0) ro.shape = a->c.shape;
    const size_t nq = attn_q_elems(&ro.shape), nl = attn_lse_elems(&ro.shape);
    float *o_ref = NULL, *lse_ref = NULL;
    int st = attn_dalloc((void **)&o_ref, nq * sizeof(float));
    if (!st) st = attn_dalloc((void **)&lse_ref, nl * sizeof(float));
    if (!st)
        st = attn_gpu_reference(&ro, (const uint16_t *)a->q, (const uint16_t *)a->k, (const uint16_t *)a->v, o_ref,
                                lse_ref, 0);
    if (!st) st = attn_dsync();
    attn_dcmp r;
    *failed = 0;
    if (!st) {
        st = attn_dcompare_bf16_f32((const uint16_t *)a->o, o_ref, nq, ATTN_TOL_BF16, &r);
        if (!st && r.n_bad) *failed = 1, bench_dcmp_text("o", &r, msg, msg_len);
    }
    if (!st && !*failed && a->lse) {
        st = attn_dcompare_f32_f32(a->lse, lse_ref, nl, kTolLse, &r);
        if (!st && r.n_bad) *failed = 1, bench_dcmp_text("lse", &r, msg, msg_len);
    }
    attn_dfree(o_ref);
    attn_dfree(lse_ref);
    return st;
}

/* ---------------------------------------------------------------- CUDA graphs */

/* a node's dependencies (CUDA 13 added the edge data, NULL here: captured edges carry none) */
static cudaError_t node_dependencies(cudaGraphNode_t node, cudaGraphNode_t *deps, size_t *n)
{
#if CUDART_VERSION >= 13000
    return cudaGraphNodeGetDependencies(node, deps, NULL, n);
#else
    return cudaGraphNodeGetDependencies(node, deps, n);
#endif
}

/* The graph's nodes in an order that respects its edges (a capture on one stream: the order enqueued), into
 * *out (malloc'ed, *n of them). */
static int graph_nodes_in_order(cudaGraph_t graph, cudaGraphNode_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    int st = attn_cuda_status(cudaGraphGetNodes(graph, NULL, n), "cudaGraphGetNodes");
    if (st || !*n) return st;
    cudaGraphNode_t *nodes = (cudaGraphNode_t *)malloc(*n * sizeof *nodes);
    cudaGraphNode_t *order = (cudaGraphNode_t *)malloc(*n * sizeof *order);
    char *placed = (char *)calloc(*n, 1);
    if (!nodes || !order || !placed) st = attn_fail(ATTN_ERR_OUT_OF_MEMORY, "host memory for a graph's nodes");
    size_t count = *n;
    if (!st) st = attn_cuda_status(cudaGraphGetNodes(graph, nodes, &count), "cudaGraphGetNodes");
    size_t done = 0;
    while (!st && done < count) { /* Kahn's order, the lowest index first: a node once all its dependencies are */
        size_t before = done;
        for (size_t i = 0; !st && i < count; ++i) {
            if (placed[i]) continue;
            size_t nd = 0;
            st = attn_cuda_status(node_dependencies(nodes[i], NULL, &nd), "cudaGraphNodeGetDependencies");
            cudaGraphNode_t *deps = nd ? (cudaGraphNode_t *)malloc(nd * sizeof *deps) : NULL;
            if (!st && nd && !deps) st = attn_fail(ATTN_ERR_OUT_OF_MEMORY, "host memory for a graph's edges");
            if (!st && nd) st = attn_cuda_status(node_dependencies(nodes[i], deps, &nd), "cudaGraphNodeGetDependencies");
            int ready = 1;
            for (size_t d = 0; !st && ready && d < nd; ++d) {
                int found = 0;
                for (size_t k = 0; k < done && !found; ++k) found = order[k] == deps[d];
                ready = found;
            }
            free(deps);
            if (!st && ready) placed[i] = 1, order[done++] = nodes[i];
        }
        if (!st && done == before) st = attn_fail(ATTN_ERR_BAD_ARGUMENT, "a captured graph with a cycle");
    }
    free(nodes);
    free(placed);
    if (st) {
        free(order);
        *n = 0;
        return st;
    }
    *out = order;
    *n = count;
    return ATTN_OK;
}

void bench_graph_release(bench_graph *g)
{
    if (!g) return;
    if (g->exec) cudaGraphExecDestroy(g->exec);
    if (g->graph) cudaGraphDestroy(g->graph);
    memset(g, 0, sizeof *g);
}

int bench_graph_capture(bench_graph *g, attn_launch_fn launch, void *ctx, int only_kernel)
{
    memset(g, 0, sizeof *g);
    cudaStream_t stream = NULL;
    cudaGraph_t captured = NULL;
    int st = attn_cuda_status(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "a stream to capture on");
    if (!st) st = attn_cuda_status(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), "cudaStreamBeginCapture");
    if (!st) {
        const int launched = launch(ctx, stream);
        /* end the capture whatever happened: the stream must leave capture mode */
        const int ended = attn_cuda_status(cudaStreamEndCapture(stream, &captured),
                                           "cudaStreamEndCapture (a call a CUDA graph cannot hold?)");
        st = launched ? launched : ended;
    }
    if (stream) cudaStreamDestroy(stream);
    cudaGraphNode_t *nodes = NULL;
    size_t n = 0;
    if (!st) st = graph_nodes_in_order(captured, &nodes, &n);
    /* count the kernel launches; with only_kernel, remove every node but that one from the captured graph */
    for (size_t i = 0; !st && i < n; ++i) {
        cudaGraphNodeType type;
        st = attn_cuda_status(cudaGraphNodeGetType(nodes[i], &type), "cudaGraphNodeGetType");
        const int is_kernel = !st && type == cudaGraphNodeTypeKernel;
        if (only_kernel >= 0 && !st && !(is_kernel && g->kernels == only_kernel))
            st = attn_cuda_status(cudaGraphDestroyNode(nodes[i]), "cudaGraphDestroyNode");
        g->kernels += is_kernel;
    }
    free(nodes);
    if (!st && only_kernel >= 0 && g->kernels <= only_kernel)
        st = attn_fail(ATTN_ERR_BAD_ARGUMENT, "the call made %d kernel launch(es): there is no launch %d to time alone",
                       g->kernels, only_kernel + 1);
    g->graph = captured;
    if (!st) st = attn_cuda_status(cudaGraphInstantiate(&g->exec, g->graph, 0), "cudaGraphInstantiate");
    if (st) bench_graph_release(g);
    return st;
}

int bench_graph_launch(void *ctx, cudaStream_t stream)
{
    const bench_graph *g = (const bench_graph *)ctx;
    return attn_cuda_status(cudaGraphLaunch(g->exec, stream), "cudaGraphLaunch");
}

/* ---------------------------------------------------------------- NSA inputs */

int bench_supports_nsa(const bench_case *c, char *why, size_t why_len)
{
    if (!bench_supports_causal_d64_128(c, why, why_len)) return 0;
    if (c->shape.N < c->nsa.l) {
        snprintf(why, why_len, "N = %d is below l = %d: no compressed token", c->shape.N, c->nsa.l);
        return 0;
    }
    return 1;
}

int bench_fill_compressed(const bench_case *c, uint16_t *x, long nc, int which)
{
    const attn_shape *s = &c->shape;
    /* a mean of l random keys has 1/sqrt(l) of their spread */
    return bench_fill(x, 2, (size_t)nc * s->B * s->G * s->D, (size_t)s->D, 1.0f / sqrtf((float)c->nsa.l),
                      bench_seed(c, 16 + which) + (uint64_t)c->nsa.l * 131 + (uint64_t)c->nsa.d);
}

double bench_select_device_bytes(const bench_case *c, int with_scores)
{
    const attn_shape *s = &c->shape;
    const double nc = (double)attn_nsa_num_cmp(s->N, &c->nsa), nb = (double)attn_nsa_num_blocks(s->N, &c->nsa);
    const double lists = (double)s->B * s->M * attn_nsa_list_heads(s, &c->nsa);
    return attn_q_elems(s) * 2.0 + nc * s->B * s->G * s->D * 2.0 + attn_lse_elems(s) * 4.0 +
           2.0 * lists * c->nsa.n * 4.0 + (with_scores ? lists * nb * 4.0 : 0.0);
}

int bench_select_init(bench_select *s, const bench_case *c, int with_scores)
{
    memset(s, 0, sizeof *s);
    s->c = *c;
    const attn_shape *sh = &c->shape;
    s->nc = attn_nsa_num_cmp(sh->N, &c->nsa);
    s->nb = attn_nsa_num_blocks(sh->N, &c->nsa);
    const size_t lists = (size_t)sh->B * sh->M * attn_nsa_list_heads(sh, &c->nsa);
    s->n_idx = lists * c->nsa.n;
    s->n_scores = with_scores ? lists * s->nb : 0;
    const size_t ncmp = (size_t)s->nc * sh->B * sh->G * sh->D;
    int st = attn_dalloc((void **)&s->q, attn_q_elems(sh) * 2);
    /* NC = 0 is legal for the kernels but leaves nothing to allocate: one element */
    if (!st) st = attn_dalloc((void **)&s->kc, (ncmp ? ncmp : 1) * 2);
    if (!st) st = attn_dalloc((void **)&s->lse_cmp, attn_lse_elems(sh) * 4);
    if (!st) st = attn_dalloc((void **)&s->idx, s->n_idx * 4);
    if (!st && with_scores) st = attn_dalloc((void **)&s->scores, s->n_scores * 4);
    if (!st) st = bench_fill_queries(c, s->q, 2);
    if (!st) st = bench_fill_compressed(c, s->kc, s->nc, 0);
    if (!st) st = attn_ref_nsa_lse_cmp(sh, &c->nsa, s->q, s->kc, s->lse_cmp, 0);
    if (!st) st = attn_dsync();
    if (st) bench_select_release(s);
    return st;
}

void bench_select_release(bench_select *s)
{
    attn_dfree(s->q);
    attn_dfree(s->kc);
    attn_dfree(s->lse_cmp);
    attn_dfree(s->scores);
    attn_dfree(s->idx);
    s->q = s->kc = NULL;
    s->lse_cmp = s->scores = NULL;
    s->idx = NULL;
}

int bench_select_reference(bench_select *s, cudaStream_t stream)
{
    if (!s->scores) return attn_fail(ATTN_ERR_BAD_ARGUMENT, "bench_select_reference: no scores buffer");
    return attn_ref_nsa_select(&s->c.shape, &s->c.nsa, s->q, s->kc, s->lse_cmp, s->scores, s->idx, stream);
}

/* ---------------------------------------------------------------- visible pairs */

double bench_cmp_pairs(const bench_case *c)
{
    const attn_shape *s = &c->shape;
    const long nc = attn_nsa_num_cmp(s->N, &c->nsa);
    double pairs = 0.0;
    for (int i = 0; i < s->M; ++i) pairs += (double)attn_nsa_cmp_visible_count(attn_query_pos(s, i), nc, &c->nsa);
    return pairs * s->B * s->H;
}

double bench_list_pairs(const bench_case *c, const int32_t *lists)
{
    const attn_shape *s = &c->shape;
    const attn_nsa_params *p = &c->nsa;
    const int n = p->n, L = attn_nsa_list_heads(s, p);
    const int per_list = p->heads_share_selection ? s->H / s->G : 1;
    double pairs = 0.0;
    for (size_t row = 0; row < (size_t)s->B * s->M * L; ++row) {
        const long t = attn_query_pos(s, (int)((row / L) % s->M));
        for (int e = 0; e < n && lists[row * n + e] >= 0; ++e) {
            const long first = (long)lists[row * n + e] * p->l_sel;
            long last = first + p->l_sel - 1;
            if (last > t) last = t;
            if (last > (long)s->N - 1) last = (long)s->N - 1;
            if (last >= first) pairs += (double)(last - first + 1) * per_list;
        }
    }
    return pairs;
}
