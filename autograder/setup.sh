#!/usr/bin/env bash
# Gradescope autograder set-up (runs once, when Gradescope builds the autograder image).
#
# Installs what the course needs (cmake, python3, Criterion, a C compiler; the CUDA toolkit must
# already be in the image), then configures the course's build and compiles the shared harness and
# every lesson's tests against the stubs in lessons/. Grading a submission afterwards recompiles
# only the learner's files. See autograder/README.md.
#
# Environment (all optional; the defaults are Gradescope's layout):
#   AUTOGRADER_ROOT      default /autograder
#   ATTN_COURSE_DIR      the course checkout; default $AUTOGRADER_ROOT/source, or the folder above
#                        this script when that one holds no course (running it from a clone)
#   ATTN_BUILD_DIR       the build folder, relative to the course (default build, as ./course uses)
#   ATTN_CUDA_ARCH       CUDA architectures to build for. Default: the GPU in this machine, or
#                        "80-real;90" when there is none (Ampere machine code, Hopper machine code
#                        and PTX for newer GPUs). Gradescope usually builds the image on a machine
#                        without a GPU: set CUDA_ARCH_DEFAULT below to your grading GPU (e.g. 90 for
#                        an H100, 80 for an A100, 89 for an L4) for a faster build.
#   ATTN_SETUP_LESSONS   lessons to build now, e.g. "01 02" (default: every lesson); "none": only the
#                        shared harness (each lesson is then built when it is first graded)
#   ATTN_KEEP_SOLUTIONS  1: keep the reference solutions readable. By default their .c/.cu/.cuh files are
#                        replaced by the stubs, because a submission's code is compiled and run in
#                        this same checkout and could otherwise #include a solution. Never done in a
#                        git checkout (a clone of the course keeps its solutions).
set -euo pipefail

CUDA_ARCH_DEFAULT="80-real;90"

say() { printf '[setup] %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

AUTOGRADER_ROOT=${AUTOGRADER_ROOT:-/autograder}
here=$(cd "$(dirname "$0")" && pwd)
if [ -n "${ATTN_COURSE_DIR:-}" ]; then
  COURSE_DIR=$ATTN_COURSE_DIR
elif [ -f "$AUTOGRADER_ROOT/source/course" ]; then
  COURSE_DIR=$AUTOGRADER_ROOT/source
elif [ -f "$here/../course" ]; then
  COURSE_DIR=$here/..
else
  die "no course checkout in $AUTOGRADER_ROOT/source (the zip must hold the course's files at its root; see autograder/README.md)"
fi
COURSE_DIR=$(cd "$COURSE_DIR" && pwd)
[ -f "$COURSE_DIR/course" ] && [ -f "$COURSE_DIR/CMakeLists.txt" ] || die "$COURSE_DIR is not the course (no course script or CMakeLists.txt)"
cd "$COURSE_DIR"
chmod +x course 2>/dev/null || true
BUILD_DIR=${ATTN_BUILD_DIR:-build}
say "course: $COURSE_DIR, build folder: $BUILD_DIR"

# ------------------------------------------------------------------ packages
have_criterion() {
  local d prefixes=${CMAKE_PREFIX_PATH:-}
  for d in /usr /usr/local ${prefixes//:/ }; do
    [ -f "$d/include/criterion/criterion.h" ] && return 0
  done
  return 1
}
need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v make >/dev/null 2>&1 || need+=(make)
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v cc >/dev/null 2>&1 && command -v c++ >/dev/null 2>&1 || need+=(gcc g++)
have_criterion || need+=(libcriterion-dev)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo"; else
      die "missing ${need[*]} and not root: install them first"
    fi
  fi
  command -v apt-get >/dev/null 2>&1 || die "missing ${need[*]} and no apt-get: install them first"
  say "installing ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH=/usr/local/cuda/bin:$PATH
fi
command -v nvcc >/dev/null 2>&1 ||
  die "nvcc not found: the image must have the CUDA toolkit (for example an nvidia/cuda devel base image)"
say "$(nvcc --version | tail -n1)"

# ------------------------------------------------------------------ hide the solutions
# The build needs solutions/NN_name/ to exist (that is how it finds the lessons), not the solutions'
# code: overwrite each solution .c/.cu/.cuh with the stub of the same name, keeping every file name.
if [ "${ATTN_KEEP_SOLUTIONS:-0}" != 1 ] && [ -d solutions ] && [ ! -e .git ]; then
  hidden=0
  for f in solutions/[0-9][0-9]_*/*.c solutions/[0-9][0-9]_*/*.cu solutions/[0-9][0-9]_*/*.cuh; do
    [ -f "$f" ] || continue
    stub="lessons/${f#solutions/}"
    if [ -f "$stub" ]; then cp "$stub" "$f"; else : >"$f"; fi
    hidden=$((hidden + 1))
  done
  say "replaced $hidden solution files by the stubs (ATTN_KEEP_SOLUTIONS=1 keeps them)"
fi

# ------------------------------------------------------------------ configure
if [ -n "${ATTN_CUDA_ARCH:-}" ]; then
  arch=$ATTN_CUDA_ARCH
else
  arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n1 | tr -d ' .') || true
  [[ "$arch" =~ ^[0-9]+$ ]] || arch=$CUDA_ARCH_DEFAULT
fi
mkdir -p "$BUILD_DIR"
say "configuring for CUDA architecture(s) $arch (self-tests off: only what grading needs)"
# ATTN_SELFTEST=OFF: the autograder grades; it does not build the stubs and known-wrong variants.
# run_autograder passes this architecture on to ./course, so grading never reconfigures.
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CUDA_ARCHITECTURES:STRING=$arch" -DATTN_SELFTEST=OFF \
  >"$BUILD_DIR/configure.log" 2>&1 || { cat "$BUILD_DIR/configure.log" >&2; die "cmake configure failed"; }

# ------------------------------------------------------------------ build
jobs=$(nproc 2>/dev/null || echo 2)
say "building the shared harness (nvcc is slow: a few minutes)"
cmake --build "$BUILD_DIR" --target attn_common -j "$jobs" >"$BUILD_DIR/build.log" 2>&1 ||
  { tail -n 60 "$BUILD_DIR/build.log" >&2; die "the shared harness does not build"; }

# Warm-up: grade the stubs once, through ./course grade itself, so that every lesson's tests are
# built and grading a submission recompiles only the learner's files. The stubs score 0; what
# matters is that grading runs to its end here, in the image, and not first for a student.
if [ "${ATTN_SETUP_LESSONS:-}" = none ]; then
  say "done (no lesson built: ATTN_SETUP_LESSONS=none)"
  exit 0
fi
grade_args=()
if [ -n "${ATTN_SETUP_LESSONS:-}" ]; then
  for num in $ATTN_SETUP_LESSONS; do grade_args+=(--lesson "$num"); done
fi
if python3 tools/grading/grade.py --help 2>/dev/null | grep -q -- --no-sanitize; then grade_args+=(--no-sanitize); fi
say "grading the stubs once to build every lesson's tests (${grade_args[*]:-all lessons})"
if ! ATTN_BUILD_DIR=$BUILD_DIR ATTN_CUDA_ARCH=$arch ./course grade --results "$BUILD_DIR/setup_results.json" \
    "${grade_args[@]}" >"$BUILD_DIR/setup_grade.log" 2>&1; then
  cat "$BUILD_DIR/setup_grade.log" >&2
  die "./course grade failed on the stubs: the autograder would fail on every submission"
fi
[ -s "$BUILD_DIR/setup_results.json" ] || die "./course grade wrote no results (see $BUILD_DIR/setup_grade.log)"
# the stubs must build: a lesson that does not build here would score 0 for every student
if python3 - "$BUILD_DIR/setup_results.json" <<'PY'
import json, re, sys
tests = json.load(open(sys.argv[1])).get("tests", [])
bad = sorted({(re.match(r"Lesson \d+", t["name"]) or [t["name"]])[0] for t in tests
              if re.search(r"does not (compile|build)", t.get("output", ""))})
print("\n".join(bad))
sys.exit(1 if bad else 0)
PY
then :; else
  cat "$BUILD_DIR/setup_grade.log" >&2
  die "the stubs of the lessons above do not build: fix the course (or the image) first"
fi
say "done"
