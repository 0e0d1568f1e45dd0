#!/usr/bin/env bash
# window_profile.sh - where lesson 09's window kernel (selected_window_kernel) spends its time, and two
# candidate changes, timed side by side. For maintainers, on a GPU machine (sm_90); a few minutes on an
# H200 with 16 cores.
#
# For each variant it copies the tree to a scratch folder, rewrites lesson 09's solution there with the
# edits of tools/bench/window_variants.py (the committed kernel is never touched), and builds bench_nsa:
#   base        the kernel as committed
#   prof        the edit `profile` with -DATTN_WIN_PROFILE: each launch prints one "[prof]" line, the
#               cycles an average warp spends reading its list, sorting, building the union, getting to
#               its first tile (list, sort, union, loop0: each counted from the warp's start), then,
#               summed over its tiles, waiting for its tile's stage to be issued (slot), for the bytes to
#               land (data), computing (compute), releasing the stage (release), storing O (store); its
#               total; and the block's span (the first warp's start to the last warp's end)
#   pf, pf2     the edit `prefetch`: warp 0 asks L2 for the Q rows and lists of the block 132 (pf) or
#               264 (pf2) places later in the grid (the H200 has 132 multiprocessors)
#   early       the edit `early`: the first tiles issued as soon as the union is known, Q read straight
#               into registers; its test_09_solutions runs too
#   early_prof  early with the counters
#   early_pf    early with the prefetch of pf; its test_09_solutions runs too
# then prints the counters at N = 65536 (random and local lists) and times base, pf, pf2, early and
# early_pf at N = 65536 (mean-pool and paper lists), twice, interleaved. The counters need every warp
# active (N a multiple of 8, as here) and cost time themselves (12.83 ms against 12.53 on 2026-12-04):
# read their split, not their total. Logs under $OUT (default ./gpu-logs).
#
#   source .gpu/env.sh && tools/bench/window_profile.sh
#
# To keep a candidate that wins and passes: apply its edit to the solution (python3
# tools/bench/window_variants.py solutions/09_selected_attention/selected_attention.cu early), run
# ./course stubs, run lesson 09's tests, variants and sanitizers on the GPU, and drop the edit from
# window_variants.py.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
LOG=${OUT:-gpu-logs}
mkdir -p "$LOG"
LOG=$(cd "$LOG" && pwd)
export PATH=/usr/local/cuda/bin:$PATH
SCRATCH=$(mktemp -d /tmp/window_profile.XXXXXX)
trap 'rm -rf "$SCRATCH"' EXIT # also when a build fails: seven copies of the tree
SOL=solutions/09_selected_attention/selected_attention.cu
variant() { # name, edits (comma-separated, may be empty), CUDA flags, extra targets
  local d="$SCRATCH/$1"
  mkdir -p "$d"
  (cd "$ROOT" && tar --exclude='./build*' --exclude=./.git --exclude=./.gpu --exclude=./gpu-logs -cf - .) | (cd "$d" && tar xf -)
  if [ -n "$2" ] && ! python3 "$d/tools/bench/window_variants.py" "$d/$SOL" "$2" >"$LOG/edit_$1.log" 2>&1; then
    echo "window_profile.sh: $1: $(cat "$LOG/edit_$1.log")"
    return 1
  fi
  cmake -S "$d" -B "$d/build" -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_CUDA_FLAGS="$3" >"$LOG/configure_$1.log" 2>&1 &&
    cmake --build "$d/build" -j "$(nproc)" --target bench_nsa ${4:-} >"$LOG/build_$1.log" 2>&1 ||
    { echo "window_profile.sh: the $1 build failed:"; tail -20 "$LOG/build_$1.log"; return 1; }
}
variant base "" "" &
variant prof profile "-DATTN_WIN_PROFILE" &
variant pf prefetch "-DATTN_WIN_PREFETCH=132" &
variant pf2 prefetch "-DATTN_WIN_PREFETCH=264" &
variant early early "" test_09_solutions &
variant early_prof early,profile "-DATTN_WIN_PROFILE" &
variant early_pf early,prefetch "-DATTN_WIN_PREFETCH=132" test_09_solutions &
wait
for v in base prof pf pf2 early early_prof early_pf; do [ -x "$SCRATCH/$v/build/bin/bench_nsa" ] || exit 1; done
[ "${WINDOW_PROFILE_BUILD_ONLY:-0}" = 1 ] && { echo "window_profile.sh: all seven variants built"; exit 0; }
bench() { "$SCRATCH/$1/build/bin/bench_nsa" --N 65536 --no-dense "${@:2}"; }
for v in early early_pf; do
  echo "== $v: lesson 09's tests"
  "$SCRATCH/$v/build/bin/test_09_solutions" --jobs 1 >"$LOG/test_09_$v.log" 2>&1
  grep -E "Synthesis|^\[speed\]" "$LOG/test_09_$v.log"
done
for v in prof early_prof; do
  for lists in "" --local-queries; do
    echo "== $v ${lists:-(random lists)}"
    bench "$v" --config mean $lists >"$LOG/$v${lists:+_local}.log" 2>&1
    grep "\[prof\]" "$LOG/$v${lists:+_local}.log" | tail -1
  done
done
k=0
for v in base pf pf2 early early_pf base pf pf2 early early_pf; do
  k=$((k + 1))
  echo "== $v (run $k)"
  bench "$v" --config mean,paper >"$LOG/time_${k}_$v.log" 2>&1
  grep -E "^(mean|paper) .*selected_attention" "$LOG/time_${k}_$v.log"
done
