#!/usr/bin/env bash
# Weak and strong scaling of gallop's data-parallel step at 1, 2 and 4 GPUs
# (p50 step time from the profiler): the large MLP at 1024 and 4096 rows per
# GPU and 4096 in total, DeepLOB at 256 per GPU and 1024 in total, and the
# GRU on packed sequences at 128 rows per GPU. See BENCHMARKS.md.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name --format=csv,noheader | sort | uniq -c
N=$(nvidia-smi -L | wc -l)
p50() { ./.dev/gallop profile "$(ls -td "$1"/*/ | head -1)" | grep -oE "p50 [0-9.]+ [µm]s" | head -1; }
run() { # name ngpu args...
  name=$1 n=$2; shift 2
  ids=$(seq -s, 0 $((n-1)))
  timeout ${TO:-100} ./.dev/gallop train --quiet --events ${EVENTS:-100000} --eval-every 0 --checkpoint-every 0 --device gpu:$ids --runs-dir "$OUT/$name" "$@" > "$OUT/$name.log" 2>&1 || { tail -3 "$OUT/$name.log"; return; }
  echo "$name gpus=$n $(p50 $OUT/$name)" | tee -a "$OUT/scaling.txt"
}
# The MLPs first (they compile in seconds), then DeepLOB (about 20 s a
# compile) on a smaller market: one 4-GPU call ran out of time otherwise.
for n in 1 2 4 8; do
  [ $n -le $N ] || continue
  run mlp-weak-$n $n --window 20 --hidden 4096,4096,4096,4096 --batch-size $((1024*n)) --steps 300
  run mlp-strong-$n $n --window 20 --hidden 4096,4096,4096,4096 --batch-size 4096 --steps 300
  run mlp-weak4k-$n $n --window 20 --hidden 4096,4096,4096,4096 --batch-size $((4096*n)) --steps 200
done
for n in 1 2 4 8; do
  [ $n -le $N ] || continue
  EVENTS=60000 run deeplob-weak-$n $n --arch deeplob --window 100 --batch-size $((256*n)) --steps 120
  EVENTS=60000 run deeplob-strong-$n $n --arch deeplob --window 100 --batch-size 1024 --steps 120
done
for n in 1 2 4 8; do
  [ $n -le $N ] || continue
  run gru-weak-$n $n --arch gru --hidden 64 --layout packed --batch-size $((128*n)) --steps 300
done
