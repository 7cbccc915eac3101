#!/usr/bin/env bash
# The recurrent models' train step before and after the batched recurrent
# weight gradient (model/gradorder.go, recurrentLinear): DeepLOB (batch 64
# and 256) and GRU-64 (batch 256), window 100, one GPU, the two builds
# interleaved, then PyTorch eager and JAX jit on the same card; with DP=1
# instead DeepLOB at 256 rows per GPU on 1 and 2 GPUs (sharding) and GRU-64
# on packed sequences at 128 rows per GPU on 2, both builds (see
# BENCHMARKS.md). Needs .dev/gallop (new) and .dev/gallop-old (the build
# before), e.g.
#   git stash; GOEXPERIMENT=simd go build -ldflags="-s -w" -o .dev/gallop-old ./cmd/gallop; git stash pop
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
exec > >(tee "$OUT/recgrad.log") 2>&1
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
g() { # binary, name, gallop flags...
  local bin=$1 name=$2; shift 2
  local dir=/tmp/rec-$(basename $bin)-$name
  timeout 200 ./.dev/$bin train --quiet --device gpu:0 --events ${EVENTS:-200000} --window 100 --eval-every 0 --checkpoint-every 0 \
    --runs-dir $dir "$@" > $dir.log 2>&1 || { echo "$bin $name: failed"; tail -3 $dir.log; return; }
  local r=$(ls -td $dir/*/ | head -1)
  echo "$bin $name: $(./.dev/$bin profile "$r" | grep -E "step time|compile" | tr -s ' \n' ' ')"
}
if [ "${DP:-0}" = 1 ]; then
  for bin in gallop-old gallop; do
    EVENTS=60000 g $bin deeplob-1gpu --arch deeplob --batch-size 256 --steps 100
    EVENTS=60000 g $bin deeplob-2gpu --arch deeplob --batch-size 512 --steps 100 --device gpu:0,1
    g $bin gru-packed-2gpu --arch gru --layout packed --batch-size 256 --steps 300 --device gpu:0,1
  done
  exit 0
fi
for bin in gallop-old gallop; do
  g $bin gru64-b256 --arch gru --hidden 64 --batch-size 256 --steps 400
  g $bin deeplob-b64 --arch deeplob --batch-size 64 --steps 400
  g $bin deeplob-b256 --arch deeplob --batch-size 256 --steps 300
done
b() { timeout 200 python3 bench/gpu/baselines_seq.py --only eager,jax "$@" 2>&1 | grep -E "ms/step|failed"; }
b --model gru --batch 256 --steps 200
b --model deeplob --batch 64 --steps 200
b --model deeplob --batch 256 --steps 100
