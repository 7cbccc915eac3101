#!/usr/bin/env bash
# Per-device step times and stragglers on several GPUs: gallop train's
# device probes (train.Runner.ProbeDevices, every --device-probe-every
# steps) on a clean machine, with another process loading one GPU, and
# with token-balanced (kk) against unbalanced (none) sequence batches.
# See BENCHMARKS.md. Needs, carried in .dev/:
#   GOEXPERIMENT=simd go build -ldflags="-s -w" -o .dev/gallop ./cmd/gallop
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/dpprobe.log") 2>&1
nvidia-smi --query-gpu=name --format=csv,noheader | sort | uniq -c
N=$(nvidia-smi -L | wc -l)
ALL=$(seq -s, 0 $((N-1)))
SLOW=${SLOW:-$((N-2))}  # the GPU another process loads
T=/tmp/dpprobe
mkdir -p $T
show() { # run dir: the profile's devices and findings
  python3 - "$1" <<'PY'
import glob, json, sys
r = json.load(open(glob.glob(sys.argv[1] + "/*/profile.json")[0]))
rep = r.get("report", r)
devs = " ".join("%s %.3f ms (%.2fx, %d probes)" % (d["device"], d["ms"], d["ratio"], d["probes"]) for d in rep.get("devices") or [])
print("  p50 step %.3f ms; devices alone: %s; beyond the slowest %.3f ms" % (rep["step_ms"]["p50"], devs, rep.get("beyond_slowest_ms", 0)))
for f in rep.get("findings") or []:
    print("  finding:", f["message"])
print("  verdict:", rep["verdict"])
PY
}
r() { # name gallop flags...
  local name=$1; shift
  local dir=$T/$name
  rm -rf $dir
  timeout ${TO:-150} ./.dev/gallop train --quiet --events ${EVENTS:-60000} --eval-every 0 --checkpoint-every 0 \
    --device gpu:$ALL --runs-dir $dir "$@" > $dir.log 2>&1 || { echo "$name: failed"; tail -5 $dir.log; return; }
  echo "$name: $(grep -oE 'then [0-9.]+ [µm]s/step' $dir.log) $(grep -oE 'busiest rank [0-9.]+×' $dir.log | tail -1)"
  grep -E "device probes|first, with compilation" $dir.log | sed 's/^/  /'
  show $dir
  cp $dir/*/profile.json $OUT/$name.profile.json 2>/dev/null
}
if [ "${PARTS:-dl seq}" != seq ]; then
DL="--arch deeplob --window 100 --batch-size $((256*N)) --steps 150 --device-probe-every 25"
r deeplob-clean $DL
# Another process on GPU $SLOW: a matmul loop from PyTorch, for the whole run.
python3 -c "
import torch, time
a = torch.randn(4096, 4096, device='cuda:$SLOW')
t = time.time()
while time.time() - t < ${LOAD_S:-120}:
    for _ in range(50): b = a @ a
    torch.cuda.synchronize()
" &
LOAD=$!
sleep 5
r deeplob-gpu$SLOW-loaded $DL
kill $LOAD 2>/dev/null; wait $LOAD 2>/dev/null
fi
# Variable-length sequences, padded one per row: kk vs no balancing.
for bal in kk none; do
  r gru-padded-$bal --arch gru --hidden 64 --layout padded --seq-len ${SEQ_LEN:-256} --seq-balance $bal \
    --batch-size $((${SEQ_B:-32}*N)) --steps ${SEQ_STEPS:-300} --device-probe-every ${SEQ_EVERY:-25} --events ${EVENTS_SEQ:-100000}
done
exit 0
