/*
 * bench.h - the benchmark's table of kernels, and the kit its entry files share.
 *
 * The table holds one entry per timed thing: a lesson's kernel (from solutions/ or lessons/, whichever
 * tree the program is linked with), a frozen baseline, a floor (what no kernel reading the same bytes
 * can beat), a sum of other entries' times, or a device peak. Each entry says what it computes, how to
 * make its inputs (setup), how to launch it, how to check its output once, and how many FLOPs and bytes
 * it is credited with, as functions of the case (shape and parameters) and of the inputs setup made.
 * The driver (bench.cu) selects entries, sweeps them over the shapes asked for, times each with
 * attn_time and prints and writes the results; it knows no lesson by name.
 *
 * One file per lesson fills the table: tools/bench/lesson_NN.cu, whose BENCH_LESSON(NN) { ... } block
 * adds the lesson's entries with bench_add (tools/bench/README.md, "Adding a lesson"). baselines.cu and
 * peaks.cu add the frozen baselines and the device peaks under lesson 0, in every program.
 *
 * Every entry function reports failure as an attn status (attn.h) with the detail in attn_fail's text;
 * none prints or exits: the driver reports and goes on or stops.
 */
#ifndef BENCH_H
#define BENCH_H

#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "attn.h"
#include "attn_gpu.h"
#include "harness.h"
#include "nsa.h"
#include "timing.h"

/* ---------------------------------------------------------------- a case: what one row is timed on */

typedef struct {
    attn_shape shape;
    int window;            /* entries swept over BENCH_WINDOW: keys t - w + 1 .. t */
    int keep;              /* BENCH_KEEP: percent of the keys or key blocks kept, 1 .. 100 */
    char config[24];       /* BENCH_NSA: "mean" or "paper", "mean-local" with local queries */
    attn_nsa_params nsa;   /* BENCH_NSA: the configuration's parameters */
    int local_queries;     /* q with locality (bench_fill_queries) */
    uint64_t seed;         /* --seed; equal cases get equal inputs, whichever entry makes them */
} bench_case;

/* The parameters an entry is swept over besides the shape (each gives its rows a name suffix). */
enum { BENCH_WINDOW = 1, BENCH_KEEP = 2, BENCH_NSA = 4 };

typedef enum {
    BENCH_SOLUTION, /* a lesson's kernel */
    BENCH_BASELINE, /* a frozen kernel (common/grading/) the lessons are compared with */
    BENCH_FLOOR,    /* what any kernel moving the same bytes the same way takes: a measurement aid */
    BENCH_SUM,      /* the sum of other entries' times on the same case (parts) */
    BENCH_PEAK,     /* a device peak (copy bandwidth, bf16 GEMM), measured once per run, not swept */
    BENCH_ROLE_COUNT
} bench_role;

typedef struct bench_entry {
    const char *name;     /* unique; rows add _w<window>, _k<keep>, _<config> for the parameters swept */
    int lesson;           /* 0: in every program (baselines, peaks) */
    bench_role role;
    const char *computes; /* one line for --list */
    const char *baseline; /* the entry its speed-up is measured against, or NULL */
    const char *suites;   /* comma-separated suites it belongs to (e.g. "nsa"), or NULL */
    unsigned params;      /* BENCH_WINDOW | BENCH_KEEP | BENCH_NSA */

    /* NULL: every case. 0 when this entry cannot run the case, with the reason in why. */
    int (*supports)(const bench_case *c, char *why, size_t why_len);
    /* device memory the entry needs for the case (inputs, outputs, the check's reference); NULL: small */
    double (*device_bytes)(const bench_case *c);
    /* make the inputs (random, on the device) and outputs; *state is what launch, check, flops, bytes
     * and teardown receive. The driver synchronises the device after setup. */
    int (*setup)(const bench_case *c, void **state);
    attn_launch_fn launch; /* ctx = state; enqueues the kernel on the stream */
    /* after one launch: compare the outputs with a reference computed here. ATTN_OK with *failed = 0
     * (ok) or 1 (msg says what differs); another status when the check itself could not run. NULL:
     * no reference (baselines, floors). */
    int (*check)(const bench_case *c, void *state, int *failed, char *msg, size_t msg_len);
    void (*teardown)(void *state); /* frees everything setup made; state may be NULL */
    /* what a timed call is credited with: FLOPs of the visible pairs (0: not counted) and the bytes no
     * kernel can avoid (0: not counted) */
    double (*flops)(const bench_case *c, const void *state);
    double (*bytes)(const bench_case *c, const void *state);
    /* the course's bar for the case in ms (0: none), judged PASS / MISS in the summary */
    double (*bar_ms)(const bench_case *c);
    const char *parts[4]; /* BENCH_SUM: the entries added (NULL-terminated) */
    /* 1: launch only enqueues work on its stream (no allocation, no synchronisation: the contract of the
     * lessons' CUDA functions), so that --graph also times it replayed from a CUDA graph (rows <name>_graph) */
    int capturable;
    /* Another entry whose time and bytes on the same case this one's are compared with in the summary (e.g.
     * decode_dense for decode_nsa: the NSA-over-dense speed-up), or NULL. versus_expected: the ratio of its
     * bytes to this entry's that a reference expects (0: none), which versus_note names. */
    const char *versus;
    double (*versus_expected)(const bench_case *c);
    const char *versus_note;
} bench_entry;

/* A suite: a named selection (its entries say they belong to it) with the options it runs on. */
typedef struct {
    const char *name;
    const char *description;
    const char *options; /* bench's options, e.g. "--N 65536 --H 64"; the command line's come after */
} bench_suite;

/* ---------------------------------------------------------------- filling the table */

typedef struct bench_table bench_table;

/* A new entry of the lesson being registered, every function NULL; the caller fills in the rest.
 * Never NULL: past the table's capacity it returns a scratch entry and the driver refuses to run. */
bench_entry *bench_add(bench_table *t, const char *name, bench_role role, const char *computes);
void bench_add_suite(bench_table *t, const char *name, const char *description, const char *options);

typedef void (*bench_lesson_fn)(bench_table *t);
/* Called at start-up by BENCH_LESSON; the driver calls fn when it builds the table. */
int bench_register_lesson(int lesson, bench_lesson_fn fn);

/* BENCH_LESSON(7) { bench_entry *e = bench_add(t, ...); ... } in a lesson's file: the block runs when the
 * driver builds the table, with `t` the table. A static initialiser registers it, so a lesson's file
 * is all a program needs to hold the lesson's entries. */
#define BENCH_LESSON(NUM)                                                                                        \
    static void bench_lesson_entries(bench_table *t);                                                            \
    [[maybe_unused]] static const int bench_lesson_registered = bench_register_lesson(NUM, bench_lesson_entries); \
    static void bench_lesson_entries(bench_table *t)

/* ---------------------------------------------------------------- the kit: attention buffers */

/* The inputs and outputs of one attention call: q, k, v, o in fp32 (es = 4) or bf16 (es = 2), lse,
 * and scratch. Entry files that need more embed it as the first member of their own state. */
typedef struct {
    bench_case c;
    int es;            /* bytes of one element of q, k, v, o */
    void *q, *k, *v, *o;
    float *lse;        /* NULL: the kernel writes none */
    void *work;        /* scratch the kernel needs (naive scores, repeated K/V), or NULL */
    size_t work_bytes;
} bench_attn;

/* Allocate a's buffers for c and fill q, k, v with random values (bench_fill_*): every element
 * nonzero-distributed, rows of D values with their own scale, as the tests' data. Outputs start as
 * the NaN poison, so an element the kernel never writes fails the check. */
int bench_attn_init(bench_attn *a, const bench_case *c, int es, int with_lse, size_t work_bytes);
void bench_attn_release(bench_attn *a);

/* setup / teardown / device_bytes of a plain bench_attn (with lse, no scratch) */
int bench_attn_setup_f32(const bench_case *c, void **state);
int bench_attn_setup_bf16(const bench_case *c, void **state);
void bench_attn_teardown(void *state);
double bench_attn_device_bytes_f32(const bench_case *c);
double bench_attn_device_bytes_bf16(const bench_case *c);

/* 4 D FLOPs per visible (query head, key) pair of the shape (attn_flops: causal counts about half) */
double bench_flops_visible(const bench_case *c, const void *state);
/* q, k, v read once, o written once, lse written once when the kernel writes it, in the state's
 * element size: the bytes no kernel can avoid (a naive kernel's round trips of the scores and the
 * repeated K/V of a baseline are not counted, on purpose) */
double bench_bytes_io(const bench_case *c, const void *state);
int bench_supports_d64_128(const bench_case *c, char *why, size_t why_len);
int bench_supports_causal_d64_128(const bench_case *c, char *why, size_t why_len);

/* A dense attention entry on a plain bench_attn of element size es (4 or 2): setup, teardown,
 * device_bytes, supports (D = 64 or 128), flops (visible pairs) and bytes (io) set; launch given. */
void bench_dense_entry(bench_entry *e, int es, attn_launch_fn launch);

/* ---------------------------------------------------------------- the kit: checks */

/* A reference computed from a's inputs into buffers of a's element type (o_ref) and lse_ref (NULL when
 * a has no lse); on the legacy stream. */
typedef int (*bench_ref_fn)(const bench_attn *a, void *o_ref, float *lse_ref);

/* Compare a's o (and lse) with ref's on the same inputs, every element: ATTN_TOL_F32 for fp32, bf16
 * rounding for bf16 (ATTN_TOL_BF16; lse within 1e-3 + 1e-4 |lse|). */
int bench_check_against(const bench_attn *a, bench_ref_fn ref, int *failed, char *msg, size_t msg_len);
/* The same against the frozen flash kernel (attn_baseline_flash_bf16): the check of bf16 dense kernels. */
int bench_check_flash(const bench_case *c, void *state, int *failed, char *msg, size_t msg_len);
/* Compare a's bf16 o and lse with the fp32 GPU reference (harness.h) under opts (opts->shape is set
 * from a when its B is 0). */
int bench_check_reference(const bench_attn *a, const attn_gpu_ref_opts *opts, int *failed, char *msg, size_t msg_len);

/* The outcome of a device comparison in words ("o: 3 of 1048576 elements out of tolerance ..."). */
void bench_dcmp_text(const char *what, const attn_dcmp *r, char *msg, size_t msg_len);

/* ---------------------------------------------------------------- the kit: random inputs */

/* A seed for input `which` of case c: a function of --seed and the shape only, so that every entry
 * timed on the same shape reads the same q, k and v (the floors read the lists selected attention
 * reads). */
uint64_t bench_seed(const bench_case *c, int which);
/* Fill n elements (es = 4: fp32, 2: bf16) with random values, rows of `row`, times scale. */
int bench_fill(void *x, int es, size_t n, size_t row, float scale, uint64_t seed);
/* q [B, M, H, D] of c: random, or with c->local_queries the queries of each window of 64 positions
 * share most of their direction (q = a + z / 4, a the window's first row of the head), so that
 * neighbouring positions choose mostly the same blocks, as a trained model's do. */
int bench_fill_queries(const bench_case *c, void *q, int es);

/* ---------------------------------------------------------------- the kit: CUDA graphs */

/* An entry's launch recorded into a CUDA graph and instantiated: what --graph replays, and how an entry
 * times one kernel launch of a call that makes several (lesson 10's stages). */
typedef struct {
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    int kernels; /* the kernel launches the capture recorded */
} bench_graph;

/* Capture launch(ctx, stream) on a stream of its own, in the global capture mode (a call that allocates or
 * synchronises fails the capture, as the graders' capture test says), and instantiate it. only_kernel < 0:
 * the whole call; only_kernel = k: the call's k-th kernel launch alone (0-based, in the order they were
 * enqueued), every other node of the graph removed: ATTN_ERR_BAD_ARGUMENT with a text when the call made
 * k or fewer. Nothing runs; g is zeroed on failure. */
int bench_graph_capture(bench_graph *g, attn_launch_fn launch, void *ctx, int only_kernel);
/* An attn_launch_fn: ctx is a bench_graph; enqueues one replay on the stream. */
int bench_graph_launch(void *ctx, cudaStream_t stream);
void bench_graph_release(bench_graph *g);

/* ---------------------------------------------------------------- the kit: NSA inputs */

/* The inputs of block selection (lesson 08), made without any lesson's code: q, random compressed
 * keys k_cmp [B, NC, G, D] with the spread of a mean of l random keys, and lse_cmp [B, H, M] computed
 * from them by the frozen GPU reference; idx [B, M, L, n] for the lists; scores [B, M, L, NB] when asked
 * (the reference selection's work space). */
typedef struct {
    bench_case c;
    long nc, nb;
    size_t n_idx, n_scores;
    uint16_t *q, *kc;
    float *lse_cmp, *scores;
    int32_t *idx;
} bench_select;

int bench_select_init(bench_select *s, const bench_case *c, int with_scores);
void bench_select_release(bench_select *s);
double bench_select_device_bytes(const bench_case *c, int with_scores);
/* the frozen GPU reference's lists and scores for s's inputs (s made with scores) */
int bench_select_reference(bench_select *s, cudaStream_t stream);
/* Compressed keys or values [B, NC, G, D] for case c: random, with the spread of a mean of l keys. */
int bench_fill_compressed(const bench_case *c, uint16_t *x, long nc, int which);

/* Visible (query head, compressed token) pairs of c summed over B and H. */
double bench_cmp_pairs(const bench_case *c);
/* Visible (query head, key) pairs of lists [B, M, L, n]: the keys s <= t of each listed block, times
 * the heads that read the list. */
double bench_list_pairs(const bench_case *c, const int32_t *lists);
/* NSA entries: causal shapes, D = 64 or 128, at least l keys (one compressed token). */
int bench_supports_nsa(const bench_case *c, char *why, size_t why_len);

#endif
