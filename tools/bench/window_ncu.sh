#!/usr/bin/env bash
# window_ncu.sh - Nsight Compute's counters for lesson 09's window kernel and its transport-only
# variants at N = 65536 (mean-pool lists): L2 hit rate, DRAM and L2 traffic, tensor-pipe use, so that a
# maintainer can tell which unit limits the ring (L2's output, each multiprocessor's intake, or DRAM).
# For maintainers, on a GPU machine with ncu (sm_90).
#
#   source .gpu/env.sh && tools/bench/window_ncu.sh [VARIANT ...]   (default: base n1a)
#
# Each variant is built by window_profile.sh (same names); `base` is also profiled in its K/V floor
# kernel (kv_floor_tma_kernel: every selected tile read on its own, nothing computed). One launch of
# each kernel is profiled, clocks left alone. Reports under $OUT (default ./gpu-logs), a summary on
# stdout. First run on 2026-12-07 on an H100 (`base n1a`, about 2 minutes with the builds; every metric
# below was read; results in docs/NSA_PERFORMANCE.md, change 16). The sections run apart from the
# metrics, so a metric name a later ncu does not know costs only its line.
set -uo pipefail
cd "$(dirname "$0")/../.."
LOG=${OUT:-gpu-logs}
mkdir -p "$LOG"
LOG=$(cd "$LOG" && pwd)
export PATH=/usr/local/cuda/bin:$PATH
[ $# -eq 0 ] && set -- base n1a
SCRATCH=$(mktemp -d /tmp/window_ncu.XXXXXX)
trap 'rm -rf "$SCRATCH"' EXIT
WINDOW_PROFILE_SCRATCH=$SCRATCH WINDOW_PROFILE_BUILD_ONLY=1 tools/bench/window_profile.sh "$@" || exit 1
METRICS=gpu__time_duration.sum,dram__bytes_read.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed
METRICS+=,lts__t_bytes.sum,lts__t_sector_hit_rate.pct,lts__throughput.avg.pct_of_peak_sustained_elapsed
METRICS+=,lts__t_sectors_srcunit_ltcfabric.sum,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_elapsed
METRICS+=,l1tex__data_pipe_lsu_wavefronts_mem_shared.sum,sm__throughput.avg.pct_of_peak_sustained_elapsed
profile() { # variant kernel-regex tag
  local bin="$SCRATCH/$1/build/bin/bench_nsa" out="$LOG/ncu_$3"
  [ -x "$bin" ] || { echo "window_ncu.sh: $1 not built"; return; }
  # the sections, then the metrics on their own (a metric this ncu does not know fails only its run)
  ncu --clock-control none -k "regex:$2" -c 1 --section SpeedOfLight --section MemoryWorkloadAnalysis \
    --section MemoryWorkloadAnalysis_Tables "$bin" --N 65536 --no-dense --config mean --warmup 0 --reps 1 \
    >"$out.log" 2>&1
  echo "== $3 ($1, $2): sections exit $?"
  ncu --clock-control none -k "regex:$2" -c 1 --metrics "$METRICS" \
    "$bin" --N 65536 --no-dense --config mean --warmup 0 --reps 1 >>"$out.log" 2>&1
  echo "== $3 ($1, $2): metrics exit $?"
  grep -E "Duration|DRAM Throughput|L2 Hit Rate|L1/TEX Hit|Max Bandwidth|Mem Busy|Mem Pipes|L2 Cache Throughput|Compute \(SM\)|$(echo "$METRICS" | tr ',' '|' | sed 's/\./\\./g')" "$out.log" | sed 's/^ *//' | head -40
}
for v in "$@"; do
  profile "$v" selected_window_kernel "$v"
  [ "$v" = base ] && profile base kv_floor_tma_kernel floor_tma
done
exit 0
