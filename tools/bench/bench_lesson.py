#!/usr/bin/env python3
"""Time your kernels (lessons/) beside the reference solution and the frozen baseline, on each
lesson's bench shapes; print a table, write a CSV and draw a figure.

    ./course bench                      every lesson
    ./course bench --lesson 03          one lesson (repeatable)
    ./course bench --csv FILE --figure FILE.png
                                        where the results go (default BUILD/bench/bench_course.csv
                                        and .png)
    ./course bench --build-only         build the bench programs, time nothing (no GPU needed)

Shapes: the "bench" key of each lesson's descriptor (lessons/NN_name/lesson.json), the shapes the
lessons' speed bars are about; `build/bin/bench --list` prints them.

How: your functions and the solutions' have the same names, so they cannot be linked into one
program. build/bin/bench (every solution and the frozen baselines) times the solution, its baseline
and the lesson's floors; one program per lesson, bench_NN_lessons, built from your lessons/NN_*/
files, times yours (in a copy of the course without solutions/, also the baseline). Both run the same
command line: `--lesson NN` and the shape's options. Every row's output is checked once against its
reference (the check column); a lesson of yours that does not compile, or whose kernel fails (a stub
returns "not implemented"), is reported and skipped; the other lessons still run. The device's peaks
(bf16 GEMM, memory copy) are measured once and handed to the later runs. `./course grade` is what
grades your kernels. Without a GPU: says so, exits 0. Normally run through ./course bench, which
configures the build first.

    tools/bench/bench_lesson.py --check-table build/bin/bench
                                        (CTest's maintainer.bench_entries, no GPU needed) every lesson
                                        with a descriptor has a bench shape and a kernel in the table
"""
import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile

TOOLS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, TOOLS)
import course_cli  # noqa: E402
import lessons  # noqa: E402

ROOT = os.path.dirname(TOOLS)
NO_GPU = 77  # bench's exit status without a usable CUDA device

SOURCES = ("yours", "solution", "baseline", "floor")
BENCH_COLUMNS = ["device", "entry", "kernel", "role", "baseline", "B", "M", "N", "H", "G", "D", "causal", "window",
                 "keep", "config", "ms", "tflops", "gbs", "peak_tflops", "peak_gbs", "frac_peak_flops", "frac_peak_bw",
                 "speedup", "check"]
CSV_COLUMNS = ["lesson", "shape", "source"] + BENCH_COLUMNS


def say(msg):
    course_cli.say(msg)


def lesson_dirs(root=ROOT):
    """{NN: folder name} of the lessons in lessons/."""
    out = {}
    base = os.path.join(root, "lessons")
    for name in sorted(os.listdir(base)):
        if len(name) > 3 and name[:2].isdigit() and name[2] == "_" and os.path.isdir(os.path.join(base, name)):
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
        text = (p.stderr or p.stdout).strip()
        return False, text.splitlines()[0] if text else "no GPU listed"
    return True, names[0]


def parse_list(text):
    """bench --list: ([{lesson, name, role, baseline, suites, parameters, computes}], {lesson: [(shape, options)]})."""
    entries, shapes = [], {}
    for line in text.splitlines():
        cols = line.split("\t")
        if line.startswith("# shape") and len(cols) >= 4:
            shapes.setdefault(cols[1], []).append((cols[2], cols[3].split()))
        elif line and not line.startswith("#") and len(cols) >= 7:
            entries.append(dict(zip(("lesson", "name", "role", "baseline", "suites", "parameters", "computes"), cols)))
    return entries, shapes


def list_table(binary):
    """The table a bench program holds (parse_list), or ([], {}) when it does not run."""
    try:
        p = subprocess.run([binary, "--list"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return [], {}
    return parse_list(p.stdout) if p.returncode == 0 else ([], {})


def check_table(binary, root=ROOT):
    """Problems (strings) with the table of `binary` against the descriptors: every lesson needs a bench
    shape, a solution entry, shapes the build compiled in as tools/lessons.py reads them, and rows in
    a dry run of the whole benchmark."""
    problems = []
    entries, shapes = list_table(binary)
    if not entries:
        return [f"{binary} --list printed no table"]
    try:
        dry = subprocess.run([binary, "--dry-run"], capture_output=True, text=True, timeout=120)
        dry_out = dry.stdout if dry.returncode == 0 else ""
        if dry.returncode != 0:
            problems.append(f"{binary} --dry-run failed: {dry.stderr.strip()}")
    except (OSError, subprocess.TimeoutExpired) as e:
        dry_out = ""
        problems.append(f"{binary} --dry-run: {e}")
    for num, d in lessons.descriptors(root).items():
        want = lessons.bench_shapes(d)
        if not want:
            problems.append(f"lesson {num}: its descriptor has no bench shape (lesson.json, key \"bench\")")
        if shapes.get(num, []) != want:
            problems.append(f"lesson {num}: the program's bench shapes {shapes.get(num, [])} are not the descriptor's "
                            f"{want} (reconfigure the build)")
        solutions = [e["name"] for e in entries if e["lesson"] == num and e["role"] == "solution"]
        if not solutions:
            problems.append(f"lesson {num}: no solution entry in the table (tools/bench/lesson_{num}.cu)")
        elif not any(line.split()[:1] == [num] and line.split()[1].startswith(tuple(solutions))
                     for line in dry_out.splitlines() if line.startswith("  ")):
            problems.append(f"lesson {num}: a dry run of the benchmark times none of its entries")
    return problems


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


def run_bench(binary, lesson_args, shape_args, peaks, timeout):
    """Run one bench program; returns (exit status, rows, the error lines of its stderr)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "b.csv")
        cmd = [binary] + lesson_args + ["--keep-going", "--csv", out] + shape_args + peak_args(peaks)
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, errors="replace")
        except subprocess.TimeoutExpired:
            return 1, read_bench_csv(out), [f"timed out after {timeout} s"]
        errors = [l[len("bench: "):] for l in p.stderr.splitlines() if l.startswith("bench: ")]
        return p.returncode, read_bench_csv(out), errors


def source_of(role, program):
    if program == "yours":
        return "yours" if role in ("solution", "sum") else role
    return "solution" if role in ("solution", "sum") else role


def vs_baseline(r, rows):
    """The speed-up of row r over its baseline's row of the same lesson and shape, as text."""
    base = [b for b in rows if b["source"] == "baseline" and b["kernel"] == r.get("baseline")
            and b["lesson"] == r["lesson"] and b["shape"] == r["shape"]]
    if not base or not r.get("baseline"):
        return "-"
    return f"{float(base[0]['ms']) / float(r['ms']):.2f}x"


def fmt_row(r, rows):
    ms = float(r["ms"])
    tf = f"{float(r['tflops']):.1f}" if r.get("tflops") else "-"
    frac = f"{100 * float(r['frac_peak_flops']):.1f}%" if r.get("frac_peak_flops") else "-"
    return (f"  {r['kernel']:<28} {r['source']:<9} {ms:>10.3f} {tf:>9} {frac:>8} {vs_baseline(r, rows):>12}  "
            f"{r.get('check') or '-'}")


def shape_text(args):
    pairs = [f"{args[i][2:]}={args[i + 1]}" for i in range(0, len(args) - 1, 2)]
    return " ".join(pairs)


def print_lesson(num, name, shape, args, rows, notes):
    print(f"\nLesson {num} {name[3:]}, shape {shape}: {shape_text(args)}")
    print(f"  {'kernel':<28} {'source':<9} {'ms':>10} {'TFLOP/s':>9} {'of peak':>8} {'vs baseline':>12}  check")
    here = [r for r in rows if r["lesson"] == num and r["shape"] == shape]
    for source in SOURCES:
        for r in here:
            if r["source"] == source:
                print(fmt_row(r, here))
    for n in notes:
        print(f"  {n}")


def draw(rows, panels, path):
    """One panel per (lesson, shape): TFLOP/s per kernel and source, the time written on each bar (rows
    without FLOPs, such as compression and the floors, are left out)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        say("matplotlib is missing: no figure (Debian/Ubuntu: sudo apt-get install python3-matplotlib); "
            "the CSV has every number")
        return False
    shown = [p for p in panels if any(r["lesson"] == p[0] and r["shape"] == p[1] and r.get("tflops") for r in rows)]
    if not shown:
        return False
    cols = min(3, len(shown))
    nrows = (len(shown) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(5.2 * cols, 4.2 * nrows), squeeze=False)
    colors = {"yours": "C0", "solution": "C1", "baseline": "0.55", "floor": "0.8"}
    for ax, (num, shape) in zip(axes.flat, shown):
        here = [r for s in SOURCES for r in rows
                if r["lesson"] == num and r["shape"] == shape and r["source"] == s and r.get("tflops")]
        labels = [f"{r['kernel']}\n({r['source']})" for r in here]
        heights = [float(r["tflops"]) for r in here]
        bars = ax.bar(range(len(here)), heights, color=[colors[r["source"]] for r in here])
        for b, r in zip(bars, here):
            ax.annotate(f"{float(r['ms']):.3g} ms", (b.get_x() + b.get_width() / 2, b.get_height()), ha="center",
                        va="bottom", fontsize=8)
        ax.set_xticks(range(len(here)))
        ax.set_xticklabels(labels, fontsize=7, rotation=15, ha="right")
        ax.set_ylabel("TFLOP/s (visible pairs)")
        ax.set_title(f"lesson {num}, {shape}", fontsize=9)
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
    ap.add_argument("--timeout", type=int, default=900, help="seconds one bench program may run (default 900)")
    ap.add_argument("--check-table", metavar="BENCH", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.check_table:
        problems = check_table(args.check_table)
        for p in problems:
            print(f"bench_lesson: {p}", file=sys.stderr)
        if not problems:
            print("bench_lesson: every lesson has a bench shape and entries in the table")
        return 1 if problems else 0

    dirs = lesson_dirs()
    wanted = [n.zfill(2) for n in args.lesson] if args.lesson else sorted(dirs)
    shapes = {}
    for n in wanted:
        if n not in dirs:
            ap.error(f"no lesson {n} in lessons/")
        shapes[n] = lessons.bench_shapes(lessons.descriptor(dirs[n]))
        if not shapes[n]:
            say(f"lesson {n}: its descriptor names no bench shape; skipped")
    wanted = [n for n in wanted if shapes[n]]
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
    merged, peaks, panels = [], None, []
    solutions_bench = os.path.join(bin_dir, "bench")
    # the lessons build/bin/bench holds (a copy of the course without solutions/ has the baselines only)
    held = {e["lesson"] for e in list_table(solutions_bench)[0] if e["role"] == "solution"}
    for n in wanted:
        has_solution = n in held
        if not has_solution:
            notes[n].append("solution: not in this copy of the course (no solutions/)")
        # the baseline comes from the solutions' program, or from yours when there is no solution
        programs = []
        if has_solution:
            programs.append(("solution", solutions_bench, ["--lesson", n]))
        if compiled[n]:
            roles = "solution" if has_solution else "solution,baseline"
            programs.append(("yours", os.path.join(bin_dir, f"bench_{n}_lessons"), ["--lesson", n, "--role", roles]))
        for shape, shape_args in shapes[n]:
            panels.append((n, shape))
            for program, binary, lesson_args in programs:
                say(f"lesson {n}, shape {shape}: timing " + ("the solution and the baseline" if program == "solution"
                                                              else "yours"))
                rc, rows, errors = run_bench(binary, lesson_args, shape_args, peaks, args.timeout)
                if rc == NO_GPU:
                    say("bench found no usable CUDA device: nothing to time here")
                    return 0
                peaks = peaks or peaks_of(rows)
                for r in rows:
                    merged.append(dict(r, lesson=n, shape=shape, source=source_of(r["role"], program)))
                notes[n] += [f"{program}: {e}" for e in errors]
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
        for shape, shape_args in shapes[n]:
            print_lesson(n, dirs[n], shape, shape_args, merged, notes[n])
    print("\n'check' compares each output once with its reference; ./course grade is what grades your kernels.")
    say(f"wrote {csv_path}")
    if draw(merged, panels, fig_path):
        say(f"wrote {fig_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
