#!/usr/bin/env python3
"""Time the public NSA forwards that lesson 10's fused forward is compared with, on this GPU.

Three public Triton implementations, each through its own Python functions, on the benchmark's NSA shape
(B = 1, H = 64, G = 4, D = 128, bf16, causal, M = N, random gates), at the lengths of --N (default 16384
and 65536, lesson 10's bench shapes):

  fla   flash-linear-attention's parallel_nsa (fla/ops/nsa/parallel.py), the whole forward in mean-pool
        mode (l = d = l' = 64, n = 16) with its window branch (w = 512) and the three gates: its mean
        pooling, compressed attention, top-n, selected attention, the window and the gated sum in one call.
        Its window goes through flash-attn's flash_attn_func when flash-attn is installed; otherwise
        through fla's own Triton window kernel (fla.ops.attn.parallel.parallel_attn with window_size),
        which this script puts where parallel_nsa looks for flash_attn_func (the row says which ran).
  xl    XunhaoLai's native-sparse-attention-triton in the paper's mode: linear_compress of k (with its
        intra-block position embedding) and of v (l = 32, d = 16), compressed_attention with its top-n
        (l' = 64, n = 16, init_blocks = 1, local_blocks = 2: the course's forced blocks), then
        topk_sparse_attention; it has no window branch, so the window is fla's (or flash-attn's) as above,
        and the gated sum is three torch operations. Each stage is timed alone, then the whole forward.
  mdy   mdy666's Scalable-Flash-Native-Sparse-Attention (flash_nsa), its HFNSACore forward at the paper's
        sizes (l = 32, d = 16, l' = 64, n = 16, init_blocks = 1, local_blocks = 2, w = 512) with MEAN
        pooling for the compression (its default, and the only mode it offers without learned weights; the
        compression is well under 1 % of the forward either way), its own window kernel and its combine,
        which takes gate logits (the sigmoid of them is the gate). Its rows carry config "paper", so they
        join the course's paper row. Each stage is timed alone, then the whole forward. Its Hopper kernels
        need Triton >= 3.4 (it falls back to its Ampere kernels below that; the row says which Triton ran).

None is part of this course: pass the folders of your own checkouts (--fla holds fla/, --xl holds
native_sparse_attention/, --mdy holds flash_nsa/); the commit measured is printed (from git, or from a COMMIT file in the
folder). Nothing of theirs is copied. Timing: CUDA events, median of --reps runs, each after a 256 MB
write that flushes the L2, after --warmup untimed runs (the first ones autotune).

The CSV (--csv, appended) has the columns of build/bin/bench's CSV, one row per public forward or stage:
lesson 10, role "public", config mean or paper, window 512, tflops on the visible (query head, key)
pairs the benchmark credits lesson 10's nsa_forward with (the compressed tokens a position sees, its
selected keys, its window), so that the rows join those of `build/bin/bench --lesson 10 --csv FILE` on
(B, M, N, H, G, D, causal, config). --join FILE prints that join: the course's nsa_forward beside each
public forward, and the dense baseline when the file has it. The join needs no GPU:

  build/bin/bench --lesson 10 --csv /tmp/l10.csv
  python3 tools/bench/bench_public_nsa.py --fla .ext/fla --xl .ext/xl --csv /tmp/l10.csv --join /tmp/l10.csv

Needs PyTorch with CUDA and Triton, and einops for XunhaoLai's linear_compress (mdy666's imports of pandas
and pkg_resources, which its timed forward never needs, are stood in for when missing).
"""
import argparse
import csv
import importlib
import math
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_triton_nsa as btn  # noqa: E402  (its loaders' helpers: commit_of, shim_missing, time_ms)

B, H, G, D = 1, 64, 4, 128
WINDOW = 512
# (l, d, l', n) of the two configurations, as bench --config names them
CONFIGS = {"mean": (64, 64, 64, 16), "paper": (32, 16, 64, 16)}
CSV_HEADER = ["device", "lesson", "entry", "kernel", "role", "baseline", "B", "M", "N", "H", "G", "D", "causal",
              "window", "keep", "config", "ms", "tflops", "gbs", "peak_tflops", "peak_gbs", "frac_peak_flops",
              "frac_peak_bw", "speedup", "check"]
JOIN_KEY = ("B", "M", "N", "H", "G", "D", "causal", "config")


# ---------------------------------------------------------------- what needs no GPU

def nsa_pairs(n_tok, config, heads=H, batch=B, window=WINDOW, m_tok=None):
    """Visible (query head, key) pairs of the three branches, as lesson 10's bench entry counts them
    (tools/bench/lesson_10.cu, fused_pairs): per query position t the compressed tokens it sees, its
    selected keys (all keys up to t while there are at most n candidate blocks; else n - 1 whole blocks
    and the block of t up to t) and min(t + 1, w) window keys."""
    l, d, l_sel, n = CONFIGS[config]
    m_tok = n_tok if m_tok is None else m_tok
    nc = max(0, (n_tok - l) // d + 1)
    pairs = 0
    for t in range(n_tok - m_tok, n_tok):
        cur = t // l_sel
        slc = t + 1 if cur + 1 <= n else (n - 1) * l_sel + (t - cur * l_sel + 1)
        cmp = 0 if t < l - 1 else min((t - (l - 1)) // d + 1, nc)
        pairs += cmp + slc + min(t + 1, window)
    return pairs * batch * heads


def stage_pairs(n_tok, config, stage, heads=H, batch=B, window=WINDOW):
    """The pairs one stage is credited with: the compressed branch's, the selected branch's or the
    window's (0 for the compression and for the top-n, which the benchmark counts in bytes or not)."""
    l, d, l_sel, n = CONFIGS[config]
    nc = max(0, (n_tok - l) // d + 1)
    pairs = 0
    for t in range(n_tok):
        cur = t // l_sel
        if stage == "cmp_topn":
            pairs += 0 if t < l - 1 else min((t - (l - 1)) // d + 1, nc)
        elif stage == "selected":
            pairs += t + 1 if cur + 1 <= n else (n - 1) * l_sel + (t - cur * l_sel + 1)
        elif stage == "window":
            pairs += min(t + 1, window)
    return pairs * batch * heads


def csv_row(device, entry, config, n_tok, ms, pairs, check="-"):
    """A row of build/bin/bench's CSV for a public forward or stage (empty fields where the benchmark
    would print none: no bytes, no peaks, no speed-up)."""
    tflops = f"{pairs * 4 * D / (ms * 1e-3) / 1e12:.4f}" if pairs and ms > 0 else ""
    return {"device": device, "lesson": "10", "entry": entry, "kernel": f"{entry}_{config}", "role": "public",
            "baseline": "", "B": str(B), "M": str(n_tok), "N": str(n_tok), "H": str(H), "G": str(G), "D": str(D),
            "causal": "1", "window": str(WINDOW), "keep": "", "config": config, "ms": f"{ms:.6g}", "tflops": tflops,
            "gbs": "", "peak_tflops": "", "peak_gbs": "", "frac_peak_flops": "", "frac_peak_bw": "", "speedup": "",
            "check": check}


def write_csv(path, rows):
    """Append rows to path (the header first when the file is new or empty), as the benchmark writes."""
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_HEADER, lineterminator="\n")
        if new:
            w.writeheader()
        for r in rows:
            w.writerow(r)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def join_rows(rows):
    """For every public forward (role public, entry ending in _nsa_forward) the course's nsa_forward and
    the dense baseline (frozen_flash_bf16) on the same case: a list of dicts with N, config, the public
    entry, the three times (None where missing) and the ratios public / course and dense / course. Config
    "mean-local" and the like join only with their own kind; the dense row has no config."""
    def key(r, with_config=True):
        k = tuple(r.get(c, "") for c in JOIN_KEY[:-1])
        return k + ((r.get("config", ""),) if with_config else ())

    course = {key(r): r for r in rows if r.get("entry") == "nsa_forward" and r.get("role") == "solution"}
    dense = {key(r, False): r for r in rows if r.get("entry") == "frozen_flash_bf16"}
    out = []
    for r in rows:
        if r.get("role") != "public" or not r.get("entry", "").endswith("_nsa_forward"):
            continue
        c, d = course.get(key(r)), dense.get(key(r, False))
        ms = float(r["ms"])
        c_ms = float(c["ms"]) if c else None
        d_ms = float(d["ms"]) if d else None
        out.append({"N": int(r["N"]), "config": r["config"], "public": r["entry"], "public_ms": ms, "course_ms": c_ms,
                    "dense_ms": d_ms, "public_over_course": ms / c_ms if c_ms else None,
                    "dense_over_course": d_ms / c_ms if c_ms and d_ms else None,
                    "same_device": c is None or c.get("device", "").split(" (")[0] == r.get("device", "").split(" (")[0]})
    out.sort(key=lambda j: (j["config"], j["N"], j["public"]))
    return out


def print_join(joined, out=None):
    out = out or sys.stdout
    if not joined:
        print("join: no public forward rows (role public, entry *_nsa_forward) in the file", file=out)
        return
    print(f"{'N':>6} {'config':<7} {'public':<18} {'public ms':>10} {'course ms':>10} {'dense ms':>10} "
          f"{'public/course':>14} {'dense/course':>13}", file=out)

    def num(x, fmt):
        return format(x, fmt) if x is not None else "-"

    for j in joined:
        print(f"{j['N']:>6} {j['config']:<7} {j['public']:<18} {num(j['public_ms'], '10.3f')} "
              f"{num(j['course_ms'], '10.3f')} {num(j['dense_ms'], '10.3f')} "
              f"{num(j['public_over_course'], '13.2f') + 'x' if j['public_over_course'] else '-':>14} "
              f"{num(j['dense_over_course'], '12.2f') + 'x' if j['dense_over_course'] else '-':>13}"
              f"{'' if j['same_device'] else '  (measured on another GPU than the course row)'}", file=out)


def commit_of(path):
    """The checkout's commit: git's, else the first word of a COMMIT file in the folder, else "unknown"."""
    got = btn.commit_of(path)
    if got != "unknown":
        return got
    try:
        with open(os.path.join(path, "COMMIT")) as f:
            words = f.read().split()
        return words[0][:12] if words else "unknown"
    except OSError:
        return "unknown"


# ---------------------------------------------------------------- the public code (a GPU from here on)

def device_text():
    """The GPU as build/bin/bench's CSV names it (attn_gpu_describe)."""
    import torch
    p = torch.cuda.get_device_properties(torch.cuda.current_device())
    l2 = getattr(p, "L2_cache_size", 0)
    return f"{p.name} (sm_{p.major}{p.minor}, {p.multi_processor_count} SMs, {l2 / 1e6:.0f} MB L2)"


def load_fla(root):
    """fla's parallel_nsa and its Triton window kernel, without running fla/__init__.py (bench_triton_nsa's
    bare packages); returns (parallel_nsa, window(q, k, v, w), the window's name)."""
    btn.load_fla(root)  # registers fla and fla.ops bare, shims what the forward never calls
    parallel = importlib.import_module("fla.ops.nsa.parallel")
    attn = importlib.import_module("fla.ops.attn.parallel")

    def fla_window(q, k, v, w):
        return attn.parallel_attn(q, k, v, window_size=w)

    if parallel.flash_attn_func is not None:
        fa = parallel.flash_attn_func

        def window(q, k, v, w):
            return fa(q, k, v, causal=True, window_size=(w - 1, 0))
        return parallel.parallel_nsa, window, "flash_attn_func"

    def flash_attn_func(q, k, v, causal=True, window_size=(-1, -1)):
        # what parallel_nsa asks of flash-attn: causal, keys t - window_size[0] .. t
        assert causal and window_size[1] == 0, "parallel_nsa's window call: causal, no keys after t"
        return fla_window(q, k, v, window_size[0] + 1)

    parallel.flash_attn_func = flash_attn_func
    return parallel.parallel_nsa, fla_window, "fla parallel_attn"


def load_xl(root):
    """XunhaoLai's linear_compress, compressed_attention and topk_sparse_attention (bare packages, as
    bench_triton_nsa loads its selected-attention kernel)."""
    import torch  # noqa: F401
    import types
    if not getattr(sys.modules.get("einops") or importlib.import_module("einops"), "__file__", None):
        raise ImportError("XunhaoLai's linear_compress needs einops (rearrange, einsum): install it")
    sys.path.insert(0, root)
    name = "native_sparse_attention"
    for pkg, sub in ((name, name), (name + ".ops", name + "/ops"), (name + ".ops.triton", name + "/ops/triton")):
        if pkg not in sys.modules:
            mod = types.ModuleType(pkg)
            mod.__path__ = [os.path.join(root, sub)]
            sys.modules[pkg] = mod
    lin = importlib.import_module(name + ".ops.triton.linear_compress")
    cmp = importlib.import_module(name + ".ops.triton.compressed_attention")
    topk = importlib.import_module(name + ".ops.triton.topk_sparse_attention")
    return lin.linear_compress, cmp.compressed_attention, topk.topk_sparse_attention


def version_tuple(text):
    """"3.4.0", "3.5.0+git1a2b" -> (3, 4, 0), (3, 5, 0): the leading numbers of a version, for comparisons."""
    out = []
    for part in text.split("+")[0].split("."):
        digits = re.match(r"\d*", part).group(0)
        if not digits:
            break
        out.append(int(digits))
    return tuple(out)


def load_mdy(root):
    """mdy666's flash_nsa package: (HFNSACore, NSAConfig, the stage functions). Its hf_level module imports
    pandas only to print its own timings, and its utils pkg_resources only to compare Triton's version:
    when they are missing, small stand-ins take their place."""
    import torch  # noqa: F401
    btn.shim_missing("pandas", {"Series": dict})
    btn.shim_missing("pkg_resources", {"parse_version": version_tuple})
    sys.path.insert(0, root)
    flash_nsa = importlib.import_module("flash_nsa")
    combine = importlib.import_module("flash_nsa.ops.combine")
    return flash_nsa, combine.fused_sigmoid_combine


def mdy_stages(mdy, q, k, v, gates):
    """mdy666's forward as callables of no argument: (compress, cmp_attention, topn, selected, window,
    combine, whole), the stages in the order its HFNSACore.forward runs them."""
    import torch
    flash_nsa, fused_sigmoid_combine = mdy
    l, d, l_sel, n = CONFIGS["paper"]
    config = flash_nsa.NSAConfig(head_dim=D, num_heads=H, num_kv_heads=G, kernel_size=l, stride=d,
                                 cmp_k_method="mean", cmp_v_method="mean", block_size=l_sel, top_n=n,
                                 num_init_blocks=1, num_local_blocks=2, window_size=WINDOW)
    core = flash_nsa.HFNSACore(config).to(device=q.device, dtype=q.dtype)
    n_tok = q.shape[1]
    q2, k2, v2 = q.view(-1, H, D), k.view(-1, G, D), v.view(-1, G, D)
    cu = torch.tensor([0, n_tok], dtype=torch.int32, device=q.device)
    # its combine applies a sigmoid to [t, H, 3] logits: the logits of the random gates
    logits = torch.logit(torch.stack([g.view(-1, H) for g in gates], dim=-1).clamp(1e-4, 1 - 1e-4)).to(q.dtype)
    scale = core.sm_scale
    state = {}

    def compress():
        state["kc"], state["vc"] = core.compress_k(k2), core.compress_v(v2)

    def cmp_attention():
        state["o_cmp"], state["lse"] = flash_nsa.compress_attn(q2, state["kc"], state["vc"], sm_scale=scale)

    def topn():
        state["idx"], _ = flash_nsa.slc_topk_indices(q2, state["kc"], state["lse"], sm_scale=scale,
                                                    maybe_efficient_version=True, scale_slc_p=True)

    def selected():
        state["o_slc"] = flash_nsa.select_attn(q2, k2, v2, state["idx"], sm_scale=scale)

    def win():
        state["o_swa"] = flash_nsa.swa_varlen_func(q2, k2, v2, scale)

    def comb():
        return fused_sigmoid_combine(state["o_cmp"], state["o_slc"], state["o_swa"], logits)

    def whole():
        return core(q2, k2, v2, logits, cu)

    return compress, cmp_attention, topn, selected, win, comb, whole


def run_fla(parallel_nsa, q, k, v, gates):
    l, d, l_sel, n = CONFIGS["mean"]
    return parallel_nsa(q, k, v, *gates, block_counts=n, block_size=l_sel, window_size=WINDOW)


def xl_stages(fns, window, q, k, v, gates, w_k, w_v, pe):
    """The paper-mode forward in XunhaoLai's functions, as callables of no argument: (compress,
    cmp_topn, selected, window, whole). Each stage reads what the one before it left in `state`."""
    import torch
    linear_compress, compressed_attention, topk_sparse_attention = fns
    l, d, l_sel, n = CONFIGS["paper"]
    n_tok = q.shape[1]
    q2, k2, v2 = q.view(-1, H, D), k.view(-1, G, D), v.view(-1, G, D)
    cu = torch.tensor([0, n_tok], dtype=torch.int32, device=q.device)
    state = {}

    def compress():
        state["kc"], state["cu_c"] = linear_compress(k2, w_k, cu, l, d, pe)
        state["vc"], _ = linear_compress(v2, w_v, cu, l, d, None)

    def cmp_topn():
        cu_c = state["cu_c"]
        nc = int((cu_c[1:] - cu_c[:-1]).max().item()) if "nc" not in state else state["nc"]
        state["nc"] = nc
        state["o_cmp"], state["idx"] = compressed_attention(q2, state["kc"], state["vc"], l, d, l_sel, n, cu, cu_c,
                                                            n_tok, nc, None, 1, 2)

    def selected():
        state["o_slc"] = topk_sparse_attention(q2, k2, v2, state["idx"], l_sel, cu, None)

    def win():
        state["o_swa"] = window(q, k, v, WINDOW)

    def whole():
        compress()
        cmp_topn()
        selected()
        win()
        o = state["o_cmp"].view(q.shape) * gates[0].unsqueeze(-1)
        o = torch.addcmul(o, state["o_slc"].view(q.shape), gates[1].unsqueeze(-1))
        return torch.addcmul(o, state["o_swa"].view(q.shape), gates[2].unsqueeze(-1))

    return compress, cmp_topn, selected, win, whole


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fla", help="a checkout of fla-org/flash-linear-attention (the folder that holds fla/)")
    ap.add_argument("--xl", help="a checkout of XunhaoLai/native-sparse-attention-triton (holds native_sparse_attention/)")
    ap.add_argument("--mdy", help="a checkout of mdy666/Scalable-Flash-Native-Sparse-Attention (holds flash_nsa/)")
    ap.add_argument("--N", default="16384,65536", help="comma-separated sequence lengths (default 16384,65536)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--csv", help="append the rows to this CSV (build/bin/bench's columns)")
    ap.add_argument("--join", metavar="CSV", help="print the course's nsa_forward rows of this CSV beside the public "
                                                  "ones (after timing, if --fla, --xl or --mdy is given; no GPU "
                                                  "needed)")
    args = ap.parse_args(argv)
    if not args.fla and not args.xl and not args.mdy and not args.join:
        ap.error("give --fla, --xl and/or --mdy (and/or --join)")
    if args.fla or args.xl or args.mdy:
        status = measure(args)
        if status:
            return status
    if args.join:
        print_join(join_rows(read_csv(args.join)))
    return 0


def measure(args):
    import torch
    if not torch.cuda.is_available():
        print("bench_public_nsa: no CUDA device", file=sys.stderr)
        return 77
    dev = device_text()
    xl = load_xl(args.xl) if args.xl else None  # first: fla's loader stands in for a missing einops
    fla = load_fla(args.fla) if args.fla else None
    mdy = load_mdy(args.mdy) if args.mdy else None
    window, window_name = (fla[1], fla[2]) if fla else (None, None)
    if xl and not window:
        try:
            from flash_attn import flash_attn_func
        except ImportError:
            print("bench_public_nsa: XunhaoLai's forward needs a window branch: give --fla (its Triton window) or "
                  "install flash-attn", file=sys.stderr)
            return 2

        def window(q, k, v, w):
            return flash_attn_func(q, k, v, causal=True, window_size=(w - 1, 0))
        window_name = "flash_attn_func"
    names = [f"fla at {commit_of(args.fla)}" if fla else None, f"xl at {commit_of(args.xl)}" if xl else None,
             f"mdy at {commit_of(args.mdy)}" if mdy else None]
    print(f"{dev}; torch {torch.__version__}; triton {importlib.import_module('triton').__version__}; "
          + ", ".join(x for x in names if x) + f"; window branch: {window_name}")
    print(f"shape: B={B} H={H} G={G} D={D}, bf16, causal, M = N, w = {WINDOW}, random gates; median of {args.reps} "
          f"runs after {args.warmup} warm-up, L2 flushed before each")
    rows = []
    gen = torch.Generator(device="cuda")
    for n_tok in [int(x) for x in args.N.split(",")]:
        gen.manual_seed(args.seed)
        q = torch.randn(B, n_tok, H, D, device="cuda", dtype=torch.bfloat16, generator=gen)
        k = torch.randn(B, n_tok, G, D, device="cuda", dtype=torch.bfloat16, generator=gen)
        v = torch.randn(B, n_tok, G, D, device="cuda", dtype=torch.bfloat16, generator=gen)
        gates = [torch.rand(B, n_tok, H, device="cuda", generator=gen) for _ in range(3)]
        with torch.no_grad():
            if fla:
                ms = btn.time_ms(lambda: run_fla(fla[0], q, k, v, gates), args.warmup, args.reps)
                o = run_fla(fla[0], q, k, v, gates)
                check = "finite" if torch.isfinite(o).all().item() else "NONFINITE"
                pairs = nsa_pairs(n_tok, "mean")
                print(f"fla  {n_tok:7d} mean   parallel_nsa with its window  {ms:9.3f} ms  "
                      f"{pairs * 4 * D / ms / 1e9:7.2f} TFLOP/s  ({check})")
                rows.append(csv_row(dev, "fla_nsa_forward", "mean", n_tok, ms, pairs, check))
                del o
            if xl:
                l, d, l_sel, n = CONFIGS["paper"]
                scale = 1.0 / math.sqrt(l * D)  # the maps keep k_cmp's spread near a key's, as the bench's
                w_k = (torch.randn(G, l * D, D, device="cuda", generator=gen) * scale).to(torch.bfloat16)
                w_v = (torch.randn(G, l * D, D, device="cuda", generator=gen) * scale).to(torch.bfloat16)
                pe = (torch.randn(G, l, D, device="cuda", generator=gen) * 0.5).to(torch.bfloat16)
                stages = xl_stages(xl, window, q, k, v, gates, w_k, w_v, pe)
                stages[-1]()  # every stage's inputs in place
                total = 0.0
                for name, fn in zip(("compress", "cmp_topn", "selected", "window"), stages[:4]):
                    ms = btn.time_ms(fn, args.warmup, args.reps)
                    total += ms
                    pairs = stage_pairs(n_tok, "paper", name)
                    print(f"xl   {n_tok:7d} paper  {name:<28s} {ms:9.3f} ms")
                    rows.append(csv_row(dev, f"xl_{name}", "paper", n_tok, ms, pairs))
                ms = btn.time_ms(stages[-1], args.warmup, args.reps)
                o = stages[-1]()
                check = "finite" if torch.isfinite(o).all().item() else "NONFINITE"
                pairs = nsa_pairs(n_tok, "paper")
                print(f"xl   {n_tok:7d} paper  the whole forward             {ms:9.3f} ms  "
                      f"{pairs * 4 * D / ms / 1e9:7.2f} TFLOP/s  (stages alone: {total:.3f} ms; {check})")
                rows.append(csv_row(dev, "xl_nsa_forward", "paper", n_tok, ms, pairs, check))
                del o, stages
            if mdy:
                stages = mdy_stages(mdy, q, k, v, gates)
                stages[-1]()  # autotunes, and sets the sequence lengths its stages read
                for fn in stages[:-1]:
                    fn()  # every stage's inputs in place
                total = 0.0
                for name, fn, credit in zip(("compress", "cmp_attention", "topn", "selected", "window", "combine"),
                                            stages[:6], ("compress", "cmp_topn", "topn", "selected", "window", "")):
                    ms = btn.time_ms(fn, args.warmup, args.reps)
                    total += ms
                    pairs = stage_pairs(n_tok, "paper", credit) if credit else 0
                    print(f"mdy  {n_tok:7d} paper  {name:<28s} {ms:9.3f} ms")
                    rows.append(csv_row(dev, f"mdy_{name}", "paper", n_tok, ms, pairs))
                ms = btn.time_ms(stages[-1], args.warmup, args.reps)
                o = stages[-1]()
                check = "finite" if torch.isfinite(o).all().item() else "NONFINITE"
                pairs = nsa_pairs(n_tok, "paper")
                print(f"mdy  {n_tok:7d} paper  the whole forward (mean)      {ms:9.3f} ms  "
                      f"{pairs * 4 * D / ms / 1e9:7.2f} TFLOP/s  (stages alone: {total:.3f} ms; {check})")
                rows.append(csv_row(dev, "mdy_nsa_forward", "paper", n_tok, ms, pairs, check))
                del o, stages
        del q, k, v, gates
        torch.cuda.empty_cache()
    if args.csv:
        write_csv(args.csv, rows)
        print(f"appended {len(rows)} rows to {args.csv}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
