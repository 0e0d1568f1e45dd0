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
    dict(lesson=_L, name="cuda_gate_wrong_branch", file="fused_nsa.cu", suites=["cuda_part"],
         why="the epilogue swaps the gates of the selected and window branches",
         old="orow[c / 2] = pack_bf16(gc * oc[c] + gs * slc.out(c) + gw * swa.out(c),\n"
             "                                    gc * oc[c + 1] + gs * slc.out(c + 1) + gw * swa.out(c + 1));",
         new="orow[c / 2] = pack_bf16(gc * oc[c] + gw * slc.out(c) + gs * swa.out(c),\n"
             "                                    gc * oc[c + 1] + gw * slc.out(c + 1) + gs * swa.out(c + 1));"),
    dict(lesson=_L, name="cuda_o_cmp_not_added", file="fused_nsa.cu", suites=["cuda_part"],
         why="a stale branch: the epilogue never adds the compressed branch's o_cmp",
         old="orow[c / 2] = pack_bf16(gc * oc[c] + gs * slc.out(c) + gw * swa.out(c),\n"
             "                                    gc * oc[c + 1] + gs * slc.out(c + 1) + gw * swa.out(c + 1));",
         new="(void)gc, (void)oc;\n"
             "            orow[c / 2] = pack_bf16(gs * slc.out(c) + gw * swa.out(c), gs * slc.out(c + 1) + gw * swa.out(c + 1));"),
    dict(lesson=_L, name="cuda_window_key_twice", file="fused_nsa.cu", suites=["cuda_part"],
         why="the merged walk adds the window's keys of listed blocks a second time to the window's softmax",
         old="if (listed) continue; /* its window keys are in swa already */", new="(void)listed;"),
    dict(lesson=_L, name="cuda_weights_wrong_lse", file="fused_nsa.cu", suites=["cuda_part"],
         why="nsa_weights_cuda rebuilds the selected and window weights with each other's lse",
         old="kind == NSA_WEIGHTS_SLC ? lse_slc : lse_swa", new="kind == NSA_WEIGHTS_SLC ? lse_swa : lse_slc"),
    dict(lesson=_L, name="cuda_cmp_causal_leak", file="fused_nsa.cu", suites=["cuda_part"],
         why="the compressed branch sees the token whose span ends one position after t",
         old="vis = visible_count(t, nc, p);", new="vis = visible_count(t + 1, nc, p);"),
    dict(lesson=_L, name="cuda_ties_to_higher", file="fused_nsa.cu", suites=["cuda_part"],
         why="the warp's argmax breaks ties towards the higher block index",
         old="if (sc[j] >= 0.f && sc[j] > best) best = sc[j], best_j = j;",
         new="if (sc[j] >= 0.f && sc[j] >= best) best = sc[j], best_j = j;"),
    dict(lesson=_L, name="cuda_empty_row_nan", file="fused_nsa.cu", suites=["cuda_part"],
         why="a branch that sees no key divides by a zero sum: o = 0 / 0 = NaN on rows without compressed tokens",
         old="return l > 0.f ? acc[c] / l : 0.f;", new="return acc[c] / l;"),
    dict(lesson=_L, name="cuda_cmp_batch_stride_n", file="fused_nsa.cu", suites=["cuda_part"],
         why="the compressed K/V of batch b are looked up b * N tokens in, not b * NC",
         old="const uint16_t *kb = k_cmp + b * nc * stride", new="const uint16_t *kb = k_cmp + b * sh.N * stride"),
    dict(lesson=_L, name="cuda_offsets_32bit", file="fused_nsa.cu", suites=["cuda_part"],
         why="the epilogue's offset of o in 32-bit int: (row * D) wraps past 2^31 elements",
         old="reinterpret_cast<uint32_t *>(o + row * D", new="reinterpret_cast<uint32_t *>(o + (int)(row * D)"),
]
