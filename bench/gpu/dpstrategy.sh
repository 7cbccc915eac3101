#!/usr/bin/env bash
# Data-parallel strategies on the GPUs of one host (see BENCHMARKS.md, "Data
# parallel"): XLA's SPMD partitioner (--dp-strategy sharding) against
# gallop's explicit replicas with one all-reduce (replicas, fp32 or bf16),
# weak scaling against one GPU, the all-reduce timed alone by the profiler,
# and loss curves 1 vs N GPUs at the same global batch. Needs .dev/gallop:
#   GOEXPERIMENT=simd go build -ldflags="-s -w" -o .dev/gallop ./cmd/gallop
# WEAK=0 skips the weak-scaling variants; STRONG="flags" adds strong scaling
# with those flags; CURVES=1 the loss curves; SPC=1 several steps per call.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
exec > >(tee "$OUT/dpstrategy.log") 2>&1
nvidia-smi --query-gpu=name --format=csv,noheader | sort | uniq -c
N=$(nvidia-smi -L | wc -l)
ids=$(seq -s, 0 $((N-1)))
run() { # name devices args...
  local name=$1 dev=$2; shift 2
  timeout 150 ./.dev/gallop train --quiet --events 100000 --eval-every 0 --checkpoint-every 0 --device gpu:$dev \
    --runs-dir "$OUT/$name" "$@" > "$OUT/$name.log" 2>&1 || { echo "$name: failed"; tail -3 "$OUT/$name.log"; return; }
  local r=$(ls -td "$OUT/$name"/*/ | head -1)
  echo "$name: $(./.dev/gallop profile "$r" | grep -oE "p50 [0-9.]+ [µm]s" | head -1) $(grep -oE "alone: .*" "$OUT/$name.log")"
  ./.dev/gallop profile "$r" | grep -E "^collective|comm-bound" | sed 's/^/    /'
}
cmp() { python3 bench/gpu/losscmp.py "$@"; }
D="--arch deeplob --window 100 --steps 200"
M="--window 20 --hidden 4096,4096,4096,4096 --steps 300"
# Variants at N GPUs: name=flags (the buckets matter for the MLP only: its
# 4096×4096 layers are 67 MB each; DeepLOB's 0.57 MB is one bucket).
VARIANTS=${VARIANTS:-"sharding=--dp-strategy=sharding one-fp32=--dp-bucket-mb=0 one-bf16=--dp-bucket-mb=0,--dp-reduce=bf16 b25-fp32=--dp-bucket-mb=25 b25-bf16=--dp-bucket-mb=25,--dp-reduce=bf16"}
if [ "${WEAK:-1}" = 1 ]; then
echo "== weak scaling: DeepLOB 256 per GPU, MLP 1020-4096x4-3 1024 per GPU"
run deeplob-1 0 $D --batch-size 256
run mlp-1 0 $M --batch-size 1024
for v in $VARIANTS; do
  name=${v%%=*} flags=${v#*=}; flags=${flags//,/ }
  run mlp-$N-$name $ids $M --batch-size $((1024*N)) $flags
  case $name in b25*) ;; *) run deeplob-$N-$name $ids $D --batch-size $((256*N)) $flags ;; esac
done
fi
if [ -n "${SPC:-}" ]; then
echo "== several steps per call, small MLP 510-128-64-3, global batch 4096, same seed"
S="--window 10 --hidden 128,64 --batch-size 4096 --steps 1600"
run spc-1gpu-1 0 $S
run spc-1gpu-16 0 $S --steps-per-call 16
for st in sharding replicas; do
  run spc-$N-$st-1 $ids $S --dp-strategy $st
  run spc-$N-$st-16 $ids $S --dp-strategy $st --steps-per-call 16
done
cmp $OUT/spc-$N-sharding-1 $OUT/spc-$N-sharding-16 $OUT/spc-$N-replicas-16 $OUT/spc-1gpu-16
fi
[ -n "${STRONG:-}" ] || exit 0
echo "== strong scaling: DeepLOB 1024, MLP 4096 global (default strategy)"
run deeplob-s1 0 $D --batch-size 1024
run deeplob-s$N $ids $D --batch-size 1024 $STRONG
run mlp-s1 0 $M --batch-size 4096
run mlp-s$N $ids $M --batch-size 4096 $STRONG
[ -n "${CURVES:-}" ] || exit 0
echo "== loss curves, small MLP, global batch 4096, same seed"
S="--window 10 --hidden 128,64 --batch-size 4096 --steps 1500"
run small-1 0 $S
run small-$N-sharding $ids $S --dp-strategy sharding
run small-$N-replicas $ids $S
run small-$N-bf16 $ids $S --dp-reduce bf16
cmp $OUT/small-1 $OUT/small-$N-sharding $OUT/small-$N-replicas $OUT/small-$N-bf16
for r in small-1 small-$N-sharding small-$N-replicas small-$N-bf16; do echo "  $r: $(grep -E "accuracy|macro" $OUT/$r.log | head -2 | tr '\n' ' ')"; done
