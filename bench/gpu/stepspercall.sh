#!/usr/bin/env bash
# gallop train --steps-per-call 1/4/16 on the main MLP at batch 256 and 4096, next to
# JAX jit and PyTorch eager on the same card (see BENCHMARKS.md). Needs .dev/gallop:
#   GOEXPERIMENT=simd go build -ldflags="-s -w" -o .dev/gallop ./cmd/gallop
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
set -uo pipefail
exec > >(tee "$OUT/spc.log") 2>&1
nvidia-smi --query-gpu=name --format=csv,noheader
for cfg in "256 1" "256 4" "256 16" "4096 1" "4096 16"; do
  set -- $cfg; bs=$1; k=$2
  echo "== gallop MLP 510-128-64-3 batch $bs steps-per-call $k"
  timeout 120 ./.dev/gallop train --quiet --device gpu --events 300000 --window 10 --hidden 128,64 --batch-size $bs --steps 3200 --steps-per-call $k --eval-every 0 --checkpoint-every 0 --runs-dir /tmp/r$k-$bs 2>&1 | grep -E "accuracy|time|gallop:|profile"
  r=$(ls -td /tmp/r$k-$bs/*/ | head -1); timeout 30 ./.dev/gallop profile "$r" | grep -E "step time|dispatch"
done
for bs in 256 4096; do timeout 120 python3 bench/gpu/baselines.py --layers 510,128,64,3 --batch $bs --steps 1000 --only jax,eager 2>&1 | grep -E "ms/step|failed"; done
