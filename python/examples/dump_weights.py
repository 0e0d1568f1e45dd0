#!/usr/bin/env python3
"""Run lesson 10's NSA forward on an example, rebuild each branch's attention weights for one (b, h)
with the lesson's helpers, and dump them to an .npz file for analysis (plot_weights.py draws them).

    python3 python/examples/dump_weights.py                    # the C path, N = 256 (the GPU: --device cuda)
    python3 python/examples/dump_weights.py --device cuda --n 2048 --config paper
    python3 python/examples/plot_weights.py build/nsa_weights_cpu_n256.npz

The example has structure to look at: every selection block of keys has one of 5 topics (a direction
added to its keys, the topics recurring along the sequence), and every query leans towards one topic
that changes every 2.5 blocks, on top of random q, k, v. The forward returns each branch's lse and the
block lists (return_attn_weights=True); from them nsa_weights_cpu (or nsa_weights_cuda) rebuilds the
compressed [M, NC], selected [M, N] and window [M, N] matrices, nsa_cmp_weights_to_keys_* spreads the
compressed one over the keys, and the gated combination is g_cmp * spread + g_slc * selected +
g_swa * window. nsa_weights_summary and nsa_weights_check describe each; the script prints them.

The .npz holds cmp [M, NC], cmp_keys, slc, swa, combined [M, N] (float32), block_indices [M, n] (the
row's list), g_cmp, g_slc, g_swa [M], lse_cmp, lse_slc, lse_swa [M], and meta (a JSON string: the
shape, the parameters, b, h, the device, each matrix's summary and check).
"""
import argparse
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))

CONFIGS = {
    # small enough to see every entry at N = 256: 31 compressed tokens, 16 blocks of which 4 are chosen
    "small": dict(l=16, d=8, l_sel=16, n=4, w=64),
    "paper": dict(l=32, d=16, l_sel=64, n=16, w=512),
    "mean_pool": dict(l=64, d=64, l_sel=64, n=16, w=512),
}


def make_example(np, N, H, D, seed, segment, topics=5, amp=1.2):
    """q [1, N, H, D], k, v [1, N, 1, D] and sigmoid gates [1, N, H] (float32), with recurring topics."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((topics, D))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    scale = amp * D ** 0.25  # q.k of two aligned parts, scaled by 1/sqrt(D): about amp^2 = 1.4
    k = rng.standard_normal((1, N, 1, D)) + scale * z[(np.arange(N) // segment) % topics][None, :, None]
    period = int(2.5 * segment)
    q = rng.standard_normal((1, N, H, D)) + scale * z[(np.arange(N) // period * 3) % topics][None, :, None]
    v = rng.standard_normal((1, N, 1, D))
    gates = [1 / (1 + np.exp(-rng.standard_normal((1, N, H)))) for _ in range(3)]
    return [x.astype(np.float32) for x in (q, k, v, *gates)]


def main(argv=None):
    ap = argparse.ArgumentParser(description="Dump lesson 10's per-branch attention weights of one (b, h) to .npz.")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="cpu: nsa_forward_cpu and nsa_weights_cpu (default); cuda: the CUDA path through PyTorch")
    ap.add_argument("--n", type=int, default=None, help="keys and queries N (default 256 on the CPU, 2048 on the GPU)")
    ap.add_argument("--config", choices=sorted(CONFIGS), default=None,
                    help="NSA parameters (default small on the CPU, paper on the GPU): " +
                         "; ".join(f"{k}: {v}" for k, v in CONFIGS.items()))
    ap.add_argument("--heads", type=int, default=4, help="query heads H, sharing one kv head (default 4)")
    ap.add_argument("--d", type=int, default=64, help="head dimension D (default 64)")
    ap.add_argument("--head", type=int, default=0, help="the head h whose weights are dumped (default 0; b is 0)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="the .npz file (default build/nsa_weights_<cpu or gpu>_n<N>.npz)")
    args = ap.parse_args(argv)
    import numpy as np
    import nsa_course as nc
    gpu = args.device == "cuda"
    N = args.n or (2048 if gpu else 256)
    p = nc.NSAParams(**CONFIGS[args.config or ("paper" if gpu else "small")])
    q, k, v, *gates = make_example(np, N, args.heads, args.d, args.seed, segment=p.l_sel)
    b, h = 0, args.head
    if gpu:
        import torch
        from nsa_course import cuda as path
        put = lambda x: torch.from_numpy(x).cuda().bfloat16() if x.ndim == 4 else torch.from_numpy(x).cuda()  # noqa
        host = lambda x: x.float().cpu().numpy() if x.dtype != torch.int32 else x.cpu().numpy()  # noqa: E731
        name = torch.cuda.get_device_name()
        tag = (re.search(r"[A-Z]\d{2,4}", name).group(0).lower() if re.search(r"[A-Z]\d{2,4}", name) else "gpu")
        where = f"CUDA path on {name}"
    else:
        from nsa_course import cpu as path
        put = host = lambda x: x  # noqa: E731
        tag, where = "cpu", "C path on the CPU"
    o, wts = path.nsa_forward(put(q), put(k), put(v), p, *(put(g) for g in gates), return_attn_weights=True)
    mats = {kind: host(wts.matrix(kind, b, h)) for kind in ("cmp", "cmp_keys", "slc", "swa")}
    mats["combined"] = host(wts.combined(b, h))
    meta = dict(B=1, M=N, N=N, H=args.heads, G=1, D=args.d, b=b, h=h, device=where, tag=tag,
                params=dict(CONFIGS[args.config or ("paper" if gpu else "small")], mode=p.mode,
                            heads_share_selection=p.heads_share_selection), summary={}, check={})
    print(f"NSA forward ({where}), N = M = {N}, H = {args.heads}, D = {args.d}, {p}; weights of (b, h) = ({b}, {h}):")
    for kind in ("cmp", "cmp_keys", "slc", "swa"):
        stats, worst = wts.summary(kind, b, h, mats[kind]), wts.check(kind, b, h, mats[kind])
        meta["summary"][kind], meta["check"][kind] = stats, worst
        print(f"  {kind:9s} {str(mats[kind].shape):13s} entropy {stats['entropy']:.3f} nats, sparsity "
              f"{stats['sparsity']:.3f}, max {stats['max']:.3f}, gate mean {stats['gate_mean']:.3f}; worst deviation "
              f"from a probability matrix {worst:.2e}")
    g = [host(x)[b, :, h] for x in (wts.g_cmp, wts.g_slc, wts.g_swa)]
    G = 1
    lists = host(wts.block_indices)[b, :, h // (args.heads // G) if p.heads_share_selection else h]
    out = args.out or os.path.join(ROOT, "build", f"nsa_weights_{tag}_n{N}.npz")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    np.savez_compressed(out, **mats, block_indices=lists, g_cmp=g[0], g_slc=g[1], g_swa=g[2],
                        lse_cmp=host(wts.lse_cmp)[b, h], lse_slc=host(wts.lse_slc)[b, h],
                        lse_swa=host(wts.lse_swa)[b, h], meta=json.dumps(meta))
    print(f"dumped: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
