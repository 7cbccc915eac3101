#!/usr/bin/env bash
# Diagnose the compute-bound MLP step on GPU (see BENCHMARKS.md): where the
# time between the p50 step and the mean goes.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name --format=csv,noheader
g() { ./.dev/gallop train --quiet --device gpu --events 200000 --eval-every 0 --checkpoint-every 0 --runs-dir "$OUT/runs" "$@" 2>&1 | grep -E "time|gallop:"; r=$(ls -td "$OUT"/runs/*/ | head -1); ./.dev/gallop profile "$r" | grep -E "step time|dispatch|data|compiles|slow steps|runtime|throughput"; }
echo "== small MLP batch 4096 (parallel loader)"; g --window 10 --hidden 128,64 --batch-size 4096 --steps 2000
B="--window 20 --hidden 4096,4096,4096,4096 --batch-size 1024 --steps 1000"
echo "== big adam fp32"; g $B
echo "== big adam fp32 GOGC=off"; GOGC=off g $B
echo "== big sgd fp32"; g $B --optimizer sgd
echo "== big adam bf16"; g $B --precision bf16
echo "== big adam fp32, no clip"; g $B --clip-norm 0
