#!/usr/bin/env bash
# Asynchronous dispatch: go-xla v0.4.1 waits for every device to finish each
# executed program before Execute returns; gallop's patched copy
# (third_party/go-xla) does not. Both builds side by side, same machine:
# the large MLP, DeepLOB and the GRU on packed sequences on 1 and 4 GPUs
# (weak scaling), and GRU-64 at 256 windows on one GPU. Needs
# .dev/gallop-sync (stock go-xla) and .dev/gallop. See BENCHMARKS.md.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
exec > >(tee "$OUT/async.log") 2>&1
nvidia-smi --query-gpu=name --format=csv,noheader | sort | uniq -c
N=$(nvidia-smi -L | wc -l)
r() { # binary, name, ngpu, gallop flags...
  local bin=$1 name=$2 n=$3; shift 3
  local dir=/tmp/async/$bin-$name-$n
  timeout ${TO:-100} ./.dev/$bin train --quiet --events ${EVENTS:-100000} --eval-every 0 --checkpoint-every 0 \
    --device gpu:$(seq -s, 0 $((n-1))) --runs-dir $dir "$@" > $dir.log 2>&1 || { echo "$bin $name gpus=$n: failed"; tail -3 $dir.log; return; }
  echo "$bin $name gpus=$n: $(grep -oE 'then [0-9.]+ [µm]s/step' $dir.log) $(grep -oE 'p50 step [0-9.]+ [µm]s' $dir.log)"
}
mkdir -p /tmp/async
for bin in ${BINS:-gallop-sync gallop}; do
  for n in 1 $N; do
    r $bin mlp $n --window 20 --hidden 4096,4096,4096,4096 --batch-size $((1024*n)) --steps 300
    r $bin gru-packed $n --arch gru --hidden 64 --layout packed --batch-size $((128*n)) --steps 300
    EVENTS=60000 r $bin deeplob $n --arch deeplob --window 100 --batch-size $((256*n)) --steps 120
  done
  r $bin gru64-b256 1 --arch gru --hidden 64 --window 100 --batch-size 256 --steps 400
done
