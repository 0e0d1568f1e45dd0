#!/usr/bin/env python3
"""Plot the CSV written by the benchmark (build/bin/bench --csv FILE) as PNG figures.

    tools/bench/plot.py figures/bench_h100.csv --out figures/
    tools/bench/plot.py a.csv b.csv --out figures/                 one set of figures per CSV
    tools/bench/plot.py a.csv b.csv --prefix compare --out /tmp/   all rows in one set (e.g. two devices)
    tools/bench/plot.py x.csv --prefix figures/bench_flash_h200    explicit names: figures/bench_flash_h200_*.png
    tools/bench/readme_figures.sh h200                       every CSV and figure of the README, *_h200

For each set, with <prefix> the CSV's name without extension (or --prefix):
    <prefix>_tflops.png    TFLOP/s vs N, one line per (kernel, D, causal), and the measured cuBLAS
                           bf16 GEMM peak as a dashed line when the CSV has it
    <prefix>_time.png      time per call (ms, log scale) vs N
    <prefix>_fraction.png  TFLOP/s as a fraction of that peak vs N (needs the peak in the CSV)
    tools/bench/plot.py --vs-keep figures/bench_sparsity_h100.csv --out figures/
                           <prefix>_keep.png: time vs the share of keys / key blocks kept, one
                           line per kernel with a _k<percent> suffix (lesson 06's mask_bf16 and
                           blocks_bf16), each other kernel (dense) as a flat line; one panel per N
    tools/bench/plot.py --nsa figures/bench_nsa_h200.csv --out figures/
                           <prefix>_time.png: the NSA stages of `build/bin/bench --suite nsa`
                           (compression, compressed attention, scores + top-n, selected attention and its
                           floor, the sliding window, dense flash) vs N, one panel per configuration, with
                           the bars at N = 65536 as markers; rows without a configuration (dense, window)
                           are drawn in every panel
    tools/bench/plot.py --fused figures/bench_fused_h200.csv --out figures/
                           <prefix>_time.png: lesson 10 (`build/bin/bench --lesson 10`): the fused forward,
                           the forward returning the weights, each of its three launches timed alone and
                           their sum, and dense causal flash vs N, one panel per configuration; the
                           forward's speed-up over dense written at each point, the bar at N = 65536 as a
                           marker
    tools/bench/plot.py --decode figures/bench_decode_h200.csv --out figures/
                           <prefix>_time.png: lesson 11 (`build/bin/bench --lesson 11 --graph`): one column
                           per batch B; time per decoding step (us) vs the cache's length, GB/s on the bytes
                           each kernel must read beside the measured copy bandwidth, and the NSA decode's
                           speed-up over the dense decode beside the NSA paper's expected ratio of bytes;
                           plain launches solid, CUDA graph replays (rows *_graph) dashed
N is on a log2 axis; a CSV with a single N gives bar charts instead. When other sizes (B, M, H, G)
vary within the CSV, they are added to the series' labels so that no two series share a name.
Needs matplotlib (Debian/Ubuntu: sudo apt-get install python3-matplotlib).
"""
import argparse
import csv
import os
import re
import sys

try:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator, PercentFormatter
except ImportError:
    sys.exit("plot.py: matplotlib is missing (Debian/Ubuntu: sudo apt-get install python3-matplotlib)")

INT_COLUMNS = ("B", "M", "N", "H", "G", "D", "causal")
FLOAT_COLUMNS = ("ms", "tflops", "gbs", "peak_tflops", "peak_gbs", "frac_peak_flops", "frac_peak_bw")
DPI = 150
KERNEL_ORDER = ["naive_f32", "online_f32", "flash_bf16"]


def read_rows(path):
    """The CSV's rows as dicts with numbers converted; an empty field (no peak measured) is None."""
    rows = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("device", "kernel") + INT_COLUMNS + FLOAT_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            sys.exit(f"plot.py: {path}: not a bench CSV (missing columns: {', '.join(missing)})")
        for line, r in enumerate(reader, start=2):
            try:
                for c in INT_COLUMNS:
                    r[c] = int(r[c])
                for c in FLOAT_COLUMNS:
                    r[c] = float(r[c]) if r[c] not in ("", None) else None
            except ValueError as e:
                sys.exit(f"plot.py: {path}, line {line}: {e}")
            rows.append(r)
    return rows


def size_text(n):
    """1024 -> '1k', 65536 -> '64k', 1000 -> '1000'."""
    return f"{n // 1024}k" if n >= 1024 and n % 1024 == 0 else str(n)


def series_of(rows):
    """Group rows into series: {label: [rows sorted by N]}. The label names the kernel, D and causal,
    plus every other size that varies in these rows (a series must hold one point per N)."""
    varying = [c for c in ("B", "H", "G") if len({r[c] for r in rows}) > 1]
    label_m = any(r["M"] != r["N"] for r in rows)  # decoding (M = 1) or a mix: say so in the label
    several_devices = len({r["device"] for r in rows}) > 1
    groups = {}
    for r in rows:
        parts = [r["kernel"], f"D={r['D']}", "causal" if r["causal"] else "full"]
        parts += [f"{c}={r[c]}" for c in varying]
        if label_m:
            parts.append("M=N" if r["M"] == r["N"] else f"M={r['M']}")
        if several_devices:
            parts.append(short_device(r["device"]))
        groups.setdefault(", ".join(parts), {})[r["N"]] = r  # a repeated point: the last one wins
    def order(label):  # the course's order (naive, online, flash), then the rest by name
        kernel = label.split(",")[0]
        return (KERNEL_ORDER.index(kernel) if kernel in KERNEL_ORDER else len(KERNEL_ORDER), label)

    return {label: [groups[label][n] for n in sorted(groups[label])] for label in sorted(groups, key=order)}


def short_device(device):
    """'NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, 50 MB L2)' -> 'NVIDIA H100 80GB HBM3'."""
    return device.split(" (")[0]


def title_for(rows, what, user_title):
    devices = []
    for r in rows:
        if r["device"] not in devices:
            devices.append(r["device"])
    base = user_title or " vs ".join(short_device(d) if len(devices) > 1 else d for d in devices)
    return f"{what}\n{base}"


def peak_tflops_of(rows):
    """{device: measured bf16 GEMM peak} for the devices whose rows carry one."""
    peaks = {}
    for r in rows:
        if r["peak_tflops"]:
            peaks.setdefault(r["device"], r["peak_tflops"])
    return peaks


def setup_n_axis(ax, rows):
    ns = sorted({r["N"] for r in rows})
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(ns))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([size_text(n) for n in ns])
    ax.set_xlim(ns[0] / 1.3, ns[-1] * 1.3)
    ax.set_xlabel("N (keys per sequence; queries M = N unless labelled)")


def plot_figure(rows, value, ylabel, what, path, args, log_y=False, peak_lines=None, percent=False):
    """One figure: `value(row)` vs N per series, or bars when the rows hold a single N."""
    series = series_of(rows)
    fig, ax = plt.subplots(figsize=(8, 5.2))
    single_n = len({r["N"] for r in rows}) == 1
    if single_n:
        labels = list(series)
        heights = [value(pts[0]) for pts in series.values()]
        colors = [f"C{i % 10}" for i in range(len(labels))]
        bars = ax.bar(range(len(labels)), heights, color=colors)
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=9)
        for b, h in zip(bars, heights):
            text = f"{100 * h:.1f}%" if percent else f"{h:.3g}"
            ax.annotate(text, (b.get_x() + b.get_width() / 2, h), ha="center", va="bottom", fontsize=9)
        ax.set_xlabel(f"N = {size_text(rows[0]['N'])}")
    else:
        for i, (label, pts) in enumerate(series.items()):
            ax.plot([p["N"] for p in pts], [value(p) for p in pts], marker="o", color=f"C{i % 10}", label=label)
        setup_n_axis(ax, rows)
    for device, peak in (peak_lines or {}).items():
        label = "cuBLAS bf16 GEMM peak"
        if len(peak_lines) > 1:
            label += f" ({short_device(device)})"
        ax.axhline(peak, linestyle="--", color="0.35", linewidth=1.2, label=f"{label}: {peak:.0f} TFLOP/s")
    if log_y:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)
    if percent:
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    if peak_lines:
        # leave room above the peak line for its label
        ax.set_ylim(top=max(ax.get_ylim()[1], 1.08 * max(peak_lines.values())))
    ax.set_ylabel(ylabel)
    ax.set_title(title_for(rows, what, args.title), fontsize=11)
    ax.grid(True, which="major", alpha=0.3)
    if not single_n or peak_lines:
        ax.legend(fontsize=9, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    print(path)


KEEP_SUFFIX = re.compile(r"^(.*)_k(\d+)$")


def save_figure(fig, args, prefix, kind):
    """Write fig as <out>/<prefix>_<kind>.png, close it and print the path; 0."""
    fig.tight_layout()
    path = os.path.join(args.out, f"{prefix}_{kind}.png")
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    print(path)
    return 0


def plot_keep(rows, prefix, args):
    """Time vs percent kept (log-log) for the _k<percent> kernels; other kernels as flat lines. One
    panel per N; the dashed grey line is the time of the dense kernel scaled by the kept share."""
    ns = sorted({r["N"] for r in rows if KEEP_SUFFIX.match(r["kernel"])})  # a panel per N with such kernels
    if not ns:
        print(f"plot.py: {prefix}: no kernel with a _k<percent> suffix (bench --kernel mask_bf16,blocks_bf16)",
              file=sys.stderr)
        return 1
    fig, axes = plt.subplots(1, len(ns), figsize=(6.5 * len(ns), 5.2), squeeze=False)
    for ax, n in zip(axes[0], ns):
        here = [r for r in rows if r["N"] == n]
        sparse, dense = {}, {}
        for r in here:
            m = KEEP_SUFFIX.match(r["kernel"])
            if m:
                sparse.setdefault(m.group(1), {})[int(m.group(2))] = r["ms"]
            else:
                dense[r["kernel"]] = r["ms"]
        keeps = sorted({k for pts in sparse.values() for k in pts})
        for i, (kernel, pts) in enumerate(sorted(sparse.items())):
            xs = sorted(pts)
            ax.plot(xs, [pts[x] for x in xs], marker="o", color=f"C{i}", label=kernel)
            for x in xs:
                ax.annotate(f"{pts[x]:.2f}", (x, pts[x]), textcoords="offset points", xytext=(0, 6), ha="center",
                            fontsize=8, color=f"C{i}")
        for j, (kernel, ms) in enumerate(sorted(dense.items())):
            ax.axhline(ms, color=f"C{len(sparse) + j}", linestyle=":", label=f"{kernel} (dense): {ms:.2f} ms")
            ax.plot(keeps, [ms * k / 100.0 for k in keeps], color="0.6", linestyle="--", linewidth=1,
                    label=f"{kernel} x kept share (ideal)" if j == 0 else None)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(FixedLocator(keeps))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([f"{k}%" for k in keeps])
        ax.invert_xaxis()  # sparser to the right
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
        ax.set_xlabel("keys (mask) or key blocks (blocks) kept")
        ax.set_ylabel("time per call (ms, median)")
        r0 = here[0]
        ax.set_title(f"N = {size_text(n)}, B={r0['B']} H={r0['H']} G={r0['G']} D={r0['D']} "
                     f"{'causal' if r0['causal'] else 'full'}", fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.suptitle(title_for(rows, "Token mask vs block sparsity: time vs share kept", args.title), fontsize=11)
    return save_figure(fig, args, prefix, "keep")


def plot_set(rows, prefix, args):
    if not rows:
        print(f"plot.py: {prefix}: no rows to plot", file=sys.stderr)
        return 1
    out = lambda kind: os.path.join(args.out, f"{prefix}_{kind}.png")
    peaks = peak_tflops_of(rows)
    with_flops = [r for r in rows if r["tflops"] is not None]  # compression and the floors count bytes only
    if with_flops:
        plot_figure(with_flops, lambda r: r["tflops"], "TFLOP/s (visible pairs only)", "Attention forward: throughput",
                    out("tflops"), args, peak_lines=peaks)
    plot_figure(rows, lambda r: r["ms"], "time per call (ms, median)", "Attention forward: time",
                out("time"), args, log_y=True)
    with_frac = [r for r in rows if r["frac_peak_flops"] is not None]
    if with_frac:
        plot_figure(with_frac, lambda r: r["frac_peak_flops"], "fraction of the cuBLAS bf16 GEMM peak",
                    "Attention forward: TFLOP/s as a fraction of the bf16 GEMM peak", out("fraction"), args,
                    percent=True)
    else:
        print(f"plot.py: {prefix}: no peak in the CSV (bench --no-peaks?): {out('fraction')} not written",
              file=sys.stderr)
    return 0


# The bars of the NSA branches at N = 65536 (ms): half the best public Triton kernels on the same GPU.
NSA_BARS = {"mean": {"cmp_plus_select": 10.5, "selected_attention": 10.3},
            "paper": {"cmp_plus_select": 21.3, "selected_attention": 10.2}}
NSA_STAGES = [("compress", "compression of K and V"), ("cmp_attention", "compressed attention"),
              ("select", "scores + top-n"), ("cmp_plus_select", "compressed + scores + top-n"),
              ("selected_attention", "selected attention"),
              ("selected_kv_floor_2", "selected: its K/V loads alone (the floor)"),
              ("window_bf16", "sliding window, w = 512 (lesson 05)"),
              ("dense", "dense causal flash (frozen)")]
# the benchmark's entry names of the stages whose row names are not the stage's
NSA_ENTRY_STAGES = {"frozen_flash_bf16": "dense"}


def read_nsa_rows(path):
    """Rows of the NSA stages: device, config, stage, N, ms. From the benchmark's CSV (bench --suite nsa:
    the stage is the entry, the configuration its column, empty for rows every configuration shares) or
    from the CSV of the earlier NSA program (columns device, config, stage, N, ms, tflops)."""
    rows = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        stage_col = "stage" if "stage" in fields else "entry"
        missing = [c for c in ("device", "config", stage_col, "N", "ms") if c not in fields]
        if missing:
            sys.exit(f"plot.py: {path}: not an NSA CSV (missing columns: {', '.join(missing)})")
        for r in reader:
            r["stage"] = NSA_ENTRY_STAGES.get(r[stage_col], r[stage_col])
            r["N"], r["ms"] = int(r["N"]), float(r["ms"])
            rows.append(r)
    return rows


def plot_nsa(rows, prefix, args):
    """Time of each NSA stage against N, one panel per configuration, the 64k bars as markers."""
    configs = [c for c in ("mean", "paper") if any(r["config"] == c for r in rows)]
    if not configs:
        print("plot.py: no mean or paper rows in the NSA CSV", file=sys.stderr)
        return 1
    fig, axes = plt.subplots(1, len(configs), figsize=(6.4 * len(configs), 4.8), squeeze=False)
    for ax, config in zip(axes[0], configs):
        mine = [r for r in rows if r["config"] in (config, "")]
        for stage, label in NSA_STAGES:
            pts = sorted((r["N"], r["ms"]) for r in mine if r["stage"] == stage)
            if pts:
                ax.plot([n for n, _ in pts], [ms for _, ms in pts], marker="o", label=label,
                        linestyle={"dense": "--", "selected_kv_floor_2": ":", "window_bf16": "-."}.get(stage, "-"))
        # the two bars of a configuration can be close (10.5 and 10.3 ms): one label above, one below
        for k, (stage, bar) in enumerate(NSA_BARS[config].items()):
            ax.plot([65536], [bar], marker="_", markersize=18, color="black")
            name = "compressed + top-n" if stage == "cmp_plus_select" else "selected"
            ax.annotate(f"{name} bar {bar:g} ms", (65536, bar), textcoords="offset points",
                        xytext=(-150, 4 if k == 0 else -11), fontsize=8)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("N (keys = queries)")
        ax.set_ylabel("time per call (ms)")
        ax.set_title("mean-pool (l = d = l' = 64)" if config == "mean" else "paper (l = 32, d = 16, l' = 64)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(args.title or f"NSA branches, B = 1, H = 64, G = 4, D = 128, bf16: {short_device(rows[0]['device'])}")
    fig.tight_layout()
    path = os.path.join(args.out, f"{prefix}_time.png")
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    print(f"plot.py: wrote {path}")
    return 0


# ---------------------------------------------------------------- lesson 10: the fused forward against N

# The course's bars at N = 65536 (ms, tools/bench/lesson_10.cu): half of the best public NSA forward on an H200.
FUSED_BARS = {"mean": 23.7, "paper": 34.5}
# (entry, label, line style): the rows of `bench --lesson 10` (and of --suite nsa's nsa_branches), in this order
FUSED_SERIES = [("nsa_forward", "fused forward (o alone)", "-"),
                ("nsa_forward_weights", "fused forward returning the weights", "-"),
                ("nsa_forward_1_compress", "launch 1 alone: compression", ":"),
                ("nsa_forward_2_cmp_select", "launch 2 alone: compressed attention + top-n", ":"),
                ("nsa_forward_3_slc_swa", "launch 3 alone: selected + window attention", ":"),
                ("nsa_forward_stages", "launches 1-3 timed alone, summed", "-."),
                ("nsa_branches", "separate branches of lessons 05, 07-09, summed", "-."),
                ("frozen_flash_bf16", "dense causal flash (frozen)", "--")]
FUSED_CONFIG_TITLES = {"mean": "mean-pool (l = d = l' = 64)", "paper": "paper (l = 32, d = 16, l' = 64, linear)"}


def need_columns(rows, columns, what):
    missing = [c for c in columns if rows and c not in rows[0]]
    if missing:
        print(f"plot.py: {what} needs the benchmark's CSV (missing columns: {', '.join(missing)})", file=sys.stderr)
        return False
    return True


def speedup_text(x):
    return f"{x:.1f}x" if x >= 1.0 else f"{x:.2f}x"


def plot_fused(rows, prefix, args):
    """Lesson 10: time of the forward, its launches and dense flash vs N, one panel per configuration."""
    if not need_columns(rows, ("entry", "config"), "--fused"):
        return 1
    rows = [r for r in rows if not r["kernel"].endswith("_graph")]
    configs = [c for c in ("mean", "paper") if any(r["config"] == c and r["entry"].startswith("nsa_") for r in rows)]
    if not configs:
        print(f"plot.py: {prefix}: no nsa_forward rows of configuration mean or paper (bench --lesson 10)",
              file=sys.stderr)
        return 1
    fig, axes = plt.subplots(1, len(configs), figsize=(7.2 * len(configs), 5.6), squeeze=False)
    for ax, config in zip(axes[0], configs):
        mine = [r for r in rows if r["config"] in (config, "")]
        for i, (entry, label, style) in enumerate(FUSED_SERIES):
            pts = {r["N"]: r["ms"] for r in mine if r["entry"] == entry}
            if not pts:
                continue
            ns = sorted(pts)
            ax.plot(ns, [pts[n] for n in ns], marker="o", markersize=4, linestyle=style, color=f"C{i}", label=label)
        dense = {r["N"]: r["ms"] for r in mine if r["entry"] == "frozen_flash_bf16"}
        for r in mine:  # the forward's speed-up over dense at each N
            if r["entry"] == "nsa_forward" and r["N"] in dense and r["ms"] > 0:
                ax.annotate(speedup_text(dense[r["N"]] / r["ms"]), (r["N"], r["ms"]), textcoords="offset points",
                            xytext=(0, 7), ha="center", fontsize=8, color="C0")
        plain = {r["N"]: r["ms"] for r in mine if r["entry"] == "nsa_forward"}
        overhead = [f"{size_text(r['N'])} {100.0 * (r['ms'] / plain[r['N']] - 1.0):+.1f}%" for r in
                    sorted(mine, key=lambda r: r["N"]) if r["entry"] == "nsa_forward_weights" and plain.get(r["N"])]
        if overhead:  # what returning the weights costs, too small to see on the lines
            ax.text(0.98, 0.03, "returning the weights: " + ", ".join(overhead), transform=ax.transAxes, ha="right",
                    va="bottom", fontsize=8, color="C1")
        if config in FUSED_BARS:
            bar = FUSED_BARS[config]
            ax.plot([65536], [bar], marker="_", markersize=18, color="black")
            ax.annotate(f"bar {bar:g} ms", (65536, bar), textcoords="offset points", xytext=(-70, -12), fontsize=8)
        setup_n_axis(ax, mine)
        ax.set_xlabel("N (keys = queries)")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
        ax.set_ylabel("time per call (ms, median)")
        r0 = mine[0]
        ax.set_title(f"{FUSED_CONFIG_TITLES.get(config, config)}\nB={r0['B']} H={r0['H']} G={r0['G']} D={r0['D']}, "
                     "causal; the labels: speed-up over dense", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(title_for(rows, "Lesson 10: the fused NSA forward and its launches against dense attention",
                           args.title), fontsize=11)
    return save_figure(fig, args, prefix, "time")


# ---------------------------------------------------------------- lesson 11: decoding against the cache's length

# The benchmark's NSA configurations (bench --config): l, d, l'; n = 16 and w = 512 in both.
NSA_CONFIGS = {"mean": (64, 64, 64), "paper": (32, 16, 64)}
NSA_N, NSA_W = 16, 512
DECODE_ENTRIES = [("frozen_decode_naive_bf16", "naive decode (frozen)"), ("decode_dense", "split-KV dense decode"),
                  ("decode_nsa", "NSA decode")]


def nsa_expected_ratio(n_tokens, config):
    """The NSA paper's count: a dense decode loads N tokens, an NSA decode NC + n l' + w (tools/bench/lesson_11.cu)."""
    l, d, l_sel = NSA_CONFIGS[config]
    nc = max(0, (n_tokens - l) // d + 1)
    return n_tokens / (nc + NSA_N * l_sel + NSA_W)


def plot_decode(rows, prefix, args):
    """Lesson 11: per batch, time, GB/s against the copy peak, and the NSA-over-dense speed-up vs the cache's length;
    plain launches solid, graph replays dashed."""
    if not need_columns(rows, ("entry", "config"), "--decode"):
        return 1
    rows = [r for r in rows if r["M"] == 1 and r["entry"] in {e for e, _ in DECODE_ENTRIES}]
    if not rows:
        print(f"plot.py: {prefix}: no decoding rows (M = 1: bench --lesson 11)", file=sys.stderr)
        return 1
    batches = sorted({r["B"] for r in rows})
    configs = [c for c in NSA_CONFIGS if any(r["entry"] == "decode_nsa" and r["config"] == c for r in rows)]
    fig, axes = plt.subplots(3, len(batches), figsize=(5.6 * len(batches), 12.5), squeeze=False)
    peak = next((r["peak_gbs"] for r in rows if r["peak_gbs"]), None)
    color = {}
    for col, batch in enumerate(batches):
        here = [r for r in rows if r["B"] == batch]
        series = {}  # (entry, config, graph) -> {N: row}
        for r in here:
            series.setdefault((r["entry"], r["config"], r["kernel"].endswith("_graph")), {})[r["N"]] = r
        order = [e for e, _ in DECODE_ENTRIES]
        keys = sorted(series, key=lambda k: (order.index(k[0]), k[1], k[2]))
        for key in keys:
            entry, config, graph = key
            pts = series[key]
            ns = sorted(pts)
            base = (entry, config)
            color.setdefault(base, f"C{len(color) % 10}")
            label = dict(DECODE_ENTRIES)[entry] + (f", {config}" if config else "") + (", CUDA graph" if graph else "")
            style = dict(color=color[base], linestyle="--" if graph else "-", marker="o", markersize=3.5)
            axes[0][col].plot(ns, [1e3 * pts[n]["ms"] for n in ns], label=label, **style)
            gb = [(n, pts[n]["gbs"]) for n in ns if pts[n]["gbs"]]
            if gb:
                axes[1][col].plot([n for n, _ in gb], [g for _, g in gb], label=label, **style)
        # NSA over dense, in each mode; the paper's expected ratio of the bytes each loads
        for config in configs:
            for graph in (False, True):
                nsa, dense = series.get(("decode_nsa", config, graph)), series.get(("decode_dense", "", graph))
                if not nsa or not dense:
                    continue
                ns = sorted(set(nsa) & set(dense))
                axes[2][col].plot(ns, [dense[n]["ms"] / nsa[n]["ms"] for n in ns], marker="o", markersize=3.5,
                                  color=color.get(("decode_nsa", config), "C3"), linestyle="--" if graph else "-",
                                  label=f"NSA {config} over dense" + (", CUDA graphs" if graph else ""))
            ns = sorted({r["N"] for r in here})
            axes[2][col].plot(ns, [nsa_expected_ratio(n, config) for n in ns], color="0.4",
                              linestyle=":" if config == "paper" else "-.", linewidth=1.2,
                              label=f"expected ({config}): N / (NC + n l' + w)")
        if peak:
            axes[1][col].axhline(peak, color="0.35", linestyle="--", linewidth=1.2,
                                 label=f"measured copy bandwidth: {peak:.0f} GB/s")
        r0 = here[0]
        axes[0][col].set_title(f"B = {batch}, H={r0['H']} G={r0['G']} D={r0['D']}, one query per sequence",
                               fontsize=10)
        for row, ylabel in enumerate(("time per step (us, median)", "GB/s (the K/V bytes each must read)",
                                      "NSA decode's speed-up over dense")):
            ax = axes[row][col]
            if not ax.lines:
                ax.axis("off")
                continue
            setup_n_axis(ax, here)
            ax.set_xlabel("cache length (tokens per sequence)")
            ax.set_ylabel(ylabel)
            if row == 0:
                ax.set_yscale("log")
                ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
            else:
                ax.set_ylim(bottom=0)
            ax.grid(True, which="major", alpha=0.3)
            if col == 0:  # the same series in every column: one legend a row
                ax.legend(fontsize=7, loc="best")
    fig.suptitle(title_for(rows, "Lesson 11: one decoding step against the cache's length (solid: plain launches, "
                           "dashed: CUDA graph replays)", args.title), fontsize=11)
    return save_figure(fig, args, prefix, "time")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv", nargs="+", help="CSV file(s) written by bench --csv")
    ap.add_argument("--out", help="folder for the PNG files (default: figures)")
    ap.add_argument("--prefix", help="file name prefix (default: the CSV's name), may hold a folder "
                                     "(figures/bench_flash_h200: then --out is not needed); with several "
                                     "CSVs, plot all their rows together under this prefix")
    ap.add_argument("--title", help="title line instead of the device name")
    ap.add_argument("--vs-keep", action="store_true", help="plot time vs share kept (lesson 06's _k<percent> kernels)")
    ap.add_argument("--nsa", action="store_true", help="the CSV is of bench --suite nsa: plot the NSA stages against N")
    ap.add_argument("--fused", action="store_true", help="the CSV is of bench --lesson 10: the fused forward against N")
    ap.add_argument("--decode", action="store_true",
                    help="the CSV is of bench --lesson 11 (--graph): decoding against the cache's length")
    args = ap.parse_args()
    if args.vs_keep + args.nsa + args.fused + args.decode > 1:
        ap.error("--vs-keep, --nsa, --fused and --decode choose one figure: give one of them")
    plot = (plot_keep if args.vs_keep else plot_nsa if args.nsa else plot_fused if args.fused
            else plot_decode if args.decode else plot_set)
    reader = read_nsa_rows if args.nsa else read_rows
    if args.prefix and os.path.dirname(args.prefix):  # a folder in the prefix: relative to --out if given
        args.out = os.path.join(args.out or "", os.path.dirname(args.prefix))
        args.prefix = os.path.basename(args.prefix)
    args.out = args.out or "figures"

    os.makedirs(args.out, exist_ok=True)
    for path in args.csv:
        if not os.path.isfile(path):
            sys.exit(f"plot.py: {path}: no such file")
    if args.prefix:
        rows = [r for path in args.csv for r in reader(path)]
        return plot(rows, args.prefix, args)
    rc = 0
    for path in args.csv:
        prefix = os.path.splitext(os.path.basename(path))[0]
        rc |= plot(reader(path), prefix, args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
