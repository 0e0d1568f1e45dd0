#!/usr/bin/env bash
# Verify the course on a GPU machine in steps that each fit a few minutes (run them in this order; later
# steps reuse the build folder of the earlier ones). Logs go to $OUT (or ./gpu-logs) and the last lines
# of each step to stdout.
#
#   tools/maintenance/gpu_verify.sh build      configure and build everything, GPU-only variants included
#   tools/maintenance/gpu_verify.sh tests      solutions, stubs and harness tests (speed and synthesis lines printed) [LESSONS]
#   tools/maintenance/gpu_verify.sh variants   every known-wrong variant and cheat must be rejected       [LESSONS]
#   tools/maintenance/gpu_verify.sh grade      ./course grade of the solutions (900 points) and the stubs (0)  [LESSONS]
#   tools/maintenance/gpu_verify.sh sanitize   compute-sanitizer over the solutions and racy variants      [LESSONS]
#   tools/maintenance/gpu_verify.sh figures    the README's CSV and figures, named after the GPU (NAME, default h200)
#   tools/maintenance/gpu_verify.sh nsa        the NSA branches of lessons 05, 07-09 against the N = 65536 bars (CSV, figure)
#   tools/maintenance/gpu_verify.sh bench      the benchmark: every lesson on its bench shapes, each output checked  [LESSONS]
#   tools/maintenance/gpu_verify.sh course_bench   ./course bench: the stubs of lessons/ beside the solutions    [LESSONS]
#   tools/maintenance/gpu_verify.sh before_after COMMIT [LESSONS]   the solutions' kernels of COMMIT and of
#                                              this tree, built into the same benchmark and timed side by
#                                              side in one run (default lessons 05-09): no kernel may get
#                                              slower than noise
#   tools/maintenance/gpu_verify.sh python     python/ on the GPU (PYTHON: an interpreter with numpy, PyTorch, matplotlib): its tests,
#                                              the torch example, ./course demo at N = 65536, the weights heatmaps at N = 2048
# LESSONS (optional): a comma-separated list such as 07,08,09 limits the step to those lessons (the
# harness tests of `tests` run only without it).
set -uo pipefail
cd "$(dirname "$0")/../.."
B=${ATTN_BUILD_DIR:-build-gpu}
LOG=${OUT:-gpu-logs}
mkdir -p "$LOG"
export PATH=/usr/local/cuda/bin:$PATH
step=${1:-help}
lessons=${2:-}
lesson_re=$(echo "$lessons" | tr ',' '|') # 07,09 -> 07|09
case "$step" in
  build)
    cmake -S . -B "$B" -DCMAKE_CUDA_ARCHITECTURES=native -DATTN_GPU_VARIANTS=ON -DATTN_PARALLEL_GPU_CHECKS=ON \
      >"$LOG/build.log" 2>&1 &&
      cmake --build "$B" -j "$(nproc)" >>"$LOG/build.log" 2>&1
    rc=$?
    grep -E "error" "$LOG/build.log" | head -20
    echo "build: exit $rc"
    ;;
  tests)
    if [ -n "$lessons" ]; then
      ctest --test-dir "$B" -R "^(solutions|selftest\.stubs)\.($lesson_re)$" --output-on-failure >"$LOG/tests.log" 2>&1
    else
      ctest --test-dir "$B" -R "^(common|solutions|selftest\.stubs)" --output-on-failure >"$LOG/tests.log" 2>&1
    fi
    rc=$?
    # each solution binary's speed and synthesis lines, read from the run above (CTest keeps every
    # test's output in LastTest.log), so the binaries do not run twice
    python3 - "$B/Testing/Temporary/LastTest.log" <<'PY'
import sys
sys.path.insert(0, "tools")  # course_cli
from course_cli import parse_last_test_log
with open(sys.argv[1], errors="replace") as f:
    outputs = parse_last_test_log(f.read())
for name in sorted(outputs):
    if name.startswith("solutions."):
        for line in outputs[name].splitlines():
            if line.startswith("[speed]") or "Synthesis" in line:
                print(f"{name}: {line.strip()}")
PY
    tail -5 "$LOG/tests.log"
    ;;
  variants)
    # known-wrong variants run only their suites' correctness tests: four at a time (the build step
    # configures ATTN_PARALLEL_GPU_CHECKS=ON; one at a time they took about 6 minutes on an H200); the
    # cheats are graded with speed tests and sanitizers, so they run alone (contention must not cost
    # them points)
    only_re=${lesson_re:-[0-9]+}
    ctest --test-dir "$B" -R "^selftest\.wrong\.($only_re)\." -j 4 --output-on-failure >"$LOG/variants.log" 2>&1
    rc=$?
    ctest --test-dir "$B" -R "^selftest\.cheat\.($only_re)\." --output-on-failure >>"$LOG/variants.log" 2>&1
    rc=$(( rc | $? ))
    grep -E "tests passed|Failed|\*\*\*" "$LOG/variants.log" | tail -20
    ;;
  grade)
    only=()
    for n in $(echo "$lessons" | tr ',' ' '); do only+=(--lesson "$n"); done
    python3 tools/grading/grade.py solutions --build-dir "$B" "${only[@]}" --results "$LOG/results_solutions.json" \
      >"$LOG/grade.log" 2>&1
    rc=$?
    python3 tools/grading/grade.py --build-dir "$B" "${only[@]}" --no-sanitize --results "$LOG/results_stubs.json" \
      >>"$LOG/grade.log" 2>&1
    grep -E "^(Grading|Total)" "$LOG/grade.log"
    ;;
  sanitize)
    # optional: the lessons to check, e.g. `sanitize 07,08,09` (default: all). memcheck runs every
    # CUDA test of a lesson, the past-2^31 ones included, one CTest entry per test
    # (sanitizer.memcheck.NN.TEST; their times on an H100 are in docs/MAINTAINERS.md: most take
    # seconds, the tests past 2^31 elements minutes, and memcheck.09.large_offsets did not finish in
    # 420 s). SANITIZE_RE (a CTest regex, in place of the lessons) narrows the step, e.g.
    # SANITIZE_RE='memcheck\.09\.large' for one test, so that a check that does not fit one device
    # call can be split; each entry's time is in the log.
    only=()
    [ -n "$lessons" ] && only=(-R "\.($lesson_re)(\.|$)")
    [ -n "${SANITIZE_RE:-}" ] && only=(-R "$SANITIZE_RE")
    # three at a time (ATTN_PARALLEL_GPU_CHECKS, set by the build step)
    ctest --test-dir "$B" -L sanitizer "${only[@]}" -j 3 --output-on-failure >"$LOG/sanitize.log" 2>&1
    rc=$?
    grep -E "Test +#" "$LOG/sanitize.log" | sed 's/^ *[0-9]*\/[0-9]* //'
    tail -4 "$LOG/sanitize.log"
    ;;
  figures)
    # figures [NAME [SETS]]: SETS picks readme_figures.sh's sets (default all), e.g. `figures h200 fused,decode`
    # for lessons 10 and 11 alone (figures/bench_{fused,decode}_NAME.csv and _time.png)
    ATTN_BUILD_DIR="$B" tools/bench/readme_figures.sh "${2:-h200}" figures "${3:-}" >"$LOG/figures.log" 2>&1
    rc=$?
    tail -20 "$LOG/figures.log"
    ;;
  nsa)
    "$B/bin/bench" --suite nsa --csv "figures/bench_nsa_${2:-h200}.csv" >"$LOG/nsa.log" 2>&1
    rc=$?
    python3 tools/bench/plot.py --nsa "figures/bench_nsa_${2:-h200}.csv" --out figures >>"$LOG/nsa.log" 2>&1
    tail -40 "$LOG/nsa.log"
    ;;
  bench)
    only=()
    [ -n "$lessons" ] && only=(--lesson "$lessons")
    "$B/bin/bench" "${only[@]}" --keep-going --csv "$LOG/bench.csv" >"$LOG/bench.log" 2>&1
    rc=$?
    grep -E "^(run|peak|[0-9][0-9] )|FAILED|bench:|PASS|MISS" "$LOG/bench.log" | tail -60
    ;;
  course_bench)
    only=()
    for n in $(echo "$lessons" | tr ',' ' '); do only+=(--lesson "$n"); done
    python3 tools/bench/bench_lesson.py --build-dir "$B" "${only[@]}" --csv "$LOG/bench_course.csv" \
      >"$LOG/course_bench.log" 2>&1
    rc=$?
    tail -60 "$LOG/course_bench.log"
    ;;
  before_after)
    # the benchmark of this tree, and a copy of this tree whose solutions of the chosen lessons are
    # COMMIT's (their .c/.cu/.h/.cuh files; the benchmark calls only the lessons' general API
    # functions, which the refactors kept), built for the same GPU, then both run on each lesson's bench
    # shapes, alternating, and joined by row
    old_commit=${2:?before_after needs a commit}
    lessons=${3:-05,06,07,08,09}
    W=${TMPDIR:-/tmp}/attn_before
    rm -rf "$W" && mkdir -p "$W" && git archive HEAD | tar -x -C "$W"
    for d in solutions/*; do
      n=$(basename "$d")
      case ",$lessons," in *",${n:0:2},"*) ;; *) continue ;; esac
      rm -f "$W/$d"/*.c "$W/$d"/*.cu "$W/$d"/*.h "$W/$d"/*.cuh
      git archive "$old_commit" "$d" | tar -x -C "$W" --wildcards '*.c' '*.cu' '*.h' '*.cuh' 2>/dev/null
      git archive "$old_commit" "$d" | tar -x -C "$W" --exclude='*.md' --exclude='lesson.json' 2>/dev/null
    done
    { cmake -S "$W" -B "$W/build" -DCMAKE_CUDA_ARCHITECTURES=native -DATTN_SELFTEST=OFF &&
      cmake --build "$W/build" -j "$(nproc)" --target bench; } >"$LOG/before_after.log" 2>&1 || {
      tail -20 "$LOG/before_after.log"; echo "before_after: the copy with $old_commit's solutions does not build"; exit 1; }
    rc=0
    for round in 1 2; do
      "$W/build/bin/bench" --lesson "$lessons" --role solution --keep-going --no-peaks \
        --csv "$LOG/before_$round.csv" >>"$LOG/before_after.log" 2>&1 || rc=1
      "$B/bin/bench" --lesson "$lessons" --role solution --keep-going --no-peaks \
        --csv "$LOG/after_$round.csv" >>"$LOG/before_after.log" 2>&1 || rc=1
    done
    python3 - "$LOG" "$old_commit" <<'PY'
import csv, os, statistics, sys
log, old = sys.argv[1], sys.argv[2]
def rows(prefix):
    out = {}
    for r in (1, 2):
        path = os.path.join(log, f"{prefix}_{r}.csv")
        if not os.path.exists(path):
            continue
        for row in csv.DictReader(open(path)):
            key = tuple(row.get(k, "") for k in ("kernel", "config", "B", "M", "N", "H", "G", "D", "causal",
                                                 "window", "keep"))
            out.setdefault(key, []).append(float(row["ms"]))
    return {k: statistics.median(v) for k, v in out.items()}
before, after = rows("before"), rows("after")
print(f"{'kernel':<28} {'config B M N H G D causal window keep':<44} {old + ' ms':>12} {'this ms':>10} {'this/old':>9}")
for key in sorted(set(before) & set(after)):
    b, a = before[key], after[key]
    print(f"{key[0]:<28} {' '.join(key[1:]):<44} {b:12.4f} {a:10.4f} {a / b:9.3f}")
PY
    ;;
  python)
    py=${PYTHON:-python3}
    export NSA_COURSE_LIB="$B/lib/libnsa_course.so"
    ctest --test-dir "$B" -L python --output-on-failure >"$LOG/python.log" 2>&1
    rc=$?
    "$py" python/tests/test_torch.py -v >>"$LOG/python.log" 2>&1 || rc=1
    "$py" python/examples/nsa_torch_example.py >>"$LOG/python.log" 2>&1 || rc=1
    "$py" python/examples/needle_demo.py --device cuda >>"$LOG/python.log" 2>&1 || rc=1
    "$py" python/examples/dump_weights.py --device cuda --out "$LOG/nsa_weights_gpu.npz" >>"$LOG/python.log" 2>&1 &&
      "$py" python/examples/plot_weights.py "$LOG/nsa_weights_gpu.npz" >>"$LOG/python.log" 2>&1 || rc=1
    grep -E "Test +#|^(linear|mean_pool|paper|per_head) |^(dense|sliding|NSA|Needle|CUDA path)|figure:|^Ran |^OK|FAIL" \
      "$LOG/python.log" | tail -60
    ;;
  *)
    sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
exit $rc
