/*
 * Tests of the oracle's per-head block lists (attn_oracle_opts.lists_per_head, NSA's selection with
 * heads_share_selection = 0): cases computed by hand, and the default staying per kv group.
 */
#include <criterion/criterion.h>
#include <math.h>

#include "oracle.h"

/* One kv head shared by two query heads (H = 2, G = 1), D = 1, scale 1, causal, blocks of 2 keys.
 * k = [0, ln 3, 0, 0], v = [4, 8, 1, 2], q = 1 for every row; queries at t = 2 and t = 3.
 * Per-head lists: head 0 reads block 0 (keys 0, 1), head 1 block 1 (keys 2, 3), padded with -1.
 *   head 0, any t:  scores 0, ln 3 -> P = 1/4, 3/4;  o = 4/4 + 3*8/4 = 7;  lse = ln 4
 *   head 1, t = 3:  scores 0, 0    -> P = 1/2, 1/2;  o = (1 + 2)/2 = 1.5;  lse = ln 2
 *   head 1, t = 2:  key 3 is in the future: only key 2; o = 1; lse = 0
 * (ln 3 is stored as a float: the results are exact to about 1e-8.) */
static const float kQ[4] = {1, 1, 1, 1}; /* [B=1, M=2, H=2, D=1] */
static const float kK[4] = {0.0f, 1.0986122886681098f, 0.0f, 0.0f};
static const float kV[4] = {4, 8, 1, 2};
static const int32_t kListsPerHead[8] = {0, -1, 1, -1, /* i = 0: head 0, head 1 */ 0, -1, 1, -1 /* i = 1 */};

static attn_oracle_opts per_head_opts(void)
{
    attn_shape sh = attn_make_shape(1, 2, 4, 2, 1, 1, 1);
    sh.scale = 1.0f;
    attn_oracle_opts o = attn_oracle_dense(&sh);
    o.block_indices = kListsPerHead, o.num_blocks = 2, o.block_size = 2, o.lists_per_head = 1;
    return o;
}

Test(oracle_heads, per_head_lists_by_hand)
{
    const attn_oracle_opts opts = per_head_opts();
    double o[4], lse[4];
    cr_assert_eq(attn_oracle_forward(&opts, kQ, kK, kV, o, lse, NULL), ATTN_OK, "%s", attn_error_detail());
    /* o [B, M, H, D]: (i, h) = (0, 0), (0, 1), (1, 0), (1, 1); lse [B, H, M]: (h, i) */
    const double want_o[4] = {7.0, 1.0, 7.0, 1.5};
    const double want_lse[4] = {log(4.0), log(4.0), 0.0, log(2.0)};
    for (int e = 0; e < 4; ++e) {
        cr_expect(fabs(o[e] - want_o[e]) < 1e-6, "o[%d] = %.15g, expected %.15g", e, o[e], want_o[e]);
        cr_expect(fabs(lse[e] - want_lse[e]) < 1e-6, "lse[%d] = %.15g, expected %.15g", e, lse[e], want_lse[e]);
    }
}

Test(oracle_heads, per_head_visibility)
{
    const attn_oracle_opts opts = per_head_opts();
    /* (h, i, s) -> visible: head 0 only block 0, head 1 only block 1 and causal inside it */
    const int want[2][2][4] = {{{1, 1, 0, 0}, {1, 1, 0, 0}}, {{0, 0, 1, 0}, {0, 0, 1, 1}}};
    for (int h = 0; h < 2; ++h)
        for (int i = 0; i < 2; ++i)
            for (int s = 0; s < 4; ++s)
                cr_expect_eq(attn_oracle_visible(&opts, 0, h, i, s), want[h][i][s], "head %d, query %d, key %d", h, i, s);
}

Test(oracle_heads, default_is_per_group)
{
    attn_shape sh = attn_make_shape(1, 1, 4, 2, 1, 1, 1);
    attn_oracle_opts opts = attn_oracle_dense(&sh);
    cr_assert_eq(opts.lists_per_head, 0, "attn_oracle_dense must leave lists_per_head at 0");
    /* [B=1, M=1, G=1, T=2]: both heads read the group's list {1} */
    const int32_t group_list[2] = {1, -1};
    opts.block_indices = group_list, opts.num_blocks = 2, opts.block_size = 2;
    for (int h = 0; h < 2; ++h)
        for (int s = 0; s < 4; ++s)
            cr_expect_eq(attn_oracle_visible(&opts, 0, h, 0, s), s >= 2, "head %d, key %d", h, s);
    opts.lists_per_head = 2;
    double o[2];
    cr_expect_eq(attn_oracle_forward(&opts, kQ, kK, kV, o, NULL, NULL), ATTN_ERR_BAD_ARGUMENT,
                 "lists_per_head = 2 must be rejected");
}
