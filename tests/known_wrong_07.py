"""Known-wrong variants of lesson 07 (NSA compressed attention); appended to tests/known_wrong.py's list.

Each replaces one snippet that occurs exactly once in the solution file (see known_wrong.py).
"""

L = "07_compressed_attention"

VARIANTS = [
    # ------------------------------------------------------------------ C part
    dict(lesson=L, name="c_causal_leak", file="compressed_attention.c", suites=["c_part"],
         why="a compressed token becomes visible one position early (i*d + l - 1 <= t + 1)",
         old="const long u = t - (p->l - 1);", new="const long u = t + 1 - (p->l - 1);"),
    dict(lesson=L, name="c_empty_row_nan", file="compressed_attention.c", suites=["c_part"],
         why="a row that sees no compressed token runs the softmax over nothing: o = 0 / 0 = NaN",
         old="if (visible == 0) { /* sees no compressed token: o = 0, lse = -inf */", new="if (0) {"),
    dict(lesson=L, name="c_batch_stride_n", file="compressed_attention.c", suites=["c_part"],
         why="batch b of the compressed K is looked up b * N tokens in, not b * NC",
         old="const float *kj = k_cmp + (((size_t)b * nc + j) * G + g) * D;",
         new="const float *kj = k_cmp + (((size_t)b * N + j) * G + g) * D;"),
    dict(lesson=L, name="c_count_n_over_d", file="compressed_attention.c", suites=["c_part"],
         why="NC counted as N / d, as if the last tokens could run past the end of the keys",
         old="const long nc = N < l ? 0 : (N - l) / d + 1;", new="const long nc = N / d;"),
    dict(lesson=L, name="c_mean_of_l_minus_1", file="compressed_attention.c", suites=["c_part"],
         why="the mean leaves out the last key of the span (r < l - 1)",
         old="for (int r = 0; r < l; ++r) { /* every key of the span, r = 0 .. l-1 */",
         new="for (int r = 0; r < l - 1; ++r) {"),
    dict(lesson=L, name="c_pos_ignored", file="compressed_attention.c", suites=["c_part"],
         why="the position embedding is never added to the keys",
         old="const double xc = (double)x[c] + (pos ? pos[(size_t)r * D + c] : 0.0f);",
         new="const double xc = (double)x[c];"),
    # ------------------------------------------------------------------ CUDA part
    dict(lesson=L, name="cuda_causal_leak", file="compressed_attention.cu", suites=["cuda_part"],
         why="the mask lets a row see the token whose span ends one position after it",
         old="return token * d + l - 1 <= t;", new="return token * d + l - 1 <= t + 1;"),
    dict(lesson=L, name="cuda_block_count_leak", file="compressed_attention.cu", suites=["cuda_part"],
         why="the visible count of the block's bounds is one position ahead: tiles that need the mask skip it",
         old="const int u = (int)t - (l - 1);", new="const int u = (int)t + 1 - (l - 1);"),
    dict(lesson=L, name="cuda_empty_block_unwritten", file="compressed_attention.cu", suites=["cuda_part"],
         why="a block whose rows see no compressed token returns at once: its rows are never written, where "
             "they must hold o = 0 and lse = -inf",
         old="const int n_tiles = (int)((vis_last + kBc - 1) / kBc);",
         new="const int n_tiles = (int)((vis_last + kBc - 1) / kBc);\n    if (n_tiles == 0) return; /* nothing to see */"),
    dict(lesson=L, name="cuda_batch_stride_n", file="compressed_attention.cu", suites=["cuda_part"],
         why="the compressed K/V of batch b are looked up b * N tokens in, not b * NC",
         old="const uint16_t *k_bg = k + ((size_t)w.b * nc * sh.G + w.g) * D;",
         new="const uint16_t *k_bg = k + ((size_t)w.b * sh.N * sh.G + w.g) * D;"),
    dict(lesson=L, name="cuda_mean_of_l_minus_1", file="compressed_attention.cu", suites=["cuda_part"],
         why="the mean kernel sums l - 1 keys and divides by l",
         old="for (int r = 0; r < l; ++r) {", new="for (int r = 0; r < l - 1; ++r) {"),
    dict(lesson=L, name="cuda_pos_on_nothing", file="compressed_attention.cu", suites=["cuda_part"],
         why="the linear kernel loads the position embedding but never adds it",
         old="if (pos) /* keys: x + pos in fp32, rounded once to bf16 */", new="if (0)"),
    dict(lesson=L, name="cuda_offsets_32bit", file="compressed_attention.cu", suites=["cuda_part"],
         why="the mean kernel's input offset is computed in 32-bit int: it wraps past 2^31 elements",
         old="const uint16_t *x = kv + ((b * sh.N + (size_t)i * d) * sh.G + g) * D + c * 8;",
         new="const int off = (int)(((b * sh.N + (size_t)i * d) * sh.G + g) * D + c * 8);\n"
             "        const uint16_t *x = kv + off;"),
    dict(lesson=L, name="c_linear_batch_stride", file="compressed_attention.c", suites=["c_part"],
         why="the linear compression's key row offset takes the batch stride as N * G rows but the key stride as "
             "one row: right for B = 1 or G = 1 only",
         old="""                for (int r = 0; r < l; ++r) {
                    const float *x = kv + (((size_t)b * N + i * d + r) * G + g) * D;
                    for (int c = 0; c < D; ++c) {""",
         new="""                for (int r = 0; r < l; ++r) {
                    const float *x = kv + (((size_t)b * N * G + i * d + r) * G + g) * D;
                    for (int c = 0; c < D; ++c) {"""),
    # A race rarely changes the numbers, so racecheck must see it (label `sanitizer`).
    dict(lesson=L, name="cuda_missing_barrier", file="compressed_attention.cu",
         suites=[], sanitizer="racecheck",
         why="no barrier between the score phase and the next K tile load: warps overwrite K_j while others "
             "still read it, and read V_j before other threads' copies are visible",
         old="""        cp_async_wait_all();
        __syncthreads(); /* V_j has landed for everyone; nobody still reads K_j */""",
         new="""        cp_async_wait_all();"""),
]
