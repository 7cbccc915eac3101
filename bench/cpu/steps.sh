#!/usr/bin/env bash
# CPU training step, side by side in one run: gallop against compute v0.1.2 as
# published (go.mod without the replace of third_party/compute, so
# ops_sequential, the configuration gallop needed there), gallop as built
# (third_party/compute) one operation at a time and with operations
# concurrent (gallop's default), and PyTorch eager on the same threads.
#
#   bash bench/cpu/steps.sh            # ROUNDS=2 THREADS=2 PY=/usr/bin/python3
#
# Prints each benchmark's ms/step per build and round. PyTorch runs
# bench/gpu/baselines_seq.py --device cpu (parameter counts equal gallop's).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-2}
THREADS=${THREADS:-2}
PY=${PY:-python3}
BENCH=${BENCH:-'Step/(deeplob|gru|transf|mlp-.510)'}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
grep -v 'replace github.com/gomlx/compute' go.mod > "$tmp/stock.mod"
cp go.sum "$tmp/stock.sum"
GOEXPERIMENT=simd go test -c -modfile="$tmp/stock.mod" -o "$tmp/stock.test" ./train/
GOEXPERIMENT=simd go test -c -o "$tmp/gallop.test" ./train/
run() { # name binary GALLOP_GO_BACKEND
	echo "== $1"
	(cd train && GOMAXPROCS=$THREADS GALLOP_GO_BACKEND=$3 "$2" -test.run x -test.bench "$BENCH" -test.benchtime 4x |
		awk '/^Benchmark/ {printf "%-48s %9.1f ms/step\n", $1, $3/1e6}')
}
for r in $(seq "$ROUNDS"); do
	echo "# round $r"
	run "published compute, ops_sequential" "$tmp/stock.test" ops_sequential
	run "gallop's compute, ops_sequential" "$tmp/gallop.test" ops_sequential
	run "gallop's compute, ops_parallel (default)" "$tmp/gallop.test" ops_parallel
	for m in deeplob gru transformer; do
		b=64
		[ $m = gru ] && b=256
		echo "== PyTorch eager $m, batch $b"
		OMP_NUM_THREADS=$THREADS "$PY" bench/gpu/baselines_seq.py --model $m --batch $b --device cpu --only eager --steps 8 --features 51 2>&1 | grep 'ms/step'
	done
	echo "== PyTorch eager MLP 510-128-64-3, batch 256"
	OMP_NUM_THREADS=$THREADS "$PY" bench/gpu/baselines.py --layers 510,128,64,3 --batch 256 --device cpu --threads "$THREADS" --only eager --steps 300 2>&1 | grep 'ms/step\|ms '

done
