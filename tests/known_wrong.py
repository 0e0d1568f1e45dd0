"""Known-wrong variants: small, realistic mistakes that the tests must reject.

Each variant copies a lesson's reference solution and replaces one exact snippet (which must occur
exactly once, so that an edit to a solution cannot silently disable a variant). The build compiles
every variant against the lesson's tests; the self-test requires at least one test in the listed
suites to fail. A variant with `sanitizer` (a compute-sanitizer tool) must also be flagged by that tool
(CTest label `sanitizer`, run on a GPU machine) over the tests `sanitizer_filter` names (a Criterion
--filter; default: the lesson's racecheck filter). Variants whose suites are all GPU suites are
reported as skipped on a machine without a GPU.
"""

VARIANTS = [
    # ------------------------------------------------------------------ lesson 01
    dict(lesson="01_naive_attention", name="c_softmax_no_max", file="naive_attention.c", suites=["c_part"],
         why="softmax without subtracting the row max: exp overflows on large logits",
         old="row[j] = expf(row[j] - mx);", new="row[j] = expf(row[j]);"),
    dict(lesson="01_naive_attention", name="c_mask_off_by_one", file="naive_attention.c", suites=["c_part"],
         why="causal mask that also lets each query see the next key",
         old="for (long j = t + 1; j < N; ++j) srow[j] = -INFINITY;",
         new="for (long j = t + 2; j < N; ++j) srow[j] = -INFINITY;"),
    dict(lesson="01_naive_attention", name="cuda_no_causal_mask", file="naive_attention.cu", suites=["cuda_part"],
         why="the mask kernel is never launched", old="if (sh.causal) {", new="if (0) {"),
    dict(lesson="01_naive_attention", name="cuda_gqa_mapping", file="naive_attention.cu", suites=["cuda_part"],
         why="query head h reads kv head h % G instead of h / (H/G)",
         old="const int g = h / (sh.H / sh.G);\n        const float *qi",
         new="const int g = h % sh.G;\n        const float *qi"),
    # ------------------------------------------------------------------ lesson 02
    dict(lesson="02_online_softmax", name="c_softmax_no_rescale", file="online_softmax.c", suites=["c_part"],
         why="the running sum is not rescaled when the max grows",
         old="l = l * expf(m - m_new) + expf(x[j] - m_new);", new="l = l + expf(x[j] - m_new);"),
    dict(lesson="02_online_softmax", name="c_no_accumulator_rescale", file="online_softmax.c", suites=["c_part"],
         why="the output accumulator is not rescaled when the max grows",
         old="o[d] = o[d] * alpha + p * vj[d];", new="o[d] = o[d] + p * vj[d];"),
    dict(lesson="02_online_softmax", name="cuda_no_rescale", file="online_softmax.cu", suites=["cuda_part"],
         why="the accumulator is not rescaled between key tiles",
         old="#pragma unroll\n            for (int c = 0; c < kDimsPerLane; ++c) acc[r][c] *= alpha;\n", new=""),
    dict(lesson="02_online_softmax", name="cuda_causal_off_by_one", file="online_softmax.cu", suites=["cuda_part"],
         why="a causal query does not see its own key (s < t instead of s <= t)",
         old="(!sh.causal || s <= t[r])", new="(!sh.causal || s < t[r])"),
    dict(lesson="02_online_softmax", name="cuda_lse_mixed_bases", file="online_softmax.cu", suites=["cuda_part"],
         why="lse mixes the base-2 running max with a natural log",
         old="(m[r] + log2f(l_row)) * kLn2", new="m[r] + logf(l_row)"),
]
# ------------------------------------------------------------------ lesson 03 (appended below VARIANTS)
VARIANTS += [
    dict(lesson="03_flash_attention", name="c_no_rescale", file="flash_attention.c", suites=["c_part"],
         why="the accumulator is not rescaled when a later key block raises the running max",
         old="for (int d = 0; d < D; ++d) ar[d] *= alpha;", new=""),
    dict(lesson="03_flash_attention", name="cuda_no_rescale", file="flash_attention.cu", suites=["cuda_part"],
         why="the output accumulator is not rescaled by alpha between key tiles",
         old="""                    o_acc[mt][dt][2 * rr] *= alpha;
                    o_acc[mt][dt][2 * rr + 1] *= alpha;
""", new=""),
    # A race rarely changes the numbers (the copies are slow to land, the warps run in step), so the
    # tests cannot be relied on to see it: compute-sanitizer racecheck must.
    dict(lesson="03_flash_attention", name="cuda_missing_barrier", file="flash_attention.cu",
         suites=[], sanitizer="racecheck",
         why="no barrier between the score phase and the next K tile load: warps overwrite K_j while others "
             "still read it, and read V_j before other threads' copies are visible",
         old="""        cp_async_wait_all();
        __syncthreads(); /* V_j has landed for everyone; nobody still reads K_j */""",
         new="""        cp_async_wait_all();"""),
    dict(lesson="03_flash_attention", name="cuda_mask_first_row_only", file="flash_attention.cu",
         suites=["cuda_part"],
         why="tiles are masked only when they cross the end of the keys, never at the causal diagonal",
         old="if (s0 + kBc > sh.N || (sh.causal && s0 + kBc - 1 > offset + i0)) {", new="if (s0 + kBc > sh.N) {"),
]
# ------------------------------------------------------------------ lesson 04
VARIANTS += [
    dict(lesson="04_gqa", name="c_kv_head_modulo", file="gqa_attention.c", suites=["c_part"],
         why="query head h reads kv head h % G (interleaved groups) instead of h / (H/G)",
         old="*g = h / (H / G);", new="*g = h % G;"),
    dict(lesson="04_gqa", name="c_cache_32bit", file="gqa_attention.c", suites=["c_part"],
         why="the cache size computed in 32-bit arithmetic overflows for long contexts",
         old="*bytes = 2ull * (uint64_t)layers * (uint64_t)batch * (uint64_t)tokens * (uint64_t)G * (uint64_t)D *\n             (uint64_t)bytes_per_elem;",
         new="*bytes = (uint32_t)(2u * (uint32_t)layers * (uint32_t)batch * (uint32_t)tokens * (uint32_t)G * (uint32_t)D *\n             (uint32_t)bytes_per_elem);"),
    dict(lesson="04_gqa", name="cuda_block_position_for_all_rows", file="gqa_attention.cu", suites=["cuda_part"],
         why="every packed row is masked with the position of the block's first row",
         old="const long t = offset + (R0 + warp_row0 + mt * 16 + gid + rr * 8) / hpg;", new="const long t = t_first;"),
    dict(lesson="04_gqa", name="cuda_packed_head_order", file="gqa_attention.cu", suites=["cuda_part"],
         why="packed rows read as head-major (R = hh * M + i) on the Q side only",
         old="const uint16_t *src = valid ? q_bg + ((size_t)(R / hpg) * sh.H + R % hpg) * D + c * 8 : q;",
         new="const uint16_t *src = valid ? q_bg + ((size_t)(R % sh.M) * sh.H + R / sh.M) * D + c * 8 : q;"),
]
# ------------------------------------------------------------------ lesson 05
VARIANTS += [
    dict(lesson="05_sliding_window", name="c_range_off_by_one", file="sliding_window.c", suites=["c_part"],
         why="the window holds w + 1 keys (t - w .. t)",
         old="*first = t - w + 1 > 0 ? t - w + 1 : 0;", new="*first = t - w > 0 ? t - w : 0;"),
    dict(lesson="05_sliding_window", name="cuda_edge_off_by_one", file="sliding_window.cu", suites=["cuda_part"],
         why="the mask keeps key t - w as well (an off-by-one at the window's lower edge)",
         old="key >= t - window + 1 && key < sh.N;", new="key >= t - window && key < sh.N;"),
    dict(lesson="05_sliding_window", name="cuda_lower_edge_unmasked", file="sliding_window.cu", suites=["cuda_part"],
         why="tiles that start before the window are not masked when they do not also cross the diagonal",
         old="if (s0 + kBc > sh.N || s0 + kBc - 1 > w.t_first || s0 < w.t_last - window + 1)",
         new="if (s0 + kBc > sh.N || s0 + kBc - 1 > w.t_first)"),
]
# ------------------------------------------------------------------ lesson 06
VARIANTS += [
    dict(lesson="06_masks_vs_sparsity", name="c_hard_mask_strict", file="sparsity.c", suites=["c_part"],
         why="the hard mask also deletes keys whose retention equals the threshold (r > threshold)",
         old="(r >= threshold ? 1.0f : 0.0f)", new="(r > threshold ? 1.0f : 0.0f)"),
    dict(lesson="06_masks_vs_sparsity", name="c_soft_scales_score", file="sparsity.c", suites=["c_part"],
         why="soft delete multiplies the score by r instead of the probability (log r added to the score)",
         old="row_add(&row, scale * row_dot(qi, k + key * D, D) + logf(w), v + key * D);",
         new="row_add(&row, scale * row_dot(qi, k + key * D, D) * w, v + key * D);"),
    dict(lesson="06_masks_vs_sparsity", name="c_blocks_no_causal", file="sparsity.c", suites=["c_part"],
         why="inside a listed block the causal rule is forgotten: the diagonal block leaks future keys",
         old="if (shape->causal && last > t) last = t;", new="(void)t;"),
    dict(lesson="06_masks_vs_sparsity", name="cuda_weight_natural_log", file="sparsity.cu", suites=["cuda_part"],
         why="the soft-delete weight enters the base-2 scores as a natural log",
         old="return r > 0.f ? log2f(fminf(r, 1.f)) : -INFINITY;", new="return r > 0.f ? logf(fminf(r, 1.f)) : -INFINITY;"),
    dict(lesson="06_masks_vs_sparsity", name="cuda_keep_weight_unused", file="sparsity.cu", suites=["cuda_part"],
         why="the keep weights are staged but never added to the scores (only the causal mask applies)",
         old="x0 = fmaf(x0, scale_log2, w2.x);\n                    x1 = fmaf(x1, scale_log2, w2.y);",
         new="x0 = x0 * scale_log2;\n                    x1 = x1 * scale_log2;"),
    dict(lesson="06_masks_vs_sparsity", name="cuda_blocks_list_of_group_0", file="sparsity.cu", suites=["cuda_part"],
         why="every kv group reads the block list of group 0",
         old="+ qb) * sh.G + w.g) * T;", new="+ qb) * sh.G) * T;"),
    dict(lesson="06_masks_vs_sparsity", name="cuda_blocks_query_block_of_row", file="sparsity.cu", suites=["cuda_part"],
         why="the query block is taken from the packed row number instead of the query index (wrong when H > G)",
         old="const int qb = (int)((w.R0 / w.hpg) / SPARSE_QUERY_BLOCK);",
         new="const int qb = (int)(w.R0 / SPARSE_QUERY_BLOCK);"),
    dict(lesson="06_masks_vs_sparsity", name="cuda_blocks_no_diagonal_mask", file="sparsity.cu", suites=["cuda_part"],
         why="listed tiles are masked only at the end of the keys, never at the causal diagonal",
         old="if (s0 + kBc > sh.N || (sh.causal && s0 + kBc - 1 > w.t_first))", new="if (s0 + kBc > sh.N)"),
    dict(lesson="06_masks_vs_sparsity", name="cuda_blocks_missing_barrier", file="sparsity.cu",
         suites=[], sanitizer="racecheck",
         why="no barrier before the next listed K tile is loaded: it overwrites K_j while other warps may "
             "still read it",
         old="""        cp_async_wait_all();
        __syncthreads(); /* V_j has landed for everyone; nobody still reads K_j */
        if (n_next < T) {""",
         new="""        cp_async_wait_all();
        if (n_next < T) {"""),
]

# ------------------------------------------------------------------ data blind spots (lessons 01-06)
# Mistakes that only a class of data shows: past 2^31 elements, a partial last L2 chunk, B > 1 with a
# bad list in a later batch entry, lists longer than the number of key blocks, a NULL argument a mode does
# not use, a negative device entry followed by valid-looking ones.
VARIANTS += [
    dict(lesson="01_naive_attention", name="cuda_scores_offsets_32bit", file="naive_attention.cu", suites=["cuda_part"],
         why="the scores kernel's query offset in 32-bit int: it wraps past 2^31 elements",
         old="const float *qi = q + (((size_t)b * sh.M + i) * sh.H + h) * sh.D;",
         new="const float *qi = q + ((b * sh.M + i) * sh.H + h) * sh.D;"),
    dict(lesson="02_online_softmax", name="c_lse_not_optional", file="online_softmax.c", suites=["c_part"],
         why="online_softmax_cpu writes lse even when the caller passed NULL (it is optional)",
         old="    if (lse) *lse = m + logf(l);\n    return ATTN_OK;", new="    *lse = m + logf(l);\n    return ATTN_OK;"),
    dict(lesson="02_online_softmax", name="cuda_offsets_32bit", file="online_softmax.cu", suites=["cuda_part"],
         why="the output offset in 32-bit int: it wraps past 2^31 elements",
         old="float *o_row = o + (((size_t)b * sh.M + i) * sh.H + h) * D;",
         new="float *o_row = o + ((b * sh.M + i) * sh.H + h) * D;"),
    dict(lesson="03_flash_attention", name="cuda_last_head_chunk_full", file="flash_attention.cu", suites=["cuda_part"],
         why="the launch order takes every head chunk as full: with a partial last chunk, heads are computed twice "
             "or never",
         old="const int heads_here = min(heads_per_chunk, sh.H - chunk * heads_per_chunk);",
         new="const int heads_here = heads_per_chunk;"),
    dict(lesson="04_gqa", name="cuda_last_group_chunk_full", file="gqa_attention.cu", suites=["cuda_part"],
         why="the launch order takes every kv-head chunk as full: with a partial last chunk, kv heads are computed "
             "twice or never",
         old="const int groups_here = min(groups_per_chunk, sh.G - chunk * groups_per_chunk);",
         new="const int groups_here = groups_per_chunk;"),
    dict(lesson="06_masks_vs_sparsity", name="c_block_check_first_batch", file="sparsity.c", suites=["c_part"],
         why="block_list_check checks the lists of batch entry 0 only",
         old="for (int b = 0; b < shape->B; ++b)\n        for (int qb = 0; qb < QB; ++qb)",
         new="for (int b = 0; b < 1; ++b)\n        for (int qb = 0; qb < QB; ++qb)"),
    dict(lesson="06_masks_vs_sparsity", name="c_block_check_key_blocks_only", file="sparsity.c", suites=["c_part"],
         why="block_list_check checks only as many entries per list as there are key blocks, not all T",
         old="for (int n = 0; n < T; ++n) {\n                    const int32_t j = list[n];",
         new="for (int n = 0; n < T && n < KB; ++n) {\n                    const int32_t j = list[n];"),
    dict(lesson="06_masks_vs_sparsity", name="c_baseline_reads_retention", file="sparsity.c", suites=["c_part"],
         why="masked_attention_cpu converts the retention in every mode, so KEEP_BASELINE fails on the NULL "
             "retention it may be given",
         old="    if (mode == KEEP_BASELINE)\n        for (size_t e = 0; e < n_keys; ++e) keep[e] = 1.0f;\n    else if",
         new="    if"),
    dict(lesson="06_masks_vs_sparsity", name="cuda_blocks_negative_skipped", file="sparsity.cu", suites=["cuda_part"],
         why="a negative device entry is skipped instead of ending the list: the entries after it are attended",
         old="        if (j < 0) return T;\n        if (j <= last_block) return n;",
         new="        if (j < 0) continue;\n        if (j <= last_block) return n;"),
]

# ------------------------------------------------------------------ more variants, one file per topic
# tests/known_wrong_*.py each define VARIANTS (the same fields) and are appended here, so that lessons
# added later keep their variants beside their tests.
import glob as _glob
import importlib.util as _ilu
import os as _os

for _path in sorted(_glob.glob(_os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "known_wrong_*.py"))):
    _spec = _ilu.spec_from_file_location(_os.path.basename(_path)[:-3], _path)
    _mod = _ilu.module_from_spec(_spec)
    _spec.loader.exec_module(_mod)
    VARIANTS += _mod.VARIANTS
