"""Known-wrong variants of lesson 08 (NSA top-n block selection); appended to tests/known_wrong.py's list.
Same fields: `old` must occur exactly once in the solution file."""

VARIANTS = [
    dict(lesson="08_topn_selection", name="c_eq9_literal", file="topn_selection.c", suites=["c_part"],
         why="the paper's eq. 9 taken literally (sum over m < l'/d, n < l/d of p_cmp[(l'/d) j - m - n]): block j "
             "sums tokens 4j-4 .. 4j with weights 1,2,2,2,1, three tokens earlier than those whose keys it holds "
             "(4j-1 .. 4j+3); in general l'/d - 1 tokens early, so mean-pool mode is unchanged",
         old="const long ov = attn_nsa_overlap(c, j, p);",
         new="const long ov = attn_nsa_overlap(c + p->l_sel / p->d - 1, j, p);"),
    dict(lesson="08_topn_selection", name="c_mapping_one_token_late", file="topn_selection.c", suites=["c_part"],
         why="the token-to-block mapping one token late: block j sums tokens 4j .. 4j+4 with weights 1,2,2,2,1 "
             "instead of 4j-1 .. 4j+3 (a token's span taken to start one unit late)",
         old="const long ov = attn_nsa_overlap(c, j, p);", new="const long ov = attn_nsa_overlap(c - 1, j, p);"),
    dict(lesson="08_topn_selection", name="c_visible_count_truncates", file="topn_selection.c", suites=["c_part"],
         why="the visible count written with C's truncating division: rows t = l-d .. l-2 see token 0 before its "
             "span ends, and with lse = -inf their scores are inf",
         old="const long vis = attn_nsa_cmp_visible_count(t, NC, p);",
         new="const long vis = (t - (p->l - 1)) / p->d + 1 < NC ? (t - (p->l - 1)) / p->d + 1 : NC;"),
    dict(lesson="08_topn_selection", name="c_group_modulo", file="topn_selection.c", suites=["c_part"],
         why="the group sum over the wrong heads: head h added to list h % G instead of h / (H/G)",
         old="const int list = p->heads_share_selection ? g : h;",
         new="const int list = p->heads_share_selection ? h % G : h;"),
    dict(lesson="08_topn_selection", name="c_no_previous_block", file="topn_selection.c", suites=["c_part"],
         why="the block before the current one is not forced (it only gets in by its score)",
         old="const long forced[3] = {0, cur - 1, cur};", new="const long forced[3] = {0, cur, cur};"),
    dict(lesson="08_topn_selection", name="c_ties_to_higher", file="topn_selection.c", suites=["c_part"],
         why="ties go to the higher index (>= instead of >)",
         old="(best < 0 || sj > best_s)", new="(best < 0 || sj >= best_s)"),
    dict(lesson="08_topn_selection", name="c_candidate_after_t", file="topn_selection.c", suites=["c_part"],
         why="the candidates include the block after t's (j*l' <= t + l' instead of j*l' <= t)",
         old="const long cand = t / p->l_sel + 1;", new="const long cand = t / p->l_sel + 2;"),
    dict(lesson="08_topn_selection", name="c_pad_with_zero", file="topn_selection.c", suites=["c_part"],
         why="short lists are padded with block 0 instead of -1",
         old="out[k] = k < cand ? (int32_t)k : -1;", new="out[k] = k < cand ? (int32_t)k : 0;"),
    dict(lesson="08_topn_selection", name="c_bf16_ranking", file="topn_selection.c", suites=["c_part"],
         why="scores ranked after rounding to bf16 (8 significant bits): near blocks swap or tie",
         old="const float sj = row[j];", new="const float sj = attn_bf16_to_f32(attn_f32_to_bf16(row[j]));"),
    # ---------------------------------------------------------------- CUDA part
    # The device functions both kernels are built from (topn_common.cuh): every shape sees these.
    dict(lesson="08_topn_selection", name="cuda_tile_boundary_token", file="topn_common.cuh", suites=["cuda_part"],
         why="lane tig 0 takes the token before its first from lane tig 3 of the SAME tile instead of the previous "
             "tile: the first block of every tile gets a wrong token (paper configuration)",
         old="before[x - 1] = tig ? left : carry[x - 1];", new="before[x - 1] = left;"),
    dict(lesson="08_topn_selection", name="cuda_no_previous_block", file="topn_common.cuh", suites=["cuda_part"],
         why="only block 0 and the current block are forced; the previous one must win by score",
         old="row[0] = row[cur - 1] = row[cur] = -INFINITY;\n    __syncwarp();\n    /* Scores are sums of probabilities, >= +0, and the bits of non-negative floats, read as int, order\n     * like the floats; -inf (chosen) reads as a negative int. Each lane keeps its kKeep best unchosen\n     * blocks, best first (-1: none), from one scan of its blocks j = lane, lane + 32, ... (ascending, so\n     * ties keep the lower index). A round is then two warp reductions over the lanes' first entries; only\n     * the winner's lane moves on to its next entry, and scans its blocks again once its list is empty.\n     * Rescanning every lane's blocks each round, the plain way, reads the row n - 3 times. */\n    constexpr int kKeep = 4;\n    int best[kKeep], best_j[kKeep];\n    auto scan = [&]() {\n#pragma unroll\n        for (int k = 0; k < kKeep; ++k) best[k] = -1, best_j[k] = INT_MAX;\n        for (int j = lane; j <= cur; j += 32) {\n            const int v = __float_as_int(row[j]);\n            if (v > best[kKeep - 1]) offer(best, best_j, v, j);\n        }\n    };\n    scan();\n    for (int pick = 3;",
         new="row[0] = row[cur] = -INFINITY;\n    __syncwarp();\n    /* Scores are sums of probabilities, >= +0, and the bits of non-negative floats, read as int, order\n     * like the floats; -inf (chosen) reads as a negative int. Each lane keeps its kKeep best unchosen\n     * blocks, best first (-1: none), from one scan of its blocks j = lane, lane + 32, ... (ascending, so\n     * ties keep the lower index). A round is then two warp reductions over the lanes' first entries; only\n     * the winner's lane moves on to its next entry, and scans its blocks again once its list is empty.\n     * Rescanning every lane's blocks each round, the plain way, reads the row n - 3 times. */\n    constexpr int kKeep = 4;\n    int best[kKeep], best_j[kKeep];\n    auto scan = [&]() {\n#pragma unroll\n        for (int k = 0; k < kKeep; ++k) best[k] = -1, best_j[k] = INT_MAX;\n        for (int j = lane; j <= cur; j += 32) {\n            const int v = __float_as_int(row[j]);\n            if (v > best[kKeep - 1]) offer(best, best_j, v, j);\n        }\n    };\n    scan();\n    for (int pick = 2;"),
    dict(lesson="08_topn_selection", name="cuda_ties_to_higher", file="topn_common.cuh", suites=["cuda_part"],
         why="the warp argmax breaks ties across lanes towards the higher index",
         old="__reduce_min_sync(0xffffffffu, best[0] == top ? (unsigned)best_j[0] : 0xffffffffu)",
         new="__reduce_max_sync(0xffffffffu, best[0] == top ? (unsigned)best_j[0] : 0u)"),
    dict(lesson="08_topn_selection", name="cuda_group_heads_modulo", file="topn_common.cuh", suites=["cuda_part"],
         why="the block's packed rows read query heads hh * G + g (interleaved groups) instead of g * H/G + hh",
         old="* sh.H + (size_t)g * hpg + row % hpg) * D + c * 8 : q;",
         new="* sh.H + (size_t)(row % hpg) * sh.G + g) * D + c * 8 : q;"),
    dict(lesson="08_topn_selection", name="cuda_rank_no_rescan", file="topn_common.cuh", suites=["cuda_part"],
         why="a lane whose first scan's best blocks are used up never scans again: a list that needs more picks "
             "from one lane than it kept takes worse blocks of other lanes",
         old="            if (best[0] < 0) scan(); /* its list is used up: its next best blocks, if it has any */\n",
         new=""),
    # The optional fast path for H/G = 16 (topn_select_g16.cu): the bar's shape, tested by
    # cuda_part/g16_path directly and by the H/G = 16 cases through nsa_select_cuda.
    dict(lesson="08_topn_selection", name="cuda_g16_one_head_of_two", file="topn_select_g16.cu", suites=["cuda_part"],
         why="the H/G = 16 kernel sums only the lane's first row (heads 0-7) into the group score, not heads 8-15",
         old="for (int x = 0; x < 16; ++x) pv[x] += pv8[x];", new="for (int x = 0; x < 16; ++x) pv[x] += 0.f * pv8[x];"),
    dict(lesson="08_topn_selection", name="cuda_g16_scatter_wrong_half", file="topn_select_g16.cu", suites=["cuda_part"],
         why="after the reduce-scatter the H/G = 16 kernel files a lane's block sums under its partner's blocks",
         old="if (upper) c_base += half;", new="if (!upper) c_base += half;"),
    # The same for the H/G = 16 fast path: its K pipeline's barrier (cuda_part/small has an H/G = 16 shape).
    dict(lesson="08_topn_selection", name="cuda_g16_missing_barrier", file="topn_select_g16.cu",
         suites=[], sanitizer="racecheck",
         why="the H/G = 16 kernel prefetches the next K tile without the barrier: warps overwrite the tile that "
             "others still multiply",
         old="        __syncthreads(); /* tile m has landed; nobody reads tile m - 1 any more */\n", new=""),
    # The general kernel (topn_selection.cu). A race rarely changes the lists (the warps run close to in
    # step): compute-sanitizer racecheck must see it.
    dict(lesson="08_topn_selection", name="cuda_missing_barrier", file="topn_selection.cu",
         suites=[], sanitizer="racecheck",
         why="no barrier between the staging stores and the group sum: threads read other warps' block sums "
             "before they are written",
         old="        __syncthreads(); /* the staging tile is complete */\n", new=""),
]
