"""A training-mode BatchNormalization export and PyTorch's own running statistics after one step.

    batchnorm_running_stats.py <out dir>

Writes <out>/model.onnx (Conv2d 3->4 3x3, BatchNorm2d, ReLU, AdaptiveAvgPool2d(1), Flatten, Linear
4->5, batch fixed at 6, exported with training=TrainingMode.TRAINING, do_constant_folding=False at
opset 14) and <out>/meta.json: the batch and labels of one training step (cross-entropy,
torch.optim.SGD), the running statistics before it (those in the file) and after it, and the
step's batch mean with its biased and unbiased (Bessel-corrected) variance per channel.
"""

import json
import os
import sys

import torch
from torch import nn

BATCH = 6


def main() -> None:
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(2)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 5),
    )
    bn = model[1]
    with torch.no_grad():
        bn.weight.copy_(torch.rand(4, generator=generator) + 0.5)
        bn.bias.copy_(torch.randn(4, generator=generator) * 0.1)
        bn.running_mean.copy_(torch.randn(4, generator=generator) * 0.3)
        bn.running_var.copy_(torch.rand(4, generator=generator) + 0.5)
    model.train()
    torch.onnx.export(
        model,
        torch.randn(BATCH, 3, 5, 5, generator=generator),
        os.path.join(out, "model.onnx"),
        input_names=["x"],
        output_names=["logits"],
        opset_version=14,
        training=torch.onnx.TrainingMode.TRAINING,
        do_constant_folding=False,
    )
    # Tracing ran one training-mode forward pass, which moved the running statistics: the file
    # holds the moved ones, and the step below starts from them.
    before = {"mean": bn.running_mean.tolist(), "var": bn.running_var.tolist()}
    x = torch.randn(BATCH, 3, 5, 5, generator=generator)
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    with torch.no_grad():
        conv = model[0](x)
    axes = (0, 2, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    optimizer.zero_grad()
    loss = nn.functional.cross_entropy(model(x), labels)
    loss.backward()
    optimizer.step()
    meta = {
        "x": x.reshape(-1).tolist(),
        "labels": labels.tolist(),
        "classes": 5,
        "loss": float(loss),
        "momentum": bn.momentum,
        "count": conv.numel() // conv.shape[1],
        "before": before,
        "after": {"mean": bn.running_mean.tolist(), "var": bn.running_var.tolist()},
        "batch": {
            "mean": conv.mean(dim=axes).tolist(),
            "biased": conv.var(dim=axes, unbiased=False).tolist(),
            "unbiased": conv.var(dim=axes, unbiased=True).tolist(),
        },
        "torch": torch.__version__,
    }
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f)


if __name__ == "__main__":
    main()
