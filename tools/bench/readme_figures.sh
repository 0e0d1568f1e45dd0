#!/usr/bin/env bash
# Re-measure the CSV files and figures of the README's "Results" section and of lessons 10 and 11's
# benchmarks on this machine's GPU:
#
#   tools/bench/readme_figures.sh NAME [OUT_DIR [SETS]]
#
# writes OUT_DIR/bench_SET_NAME.csv for each set and the PNG files tools/bench/plot.py draws from them
# (OUT_DIR/bench_SET_NAME_{tflops,time,fraction,keep}.png); OUT_DIR defaults to figures/. NAME names
# the device, e.g. h200. SETS (comma-separated, default all): flash, lessons, gqa, window, sparsity (the
# README's "Reproduce" block), fused (lesson 10: bench --lesson 10, plot.py --fused) and decode (lesson
# 11: bench --lesson 11 --graph, plot.py --decode). Needs a configured build (./course test does it;
# ATTN_BUILD_DIR picks the folder, default build); the script builds build/bin/bench itself.
set -euo pipefail
cd "$(dirname "$0")/../.."
name=${1:-}
out=${2:-figures}
sets=${3:-flash,lessons,gqa,window,sparsity,fused,decode}
if [ -z "$name" ] || [[ "$name" == -* ]]; then
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
  [ "$name" = "-h" ] || [ "$name" = "--help" ] && exit 0
  exit 2
fi
for s in ${sets//,/ }; do
  case "$s" in
    flash | lessons | gqa | window | sparsity | fused | decode) ;;
    *) echo "readme_figures.sh: unknown set $s (flash, lessons, gqa, window, sparsity, fused, decode)" >&2; exit 2 ;;
  esac
done
want() { case ",$sets," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
build=${ATTN_BUILD_DIR:-build}
if [ ! -f "$build/Makefile" ]; then
  echo "readme_figures.sh: $build/ is not configured: run ./course test first" >&2
  exit 1
fi
cmake --build "$build" --target bench -j "$(nproc 2>/dev/null || echo 2)" >"$build/bench_build.log" 2>&1 ||
  { tail -n 40 "$build/bench_build.log" >&2; exit 1; }
bench="$build/bin/bench"
mkdir -p "$out"
csv() { printf '%s/bench_%s_%s.csv' "$out" "$1" "$name"; }

# --role solution: the kernels named, no baseline added beside them (the figures compare these); the
# options give every size, so each command is one run whatever the lessons' bench shapes say
set -x
if want flash; then
  "$bench" --kernel flash_bf16 --role solution --N 1024,2048,4096,8192,16384,32768,65536 --B 1 --H 64 --G 64 \
      --D 128 --causal 1,0 --csv "$(csv flash)"
fi
if want lessons; then
  "$bench" --kernel naive_f32,online_f32,flash_bf16 --role solution --N 512,1024,2048,4096,8192 --B 1 --H 16 \
      --G 16 --D 64 --causal 1 --csv "$(csv lessons)"
fi
if want gqa; then
  "$bench" --kernel gqa_bf16,flash_bf16 --role solution --N 4096,8192,16384 --B 1 --H 64 --G 4 --D 128 \
      --causal 1 --csv "$(csv gqa)"
fi
if want window; then
  "$bench" --no-peaks --kernel window_bf16,flash_bf16 --role solution --window 512 --N 4096,8192,16384,32768,65536 \
      --B 1 --H 64 --G 4 --D 128 --causal 1 --reps 5 --csv "$(csv window)"
fi
if want sparsity; then
  "$bench" --kernel gqa_bf16,mask_bf16,blocks_bf16 --role solution --keep 100,50,25,10,5 --N 8192,32768 --B 1 \
      --H 64 --G 4 --D 128 --causal 1 --reps 10 --csv "$(csv sparsity)"
fi
# lessons 10 and 11 on their bench shapes (their descriptors' "bench"), each output checked once:
# lesson 10's sweep and bar (N = 8k to 64k, both configurations, the forward, its weights, its three
# launches and dense flash); lesson 11's sweep and bar (cache lengths 1k to 128k, B = 1, 16, 64),
# plain and replayed from CUDA graphs. A row that fails is reported and the others are still timed and
# drawn; the script then exits 1.
status=0
if want fused; then
  "$bench" --lesson 10 --keep-going --csv "$(csv fused)" || status=1
fi
if want decode; then
  "$bench" --lesson 11 --graph --keep-going --csv "$(csv decode)" || status=1
fi
general=()
for s in flash lessons gqa window; do want "$s" && general+=("$(csv "$s")"); done
if [ "${#general[@]}" -gt 0 ]; then python3 tools/bench/plot.py "${general[@]}" --out "$out/"; fi
if want sparsity; then python3 tools/bench/plot.py --vs-keep "$(csv sparsity)" --out "$out/"; fi
if want fused; then python3 tools/bench/plot.py --fused "$(csv fused)" --out "$out/"; fi
if want decode; then python3 tools/bench/plot.py --decode "$(csv decode)" --out "$out/"; fi
exit $status
