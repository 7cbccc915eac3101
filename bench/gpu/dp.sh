#!/usr/bin/env bash
# Data parallel on several GPUs of one host: the same gallop train on 1 and
# N GPUs (same global batch, same seed) — loss curves compared step by step —
# and weak scaling (batch per GPU fixed). See BENCHMARKS.md.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name --format=csv,noheader
N=$(nvidia-smi -L | wc -l)
ids=$(seq -s, 0 $((N-1)))
g() { name=$1; shift; ./.dev/gallop train --quiet --events 300000 --eval-every 0 --checkpoint-every 0 --runs-dir "$OUT/$name" "$@" 2>&1 | grep -E "resident|time |gallop:|accuracy"; r=$(ls -td "$OUT/$name"/*/ | head -1); ./.dev/gallop profile "$r" | grep -E "step time"; }
cmp() { python3 bench/gpu/losscmp.py "$@"; }
M="--window 10 --hidden 128,64"
B="--window 20 --hidden 4096,4096,4096,4096"
echo "== small MLP, global batch 4096: 1 vs $N GPUs"; g s1 --device gpu:0 $M --batch-size 4096 --steps 1500; g sN --device gpu:$ids $M --batch-size 4096 --steps 1500; cmp $OUT/s1 $OUT/sN
echo "== big MLP, global batch 1024: 1 vs $N GPUs (strong)"; g b1 --device gpu:0 $B --batch-size 1024 --steps 400; g bN --device gpu:$ids $B --batch-size 1024 --steps 400; cmp $OUT/b1 $OUT/bN
echo "== big MLP, 1024 per GPU (weak)"; g bw --device gpu:$ids $B --batch-size $((1024*N)) --steps 400
echo "== DeepLOB, global batch 256: 1 vs $N GPUs"; g d1 --device gpu:0 --arch deeplob --window 100 --batch-size 256 --steps 300; g dN --device gpu:$ids --arch deeplob --window 100 --batch-size 256 --steps 300
echo "== DeepLOB, 256 per GPU (weak)"; g dw --device gpu:$ids --arch deeplob --window 100 --batch-size $((256*N)) --steps 300
