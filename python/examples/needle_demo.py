#!/usr/bin/env python3
"""./course demo: long-context retrieval, a needle planted far back, through dense attention, the
sliding window alone and NSA (lesson 10's forward, mean-pool and paper configurations).

    python3 python/examples/needle_demo.py                 # the GPU (N = 65536) when PyTorch sees one, else the CPU (N = 4096)
    python3 python/examples/needle_demo.py --device cpu --n 2048

The task: random q, k, v, except for one selection block of 64 keys (the needle) far back in the
context, whose keys point along a direction u and whose values carry a square wave; the last 64
queries (the needle rows) point along u too, so that dense attention puts nearly all their weight on
the needle and returns the square wave. The table says, per method, whether its output on the needle
rows matches dense (relative error ||o - o_dense|| / ||o_dense|| over those rows and every head), whether
NSA's selection picked the needle block (from the block lists the forward returns), and how long
each call took. For NSA each branch's output is shown on its own (the forward run with one gate 1 and
the others 0): the selected branch is the one that retrieves; in a trained model the gates choose.
The figure shows one needle row's weights over the keys per method, the output it gets back, and
the errors.
"""
import argparse
import os
import re
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))

np = nc = None  # imported by main() after the arguments, so that --help needs neither

ROWS = 64  # the needle rows: the last ROWS positions
L_SEL = 64  # both configurations' selection block: the needle is one such block


def make_problem(N, H, D, start, seed):
    """q [1, N, H, D], k, v [1, N, 1, D] (fp32) with the needle at keys start .. start + 63, and the square wave."""
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((1, N, H, D), dtype=np.float32)
    k = rng.standard_normal((1, N, 1, D), dtype=np.float32)
    v = rng.standard_normal((1, N, 1, D), dtype=np.float32)
    u = rng.standard_normal(D)
    u /= np.linalg.norm(u)
    # q = a u + noise and k = a u + noise give a scaled score of about a^2 / sqrt(D) = 16 on the needle,
    # against scores of spread sqrt(3) elsewhere: dense attention's weight is nearly all on the needle
    amp = np.sqrt(16.0 * np.sqrt(D))
    k[0, start:start + L_SEL, 0] = amp * u + rng.standard_normal((L_SEL, D))
    wave = np.where((np.arange(D) // 8) % 2 == 0, 1.0, -1.0)
    v[0, start:start + L_SEL, 0] = wave + 0.1 * rng.standard_normal((L_SEL, D))
    q[0, N - ROWS:] = amp * u + rng.standard_normal((ROWS, H, D))
    return q, k, v, wave.astype(np.float32)


class CpuPath:
    """The C parts (nc.cpu), fp32 NumPy arrays."""
    name = "C path on the CPU"
    tag = "cpu"

    def __init__(self):
        from nsa_course import cpu
        self.m = cpu

    def put(self, x):
        return x

    def get(self, x):
        return np.asarray(x, dtype=np.float32) if x.dtype != np.int32 else x

    def rows(self, x, axis):  # the last ROWS entries along `axis`, as a contiguous array
        return np.ascontiguousarray(np.take(x, range(x.shape[axis] - ROWS, x.shape[axis]), axis=axis))

    def time(self, fn, reps):
        start = time.perf_counter()
        out = fn()
        return out, time.perf_counter() - start


class CudaPath:
    """The CUDA parts (nc.cuda) on bf16 CUDA tensors, timed as the median of a few runs after a warm-up."""
    tag = "gpu"

    def __init__(self):
        import torch
        from nsa_course import cuda
        self.torch, self.m = torch, cuda
        gpu = torch.cuda.get_device_name()
        self.name = f"CUDA path on {gpu}"
        short = re.search(r"[A-Z]\d{2,4}", gpu)
        self.tag = short.group(0).lower() if short else "gpu"

    def put(self, x):
        t = self.torch.from_numpy(x).cuda()
        return t.bfloat16() if x.dtype == np.float32 and x.ndim == 4 else t

    def get(self, x):
        return x.float().cpu().numpy() if x.dtype != self.torch.int32 else x.cpu().numpy()

    def rows(self, x, axis):
        return x.narrow(axis, x.shape[axis] - ROWS, ROWS).contiguous()

    def time(self, fn, reps):
        fn()  # warm-up: the first call loads the kernels
        times = []
        for _ in range(reps):
            self.torch.cuda.synchronize()
            start = time.perf_counter()
            out = fn()
            self.torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        return out, statistics.median(times)


def run(args):
    path = CudaPath() if args.device == "cuda" else CpuPath()
    N, H, D, w = args.n, args.heads, args.d, 512
    # the needle must end before the window of the first needle row (t = N - ROWS) begins, which also keeps
    # it out of that row's forced blocks (its own and the one before)
    latest = (N - ROWS - w - L_SEL + 1) // L_SEL * L_SEL
    if latest < L_SEL:
        sys.exit(f"--n {N}: too short for a needle outside the window (at least {2 * L_SEL + w + ROWS - 1} keys)")
    start = min(latest, L_SEL * max(1, int(round(args.needle_at * N / L_SEL))))
    q, k, v, wave = make_problem(N, H, D, start, args.seed)
    needle = start // L_SEL
    qd, kd, vd = path.put(q), path.put(k), path.put(v)
    m, reps = path.m, args.reps
    print(f"Needle retrieval: N = {N} keys and queries (prefill), H = {H} heads sharing one kv head, D = {D}; the "
          f"needle is selection block {needle} (keys {start}..{start + L_SEL - 1}), the needle rows are the last {ROWS} "
          f"positions ({N - ROWS}..{N - 1}); window w = {w}.")
    print(f"{path.name}" + ("" if args.device == "cuda" else
                            " (no GPU used: " + (args.why_cpu or "--device cpu") + "); the C parts are plain loops on one "
                            "core: their times compare the work each method does, not the speed of a GPU"))
    results, figure = [], {}
    (o_dense, lse_dense), t = path.time(lambda: m.flash_attention(qd, kd, vd, causal=True), reps)
    dense = path.get(path.rows(o_dense, 1))[0]  # [ROWS, H, D]: only the needle rows come to the host

    def rel(o):
        return float(np.linalg.norm(path.get(path.rows(o, 1))[0] - dense) / np.linalg.norm(dense))
    results.append(("dense causal (lesson 03)", t, None, None))
    (o_win, lse_win), t = path.time(lambda: m.window_attention(qd, kd, vd, w), reps)
    results.append((f"sliding window alone, w = {w} (lesson 05)", t, rel(o_win), None))
    figure["outputs"] = {"dense": dense[-1, 0], "window": path.get(path.rows(o_win, 1))[0, -1, 0]}
    # one needle row's weights over the keys: dense and window from their lse, NSA's from the helpers
    last = N - 1
    # the values the kernels saw (bf16 on the CUDA path)
    q_last, k_seen = path.get(path.rows(qd, 1))[0, -1, 0], path.get(kd)[0, :, 0]
    scores = (q_last.astype(np.float64) @ k_seen.astype(np.float64).T) * D ** -0.5
    keys = np.arange(N)
    figure["weights"] = {"dense": np.exp(scores - path.get(lse_dense)[0, 0, -1]) * (keys <= last)}
    figure["weights"]["window"] = np.exp(scores - path.get(lse_win)[0, 0, -1]) * (keys > last - w)
    for cfg_name, p in (("mean-pool", nc.NSAParams.mean_pool()), ("paper", nc.NSAParams.paper())):
        gates = [np.zeros((1, N, H), np.float32) for _ in range(3)]
        outs = []
        for b in range(3):  # one branch at a time: gate b open, the others closed; the first call is timed
            g = [path.put(x) for x in gates]
            g[b] = path.put(np.ones((1, N, H), np.float32))
            call = lambda: m.nsa_forward(qd, kd, vd, p, *g, return_attn_weights=True)  # noqa: E731
            if b == 0:
                (o, wts), t = path.time(call, reps)
            else:
                o, wts = call()
            outs.append(o)
        lists = path.get(wts.block_indices)[0, N - ROWS:]  # [ROWS, L, n]
        picked = int((lists == needle).any(-1).all(-1).sum())
        label = f"NSA {cfg_name} (lesson 10)"
        results.append((label + ": selected branch", t, rel(outs[1]), picked))
        results.append((label + ": compressed branch", None, rel(outs[0]), None))
        results.append((label + ": window branch", None, rel(outs[2]), None))
        if cfg_name == "mean-pool":
            figure["outputs"]["NSA selected"] = path.get(path.rows(outs[1], 1))[0, -1, 0]
            # the weights of the needle rows only: the helpers rebuild [M, N] for the M queries they are given
            sub = dict(lse_cmp=path.rows(wts.lse_cmp, 2), lse_slc=path.rows(wts.lse_slc, 2),
                       block_indices=path.rows(wts.block_indices, 1))
            qr = path.rows(qd, 1)
            cmp = m.nsa_weights("cmp", 0, 0, qr, kd, p, **sub)
            figure["weights"]["NSA compressed (spread over keys)"] = path.get(m.cmp_weights_to_keys(cmp, p, N))[-1]
            figure["weights"]["NSA selected"] = path.get(m.nsa_weights("slc", 0, 0, qr, kd, p, **sub))[-1]
    figure["outputs"]["needle values (square wave)"] = wave
    print_table(results)
    t0 = N - ROWS
    free = (t0 // L_SEL + 1) - 3  # a needle row's candidate blocks that are not forced
    if free <= 13:
        print(f"At N = {N} a needle row has {free + 3} candidate blocks and a list holds n = 16: every block is on every "
              f"list, so the selection cannot miss the needle here (a longer --n makes it choose).")
    else:
        print(f"Each NSA list holds n = 16 of a needle row's {free + 3} candidate blocks, 3 of them forced (block 0, the "
              f"row's own and the one before): a given other block is on a list by chance in about {13 / free:.0%} of "
              f"rows.")
    if args.figure:
        draw(args.figure, figure, results, path.name, N, start)


def print_table(results):
    print()
    print(f"{'method':52s} {'time':>11s}  {'rel. error vs dense':>19s}  needle block selected")
    print(f"{'':52s} {'':>11s}  {'(needle rows)':>19s}  (needle rows)")
    for name, t, err, picked in results:
        ts = f"{t * 1e3:8.1f} ms" if t is not None else ""
        es = "(reference)" if err is None else f"{err:.3g}"
        ps = f"{picked}/{ROWS} rows" if picked is not None else ""
        print(f"{name:52s} {ts:>11s}  {es:>19s}  {ps}")
    print()
    print("A relative error near 1 means the method's output on those rows has nothing of the needle's values; "
          "near 0, that it retrieved them as dense attention does.")


def draw(path, fig_data, results, where, N, start):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"matplotlib is not installed for {sys.executable}: no figure (Debian: apt-get install python3-matplotlib)")
        return
    weights = fig_data["weights"]
    fig = plt.figure(figsize=(13, 8.5))
    grid = fig.add_gridspec(len(weights), 2, width_ratios=(1.6, 1), hspace=0.45, wspace=0.22)
    for row, (name, wrow) in enumerate(weights.items()):
        ax = fig.add_subplot(grid[row, 0])
        ax.axvspan(start, start + L_SEL, color="tab:red", alpha=0.15, lw=0)
        ax.plot(np.arange(N), wrow, lw=0.8, color="tab:blue")
        ax.set_yscale("symlog", linthresh=1e-6)
        ax.set_ylim(0, 1)
        ax.set_xlim(0, N)
        mass = float(wrow[start:start + L_SEL].sum())
        ax.set_title(f"{name}: weight on the needle {mass:.3f}", fontsize=9, loc="left")
        if row == len(weights) - 1:
            ax.set_xlabel("key position (the needle shaded)")
    ax = fig.add_subplot(grid[:len(weights) // 2, 1])
    for name, vec in fig_data["outputs"].items():
        style = dict(color="black", lw=2.5, alpha=0.35) if name.startswith("needle") else dict(lw=1.1)
        ax.plot(vec, label=name, **style)
    ax.set_title("output of the last position, head 0", fontsize=9, loc="left")
    ax.set_xlabel("dimension")
    ax.legend(fontsize=7, loc="lower right")
    ax = fig.add_subplot(grid[len(weights) // 2:, 1])
    rows = [(n, e) for n, t, e, p in results if e is not None]
    names = [n.replace(" (lesson 10)", "").replace(" (lesson 05)", "").replace("sliding window alone", "window")
             for n, _ in rows]
    colors = ["tab:green" if "selected" in n else "tab:orange" if "compressed" in n else "tab:gray" for n, _ in rows]
    ax.barh(range(len(rows)), [max(e, 1e-8) for _, e in rows], color=colors)
    for i, (_, e) in enumerate(rows):
        ax.text(max(e, 1e-8) * 1.3, i, f"{e:.2g}", va="center", fontsize=7)
    ax.set_yticks(range(len(rows)), names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlim(1e-8, 20)
    ax.set_xlabel("relative error vs dense on the needle rows")
    fig.suptitle(f"Needle retrieval at N = {N}: dense, window, NSA ({where})", fontsize=11)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    shown = os.path.abspath(path)
    print(f"figure: {os.path.relpath(shown, ROOT) if shown.startswith(ROOT + os.sep) else shown}")


def main(argv=None):
    ap = argparse.ArgumentParser(description="Long-context retrieval: dense attention, the sliding window and NSA "
                                             "on a needle planted far back (./course demo).")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                    help="cuda: the CUDA path through PyTorch; cpu: the C path; auto (default): cuda when PyTorch "
                         "is installed and sees a GPU")
    ap.add_argument("--n", type=int, default=None, help="keys and queries N (default 65536 on the GPU, 4096 on the CPU)")
    ap.add_argument("--heads", type=int, default=None, help="query heads H (default 16 on the GPU, 4 on the CPU)")
    ap.add_argument("--d", type=int, default=None, help="head dimension D (default 128 on the GPU, 64 on the CPU)")
    ap.add_argument("--needle-at", type=float, default=0.1, help="where the needle sits, a fraction of N (default 0.1)")
    ap.add_argument("--reps", type=int, default=3, help="timed runs on the GPU, the median reported (default 3)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--figure", default=None, help="where the figure goes (default figures/demo_needle_<cpu or gpu>_n<N>.png)")
    ap.add_argument("--no-figure", action="store_true", help="print the table only")
    args = ap.parse_args(argv)
    global np, nc
    try:
        import numpy as np
    except ImportError:
        print(f"numpy is not installed for {sys.executable}: the demo needs it (Debian: apt-get install python3-numpy)")
        return 77
    import nsa_course as nc
    args.why_cpu = None
    if args.device in ("auto", "cuda"):
        try:
            import torch
            have = torch.cuda.is_available()
            args.why_cpu = None if have else "PyTorch sees no CUDA device"
        except ImportError:
            have, args.why_cpu = False, "PyTorch is not installed, and the CUDA path goes through it"
        if args.device == "cuda" and not have:
            sys.exit(f"--device cuda: {args.why_cpu}")
        args.device = "cuda" if have else "cpu"
    gpu = args.device == "cuda"
    args.n = args.n or (65536 if gpu else 4096)
    args.heads = args.heads or (16 if gpu else 4)
    args.d = args.d or (128 if gpu else 64)
    if args.no_figure:
        args.figure = None
    elif args.figure is None:
        tag = CudaPath().tag if gpu else "cpu"
        args.figure = os.path.join(ROOT, "figures", f"demo_needle_{tag}_n{args.n}.png")
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
