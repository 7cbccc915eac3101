#!/usr/bin/env bash
# Where the small-model GPU step goes: gallop's StepRows (host time per call
# vs device-paced step time, with a CPU profile of the host side) next to
# JAX jit and PyTorch eager on the same card. Needs .dev/train.test:
#   GOEXPERIMENT=simd go test -c -o .dev/train.test ./train
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name --format=csv,noheader
GALLOP_BENCH_DEVICE=gpu ./.dev/train.test -test.run x -test.bench "StepRowsDevice|ExecOverheadDevice" -test.benchtime ${N:-3000}x \
  -test.cpuprofile "$OUT/cpu.prof" 2>&1 | grep -E "Benchmark|backend|FAIL|panic|error"
for L in 510,128,64,3 64,256,256,3; do
  python3 bench/gpu/baselines.py --layers $L --batch 256 --steps 1000 --only jax,eager 2>&1 | grep -E "ms/step|failed"
done
