/*
 * bench.cu - the course's one benchmark: the driver over the table of kernels (bench.h).
 *
 * The table is filled by one file per lesson (lesson_NN.cu), baselines.cu (the frozen baselines) and
 * peaks.cu (the device's copy bandwidth and bf16 GEMM peak); this file knows no lesson by name. It
 * selects entries (--lesson, --kernel, --suite, --role), adds the baselines they are compared with,
 * and for every combination of the listed sizes (the cartesian product of the lists) and of the
 * parameters an entry is swept over (--window, --keep, --config) it
 *   1. makes the entry's inputs (random, on the device; outputs poisoned),
 *   2. runs it once and checks the outputs against the entry's reference ("check: ok / FAILED"),
 *   3. times it with attn_time (warm-up runs, then an L2 flush before each timed run; the median),
 * and prints a table row (ms, TFLOP/s, GB/s, fractions of the measured peaks, speed-up over its
 * baseline timed on the same shape, the check) and a CSV row (--csv; tools/bench/plot.py draws it).
 * With --graph, an entry that says it is capturable is then captured once into a CUDA graph and its
 * replays timed the same way: a second row, <name>_graph. Entries that sum others (BENCH_SUM) are added
 * up per case; at the end come the entries against their `versus` entry (decode_nsa against
 * decode_dense: the speed-up, the ratio of the bytes each must read, the expected ratio) and the
 * course's bars.
 *
 * Shapes: with --lesson (or --kernel), each lesson runs on its bench shapes, the "bench" key of its
 * descriptor (lesson.json), compiled in by CMake as bench_defaults.h; --suite runs on the suite's
 * options; the command line's options come after either and override them. Lessons whose options end
 * up the same run together (lessons 07-09: their sums span lessons).
 *
 * What the rates mean
 *   tflops = the entry's FLOPs / time: 4 D per VISIBLE (query head, key) pair, so a causal run is
 *            credited with about half the work of a full one, whatever the kernel computes and masks;
 *            window, mask, block and NSA kernels with the pairs their window, kept keys or lists leave
 *   gbs    = the bytes no kernel can avoid (inputs read once, outputs written once) / time
 *
 * Build and run: tools/bench/README.md. `build/bin/bench --help` lists every option; `--list` the
 * table (no GPU needed), `--dry-run` what a command would time (no GPU needed).
 *
 * Exit status: 0 on success, 1 when an entry failed or its check did (the reason is printed), 2 on a
 * usage error, 77 when there is no usable CUDA device (nothing was measured).
 */
#include <cuda_runtime.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define BENCH_NO_GPU 77

/* ---------------------------------------------------------------- the table */

#define MAX_REGISTERED 64
#define MAX_ENTRIES 256
#define MAX_SUITES 16

static struct {
    int lesson;
    bench_lesson_fn fn;
} g_registry[MAX_REGISTERED];
static int g_registered, g_registry_overflow;

/* Runs before main (static initialisers of the lesson files): only fills the array. */
int bench_register_lesson(int lesson, bench_lesson_fn fn)
{
    if (g_registered == MAX_REGISTERED) {
        g_registry_overflow = 1;
        return 0;
    }
    g_registry[g_registered].lesson = lesson;
    g_registry[g_registered].fn = fn;
    return ++g_registered;
}

struct bench_table {
    bench_entry entries[MAX_ENTRIES];
    int n;
    bench_suite suites[MAX_SUITES];
    int n_suites;
    int lesson;  /* of the file being registered */
    int overflow;
    bench_entry scratch;
};

bench_entry *bench_add(bench_table *t, const char *name, bench_role role, const char *computes)
{
    bench_entry *e = &t->scratch;
    if (t->n < MAX_ENTRIES) e = &t->entries[t->n++];
    else t->overflow = 1;
    memset(e, 0, sizeof *e);
    e->name = name;
    e->lesson = t->lesson;
    e->role = role;
    e->computes = computes;
    return e;
}

void bench_add_suite(bench_table *t, const char *name, const char *description, const char *options)
{
    if (t->n_suites == MAX_SUITES) {
        t->overflow = 1;
        return;
    }
    bench_suite *s = &t->suites[t->n_suites++];
    s->name = name;
    s->description = description;
    s->options = options;
}

/* Every registered file's entries, in lesson order (files of one lesson in the order they registered). */
static int build_table(bench_table *t)
{
    memset(t, 0, sizeof *t);
    for (int i = 1; i < g_registered; ++i) /* insertion sort: stable, and a few dozen files at most */
        for (int j = i; j > 0 && g_registry[j - 1].lesson > g_registry[j].lesson; --j) {
            const int l = g_registry[j].lesson;
            const bench_lesson_fn f = g_registry[j].fn;
            g_registry[j] = g_registry[j - 1];
            g_registry[j - 1].lesson = l;
            g_registry[j - 1].fn = f;
        }
    for (int i = 0; i < g_registered; ++i) {
        t->lesson = g_registry[i].lesson;
        g_registry[i].fn(t);
    }
    if (g_registry_overflow || t->overflow) {
        fprintf(stderr, "bench: the table is full (at most %d files, %d entries, %d suites): raise the limits in "
                        "tools/bench/bench.cu\n", MAX_REGISTERED, MAX_ENTRIES, MAX_SUITES);
        return 0;
    }
    for (int i = 0; i < t->n; ++i) {
        const bench_entry *e = &t->entries[i];
        for (int j = 0; j < i; ++j)
            if (!strcmp(t->entries[j].name, e->name)) {
                fprintf(stderr, "bench: two entries are named %s (lessons %02d and %02d)\n", e->name,
                        t->entries[j].lesson, e->lesson);
                return 0;
            }
        const int timed = e->role != BENCH_SUM;
        if (!e->name || !e->computes || (timed && (!e->setup || !e->launch || !e->teardown)) ||
            (!timed && !e->parts[0])) {
            fprintf(stderr, "bench: entry %s of lesson %02d is incomplete (a name, what it computes, and setup, "
                            "launch and teardown, or parts for a sum)\n", e->name ? e->name : "(unnamed)", e->lesson);
            return 0;
        }
    }
    return 1;
}

static const bench_entry *find_entry(const bench_table *t, const char *name)
{
    for (int i = 0; i < t->n; ++i)
        if (!strcmp(t->entries[i].name, name)) return &t->entries[i];
    return NULL;
}

static const char *const kRoleNames[BENCH_ROLE_COUNT] = {"solution", "baseline", "floor", "sum", "peak"};

static int in_suite(const bench_entry *e, const char *suite)
{
    if (!e->suites) return 0;
    const size_t n = strlen(suite);
    for (const char *p = e->suites; *p;) {
        const char *end = strchr(p, ',');
        const size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && !strncmp(p, suite, n)) return 1;
        p += len + (end ? 1 : 0);
    }
    return 0;
}

/* ---------------------------------------------------------------- the lessons' bench shapes */

typedef struct {
    int lesson;
    const char *name;
    const char *options;
} bench_default;

/* kBenchDefaults[]: {lesson, shape name, options} per shape of each descriptor's "bench" key, ended by
 * {0, NULL, NULL}; written by tools/bench/CMakeLists.txt */
#include "bench_defaults.h"

/* ---------------------------------------------------------------- options */

#define MAX_LIST 64
#define MAX_ARGS 64

typedef struct {
    int n;
    int v[MAX_LIST];
} int_list;

/* The NSA configurations --config names (n = 16 selected blocks and shared lists in both). */
static const struct {
    const char *name;
    attn_nsa_params (*params)(void);
} kConfigs[] = {
    {"mean", attn_nsa_mean_pool},       /* l = d = l' = 64: what flash-linear-attention's Triton NSA computes */
    {"paper", attn_nsa_paper_defaults}, /* l = 32, d = 16, l' = 64 */
};
#define CONFIG_COUNT ((int)(sizeof kConfigs / sizeof kConfigs[0]))

/* What the cases of one run are made of. */
typedef struct {
    int_list B, M, N, H, G, D, causal; /* M: 0 stands for "M = N" */
    int_list window, keep, configs;    /* configs: indices into kConfigs */
    int local;
    int warmup, reps;
    uint64_t seed;
} run_options;

/* The command line besides the run options, which are kept as given (args) to be applied over each
 * run's defaults. */
typedef struct {
    const char *args[MAX_ARGS];
    int n_args;
    int_list lessons;
    const char *kernels[MAX_ENTRIES];
    int n_kernels;
    const char *suite;
    unsigned roles; /* bit per bench_role */
    const char *csv_path;
    int peaks;
    double peak_tflops, peak_gbs;
    int keep_going, check, list, dry_run, graph;
} cli_options;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench [options]\n"
            "Time the course's kernels (the table: --list) over the listed sizes; print a table, write CSV.\n"
            "Selection (default: every lesson on its bench shapes):\n"
            "  --lesson LIST    lessons, e.g. 07 or 5,7,8,9: their entries and the baselines they name, on each\n"
            "                   lesson's bench shapes (its lesson.json's \"bench\") unless options below override\n"
            "  --kernel LIST    entries by name, whatever --role says (their lessons' bench shapes, unless\n"
            "                   overridden)\n"
            "  --suite NAME     the entries of a suite, on the suite's options (--list shows them)\n"
            "  --role LIST      solution, baseline, floor, sum (default: all): what --lesson and --suite select\n"
            "                   and which baselines join (--role solution: none)\n"
            "Sizes and parameters (LIST: comma-separated, swept as a cartesian product):\n"
            "  --N LIST         keys per sequence            --M LIST    queries, the last M positions; N: M = N\n"
            "  --B LIST         batch                        --H LIST    query heads\n"
            "  --G LIST         key/value heads, H %% G == 0  --D LIST    head dimension\n"
            "  --causal LIST    0 or 1\n"
            "  --window LIST    sliding windows (window entries)\n"
            "  --keep LIST      percent of keys / key blocks kept, 1..100 (lesson 06's entries)\n"
            "  --config LIST    NSA configurations: mean (l = d = l' = 64), paper (l = 32, d = 16, l' = 64)\n"
            "  --local-queries  the queries of each window of 64 positions share most of their direction, so\n"
            "                   neighbours select mostly the same blocks (configurations named mean-local, ...)\n"
            "  --warmup K       untimed runs before timing (default 3)\n"
            "  --reps K         timed runs, each after an L2 flush; the median is reported (default 10)\n"
            "  --seed S         seed of the random inputs (default 1)\n"
            "  Without a lesson's shapes: N 1024,2048,4096, M N, B 1, H 64, G 64, D 128, causal 1, window 512,\n"
            "  keep 10, config mean,paper.\n"
            "Output and checks:\n"
            "  --csv FILE       write the rows as CSV\n"
            "  --no-peaks       do not measure the device's peaks (the %% columns stay empty)\n"
            "  --peak-tflops X  with --peak-gbs Y: use these peaks (e.g. an earlier run's CSV), measure nothing\n"
            "  --peak-gbs Y\n"
            "  --no-check       time only: skip the check of each output against its reference\n"
            "  --keep-going     an entry that fails is reported and skipped; the rest still run (exit 1 at the end)\n"
            "  --graph          also time each capturable entry (--list: parameter graph) replayed from a CUDA graph\n"
            "                   captured once: a row <name>_graph after each of its rows, compared with its\n"
            "                   baseline's graph row (or its plain row when the baseline is not capturable)\n"
            "  --list           print the table (lesson, name, role, baseline, suites, parameters, what it\n"
            "                   computes; tab-separated) and the suites, and exit (no GPU needed)\n"
            "  --dry-run        print what would be timed, time nothing (no GPU needed)\n"
            "Exit status: 0 ok, 1 an entry or its check failed, 2 usage error, 77 no usable CUDA device.\n");
}

/* "1024,2048" -> {1024, 2048}. With allow_n, the word N stands for 0 (M = N). */
static int parse_list(const char *opt, const char *text, int_list *out, int min_value, int max_value, int allow_n)
{
    out->n = 0;
    const char *p = text;
    while (*p) {
        if (out->n == MAX_LIST) {
            fprintf(stderr, "bench: %s: at most %d values\n", opt, MAX_LIST);
            return 0;
        }
        char *end = NULL;
        long value;
        if (allow_n && (*p == 'N' || *p == 'n') && (p[1] == ',' || p[1] == '\0')) {
            value = 0;
            end = (char *)p + 1;
        } else {
            value = strtol(p, &end, 10);
            if (end == p || (*end != ',' && *end != '\0') || value < min_value || value > max_value) {
                fprintf(stderr, "bench: %s: bad value in \"%s\" (integers %d .. %d, comma-separated)\n", opt, text,
                        min_value, max_value);
                return 0;
            }
        }
        out->v[out->n++] = (int)value;
        p = *end == ',' ? end + 1 : end;
    }
    if (out->n == 0) {
        fprintf(stderr, "bench: %s: empty list\n", opt);
        return 0;
    }
    return 1;
}

static int parse_configs(const char *text, int_list *out)
{
    out->n = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", text);
    for (char *name = strtok(buf, ","); name; name = strtok(NULL, ",")) {
        int found = -1;
        for (int c = 0; c < CONFIG_COUNT; ++c)
            if (!strcmp(name, kConfigs[c].name)) found = c;
        if (found < 0) {
            fprintf(stderr, "bench: --config: unknown configuration \"%s\" (mean, paper)\n", name);
            return 0;
        }
        int dup = 0;
        for (int i = 0; i < out->n; ++i) dup |= out->v[i] == found;
        if (!dup) out->v[out->n++] = found;
    }
    if (out->n == 0) {
        fprintf(stderr, "bench: --config: empty list\n");
        return 0;
    }
    return 1;
}

static void default_run_options(run_options *r)
{
    memset(r, 0, sizeof *r);
    parse_list("--N", "1024,2048,4096", &r->N, 1, 1 << 24, 0);
    parse_list("--M", "N", &r->M, 1, 1 << 24, 1);
    parse_list("--B", "1", &r->B, 1, 1 << 16, 0);
    parse_list("--H", "64", &r->H, 1, 1 << 12, 0);
    parse_list("--G", "64", &r->G, 1, 1 << 12, 0);
    parse_list("--D", "128", &r->D, 1, ATTN_MAX_D, 0);
    parse_list("--causal", "1", &r->causal, 0, 1, 0);
    parse_list("--window", "512", &r->window, 1, 1 << 24, 0);
    parse_list("--keep", "10", &r->keep, 1, 100, 0);
    parse_configs("mean,paper", &r->configs);
    r->warmup = 3;
    r->reps = 10;
    r->seed = 1;
}

static int takes_value(const char *a)
{
    static const char *const with_value[] = {"--B", "--M", "--N", "--H", "--G", "--D", "--causal", "--window",
                                             "--keep", "--config", "--warmup", "--reps", "--seed", "--lesson",
                                             "--kernel", "--suite", "--role", "--csv", "--peak-tflops", "--peak-gbs"};
    for (size_t i = 0; i < sizeof with_value / sizeof with_value[0]; ++i)
        if (!strcmp(a, with_value[i])) return 1;
    return 0;
}

/* Apply one run option (val NULL for a flag). 1: applied, 0: bad value (printed), -1: not a run option. */
static int apply_run_option(run_options *r, const char *a, const char *val)
{
    if (!strcmp(a, "--local-queries")) return r->local = 1, 1;
    if (!strcmp(a, "--N")) return parse_list(a, val, &r->N, 1, 1 << 24, 0);
    if (!strcmp(a, "--M")) return parse_list(a, val, &r->M, 1, 1 << 24, 1);
    if (!strcmp(a, "--B")) return parse_list(a, val, &r->B, 1, 1 << 16, 0);
    if (!strcmp(a, "--H")) return parse_list(a, val, &r->H, 1, 1 << 12, 0);
    if (!strcmp(a, "--G")) return parse_list(a, val, &r->G, 1, 1 << 12, 0);
    if (!strcmp(a, "--D")) return parse_list(a, val, &r->D, 1, ATTN_MAX_D, 0);
    if (!strcmp(a, "--causal")) return parse_list(a, val, &r->causal, 0, 1, 0);
    if (!strcmp(a, "--window")) return parse_list(a, val, &r->window, 1, 1 << 24, 0);
    if (!strcmp(a, "--keep")) return parse_list(a, val, &r->keep, 1, 100, 0);
    if (!strcmp(a, "--config")) return parse_configs(val, &r->configs);
    if (!strcmp(a, "--warmup") || !strcmp(a, "--reps")) {
        char *end = NULL;
        const long k = strtol(val, &end, 10);
        const int is_reps = a[2] == 'r';
        if (end == val || *end != '\0' || k < (is_reps ? 1 : 0) || k > 100000) {
            fprintf(stderr, "bench: %s: bad value \"%s\"\n", a, val);
            return 0;
        }
        *(is_reps ? &r->reps : &r->warmup) = (int)k;
        return 1;
    }
    if (!strcmp(a, "--seed")) {
        char *end = NULL;
        r->seed = strtoull(val, &end, 0);
        if (end == val || *end != '\0') {
            fprintf(stderr, "bench: --seed: bad value \"%s\"\n", val);
            return 0;
        }
        return 1;
    }
    return -1;
}

/* Apply an options text ("--N 8192 --H 64"), as written in a descriptor or a suite. */
static int apply_options_text(run_options *r, const char *text, const char *where)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", text);
    char *tokens[MAX_ARGS];
    int n = 0;
    for (char *tok = strtok(buf, " "); tok && n < MAX_ARGS; tok = strtok(NULL, " ")) tokens[n++] = tok;
    for (int i = 0; i < n; ++i) {
        const char *a = tokens[i], *val = NULL;
        if (takes_value(a) && i + 1 < n) val = tokens[++i];
        if ((takes_value(a) && !val) || apply_run_option(r, a, val) != 1) {
            fprintf(stderr, "bench: %s: \"%s\" is not a valid set of run options (at %s)\n", where, text, a);
            return 0;
        }
    }
    return 1;
}

static int parse_selection_list(const char *text, const char **out, int *n, int max)
{
    static char storage[4096];
    static size_t used;
    const size_t len = strlen(text) + 1;
    if (used + len > sizeof storage) return 0;
    char *buf = storage + used;
    memcpy(buf, text, len);
    used += len;
    for (char *name = strtok(buf, ","); name; name = strtok(NULL, ","))
        if (*n < max) out[(*n)++] = name;
    return *n > 0;
}

/* Returns 1 to run, 0 after --help, -1 on a usage error (already printed). */
static int parse_cli(int argc, char **argv, cli_options *o)
{
    memset(o, 0, sizeof *o);
    o->peaks = 1;
    o->check = 1;
    o->roles = (1u << BENCH_SOLUTION) | (1u << BENCH_BASELINE) | (1u << BENCH_FLOOR) | (1u << BENCH_SUM);
    run_options scratch;
    default_run_options(&scratch);
    for (int i = 1; i < argc; ++i) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        const char *val = NULL;
        if (takes_value(a)) {
            if (i + 1 >= argc) {
                fprintf(stderr, "bench: %s needs a value (see --help)\n", a);
                return -1;
            }
            val = argv[++i];
        }
        const int run = apply_run_option(&scratch, a, val);
        if (run == 0) return -1;
        if (run == 1) {
            if (o->n_args + 2 > MAX_ARGS) {
                fprintf(stderr, "bench: too many options\n");
                return -1;
            }
            o->args[o->n_args++] = a;
            if (val) o->args[o->n_args++] = val;
            continue;
        }
        int ok = 1;
        if (!strcmp(a, "--lesson")) ok = parse_list(a, val, &o->lessons, 0, 99, 0);
        else if (!strcmp(a, "--kernel")) ok = parse_selection_list(val, o->kernels, &o->n_kernels, MAX_ENTRIES);
        else if (!strcmp(a, "--suite")) o->suite = val;
        else if (!strcmp(a, "--role")) {
            const char *names[8];
            int n = 0;
            ok = parse_selection_list(val, names, &n, 8);
            o->roles = 0;
            for (int k = 0; k < n && ok; ++k) {
                int found = -1;
                for (int r = 0; r < BENCH_PEAK; ++r)
                    if (!strcmp(names[k], kRoleNames[r])) found = r;
                if (found < 0) {
                    fprintf(stderr, "bench: --role: unknown role \"%s\" (solution, baseline, floor, sum)\n", names[k]);
                    ok = 0;
                } else {
                    o->roles |= 1u << found;
                }
            }
        } else if (!strcmp(a, "--csv")) o->csv_path = val;
        else if (!strcmp(a, "--peak-tflops") || !strcmp(a, "--peak-gbs")) {
            const double x = atof(val);
            ok = x > 0.0;
            if (!ok) fprintf(stderr, "bench: %s: bad value \"%s\"\n", a, val);
            *(a[7] == 't' ? &o->peak_tflops : &o->peak_gbs) = x;
        } else if (!strcmp(a, "--no-peaks")) o->peaks = 0;
        else if (!strcmp(a, "--no-check")) o->check = 0;
        else if (!strcmp(a, "--keep-going")) o->keep_going = 1;
        else if (!strcmp(a, "--list")) o->list = 1;
        else if (!strcmp(a, "--dry-run")) o->dry_run = 1;
        else if (!strcmp(a, "--graph")) o->graph = 1;
        else {
            fprintf(stderr, "bench: unknown option %s (see --help)\n", a);
            ok = 0;
        }
        if (!ok) return -1;
    }
    if ((o->peak_tflops > 0.0) != (o->peak_gbs > 0.0)) {
        fprintf(stderr, "bench: --peak-tflops and --peak-gbs go together\n");
        return -1;
    }
    return 1;
}

/* ---------------------------------------------------------------- --list */

static void params_text(const bench_entry *e, char *buf, size_t len)
{
    const unsigned params = e->params;
    snprintf(buf, len, "%s%s%s%s%s", params & BENCH_WINDOW ? "window," : "", params & BENCH_KEEP ? "keep," : "",
             params & BENCH_NSA ? "config," : "", e->capturable ? "graph," : "", params || e->capturable ? "" : "-");
    const size_t n = strlen(buf);
    if (n > 1 && buf[n - 1] == ',') buf[n - 1] = '\0';
}

static void print_list(const bench_table *t)
{
    printf("# lesson\tname\trole\tbaseline\tsuites\tparameters\tcomputes\n");
    for (int i = 0; i < t->n; ++i) {
        const bench_entry *e = &t->entries[i];
        char params[64];
        params_text(e, params, sizeof params);
        printf("%02d\t%s\t%s\t%s\t%s\t%s\t%s\n", e->lesson, e->name, kRoleNames[e->role], e->baseline ? e->baseline : "-",
               e->suites ? e->suites : "-", params, e->computes);
    }
    for (int i = 0; i < t->n_suites; ++i)
        printf("# suite\t%s\t%s\t%s\n", t->suites[i].name, t->suites[i].options, t->suites[i].description);
    for (int i = 0; kBenchDefaults[i].options; ++i)
        printf("# shape\t%02d\t%s\t%s\n", kBenchDefaults[i].lesson, kBenchDefaults[i].name, kBenchDefaults[i].options);
}

/* ---------------------------------------------------------------- runs: which entries on which options */

typedef struct {
    run_options opt;
    char label[160];             /* the lessons' shapes or the suite it comes from */
    const bench_entry *entries[MAX_ENTRIES];
    int n;
} bench_run;

static int has_entry(const bench_run *r, const bench_entry *e)
{
    for (int i = 0; i < r->n; ++i)
        if (r->entries[i] == e) return 1;
    return 0;
}

static void add_entry(bench_run *r, const bench_entry *e)
{
    if (!has_entry(r, e) && r->n < MAX_ENTRIES) r->entries[r->n++] = e;
}

/* the run options as text, to tell runs apart and to print them */
static void run_text(const run_options *o, char *buf, size_t len)
{
    size_t n = 0;
    const struct {
        const char *name;
        const int_list *l;
    } lists[] = {{"B", &o->B}, {"M", &o->M}, {"N", &o->N}, {"H", &o->H}, {"G", &o->G}, {"D", &o->D},
                 {"causal", &o->causal}, {"window", &o->window}, {"keep", &o->keep}};
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; ++i) {
        n += snprintf(buf + n, n < len ? len - n : 0, "%s%s=", i ? " " : "", lists[i].name);
        for (int k = 0; k < lists[i].l->n; ++k) {
            const int v = lists[i].l->v[k];
            if (lists[i].l == &o->M && v == 0) n += snprintf(buf + n, n < len ? len - n : 0, "%sN", k ? "," : "");
            else n += snprintf(buf + n, n < len ? len - n : 0, "%s%d", k ? "," : "", v);
        }
    }
    n += snprintf(buf + n, n < len ? len - n : 0, " config=");
    for (int k = 0; k < o->configs.n; ++k)
        n += snprintf(buf + n, n < len ? len - n : 0, "%s%s%s", k ? "," : "", kConfigs[o->configs.v[k]].name,
                      o->local ? "-local" : "");
    snprintf(buf + n, n < len ? len - n : 0, " warmup=%d reps=%d seed=%llu", o->warmup, o->reps,
             (unsigned long long)o->seed);
}

/* defaults text, then the command line's run options */
static int make_options(const cli_options *cli, const char *defaults, const char *where, run_options *out)
{
    default_run_options(out);
    if (defaults && !apply_options_text(out, defaults, where)) return 0;
    for (int i = 0; i < cli->n_args; ++i) {
        const char *a = cli->args[i];
        const char *val = takes_value(a) ? cli->args[++i] : NULL;
        if (apply_run_option(out, a, val) != 1) return 0;
    }
    return 1;
}

static int wanted_role(const cli_options *cli, const bench_entry *e) { return (cli->roles >> e->role) & 1u; }

/* The entries a run times besides those selected: the baselines they are compared with. */
static void add_baselines(const bench_table *t, const cli_options *cli, bench_run *r)
{
    const int n = r->n;
    for (int i = 0; i < n; ++i) {
        const bench_entry *b = r->entries[i]->baseline ? find_entry(t, r->entries[i]->baseline) : NULL;
        if (b && wanted_role(cli, b)) add_entry(r, b);
    }
}

/* Group the selected entries into runs: one per distinct set of options. Returns the number of runs,
 * or -1 on a usage error (printed). */
static int plan_runs(const bench_table *t, const cli_options *cli, bench_run *runs, int max_runs)
{
    const bench_entry *sel[MAX_ENTRIES];
    int n_sel = 0;
    if (cli->suite) {
        int known = 0;
        for (int i = 0; i < t->n_suites; ++i) known |= !strcmp(t->suites[i].name, cli->suite);
        if (!known) {
            fprintf(stderr, "bench: --suite: no suite %s in this program (--list shows them)\n", cli->suite);
            return -1;
        }
    }
    for (int i = 0; i < cli->lessons.n; ++i) {
        int any = 0;
        for (int k = 0; k < t->n; ++k) any |= t->entries[k].lesson == cli->lessons.v[i] && t->entries[k].role != BENCH_PEAK;
        if (!any) {
            fprintf(stderr, "bench: --lesson: this program holds no entry of lesson %02d (--list shows the table)\n",
                    cli->lessons.v[i]);
            return -1;
        }
    }
    for (int i = 0; i < cli->n_kernels; ++i) {
        const bench_entry *e = find_entry(t, cli->kernels[i]);
        if (!e || e->role == BENCH_PEAK) {
            fprintf(stderr, "bench: --kernel: no entry %s in this program (--list shows the table)\n", cli->kernels[i]);
            return -1;
        }
    }
    const int everything = !cli->suite && !cli->lessons.n && !cli->n_kernels;
    for (int k = 0; k < t->n; ++k) {
        const bench_entry *e = &t->entries[k];
        if (e->role == BENCH_PEAK) continue;
        int take = everything ? e->lesson > 0 : 0;
        if (cli->suite && in_suite(e, cli->suite)) take = 1;
        for (int i = 0; i < cli->lessons.n; ++i) take |= e->lesson == cli->lessons.v[i];
        take &= wanted_role(cli, e);
        for (int i = 0; i < cli->n_kernels; ++i) take |= !strcmp(e->name, cli->kernels[i]); /* named: any role */
        if (take) sel[n_sel++] = e;
    }
    if (!n_sel) {
        fprintf(stderr, "bench: nothing selected (--role leaves out every entry asked for?)\n");
        return -1;
    }

    int n_runs = 0;
    if (cli->suite) {
        const char *options = NULL;
        for (int i = 0; i < t->n_suites; ++i)
            if (!strcmp(t->suites[i].name, cli->suite)) options = t->suites[i].options;
        bench_run *r = &runs[n_runs++];
        memset(r, 0, sizeof *r);
        if (!make_options(cli, options, cli->suite, &r->opt)) return -1;
        snprintf(r->label, sizeof r->label, "suite %s", cli->suite);
        for (int i = 0; i < n_sel; ++i) add_entry(r, sel[i]);
        add_baselines(t, cli, r);
        return n_runs;
    }
    /* each lesson's entries on each of its shapes (the built-in sizes for a lesson without any); lesson
     * 0's selected entries join every run */
    int lessons[100] = {0};
    for (int i = 0; i < n_sel; ++i) lessons[sel[i]->lesson] = 1;
    for (int lesson = 1; lesson < 100; ++lesson) {
        if (!lessons[lesson]) continue;
        int shapes[64], n_shapes = 0;
        for (int d = 0; kBenchDefaults[d].options && n_shapes < 64; ++d)
            if (kBenchDefaults[d].lesson == lesson) shapes[n_shapes++] = d;
        for (int k = 0; k < (n_shapes ? n_shapes : 1); ++k) {
            const char *options = n_shapes ? kBenchDefaults[shapes[k]].options : NULL;
            const char *shape_name = n_shapes ? kBenchDefaults[shapes[k]].name : "(the built-in sizes)";
            run_options opt;
            char where[96];
            snprintf(where, sizeof where, "lesson %02d's bench shape %s", lesson, shape_name);
            if (!make_options(cli, options, where, &opt)) return -1;
            char text[1024];
            run_text(&opt, text, sizeof text);
            bench_run *r = NULL;
            for (int j = 0; j < n_runs && !r; ++j) {
                char other[1024];
                run_text(&runs[j].opt, other, sizeof other);
                if (!strcmp(text, other)) r = &runs[j];
            }
            if (!r) {
                if (n_runs == max_runs) {
                    fprintf(stderr, "bench: more than %d runs\n", max_runs);
                    return -1;
                }
                r = &runs[n_runs++];
                memset(r, 0, sizeof *r);
                r->opt = opt;
            }
            const size_t used = strlen(r->label);
            snprintf(r->label + used, sizeof r->label - used, "%slesson %02d %s", used ? ", " : "", lesson, shape_name);
            for (int i = 0; i < n_sel; ++i)
                if (sel[i]->lesson == lesson) add_entry(r, sel[i]);
        }
    }
    if (!n_runs) { /* lesson 0's entries alone: the built-in sizes */
        bench_run *r = &runs[n_runs++];
        memset(r, 0, sizeof *r);
        if (!make_options(cli, NULL, "the command line", &r->opt)) return -1;
        snprintf(r->label, sizeof r->label, "the built-in sizes");
    }
    for (int k = 0; k < n_runs; ++k) {
        for (int i = 0; i < n_sel; ++i)
            if (sel[i]->lesson == 0) add_entry(&runs[k], sel[i]);
        add_baselines(t, cli, &runs[k]);
    }
    return n_runs;
}

/* ---------------------------------------------------------------- cases */

/* The entry's parameter combinations: index k -> (window, keep, config) of the run. */
static int combos(const bench_entry *e, const run_options *o)
{
    return (e->params & BENCH_WINDOW ? o->window.n : 1) * (e->params & BENCH_KEEP ? o->keep.n : 1) *
           (e->params & BENCH_NSA ? o->configs.n : 1);
}

static bench_case make_case(const bench_entry *e, const run_options *o, const attn_shape *sh, int k)
{
    bench_case c;
    memset(&c, 0, sizeof c);
    c.shape = *sh;
    c.seed = o->seed;
    c.local_queries = o->local;
    const int nw = e->params & BENCH_WINDOW ? o->window.n : 1, nk = e->params & BENCH_KEEP ? o->keep.n : 1;
    c.window = e->params & BENCH_WINDOW ? o->window.v[k % nw] : 0;
    c.keep = e->params & BENCH_KEEP ? o->keep.v[k / nw % nk] : 0;
    if (e->params & BENCH_NSA) {
        const int ci = o->configs.v[k / nw / nk];
        c.nsa = kConfigs[ci].params();
        snprintf(c.config, sizeof c.config, "%s%s", kConfigs[ci].name, o->local ? "-local" : "");
    }
    return c;
}

static void row_name(const bench_entry *e, const bench_case *c, char *buf, size_t len)
{
    size_t n = (size_t)snprintf(buf, len, "%s", e->name);
    if (e->params & BENCH_WINDOW) n += snprintf(buf + n, n < len ? len - n : 0, "_w%d", c->window);
    if (e->params & BENCH_KEEP) n += snprintf(buf + n, n < len ? len - n : 0, "_k%d", c->keep);
    if (e->params & BENCH_NSA) snprintf(buf + n, n < len ? len - n : 0, "_%s", c->config);
}

static void case_text(const bench_case *c, char *buf, size_t len)
{
    const attn_shape *s = &c->shape;
    size_t n = (size_t)snprintf(buf, len, "B=%d M=%d N=%d H=%d G=%d D=%d causal=%d", s->B, s->M, s->N, s->H, s->G,
                                s->D, s->causal);
    if (c->window) n += snprintf(buf + n, n < len ? len - n : 0, " window=%d", c->window);
    if (c->keep) n += snprintf(buf + n, n < len ? len - n : 0, " keep=%d%%", c->keep);
    if (c->config[0]) snprintf(buf + n, n < len ? len - n : 0, " config=%s", c->config);
}

/* Whether cases a and b agree on the shape and on the parameters entry e is swept over. */
static int same_for(const bench_entry *e, const bench_case *a, const bench_case *b)
{
    if (memcmp(&a->shape, &b->shape, sizeof a->shape)) return 0;
    if ((e->params & BENCH_WINDOW) && a->window != b->window) return 0;
    if ((e->params & BENCH_KEEP) && a->keep != b->keep) return 0;
    if ((e->params & BENCH_NSA) && strcmp(a->config, b->config)) return 0;
    return 1;
}

/* ---------------------------------------------------------------- results and output */

typedef struct {
    const bench_entry *e;
    bench_case c;
    int graph; /* timed as replays of a CUDA graph (--graph): the row's name ends in _graph */
    double ms, flops, bytes;
    const char *check; /* "ok", "FAILED", "error", "-" */
} bench_result;

typedef struct {
    int measured;
    double tflops, gbs;
} device_peaks;

typedef struct {
    char name[96];
    bench_case c;
    double ms, bar;
} bar_record;

/* an entry against its `versus` entry on the same case (the summary's comparisons) */
typedef struct {
    char name[96], versus[96];
    bench_case c;
    double ms, versus_ms, bytes, versus_bytes, expected;
    const char *note;
} versus_record;

#define MAX_VERSUS 512

typedef struct {
    const cli_options *cli;
    const bench_table *t;
    device_peaks peaks;
    char device[256];
    FILE *csv;
    int failures;
    bench_result *results; /* of the current shape */
    int n_results, cap_results;
    bar_record bars[256];
    int n_bars, any_bar;
    versus_record versus[MAX_VERSUS];
    int n_versus;
    char notes[64][400]; /* printed once each */
    int n_notes;
} bench_ctx;

static void note_once(bench_ctx *x, const char *text)
{
    for (int i = 0; i < x->n_notes; ++i)
        if (!strcmp(x->notes[i], text)) return;
    if (x->n_notes < 64) snprintf(x->notes[x->n_notes++], sizeof x->notes[0], "%s", text);
    fprintf(stderr, "note: %s\n", text);
}

static void csv_text(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; ++s) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static const char kCsvHeader[] = "device,lesson,entry,kernel,role,baseline,B,M,N,H,G,D,causal,window,keep,config,ms,"
                                 "tflops,gbs,peak_tflops,peak_gbs,frac_peak_flops,frac_peak_bw,speedup,check\n";

static void print_header(void)
{
    printf("%-2s %-30s %-8s %2s %6s %6s %3s %3s %4s %3s %10s %8s %8s %6s %6s %8s  %s\n", "l", "kernel", "role", "B",
           "M", "N", "H", "G", "D", "cau", "ms", "TFLOP/s", "GB/s", "%flops", "%bw", "vs base", "check");
    fflush(stdout);
}

/* the result of entry `name` on the case c as that entry sees it (its own parameters), timed plainly (graph
 * 0) or from a CUDA graph (1), or NULL */
static const bench_result *find_result(const bench_ctx *x, const char *name, const bench_case *c, int graph)
{
    for (int i = 0; i < x->n_results; ++i) {
        const bench_result *r = &x->results[i];
        if (!strcmp(r->e->name, name) && r->graph == graph && same_for(r->e, &r->c, c)) return r;
    }
    return NULL;
}

/* a row's name: the entry's, its parameters' suffixes, and _graph for a graph's replays */
static void result_name(const bench_entry *e, const bench_case *c, int graph, char *buf, size_t len)
{
    row_name(e, c, buf, len);
    const size_t n = strlen(buf);
    if (graph) snprintf(buf + n, n < len ? len - n : 0, "_graph");
}

/* The row a row of entry e is compared with: entry `other` on the same case, in the same mode when `other`
 * is capturable (a graph row against its graph row), else its plain row. */
static int compared_mode(const bench_ctx *x, const char *other, int graph)
{
    const bench_entry *o = find_entry(x->t, other);
    return graph && o && o->capturable;
}

static void emit(bench_ctx *x, const bench_result *r)
{
    const bench_entry *e = r->e;
    const attn_shape *s = &r->c.shape;
    char name[96], tflops[16] = "-", gbs[16] = "-", fflops[16] = "-", fbw[16] = "-", vs[16] = "-";
    result_name(e, &r->c, r->graph, name, sizeof name);
    const double sec = r->ms * 1e-3;
    const double tf = r->flops > 0.0 ? r->flops / sec / 1e12 : 0.0, gb = r->bytes > 0.0 ? r->bytes / sec / 1e9 : 0.0;
    double speedup = 0.0;
    if (tf > 0.0) snprintf(tflops, sizeof tflops, "%.2f", tf);
    if (gb > 0.0) snprintf(gbs, sizeof gbs, "%.1f", gb);
    if (x->peaks.measured && tf > 0.0) snprintf(fflops, sizeof fflops, "%.1f%%", 100.0 * tf / x->peaks.tflops);
    if (x->peaks.measured && gb > 0.0) snprintf(fbw, sizeof fbw, "%.1f%%", 100.0 * gb / x->peaks.gbs);
    const bench_entry *base_entry = e->baseline ? find_entry(x->t, e->baseline) : NULL;
    const int base_graph = base_entry && compared_mode(x, e->baseline, r->graph);
    char base_name[96] = "";
    if (base_entry) result_name(base_entry, &r->c, base_graph, base_name, sizeof base_name);
    const bench_result *base = base_entry ? find_result(x, e->baseline, &r->c, base_graph) : NULL;
    if (base && r->ms > 0.0) {
        speedup = base->ms / r->ms;
        snprintf(vs, sizeof vs, "%.2fx", speedup);
    }
    char lesson[4];
    snprintf(lesson, sizeof lesson, "%02d", e->lesson);
    printf("%-2s %-30s %-8s %2d %6d %6d %3d %3d %4d %3d %10.4f %8s %8s %6s %6s %8s  %s\n", lesson, name,
           kRoleNames[e->role], s->B, s->M, s->N, s->H, s->G, s->D, s->causal, r->ms, tflops, gbs, fflops, fbw, vs,
           r->check);
    fflush(stdout);
    if (x->csv) {
        csv_text(x->csv, x->device);
        fprintf(x->csv, ",%s,%s,%s,%s,%s,%d,%d,%d,%d,%d,%d,%d,", lesson, e->name, name, kRoleNames[e->role], base_name,
                s->B, s->M, s->N, s->H, s->G, s->D, s->causal);
        if (e->params & BENCH_WINDOW) fprintf(x->csv, "%d", r->c.window);
        fputc(',', x->csv);
        if (e->params & BENCH_KEEP) fprintf(x->csv, "%d", r->c.keep);
        fprintf(x->csv, ",%s,%.6g,", r->c.config, r->ms);
        if (tf > 0.0) fprintf(x->csv, "%.4f", tf);
        fputc(',', x->csv);
        if (gb > 0.0) fprintf(x->csv, "%.2f", gb);
        fputc(',', x->csv);
        if (x->peaks.measured) {
            fprintf(x->csv, "%.2f,%.2f,", x->peaks.tflops, x->peaks.gbs);
            if (tf > 0.0) fprintf(x->csv, "%.5f", tf / x->peaks.tflops);
            fputc(',', x->csv);
            if (gb > 0.0) fprintf(x->csv, "%.5f", gb / x->peaks.gbs);
            fputc(',', x->csv);
        } else {
            fprintf(x->csv, ",,,,"); /* no peaks measured (--no-peaks): empty fields */
        }
        if (speedup > 0.0) fprintf(x->csv, "%.4f", speedup);
        fprintf(x->csv, ",%s\n", r->check);
        fflush(x->csv); /* a run cut short keeps every row measured so far */
    }
    const bench_entry *versus_entry = e->versus ? find_entry(x->t, e->versus) : NULL;
    const int versus_graph = versus_entry && compared_mode(x, e->versus, r->graph);
    const bench_result *versus = versus_entry ? find_result(x, e->versus, &r->c, versus_graph) : NULL;
    if (versus && r->ms > 0.0 && x->n_versus < MAX_VERSUS) {
        versus_record *v = &x->versus[x->n_versus++];
        snprintf(v->name, sizeof v->name, "%s", name);
        result_name(versus_entry, &r->c, versus_graph, v->versus, sizeof v->versus);
        v->c = r->c, v->ms = r->ms, v->versus_ms = versus->ms, v->bytes = r->bytes, v->versus_bytes = versus->bytes;
        v->expected = e->versus_expected ? e->versus_expected(&r->c) : 0.0;
        v->note = e->versus_note;
    }
    if (e->bar_ms) {
        x->any_bar = 1;
        const double bar = e->bar_ms(&r->c);
        if (bar > 0.0 && x->n_bars < 256) {
            bar_record *b = &x->bars[x->n_bars++];
            snprintf(b->name, sizeof b->name, "%s", name);
            b->c = r->c, b->ms = r->ms, b->bar = bar;
        }
    }
}

static int keep_result(bench_ctx *x, const bench_result *r)
{
    if (x->n_results == x->cap_results) {
        const int cap = x->cap_results ? 2 * x->cap_results : 64;
        bench_result *p = (bench_result *)realloc(x->results, (size_t)cap * sizeof *p);
        if (!p) return attn_fail(ATTN_ERR_OUT_OF_MEMORY, "host memory for the results");
        x->results = p;
        x->cap_results = cap;
    }
    x->results[x->n_results++] = *r;
    return ATTN_OK;
}

/* ---------------------------------------------------------------- one entry on one case */

/* After a failed operation: ATTN_OK when the device is still usable (the failure is the entry's), the
 * status when a sticky error (an illegal address, a trap) left the context unusable. */
static int device_still_usable(int st)
{
    if (st != ATTN_ERR_CUDA) return ATTN_OK;
    cudaGetLastError(); /* clears a launch error that is not sticky; a sticky one comes back below */
    if (cudaDeviceSynchronize() != cudaSuccess || cudaGetLastError() != cudaSuccess) return st;
    return ATTN_OK;
}

/* After row `name` failed at `stage` with status st: report it, count it, and say whether the run goes on
 * (ATTN_OK: with --keep-going and a usable device). */
static int entry_failed(bench_ctx *x, const char *name, const char *ctext, const char *stage, int st)
{
    fprintf(stderr, "bench: %s failed on %s (%s): %s: %s\n", name, ctext, stage, attn_strerror(st), attn_error_detail());
    ++x->failures;
    const int fatal = device_still_usable(st);
    if (fatal) {
        fprintf(stderr, "bench: the CUDA context is unusable after %s: stopping\n", name);
        return fatal;
    }
    attn_clear_error();
    return x->cli->keep_going ? ATTN_OK : st;
}

/* --graph: the entry's launch on its state captured once into a CUDA graph, then its replays timed as the
 * plain launch was (the same warm-up, L2 flushes and median); the row is credited with the plain row's
 * FLOPs and bytes and carries its check (the graph replays the same kernels on the same buffers). */
static int time_graph(bench_ctx *x, const bench_entry *e, const bench_case *c, const run_options *o, void *state,
                      const bench_result *plain)
{
    char name[96], ctext[160];
    result_name(e, c, 1, name, sizeof name);
    case_text(c, ctext, sizeof ctext);
    bench_graph g;
    attn_timing timing;
    attn_clear_error();
    const char *stage = "capturing it into a CUDA graph";
    int st = bench_graph_capture(&g, e->launch, state, -1);
    if (!st) {
        stage = "timing its graph's replays";
        st = attn_time(bench_graph_launch, &g, o->warmup, o->reps, &timing);
    }
    bench_graph_release(&g);
    if (st) return entry_failed(x, name, ctext, stage, st);
    bench_result r = *plain;
    r.graph = 1;
    r.ms = timing.median_ms;
    st = keep_result(x, &r);
    if (!st) emit(x, &r);
    return st;
}

/* Time entry e on case c (and its graph, with --graph). Returns ATTN_OK unless the run must stop (a sticky
 * CUDA error, or a failure without --keep-going); failures are counted and reported on stderr as
 * "bench: <row> ...". */
static int run_entry(bench_ctx *x, const bench_entry *e, const bench_case *c, const run_options *o)
{
    char name[96], ctext[160], why[512] = "";
    row_name(e, c, name, sizeof name);
    case_text(c, ctext, sizeof ctext);
    if (e->supports && !e->supports(c, why, sizeof why)) {
        char text[400];
        snprintf(text, sizeof text, "%s skipped on %s: %s", e->name, ctext, why);
        note_once(x, text);
        return ATTN_OK;
    }
    if (e->device_bytes) {
        size_t free_b = 0, total_b = 0;
        int st = attn_cuda_status(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
        if (st) return st;
        const double need = e->device_bytes(c);
        if (need > 0.9 * (double)free_b) {
            char text[400];
            snprintf(text, sizeof text, "%s skipped on %s: %.1f GiB of buffers do not fit in %.1f GiB of free device "
                     "memory", name, ctext, need / 1073741824.0, free_b / 1073741824.0);
            note_once(x, text);
            return ATTN_OK;
        }
    }
    void *state = NULL;
    const char *stage = "making its inputs";
    attn_clear_error();
    int st = e->setup(c, &state);
    if (!st) st = attn_dsync(); /* attn_time's stream does not wait for the legacy stream the inputs were made on */
    bench_result r;
    memset(&r, 0, sizeof r);
    r.e = e, r.c = *c, r.check = "-";
    if (!st) {
        stage = "its first run";
        st = e->launch(state, 0);
        if (!st) st = attn_dsync();
    }
    if (!st && e->check && x->cli->check) {
        int failed = 0;
        char msg[2048] = "";
        stage = "its check";
        st = e->check(c, state, &failed, msg, sizeof msg);
        if (!st) {
            r.check = failed ? "FAILED" : "ok";
            if (failed) {
                fprintf(stderr, "bench: %s check FAILED on %s: %s\n", name, ctext, msg);
                ++x->failures;
            }
        } else if (device_still_usable(st) == ATTN_OK) {
            fprintf(stderr, "bench: %s: the check could not run on %s: %s: %s\n", name, ctext, attn_strerror(st),
                    attn_error_detail());
            r.check = "error";
            ++x->failures;
            attn_clear_error();
            st = ATTN_OK;
        }
    }
    attn_timing timing;
    if (!st) {
        stage = "timing";
        st = attn_time(e->launch, state, o->warmup, o->reps, &timing);
    }
    if (!st) {
        r.ms = timing.median_ms;
        r.flops = e->flops ? e->flops(c, state) : 0.0;
        r.bytes = e->bytes ? e->bytes(c, state) : 0.0;
        st = keep_result(x, &r);
        if (!st) emit(x, &r);
        if (!st && x->cli->graph && e->capturable) st = time_graph(x, e, c, o, state, &r);
        e->teardown(state);
        return st;
    }
    e->teardown(state);
    return entry_failed(x, name, ctext, stage, st);
}

/* A sum on case c: the times, FLOPs and bytes of its parts timed on c. */
static void run_sum(bench_ctx *x, const bench_entry *e, const bench_case *c)
{
    bench_result r;
    memset(&r, 0, sizeof r);
    r.e = e, r.c = *c, r.check = "-";
    for (int p = 0; p < 4 && e->parts[p]; ++p) {
        const bench_result *part = find_result(x, e->parts[p], c, 0);
        if (!part) {
            char text[400];
            snprintf(text, sizeof text, "%s is not computed: its part %s was not timed in this run (select both, "
                     "e.g. --suite nsa)", e->name, e->parts[p]);
            note_once(x, text);
            return;
        }
        r.ms += part->ms;
        r.flops += part->flops;
        r.bytes += part->bytes;
    }
    if (!keep_result(x, &r)) emit(x, &r);
}

/* ---------------------------------------------------------------- a run */

static int role_order(const bench_entry *e)
{
    switch (e->role) {
    case BENCH_BASELINE: return 0; /* first: the speed-up of the others is printed with their rows */
    case BENCH_SOLUTION: return 1;
    case BENCH_FLOOR: return 2;
    default: return 3;
    }
}

static int run_index(const bench_run *r, const char *name)
{
    for (int i = 0; name && i < r->n; ++i)
        if (!strcmp(r->entries[i]->name, name)) return i;
    return -1;
}

/* Baselines first, then solutions, floors, sums (stable); then every entry after the entries of the run it
 * is compared with (its baseline, its versus), so that their rows exist when its row is printed: a
 * solution can be another solution's baseline (nsa_forward for nsa_forward_weights). */
static void sort_entries(bench_run *r)
{
    for (int i = 1; i < r->n; ++i)
        for (int j = i; j > 0 && role_order(r->entries[j - 1]) > role_order(r->entries[j]); --j) {
            const bench_entry *tmp = r->entries[j];
            r->entries[j] = r->entries[j - 1];
            r->entries[j - 1] = tmp;
        }
    for (int pass = 0; pass < r->n; ++pass) { /* a few passes: chains of comparisons are short */
        int moved = 0;
        for (int i = 0; i < r->n && !moved; ++i) {
            const bench_entry *e = r->entries[i];
            const int b = run_index(r, e->baseline), v = run_index(r, e->versus), j = b > v ? b : v;
            if (j > i) { /* move e just after the later of the two */
                memmove(&r->entries[i], &r->entries[i + 1], (size_t)(j - i) * sizeof r->entries[0]);
                r->entries[j] = e;
                moved = 1;
            }
        }
        if (!moved) break;
    }
}

/* Calls fn(x, run, shape) for every valid shape of the run's lists; skips noted. */
static int for_each_shape(bench_ctx *x, const bench_run *run,
                          int (*fn)(bench_ctx *, const bench_run *, const attn_shape *))
{
    const run_options *o = &run->opt;
    int st = ATTN_OK;
    for (int ib = 0; ib < o->B.n && !st; ++ib)
        for (int ih = 0; ih < o->H.n && !st; ++ih)
            for (int ig = 0; ig < o->G.n && !st; ++ig) {
                if (o->H.v[ih] % o->G.v[ig]) {
                    char text[400];
                    snprintf(text, sizeof text, "H=%d G=%d skipped: H must be a multiple of G", o->H.v[ih], o->G.v[ig]);
                    if (x) note_once(x, text);
                    continue;
                }
                for (int id = 0; id < o->D.n && !st; ++id)
                    for (int ic = 0; ic < o->causal.n && !st; ++ic)
                        for (int im = 0; im < o->M.n && !st; ++im)
                            for (int in = 0; in < o->N.n && !st; ++in) {
                                const int N = o->N.v[in], M = o->M.v[im] ? o->M.v[im] : N;
                                if (M > N) {
                                    char text[400];
                                    snprintf(text, sizeof text, "M=%d N=%d skipped: the M queries are the last M of "
                                             "N positions", M, N);
                                    if (x) note_once(x, text);
                                    continue;
                                }
                                const attn_shape sh = attn_make_shape(o->B.v[ib], M, N, o->H.v[ih], o->G.v[ig],
                                                                      o->D.v[id], o->causal.v[ic]);
                                st = fn(x, run, &sh);
                            }
            }
    return st;
}

static int time_shape(bench_ctx *x, const bench_run *run, const attn_shape *sh)
{
    x->n_results = 0;
    int st = ATTN_OK;
    for (int i = 0; i < run->n && !st; ++i) {
        const bench_entry *e = run->entries[i];
        if (e->role == BENCH_SUM) continue;
        for (int k = 0; k < combos(e, &run->opt) && !st; ++k) {
            const bench_case c = make_case(e, &run->opt, sh, k);
            st = run_entry(x, e, &c, &run->opt);
        }
    }
    for (int i = 0; i < run->n && !st; ++i) {
        const bench_entry *e = run->entries[i];
        if (e->role != BENCH_SUM) continue;
        for (int k = 0; k < combos(e, &run->opt); ++k) {
            const bench_case c = make_case(e, &run->opt, sh, k);
            run_sum(x, e, &c);
        }
    }
    return st;
}

static int g_dry_run_graph; /* --dry-run --graph: print the graph rows too */

static int print_shape(bench_ctx *x, const bench_run *run, const attn_shape *sh)
{
    (void)x;
    for (int i = 0; i < run->n; ++i) {
        const bench_entry *e = run->entries[i];
        for (int k = 0; k < combos(e, &run->opt); ++k) {
            const bench_case c = make_case(e, &run->opt, sh, k);
            char name[96], ctext[160];
            case_text(&c, ctext, sizeof ctext);
            for (int graph = 0; graph <= (g_dry_run_graph && e->capturable); ++graph) {
                result_name(e, &c, graph, name, sizeof name);
                printf("  %02d %-30s %-8s %s\n", e->lesson, name, kRoleNames[e->role], ctext);
            }
        }
    }
    return ATTN_OK;
}

/* ---------------------------------------------------------------- peaks */

static int measure_peaks(bench_ctx *x)
{
    bench_case c;
    memset(&c, 0, sizeof c);
    for (int i = 0; i < x->t->n; ++i) {
        const bench_entry *e = &x->t->entries[i];
        if (e->role != BENCH_PEAK) continue;
        void *state = NULL;
        attn_timing t;
        attn_clear_error();
        int st = e->setup(&c, &state);
        if (!st) st = attn_dsync();
        if (!st) st = attn_time(e->launch, state, 3, 10, &t);
        double flops = 0.0, bytes = 0.0;
        if (!st) {
            flops = e->flops ? e->flops(&c, state) : 0.0;
            bytes = e->bytes ? e->bytes(&c, state) : 0.0;
        }
        e->teardown(state);
        if (st) {
            fprintf(stderr, "bench: %s failed: %s: %s\n", e->name, attn_strerror(st), attn_error_detail());
            return st;
        }
        const double sec = t.median_ms * 1e-3;
        if (flops > 0.0) {
            x->peaks.tflops = flops / sec / 1e12;
            printf("peak: %-16s %9.1f TFLOP/s  (%s; median of 10)\n", e->name, x->peaks.tflops, e->computes);
        } else if (bytes > 0.0) {
            x->peaks.gbs = bytes / sec / 1e9;
            printf("peak: %-16s %9.1f GB/s     (%s; median of 10)\n", e->name, x->peaks.gbs, e->computes);
        }
    }
    x->peaks.measured = x->peaks.tflops > 0.0 && x->peaks.gbs > 0.0;
    fflush(stdout);
    return ATTN_OK;
}

/* ---------------------------------------------------------------- the bars */

static void print_bars(const bench_ctx *x)
{
    if (!x->any_bar) return;
    printf("\nThe course's bars (from the lesson READMEs, set on an H200):\n");
    if (!x->n_bars) printf("  no row of this run is on a bar's shape (B=1 M=N=65536 H=64 G=4 D=128, causal)\n");
    int local = 0;
    for (int i = 0; i < x->n_bars; ++i) {
        const bar_record *b = &x->bars[i];
        local |= b->c.local_queries;
        printf("  %-32s N=%-6d %9.3f ms   bar %5.1f ms  %s\n", b->name, b->c.shape.N, b->ms, b->bar,
               b->ms <= b->bar ? "PASS" : "MISS");
    }
    if (local) printf("  (--local-queries: lists with locality; the bars are defined on plain random inputs)\n");
    fflush(stdout);
}

/* ---------------------------------------------------------------- the comparisons (versus) */

static void print_versus(const bench_ctx *x)
{
    if (!x->n_versus) return;
    printf("\nAgainst other entries on the same case (speed-up: the other's time over this row's; bytes: the other's "
           "bytes over this row's, the bytes each must read):\n");
    const char *notes[8];
    int n_notes = 0;
    for (int i = 0; i < x->n_versus; ++i) {
        const versus_record *v = &x->versus[i];
        const attn_shape *s = &v->c.shape;
        char bytes[32] = "", expected[32] = "";
        if (v->bytes > 0.0 && v->versus_bytes > 0.0) snprintf(bytes, sizeof bytes, "  bytes %6.2fx", v->versus_bytes / v->bytes);
        if (v->expected > 0.0) snprintf(expected, sizeof expected, " (expected %.2fx)", v->expected);
        printf("  %-28s vs %-24s B=%-3d N=%-6d %9.4f ms vs %9.4f ms  speed-up %6.2fx%s%s\n", v->name, v->versus, s->B,
               s->N, v->ms, v->versus_ms, v->versus_ms / v->ms, bytes, expected);
        int known = !v->note;
        for (int k = 0; k < n_notes && !known; ++k) known = !strcmp(notes[k], v->note);
        if (!known && n_notes < 8) notes[n_notes++] = v->note;
    }
    for (int k = 0; k < n_notes; ++k) printf("  expected: %s\n", notes[k]);
    fflush(stdout);
}

/* ---------------------------------------------------------------- main */

int main(int argc, char **argv)
{
    cli_options cli;
    const int parsed = parse_cli(argc, argv, &cli);
    if (parsed <= 0) return parsed == 0 ? 0 : 2;
    static bench_table table;
    if (!build_table(&table)) return 1;
    if (cli.list) {
        print_list(&table);
        return 0;
    }
    static bench_run runs[64];
    const int n_runs = plan_runs(&table, &cli, runs, 64);
    if (n_runs < 0) return 2;
    for (int k = 0; k < n_runs; ++k) sort_entries(&runs[k]);
    if (cli.dry_run) {
        g_dry_run_graph = cli.graph;
        for (int k = 0; k < n_runs; ++k) {
            char text[1024];
            run_text(&runs[k].opt, text, sizeof text);
            printf("run %d (%s): %s\n", k + 1, runs[k].label, text);
            for_each_shape(NULL, &runs[k], print_shape);
        }
        return 0;
    }

    char why[256];
    if (!attn_gpu_available(why, sizeof why)) {
        fprintf(stderr, "bench: %s\n", why);
        return BENCH_NO_GPU;
    }
    static bench_ctx x;
    x.cli = &cli;
    x.t = &table;
    attn_gpu_describe(x.device, sizeof x.device);
    printf("device: %s\n", x.device);
    fflush(stdout);
    if (cli.csv_path) {
        x.csv = fopen(cli.csv_path, "w");
        if (!x.csv) {
            fprintf(stderr, "bench: cannot write %s\n", cli.csv_path);
            return 1;
        }
        fputs(kCsvHeader, x.csv);
    }
    int st = ATTN_OK;
    if (cli.peak_tflops > 0.0) {
        x.peaks.measured = 1;
        x.peaks.tflops = cli.peak_tflops;
        x.peaks.gbs = cli.peak_gbs;
        printf("peaks (given, not measured): %.1f TFLOP/s bf16 GEMM, %.1f GB/s copy\n", x.peaks.tflops, x.peaks.gbs);
    } else if (cli.peaks) {
        st = measure_peaks(&x);
    }
    for (int k = 0; k < n_runs && !st; ++k) {
        char text[1024];
        run_text(&runs[k].opt, text, sizeof text);
        printf("\nrun %d of %d (%s): %s\n", k + 1, n_runs, runs[k].label, text);
        print_header();
        st = for_each_shape(&x, &runs[k], time_shape);
    }
    if (!st) print_versus(&x);
    if (!st) print_bars(&x);
    if (st) fprintf(stderr, "bench: stopped: %s: %s\n", attn_strerror(st), attn_error_detail());
    if (x.csv && fclose(x.csv) != 0 && !st) {
        fprintf(stderr, "bench: error writing %s\n", cli.csv_path);
        st = 1;
    }
    if (!st && cli.csv_path) fprintf(stderr, "wrote %s\n", cli.csv_path);
    if (x.failures) fprintf(stderr, "bench: %d entry run(s) or check(s) failed (see above)\n", x.failures);
    free(x.results);
    return st || x.failures ? 1 : 0;
}
