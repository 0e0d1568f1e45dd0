"""Known-wrong variants of lesson 10 (the fused NSA forward), appended to tests/known_wrong.py's VARIANTS
(same fields, same rules: `old` must occur exactly once in the solution file)."""

_L = "10_fused_nsa"

VARIANTS = [
    # ------------------------------------------------------------------ C part
    dict(lesson=_L, name="c_gate_wrong_branch", file="fused_nsa.c", suites=["c_part"],
         why="the gates of the selected and window branches swapped: g_swa weights o_slc and g_slc weights o_swa",
         old="g_slc[row] * o_slc[e] + g_swa[row] * o_swa[e]", new="g_swa[row] * o_slc[e] + g_slc[row] * o_swa[e]"),
    dict(lesson=_L, name="c_window_key_twice", file="fused_nsa.c", suites=["c_part"],
         why="the merged walk adds the window's keys of listed blocks again: a key in both branches counts twice "
             "in the window's softmax",
         old="if (is_listed(list, p->n, j)) continue; /* its window keys are in o_swa already */", new=""),
    dict(lesson=_L, name="c_weights_wrong_lse", file="fused_nsa.c", suites=["c_part"],
         why="the weights of the selected and window branches are rebuilt with each other's lse: their rows do not "
             "sum to 1",
         old="kind == NSA_WEIGHTS_SLC ? lse_slc : lse_swa", new="kind == NSA_WEIGHTS_SLC ? lse_swa : lse_slc"),
    dict(lesson=_L, name="c_cmp_causal_leak", file="fused_nsa.c", suites=["c_part"],
         why="a compressed token becomes visible one position early (its span ends at t + 1): a causal leak",
         old="vis = attn_nsa_cmp_visible_count(t, NC, p);\n            int32_t *lists",
         new="vis = attn_nsa_cmp_visible_count(t + 1, NC, p);\n            int32_t *lists"),
    dict(lesson=_L, name="c_ties_to_higher", file="fused_nsa.c", suites=["c_part"],
         why="top-n ties go to the higher block index (>= instead of >)",
         old="block_score[j] > block_score[best]", new="block_score[j] >= block_score[best]"),
    dict(lesson=_L, name="c_o_cmp_not_added", file="fused_nsa.c", suites=["c_part"],
         why="the gated sum leaves out the compressed branch (o_cmp computed, never added)",
         old="g_cmp[row] * o_cmp[(size_t)h * D + e] + ", new=""),
    dict(lesson=_L, name="c_cmp_batch_stride_n", file="fused_nsa.c", suites=["c_part"],
         why="batch b of the compressed K/V is looked up b * N tokens in, not b * NC",
         old="const size_t kv0 = (size_t)b * NC * stride + (size_t)g * D; /* token 0 of (b, g) */",
         new="const size_t kv0 = (size_t)b * N * stride + (size_t)g * D;"),
    # ------------------------------------------------------------------ CUDA part
    # The general kernels (cmp_select_kernel, slc_swa_kernel) serve every test shape but those with shared
    # lists and H/G = 16; the fast paths (cmp_select_g16_kernel, slc_swa_window_kernel on sm_90) serve those
    # (cuda_part/shapes' H/G = 16 cases, exact_ties' fourth case, large_offsets, the speed test). Code both
    # paths share (pass 1, the ranking, the compression) is caught by either.
    dict(lesson=_L, name="cuda_gate_wrong_branch", file="fused_nsa.cu", suites=["cuda_part"],
         why="the general selected/window kernel weights the selected branch with g_swa (the window's gate)",
         old="rows, a.g_slc + row0, res", new="rows, a.g_swa + row0, res"),
    dict(lesson=_L, name="cuda_win_gate_wrong_branch", file="fused_nsa.cu", suites=["cuda_part"],
         why="the fast path's epilogue weights the selected branch with g_swa",
         old="const float w_slc = ls > 0.f ? g_slc[r] / ls : 0.f", new="const float w_slc = ls > 0.f ? g_swa[r] / ls : 0.f"),
    dict(lesson=_L, name="cuda_cmp_gate_missing", file="fused_nsa.cu", suites=["cuda_part"],
         why="launch 2 writes o_cmp into o without its gate g_cmp",
         old="const float gate = valid ? a.g_cmp[w.row(sh.H, R)] : 0.f;", new="const float gate = valid ? 1.f : 0.f;"),
    dict(lesson=_L, name="cuda_o_cmp_not_added", file="fused_nsa.cu", suites=["cuda_part"],
         why="a stale branch: the general selected/window kernel overwrites o instead of adding to the g_cmp o_cmp "
             "that launch 2 left there",
         old="uint2 old = *reinterpret_cast<const uint2 *>(o_row + d); /* g_cmp o_cmp */",
         new="uint2 old = make_uint2(0u, 0u);"),
    dict(lesson=_L, name="cuda_win_o_cmp_not_added", file="fused_nsa.cu", suites=["cuda_part"],
         why="a stale branch in the fast path: its epilogue drops the g_cmp o_cmp that launch 2 left in o",
         old="const uint4 old = *dst; /* g_cmp o_cmp, from launch 2 */", new="const uint4 old = make_uint4(0u, 0u, 0u, 0u);"),
    dict(lesson=_L, name="cuda_window_key_twice", file="fused_nsa.cu", suites=["cuda_part"],
         why="the window's tiles count the keys of listed blocks again: a key in both branches enters the window's "
             "softmax twice (once with its selected block, once with the window)",
         old="const unsigned long long swa = key_bits(s0, lo, t) & ~listed;",
         new="const unsigned long long swa = key_bits(s0, lo, t); (void)listed;"),
    dict(lesson=_L, name="cuda_win_key_twice", file="fused_nsa.cu", suites=["cuda_part"],
         why="the fast path gives a warp a window slot for a block its list holds too: the block's window keys "
             "enter the window's softmax twice",
         old="on_list |= le && (long)je == jw;", new="(void)je, (void)le;"),
    dict(lesson=_L, name="cuda_window_edge", file="fused_nsa.cu", suites=["cuda_part"],
         why="the general kernel's window starts one key early: t - w .. t, w + 1 keys",
         old="const long lo = t - a.w + 1 > 0 ? t - a.w + 1 : 0; /* the window: keys lo .. t */",
         new="const long lo = t - a.w > 0 ? t - a.w : 0;"),
    dict(lesson=_L, name="cuda_no_token_mask", file="fused_nsa.cu", suites=["cuda_part"],
         why="the general kernel attends the block holding t in full: keys after t count (as the zeros they were "
             "loaded as) in the selected and window branches",
         old="const long first = (long)__ldg(list + e) * l_sel, last = min(first + l_sel - 1, t);",
         new="const long first = (long)__ldg(list + e) * l_sel, last = first + l_sel - 1;"),
    dict(lesson=_L, name="cuda_win_no_token_mask", file="fused_nsa.cu", suites=["cuda_part"],
         why="the fast path never masks the block holding t: the keys after t (later positions' keys) count in both "
             "branches",
         old="if (h0 + 31 > t) /* the token causal rule cuts the block that holds t */",
         new="if (false)"),
    dict(lesson=_L, name="cuda_weights_wrong_lse", file="fused_nsa.cu", suites=["cuda_part"],
         why="nsa_weights_cuda rebuilds the selected and window weights with each other's lse",
         old="kind == NSA_WEIGHTS_SLC ? lse_slc : lse_swa", new="kind == NSA_WEIGHTS_SLC ? lse_swa : lse_slc"),
    dict(lesson=_L, name="cuda_cmp_causal_leak", file="fused_nsa.cu", suites=["cuda_part"],
         why="the compressed-token rule off by one: a row sees the token whose span ends one position after t",
         old="if (token * d + l - 1 > t) s[mt][nt][2 * rr + e] = -INFINITY;",
         new="if (token * d + l - 1 > t + 1) s[mt][nt][2 * rr + e] = -INFINITY;"),
    dict(lesson=_L, name="cuda_ties_to_higher", file="fused_nsa.cu", suites=["cuda_part"],
         why="top-n ties go to the higher block index: a lane's best-first list lets a later block of equal score "
             "displace an earlier one",
         old="if (cv > v[k]) {", new="if (cv >= v[k]) {"),
    dict(lesson=_L, name="cuda_g16_half_the_heads", file="fused_nsa.cu", suites=["cuda_part"],
         why="the fast path's group sum leaves out heads 8-15: each lane adds only its first row's probabilities",
         old="for (int x = 0; x < 16; ++x) pv[x] += pv8[x];", new="(void)pv8;"),
    dict(lesson=_L, name="cuda_empty_row_nan", file="fused_nsa.cu", suites=["cuda_part"],
         why="a row that sees no compressed token divides by a zero sum: o = 0 / 0 = NaN on rows t < l - 1",
         old="acc.rescale(mt, rr, l_row > 0.f ? gate / l_row : 0.f);", new="acc.rescale(mt, rr, gate / l_row);"),
    dict(lesson=_L, name="cuda_cmp_batch_stride_n", file="fused_nsa.cu", suites=["cuda_part"],
         why="the compressed values of batch b are looked up b * N tokens in, not b * NC",
         old="const uint16_t *v_bg = a.v_cmp + ((size_t)w.b * a.nc * sh.G + w.g) * D;",
         new="const uint16_t *v_bg = a.v_cmp + ((size_t)w.b * sh.N * sh.G + w.g) * D;"),
    dict(lesson=_L, name="cuda_offsets_32bit", file="fused_nsa.cu", suites=["cuda_part"],
         why="the fast path's offset of o in 32-bit int: (row * D) wraps past 2^31 elements",
         old="pb.store(a.o + row0 * 128,", new="pb.store(a.o + (int)(row0 * 128),"),
    dict(lesson=_L, name="cuda_cmp_offsets_32bit", file="fused_nsa.cu", suites=["cuda_part"],
         why="launch 2 stores g_cmp o_cmp at a 32-bit offset of o: (row * D) wraps past 2^31 elements",
         old="flash::Row<uint16_t>{a.o + w.row(sh.H, (int)R) * D, R < Rc_end}",
         new="flash::Row<uint16_t>{a.o + (int)(w.row(sh.H, (int)R) * D), R < Rc_end}"),
    # A race rarely changes the numbers (the copies are slow to land, the warps run in step), so the tests
    # cannot be relied on to see it: compute-sanitizer racecheck must.
    dict(lesson=_L, name="cuda_missing_barrier", file="fused_nsa.cu", suites=[], sanitizer="racecheck",
         why="no barrier between the selected/window scores and the next K tile load: warps overwrite K while others "
             "still read it, and read V before the other threads' copies are visible",
         old="""        cp_async_wait_all();
        __syncthreads(); /* V has landed for everyone; nobody still reads K */
""",
         new="""        cp_async_wait_all();
"""),
]
