"""PyTorch CPU baseline for per-event inference: the same MLP weights as a
gallop export, batch 1 (one event = one window), with 1 thread and with the
default thread count. Prints p50/p99/p99.9 per event.

usage: python3 infer_cpu.py <export-dir> [events]
"""
import json, sys, time, struct
import numpy as np
import torch

d = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
spec = json.load(open(d + "/model.json"))
raw = open(d + "/model.safetensors", "rb").read()
hl = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + hl])
def t(name):
    e = hdr[name]; b, e2 = e["data_offsets"]
    return torch.from_numpy(np.frombuffer(raw[8 + hl + b: 8 + hl + e2], dtype=np.float32).reshape(e["shape"]).copy())
L = spec["layers"]; W = spec["window"]; F = len(spec["features"])
mean, inv = t("norm.mean"), 1 / t("norm.std")
ws = [(t(f"dense{i}.w"), t(f"dense{i}.b")) for i in range(len(L) - 1)]
def fwd(x):
    h = ((x.view(W, F) - mean) * inv).view(1, W * F)
    for i, (w, b) in enumerate(ws):
        h = h @ w + b
        if i + 1 < len(ws):
            h = torch.relu(h)
    return h
x = torch.randn(W * F)
for threads in (1, torch.get_num_threads()):
    torch.set_num_threads(threads)
    with torch.inference_mode():
        for _ in range(2000):
            fwd(x)
        lat = []
        for _ in range(n):
            t0 = time.perf_counter_ns(); fwd(x); lat.append(time.perf_counter_ns() - t0)
    lat.sort()
    q = lambda f: lat[min(len(lat) - 1, int(f * len(lat)))] / 1e3
    print(f"torch eager CPU, {threads} thread(s), MLP {L}: p50 {q(0.5):.2f} µs  p99 {q(0.99):.2f} µs  p99.9 {q(0.999):.2f} µs")
