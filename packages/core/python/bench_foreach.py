"""Times one optimizer step of AccSGD (per-parameter reference path, and foreach=True) beside
torch.optim.SGD(momentum=0.9, foreach=True) on the same float32 parameters, on the CPU (or
--device cuda). Prints medians and ratios against SGD, measured in this process with the candidates' steps
interleaved; compare ratios, not times, across machines.

    /usr/bin/python3 packages/core/python/bench_foreach.py            # 16,777,216 parameters
    /usr/bin/python3 packages/core/python/bench_foreach.py --tensors 1024 --threads 1 2
"""

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from accsgd_torch import AccSGD  # noqa: E402


def step_ms(optimizer, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1e3


def medians(candidates, elements, count, repeats, device):
    """Median step time per candidate, their steps interleaved so that load on a shared machine
    falls on all of them alike."""
    optimizers = {}
    for name, make in candidates.items():
        params = [torch.rand(elements // count, device=device) for _ in range(count)]
        for p in params:
            p.grad = torch.rand_like(p)
        optimizers[name] = make(params)
        optimizers[name].step()  # first step: buffers allocated (AccSGD copies p, SGD copies g)
    times = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, optimizer in optimizers.items():
            times[name].append(step_ms(optimizer, device))
    return {name: statistics.median(t) for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--elements", type=int, default=1 << 24, help="parameters in all (float32)")
    parser.add_argument("--tensors", type=int, nargs="+", default=[1, 256], help="how many tensors they are split into")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    candidates = {
        "SGD(momentum=0.9, foreach=True)": lambda ps: torch.optim.SGD(ps, lr=0.01, momentum=0.9, foreach=True),
        "AccSGD(foreach=True)": lambda ps: AccSGD(ps, lr=0.01, foreach=True),
        "AccSGD (reference, per parameter)": lambda ps: AccSGD(ps, lr=0.01),
    }
    print(f"torch {torch.__version__}, {args.elements:,} float32 parameters on {device}, median of {args.repeats} (interleaved)")
    for count in args.tensors:
        for threads in args.threads:
            torch.set_num_threads(threads)
            results = medians(candidates, args.elements, count, args.repeats, device)
            baseline = results["SGD(momentum=0.9, foreach=True)"]
            for name, ms in results.items():
                print(f"{count:5d} tensors, {threads} thread(s)  {name:36s} {ms:8.2f} ms  {ms / baseline:5.2f}x SGD")


if __name__ == "__main__":
    main()
