"""Known-wrong variants of lesson 11 (decoding with a KV cache), appended to tests/known_wrong.py's VARIANTS
(same fields, same rules: `old` must occur exactly once in the solution file)."""

_L = "11_decoding"

VARIANTS = [
    # ------------------------------------------------------------------ C part (checked without a GPU)
    dict(lesson=_L, name="c_cmp_one_step_late", file="decoding.c", suites=["c_part"],
         why="the append tests the compressed-token rule on the length BEFORE it grows: the token whose span an "
             "append completes is added one append late (and cmp_lengths lags)",
         old="const long nc_old = attn_nsa_num_cmp(L, p), nc_new = attn_nsa_num_cmp(L + count, p);",
         new="const long nc_old = attn_nsa_num_cmp(L, p),\n"
             "                   nc_new = nc_old + (count > 0 && L >= p->l && (L - p->l) % p->d == 0);"),
    dict(lesson=_L, name="c_cmp_count_off_by_one", file="decoding.c", suites=["c_part"],
         why="the NSA decode counts the compressed tokens of a cache one token shorter: the token completed by the "
             "newest key is left out of the compressed branch",
         old="const long NC = attn_nsa_num_cmp(L, p); /* every token in the cache is visible from t = L - 1 */",
         new="const long NC = attn_nsa_num_cmp(L - 1, p);"),
    dict(lesson=_L, name="c_window_one_short", file="decoding.c", suites=["c_part"],
         why="the window holds w - 1 keys (t - w + 2 .. t): one key short",
         old="lo = t - p->w + 1 > 0 ? t - p->w + 1 : 0; /* the window: keys lo .. t */",
         new="lo = t - p->w + 2 > 0 ? t - p->w + 2 : 0;"),
    dict(lesson=_L, name="c_combine_average", file="decoding.c", suites=["c_part"],
         why="the combine averages the splits' outputs instead of weighting them by exp(lse_u - max lse)",
         old="const float w = expf(lr[u] - m); /* a partial's share of the row's softmax denominator */",
         new="const float w = lr[u] == -INFINITY ? 0.0f : 1.0f;"),
    dict(lesson=_L, name="c_split_drops_last_chunk", file="decoding.c", suites=["c_part"],
         why="the number of splits that hold keys is floor(L / chunk): the last, partial chunk is dropped",
         old="const long used = (L + ch - 1) / ch; /* the splits that hold keys: the last may be partial */",
         new="const long used = L / ch;"),
    dict(lesson=_L, name="c_cmp_batch_stride_own_count", file="decoding.c", suites=["c_part"],
         why="sequence b of the compressed cache is looked up b * NC_b tokens in (its own count), not b * NC_max "
             "(the cache's capacity)",
         old="kv0 = (size_t)b * NC_max * stride + (size_t)g * D;",
         new="kv0 = (size_t)b * NC * stride + (size_t)g * D;"),
    dict(lesson=_L, name="c_linear_pos_on_values", file="decoding.c", suites=["c_part"],
         why="linear mode adds the position embedding to the values too (it belongs to the keys only)",
         old="compress_token(shape, p, v_cache + (size_t)b * L_max * row, c, g, w_v, NULL, v_cmp_cache + at)",
         new="compress_token(shape, p, v_cache + (size_t)b * L_max * row, c, g, w_v, linear ? pos : NULL, v_cmp_cache + at)"),
    dict(lesson=_L, name="c_selected_block_unclipped", file="decoding.c", suites=["c_part"],
         why="the block holding t is read to its end: rows past the sequence's length (the poison) enter the "
             "selected branch",
         old="const long last = first + l_sel - 1 < t ? first + l_sel - 1 : t; /* no key after t: the cache ends there */",
         new="const long last = first + l_sel - 1;"),
    dict(lesson=_L, name="c_combine_no_max_shift", file="decoding.c", suites=["c_part"],
         why="the combine weighs each partial by exp(lse_u) instead of exp(lse_u - max lse): right until the scores "
             "grow, then exp overflows (scores near 120) and o is inf / inf",
         old="""            const float w = expf(lr[u] - m); /* a partial's share of the row's softmax denominator */
            wsum += w;
            for (int d = 0; d < D; ++d) o[r * D + d] += w * orow[(size_t)u * D + d];
        }
        for (int d = 0; d < D; ++d) o[r * D + d] /= wsum;
        lse[r] = m + logf(wsum);""",
         new="""            const float w = expf(lr[u]);
            wsum += w;
            for (int d = 0; d < D; ++d) o[r * D + d] += w * orow[(size_t)u * D + d];
        }
        for (int d = 0; d < D; ++d) o[r * D + d] /= wsum;
        lse[r] = logf(wsum);"""),
    dict(lesson=_L, name="c_causal_leak_past_t", file="decoding.c", suites=["c_part"],
         why="the last split reads one key past the sequence: the row the next append will fill (key t + 1) is "
             "attended to",
         old="last = first + ch < L ? first + ch : L; /* [first, last) */",
         new="last = first + ch < L ? first + ch : L + 1;"),
    dict(lesson=_L, name="c_split_boundary_drops_key", file="decoding.c", suites=["c_part"],
         why="each split stops one key early: the last key of every full chunk is in no split",
         old="last = first + ch < L ? first + ch : L; /* [first, last) */",
         new="last = first + ch - 1 < L ? first + ch - 1 : L;"),
    dict(lesson=_L, name="c_ties_to_higher", file="decoding.c", suites=["c_part"],
         why="top-n ties go to the higher block index (>= instead of >)",
         old="if (!chosen[j] && (best < 0 || block_score[j] > block_score[best])) best = j;",
         new="if (!chosen[j] && (best < 0 || block_score[j] >= block_score[best])) best = j;"),
    # ------------------------------------------------------------------ CUDA part (checked on a GPU)
    dict(lesson=_L, name="cuda_cmp_one_step_late", file="decoding.cu", suites=["cuda_part"],
         why="the append kernel tests the compressed-token rule on the old length: the token an append completes "
             "is written one append late (cmp_lengths says it is there)",
         old="if (c >= num_cmp(L + count_of(a, b), a.p)) continue;",
         new="if (c >= num_cmp(L, a.p) + (count_of(a, b) > 0 && L >= a.p.l && (L - a.p.l) % a.p.d == 0)) continue;"),
    dict(lesson=_L, name="cuda_dense_sees_past_t", file="decoding.cu", suites=["cuda_part"],
         why="the dense decode's mask keeps key `last` = L (one past t) visible in the tile that crosses the end of "
             "the sequence",
         old="if (key0 + 16 > last) flash::mask(s, 0, key0, [&](long, long key) { return key < last; });",
         new="if (key0 + 16 > last) flash::mask(s, 0, key0, [&](long, long key) { return key <= last; });"),
    dict(lesson=_L, name="cuda_combine_average", file="decoding.cu", suites=["cuda_part"],
         why="the combine averages the splits' outputs instead of weighting them by their lse",
         old="const float w = m == -INFINITY ? 0.f : exp2f((lse_u[u] - m) * flash::kLog2e); /* the split's share */",
         new="const float w = 1.f;"),
    dict(lesson=_L, name="cuda_split_drops_last_chunk", file="decoding.cu", suites=["cuda_part"],
         why="the combine merges floor(L / chunk) splits: the last, partial chunk is dropped",
         old="const int used = (int)((L + a.chunk - 1) / a.chunk); /* the splits that hold keys: the last may be partial */",
         new="const int used = (int)(L / a.chunk);"),
    dict(lesson=_L, name="cuda_nsa_window_one_short", file="decoding.cu", suites=["cuda_part"],
         why="the NSA decode's window holds w - 1 keys",
         old="c.lo = c.t - a.p.w + 1 > 0 ? c.t - a.p.w + 1 : 0;", new="c.lo = c.t - a.p.w + 2 > 0 ? c.t - a.p.w + 2 : 0;"),
    dict(lesson=_L, name="cuda_nsa_lse_cmp_own_rank", file="decoding.cu", suites=["cuda_part"],
         why="each block of a cluster ranks the selection blocks with its own partial lse_cmp instead of the "
             "cluster's merged one (wrong wherever a cluster has more than one block, sm_90)",
         old="for (int u = 0; u < c.S; ++u) m = fmaxf(m, cluster_ld_f32(cluster_map(addr, u)));",
         new="for (int u = 0; u < c.S; ++u) m = fmaxf(m, cluster_ld_f32(cluster_map(addr, c.r)));"),
    dict(lesson=_L, name="cuda_nsa_cmp_batch_stride", file="decoding.cu", suites=["cuda_part"],
         why="sequence b of the compressed cache is read b * NC_b tokens in, not b * NC_max",
         old="const uint16_t *k_bg = a.kc + ((size_t)c.b * a.nc_max * G + c.g) * D,",
         new="const uint16_t *k_bg = a.kc + ((size_t)c.b * c.NC * G + c.g) * D,"),
    dict(lesson=_L, name="cuda_dense_offsets_32bit", file="decoding.cu", suites=["cuda_part"],
         why="the dense decode's offset of a sequence's keys in 32-bit int: it wraps past 2^31 elements",
         old="const uint16_t *k_bg = a.k + ((size_t)b * a.sh.N * G + g) * D, *v_bg",
         new="const uint16_t *k_bg = a.k + (int)((b * a.sh.N * G + g) * D), *v_bg"),
    dict(lesson=_L, name="cuda_append_ignores_problem", file="decoding.cu", suites=["cuda_part"],
         why="the append kernel does not look at what check_kernel found: a bad append writes the caches",
         old="    if (a.problem[0] != KV_CACHE_OK) return;\n    const int B = a.sh.B, M = a.sh.M, G = a.sh.G, D = a.sh.D;",
         new="    const int B = a.sh.B, M = a.sh.M, G = a.sh.G, D = a.sh.D;"),
    # A race rarely changes the numbers: compute-sanitizer racecheck must see it.
    dict(lesson=_L, name="cuda_dense_merge_no_barrier", file="decoding.cu",
         suites=[], sanitizer="racecheck",
         why="no barrier between the warps' partials and their merge: threads read partials other warps are still "
             "writing",
         old="    store_warp_partial(st, a.scale_log2, o_s, lse_s, warp);\n    __syncthreads();\n    if (a.splits == 1)",
         new="    store_warp_partial(st, a.scale_log2, o_s, lse_s, warp);\n    if (a.splits == 1)"),
]
