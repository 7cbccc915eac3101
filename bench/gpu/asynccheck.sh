#!/usr/bin/env bash
# Asynchronous dispatch, checked and measured (see BENCHMARKS.md):
# 1. the same runs with go-xla as published (.dev/gallop-sync: Execute waits
#    for the devices) and with gallop's patched copy (.dev/gallop), compared
#    step by step (losses should agree as two runs of one build do);
# 2. GRU on packed sequences (batches staged on each rank's GPU by the
#    loaders) and the large MLP at 4096 rows per GPU on 1, 2 and 4 GPUs;
# 3. issue 9's recurrent models on one GPU against PyTorch eager and JAX jit.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
exec > >(tee "$OUT/asynccheck.log") 2>&1
nvidia-smi --query-gpu=name --format=csv,noheader | sort | uniq -c
N=$(nvidia-smi -L | wc -l)
T=/tmp/ac
mkdir -p $T
r() { # binary, name, ngpu, gallop flags...
  local bin=$1 name=$2 n=$3; shift 3
  local dir=$T/$bin-$name-$n
  rm -rf $dir
  timeout ${TO:-100} ./.dev/$bin train --quiet --events ${EVENTS:-100000} --eval-every 0 --checkpoint-every 0 \
    --device gpu:$(seq -s, 0 $((n-1))) --runs-dir $dir "$@" > $dir.log 2>&1 || { echo "$bin $name gpus=$n: failed"; tail -3 $dir.log; return; }
  echo "$bin $name gpus=$n: $(grep -oE 'then [0-9.]+ [µm]s/step' $dir.log) $(grep -oE 'p50 step [0-9.]+ [µm]s' $dir.log) $(grep -oE 'macro-F1 [0-9.]+' $dir.log | head -1)"
}
if [ "${CHECK:-1}" = 1 ]; then
  for bin in gallop-sync gallop; do
    r $bin gru64 1 --arch gru --hidden 64 --window 100 --batch-size 256 --steps 200
    r $bin gru-packed 2 --arch gru --hidden 64 --layout packed --batch-size 256 --steps 200
    r $bin mlp 2 --window 20 --batch-size 1024 --steps 300
  done
  for c in gru64-1 gru-packed-2 mlp-2; do python3 bench/gpu/losscmp.py $T/gallop-sync-$c $T/gallop-$c; done
fi
for n in 1 2 4; do
  [ $n -le $N ] || continue
  r gallop gru-packed-weak $n --arch gru --hidden 64 --layout packed --batch-size $((128*n)) --steps 300
done
for n in 1 2 4; do
  [ $n -le $N ] || continue
  r gallop mlp-weak4k $n --window 20 --hidden 4096,4096,4096,4096 --batch-size $((4096*n)) --steps 200
done
[ "${SOLO:-1}" = 1 ] || exit 0
r gallop gru64-b256 1 --arch gru --hidden 64 --window 100 --batch-size 256 --steps 400
EVENTS=200000 r gallop deeplob-b64 1 --arch deeplob --window 100 --batch-size 64 --steps 400
EVENTS=200000 r gallop deeplob-b256 1 --arch deeplob --window 100 --batch-size 256 --steps 300
b() { timeout 150 python3 bench/gpu/baselines_seq.py --only eager,jax "$@" 2>&1 | grep -E "ms/step|failed"; }
b --model gru --batch 256 --steps 200
b --model deeplob --batch 64 --steps 200
b --model deeplob --batch 256 --steps 100
