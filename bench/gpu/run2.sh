#!/usr/bin/env bash
# Second GPU/CPU round (see BENCHMARKS.md): gallop with batches staged on the
# device, bf16 vs fp32 on a compute-bound MLP, and the CPU step of gallop
# (Go backend) vs PyTorch CPU on the device machine's cores.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
lscpu | grep -E "Model name|^CPU\(s\)"
g() { ./.dev/gallop train --quiet --events 300000 --eval-every 0 --checkpoint-every 0 --runs-dir "$OUT/runs" "$@" 2>&1 | grep -E "model|time|profile  |gallop:"; }
echo "== GPU fp32, batch staged on device"
g --device gpu --window 10 --hidden 128,64 --batch-size 256 --steps 3000
g --device gpu --window 10 --hidden 128,64 --batch-size 4096 --steps 3000
echo "== GPU compute-bound MLP 1020-4096x4, batch 1024: fp32 vs bf16"
for p in fp32 bf16; do g --device gpu --window 20 --hidden 4096,4096,4096,4096 --batch-size 1024 --steps 300 --precision $p; done
python3 bench/gpu/baselines.py --layers 1020,4096,4096,4096,4096,3 --batch 1024 --steps 100 2>&1 | grep -E "ms/step|failed"
echo "== CPU: gallop (Go backend, GOEXPERIMENT=simd) vs torch CPU, MLP 510-128-64-3 batch 256"
g --device cpu --window 10 --hidden 128,64 --batch-size 256 --steps 1000
python3 bench/gpu/baselines.py --device cpu --layers 510,128,64,3 --batch 256 --steps 300 --only eager 2>&1 | grep -E "ms/step|failed"
python3 bench/gpu/baselines.py --device cpu --threads 1 --layers 510,128,64,3 --batch 256 --steps 300 --only eager 2>&1 | grep -E "ms/step|failed"
