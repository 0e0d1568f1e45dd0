#!/usr/bin/env bash
# Re-measure every CSV and figure of the README's "Results" section on this machine's GPU:
#
#   tools/bench/readme_figures.sh NAME [OUT_DIR]
#
# writes OUT_DIR/bench_{flash,lessons,gqa,window,sparsity}_NAME.csv and the PNG files tools/bench/plot.py
# draws from them (OUT_DIR/bench_*_NAME_{tflops,time,fraction,keep}.png); OUT_DIR defaults to
# figures/. NAME names the device, e.g. h200. The commands are those of the README's "Reproduce"
# block. Needs a configured build (./course test does it; ATTN_BUILD_DIR picks the folder, default
# build); the script builds build/bin/bench itself.
set -euo pipefail
cd "$(dirname "$0")/../.."
name=${1:-}
out=${2:-figures}
if [ -z "$name" ] || [[ "$name" == -* ]]; then
  sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
  [ "$name" = "-h" ] || [ "$name" = "--help" ] && exit 0
  exit 2
fi
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
"$bench" --kernel flash_bf16 --role solution --N 1024,2048,4096,8192,16384,32768,65536 --B 1 --H 64 --G 64 \
    --D 128 --causal 1,0 --csv "$(csv flash)"
"$bench" --kernel naive_f32,online_f32,flash_bf16 --role solution --N 512,1024,2048,4096,8192 --B 1 --H 16 \
    --G 16 --D 64 --causal 1 --csv "$(csv lessons)"
"$bench" --kernel gqa_bf16,flash_bf16 --role solution --N 4096,8192,16384 --B 1 --H 64 --G 4 --D 128 --causal 1 \
    --csv "$(csv gqa)"
"$bench" --no-peaks --kernel window_bf16,flash_bf16 --role solution --window 512 --N 4096,8192,16384,32768,65536 \
    --B 1 --H 64 --G 4 --D 128 --causal 1 --reps 5 --csv "$(csv window)"
"$bench" --kernel gqa_bf16,mask_bf16,blocks_bf16 --role solution --keep 100,50,25,10,5 --N 8192,32768 --B 1 --H 64 \
    --G 4 --D 128 --causal 1 --reps 10 --csv "$(csv sparsity)"
python3 tools/bench/plot.py "$(csv flash)" "$(csv lessons)" "$(csv gqa)" "$(csv window)" --out "$out/"
python3 tools/bench/plot.py --vs-keep "$(csv sparsity)" --out "$out/"
