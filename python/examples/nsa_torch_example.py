#!/usr/bin/env python3
"""Lesson 10's fused NSA forward on PyTorch tensors, checked against a short PyTorch NSA reference.

    python3 python/examples/nsa_torch_example.py                # on the GPU: nc.cuda.nsa_forward (bf16)
    python3 python/examples/nsa_torch_example.py --device cpu   # no GPU: nc.cpu.nsa_forward (the C part, fp32)
    python3 python/examples/nsa_torch_example.py --n 4096 --config paper

`nsa_reference` below is NSA written from its definitions (common/nsa.h) in plain PyTorch, fp32, one
step per line of the math: compression, compressed attention, importance and top-n with the course's
rules, selected attention with the token mask, the sliding window, the gated sum. It materialises
[B, H, M, N] score matrices, so it is for checking, at a few thousand positions, not for speed.

For each configuration the example prints how many block lists differ from the reference's (fp32
may order two nearly equal blocks either way; the course's tests judge such near-ties), then the max
error of o against the reference run on the kernel's own lists (so that a near-tie decided the other
way does not count as an error in o) and of each branch's lse. Exit status 1 if o is out of tolerance.
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import nsa_course as nc  # noqa: E402


def nsa_reference(q, k, v, p, g_cmp, g_slc, g_swa, w_k=None, w_v=None, pos=None, scale=None, lists=None):
    """NSA forward in fp32. q [B, M, H, D], k, v [B, N, G, D], gates [B, M, H]; p an nc.NSAParams.
    Returns o [B, M, H, D] and a dict of lse_cmp, lse_slc, lse_swa [B, H, M] and block_indices
    [B, M, L, n]. lists: block lists to attend to instead of the ones computed here."""
    q, k, v = q.float(), k.float(), v.float()
    B, M, H, D = q.shape
    N, G = k.shape[1], k.shape[2]
    R, dev = H // G, q.device  # R query heads share a kv head: head h reads kv head h // R
    scale = scale or D ** -0.5
    t = torch.arange(N - M, N, device=dev)[:, None]  # the queries' positions [M, 1]
    s = torch.arange(N, device=dev)[None, :]  # the keys' positions [1, N]

    def attend(keys, values, visible):  # keys, values [B, *, G, D]; visible broadcasts to [B, H, M, *]
        scores = torch.einsum("bmhd,bnhd->bhmn", q, keys.repeat_interleave(R, 2)) * scale
        scores = scores.masked_fill(~visible, float("-inf"))
        lse = torch.logsumexp(scores, dim=-1)  # -inf for a row that sees nothing
        probs = torch.exp(scores - lse[..., None]).nan_to_num(0.0)  # such a row: all 0, so o = 0
        return torch.einsum("bhmn,bnhd->bmhd", probs, values.repeat_interleave(R, 2)), lse, probs

    # compression: token c summarises keys c*d .. c*d + l - 1 (mean, or the linear map of keys + pos)
    NC = max(0, (N - p.l) // p.d + 1)
    c = torch.arange(NC, device=dev)
    spans = c[:, None] * p.d + torch.arange(p.l, device=dev)[None, :]  # [NC, l]

    def phi(x, w, add):
        blocks = x[:, spans]  # [B, NC, l, G, D]
        if p.mode == "mean":
            return blocks.mean(dim=2)
        if add is not None:
            blocks = blocks + add.float()[None, None, :, None, :]
        return torch.einsum("bclgx,glxy->bcgy", blocks, w.float().view(G, p.l, D, D))

    k_cmp, v_cmp = phi(k, w_k, pos), phi(v, w_v, None)
    # compressed attention: token c is visible from t iff its whole span is in the past
    o_cmp, lse_cmp, p_cmp = attend(k_cmp, v_cmp, c[None, :] * p.d + p.l - 1 <= t)
    # importance: block j gets p_cmp[c] * overlap(c, j) / d from every token c, summed over a group's heads
    NB = (N + p.l_sel - 1) // p.l_sel
    j = torch.arange(NB, device=dev)
    overlap = (torch.minimum(c[:, None] * p.d + p.l, (j[None, :] + 1) * p.l_sel)
               - torch.maximum(c[:, None] * p.d, j[None, :] * p.l_sel)).clamp(min=0)  # keys shared [NC, NB]
    p_slc = p_cmp @ overlap.float() / p.d  # [B, H, M, NB]
    score = p_slc.view(B, G, R, M, NB).sum(2) if p.heads_share_selection else p_slc  # [B, L, M, NB]
    # top-n: candidates j*l' <= t; block 0, t's block and the one before it forced; the rest by score,
    # ties to the lower index (a stable sort keeps equal scores in index order); fewer than n: -1
    blk = t // p.l_sel
    forced = (j == 0) | (j == blk) | (j == blk - 1)  # [M, NB]
    score = score.masked_fill(forced, float("inf")).masked_fill(j * p.l_sel > t, float("-inf"))
    top = torch.sort(score, dim=-1, descending=True, stable=True).indices[..., :p.n]
    top = torch.where(torch.gather(score, -1, top) > float("-inf"), top, NB)  # NB: no block
    top = torch.sort(top, dim=-1).values  # ascending, the empty places last
    block_indices = torch.where(top < NB, top, -1).permute(0, 2, 1, 3).int()  # [B, M, L, n]
    if block_indices.shape[-1] < p.n:  # fewer blocks than n in the whole sequence
        block_indices = torch.nn.functional.pad(block_indices, (0, p.n - block_indices.shape[-1]), value=-1)
    use = block_indices if lists is None else lists.long()
    # selected attention: the keys s <= t of the listed blocks (the token mask inside t's block)
    listed = torch.zeros(B, M, use.shape[2], NB + 1, dtype=torch.bool, device=dev)
    listed.scatter_(-1, torch.where(use < 0, NB, use).long(), True)
    listed = listed[..., s[0] // p.l_sel]  # per key [B, M, L, N]
    listed = listed.repeat_interleave(R, 2) if p.heads_share_selection else listed  # [B, M, H, N]
    o_slc, lse_slc, _ = attend(k, v, listed.permute(0, 2, 1, 3) & (s <= t))
    # sliding window: keys t - w + 1 .. t
    o_swa, lse_swa, _ = attend(k, v, (s <= t) & (s > t - p.w))
    o = g_cmp[..., None] * o_cmp + g_slc[..., None] * o_slc + g_swa[..., None] * o_swa
    return o, dict(lse_cmp=lse_cmp, lse_slc=lse_slc, lse_swa=lse_swa, block_indices=block_indices)


CONFIGS = {
    "mean_pool": lambda: nc.NSAParams.mean_pool(),
    "paper": lambda: nc.NSAParams.paper(),
    "linear": lambda: nc.NSAParams(l=32, d=16, l_sel=64, n=16, w=512, mode="linear"),
    "per_head": lambda: nc.NSAParams(l=32, d=16, l_sel=64, n=16, w=512, heads_share_selection=False),
}


def make_inputs(p, B, M, N, H, G, D, device, seed=0):
    """Random q, k, v, gates in [0, 1] and, in linear mode, w_k, w_v, pos: fp32 on `device`."""
    gen = torch.Generator().manual_seed(seed)
    r = lambda *shape, s=1.0: (torch.randn(*shape, generator=gen) * s).to(device)  # noqa: E731
    x = dict(q=r(B, M, H, D), k=r(B, N, G, D), v=r(B, N, G, D),
             g_cmp=torch.rand(B, M, H, generator=gen).to(device), g_slc=torch.rand(B, M, H, generator=gen).to(device),
             g_swa=torch.rand(B, M, H, generator=gen).to(device))
    if p.mode == "linear":
        x.update(w_k=r(G, p.l * D, D, s=(p.l * D) ** -0.5), w_v=r(G, p.l * D, D, s=(p.l * D) ** -0.5), pos=r(p.l, D))
    return x


def run(name, p, args):
    cuda = args.device == "cuda"
    x = make_inputs(p, args.b, args.n if args.m is None else args.m, args.n, args.h, args.g, args.d,
                    "cuda" if cuda else "cpu")
    bf16 = ("q", "k", "v", "w_k", "w_v", "pos")
    if cuda:  # the kernel takes bf16: the reference gets the same bf16 values, in fp32
        x = {key: (val.bfloat16() if key in bf16 else val) for key, val in x.items()}
        nc.cuda.nsa_forward(**x, params=p)  # warm-up: the first call loads the kernels
        torch.cuda.synchronize()
        start = time.perf_counter()
        o, wts = nc.cuda.nsa_forward(**x, params=p, return_attn_weights=True)
        torch.cuda.synchronize()
    else:
        start = time.perf_counter()
        o, wts = nc.cpu.nsa_forward(**{key: val.numpy() for key, val in x.items()}, params=p, return_attn_weights=True)
    elapsed = time.perf_counter() - start
    o = torch.as_tensor(o)
    got = {key: torch.as_tensor(getattr(wts, key)) for key in ("lse_cmp", "lse_slc", "lse_swa", "block_indices")}
    ref_args = {key: (val.float() if key in bf16 else val) for key, val in x.items()}
    _, ref = nsa_reference(**ref_args, p=p)
    lists_differ = (ref["block_indices"] != got["block_indices"]).any(-1)
    o_ref, ref_on_lists = nsa_reference(**ref_args, p=p, lists=got["block_indices"])
    err = (o.float() - o_ref).abs()
    tol = (2e-2, 2e-2) if cuda else (1e-4, 1e-4)  # bf16 output and compressed tokens; fp32 sums
    ok = bool((err <= tol[0] + tol[1] * o_ref.abs()).all())

    def lse_err(key):
        a, b = got[key].float(), ref_on_lists[key]
        both_inf = torch.isinf(a) & torch.isinf(b) & (a == b)
        return float(torch.where(both_inf, 0.0, (a - b).abs()).max())
    print(f"{name:10s} {args.device}: N = {args.n}, time {elapsed * 1e3:8.2f} ms, lists differing from the reference's "
          f"{int(lists_differ.sum())} of {lists_differ.numel()}, max |o - ref| = {float(err.max()):.3e} "
          f"({'ok' if ok else 'OUT OF TOLERANCE'}), max |lse - ref|: cmp {lse_err('lse_cmp'):.2e}, "
          f"slc {lse_err('lse_slc'):.2e}, swa {lse_err('lse_swa'):.2e}")
    return ok


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda" if torch.cuda.is_available() else "cpu",
                    help="cuda: nc.cuda.nsa_forward on bf16 tensors; cpu: nc.cpu.nsa_forward (the C part) on fp32 "
                         "(default: cuda when PyTorch sees a GPU)")
    ap.add_argument("--config", choices=sorted(CONFIGS) + ["all"], default="all")
    ap.add_argument("--n", type=int, default=None, help="keys N (default 2048 on the GPU, 512 on the CPU)")
    ap.add_argument("--m", type=int, default=None, help="queries M, the last M positions (default N)")
    ap.add_argument("--b", type=int, default=1)
    ap.add_argument("--h", type=int, default=16)
    ap.add_argument("--g", type=int, default=1)
    ap.add_argument("--d", type=int, default=128)
    args = ap.parse_args(argv)
    args.n = args.n or (2048 if args.device == "cuda" else 512)
    names = sorted(CONFIGS) if args.config == "all" else [args.config]
    ok = all([run(name, CONFIGS[name](), args) for name in names])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
