"""PyTorch/NCCL all-reduce of gallop's gradient sizes on the GPUs of one host,
one process a GPU, for comparison with the all-reduce gallop's profiler times
alone (see BENCHMARKS.md, "Data parallel"). Run: python3 bench/gpu/allreduce.py
"""
import os, statistics, sys, time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

# (name, elements, dtype): the MLP 1020-4096x4-3's gradients in fp32 and
# bf16, and DeepLOB's.
CASES = [("mlp-54.5M fp32", 54_538_243, torch.float32),
         ("mlp-54.5M bf16", 54_538_243, torch.bfloat16),
         ("deeplob fp32", 142_435, torch.float32)]


def worker(rank, n, reps):
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", rank=rank, world_size=n)
    for name, size, dt in CASES:
        x = torch.ones(size, dtype=dt, device="cuda")
        for _ in range(5):
            dist.all_reduce(x)
        torch.cuda.synchronize()
        times = []
        for _ in range(reps):
            dist.barrier()
            torch.cuda.synchronize()
            t = time.perf_counter()
            dist.all_reduce(x)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        if rank == 0:
            med = statistics.median(times)
            mb = size * x.element_size() / 1e6
            print(f"torch nccl all-reduce {name:16s} {mb:8.1f} MB  {med*1e3:7.3f} ms  {mb/1e3/med:6.1f} GB/s (algbw)", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    n = torch.cuda.device_count()
    print(torch.cuda.get_device_name(0), "×", n, "torch", torch.__version__, "NCCL_NVLS_ENABLE", os.environ.get("NCCL_NVLS_ENABLE"))
    mp.spawn(worker, args=(n, int(sys.argv[1]) if len(sys.argv) > 1 else 50), nprocs=n)
