#!/usr/bin/env bash
# Asynchronous dispatch changes no value: with --deterministic (XLA's
# deterministic ops) the same run with go-xla as published
# (.dev/gallop-sync) and with gallop's patched copy (.dev/gallop) must give
# the same loss at every step: the MLP on 1 GPU (batches staged on the
# device by the loader, buffers reused) and on 2 (rows split per step).
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
exec > >(tee "$OUT/asyncdet.log") 2>&1
nvidia-smi --query-gpu=name --format=csv,noheader | sort | uniq -c
T=/tmp/ad
mkdir -p $T
for n in 1 2; do
  for bin in gallop-sync gallop; do
    timeout 60 ./.dev/$bin train --quiet --deterministic --events 100000 --eval-every 0 --checkpoint-every 0 --window 20 \
      --batch-size 1024 --steps 300 --device gpu:$(seq -s, 0 $((n-1))) --runs-dir $T/$bin-$n > $T/$bin-$n.log 2>&1 || tail -3 $T/$bin-$n.log
    echo "$bin gpus=$n: $(grep -oE 'p50 step [0-9.]+ [µm]s' $T/$bin-$n.log) $(grep -oE 'macro-F1 [0-9.]+' $T/$bin-$n.log | head -1)"
  done
  python3 bench/gpu/losscmp.py $T/gallop-sync-$n $T/gallop-$n
done
