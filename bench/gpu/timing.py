"""The train step and timing loop the PyTorch baselines of bench/gpu share."""
import time


def time_calls(f, steps, sync, warmup=20):
    """Call f warmup times (the first call compiles, if it does), then steps
    times, synchronising after each; return the per-call seconds and the
    warm-up's seconds (compile time included)."""
    t0 = time.perf_counter()
    for _ in range(warmup):
        f()
    sync()
    c = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        f()
        sync()
        times.append(time.perf_counter() - t)
    return times, c


def torch_step(m, opt, x, y, mode, dev, clip=None):
    """Return a function that runs one optimizer step of m on (x, y) with
    cross-entropy, under bf16 autocast when mode is "bf16-autocast", the
    global gradient norm clipped at clip when given."""
    import torch
    ps = [q for q in m.parameters() if q.requires_grad]

    def step():
        opt.zero_grad(set_to_none=True)
        if mode == "bf16-autocast":
            with torch.autocast(dev, dtype=torch.bfloat16):
                loss = torch.nn.functional.cross_entropy(m(x), y)
        else:
            loss = torch.nn.functional.cross_entropy(m(x), y)
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(ps, clip)
        opt.step()
        return loss
    return step
