#!/usr/bin/env python3
"""Time your kernels (lessons/) beside the reference solution and the frozen baseline, on each
lesson's bar shape; print a table, write a CSV and draw a figure.

    ./course bench                      every lesson
    ./course bench --lesson 03          one lesson (repeatable)
    ./course bench --csv FILE --figure FILE.png
                                        where the results go (default BUILD/bench/bench_course.csv
                                        and .png)
    ./course bench --build-only         build the bench programs, time nothing (no GPU needed)

Shapes (B = 1, causal, the shapes the lessons' speed bars are about):
    01, 02  N = 2048, H = 16, D = 64, fp32 (seconds)
    03      N = 8192, H = 64, D = 128, bf16
    04      N = 8192, H = 64, G = 4, D = 128
    05      window 512, N = 32768, H = 64, G = 4, D = 128
    06      10% of the keys (token mask) or key blocks (block list) kept, N = 8192, H = 64, G = 4, D = 128

How: your functions and the solutions' have the same names, so they cannot be linked into one
program. build/bin/bench (every solution and the frozen baselines: the program the README's figures
come from) times the solution and the baseline; one program per lesson, bench_NN_lessons, built from
your lessons/NN_*/ files, times yours. A lesson of yours that does not compile, or whose kernel
fails (a stub returns "not implemented"), is reported and skipped; the other lessons still run. The
device's peaks (bf16 GEMM, memory copy) are measured once and handed to the later runs.
Times only: `./course grade` checks that your kernels are right. Without a GPU: says so, exits 0.
Normally run through ./course bench, which configures the build first.
"""
import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import course_cli  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NO_GPU = 77  # bench's exit status without a usable CUDA device

# Per lesson: the kernels of the lesson (yours and the solution's), the frozen baseline, the shape.
LESSONS = {
    "01": {"kernels": ["naive_cuda_f32"], "baseline": ["naive_f32"],
           "args": ["--B", "1", "--N", "2048", "--H", "16", "--G", "16", "--D", "64", "--causal", "1"],
           "shape": "B=1 N=2048 H=16 D=64 causal, fp32"},
    "02": {"kernels": ["online_f32"], "baseline": ["naive_f32"],
           "args": ["--B", "1", "--N", "2048", "--H", "16", "--G", "16", "--D", "64", "--causal", "1"],
           "shape": "B=1 N=2048 H=16 D=64 causal, fp32"},
    "03": {"kernels": ["flash_bf16"], "baseline": ["frozen_online_f32"],
           "args": ["--B", "1", "--N", "8192", "--H", "64", "--G", "64", "--D", "128", "--causal", "1"],
           "shape": "B=1 N=8192 H=64 D=128 causal, bf16 (baseline: lesson 02's frozen fp32 kernel)"},
    "04": {"kernels": ["gqa_bf16"], "baseline": ["frozen_repeat_kv_bf16"],
           "args": ["--B", "1", "--N", "8192", "--H", "64", "--G", "4", "--D", "128", "--causal", "1"],
           "shape": "B=1 N=8192 H=64 G=4 D=128 causal, bf16 (baseline: repeat K/V, then frozen flash)"},
    "05": {"kernels": ["window_bf16"], "baseline": ["frozen_flash_bf16"],
           "args": ["--B", "1", "--N", "32768", "--H", "64", "--G", "4", "--D", "128", "--causal", "1",
                    "--window", "512", "--reps", "5"],
           "shape": "B=1 N=32768 H=64 G=4 D=128 causal, window 512 (baseline: dense causal frozen flash)"},
    "06": {"kernels": ["mask_bf16", "blocks_bf16"], "baseline": ["frozen_flash_bf16"],
           "args": ["--B", "1", "--N", "8192", "--H", "64", "--G", "4", "--D", "128", "--causal", "1",
                    "--keep", "10", "--reps", "5"],
           "shape": "B=1 N=8192 H=64 G=4 D=128 causal, 10% kept (baseline: dense causal frozen flash)"},
}
SOURCES = ("yours", "solution", "baseline")
BENCH_COLUMNS = ["device", "kernel", "B", "M", "N", "H", "G", "D", "causal", "ms", "tflops", "gbs", "peak_tflops",
                 "peak_gbs", "frac_peak_flops", "frac_peak_bw"]
CSV_COLUMNS = ["lesson", "source"] + BENCH_COLUMNS


def say(msg):
    course_cli.say(msg)


def lesson_dirs():
    """{NN: folder name} of the lessons in lessons/."""
    out = {}
    for name in sorted(os.listdir(os.path.join(ROOT, "lessons"))):
        if len(name) > 3 and name[:2].isdigit() and name[2] == "_" and os.path.isdir(os.path.join(ROOT, "lessons", name)):
            out[name[:2]] = name
    return out


def have_gpu():
    """(True, name) when nvidia-smi lists a GPU, else (False, why)."""
    if not shutil.which("nvidia-smi"):
        return False, "nvidia-smi not found"
    try:
        p = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True,
                           timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)
    names = [l.strip() for l in p.stdout.splitlines() if l.strip()]
    if p.returncode != 0 or not names:
        return False, (p.stderr or p.stdout).strip().splitlines()[0] if (p.stderr or p.stdout).strip() else "no GPU listed"
    return True, names[0]


def read_bench_csv(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def peak_args(peaks):
    return ["--peak-tflops", peaks[0], "--peak-gbs", peaks[1]] if peaks else []


def peaks_of(rows):
    for r in rows:
        if r.get("peak_tflops") and r.get("peak_gbs"):
            return (r["peak_tflops"], r["peak_gbs"])
    return None


def run_bench(binary, kernels, spec, peaks, timeout):
    """Run one bench program; returns (exit status, rows, the error lines of its stderr)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "b.csv")
        cmd = [binary, "--kernels", ",".join(kernels), "--keep-going", "--csv", out] + spec["args"] + peak_args(peaks)
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, errors="replace")
        except subprocess.TimeoutExpired:
            return 1, read_bench_csv(out), [f"timed out after {timeout} s"]
        rows = read_bench_csv(out)
        errors = [l for l in p.stderr.splitlines() if l.startswith("bench:")]
        return p.returncode, rows, errors


def fmt_row(kernel, source, r, base_ms):
    ms, tf = float(r["ms"]), float(r["tflops"])
    frac = f"{100 * float(r['frac_peak_flops']):.1f}%" if r.get("frac_peak_flops") else "-"
    vs = f"{base_ms / ms:.2f}x" if base_ms else "-"
    return f"  {kernel:<22} {source:<9} {ms:>10.3f} {tf:>9.1f} {frac:>8} {vs:>12}"


def print_lesson(num, name, spec, rows, notes):
    print(f"\nLesson {num} {name[3:]}: {spec['shape']}")
    print(f"  {'kernel':<22} {'source':<9} {'ms':>10} {'TFLOP/s':>9} {'of peak':>8} {'vs baseline':>12}")
    base = [r for r in rows if r["source"] == "baseline"]
    base_ms = float(base[0]["ms"]) if base else None
    for source in SOURCES:
        for r in rows:
            if r["source"] == source:
                print(fmt_row(r["kernel"], source, r, base_ms))
    for n in notes:
        print(f"  {n}")


def draw(rows, lessons, path):
    """One panel per lesson: TFLOP/s per kernel and source, the time written on each bar."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        say("matplotlib is missing: no figure (Debian/Ubuntu: sudo apt-get install python3-matplotlib); "
            "the CSV has every number")
        return False
    shown = [n for n in lessons if any(r["lesson"] == n for r in rows)]
    if not shown:
        return False
    cols = min(3, len(shown))
    nrows = (len(shown) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(5.2 * cols, 4.2 * nrows), squeeze=False)
    colors = {"yours": "C0", "solution": "C1", "baseline": "0.55"}
    for ax, num in zip(axes.flat, shown):
        here = [r for s in SOURCES for r in rows if r["lesson"] == num and r["source"] == s]
        labels = [f"{r['kernel']}\n({r['source']})" for r in here]
        heights = [float(r["tflops"]) for r in here]
        bars = ax.bar(range(len(here)), heights, color=[colors[r["source"]] for r in here])
        for b, r in zip(bars, here):
            ax.annotate(f"{float(r['ms']):.3g} ms", (b.get_x() + b.get_width() / 2, b.get_height()), ha="center",
                        va="bottom", fontsize=8)
        ax.set_xticks(range(len(here)))
        ax.set_xticklabels(labels, fontsize=7, rotation=15, ha="right")
        ax.set_ylabel("TFLOP/s (visible pairs)")
        ax.set_title(f"lesson {num}: {LESSONS[num]['shape'].split(',')[0]}", fontsize=9)
        ax.set_ylim(top=max(heights) * 1.15 if heights else 1)
        ax.grid(True, axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    device = rows[0]["device"] if rows else ""
    fig.suptitle(f"Your kernels, the solutions and the frozen baselines\n{device}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return True


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lesson", action="append", help="lesson number, e.g. 03 (repeatable; default: every lesson)")
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--csv", help="the CSV to write (default BUILD/bench/bench_course.csv)")
    ap.add_argument("--figure", help="the PNG to draw (default: the CSV's name with .png)")
    ap.add_argument("--build-only", action="store_true", help="build the bench programs, time nothing")
    ap.add_argument("--timeout", type=int, default=600, help="seconds one bench program may run (default 600)")
    args = ap.parse_args(argv)

    dirs = lesson_dirs()
    wanted = [n.zfill(2) for n in args.lesson] if args.lesson else sorted(n for n in dirs if n in LESSONS)
    for n in wanted:
        if n not in dirs:
            ap.error(f"no lesson {n} in lessons/")
        if n not in LESSONS:
            say(f"lesson {n}: no bench for it yet; skipped")
    wanted = [n for n in wanted if n in LESSONS]
    if not wanted:
        return 0

    if not args.build_only:
        gpu, why = have_gpu()
        if not gpu:
            say(f"no CUDA device here ({why}): ./course bench times kernels on a GPU, so there is nothing to time. "
                "Run it on a machine with an NVIDIA GPU (./course grade still checks your C parts here).")
            return 0
        say(f"GPU: {why}")

    bench_dir = os.path.join(args.build_dir, "bench")
    os.makedirs(bench_dir, exist_ok=True)
    bin_dir = os.path.join(args.build_dir, "bin")
    say("building the bench programs (the solutions' build/bin/bench, then one per lesson of yours)")
    rc, _ = course_cli.run_build(args.build_dir, ["bench"], log_path=os.path.join(bench_dir, "build_bench.log"))
    if rc != 0:
        say("build/bin/bench (the solutions and the baselines) did not build: see the errors above")
        return 1
    compiled, notes = {}, {n: [] for n in wanted}
    for n in wanted:
        log = os.path.join(bench_dir, f"build_{n}_lessons.log")
        rc, lines = course_cli.run_build(args.build_dir, [f"bench_{n}_lessons"], log_path=log, quiet=True,
                                         show_errors=False)
        compiled[n] = rc == 0
        if rc != 0:
            first = course_cli.first_errors(lines, limit=8)
            say(f"lesson {n}: your files do not compile; yours is skipped (full log: {log}). First errors:")
            for l in first:
                print("    " + l, file=sys.stderr)
            notes[n].append(f"yours: not timed, your lessons/{dirs[n]}/ files do not compile (see {log})")
    if args.build_only:
        failed = [n for n in wanted if not compiled[n]]
        say("bench programs built" + (f"; lessons that do not compile: {', '.join(failed)}" if failed else ""))
        return 1 if failed else 0

    csv_path = args.csv or os.path.join(bench_dir, "bench_course.csv")
    fig_path = args.figure or os.path.splitext(csv_path)[0] + ".png"
    merged, peaks = [], None
    solutions_bench = os.path.join(bin_dir, "bench")
    # the kernels build/bin/bench holds (a copy of the course without solutions/ has the baselines only)
    listed = subprocess.run([solutions_bench, "--list"], capture_output=True, text=True).stdout.split()
    for n in wanted:
        spec = LESSONS[n]
        solution = [k for k in spec["kernels"] if k in listed]
        if not solution:
            notes[n].append("solution: not in this copy of the course (no solutions/)")
        say(f"lesson {n}: timing the solution and the baseline" if solution else f"lesson {n}: timing the baseline")
        rc, rows, errors = run_bench(solutions_bench, solution + spec["baseline"], spec, peaks, args.timeout)
        if rc == NO_GPU:
            say("bench found no usable CUDA device: nothing to time here")
            return 0
        peaks = peaks or peaks_of(rows)
        for r in rows:
            merged.append(dict(r, lesson=n, source="baseline" if r["kernel"] in spec["baseline"] else "solution"))
        notes[n] += [f"solution/baseline: {e}" for e in errors]
        if compiled[n]:
            say(f"lesson {n}: timing yours")
            rc, rows, errors = run_bench(os.path.join(bin_dir, f"bench_{n}_lessons"), spec["kernels"], spec, peaks,
                                         args.timeout)
            peaks = peaks or peaks_of(rows)
            for r in rows:
                merged.append(dict(r, lesson=n, source="yours"))
            notes[n] += [f"yours: {e[len('bench: '):] if e.startswith('bench: ') else e}" for e in errors]
    os.makedirs(os.path.dirname(os.path.abspath(csv_path)), exist_ok=True)
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in merged:
            w.writerow(r)
    if merged:
        print(f"\ndevice: {merged[0]['device']}")
        if peaks:
            print(f"peaks: {float(peaks[0]):.0f} TFLOP/s (cuBLAS bf16 GEMM), {float(peaks[1]):.0f} GB/s (copy); "
                  "'of peak' is TFLOP/s over the GEMM peak")
    for n in wanted:
        print_lesson(n, dirs[n], LESSONS[n], [r for r in merged if r["lesson"] == n], notes[n])
    print("\nThe times say nothing about correctness: ./course grade checks that.")
    say(f"wrote {csv_path}")
    if draw(merged, wanted, fig_path):
        say(f"wrote {fig_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
