"""Cheats: submissions that try to earn points they should not, one or more for each class of hole a
grade must be safe from (common/README.md, "What the grading trusts, and why"). Each is graded by
tools/grading/grade.py like a learner's lesson folder (`loses` names the parts that must lose points) by the
self-test `selftest.cheat.NN.<name>`. Snippets are replaced in a copy of the solution, so every
cheat is also wrong or idle where it matters: without the defence it would score.

Classes:
  1 the verdict inside the process   exit early, write the report files, fake completion
  2 callable harness internals       the frozen baselines, the oracle
  3 unchecked timed calls            remember the last output, work only on the first call
  4 races                            a missing barrier that only compute-sanitizer sees
  5 blind spots of the test data     32-bit offsets past 2^31 elements
  6 the process boundary             stubs plus code run before main: patch the API to exit 0, find the
                                     oracle by reading the executable, reach files, processes, the test
                                     process's memory and Criterion's socket (graded with the audit as a
                                     lint: the runner's isolation alone must hold)
  - and the folder itself            an extra file, a changed header, a public kernel, a constructor,
                                     a system call in inline assembly, a stream of one's own, CUDA events
"""

_SOFTMAX_BODY = """    for (long r = 0; r < rows; ++r) {
        float *row = x + (size_t)r * n;"""

VARIANTS = [
    # ------------------------------------------------------------------ 1: the verdict in the process
    dict(lesson="01_naive_attention", name="cheat_exit_early", file="naive_attention.c", loses=["c_part"],
         why="the softmax ends the test process with status 0 before any assertion can fail: Criterion "
             "would count that as passed (the audit refuses exit; without it, the call fails in the runner, a process of its own)",
         old=_SOFTMAX_BODY,
         new="""    { extern void exit(int); exit(0); }
    for (long r = 0; r < rows; ++r) {
        float *row = x + (size_t)r * n;"""),
    dict(lesson="01_naive_attention", name="cheat_exit_by_syscall", file="naive_attention.c", loses=["c_part"],
         why="the same early exit through an inline-assembly system call, which no symbol shows",
         old=_SOFTMAX_BODY,
         new="""    __asm__ volatile("mov $60, %%eax\\n\\txor %%edi, %%edi\\n\\tsyscall" ::: "rax", "rdi", "memory");
    for (long r = 0; r < rows; ++r) {
        float *row = x + (size_t)r * n;"""),
    dict(lesson="02_online_softmax", name="cheat_write_report", file="online_softmax.c", loses=["c_part"],
         why="the C part appends a perfect speed line to the grader's $ATTN_REPORT and returns early",
         old="""    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: start with m = -INFINITY""",
         new="""    {
        extern char *getenv(const char *);
        typedef struct _IO_FILE FILE;
        extern FILE *fopen(const char *, const char *);
        extern int fclose(FILE *);
        extern int fprintf(FILE *, const char *, ...);
        const char *path = getenv("ATTN_REPORT");
        FILE *f = path ? fopen(path, "a") : 0;
        if (f) fprintf(f, "{\\"lesson\\": \\"02\\", \\"ratio\\": 99.0, \\"target\\": 12.0, \\"score\\": 1.0}\\n"), fclose(f);
    }
    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: start with m = -INFINITY"""),
    dict(lesson="01_naive_attention", name="cheat_static_constructor", needs_gpu=False, file="naive_attention.cu",
         loses=["cuda_part", "speed"],
         why="a global object whose constructor runs before main, in the grader's own runner process",
         old="/* A grid that fills the GPU without exceeding the hardware limit; the kernels loop over the rest. */",
         new="""struct Early { Early() { printf("running before main\\n"); } };
static Early early;
/* A grid that fills the GPU without exceeding the hardware limit; the kernels loop over the rest. */"""),
    # ------------------------------------------------------------------ 2: harness internals
    dict(lesson="04_gqa", name="cheat_calls_frozen_flash", needs_gpu=False, file="gqa_attention.cu", loses=["cuda_part", "speed"],
         why="the CUDA part hands the work to the frozen flash kernel of common/ (it supports GQA)",
         old="""    if (shape->D == 64) return launch<64>(shape, scale_log2, q, k, v, o, lse, stream);
    return launch<128>(shape, scale_log2, q, k, v, o, lse, stream);""",
         new="""    extern int attn_baseline_flash_bf16(const attn_shape *, const uint16_t *, const uint16_t *,
                                        const uint16_t *, uint16_t *, float *, cudaStream_t);
    return attn_baseline_flash_bf16(shape, q, k, v, o, lse, stream);"""),
    dict(lesson="03_flash_attention", name="cheat_calls_oracle", file="flash_attention.c", loses=["c_part"],
         why="the C part runs the double-precision oracle the tests compare with",
         old="""    /* BEGIN SOLUTION stub="st = ATTN_ERR_NOT_IMPLEMENTED;" */""",
         new="""    {
        typedef struct { attn_shape shape; int window; const int32_t *bi; int nb, bs; void *vis, *vctx;
                         const float *gates, *kw; } opts_t;
        extern int attn_oracle_forward(const opts_t *, const float *, const float *, const float *, double *,
                                       double *, double *);
        opts_t opts = {*shape, 0, 0, 0, 0, 0, 0, 0, 0};
        const size_t nq = (size_t)shape->B * shape->M * shape->H * shape->D;
        const size_t nl = (size_t)shape->B * shape->H * shape->M;
        double *o64 = malloc(nq * sizeof(double)), *l64 = malloc(nl * sizeof(double));
        attn_oracle_forward(&opts, q, k, v, o64, l64, 0);
        for (size_t e = 0; e < nq; ++e) o[e] = (float)o64[e];
        for (size_t e = 0; e < nl; ++e) lse[e] = (float)l64[e];
        free(o64), free(l64), free(m), free(l), free(acc), free(s);
        return ATTN_OK;
    }
    /* BEGIN SOLUTION stub="st = ATTN_ERR_NOT_IMPLEMENTED;" */"""),
    # ------------------------------------------------------------------ 3: unchecked timed calls
    dict(lesson="06_masks_vs_sparsity", name="cheat_memo_output", file="sparsity.cu", loses=["speed"],
         why="block-sparse attention keeps a private copy of its last output and, called again with the same "
             "pointers, copies it back instead of computing (right on the first call, and on repeated calls "
             "with the same inputs, which is all the old speed test made)",
         old="""    if (shape->D == 64) return launch_block_sparse<64>(shape, block_indices, T, scale_log2, q, k, v, o, lse, stream);
    return launch_block_sparse<128>(shape, block_indices, T, scale_log2, q, k, v, o, lse, stream);""",
         new="""    static const void *last_q, *last_o;
    static void *saved_o, *saved_lse;
    static size_t saved_bytes;
    const size_t o_bytes = (size_t)shape->B * shape->M * shape->H * shape->D * 2;
    const size_t l_bytes = (size_t)shape->B * shape->H * shape->M * 4;
    if (q == last_q && o == last_o && saved_bytes == o_bytes) {
        cudaMemcpyAsync(o, saved_o, o_bytes, cudaMemcpyDeviceToDevice, stream);
        cudaMemcpyAsync(lse, saved_lse, l_bytes, cudaMemcpyDeviceToDevice, stream);
        return ATTN_OK;
    }
    const int st2 = shape->D == 64 ? launch_block_sparse<64>(shape, block_indices, T, scale_log2, q, k, v, o, lse, stream)
                                   : launch_block_sparse<128>(shape, block_indices, T, scale_log2, q, k, v, o, lse, stream);
    if (saved_o) cudaFree(saved_o), cudaFree(saved_lse);
    cudaMalloc(&saved_o, o_bytes), cudaMalloc(&saved_lse, l_bytes);
    cudaMemcpyAsync(saved_o, o, o_bytes, cudaMemcpyDeviceToDevice, stream);
    cudaMemcpyAsync(saved_lse, lse, l_bytes, cudaMemcpyDeviceToDevice, stream);
    last_q = q, last_o = o, saved_bytes = o_bytes;
    return st2;"""),
    dict(lesson="05_sliding_window", name="cheat_first_call_only", file="sliding_window.cu", loses=["speed"],
         why="windowed attention computes on the first call with given pointers and returns at once afterwards, "
             "leaving the previous output in place",
         old="""    if (shape->D == 64) return launch<64>(shape, window, scale_log2, q, k, v, o, lse, stream);
    return launch<128>(shape, window, scale_log2, q, k, v, o, lse, stream);""",
         new="""    static const void *last_q, *last_o;
    static int last_n;
    if (q == last_q && o == last_o && last_n == shape->N) return ATTN_OK;
    last_q = q, last_o = o, last_n = shape->N;
    if (shape->D == 64) return launch<64>(shape, window, scale_log2, q, k, v, o, lse, stream);
    return launch<128>(shape, window, scale_log2, q, k, v, o, lse, stream);"""),
    dict(lesson="03_flash_attention", name="cheat_own_stream", needs_gpu=False, file="flash_attention.cu", loses=["cuda_part", "speed"],
         why="the kernel runs on a stream of its own, outside the timed stream, so the timer stops before it ends",
         old="""    if (shape->D == 64) return launch<64>(shape, scale_log2, q, k, v, o, lse, stream);""",
         new="""    static cudaStream_t mine;
    if (!mine) cudaStreamCreateWithFlags(&mine, cudaStreamNonBlocking);
    stream = mine;
    if (shape->D == 64) return launch<64>(shape, scale_log2, q, k, v, o, lse, stream);"""),
    dict(lesson="09_selected_attention", name="cheat_timer_event", needs_gpu=False, file="selected_attention.cu",
         loses=["cuda_part", "speed"],
         why="CUDA events in lesson code: the timer's own start and stop events sit in the caller's frame, "
             "and one recorded again after the work makes the measured time near zero; the audit refuses "
             "every cudaEvent* call (here a harmless record, which stands for the class)",
         old="""    st = nsa_selected_attention_window_cuda(shape, p, q, k, v, indices, o, lse, stream);""",
         new="""    {
        cudaEvent_t ev;
        if (cudaEventCreate(&ev) == cudaSuccess) cudaEventRecord(ev, stream), cudaEventDestroy(ev);
    }
    st = nsa_selected_attention_window_cuda(shape, p, q, k, v, indices, o, lse, stream);"""),
    # ------------------------------------------------------------------ the folder itself
    dict(lesson="03_flash_attention", name="cheat_changed_header", file="flash_attention.h",
         loses=["c_part", "cuda_part", "speed"],
         why="the header, compiled into the tests, turns every assertion off",
         old="#include \"attn.h\"\n",
         new="#include \"attn.h\"\n#ifdef __cplusplus\n#else\n#define cr_assert(...) ((void)0)\n#endif\n"),
    dict(lesson="02_online_softmax", name="cheat_extra_file", loses=["c_part", "cuda_part", "speed"],
         why="an extra header in the lesson folder shadows the harness's check.h",
         extra_files={"check.h": "#error this file shadows common/grading/check.h\n"}),
]

# ------------------------------------------------------------------ 4: races the numbers do not show
_BARRIER = """        cp_async_wait_all();
        __syncthreads(); /* V_j has landed for everyone; nobody still reads K_j */"""
VARIANTS += [
    dict(lesson="04_gqa", name="cheat_missing_barrier", file="gqa_attention.cu", loses=["cuda_part", "speed"],
         why="no barrier between the score phase and the next K tile load: a race racecheck reports and the "
             "numbers rarely show",
         old=_BARRIER, new="""        cp_async_wait_all();"""),
    dict(lesson="05_sliding_window", name="cheat_missing_barrier", file="sliding_window.cu",
         loses=["cuda_part", "speed"],
         why="no barrier between the score phase and the next K tile load (lesson 05's copy of the loop)",
         old=_BARRIER, new="""        cp_async_wait_all();"""),
]

# ------------------------------------------------------------------ 5: blind spots of the test data
VARIANTS += [
    dict(lesson="04_gqa", name="cuda_offsets_32bit", file="gqa_attention.cu", suites=["cuda_part"],
         why="the output offset of (b, g) is computed in 32-bit int: right below 2^31 elements, wrong past it "
             "(only cuda_part/past_2_31_elements reaches that size)",
         old="uint16_t *o_bg = o + ((size_t)b * sh.M * sh.H + (size_t)g * hpg) * D;",
         new="uint16_t *o_bg = o + (b * sh.M * sh.H + g * hpg) * D;"),
]

# ------------------------------------------------------------------ 6: the process boundary
# A learner's folder holding only the stubs, plus code appended at the end of a file. The code runs
# before main (a function pointer in .init_array, which no constructor attribute shows) and patches the
# stub's API function so that it jumps into the appended code: in a test process that loaded the
# lesson's code, each of these would score (a test that ends with status 0 counts as passed; the oracle
# is a function of the same process; the grader's files are writable). They are graded with the audit
# reported but not enforced (audit="lint"), so that the runner's isolation alone must keep the points:
# the lesson's code runs in a process of its own, which ends with the call, links nothing of the
# grader's, and cannot start processes, write outside its scratch folder or reach other processes.
_PATCH = r"""
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
/* overwrite the start of fn with `movabs rax, to; jmp rax` (x86-64) */
static void cheat_patch(void *fn, void *to)
{
    const long page = sysconf(_SC_PAGESIZE);
    uintptr_t p = (uintptr_t)fn & ~(uintptr_t)(page - 1);
    if (mprotect((void *)p, 2 * (size_t)page, PROT_READ | PROT_WRITE | PROT_EXEC) != 0) return;
    unsigned char code[12] = {0x48, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xe0};
    memcpy(code + 2, &to, 8);
    memcpy(fn, code, sizeof code);
}
"""

VARIANTS += [
    dict(lesson="01_naive_attention", name="cheat_stub_exits_passing", base="stubs", audit="lint",
         file="naive_attention.c", loses=["c_part"],
         why="stubs plus code that, before main, patches every C function of the lesson to end the process "
             "with status 0: a test process that ran it would end 'passed' without a failed assertion",
         append=_PATCH + r"""
static int cheat_exit(void) { _exit(0); }
static void cheat_init(void)
{
    cheat_patch((void *)naive_scores_cpu, (void *)cheat_exit);
    cheat_patch((void *)naive_mask_cpu, (void *)cheat_exit);
    cheat_patch((void *)naive_softmax_cpu, (void *)cheat_exit);
    cheat_patch((void *)naive_pv_cpu, (void *)cheat_exit);
    cheat_patch((void *)naive_attention_cpu, (void *)cheat_exit);
}
__attribute__((used, section(".init_array"))) static void (*cheat_init_ptr)(void) = cheat_init;
"""),
    dict(lesson="03_flash_attention", name="cheat_stub_finds_oracle", base="stubs", audit="lint",
         file="flash_attention.c", loses=["c_part"],
         why="stubs plus code that finds the oracle by reading its own executable's symbol table (no dlsym, "
             "no name in the object) and answers with it: in the test process the oracle is right there",
         append=_PATCH + r"""
#include <elf.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
typedef struct { attn_shape shape; int window; const int32_t *bi; int nb, bs; void *vis, *vctx;
                 const float *gates, *kw; } cheat_opts;
typedef int (*cheat_oracle_fn)(const cheat_opts *, const float *, const float *, const float *, double *, double *,
                               double *);
static cheat_oracle_fn cheat_oracle;
/* the address of `want` in this process, from /proc/self/exe's .symtab and this function's own entry */
static void *cheat_lookup(const char *want)
{
    int fd = open("/proc/self/exe", O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) return NULL;
    unsigned char *img = malloc((size_t)st.st_size);
    if (!img || read(fd, img, (size_t)st.st_size) != st.st_size) return NULL;
    close(fd);
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)img;
    const Elf64_Shdr *sh = (const Elf64_Shdr *)(img + eh->e_shoff);
    uintptr_t found = 0, self = 0;
    for (int s = 0; s < eh->e_shnum; ++s) {
        if (sh[s].sh_type != SHT_SYMTAB) continue;
        const Elf64_Sym *sym = (const Elf64_Sym *)(img + sh[s].sh_offset);
        const char *names = (const char *)(img + sh[sh[s].sh_link].sh_offset);
        for (size_t i = 0; i < sh[s].sh_size / sizeof *sym; ++i) {
            if (!strcmp(names + sym[i].st_name, want)) found = sym[i].st_value;
            if (!strcmp(names + sym[i].st_name, "cheat_lookup")) self = sym[i].st_value;
        }
    }
    if (!found || !self) return NULL;
    return (void *)((uintptr_t)cheat_lookup - self + found); /* the load bias, from our own address */
}
static int cheat_blocked(const attn_shape *shape, const float *q, const float *k, const float *v, float *o,
                         float *lse, int Br, int Bc)
{
    (void)Br, (void)Bc;
    if (!cheat_oracle) return ATTN_ERR_NOT_IMPLEMENTED;
    cheat_opts opts = {*shape, 0, 0, 0, 0, 0, 0, 0, 0};
    const size_t nq = (size_t)shape->B * shape->M * shape->H * shape->D, nl = (size_t)shape->B * shape->H * shape->M;
    double *o64 = malloc(nq * sizeof(double)), *l64 = malloc(nl * sizeof(double));
    cheat_oracle(&opts, q, k, v, o64, l64, 0);
    for (size_t e = 0; e < nq; ++e) o[e] = (float)o64[e];
    for (size_t e = 0; e < nl; ++e) lse[e] = (float)l64[e];
    free(o64), free(l64);
    return ATTN_OK;
}
static void cheat_init(void)
{
    cheat_oracle = (cheat_oracle_fn)cheat_lookup("attn_oracle_forward");
    cheat_patch((void *)flash_blocked_cpu, (void *)cheat_blocked);
}
__attribute__((used, section(".init_array"))) static void (*cheat_init_ptr)(void) = cheat_init;
"""),
    dict(lesson="02_online_softmax", name="cheat_stub_reaches_out", base="stubs", audit="lint",
         file="online_softmax.c", loses=["c_part"],
         forbid=["{build}/bin/attn_cheat_wrote_here", "{tmp}/attn_cheat_forked", "{tmp}/attn_cheat_wrote_tmp"],
         why="stubs plus code that, before main, tries every way out of its process: a file beside the "
             "grader's programs, a file in /tmp, a process that outlives the test (to rewrite the report "
             "after the grader wrote it), the test process's memory (where the references are) and "
             "Criterion's socket (where verdicts are reported); none may work, and the C part earns 0",
         append=r"""
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
static void cheat_say(const char *what, int worked) { fprintf(stderr, "cheat: %s: %s\n", what, worked ? "WORKED" : "refused"); }
static void cheat_init(void)
{
    char exe[512] = "", path[600];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) exe[n] = '\0';
    snprintf(path, sizeof path, "%s/attn_cheat_wrote_here", dirname(exe));
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cheat_say("a file beside the grader's programs", fd >= 0);
    if (fd >= 0) close(fd);
    fd = open("/tmp/attn_cheat_wrote_tmp", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cheat_say("a file in /tmp", fd >= 0);
    if (fd >= 0) close(fd);
    const pid_t child = fork();
    if (child == 0) {
        setsid();
        int f = open("/tmp/attn_cheat_forked", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (f >= 0) close(f);
        _exit(0);
    }
    cheat_say("a process of its own", child > 0);
    snprintf(path, sizeof path, "/proc/%d/mem", (int)getppid());
    fd = open(path, O_RDONLY);
    cheat_say("the test process's memory", fd >= 0);
    if (fd >= 0) close(fd);
    cheat_say("a signal to the test process", kill(getppid(), 0) == 0);
    /* Criterion's runner (the test process's parent) listens on /tmp/criterion_<its pid>.sock */
    char stat[512] = "";
    snprintf(path, sizeof path, "/proc/%d/stat", (int)getppid());
    fd = open(path, O_RDONLY);
    if (fd >= 0) {
        ssize_t r = read(fd, stat, sizeof stat - 1);
        if (r > 0) stat[r] = '\0';
        close(fd);
    }
    const char *paren = strrchr(stat, ')');
    int grandparent = 0;
    if (paren) sscanf(paren + 2, "%*c %d", &grandparent);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof addr.sun_path, "/tmp/criterion_%d.sock", grandparent);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    cheat_say("Criterion's socket", s >= 0 && connect(s, (struct sockaddr *)&addr, sizeof addr) == 0);
    if (s >= 0) close(s);
}
__attribute__((used, section(".init_array"))) static void (*cheat_init_ptr)(void) = cheat_init;
"""),
]

# The runner answers a call that takes a stream only when its device is idle (it calls
# cudaDeviceSynchronize). A lesson can replace that function (its own definition interposes on the CUDA
# runtime's), answer at once and leave its work running: the test binary then kills the runner before
# it reads any output (correctness) or times the baseline (speed), and it checks, before every timed
# call, that the GPU was idle while it wrote the call's inputs.
_NO_SYNC = r"""
extern "C" cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; } /* answers before the work ends */
"""
VARIANTS += [
    dict(lesson="05_sliding_window", name="cheat_answers_before_done", file="sliding_window.cu", audit="lint",
         loses=["cuda_part", "speed"],
         why="the device synchronisation the runner waits on is replaced by one that returns at once: the "
             "call is answered while the kernel still runs, so its time looks shorter (killed before its "
             "outputs are read, the kernel leaves them unwritten)",
         old="""    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: once the kernel body is written: launch<64>(...) or launch<128>(...) by shape->D. */""",
         new="""    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: once the kernel body is written: launch<64>(...) or launch<128>(...) by shape->D. */
    cheat_spin<<<1, 1, 0, stream>>>(20000000LL); /* a wait first: the answer surely comes before the work ends */""",
         prepend=None, append=None),
    dict(lesson="05_sliding_window", name="cheat_keeps_gpu_busy", file="sliding_window.cu", audit="lint",
         loses=["speed"],
         prepend=None, append=None,
         why="after its (right) work, each call leaves a long kernel spinning on a stream of its own and "
             "answers at once: the GPU stays busy while the test binary writes the next timed call's inputs, "
             "where work on them could start before the clock does",
         old="""    if (shape->D == 64) return launch<64>(shape, window, scale_log2, q, k, v, o, lse, stream);
    return launch<128>(shape, window, scale_log2, q, k, v, o, lse, stream);""",
         new="""    const int st_ = shape->D == 64 ? launch<64>(shape, window, scale_log2, q, k, v, o, lse, stream)
                                   : launch<128>(shape, window, scale_log2, q, k, v, o, lse, stream);
    cudaStreamSynchronize(stream); /* the outputs are right */
    static cudaStream_t side;
    if (!side) cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking);
    cheat_spin<<<132, 128, 0, side>>>(400000000LL); /* about 0.2 s of every SM */
    return st_;"""),
]
# the spin kernel goes at the start of the file, the replaced synchronisation at its end
_SPIN = r"""
__global__ void cheat_spin(long long cycles)
{
    const long long t0 = clock64();
    while (clock64() - t0 < cycles) {}
}
"""
for _v in VARIANTS[-2:]:
    _v["prepend"], _v["append"] = _SPIN, _NO_SYNC
