"""Side-by-side baselines for gallop's GPU train step: the same MLP, batch,
loss and Adam in PyTorch (eager, torch.compile, bf16 autocast) and JAX (jit,
Adam written out). Prints one line per framework: ms/step (median of timed
steps after warm-up), samples/s, compile seconds.

usage: python3 baselines.py --layers 510,128,64,3 --batch 256 --steps 500
"""
import argparse, time, statistics, sys
from timing import time_calls, torch_step

p = argparse.ArgumentParser()
p.add_argument("--layers", default="510,128,64,3")
p.add_argument("--batch", type=int, default=256)
p.add_argument("--steps", type=int, default=500)
p.add_argument("--device", default="cuda", help="cuda or cpu")
p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
p.add_argument("--only", default="", help="comma list: eager,compile,bf16-autocast,jax")
a = p.parse_args()
L = [int(x) for x in a.layers.split(",")]
B = a.batch
flops = 6 * B * sum(L[i] * L[i + 1] for i in range(len(L) - 1))

def report(name, times, compile_s):
    ms = statistics.median(times) * 1e3
    print(f"{name:28s} layers {a.layers:>16s} batch {B:5d}  {ms:8.3f} ms/step  {B/ms*1e3:12.0f} samples/s  "
          f"{flops/ms/1e9:8.2f} TFLOP/s  compile {compile_s:6.2f} s", flush=True)

def torch_runs():
    import torch
    dev = a.device
    if a.threads:
        torch.set_num_threads(a.threads)
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    torch.manual_seed(0)
    x = torch.randn(B, L[0], device=dev)
    y = torch.randint(0, L[-1], (B,), device=dev)
    def make():
        layers = []
        for i in range(len(L) - 1):
            layers.append(torch.nn.Linear(L[i], L[i + 1]))
            if i + 2 < len(L):
                layers.append(torch.nn.ReLU())
        return torch.nn.Sequential(*layers).to(dev)
    modes = ["eager", "compile", "bf16-autocast"]
    if a.only:
        modes = [m for m in modes if m in a.only.split(",")]
    for mode in modes:
        m = make()
        opt = torch.optim.Adam(m.parameters(), lr=1e-3)
        step = torch_step(m, opt, x, y, mode, dev)
        times, c = time_calls(torch.compile(step) if mode == "compile" else step, a.steps, sync)
        report(f"torch {mode} ({dev}{', %d threads' % torch.get_num_threads() if dev == 'cpu' else ''})", times, c)

def jax_run():
    import jax, jax.numpy as jnp
    k = jax.random.PRNGKey(0)
    params = []
    for i in range(len(L) - 1):
        k, s = jax.random.split(k)
        params.append((jax.random.normal(s, (L[i], L[i + 1])) * (2 / L[i]) ** 0.5, jnp.zeros(L[i + 1])))
    x = jax.random.normal(k, (B, L[0]))
    y = jax.random.randint(k, (B,), 0, L[-1])
    def loss_fn(ps):
        h = x
        for i, (w, b) in enumerate(ps):
            h = h @ w + b
            if i + 1 < len(ps):
                h = jax.nn.relu(h)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(h), y[:, None], 1))
    m = jax.tree.map(jnp.zeros_like, params)
    v = jax.tree.map(jnp.zeros_like, params)
    @jax.jit
    def step(ps, m, v, t):
        l, g = jax.value_and_grad(loss_fn)(ps)
        m = jax.tree.map(lambda a, b: 0.9 * a + 0.1 * b, m, g)
        v = jax.tree.map(lambda a, b: 0.999 * a + 0.001 * b * b, v, g)
        bc1, bc2 = 1 - 0.9 ** t, 1 - 0.999 ** t
        ps = jax.tree.map(lambda p, a, b: p - 1e-3 * (a / bc1) / (jnp.sqrt(b / bc2) + 1e-8), ps, m, v)
        return ps, m, v, l
    t0 = time.perf_counter()
    params, m, v, l = step(params, m, v, 1.0)
    l.block_until_ready()
    c = time.perf_counter() - t0
    for i in range(20):
        params, m, v, l = step(params, m, v, float(i + 2))
    l.block_until_ready()
    times = []
    for i in range(a.steps):
        t = time.perf_counter()
        params, m, v, l = step(params, m, v, float(i + 22))
        l.block_until_ready()
        times.append(time.perf_counter() - t)
    report("jax jit (adam)", times, c)

runs = [torch_runs]
if a.device == "cuda" and (not a.only or "jax" in a.only):
    runs.append(jax_run)
for fn in runs:
    try:
        fn()
    except Exception as e:
        print(f"{fn.__name__}: failed: {e}", file=sys.stderr)
