"""PyTorch's train step of examples/onnx-cnn's conv net, timed in blocks on request.

Started by conv-train-step.ts with --threads N: builds the Net of examples/onnx-cnn/model/export.py
(the model the ONNX side trains, same architecture), batch --batch, cross-entropy,
torch.optim.SGD(lr=0.01, momentum=0.9); forward + backward + step per step. Reads one command per
line on stdin: "block K" runs K steps and answers one JSON line {"seconds": ..., "loss": ...};
"quit" ends. Seeded random batches (uniform pixels, random labels), 8 of them in turn.
"""

import argparse
import json
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "..", "examples", "onnx-cnn", "model"))
from export import Net  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = Net()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    gen = torch.Generator().manual_seed(1)
    batches = [
        (torch.rand(args.batch, 1, 28, 28, generator=gen), torch.randint(0, 10, (args.batch,), generator=gen))
        for _ in range(8)
    ]
    step = 0

    def one():
        nonlocal step
        x, y = batches[step % len(batches)]
        step += 1
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    print(json.dumps({"ready": True, "torch": torch.__version__, "threads": torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        count = int(words[1])
        t0 = time.perf_counter()
        loss = 0.0
        for _ in range(count):
            loss = one()
        print(json.dumps({"seconds": time.perf_counter() - t0, "loss": loss}), flush=True)


if __name__ == "__main__":
    main()
