"""One AccSGD step in PyTorch on the fixed-batch test MLP, from a model and state OnnxTrainer wrote.

    torch_step.py <accsgd_torch dir> <model.onnx> <state in> <batch.json> <state out> <params out.json>

Reads the parameters from the ONNX model's initializers (read_onnx_initializers), loads the state
file into accsgd_torch.AccSGD (load_state), takes one step on the batch (x[rows, 2, 3] flattened,
Gemm transB, Relu, Gemm transB, softmax cross-entropy against one-hot labels, mean over rows) with
torch autograd, and writes the state (save_state) and the parameters (JSON) back.
"""

import json
import sys

import torch

sys.path.insert(0, sys.argv[1])
from accsgd_torch import AccSGD, load_state, read_onnx_initializers, save_state  # noqa: E402

NAMES = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]


def main():
    model, state_in, batch_path, state_out, params_out = sys.argv[2:7]
    torch.set_num_threads(1)
    initial = read_onnx_initializers(model)
    params = [torch.nn.Parameter(initial[n].to(torch.float32).clone()) for n in NAMES]
    with open(batch_path) as f:
        batch = json.load(f)
    opt = AccSGD(params, lr=batch["lr"])
    load_state(opt, state_in, NAMES)
    rows = len(batch["labels"]) // 3
    x = torch.tensor(batch["x"], dtype=torch.float32).reshape(rows, -1)
    labels = torch.tensor(batch["labels"], dtype=torch.float32).reshape(rows, 3)
    w1, b1, w2, b2 = params
    logits = torch.relu(x @ w1.T + b1) @ w2.T + b2
    loss = -(labels * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()
    loss.backward()
    opt.step()
    save_state(opt, state_out, NAMES)
    with open(params_out, "w") as f:
        json.dump({n: p.detach().reshape(-1).tolist() for n, p in zip(NAMES, params)}, f)


if __name__ == "__main__":
    main()
