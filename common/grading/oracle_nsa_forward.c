/*
 * oracle_nsa_forward.c - the double-precision reference of the whole NSA forward (lesson 10), composed
 * from the branch references (oracle_nsa_cmp.c, oracle_nsa_select.c) and the dense oracle with a block
 * list or a window (oracle.c). It adds only the glue: which inputs go where, the bf16 roundings the CUDA
 * part is allowed, and the gated sum. No code shared with any solution.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "oracle.h"
#include "oracle_nsa.h"

static float round_bf16(double x) { return attn_bf16_to_f32(attn_f32_to_bf16((float)x)); }

/* Compressed keys (with pos) and values into kc, vc [B, NC, G, D]. With cmp_bf16, every key row plus
 * pos is rounded to bf16 before the linear map: each token's span is formed on its own (a key sits at a
 * different row r, so with a different pos, in each token that covers it) and handed to the compression
 * reference as a one-token problem. */
static int compress_both(const attn_oracle_nsa_in *in, double *kc, double *vc)
{
    const attn_shape *s = &in->shape;
    const attn_nsa_params *p = &in->p;
    const int linear = p->mode == ATTN_NSA_LINEAR;
    int st = attn_oracle_nsa_compress(s, p, in->v, linear ? in->w_v : NULL, NULL, vc);
    if (st) return st;
    if (!(linear && in->cmp_bf16)) return attn_oracle_nsa_compress(s, p, in->k, linear ? in->w_k : NULL, linear ? in->pos : NULL, kc);
    const long NC = attn_nsa_num_cmp(s->N, p);
    const int G = s->G, D = s->D, l = p->l;
    const attn_shape one = attn_make_shape(1, 1, l, 1, 1, D, 1); /* one token: N = l keys, one kv head */
    float *span = attn_alloc_f32((size_t)l * D);
    if (!span) return attn_fail(ATTN_ERR_OUT_OF_MEMORY, "attn_oracle_nsa_forward: a span of %d keys", l);
    for (int b = 0; b < s->B && !st; ++b)
        for (long c = 0; c < NC && !st; ++c)
            for (int g = 0; g < G && !st; ++g) {
                for (int r = 0; r < l; ++r)
                    for (int e = 0; e < D; ++e)
                        span[(size_t)r * D + e] =
                            round_bf16((double)in->k[(((size_t)b * s->N + (size_t)c * p->d + r) * G + g) * D + e] +
                                       in->pos[(size_t)r * D + e]);
                st = attn_oracle_nsa_compress(&one, p, span, in->w_k + (size_t)g * l * D * D, NULL,
                                              kc + (((size_t)b * NC + c) * G + g) * D);
            }
    free(span);
    return st;
}

int attn_oracle_nsa_forward(const attn_oracle_nsa_in *in, const attn_oracle_nsa_out *out)
{
    if (!in || !out) return attn_fail(ATTN_ERR_NULL_POINTER, "attn_oracle_nsa_forward: in and out must not be NULL");
    const attn_shape *s = &in->shape;
    const attn_nsa_params *p = &in->p;
    int st = attn_check_shape(s);
    if (st) return st;
    if ((st = attn_nsa_check(p)) != ATTN_OK) return st;
    if (!s->causal) return attn_fail(ATTN_ERR_BAD_ARGUMENT, "attn_oracle_nsa_forward: NSA is causal, shape.causal must be 1");
    if (!in->q || !in->k || !in->v || !out->o)
        return attn_fail(ATTN_ERR_NULL_POINTER, "attn_oracle_nsa_forward: q, k, v and o must not be NULL");
    if (p->mode == ATTN_NSA_LINEAR && (!in->w_k || !in->w_v || !in->pos))
        return attn_fail(ATTN_ERR_NULL_POINTER, "attn_oracle_nsa_forward: linear mode needs w_k, w_v and pos");

    const long NC = attn_nsa_num_cmp(s->N, p), NB = attn_nsa_num_blocks(s->N, p);
    const int L = attn_nsa_list_heads(s, p);
    const size_t n_cmp = (size_t)s->B * NC * s->G * s->D, nq = attn_q_elems(s), nl = attn_lse_elems(s);
    const size_t n_scores = (size_t)s->B * s->M * L * NB, n_lists = (size_t)s->B * s->M * L * p->n;
    /* what the caller does not ask for is still computed: scratch of our own */
    double *kc = out->k_cmp ? out->k_cmp : attn_alloc_f64(n_cmp), *vc = out->v_cmp ? out->v_cmp : attn_alloc_f64(n_cmp);
    double *o_cmp = out->o_cmp ? out->o_cmp : attn_alloc_f64(nq), *o_slc = out->o_slc ? out->o_slc : attn_alloc_f64(nq);
    double *o_swa = out->o_swa ? out->o_swa : attn_alloc_f64(nq);
    double *lse_cmp = out->lse_cmp ? out->lse_cmp : attn_alloc_f64(nl);
    double *scores = out->scores ? out->scores : attn_alloc_f64(n_scores);
    int32_t *lists = out->lists ? out->lists : attn_alloc_i32(n_lists);
    float *kcf = attn_alloc_f32(n_cmp), *vcf = attn_alloc_f32(n_cmp);
    if (!kc || !vc || !o_cmp || !o_slc || !o_swa || !lse_cmp || !scores || !lists || !kcf || !vcf) {
        st = attn_fail(ATTN_ERR_OUT_OF_MEMORY, "attn_oracle_nsa_forward: scratch");
        goto done;
    }

    /* compression; the compressed branch and the scores read float tokens (bf16 ones for the CUDA part) */
    if ((st = compress_both(in, kc, vc)) != ATTN_OK) goto done;
    for (size_t e = 0; e < n_cmp; ++e) {
        if (in->cmp_bf16) kc[e] = round_bf16(kc[e]), vc[e] = round_bf16(vc[e]);
        kcf[e] = (float)kc[e], vcf[e] = (float)vc[e];
    }
    if ((st = attn_oracle_nsa_cmp_attention(s, p, in->q, kcf, vcf, o_cmp, lse_cmp)) != ATTN_OK) goto done;

    /* importance and top-n from the compressed branch's own lse */
    if ((st = attn_oracle_nsa_scores(s, p, in->q, kcf, lse_cmp, scores)) != ATTN_OK) goto done;
    if ((st = attn_oracle_nsa_topn(s, p, scores, lists)) != ATTN_OK) goto done;

    /* selected: the lists as per-query block lists of l' keys, causal */
    attn_oracle_opts sel = attn_oracle_dense(s);
    sel.block_indices = in->lists ? in->lists : lists;
    sel.num_blocks = p->n, sel.block_size = p->l_sel, sel.lists_per_head = !p->heads_share_selection;
    if ((st = attn_oracle_forward(&sel, in->q, in->k, in->v, o_slc, out->lse_slc, NULL)) != ATTN_OK) goto done;

    /* window: keys t - w + 1 .. t */
    attn_oracle_opts win = attn_oracle_dense(s);
    win.window = p->w;
    if ((st = attn_oracle_forward(&win, in->q, in->k, in->v, o_swa, out->lse_swa, NULL)) != ATTN_OK) goto done;

    /* the gated sum: gates are per (b, i, h), o per (b, i, h, d) */
    for (size_t e = 0; e < nq; ++e) {
        const size_t r = e / s->D;
        const double gc = in->g_cmp ? in->g_cmp[r] : 1.0, gs = in->g_slc ? in->g_slc[r] : 1.0,
                     gw = in->g_swa ? in->g_swa[r] : 1.0;
        out->o[e] = gc * o_cmp[e] + gs * o_slc[e] + gw * o_swa[e];
    }
done:
    if (!out->k_cmp) free(kc);
    if (!out->v_cmp) free(vc);
    if (!out->o_cmp) free(o_cmp);
    if (!out->o_slc) free(o_slc);
    if (!out->o_swa) free(o_swa);
    if (!out->lse_cmp) free(lse_cmp);
    if (!out->scores) free(scores);
    if (!out->lists) free(lists);
    free(kcf), free(vcf);
    return st;
}
