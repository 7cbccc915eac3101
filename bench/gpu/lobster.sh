#!/usr/bin/env bash
# DeepLOB vs the MLP vs the majority class on LOBSTER's GOOG 10-level sample,
# at k = 10, 50, 100 events (see BENCHMARKS.md). Needs .dev/gallop and
# .dev/lobster/LOBSTER_SampleFile_GOOG_2012-06-21_10.zip (carried).
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name --format=csv,noheader
Z=.dev/lobster/LOBSTER_SampleFile_GOOG_2012-06-21_10.zip
# θ per horizon (ticks) so that no class is tiny: FI-2010 picks α per horizon too.
for kt in "10 0.1" "50 1" "100 3"; do
  set -- $kt; k=$1; th=$2
  ./.dev/gallop data ingest -o /tmp/ds-$k -theta $th -horizons $k $Z > /dev/null || exit 1
  for arch in mlp deeplob; do
    echo "== k=$k θ=$th $arch"
    hidden=""; [ $arch = mlp ] && hidden="--hidden 256,128"
    # Time split 60/20/20: train, validation (selects the best step), test (reported).
    ./.dev/gallop train --quiet --device gpu --data /tmp/ds-$k --horizon $k --embargo $k --window 100 --arch $arch $hidden \
      --train-frac 0.6 --val-frac 0.2 --select-best --eval-every ${EVAL:-400} \
      --batch-size 64 --steps ${STEPS:-4000} --lr 1e-3 --checkpoint-every 0 --runs-dir "$OUT/runs-$k" 2>&1 \
      | grep -E "model |accuracy|select|time |gallop:"
  done
done
