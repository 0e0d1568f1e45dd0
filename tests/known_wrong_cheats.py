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
  - and the folder itself            an extra file, a changed header, a public kernel, a constructor,
                                     a system call in inline assembly, a stream of one's own, CUDA events
"""

_SOFTMAX_BODY = """    for (long r = 0; r < rows; ++r) {
        float *row = x + (size_t)r * n;"""

VARIANTS = [
    # ------------------------------------------------------------------ 1: the verdict in the process
    dict(lesson="01_naive_attention", name="cheat_exit_early", file="naive_attention.c", loses=["c_part"],
         why="the softmax ends the test process with status 0 before any assertion can fail: Criterion "
             "counts that as passed (the audit refuses exit; without it, the missing completion record)",
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
