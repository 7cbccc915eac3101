#!/usr/bin/env bash
# Does XLA overlap the gradient all-reduce with the backward pass? The large
# MLP (1020-4096×4-3, 1024 rows per GPU) on 1 GPU and on all the host's
# GPUs under XLA flag variants, with the optimized schedule of the step
# printed (bench/gpu/hlosched.py): where the all-reduces start and finish
# among the matmuls. Needs .dev/gallop. See BENCHMARKS.md, "Data parallel".
# ARGS: more gallop train flags for the several-GPU runs, TAG: a suffix for
# their names, e.g. ARGS=--dp-weight-grads-first TAG=-wgf.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
exec > >(tee "$OUT/dpoverlap.log") 2>&1
nvidia-smi --query-gpu=name --format=csv,noheader | sort | uniq -c
N=$(nvidia-smi -L | wc -l)
ids=$(seq -s, 0 $((N-1)))
M="--window 20 --hidden 4096,4096,4096,4096 --steps 300"
run() { # name devices xla-flags args...
  local name=$1 dev=$2 flags=$3; shift 3
  rm -rf /tmp/dump-$name
  XLA_FLAGS="$flags --xla_dump_to=/tmp/dump-$name --xla_dump_hlo_as_text --xla_dump_hlo_module_re=train_step.*" \
    timeout 150 ./.dev/gallop train --quiet --events 100000 --eval-every 0 --checkpoint-every 0 --device gpu:$dev \
    --runs-dir "$OUT/$name" "$@" > "$OUT/$name.log" 2>&1 || { echo "$name: failed"; tail -3 "$OUT/$name.log"; return; }
  local r=$(ls -td "$OUT/$name"/*/ | head -1)
  echo "$name [$flags]: $(./.dev/gallop profile "$r" | grep -oE "p50 [0-9.]+ [µm]s" | head -1) $(grep -oE "alone: [^ ]*" "$OUT/$name.log")"
  python3 bench/gpu/hlosched.py /tmp/dump-$name
  [ -n "${KEEP:-}" ] && mkdir -p $OUT/hlo && for f in /tmp/dump-$name/*train_step*after_optimizations.txt; do gzip -c "$f" > $OUT/hlo/$name.$(basename "$f").gz; done
}
[ "${SKIP1:-0}" = 1 ] || run mlp-1 0 "" $M --batch-size 1024
# The second call's variants (BENCHMARKS.md):
#   VARIANTS="ale=--xla_gpu_enable_analytical_latency_estimator=true sol=--xla_gpu_enable_analytical_sol_latency_estimator=true
#     ale-lim2=--xla_gpu_enable_analytical_latency_estimator=true,--xla_gpu_experimental_parallel_collective_overlap_limit=2"
for v in ${VARIANTS:-"base=" "lhs=--xla_gpu_enable_latency_hiding_scheduler=true" "nocombine=--xla_gpu_all_reduce_combine_threshold_bytes=0" "lhs-8mb=--xla_gpu_enable_latency_hiding_scheduler=true,--xla_gpu_all_reduce_combine_threshold_bytes=8388608"}; do
  name=${v%%=*} flags=${v#*=}; flags=${flags//,/ }
  for st in sharding replicas; do
    run mlp-$N-$st-$name${TAG:-} $ids "$flags" $M --batch-size $((1024*N)) --dp-strategy $st ${ARGS:-}
  done
done
