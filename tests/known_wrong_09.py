"""Known-wrong variants of lesson 09 (NSA selected-block attention), appended to tests/known_wrong.py's
VARIANTS (same fields, same rules: `old` must occur exactly once in the solution file)."""

_L = "09_selected_attention"

VARIANTS = [
    # ------------------------------------------------------------------ C part
    dict(lesson=_L, name="c_no_token_mask", file="selected_attention.c", suites=["c_part"],
         why="the block holding t is attended in full (clipped at N only): the query sees keys after its position",
         old="if (last > t) last = t; /* the token causal rule inside the block holding t */",
         new="if (last > N - 1) last = N - 1;"),
    dict(lesson=_L, name="c_list_of_group_0", file="selected_attention.c", suites=["c_part"],
         why="every kv group reads the list of group 0",
         old="(p->heads_share_selection ? g : h)) * n;", new="(p->heads_share_selection ? 0 : h)) * n;"),
    dict(lesson=_L, name="c_padding_as_block", file="selected_attention.c", suites=["c_part"],
         why="-1 does not end the list: the padding is read as block -1 (keys -l' .. -1, before the tensor)",
         old="if (j < 0) break; /* -1 pads the list: no block after it */", new="if (j < -1) break;"),
    dict(lesson=_L, name="c_check_first_batch", file="selected_attention.c", suites=["c_part"],
         why="nsa_selection_check checks the lists of batch entry 0 only",
         old="    for (int b = 0; b < shape->B; ++b)\n        for (int i = 0; i < shape->M; ++i)\n            for (int l = 0; l < L; ++l) {",
         new="    for (int b = 0; b < 1; ++b)\n        for (int i = 0; i < shape->M; ++i)\n            for (int l = 0; l < L; ++l) {"),
    dict(lesson=_L, name="c_check_blocks_only", file="selected_attention.c", suites=["c_part"],
         why="nsa_selection_check checks only as many entries per list as there are blocks, not all n",
         old="for (int e = 0; e < n; ++e) {\n                    const int32_t j = list[e];\n                    const int ok",
         new="for (int e = 0; e < n && e < NB; ++e) {\n                    const int32_t j = list[e];\n                    const int ok"),
    dict(lesson=_L, name="cuda_list_offset_32bit", file="selected_attention.cu", suites=["cuda_part"],
         why="the general kernel's list offset in 32-bit int: per-head lists past 2^31 entries wrap",
         old="const int32_t *list = indices + (((size_t)w.b * sh.M + w.i) * L + w.list) * n_sel;",
         new="const int32_t *list = indices + ((w.b * sh.M + w.i) * L + w.list) * n_sel;"),
    dict(lesson=_L, name="c_batch_list_offset", file="selected_attention.c", suites=["c_part"],
         why="the list offset forgets the batch: every batch reads the lists of batch 0",
         old="indices + (((size_t)b * M + i) * L", new="indices + (((size_t)i) * L"),
    dict(lesson=_L, name="c_num_blocks_floor", file="selected_attention.c", suites=["c_part"],
         why="the number of blocks is N / l' rounded down: when N is not a multiple of l', the partial last block "
             "(the current block of the last positions) is rejected as out of range",
         old="const long NB = attn_nsa_num_blocks(shape->N, p);", new="const long NB = shape->N / p->l_sel;"),
    # ------------------------------------------------------------------ CUDA part
    dict(lesson=_L, name="cuda_no_token_mask", file="selected_attention.cu", suites=["cuda_part"],
         why="the tile is masked at the end of the keys only: keys after t in the block holding t count (with the "
             "zeros they were loaded as)",
         old="flash::mask(s, 0, key0, [&](long, long key) { return key <= last; });",
         new="flash::mask(s, 0, key0, [&](long, long key) { return key < sh.N; });"),
    dict(lesson=_L, name="cuda_list_of_group_0", file="selected_attention.cu", suites=["cuda_part"],
         why="every kv group (or head) reads the list of group 0",
         old="* L + w.list) * n_sel;", new="* L) * n_sel;"),
    dict(lesson=_L, name="cuda_kv_head_modulo", file="selected_attention.cu", suites=["cuda_part"],
         why="the block's heads read kv head h % G instead of h / (H/G)",
         old="w.g = w.head0 / hpg;", new="w.g = w.head0 % sh.G;"),
    dict(lesson=_L, name="cuda_padding_as_block", file="selected_attention.cu", suites=["cuda_part"],
         why="-1 does not end the list: the padding is walked as block -1, 64 rows before the block's K and V",
         old="if (j < 0) return n;", new="if (j < -1) return n;"),
    dict(lesson=_L, name="cuda_batch_list_offset", file="selected_attention.cu", suites=["cuda_part"],
         why="the list offset forgets the batch: every batch reads the lists of batch 0",
         old="indices + (((size_t)w.b * sh.M + w.i) * L", new="indices + (((size_t)w.i) * L"),
    dict(lesson=_L, name="cuda_offsets_32bit", file="selected_attention.cu", suites=["cuda_part"],
         why="the row offset of q and o in 32-bit int: (row * D) wraps past 2^31 elements",
         old="const size_t row0 = ((size_t)w.b * sh.M + w.i) * sh.H + w.head0;",
         new="const int row0 = (w.b * sh.M + w.i) * sh.H + w.head0;"),
    dict(lesson=_L, name="cuda_merge_no_rescale", file="selected_attention.cu", suites=["cuda_part"],
         why="the four warps' partial softmaxes are added without bringing them to a common max",
         old="f[u] = fast_exp2(part_m[u * kRows + r] * scale_log2 - m_scaled); /* 0 for a warp that saw no key */",
         new="f[u] = part_l[u * kRows + r] > 0.f ? 1.f : 0.f;"),
    # A race rarely changes the numbers (the copies are slow to land, the warps run in step), so the tests
    # cannot be relied on to see it: compute-sanitizer racecheck must.
    dict(lesson=_L, name="cuda_missing_barrier", file="selected_attention.cu", suites=[], sanitizer="racecheck",
         why="no barrier between the scores and the next K tile load: warps overwrite K while others still read "
             "it, and read V before the other threads' copies are visible",
         old="""        cp_async_wait_all();
        __syncthreads(); /* V has landed for everyone; nobody still reads K */
""",
         new="""        cp_async_wait_all();
"""),
    # The optional fast path for H/G = 16 (selected_window.cu: a window of 8 positions, one warp each, a
    # ring of TMA stages filled in the order of the union of their lists), tested by cuda_part/window_path
    # directly and by the H/G = 16 cases through nsa_selected_attention_cuda.
    dict(lesson=_L, name="cuda_win_no_token_mask", file="selected_window.cu", suites=["cuda_part"],
         why="the fast path masks each tile at the end of its block, not at the warp's own t: keys after t count "
             "in the block holding t",
         old="ps.tile(base + st * kPair, s0, min(t, s0 + 63), scale_log2);",
         new="ps.tile(base + st * kPair, s0, s0 + 63, scale_log2);"),
    dict(lesson=_L, name="cuda_win_offsets_32bit", file="selected_window.cu", suites=["cuda_part"],
         why="the fast path's offset of o in 32-bit int: (row * D) wraps past 2^31 elements",
         old="if (active) ps.store(o + row0 * 128,", new="if (active) ps.store(o + (int)(row0 * 128),"),
    dict(lesson=_L, name="cuda_win_list_not_ended", file="selected_window.cu", suites=["cuda_part"],
         why="in the fast path a negative entry does not end the list: it and the entries after it are read as "
             "blocks",
         old="const int n_list = ends ? __ffs(ends) - 1 : n_sel;", new="const int n_list = n_sel;"),
    dict(lesson=_L, name="cuda_win_refill_too_early", file="selected_window.cu", suites=["cuda_part"],
         why="the first warp done with a stage refills it, not the last: warps that chose the same block wait for "
             "a stage that has moved on (the kernel traps after about 2 s instead of hanging)",
         old="if (atomicSub(&left[st], 1) == 1 && u + kRing < nu) {",
         new="if (atomicSub(&left[st], 1) >= 1 && u + kRing < nu) {"),
]
