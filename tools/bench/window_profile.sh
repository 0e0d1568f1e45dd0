#!/usr/bin/env bash
# window_profile.sh - where lesson 09's window kernel (selected_window_kernel) spends its time, and the
# candidate changes of tools/bench/window_variants.py, timed side by side. For maintainers, on a GPU
# machine (sm_90). All twenty-seven variants have not yet been run in one go: name a subset to stay within
# one device call (the seven of change 11 were estimated at a few minutes on an H200 with 16 cores).
#
#   source .gpu/env.sh && tools/bench/window_profile.sh [VARIANT ...]     (default: all of them)
#
# WINDOW_PROFILE_BUILD_ONLY=1 stops after the builds; WINDOW_PROFILE_SCRATCH=DIR builds there and keeps
# the builds (tools/bench/window_ncu.sh uses both).
#
# For each variant it copies the tree to a scratch folder, rewrites lesson 09's solution there with the
# edits of tools/bench/window_variants.py (the committed kernel is never touched), and builds bench_nsa
# (and test_09_solutions for the candidates). The variants:
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
#               into registers (candidate)
#   early_prof  early with the counters
#   early_pf    early with the prefetch of pf (candidate)
#   s1r         early + stream (tools/bench/window_stream.cuh), 1 window per block, rank order (candidate)
#   s2r, s3r    the same with 2 and 3 windows per block (candidates)
#   s2a         2 windows per block, ascending order (candidate)
#   s1al        1 window per block, ascending order, with the next tile's S before this one's softmax
#               (ATTN_WIN_LOOKAHEAD: the committed kernel's order, so it shows the lookahead alone)
#   s2rl, s3rl  2 and 3 windows per block, rank order, lookahead (candidates)
#   j2r         ATTN_WIN_JOINT: 16 positions per block in one union (sorted as 256 keys), each warp
#               serving two positions at once, rank order (candidate; 255 registers, 104 bytes spilled)
#   n1a, n3r    transport only (ATTN_WIN_NOCOMPUTE: the warps wait for their tiles and release them,
#               nothing computed, output wrong, not tested): the floor of the committed kernel's ring
#               (1 window, ascending) and of s3r's (3 windows, rank order) at 7 stages
#   nj2r        the same for j2r's ring: what one union of 16 lists saves in transport alone
#   c2, c4      the edit `cluster` (tools/bench/window_cluster.cuh): clusters of 2 or 4 blocks,
#               neighbouring windows, a tile that two or more of them chose read from L2 once and
#               multicast into the rings of those that chose it (2 or 4 of the 7 stages) (candidates)
#   nc2, nc4    their transport alone (ATTN_WIN_NOCOMPUTE): against n1a, whether L2 (which then serves
#               the 16- or 32-position union) or each multiprocessor's intake (still its own window's
#               union) limits the ring
#   sp, sp4     the edit `split`: a tile's K and V (sp) or its four 8 KB boxes (sp4) in stages of
#               their own, each released as soon as the warp has read it (candidates; measured on an
#               H100 on 2026-12-07: correct, 3.5% and 23% slower than base)
#   nj2r5       nj2r's transport with 5 stages instead of 7: the floor of j2q5's ring
#   j2q5, j2q5a 16 positions in one union, two per warp as j2r, but their Q in shared memory
#               (ATTN_WIN_QSMEM: 244 registers, no spill), 5 stages; rank order (j2q5) or ascending
#               (j2q5a) (candidates; measured on an H100 on 2026-12-07: correct, j2q5 1.3-2.0% faster
#               than base, j2q5a 1.8% slower; nj2r5 10.2-10.3 ms, as fast as nj2r)
# A candidate's test_09_solutions runs before it is timed. Then the counters at N = 65536 (random and
# local lists) for the profiled variants chosen, and every other variant chosen timed at N = 65536
# (mean-pool and paper lists), twice, interleaved. The counters need every warp active (N a multiple of
# 8, as here) and cost time themselves (12.83 ms against 12.53 on 2026-12-04): read their split, not
# their total. Logs under $OUT (default ./gpu-logs).
#
# To keep a candidate that wins and passes: apply its edits to the solution (python3
# tools/bench/window_variants.py solutions/09_selected_attention/selected_attention.cu early; for a
# stream variant, move window_stream.cuh's kernel into the solution with its ATTN_WIN_* values as
# constants; for a cluster variant, window_cluster.cuh's, with its ATTN_WIN_* values as constants and
# known-wrong variants of its own in tests/known_wrong_09.py, e.g. the mutations of
# cluster_protocol.py), run ./course stubs, run lesson 09's tests, variants and sanitizers on the GPU,
# and drop the edits from window_variants.py.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
LOG=${OUT:-gpu-logs}
mkdir -p "$LOG"
LOG=$(cd "$LOG" && pwd)
export PATH=/usr/local/cuda/bin:$PATH
SOL=solutions/09_selected_attention/selected_attention.cu

# name|edits|CUDA flags|kind (base: timed, prof: counters, cand: tested, then timed)
TABLE="base|||base
prof|profile|-DATTN_WIN_PROFILE|prof
pf|prefetch|-DATTN_WIN_PREFETCH=132|base
pf2|prefetch|-DATTN_WIN_PREFETCH=264|base
early|early||cand
early_prof|early,profile|-DATTN_WIN_PROFILE|prof
early_pf|early,prefetch|-DATTN_WIN_PREFETCH=132|cand
s1r|early,stream|-DATTN_WIN_PER_BLOCK=1 -DATTN_WIN_ORDER=1|cand
s2r|early,stream|-DATTN_WIN_PER_BLOCK=2 -DATTN_WIN_ORDER=1|cand
s3r|early,stream|-DATTN_WIN_PER_BLOCK=3 -DATTN_WIN_ORDER=1|cand
s2a|early,stream|-DATTN_WIN_PER_BLOCK=2 -DATTN_WIN_ORDER=0|cand
s1al|early,stream|-DATTN_WIN_PER_BLOCK=1 -DATTN_WIN_ORDER=0 -DATTN_WIN_LOOKAHEAD=1|cand
s2rl|early,stream|-DATTN_WIN_PER_BLOCK=2 -DATTN_WIN_ORDER=1 -DATTN_WIN_LOOKAHEAD=1|cand
s3rl|early,stream|-DATTN_WIN_PER_BLOCK=3 -DATTN_WIN_ORDER=1 -DATTN_WIN_LOOKAHEAD=1|cand
n1a|early,stream|-DATTN_WIN_PER_BLOCK=1 -DATTN_WIN_ORDER=0 -DATTN_WIN_NOCOMPUTE=1|base
n3r|early,stream|-DATTN_WIN_PER_BLOCK=3 -DATTN_WIN_ORDER=1 -DATTN_WIN_NOCOMPUTE=1|base
j2r|early,stream|-DATTN_WIN_PER_BLOCK=2 -DATTN_WIN_ORDER=1 -DATTN_WIN_JOINT=1|cand
nj2r|early,stream|-DATTN_WIN_PER_BLOCK=2 -DATTN_WIN_ORDER=1 -DATTN_WIN_JOINT=1 -DATTN_WIN_NOCOMPUTE=1|base
c2|cluster|-DATTN_WIN_CLUSTER=2|cand
c4|cluster|-DATTN_WIN_CLUSTER=4|cand
nc2|cluster|-DATTN_WIN_CLUSTER=2 -DATTN_WIN_NOCOMPUTE=1|base
nc4|cluster|-DATTN_WIN_CLUSTER=4 -DATTN_WIN_NOCOMPUTE=1|base
sp|split||cand
sp4|split|-DATTN_WIN_SPLIT=4|cand
nj2r5|early,stream|-DATTN_WIN_PER_BLOCK=2 -DATTN_WIN_ORDER=1 -DATTN_WIN_JOINT=1 -DATTN_WIN_NOCOMPUTE=1 -DATTN_WIN_STAGES=5|base
j2q5|early,stream|-DATTN_WIN_PER_BLOCK=2 -DATTN_WIN_ORDER=1 -DATTN_WIN_JOINT=1 -DATTN_WIN_QSMEM=1 -DATTN_WIN_STAGES=5|cand
j2q5a|early,stream|-DATTN_WIN_PER_BLOCK=2 -DATTN_WIN_ORDER=0 -DATTN_WIN_JOINT=1 -DATTN_WIN_QSMEM=1 -DATTN_WIN_STAGES=5|cand"
row() { printf '%s\n' "$TABLE" | grep "^$1|"; }
if [ $# -eq 0 ]; then set -- $(printf '%s\n' "$TABLE" | cut -d'|' -f1); fi
set -- $(printf '%s\n' "$@" | awk '!seen[$0]++') # a name given twice is built once (one scratch folder each)
for v in "$@"; do
  row "$v" >/dev/null || { echo "window_profile.sh: unknown variant '$v' (known: $(printf '%s\n' "$TABLE" | cut -d'|' -f1 | tr '\n' ' '))" >&2; exit 2; }
done
if [ -n "${WINDOW_PROFILE_SCRATCH:-}" ]; then # kept for a later step (window_ncu.sh), not removed
  SCRATCH=$WINDOW_PROFILE_SCRATCH
  mkdir -p "$SCRATCH"
else
  SCRATCH=$(mktemp -d /tmp/window_profile.XXXXXX)
  trap 'rm -rf "$SCRATCH"' EXIT # also when a build fails: a copy of the tree per variant
fi

variant() { # name: copy, edit, build
  local name edits flags kind d targets=bench_nsa
  IFS='|' read -r name edits flags kind <<<"$(row "$1")"
  [ "$kind" = cand ] && targets="bench_nsa test_09_solutions"
  d="$SCRATCH/$name"
  mkdir -p "$d"
  (cd "$ROOT" && tar --exclude='./build*' --exclude=./.git --exclude=./.gpu --exclude=./gpu-logs -cf - .) | (cd "$d" && tar xf -)
  if [ -n "$edits" ] && ! python3 "$d/tools/bench/window_variants.py" "$d/$SOL" "$edits" >"$LOG/edit_$name.log" 2>&1; then
    echo "window_profile.sh: $name: $(cat "$LOG/edit_$name.log")"
    return 1
  fi
  # no known-wrong variants: they patch lines of the committed kernel that an edit may replace
  cmake -S "$d" -B "$d/build" -DCMAKE_CUDA_ARCHITECTURES=90 -DATTN_SELFTEST=OFF -DCMAKE_CUDA_FLAGS="$flags" >"$LOG/configure_$name.log" 2>&1 &&
    cmake --build "$d/build" -j "$(nproc)" --target $targets >"$LOG/build_$name.log" 2>&1 ||
    { echo "window_profile.sh: the $name build failed:"; tail -20 "$LOG/build_$name.log"; return 1; }
}
for v in "$@"; do variant "$v" & done
wait
built=()
for v in "$@"; do
  if [ -x "$SCRATCH/$v/build/bin/bench_nsa" ]; then built+=("$v"); else echo "window_profile.sh: $v not built, left out"; fi
done
[ ${#built[@]} -gt 0 ] || exit 1
[ "${WINDOW_PROFILE_BUILD_ONLY:-0}" = 1 ] && { echo "window_profile.sh: built ${built[*]}"; exit 0; }
kind() { row "$1" | cut -d'|' -f4; }
bench() { "$SCRATCH/$1/build/bin/bench_nsa" --N 65536 --no-dense "${@:2}"; }
timed=()
for v in "${built[@]}"; do
  case $(kind "$v") in
    base) timed+=("$v") ;;
    cand)
      echo "== $v: lesson 09's tests"
      "$SCRATCH/$v/build/bin/test_09_solutions" --jobs 1 >"$LOG/test_09_$v.log" 2>&1
      rc=$?
      grep -E "Synthesis|^\[speed\]" "$LOG/test_09_$v.log"
      if [ $rc -eq 0 ]; then timed+=("$v"); else echo "window_profile.sh: $v fails lesson 09's tests (rc $rc): not timed"; fi ;;
    prof)
      for lists in "" --local-queries; do
        echo "== $v ${lists:-(random lists)}"
        bench "$v" --config mean $lists >"$LOG/$v${lists:+_local}.log" 2>&1
        grep "\[prof\]" "$LOG/$v${lists:+_local}.log" | tail -1
      done ;;
  esac
done
k=0
for run in 1 2; do
  for v in "${timed[@]}"; do
    k=$((k + 1))
    echo "== $v (run $run)"
    bench "$v" --config mean,paper >"$LOG/time_${k}_$v.log" 2>&1
    grep -E "^(mean|paper) .*selected_attention|^\[cluster\]" "$LOG/time_${k}_$v.log"
  done
done
