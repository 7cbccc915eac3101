#!/usr/bin/env bash
# gallop (dataset resident on the device, windows gathered in the step) vs
# PyTorch and JAX on the same card, one call. See BENCHMARKS.md.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name --format=csv,noheader
g() { ./.dev/gallop train --quiet --device gpu --events 300000 --eval-every 0 --checkpoint-every 0 --runs-dir "$OUT/runs" "$@" 2>&1 | grep -E "resident|time|gallop:"; r=$(ls -td "$OUT"/runs/*/ | head -1); ./.dev/gallop profile "$r" | grep -E "step time|data |dispatch|verdict"; }
for bs in 256 4096; do
  echo "== gallop MLP 510-128-64-3 batch $bs"; g --window 10 --hidden 128,64 --batch-size $bs --steps 3000
  python3 bench/gpu/baselines.py --layers 510,128,64,3 --batch $bs --steps 300 2>&1 | grep -E "ms/step|failed"
done
for p in fp32 bf16; do echo "== gallop MLP 1020-4096x4-3 batch 1024 $p"; g --window 20 --hidden 4096,4096,4096,4096 --batch-size 1024 --steps 600 --precision $p; done
python3 bench/gpu/baselines.py --layers 1020,4096,4096,4096,4096,3 --batch 1024 --steps 100 2>&1 | grep -E "ms/step|failed"
