#!/usr/bin/env bash
# Sequence models (GRU, transformer; packed variable-length sequences) data
# parallel over the GPUs of one host (see BENCHMARKS.md, "Data parallel"):
# the parity test of a data-parallel step against one device on the ranks'
# batches stacked, loss curves 1 vs N GPUs at the same global batch under
# both strategies, weak scaling in tokens/s, and the ranks' balance (kk vs
# none). Needs .dev/gallop and .dev/train.test:
#   GOEXPERIMENT=simd go build -ldflags="-s -w" -o .dev/gallop ./cmd/gallop
#   GOEXPERIMENT=simd go test -c -ldflags="-s -w" -o .dev/train.test ./train
# ARCHS picks the models (default "gru transformer"); TEST=0 skips the test.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
exec > >(tee "$OUT/dpseq.log") 2>&1
nvidia-smi --query-gpu=name --format=csv,noheader | sort | uniq -c
N=$(nvidia-smi -L | wc -l)
ids=$(seq -s, 0 $((N-1)))
if [ "${TEST:-1}" = 1 ]; then
  echo "== parity: data-parallel sequence step vs one device on the stacked batches"
  (cd train 2>/dev/null || true; GALLOP_TEST_DEVICES=gpu:$ids timeout 300 ../.dev/train.test -test.run 'TestSeqParallelEqualsStacked' -test.v 2>&1 \
    | grep -E "^(=== RUN|--- |PASS|FAIL|ok)|seqparallel_test" | grep -v "^=== RUN")
fi
run() { # name devices args...
  local name=$1 dev=$2; shift 2
  timeout 150 ./.dev/gallop train --quiet --layout packed --events ${EVENTS:-200000} --eval-every 0 --checkpoint-every 0 \
    --device gpu:$dev --runs-dir "$OUT/$name" "$@" > "$OUT/$name.log" 2>&1 || { echo "$name: failed"; tail -3 "$OUT/$name.log"; return; }
  echo "$name: $(grep -oE "train [0-9.]+s \(.*\)" "$OUT/$name.log") | $(grep -oE "macro-F1 [0-9.]+" "$OUT/$name.log" | head -1)"
  grep -E "^epoch" "$OUT/$name.log" | head -1 | sed 's/^/    /'
}
for arch in ${ARCHS:-gru transformer}; do
  A="--arch $arch --steps ${STEPS:-300}"
  echo "== $arch: 1 GPU at 128 rows (64 events each) against $N GPUs at the same global batch, and at 128 rows per GPU"
  run $arch-1 0 $A --batch-size 128
  run $arch-$N-sharding $ids $A --batch-size 128 --dp-strategy sharding
  run $arch-$N-replicas $ids $A --batch-size 128 --dp-strategy replicas
  python3 bench/gpu/losscmp.py $OUT/$arch-1 $OUT/$arch-$N-sharding $OUT/$arch-$N-replicas
  run $arch-$N-weak-kk $ids $A --batch-size $((128*N))
  run $arch-$N-weak-none $ids $A --batch-size $((128*N)) --seq-balance none
done
