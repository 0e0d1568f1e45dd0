#!/usr/bin/env bash
# window_profile.sh - where lesson 09's window kernel (selected_window_kernel) spends its time, and
# whether warming L2 for the next block helps. For maintainers, on a GPU machine (sm_90); about 3
# minutes on an H200 with 16 cores.
#
# It copies the tree to a scratch folder, applies window_profile.patch there (the committed kernel is
# never touched) and builds bench_nsa in five variants:
#   base    the kernel as committed
#   prof    with per-warp cycle counters (ATTN_WIN_PROFILE): each launch prints one "[prof]" line,
#           the cycles an average warp spends reading its list, sorting, building the union, getting
#           to its first tile (loop0: each of these counted from the warp's start), then, summed over
#           its tiles, waiting for its tile's stage to be issued (slot), for the bytes to land (data),
#           computing (compute), releasing the stage (release), and storing O (store); its total, and
#           the block's span (first warp's start to last warp's end)
#   profpf  the counters, with the prefetch below
#   pf      ATTN_WIN_PREFETCH=132: warp 0 asks L2 for the Q rows and lists of the block 132 places
#           later in the grid (the one likely to start on this multiprocessor when this one ends: the
#           H200 has 132), so that its prologue does not wait for HBM
#   pf2     the same, 264 places later
# and times each at N = 65536 (mean-pool and paper lists; base, pf, pf2 twice, interleaved).
# The counters need every warp active (N a multiple of 8, as here). They cost time themselves (12.83 ms against 12.53 on 2026-12-04): read their split, not
# their total. Logs under $OUT (default ./gpu-logs).
#
#   source .gpu/env.sh && tools/bench/window_profile.sh
#
# The patch is written against lesson 09's solution as of 2026-12-04; if it no longer applies, the
# hooks are few (clock64 around each phase, atomics into g_prof at the end): redo them by hand.
set -uo pipefail
cd "$(dirname "$0")/../.."
LOG=${OUT:-gpu-logs}
mkdir -p "$LOG"
LOG=$(cd "$LOG" && pwd)
export PATH=/usr/local/cuda/bin:$PATH
W=$(mktemp -d /tmp/window_profile.XXXXXX)
tar --exclude='./build*' --exclude=./.git --exclude=./.gpu --exclude=./gpu-logs -cf - . | (cd "$W" && tar xf -)
cd "$W"
if ! patch -p1 --quiet <tools/bench/window_profile.patch; then
  echo "window_profile.sh: window_profile.patch does not apply to this tree (see the note at the top)"
  exit 1
fi
build() { # name, CUDA flags
  cmake -S . -B "build-$1" -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_CUDA_FLAGS="$2" >"$LOG/configure_$1.log" 2>&1 &&
    cmake --build "build-$1" -j "$(nproc)" --target bench_nsa >"$LOG/build_$1.log" 2>&1 ||
    { echo "window_profile.sh: the $1 build failed:"; tail -20 "$LOG/build_$1.log"; return 1; }
}
build base "" & build prof "-DATTN_WIN_PROFILE" & build profpf "-DATTN_WIN_PROFILE -DATTN_WIN_PREFETCH=132" &
build pf "-DATTN_WIN_PREFETCH=132" & build pf2 "-DATTN_WIN_PREFETCH=264" &
wait
for v in base prof profpf pf pf2; do [ -x "build-$v/bin/bench_nsa" ] || exit 1; done
[ "${WINDOW_PROFILE_BUILD_ONLY:-0}" = 1 ] && { echo "window_profile.sh: built in $W"; exit 0; }
for v in prof profpf; do
  for lists in "" --local-queries; do
    echo "== $v ${lists:-(random lists)}"
    "build-$v/bin/bench_nsa" --N 65536 --config mean --no-dense $lists >"$LOG/$v${lists:+_local}.log" 2>&1
    grep "\[prof\]" "$LOG/$v${lists:+_local}.log" | tail -1
  done
done
k=0
for v in base pf pf2 base pf pf2; do
  k=$((k + 1))
  echo "== $v (run $k)"
  "build-$v/bin/bench_nsa" --N 65536 --config mean,paper --no-dense >"$LOG/time_${k}_$v.log" 2>&1
  grep -E "^(mean|paper) .*selected_attention" "$LOG/time_${k}_$v.log"
done
rm -rf "$W"
