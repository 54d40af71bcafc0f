"""One optimizer step over float32 parameters in PyTorch, timed with time.perf_counter, for the
side-by-side throughput report (section-torch.ts runs it and reads the JSON it prints).

    python3 torch_bench.py --threads 1 --repeats 5 --layouts 1x16777216,1024x16384

For each layout: the reference AccSGD (packages/core/python/accsgd_torch.py: seven in-place tensor
operations per parameter) and torch.optim.SGD(momentum=0.9, foreach=True), on the same parameters
and gradients, after one untimed step each, timed in turn repeat by repeat; prints one JSON object
with each one's median milliseconds.
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "core", "python"))
from accsgd_torch import AccSGD  # noqa: E402

LR = 0.01

parser = argparse.ArgumentParser()
parser.add_argument("--threads", type=int, required=True)
parser.add_argument("--repeats", type=int, default=5)
parser.add_argument("--layouts", default="1x16777216,1024x16384")
args = parser.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(0)

results = []
for layout in args.layouts.split(","):
    count, size = (int(x) for x in layout.split("x"))
    params = [torch.empty(size, dtype=torch.float32).uniform_(-1, 1).requires_grad_() for _ in range(count)]
    for p in params:
        p.grad = torch.empty(size, dtype=torch.float32).uniform_(-0.1, 0.1)
    optimizers = {
        "reference": AccSGD(params, lr=LR),
        "sgd": torch.optim.SGD(params, lr=LR, momentum=0.9, foreach=True),
    }
    samples = {name: [] for name in optimizers}
    for optimizer in optimizers.values():
        optimizer.step()  # creates the buffers; not timed
    for _ in range(args.repeats):
        for name, optimizer in optimizers.items():
            t0 = time.perf_counter()
            optimizer.step()
            samples[name].append((time.perf_counter() - t0) * 1e3)
    results.append(
        {
            "tensors": count,
            "size": size,
            "referenceMs": statistics.median(samples["reference"]),
            "sgdMs": statistics.median(samples["sgd"]),
        }
    )
    del optimizers, params

print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "results": results}))
