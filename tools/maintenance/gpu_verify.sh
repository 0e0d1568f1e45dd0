#!/usr/bin/env bash
# Verify the course on a GPU machine in steps that each fit a few minutes (run them in this order; later
# steps reuse the build folder of the earlier ones). Logs go to $OUT (or ./gpu-logs) and the last lines
# of each step to stdout.
#
#   tools/maintenance/gpu_verify.sh build      configure and build everything, GPU-only variants included
#                                              (ARCH: the CUDA architectures, default native; TARGETS: only these)
#   tools/maintenance/gpu_verify.sh tests      solutions, stubs and harness tests (speed and synthesis lines printed) [LESSONS]
#   tools/maintenance/gpu_verify.sh variants   every known-wrong variant and cheat must be rejected       [LESSONS]
#   tools/maintenance/gpu_verify.sh grade      ./course grade of the solutions (full points) and the stubs (0) [LESSONS]
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
#   tools/maintenance/gpu_verify.sh solutions  the solutions' tests alone (speed and synthesis lines printed)  [LESSONS]
#   tools/maintenance/gpu_verify.sh speed      the solutions' speed tests alone ([speed] lines printed)       [LESSONS]
#   tools/maintenance/gpu_verify.sh cheats     the cheats alone, the two isolation cheats first               [LESSONS]
#   tools/maintenance/gpu_verify.sh stubs      the stubs' tests alone (every part must fail)                  [LESSONS]
#   tools/maintenance/gpu_verify.sh public     lessons 10 and 11 beside the public kernels, in one call: bench --lesson 10,
#                                              bench_public_nsa.py (--join) and bench_triton_nsa.py on the checkouts
#                                              FLA_DIR, XL_DIR and MDY_DIR (each skipped, with a message, without it), then
#                                              bench --lesson 11 and bench_sdpa_decode.py (PYTHON: with PyTorch)
#   tools/maintenance/gpu_verify.sh session [BUDGET]   the most informative checks in order within BUDGET
#                                              seconds (default 570) from a fresh machine: build (arch 90, only
#                                              the test binaries and the benchmark), solutions 01, 10, 11,
#                                              public, speed 04, cheats, grade 01,11 (SESSION_GRADE), the other
#                                              solutions, stubs; each step gets the time left (at most its cap),
#                                              logs under $OUT/session/, a summary at the end
# LESSONS (optional): a comma-separated list such as 07,08,09 limits the step to those lessons (the
# harness tests of `tests` run only without it). DRY_RUN=1 prints the commands of build, grade and the
# steps from `solutions` on instead of running them (no GPU needed).
set -uo pipefail
SELF=$(cd "$(dirname "$0")" && pwd)/$(basename "$0") # `session` runs its steps through it
cd "$(dirname "$0")/../.."
B=${ATTN_BUILD_DIR:-build-gpu}
LOG=${OUT:-gpu-logs}
mkdir -p "$LOG"
export PATH=/usr/local/cuda/bin:$PATH
step=${1:-help}
lessons=${2:-}
lesson_re=$(echo "$lessons" | tr ',' '|') # 07,09 -> 07|09

# run LOG CMD...: CMD with its output appended to LOG; with DRY_RUN=1 the command is printed instead
# (an argument with characters the shell would read is printed in single quotes)
run() {
  local log=$1 a line="+"
  shift
  if [ -n "${DRY_RUN:-}" ]; then
    for a in "$@"; do
      if [[ $a =~ ^[A-Za-z0-9_./=:,+@%-]+$ ]]; then line+=" $a"; else line+=" '${a//\'/\'\\\'\'}'"; fi
    done
    echo "$line >>$log"
    return 0
  fi
  "$@" >>"$log" 2>&1
}

# fresh LOG...: empty the logs (and CSV files) a step writes (not in a dry run)
fresh() { [ -n "${DRY_RUN:-}" ] || rm -f "$@"; }

# The lesson numbers (a folder NN_name in solutions/ with its tests/test_NN_name.c), one per line.
lesson_nums() {
  local d n
  for d in solutions/[0-9][0-9]_*; do
    n=$(basename "$d")
    [ -f "tests/test_$n.c" ] && echo "${n:0:2}"
  done
}

# speed_lines: each solution binary's speed and synthesis lines, read from the last ctest run (CTest
# keeps every test's output in LastTest.log), so that the binaries do not run twice
speed_lines() {
  [ -n "${DRY_RUN:-}" ] && return 0
  python3 - "$B/Testing/Temporary/LastTest.log" <<'PY'
import sys
sys.path.insert(0, "tools")  # course_cli
from course_cli import parse_last_test_log
try:
    with open(sys.argv[1], errors="replace") as f:
        outputs = parse_last_test_log(f.read())
except OSError:
    outputs = {}
for name in sorted(outputs):
    if name.startswith("solutions."):
        for line in outputs[name].splitlines():
            if line.startswith("[speed]") or "Synthesis" in line:
                print(f"{name}: {line.strip()}")
PY
}
case "$step" in
  build)
    # ARCH (default native) and TARGETS (a space-separated list; default everything) make the build of
    # `session`: the GPU variants stay configured (the cheats that need a GPU are then real tests), but
    # only the named targets are built
    targets=()
    [ -n "${TARGETS:-}" ] && targets=(--target ${TARGETS})
    fresh "$LOG/build.log"
    run "$LOG/build.log" cmake -S . -B "$B" -DCMAKE_CUDA_ARCHITECTURES="${ARCH:-native}" -DATTN_GPU_VARIANTS=ON \
      -DATTN_PARALLEL_GPU_CHECKS=ON &&
      run "$LOG/build.log" cmake --build "$B" -j "$(nproc)" "${targets[@]}"
    rc=$?
    grep -E "error" "$LOG/build.log" 2>/dev/null | head -20
    echo "build: exit $rc"
    ;;
  tests)
    if [ -n "$lessons" ]; then
      ctest --test-dir "$B" -R "^(solutions|selftest\.stubs)\.($lesson_re)$" --output-on-failure >"$LOG/tests.log" 2>&1
    else
      ctest --test-dir "$B" -R "^(common|solutions|selftest\.stubs)" --output-on-failure >"$LOG/tests.log" 2>&1
    fi
    rc=$?
    speed_lines
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
    fresh "$LOG/grade.log"
    run "$LOG/grade.log" python3 tools/grading/grade.py solutions --build-dir "$B" "${only[@]}" \
      --results "$LOG/results_solutions.json"
    rc=$?
    run "$LOG/grade.log" python3 tools/grading/grade.py --build-dir "$B" "${only[@]}" --no-sanitize \
      --results "$LOG/results_stubs.json"
    grep -E "^(Grading|Total)|isolation:" "$LOG/grade.log" 2>/dev/null
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
  solutions)
    fresh "$LOG/solutions.log"
    run "$LOG/solutions.log" ctest --test-dir "$B" -R "^solutions\.(${lesson_re:-[0-9]+})$" --output-on-failure
    rc=$?
    speed_lines
    grep -E "tests passed|\*\*\*" "$LOG/solutions.log" 2>/dev/null | tail -20
    ;;
  speed)
    # the speed suite of each solution binary, run directly (alone on the GPU, as the grader runs it)
    rc=0
    for n in $( [ -n "$lessons" ] && echo "${lessons//,/ }" || lesson_nums); do
      fresh "$LOG/speed_$n.log"
      run "$LOG/speed_$n.log" "$B/bin/test_${n}_solutions" --jobs 1 --filter 'speed/*' || rc=1
      grep -E "^\[speed\]|Synthesis|No such file" "$LOG/speed_$n.log" 2>/dev/null | sed "s/^/speed.$n: /"
    done
    ;;
  cheats)
    # one at a time (they are graded with speed tests and sanitizers); first the two that show the
    # isolation of the lesson's code (docs/MAINTAINERS.md, "Verifying on a GPU machine")
    only_re=${lesson_re:-[0-9]+}
    first='cheat_answers_before_done|cheat_keeps_gpu_busy'
    fresh "$LOG/cheats.log"
    run "$LOG/cheats.log" ctest --test-dir "$B" -R "^selftest\.cheat\.($only_re)\.($first)$" --output-on-failure
    rc=$?
    run "$LOG/cheats.log" ctest --test-dir "$B" -R "^selftest\.cheat\.($only_re)\." -E "\.($first)$" \
      --output-on-failure
    rc=$(( rc | $? ))
    grep -E "Test +#|tests passed" "$LOG/cheats.log" 2>/dev/null | sed 's/^ *[0-9]*\/[0-9]* //'
    ;;
  stubs)
    fresh "$LOG/stubs.log"
    run "$LOG/stubs.log" ctest --test-dir "$B" -R "^selftest\.stubs\.(${lesson_re:-[0-9]+})$" --output-on-failure
    rc=$?
    grep -E "Test +#|tests passed" "$LOG/stubs.log" 2>/dev/null | sed 's/^ *[0-9]*\/[0-9]* //'
    ;;
  public)
    # lesson 10's fused forward and lesson 11's decode beside the public kernels, all in this one call
    # (so on one GPU, one day): the course's rows first, then the public scripts on the same shapes
    py=${PYTHON:-python3}
    P=$LOG/public.log
    fresh "$P" "$LOG/public_l10.csv" "$LOG/public_l11.csv" "$LOG/public_triton.csv" "$LOG/public_sdpa_decode.csv"
    note() { # to the log (printed at the end), or to stdout in a dry run
      if [ -n "${DRY_RUN:-}" ]; then echo "public: $*"; else echo "public: $*" >>"$P"; fi
    }
    # py_script MODULES NAME ARGS...: a public script, skipped where PYTHON lacks one of MODULES (a,b);
    # its exit 77 (no CUDA device) is a skip, not a failure
    py_script() {
      if [ -z "${DRY_RUN:-}" ] && ! "$py" -c "import $1" >/dev/null 2>&1; then
        note "$2 skipped: $py cannot import $1 (PYTHON names the interpreter)"
        return 0
      fi
      run "$P" "$py" "tools/bench/$2" "${@:3}"
      local s=$?
      [ "$s" = 77 ] && { note "$2: no CUDA device (skipped)"; s=0; }
      return "$s"
    }
    pub=() mdy=()
    for v in FLA_DIR XL_DIR MDY_DIR; do
      dir=${!v:-}
      case $v in FLA_DIR) flag=--fla ;; XL_DIR) flag=--xl ;; *) flag=--mdy ;; esac
      if [ -z "$dir" ]; then
        note "$v is not set: $flag skipped"
      elif [ ! -d "$dir" ]; then
        note "$v=$dir is not a folder: $flag skipped"
      elif [ "$v" = MDY_DIR ]; then
        mdy=("$flag" "$dir") # bench_public_nsa.py only: bench_triton_nsa.py has no mdy666 kernel
      else
        pub+=("$flag" "$dir")
      fi
    done
    run "$P" "$B/bin/bench" --lesson 10 --keep-going --csv "$LOG/public_l10.csv"
    rc=$?
    if [ ${#pub[@]} -gt 0 ] || [ ${#mdy[@]} -gt 0 ]; then
      py_script torch,triton bench_public_nsa.py "${pub[@]}" "${mdy[@]}" --csv "$LOG/public_l10.csv" \
        --join "$LOG/public_l10.csv" || rc=1
    fi
    if [ ${#pub[@]} -gt 0 ]; then
      py_script torch,triton bench_triton_nsa.py "${pub[@]}" --csv "$LOG/public_triton.csv" || rc=1
    fi
    if [ ${#pub[@]} -eq 0 ] && [ ${#mdy[@]} -eq 0 ]; then
      note "no public checkout (FLA_DIR: fla-org/flash-linear-attention, XL_DIR: XunhaoLai/native-sparse-attention-triton," \
        "MDY_DIR: mdy666/Scalable-Flash-Native-Sparse-Attention): bench_public_nsa.py and bench_triton_nsa.py skipped"
    fi
    run "$P" "$B/bin/bench" --lesson 11 --keep-going --csv "$LOG/public_l11.csv" || rc=1
    py_script torch bench_sdpa_decode.py --csv "$LOG/public_sdpa_decode.csv" || rc=1
    [ -z "${DRY_RUN:-}" ] && tail -120 "$P"
    ;;
  session)
    # The most informative checks in order, within BUDGET seconds of wall clock from a fresh machine
    # (one device call of at most ~570 s on 16 cores and one H100/H200). Each step is this script run
    # again under `timeout` with the time left (at most the step's cap, so that one slow step does not
    # take the later ones' time), its logs in $OUT/session/NN_step/.
    budget=${2:-570}
    case "$budget" in '' | *[!0-9]*) echo "session: BUDGET is a number of seconds (got '$budget')"; exit 2 ;; esac
    deadline=$(( $(date +%s) + budget ))
    S=$LOG/session
    mkdir -p "$S"
    nums=$(lesson_nums | tr '\n' ' ')
    rest=$(for n in $nums; do case $n in 01 | 10 | 11) ;; *) printf '%s,' "$n" ;; esac; done)
    rest=${rest%,}
    targets="bench"
    for n in $nums; do targets="$targets test_${n}_solutions test_${n}_stubs"; done
    summary=()
    k=0
    # sub NAME CAP STEP [ARGS...]: the step, its exit status (75: not run, too little time left)
    sub() {
      local name=$1 cap=$2
      shift 2
      k=$((k + 1))
      local dir left t0 s
      dir=$S/$(printf '%02d' "$k")_$name
      left=$(( deadline - $(date +%s) - 10 ))
      [ "$left" -gt "$cap" ] && left=$cap
      if [ "$left" -lt 15 ]; then
        summary+=("$name: not run (${left} s left)")
        return 75
      fi
      mkdir -p "$dir"
      echo "=== session: $name ($*), at most $left s"
      t0=$(date +%s)
      if [ -n "${DRY_RUN:-}" ]; then
        echo "+ timeout $left gpu_verify.sh $*  (OUT=$dir)"
        OUT=$dir ATTN_BUILD_DIR=$B "$SELF" "$@" | tee "$dir/out.txt"
        s=${PIPESTATUS[0]}
      else
        OUT=$dir ATTN_BUILD_DIR=$B timeout -k 10 "$left" "$SELF" "$@" >"$dir/out.txt" 2>&1
        s=$?
        tail -15 "$dir/out.txt"
      fi
      local took=$(( $(date +%s) - t0 ))
      case $s in
        0) summary+=("$name: ok in $took s") ;;
        124 | 137) summary+=("$name: TIMED OUT after $took s (limit $left s)") ;;
        *) summary+=("$name: exit $s in $took s") ;;
      esac
      return "$s"
    }
    rc=0
    ARCH=90 TARGETS=$targets sub build 400 build ||
      { echo "session: the build did not complete; nothing else can run"; rc=1; }
    if [ "$rc" = 0 ]; then
      sub solutions_01 60 solutions 01 || rc=1               # the runner process, CUDA IPC, the sandbox
      sub solutions_10_11 150 solutions 10,11 || rc=1
      sub public 150 public || rc=1
      sub speed_04 45 speed 04 || rc=1                       # the shortest timed call: the protocol's cost
      sub cheats 150 cheats || rc=1
      sub grade 150 grade "${SESSION_GRADE:-01,11}" || rc=1
      [ -n "$rest" ] && { sub solutions_rest 200 solutions "$rest" || rc=1; }
      sub stubs 120 stubs || rc=1
    fi
    echo
    echo "=== session summary ($(( budget - (deadline - $(date +%s)) )) s of $budget)"
    printf '%s\n' "${summary[@]}"
    for f in "$S"/*/out.txt; do # each step's Synthesis, [speed], isolation, total and ctest lines, once
      [ -f "$f" ] || continue
      d=$(basename "$(dirname "$f")")
      grep -E "Synthesis|\[speed\]|isolation:|^Total|tests passed|public:" "$f" | awk '!seen[$0]++' | sed "s|^|${d#??_}: |"
    done | head -200
    ;;
  *)
    awk 'NR > 1 { if (!/^#/) exit; sub(/^# ?/, ""); print }' "$SELF"
    exit 2
    ;;
esac
exit $rc
