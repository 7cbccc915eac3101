#!/usr/bin/env bash
# fp32 with and without TF32, bf16, and the very large MLP's compile time
# (see BENCHMARKS.md).
set -uo pipefail
OUT=${OUT:-/tmp/out}
nvidia-smi --query-gpu=name --format=csv,noheader
g() { name=$1; shift; ./.dev/gallop train --quiet --device gpu --events 100000 --eval-every 0 --checkpoint-every 0 --runs-dir "$OUT/$name" "$@" > "$OUT/$name.log" 2>&1 || { tail -3 "$OUT/$name.log"; return; }
  r=$(ls -td "$OUT/$name"/*/ | head -1); echo "$name: $(./.dev/gallop profile "$r" | grep -E "step time" | cut -c1-60) | $(./.dev/gallop profile "$r" | grep -E "^compiles")"; }
B="--window 20 --hidden 4096,4096,4096,4096 --batch-size 1024 --steps 300"
g fp32-tf32 $B
g fp32-notf32 $B --no-tf32
g bf16 $B --precision bf16
g huge-8192x4-b4096 --window 1 --hidden 8192,8192,8192,8192 --batch-size 4096 --steps 60
