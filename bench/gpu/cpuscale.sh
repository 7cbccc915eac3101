#!/usr/bin/env bash
# The Go backend's CPU step on the device machine by worker count and build
# (see BENCHMARKS.md, "CPU step on the device machine"). Needs the train
# package's benchmark binaries:
#   GOEXPERIMENT=simd go test -c -o .dev/train-simd.test ./train/
#   go test -c -o .dev/train-nosimd.test ./train/
# and, to compare with GoMLX's compute as published (go.mod without the
# replace line of third_party/compute), optionally:
#   grep -v "replace github.com/gomlx/compute" go.mod > /tmp/stock.mod; cp go.sum /tmp/stock.sum
#   GOEXPERIMENT=simd go test -c -modfile=/tmp/stock.mod -o .dev/train-stock-simd.test ./train/
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
exec > >(tee "$OUT/cpuscale.log") 2>&1
lscpu | grep -E "Model name|^CPU\(s\)"
echo "AVX-512F: $(grep -q avx512f /proc/cpuinfo && echo yes || echo no); AMX: $(grep -q amx_tile /proc/cpuinfo && echo yes || echo no)"
B=${BENCH:-Step/(deeplob|gru|mlp-.510)}
run() { # label, binary, env...
  local label=$1 bin=$2; shift 2
  echo "== $label"
  env "$@" timeout 200 $bin -test.run x -test.bench "$B" -test.benchtime ${TIMES:-1x} 2>&1 | grep -E "^Benchmark" | awk '{printf "   %-34s %8.1f ms/step\n", $1, $3/1e6}'
}
run "simd, default workers" .dev/train-simd.test
for p in ${PAR-1}; do run "simd, parallelism=$p" .dev/train-simd.test GALLOP_GO_BACKEND=ops_sequential,parallelism=$p; done
run "no simd, default workers" .dev/train-nosimd.test
[ -x .dev/train-stock-simd.test ] && run "compute as published, simd, ops_sequential (its deadlock-free mode)" .dev/train-stock-simd.test GALLOP_GO_BACKEND=ops_sequential
