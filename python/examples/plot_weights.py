#!/usr/bin/env python3
"""Heatmaps of the per-branch attention weights that dump_weights.py wrote: the compressed branch over
its tokens [M, NC] and spread over the keys [M, N], the selected branch [M, N], the window [M, N] and
the gated combination [M, N], each on a log colour scale, with its summary (lesson 10's
nsa_weights_summary) in the title.

    python3 python/examples/plot_weights.py build/nsa_weights_cpu_n256.npz   # -> figures/nsa_weights_cpu_n256.png
    python3 python/examples/plot_weights.py FILE.npz --out weights.png
"""
import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    ap = argparse.ArgumentParser(description="Draw the heatmaps of a dump_weights.py file.")
    ap.add_argument("npz", help="the file dump_weights.py wrote")
    ap.add_argument("--out", default=None, help="the figure (default figures/nsa_weights_<cpu or the GPU>_n<N>.png)")
    args = ap.parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import LogNorm

    data = np.load(args.npz)
    meta = json.loads(str(data["meta"]))
    p = meta["params"]
    M, N = meta["M"], meta["N"]
    panels = [("cmp", f"compressed branch over its {data['cmp'].shape[1]} tokens [M, NC]"),
              ("cmp_keys", "compressed, spread over the keys [M, N]"),
              ("slc", f"selected branch: n = {p['n']} blocks of l' = {p['l_sel']} [M, N]"),
              ("swa", f"sliding window w = {p['w']} [M, N]"),
              ("combined", "gated combination g_cmp cmp + g_slc slc + g_swa swa [M, N]")]
    fig, axes = plt.subplots(1, 5, figsize=(22, 5.4), layout="constrained",
                             gridspec_kw=dict(width_ratios=[0.55, 1, 1, 1, 1]))
    norm = LogNorm(vmin=1e-4, vmax=1.0)  # one scale for every panel: below 1e-4 shows as the darkest colour
    for ax, (kind, title) in zip(axes, panels):
        w = data[kind]
        # exact zeros (what the branch never looks at) are left out, so the background shows through
        im = ax.imshow(np.where(w > 0, w, np.nan), norm=norm, cmap="viridis", aspect="auto", interpolation="nearest")
        ax.set_facecolor("#d9d9d9")
        stats = meta["summary"].get(kind)
        sub = (f"\nentropy {stats['entropy']:.2f} nats, zeros {stats['sparsity']:.0%}, gate mean {stats['gate_mean']:.2f}"
               if stats else "\neach row sums to g_cmp + g_slc + g_swa")
        ax.set_title(title + sub, fontsize=9)
        ax.set_xlabel("compressed token c" if kind == "cmp" else "key position s")
    axes[0].set_ylabel("query position t")
    fig.colorbar(im, ax=axes, fraction=0.02, pad=0.01, label="weight (grey: exactly 0)")
    fig.suptitle(f"NSA attention weights of (b, h) = ({meta['b']}, {meta['h']}), N = M = {N}, l = {p['l']}, "
                 f"d = {p['d']}, l' = {p['l_sel']}, n = {p['n']}, w = {p['w']}, {p['mode']} mode "
                 f"({meta['device']})", fontsize=11)
    out = args.out or os.path.join(ROOT, "figures", f"nsa_weights_{meta['tag']}_n{N}.png")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=100, bbox_inches="tight")
    print(f"figure: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
