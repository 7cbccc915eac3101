#!/usr/bin/env bash
# Resume on a different number of GPUs: a run on 2 GPUs checkpointed
# half-way is resumed on 1 GPU, and a 1-GPU run on 2; each resumed half is
# compared step by step with the straight run (same global batch, so only
# the order of fp32 reductions differs). Fixed windows (MLP) and packed
# sequences (GRU). Needs .dev/gallop and 2 GPUs. See BENCHMARKS.md.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
exec > >(tee "$OUT/dpresume.log") 2>&1
nvidia-smi --query-gpu=name --format=csv,noheader | sort | uniq -c
T=/tmp/dpresume
rm -rf $T
tr() { # name device flags...
  local name=$1 dev=$2; shift 2
  timeout 150 ./.dev/gallop train --quiet --device $dev --events 100000 --eval-every 0 --runs-dir $T/$name "$@" > $T-$name.log 2>&1 \
    || { echo "$name: failed"; tail -3 $T-$name.log; }
  grep -hE "^resume|^parallel" $T-$name.log | sed "s|^|  $name: |"
}
for kind in ${KINDS:-mlp gru}; do
  case $kind in
  mlp) F="--steps 600 --checkpoint-every 300 --batch-size 512" ;;
  gru) F="--arch gru --hidden 64 --layout packed --seq-len 256 --steps 400 --checkpoint-every 200 --batch-size 32" ;;
  esac
  half=$(( $(echo $F | grep -oE -- '--checkpoint-every [0-9]+' | cut -d' ' -f2) ))
  for pair in ${PAIRS:-"gpu:0,1@gpu:0" "gpu:0@gpu:0,1"}; do
    set -- ${pair/@/ }
    a=$kind-${1//[:,]/}; b=$a-then-${2//[:,]/}
    tr $a $1 $F
    ck=$(ls $T/$a/*/checkpoints/ckpt-$(printf %09d $half).safetensors)
    mkdir -p $T/$b
    tr $b $2 --resume "$ck"
    python3 bench/gpu/losscmp.py $T/$a $T/$b
  done
done
