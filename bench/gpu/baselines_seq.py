"""Side-by-side baselines for gallop's sequence models on a GPU: the same
DeepLOB (model/deeplob.go, defaults DeepLOBConfig{}: Conv 32, Inception 64,
LSTM 64) or GRU (model/gru.go, hidden 64) training step, batch, loss and
optimizer in PyTorch (eager, torch.compile, bf16 autocast) and JAX (jit, Adam
written out). Prints one line per framework in baselines.py's format
(ms/step = median of timed steps after 20 warm-up steps, samples/s, TFLOP/s
= 3 x forward FLOPs / step time, compile s) and each framework's parameter
count next to gallop's.

gallop's parameter counts (from the Go code, 3 classes, window 100):
  DeepLOB defaults: convs 76,448 (conv1a 96, conv1b/c 4,128 each, conv2a
    2,080, conv2b/c 4,128 each, conv3a 10,272, conv3b/c 4,128 each, three
    1x1 inception convs 2,112 each, conv3x1 12,352, conv5x1 20,544)
    + LSTM 65,792 (wx 192x256, wh 64x256, ONE bias 256) + dense 195
    = 142,435.  (PyTorch's nn.LSTM has two biases: +256 = 142,691; see
    below for how the baseline matches gallop.)
  GRU-64 over F = 40: wx 40x192 + wh 64x192 + bx 192 + bh 192 + dense 195
    = 20,547  (over gallop's 51 features it would be 22,659).

Optimizer as train.DefaultOptimizer(): Adam lr 1e-3, betas 0.9/0.999,
eps 1e-8 (added outside the sqrt, as torch's Adam), no weight decay, and
global-norm gradient clipping at 1 with gallop's formula
scale = min(1, 1 / (norm + 1e-6)) (the same as torch's clip_grad_norm_).
Both baselines clip. Not mirrored: gallop's non-finite guard (a Where per
parameter that skips a step with a non-finite loss or gradient), and the
input side (gallop normalises x with mean/std and, for DeepLOB, gathers the
40 book columns out of 51 features; here x is already [B, T, 40]).

Precision: fp32 with each framework's default TF32 policy, as baselines.py
(gallop/XLA and JAX use TF32 for fp32 dots and convolutions; PyTorch uses
TF32 in cuDNN convolutions and RNNs but not in cuBLAS matmuls). This script
does not touch the TF32 flags (torch's legacy/new flag APIs must not be
mixed).

usage: python3 bench/gpu/baselines_seq.py --model deeplob|gru|transformer --batch 64 --steps 200
       [--only eager,compile,bf16-autocast,jax] [--device cuda]
"""
import argparse, os, statistics, sys, time
from timing import time_calls, torch_step

# JAX runs in the same process after torch: grow its GPU memory on demand
# instead of preallocating 75% of the card.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

p = argparse.ArgumentParser()
p.add_argument("--model", default="deeplob", choices=["deeplob", "gru", "transformer"])
p.add_argument("--batch", type=int, default=64)
p.add_argument("--steps", type=int, default=200)
p.add_argument("--window", type=int, default=100, help="events per window (T)")
p.add_argument("--features", type=int, default=40, help="GRU input features F (DeepLOB always 40)")
p.add_argument("--hidden", type=int, default=64, help="GRU hidden size")
p.add_argument("--device", default="cuda", help="cuda or cpu")
p.add_argument("--only", default="", help="comma list: eager,compile,bf16-autocast,jax")
a = p.parse_args()
B, T, K = a.batch, a.window, 3
C, I, H = 32, 64, 64  # DeepLOB defaults: Conv, Inception, LSTM hidden
FG, HG = (a.features, a.hidden)  # GRU and transformer: input features; GRU hidden size
D, L, NH, FF = 64, 2, 4, 256     # transformer defaults (model.TransformerConfig)
only = [s for s in a.only.split(",") if s]

# DeepLOB convolutions in gallop's Params order: (name, kh, kw, in, out).
# "lvl" convs are 1xk stride 1xk over the 40 book columns (no padding); the
# others are kx1 along time with TF 'same' padding ((k-1)//2 rows before,
# the rest after: 1 and 2 for k = 4).
CONVS = [("conv1a", 1, 2, 1, C), ("conv1b", 4, 1, C, C), ("conv1c", 4, 1, C, C),
         ("conv2a", 1, 2, C, C), ("conv2b", 4, 1, C, C), ("conv2c", 4, 1, C, C),
         ("conv3a", 1, 10, C, C), ("conv3b", 4, 1, C, C), ("conv3c", 4, 1, C, C),
         ("inc1.conv1x1", 1, 1, C, I), ("inc1.conv3x1", 3, 1, I, I),
         ("inc2.conv1x1", 1, 1, C, I), ("inc2.conv5x1", 5, 1, I, I),
         ("inc3.conv1x1", 1, 1, C, I)]

def gallop_params():
    if a.model == "gru":
        return FG * 3 * HG + HG * 3 * HG + 2 * 3 * HG + HG * K + K
    if a.model == "transformer":
        block = 2 * D + D * 3 * D + 3 * D + D * D + D + 2 * D + D * FF + FF + FF * D + D
        return FG * D + D + T * D + L * block + 2 * D + D * K + K
    convs = sum(kh * kw * ci * co + co for _, kh, kw, ci, co in CONVS)
    return convs + 3 * I * 4 * H + H * 4 * H + 4 * H + H * K + K

def fwd_macs_per_sample():
    """Multiply-adds of one forward pass (convs, recurrent matmuls, dense)."""
    if a.model == "gru":
        return T * (FG + HG) * 3 * HG + HG * K
    if a.model == "transformer":  # projections, attention scores and mixing, MLP
        return T * FG * D + L * (T * (3 * D * D + D * D + 2 * D * FF) + 2 * T * T * D) + D * K
    macs, width = 0, 40
    for _, kh, kw, ci, co in CONVS:
        if kw > 1:
            width //= kw  # 40 -> 20 -> 10 -> 1
        macs += T * width * kh * kw * ci * co
    return macs + T * (3 * I + H) * 4 * H + H * K

LABEL = {"deeplob": "deeplob", "gru": f"gru{HG}-f{FG}", "transformer": f"transf{D}x{L}-f{FG}"}[a.model]
flops = 3 * 2 * B * fwd_macs_per_sample()  # forward + backward ~ 3 x forward

def report(name, times, compile_s):
    ms = statistics.median(times) * 1e3
    print(f"{name:28s} layers {LABEL:>16s} batch {B:5d}  {ms:8.3f} ms/step  {B/ms*1e3:12.0f} samples/s  "
          f"{flops/ms/1e9:8.2f} TFLOP/s  compile {compile_s:6.2f} s", flush=True)

def show_params(name, n):
    flag = "" if n == gallop_params() else "  MISMATCH"
    print(f"{name}: params {n} (gallop {gallop_params()}){flag}", flush=True)

# ---------------------------------------------------------------- PyTorch
def torch_models():
    import torch
    import torch.nn as nn
    import torch.nn.functional as Fn

    class DeepLOB(nn.Module):
        # Input [B, 1, T, 40] (NCHW: time is H, book columns are W).
        def __init__(self):
            super().__init__()
            cv = {}
            for name, kh, kw, ci, co in CONVS:
                stride = (1, kw) if kw > 1 else 1
                # Odd time kernels (3, 5) pad symmetrically in cuDNN; k = 4
                # is padded explicitly in forward (TF 'same' is asymmetric).
                pad = ((kh - 1) // 2, 0) if kh in (3, 5) else 0
                cv[name.replace(".", "_")] = nn.Conv2d(ci, co, (kh, kw), stride=stride, padding=pad)
            self.cv = nn.ModuleDict(cv)
            # MaxPool2d pads with -inf, as gallop's 'same' max-pool.
            self.pool = nn.MaxPool2d((3, 1), stride=1, padding=(1, 0))
            # gates i, f, g, o as gallop's. gallop has ONE bias per gate
            # (Keras); nn.LSTM has bias_ih and bias_hh, which cuDNN adds.
            # To match gallop's parameter count (and math), bias_hh is
            # frozen at zero: not trained, not in Adam's state.
            self.lstm = nn.LSTM(3 * I, H, batch_first=True)
            with torch.no_grad():
                self.lstm.bias_hh_l0.zero_()
                self.lstm.bias_ih_l0.zero_()
                self.lstm.bias_ih_l0[H:2 * H] = 1.0  # forget bias 1, as gallop's Init
            self.lstm.bias_hh_l0.requires_grad_(False)
            self.out = nn.Linear(H, K)

        def forward(self, x):
            c = self.cv
            act = lambda t: Fn.leaky_relu(t, 0.01)
            same4 = lambda t: Fn.pad(t, (0, 0, 1, 2))  # time (dim 2): 1 before, 2 after
            h = x
            for blk in ("1", "2", "3"):
                h = act(c["conv" + blk + "a"](h))             # 1xk stride 1xk over the levels
                h = act(c["conv" + blk + "b"](same4(h)))      # 4x1 over time
                h = act(c["conv" + blk + "c"](same4(h)))
            i1 = act(c["inc1_conv3x1"](act(c["inc1_conv1x1"](h))))
            i2 = act(c["inc2_conv5x1"](act(c["inc2_conv1x1"](h))))
            i3 = act(c["inc3_conv1x1"](self.pool(h)))
            h = torch.cat([i1, i2, i3], 1)                    # [B, 3I, T, 1]
            h = h.squeeze(3).transpose(1, 2)                  # [B, T, 3I]
            _, (hn, _) = self.lstm(h)
            return self.out(hn[0])                            # last hidden state

    class GRUNet(nn.Module):
        # gallop's cell IS torch.nn.GRU's (r, z, n order; reset gate applied
        # to h.wh + bh; two biases bx, bh), so nn.GRU matches it exactly.
        def __init__(self):
            super().__init__()
            self.gru = nn.GRU(FG, HG, batch_first=True)
            self.out = nn.Linear(HG, K)

        def forward(self, x):                                 # [B, T, F]
            _, hn = self.gru(x)
            return self.out(hn[0])

    class TransformerNet(nn.Module):
        # gallop's model.Transformer: input projection and learned position
        # embeddings, pre-LN blocks (causal attention with a fused QKV
        # projection, exact GELU MLP), final layer norm, logits of the last
        # position.
        def __init__(self):
            super().__init__()
            self.inp = nn.Linear(FG, D)
            self.pos = nn.Parameter(torch.randn(T, D) * 0.02)
            self.blocks = nn.ModuleList([nn.ModuleDict({
                "ln1": nn.LayerNorm(D), "qkv": nn.Linear(D, 3 * D), "o": nn.Linear(D, D),
                "ln2": nn.LayerNorm(D), "w1": nn.Linear(D, FF), "w2": nn.Linear(FF, D)}) for _ in range(L)])
            self.lnf = nn.LayerNorm(D)
            self.out = nn.Linear(D, K)
            self.register_buffer("masked", torch.triu(torch.ones(T, T, dtype=torch.bool), 1))

        def forward(self, x):                                 # [B, T, F]
            b, dh = x.shape[0], D // NH
            h = self.inp(x) + self.pos
            for blk in self.blocks:
                q, k, v = blk["qkv"](blk["ln1"](h)).split(D, -1)
                q, k, v = (t.reshape(b, T, NH, dh).transpose(1, 2) for t in (q, k, v))
                s = (q @ k.transpose(-1, -2)) / dh ** 0.5
                att = torch.softmax(s.masked_fill(self.masked, -1e9), -1) @ v
                h = h + blk["o"](att.transpose(1, 2).reshape(b, T, D))
                h = h + blk["w2"](Fn.gelu(blk["w1"](blk["ln2"](h))))
            return self.out(self.lnf(h[:, -1]))

    return torch, {"deeplob": DeepLOB, "gru": GRUNet, "transformer": TransformerNet}[a.model]

shown = []  # torch params printed once

def torch_run(mode):
    torch, Net = torch_models()
    dev = a.device
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    torch.manual_seed(0)
    if a.model == "deeplob":
        x = torch.randn(B, 1, T, 40, device=dev)
    else:
        x = torch.randn(B, T, FG, device=dev)
    y = torch.randint(0, K, (B,), device=dev)
    m = Net().to(dev)
    ps = [q for q in m.parameters() if q.requires_grad]
    if not shown:
        shown.append(1)
        show_params("torch", sum(q.numel() for q in ps))
    opt = torch.optim.Adam(ps, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0)

    # gallop's DefaultOptimizer clips the global gradient norm at 1.
    step = torch_step(m, opt, x, y, mode, dev, clip=1.0)

    # With compile, nn.LSTM/nn.GRU calls are graph breaks for Dynamo (cuDNN
    # runs them eagerly); the convs, loss, clip and Adam are compiled.
    times, c = time_calls(torch.compile(step) if mode == "compile" else step, a.steps, sync)
    report(f"torch {mode} ({dev})", times, c)
    del m, opt, x, y
    if dev == "cuda":
        torch.cuda.empty_cache()

# ---------------------------------------------------------------- JAX
def jax_run():
    import jax
    import jax.numpy as jnp
    from jax import lax
    f32 = jnp.float32
    keys = iter(jax.random.split(jax.random.PRNGKey(0), 64))
    rnd = lambda shape, fan: jax.random.normal(next(keys), shape, f32) * (1.0 / fan) ** 0.5

    # Parameters in gallop's Params order and layouts (HWIO kernels, x.w).
    if a.model == "deeplob":
        params = []
        for _, kh, kw, ci, co in CONVS:
            params += [rnd((kh, kw, ci, co), kh * kw * ci), jnp.zeros((co,), f32)]
        params += [rnd((3 * I, 4 * H), 3 * I), rnd((H, 4 * H), H),
                   jnp.zeros((4 * H,), f32).at[H:2 * H].set(1.0),  # forget bias 1
                   rnd((H, K), H), jnp.zeros((K,), f32)]
        x = jax.random.normal(next(keys), (B, T, 40), f32)
    else:
        params = [rnd((FG, 3 * HG), FG), rnd((HG, 3 * HG), HG),
                  jnp.zeros((3 * HG,), f32), jnp.zeros((3 * HG,), f32),
                  rnd((HG, K), HG), jnp.zeros((K,), f32)]
        x = jax.random.normal(next(keys), (B, T, FG), f32)
    y = jax.random.randint(next(keys), (B,), 0, K)
    show_params("jax", sum(int(q.size) for q in params))

    act = lambda t: jnp.where(t > 0, t, 0.01 * t)  # LeakyReLU(0.01)

    def conv(h, w, b, stride_w, pad_t):
        # h [B, T, L, Cin] (NHWC), w [kh, kw, Cin, Cout] (HWIO, as gallop).
        y = lax.conv_general_dilated(h, w, window_strides=(1, stride_w),
                                     padding=[pad_t, (0, 0)],
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y + b

    def deeplob(ps, x):
        h = x.reshape(B, T, 40, 1)
        cw = {name: (ps[2 * j], ps[2 * j + 1], kh, kw) for j, (name, kh, kw, _, _) in enumerate(CONVS)}

        def cv(name, h):
            w, b, kh, kw = cw[name]
            before = (kh - 1) // 2  # TF 'same' along time: rest goes after
            return act(conv(h, w, b, kw if kw > 1 else 1, (before, kh - 1 - before)))

        for blk in ("1", "2", "3"):
            h = cv("conv" + blk + "c", cv("conv" + blk + "b", cv("conv" + blk + "a", h)))
        i1 = cv("inc1.conv3x1", cv("inc1.conv1x1", h))
        i2 = cv("inc2.conv5x1", cv("inc2.conv1x1", h))
        pooled = lax.reduce_window(h, -jnp.inf, lax.max, (1, 3, 1, 1), (1, 1, 1, 1),
                                   ((0, 0), (1, 1), (0, 0), (0, 0)))  # 3x1 'same', -inf pad
        i3 = cv("inc3.conv1x1", pooled)
        feats = jnp.concatenate([i1, i2, i3], -1).reshape(B, T, 3 * I)
        wx, wh, b, ow, ob = ps[2 * len(CONVS):]
        gx = jnp.swapaxes(feats @ wx + b, 0, 1)  # [T, B, 4H], x.wx + b for all steps at once

        def cell(carry, g):  # gallop's LSTM: gates i, f, g, o; one bias
            hh, cc = carry
            i, f, gg, o = jnp.split(g + hh @ wh, 4, axis=-1)
            cc = jax.nn.sigmoid(f) * cc + jax.nn.sigmoid(i) * jnp.tanh(gg)
            hh = jax.nn.sigmoid(o) * jnp.tanh(cc)
            return (hh, cc), None

        z = jnp.zeros((B, H), f32)
        (hh, _), _ = lax.scan(cell, (z, z), gx)
        return hh @ ow + ob

    def gru(ps, x):
        wx, wh, bx, bh, ow, ob = ps
        gx = jnp.swapaxes(x @ wx + bx, 0, 1)  # [T, B, 3H]

        def cell(hh, g):  # gallop's (= torch's) GRU: r, z, n
            xr, xz, xn = jnp.split(g, 3, axis=-1)
            hr, hz, hn = jnp.split(hh @ wh + bh, 3, axis=-1)
            r = jax.nn.sigmoid(xr + hr)
            zg = jax.nn.sigmoid(xz + hz)
            n = jnp.tanh(xn + r * hn)
            return (1 - zg) * n + zg * hh, None

        hh, _ = lax.scan(cell, jnp.zeros((B, HG), f32), gx)
        return hh @ ow + ob

    fwd = deeplob if a.model == "deeplob" else gru

    def loss_fn(ps, x, y):
        logp = jax.nn.log_softmax(fwd(ps, x))
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], 1))

    @jax.jit
    def step(ps, m, v, x, y, t):
        l, g = jax.value_and_grad(loss_fn)(ps, x, y)
        # Global-norm clipping at 1, gallop's formula (DefaultOptimizer).
        gnorm = jnp.sqrt(sum(jnp.sum(q * q) for q in jax.tree.leaves(g)))
        scale = jnp.minimum(1.0, 1.0 / (gnorm + 1e-6))
        g = jax.tree.map(lambda q: q * scale, g)
        m = jax.tree.map(lambda a_, b_: 0.9 * a_ + 0.1 * b_, m, g)
        v = jax.tree.map(lambda a_, b_: 0.999 * a_ + 0.001 * b_ * b_, v, g)
        bc1, bc2 = 1 - 0.9 ** t, 1 - 0.999 ** t
        ps = jax.tree.map(lambda q, a_, b_: q - 1e-3 * (a_ / bc1) / (jnp.sqrt(b_ / bc2) + 1e-8), ps, m, v)
        return ps, m, v, l

    m = jax.tree.map(jnp.zeros_like, params)
    v = jax.tree.map(jnp.zeros_like, params)
    t0 = time.perf_counter()
    params, m, v, l = step(params, m, v, x, y, 1.0)
    l.block_until_ready()
    c = time.perf_counter() - t0
    for i in range(20):
        params, m, v, l = step(params, m, v, x, y, float(i + 2))
    l.block_until_ready()
    times = []
    for i in range(a.steps):
        t = time.perf_counter()
        params, m, v, l = step(params, m, v, x, y, float(i + 22))
        l.block_until_ready()
        times.append(time.perf_counter() - t)
    report(f"jax jit (adam, {jax.devices()[0].platform})", times, c)

# ---------------------------------------------------------------- main
runs = [(mode, lambda mode=mode: torch_run(mode))
        for mode in ("eager", "compile", "bf16-autocast") if not only or mode in only]
if a.device == "cuda" and (not only or "jax" in only) and a.model != "transformer":
    runs.append(("jax", jax_run))  # (no JAX transformer written)
for name, fn in runs:
    try:
        fn()
    except Exception as e:  # report and go on to the next framework
        msg = str(e).strip().splitlines()
        print(f"{name}: failed: {type(e).__name__}: {msg[0] if msg else ''}", file=sys.stderr, flush=True)
