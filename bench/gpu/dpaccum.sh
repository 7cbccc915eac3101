#!/usr/bin/env bash
# Data parallel with gradient accumulation (each GPU sums its own
# micro-batches' gradients; one all-reduce per update) and with several
# steps per call, against one step per call: weak scaling at 1, 2 and 4
# GPUs (p50 optimizer step, or call, from the profiler), the multi-GPU
# accumulation tests, and 1 vs 2 GPU loss curves with accumulation. See
# BENCHMARKS.md. Needs, carried in .dev/:
#   GOEXPERIMENT=simd go build -ldflags="-s -w" -o .dev/gallop ./cmd/gallop
#   GOEXPERIMENT=simd go test -c -ldflags="-s -w" -o .dev/train.test ./train
# PART=a: tests, the large MLP and DeepLOB; PART=b: the GRU on packed
# sequences and the loss curves; PART=c: a and b without DeepLOB and the
# resume pair; PART=d: the large MLP with more micro-batches per update;
# PART=e: the multi-GPU tests, and the GRU with several steps per call.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/dpaccum.log") 2>&1
nvidia-smi --query-gpu=name --format=csv,noheader | sort | uniq -c
N=$(nvidia-smi -L | wc -l)
ALL=$(seq -s, 0 $((N-1)))
T=/tmp/dpaccum
mkdir -p $T
r() { # name ngpu gallop flags...
  local name=$1 n=$2; shift 2
  local dir=$T/$name-$n
  rm -rf $dir
  timeout ${TO:-120} ./.dev/gallop train --quiet --events ${EVENTS:-100000} --eval-every 0 --checkpoint-every 0 \
    --device gpu:$(seq -s, 0 $((n-1))) --runs-dir $dir "$@" > $dir.log 2>&1 || { echo "$name gpus=$n: failed"; tail -3 $dir.log; return; }
  echo "$name gpus=$n: $(grep -oE 'p50 step [0-9.]+ [µm]s' $dir.log) $(grep -oE 'then [0-9.]+ [µm]s/step' $dir.log) $(grep -oE 'all-reduce of [0-9.]+ MB alone: [0-9.]+ [µm]s' $dir.log)"
}
if [ "${PART:-a}" = c ]; then
  PART=ab NS_DEEPLOB=" " RESUME=0
fi
if [[ "${PART:-a}" = a* ]]; then
  echo "== tests on gpu:$ALL"
  GALLOP_TEST_DEVICES=gpu:$ALL timeout 240 ./.dev/train.test -test.run 'Accumulat' -test.v 2>&1 | grep -E "^(---|ok|FAIL|PASS)|_test.go"
  MLP="--window 20 --hidden 4096,4096,4096,4096"
  if [ "${MLP_RUNS:-1}" = 1 ]; then  # MLP_RUNS=0: DeepLOB only
    for n in ${NS:-1 2 4}; do
      [ $n -le $N ] || continue
      r mlp1024 $n $MLP --batch-size $((1024*n)) --steps 200
      r mlp1024-acc4 $n $MLP --batch-size $((1024*n)) --accumulate 4 --steps 60
    done
    if [ $N -ge 4 ]; then
      r mlp1024-acc8 4 $MLP --batch-size 4096 --accumulate 8 --steps 40
      r mlp1024-acc8 1 $MLP --batch-size 1024 --accumulate 8 --steps 40
    fi
  fi
  for n in ${NS_DEEPLOB:-1 4}; do
    [ $n -le $N ] || continue
    EVENTS=60000 r deeplob256 $n --arch deeplob --window 100 --batch-size $((256*n)) --steps 120
    EVENTS=60000 TO=240 r deeplob256-spc4 $n --arch deeplob --window 100 --batch-size $((256*n)) --steps 120 --steps-per-call 4
  done
fi
if [[ "${PART:-a}" = *b ]]; then
  GRU="--arch gru --hidden 64 --layout packed"
  for n in ${NS:-1 2 4}; do
    [ $n -le $N ] || continue
    r gru128 $n $GRU --batch-size $((128*n)) --steps 300
    r gru128-acc4 $n $GRU --batch-size $((128*n)) --accumulate 4 --steps 100
  done
  # Loss curves at one global batch and seed, 1 vs 2 GPUs, accumulating.
  r curve-mlp-acc2 1 --batch-size 512 --accumulate 2 --steps 600
  r curve-mlp-acc2 2 --batch-size 512 --accumulate 2 --steps 600
  python3 bench/gpu/losscmp.py $T/curve-mlp-acc2-1 $T/curve-mlp-acc2-2
  r curve-gru-acc2 1 $GRU --batch-size 64 --accumulate 2 --steps 300
  r curve-gru-acc2 2 $GRU --batch-size 64 --accumulate 2 --steps 300
  python3 bench/gpu/losscmp.py $T/curve-gru-acc2-1 $T/curve-gru-acc2-2
  for c in curve-mlp-acc2 curve-gru-acc2; do for n in 1 2; do
    echo "$c gpus=$n: $(grep -oE 'macro-F1 [0-9.]+' $T/$c-$n.log | head -1)"
  done; done
  # Resume a 1-GPU GRU run half-way on 2 GPUs (the pair a fifth-session call
  # did not reach).
  if [ "${RESUME:-1}" = 1 ]; then KINDS=gru PAIRS="gpu:0@gpu:0,1" timeout 200 bash bench/gpu/dpresume.sh; fi
fi
if [ "${PART:-a}" = d ]; then
  MLP="--window 20 --hidden 4096,4096,4096,4096"
  for n in 1 4; do [ $n -le $N ] && r mlp1024-acc16 $n $MLP --batch-size $((1024*n)) --accumulate 16 --steps 16; done
  for n in 1 4; do [ $n -le $N ] && r mlp4096-acc4 $n $MLP --batch-size $((4096*n)) --accumulate 4 --steps 20; done
fi
if [ "${PART:-a}" = e ]; then
  echo "== tests on gpu:$ALL"
  [ "${TESTS:-1}" = 1 ] && GALLOP_TEST_DEVICES=gpu:$ALL timeout 300 ./.dev/train.test -test.run 'TestParallelAccumulationEqualsOneDevice|TestSeqParallel|TestRunnerSetState' -test.v 2>&1 | grep -E "^(---|ok|FAIL|PASS)|_test.go"
  GRU="--arch gru --hidden 64 --layout packed"
  for n in ${NS:-1 2 4}; do
    [ $n -le $N ] || continue
    for k in ${SPC:-1 4 8}; do
      r gru128-spc$k $n $GRU --batch-size $((128*n)) --steps $((k*60)) --steps-per-call $k
    done
  done
fi
exit 0
