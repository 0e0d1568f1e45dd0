/* nsa.c - NSA parameters (see nsa.h). */
#include "nsa.h"

attn_nsa_params attn_nsa_paper_defaults(void)
{
    attn_nsa_params p = {32, 16, 64, 16, 512, ATTN_NSA_MEAN, 1};
    return p;
}

attn_nsa_params attn_nsa_mean_pool(void)
{
    attn_nsa_params p = {64, 64, 64, 16, 512, ATTN_NSA_MEAN, 1};
    return p;
}

int attn_nsa_check(const attn_nsa_params *p)
{
    if (!p) return attn_fail(ATTN_ERR_NULL_POINTER, "NSA parameters are NULL");
    if (p->l < 1 || p->d < 1 || p->l_sel < 1)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "NSA block sizes l=%d, d=%d, l'=%d must be >= 1", p->l, p->d,
                         p->l_sel);
    if (p->l % p->d != 0)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "NSA stride d=%d does not divide the compression block l=%d", p->d,
                         p->l);
    if (p->l_sel % p->d != 0)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT,
                         "NSA selection block l'=%d is not a multiple of the stride d=%d", p->l_sel, p->d);
    if (p->n < 3)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT,
                         "NSA n=%d selected blocks: at least 3 (block 0, the current block and the one before)",
                         p->n);
    if (p->w < 1) return attn_fail(ATTN_ERR_BAD_ARGUMENT, "NSA window w=%d must be >= 1", p->w);
    if (p->mode != ATTN_NSA_MEAN && p->mode != ATTN_NSA_LINEAR)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "NSA compression mode %d is neither mean (0) nor linear (1)",
                         p->mode);
    if (p->heads_share_selection != 0 && p->heads_share_selection != 1)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "NSA heads_share_selection=%d must be 0 or 1",
                         p->heads_share_selection);
    return ATTN_OK;
}
