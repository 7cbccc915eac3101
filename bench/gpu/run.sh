#!/usr/bin/env bash
# GPU side-by-side: gallop's own train step (gallop train --device gpu, the
# main job's model and batch) and PyTorch/JAX baselines of the same MLP.
# Runs on the device machine from the repo root with the binary carried in
# .dev/gallop (built here with: GOEXPERIMENT=simd go build -o .dev/gallop ./cmd/gallop).
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
STEPS=${STEPS:-3000}
for cfg in "10 128,64 256" "10 128,64 4096" "20 1024,1024 1024"; do
  set -- $cfg
  w=$1 hidden=$2 bs=$3
  echo "== gallop train --device gpu --window $w --hidden $hidden --batch-size $bs --steps $STEPS"
  ./.dev/gallop train --device gpu --quiet --events 300000 --window "$w" --hidden "$hidden" \
     --batch-size "$bs" --steps "$STEPS" --eval-every 0 --checkpoint-every 0 --runs-dir "$OUT/runs" 2>&1 | grep -E "device|model|time|profile|accuracy|error|gallop:"
  run=$(ls -td "$OUT"/runs/*/ | head -1)
  ./.dev/gallop profile "$run" | head -20
  layers="$((w*51)),${hidden},3"
  python3 bench/gpu/baselines.py --layers "$layers" --batch "$bs" --steps 300 2>&1 | grep -v Warning
done
