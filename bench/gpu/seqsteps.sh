#!/usr/bin/env bash
# DeepLOB, GRU-64 and transformer train steps: gallop (GPU and CPU, p50 from its profiler)
# next to PyTorch (eager, compile, bf16 autocast) and JAX jit on the same
# machine, one call (see BENCHMARKS.md). Needs .dev/gallop:
#   GOEXPERIMENT=simd go build -ldflags="-s -w" -o .dev/gallop ./cmd/gallop
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
exec > >(tee "$OUT/seqsteps.log") 2>&1
nvidia-smi --query-gpu=name --format=csv,noheader
lscpu | grep -E "Model name|^CPU\(s\)"
python3 -c 'import torch; print("torch", torch.__version__, "threads", torch.get_num_threads())' 
g() { # device, name, gallop flags...
  local dev=$1 name=$2; shift 2
  echo "== gallop $name ($dev)"
  timeout 240 ./.dev/gallop train --quiet --device $dev --events ${EVENTS:-200000} --window 100 --eval-every 0 --checkpoint-every 0 \
    --runs-dir /tmp/seq-$dev-$name "$@" 2>&1 | grep -E "model |time |gallop:"
  local r=$(ls -td /tmp/seq-$dev-$name/*/ 2>/dev/null | head -1)
  [ -n "$r" ] && timeout 30 ./.dev/gallop profile "$r" | grep -E "step time|compile"
}
b() { timeout 300 python3 bench/gpu/baselines_seq.py "$@" 2>&1 | grep -E "ms/step|failed|params"; }
if [ "${PART:-all}" != cpu ]; then  # PART=cpu: only the CPU part
g gpu deeplob-b64 --arch deeplob --batch-size 64 --steps 400
g gpu deeplob-b256 --arch deeplob --batch-size 256 --steps 300
g gpu gru64-b256 --arch gru --hidden 64 --batch-size 256 --steps 400
g gpu transformer-b64 --arch transformer --batch-size 64 --steps 400
b --model deeplob --batch 64 --steps 200
b --model deeplob --batch 256 --steps 100
b --model gru --batch 256 --steps 200
b --model transformer --features 51 --batch 64 --steps 200
fi
# CPU: gallop's Go backend on all cores vs PyTorch CPU (default threads).
# A small market keeps the final evaluation short (with 200k events the
# DeepLOB run's evaluation alone outlasted a 10-minute call).
EVENTS=30000 g cpu deeplob-b64 --arch deeplob --batch-size 64 --steps 20
EVENTS=30000 g cpu gru64-b256 --arch gru --hidden 64 --batch-size 256 --steps 20
b --model deeplob --batch 64 --steps 20 --device cpu --only eager
EVENTS=30000 g cpu transformer-b64 --arch transformer --batch-size 64 --steps 20
b --model gru --batch 256 --steps 20 --device cpu --only eager
b --model transformer --features 51 --batch 64 --steps 20 --device cpu --only eager
