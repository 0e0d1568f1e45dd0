#!/usr/bin/env python3
"""Time the public Triton kernels of NSA's selected-attention branch on this GPU, for the course's bar.

The bar of lessons 07-09 is "at most half of the best public Triton kernels measured on the same GPU the
same day". This script measures the selected-attention forward of two public Triton implementations on
the shape of the benchmark's suite nsa (`build/bin/bench --suite nsa`: B = 1, H = 64, G = 4, D = 128, bf16,
causal, l' = 64, n = 16):

  fla   flash-linear-attention's parallel_nsa_fwd (fla/ops/nsa/parallel.py)
  xl    XunhaoLai/native-sparse-attention-triton's _topk_sparse_attention_fwd
        (native_sparse_attention/ops/triton/topk_sparse_attention.py)

Neither is part of this course: pass the folders of your own checkouts (the commit measured is printed).
Only their forward kernels are called, through their own Python functions, nothing is copied.

The block lists are what the benchmark's selected_attention entry reads on random inputs (the top-n of
random scores): block 0, the block holding t and the one before it, then random distinct blocks up to
t's, ascending, padded with -1 (fewer candidates than n near the start). Both kernels read each (position, kv group)'s blocks on their own, so their time does
not depend on which blocks were chosen, only on how many. Timing: CUDA events, median of --reps runs,
each after a 256 MB write that flushes the L2, after --warmup untimed runs (the first one autotunes).

Needs PyTorch with CUDA and Triton. Example:
  python3 tools/bench/bench_triton_nsa.py --fla ~/src/flash-linear-attention \
      --xl ~/src/native-sparse-attention-triton --N 65536 --csv triton.csv
"""
import argparse
import importlib
import math
import os
import subprocess
import sys
import types

B, H, G, D, L_SEL, N_SEL = 1, 64, 4, 128, 64, 16


def commit_of(path):
    """The checkout's commit; "unknown" for a folder that is not the top of a git checkout (an exported
    copy), rather than the commit of a repository that happens to contain it."""
    try:
        top = subprocess.run(["git", "-C", path, "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                             check=True).stdout.strip()
        if os.path.realpath(top) != os.path.realpath(path):
            return "unknown"
        return subprocess.run(["git", "-C", path, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def shim_missing(name, attrs):
    """Register a stand-in for a small dependency the kernels' modules import but the timed forward
    never calls (einops, packaging), when it is not installed."""
    try:
        importlib.import_module(name)
    except ImportError:
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            sub = ".".join(parts[:i])
            if sub not in sys.modules:
                mod = types.ModuleType(sub)
                mod.__path__ = []
                sys.modules[sub] = mod
                if i > 1:
                    setattr(sys.modules[".".join(parts[:i - 1])], parts[i - 1], mod)
        for key, value in attrs.items():
            setattr(sys.modules[name], key, value)


def load_fla(root):
    """fla's selected-attention forward, without running fla/__init__.py and fla/ops/__init__.py (which
    import every model and op of the library): the two packages are registered bare, with their paths."""
    import torch  # noqa: F401  (fla's modules expect it loaded)

    def parse(text):
        return tuple(int(x) if x.isdigit() else 0 for x in text.split("+")[0].split(".")[:3])

    shim_missing("packaging.version", {"parse": parse, "Version": parse})
    shim_missing("einops", {"reduce": None, "rearrange": None, "repeat": None})
    sys.path.insert(0, root)
    for name, sub in (("fla", "fla"), ("fla.ops", "fla/ops")):
        mod = types.ModuleType(name)
        mod.__path__ = [os.path.join(root, sub)]
        mod.__version__ = "0"
        sys.modules[name] = mod
    parallel = importlib.import_module("fla.ops.nsa.parallel")
    return parallel.parallel_nsa_fwd


def load_xl(root):
    import torch  # noqa: F401
    sys.path.insert(0, root)
    name = "native_sparse_attention"
    for pkg, sub in ((name, name), (name + ".ops", name + "/ops"), (name + ".ops.triton", name + "/ops/triton")):
        mod = types.ModuleType(pkg)
        mod.__path__ = [os.path.join(root, sub)]
        sys.modules[pkg] = mod
    mod = importlib.import_module(name + ".ops.triton.topk_sparse_attention")
    return mod._topk_sparse_attention_fwd


def make_lists(n_tok, gen, device):
    """[B, N, G, n] int32 block lists, as described in the module's docstring."""
    import torch
    t = torch.arange(n_tok, device=device)
    cur = t // L_SEL
    nblk = int(cur[-1].item()) + 1
    # random keys per (t, g, block); forced blocks get -1 (first), blocks past t's get +2 (never chosen)
    idx = torch.empty(B, n_tok, G, N_SEL, dtype=torch.int32, device=device)
    chunk = 4096
    for s in range(0, n_tok, chunk):
        e = min(n_tok, s + chunk)
        key = torch.rand(B, e - s, G, nblk, generator=gen, device=device)
        blocks = torch.arange(nblk, device=device)
        c = cur[s:e].view(1, -1, 1, 1)
        forced = (blocks == 0) | (blocks == c) | (blocks == c - 1)
        key = torch.where(forced, torch.full_like(key, -1.0), key)
        key = torch.where(blocks > c, torch.full_like(key, 2.0), key)
        top = torch.topk(key, k=min(N_SEL, nblk), dim=-1, largest=False)
        sel = torch.where(top.values > 1.5, torch.full_like(top.indices, -1), top.indices)
        sel = torch.where(sel < 0, torch.full_like(sel, 1 << 30), sel).sort(dim=-1).values
        sel = torch.where(sel == (1 << 30), torch.full_like(sel, -1), sel)
        if sel.shape[-1] < N_SEL:
            pad = torch.full((*sel.shape[:-1], N_SEL - sel.shape[-1]), -1, dtype=sel.dtype, device=device)
            sel = torch.cat([sel, pad], dim=-1)
        idx[:, s:e] = sel.to(torch.int32)
    return idx


def time_ms(fn, warmup, reps):
    import torch
    flush = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        flush.zero_()
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fla", help="a checkout of fla-org/flash-linear-attention")
    ap.add_argument("--xl", help="a checkout of XunhaoLai/native-sparse-attention-triton")
    ap.add_argument("--N", default="65536", help="comma-separated sequence lengths (default 65536)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--csv", help="append device,impl,stage,N,ms,tflops rows")
    args = ap.parse_args()
    if not args.fla and not args.xl:
        ap.error("give --fla and/or --xl")
    import torch
    if not torch.cuda.is_available():
        print("bench_triton_nsa: no CUDA device", file=sys.stderr)
        return 77
    dev = torch.cuda.get_device_name()
    impls = []
    if args.fla:
        impls.append(("fla", commit_of(args.fla), load_fla(args.fla)))
    if args.xl:
        impls.append(("xl", commit_of(args.xl), load_xl(args.xl)))
    print(f"{dev}; torch {torch.__version__}; triton {importlib.import_module('triton').__version__}; "
          + ", ".join(f"{name} at {commit}" for name, commit, _ in impls))
    print(f"shape: B={B} H={H} G={G} D={D}, bf16, causal, l'={L_SEL}, n={N_SEL}; median of {args.reps} runs "
          f"after {args.warmup} warm-up, L2 flushed before each")
    rows = []
    gen = torch.Generator(device="cuda")
    for n_tok in [int(x) for x in args.N.split(",")]:
        gen.manual_seed(args.seed)
        q = torch.randn(B, n_tok, H, D, device="cuda", dtype=torch.bfloat16, generator=gen)
        k = torch.randn(B, n_tok, G, D, device="cuda", dtype=torch.bfloat16, generator=gen)
        v = torch.randn(B, n_tok, G, D, device="cuda", dtype=torch.bfloat16, generator=gen)
        idx = make_lists(n_tok, gen, "cuda")
        scale = 1.0 / math.sqrt(D)
        # visible (query, key) pairs: each valid block gives l' keys, the block holding t only t % l' + 1
        t = torch.arange(n_tok, device="cuda").view(1, -1, 1, 1)
        valid = idx >= 0
        keys = torch.where(idx == t // L_SEL, t % L_SEL + 1, torch.full_like(idx, L_SEL))
        pairs = float((keys * valid).sum().item()) * (H // G)
        flops = pairs * 4 * D
        outs = {}
        for name, _, fwd in impls:
            if name == "fla":
                idx_l = idx.to(torch.long)
                def run(fwd=fwd, idx_l=idx_l):
                    return fwd(q, k, v, idx_l, N_SEL, L_SEL, scale)
            else:
                q2, k2, v2 = q.view(-1, H, D), k.view(-1, G, D), v.view(-1, G, D)
                idx_x = idx.view(-1, G, N_SEL).permute(1, 0, 2).contiguous()
                cu = torch.tensor([0, n_tok], dtype=torch.int32, device="cuda")
                def run(fwd=fwd, q2=q2, k2=k2, v2=v2, idx_x=idx_x, cu=cu):
                    return fwd(q2, k2, v2, idx_x, L_SEL, cu, cu, n_tok, n_tok, scale)
            ms = time_ms(run, args.warmup, args.reps)
            outs[name] = run()[0].reshape(B, n_tok, H, D).float()
            tf = flops / ms / 1e9
            print(f"{name:5s} {n_tok:7d}  selected_attention  {ms:9.3f} ms  {tf:7.2f} TFLOP/s  (bar: half = {ms / 2:.2f} ms)")
            rows.append((dev, name, "selected_attention", n_tok, ms, tf))
        if len(outs) == 2:
            diff = (outs["fla"] - outs["xl"]).abs().max().item()
            print(f"      {n_tok:7d}  max |o_fla - o_xl| = {diff:.3g} (the two agree when this is bf16 rounding)")
        del q, k, v, idx, outs
        torch.cuda.empty_cache()
    if args.csv:
        new = not os.path.exists(args.csv)
        with open(args.csv, "a") as f:
            if new:
                f.write("device,impl,stage,N,ms,tflops\n")
            for r in rows:
                f.write(f"{r[0]},{r[1]},{r[2]},{r[3]},{r[4]:.4f},{r[5]:.2f}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
