"""Exports torchvision classifiers with torch.onnx and writes PyTorch autograd's gradients.

Usage: python3 torchvision_gradients.py OUT_DIR [MODEL ...]

For each torchvision model (weights=None: random weights from a fixed seed, 10 classes) and each
mode, writes to OUT_DIR/<model>-<mode>/:
  model.onnx      torch.onnx.export at opset 14, batch fixed at 2, input "input", output "logits";
  input.bin       the batch, float32 [2, 3, 32, 32] (eval) or [2, 3, 64, 64] (train), little-endian;
  gradients.bin   d(cross-entropy on labels)/d(parameter) for every parameter, float32, concatenated;
  meta.json       labels, and per parameter its name (its state_dict name, which is the ONNX
                  initializer's name), shape and offset into gradients.bin (in floats).
Modes:
  eval   model.eval(), with each Conv + BatchNormalization fused in torch first
         (torch.fx.experimental.optimization.fuse), so that the exported folded Conv weights are
         parameters of the module autograd differentiates, under the same names;
  train  model.train(), exported with training=TrainingMode.TRAINING, do_constant_folding=False:
         BatchNormalization stays, with batch statistics.
BatchNormalization's weight, bias and running statistics are drawn at random (a fresh one is the
identity), and small random numbers are added to every bias (torchvision zeroes some, and
torch.onnx would share equal initializers). Dropout and stochastic depth are replaced by the identity before export: they are random in
training mode, and no two frameworks draw the same masks.
"""

import json
import os
import sys

import torch
import torch.nn as nn
import torchvision
from torch.fx.experimental.optimization import fuse
from torchvision.ops.stochastic_depth import StochasticDepth

MODELS = ["mobilenet_v2", "resnet18", "squeezenet1_1", "efficientnet_b0"]
BATCH, CLASSES = 2, 10
# Training mode normalises with batch statistics: at 32x32 the last stages are 1x1, so each
# channel is normalised over the batch's two values alone, and the loss becomes so ill-conditioned
# that torch's own float32 and float64 losses differ by 2e-3 (resnet18) to 2.5 (efficientnet_b0).
# At 64x64 (2x2, four values per example) they agree within 1.2e-5.
SIZE = {"eval": 32, "train": 64}


def without_randomness(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, (nn.Dropout, StochasticDepth)):
            setattr(module, name, nn.Identity())
        else:
            without_randomness(child)


def random_batch_norms(module: nn.Module, generator: torch.Generator) -> None:
    # A fresh BatchNorm is the identity (weight 1, bias 0, mean 0, var 1): every folded bias would
    # be zero, and torch.onnx shares equal initializers (an Identity of one), so that they would
    # not keep their names.
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=generator) + 0.5)
                m.bias.copy_(torch.randn(c, generator=generator) * 0.1)
                m.running_mean.copy_(torch.randn(c, generator=generator) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=generator) + 0.5)
        # torchvision initialises some biases to zero (squeezenet's, the squeeze-excitation and
        # classifier layers'): equal initializers again.
        for name, p in module.named_parameters():
            if name.endswith("bias"):
                p.add_(torch.randn(p.shape, generator=generator) * 0.01)


def export(name: str, mode: str, out: str) -> None:
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None, num_classes=CLASSES)
    without_randomness(model)
    generator = torch.Generator().manual_seed(1)
    random_batch_norms(model, generator)
    x = torch.randn(BATCH, 3, SIZE[mode], SIZE[mode], generator=generator)
    labels = torch.tensor([3, 7])
    if mode == "eval":
        model.eval()
        model = fuse(model)
    else:
        model.train()
    # Gradients first: a training-mode forward pass updates the running statistics, which the
    # training-mode output does not read.
    model.zero_grad()
    loss = nn.functional.cross_entropy(model(x), labels)
    loss.backward()
    params = [(n, p) for n, p in model.named_parameters()]
    offset = 0
    entries = []
    with open(os.path.join(out, "gradients.bin"), "wb") as f:
        for n, p in params:
            g = p.grad.detach().to(torch.float32).contiguous()
            f.write(g.numpy().astype("<f4").tobytes())
            entries.append({"name": n, "shape": list(g.shape), "offset": offset})
            offset += g.numel()
    with open(os.path.join(out, "input.bin"), "wb") as f:
        f.write(x.numpy().astype("<f4").tobytes())
    kwargs = {}
    if mode == "train":
        kwargs = {"training": torch.onnx.TrainingMode.TRAINING, "do_constant_folding": False}
    torch.onnx.export(
        model,
        x,
        os.path.join(out, "model.onnx"),
        input_names=["input"],
        output_names=["logits"],
        opset_version=14,
        **kwargs,
    )
    meta = {
        "model": name,
        "mode": mode,
        "loss": float(loss),
        "labels": labels.tolist(),
        "classes": CLASSES,
        "input": list(x.shape),
        "params": entries,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
    }
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f)


def main() -> None:
    out = sys.argv[1]
    names = sys.argv[2:] or MODELS
    torch.set_num_threads(1)
    for name in names:
        for mode in ["eval", "train"]:
            export(name, mode, os.path.join(out, f"{name}-{mode}"))


if __name__ == "__main__":
    main()
