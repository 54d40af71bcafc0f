"""Continues a training run from a weights file and an accsgd-state file under PyTorch's
DistributedDataParallel (optionally with ZeroRedundancyOptimizer), then writes both files back.

It is the PyTorch half of "From device to cluster and back" (README.md): a run started in
JavaScript (@accsgd/core's AccSGD, @accsgd/onnx-training's OnnxTrainer) exports its weights
(a safetensors file under the state_dict names) and its optimizer state (``exportState()``); this
script continues it for ``--steps`` batches, every rank taking its share of each batch, and writes
the weights and ONE consolidated state file that the JavaScript side imports.

The model here is the small MLP of the round-trip test (Linear, Tanh, Linear; sizes read from the
weights), trained on a mean-squared error; batches come from a safetensors file holding ``x``
[steps, batch, in] and ``y`` [steps, batch, out]. For your own model, keep ``train()`` and change
``build_model()`` and the loss.

    # --weights may be OnnxTrainer's exportModel() bytes (a .onnx file); --export-onnx writes the
    # result for OnnxTrainer.create(). 2 processes on this machine (gloo on 127.0.0.1, a free port):
    python3 continue_under_ddp.py --weights w.safetensors --state s.safetensors \\
        --batches b.safetensors --first-batch 10 --steps 10 --world-size 2 --zero \\
        --out-weights w2.safetensors --out-state s2.safetensors
    # or one process per GPU on each node, launched by torchrun (env:// rendezvous):
    torchrun --nnodes 2 --nproc_per_node 8 ... continue_under_ddp.py --backend nccl ...

It prints one JSON line: the losses of rank 0's shard, the world size, and the largest difference
between the ranks' parameters at the end (0 when DDP kept them in step).
"""

import argparse
import ctypes
import datetime
import json
import os
import signal
import socket
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributed.optim import ZeroRedundancyOptimizer
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from accsgd_torch import (  # noqa: E402
    AccSGD,
    load_state,
    load_weights,
    parameter_names,
    read_onnx_initializers,
    read_state,
    read_weights,
    save_state,
    save_weights,
)


def build_model(weights):
    """Linear(in, hidden), Tanh, Linear(hidden, out): state_dict names 0.weight, 0.bias, 2.weight, 2.bias."""
    hidden, inputs = weights["0.weight"].shape
    outputs = weights["2.weight"].shape[0]
    return torch.nn.Sequential(torch.nn.Linear(inputs, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, outputs))


def train(rank, world_size, args):
    dtype = torch.float64 if args.dtype == "float64" else torch.float32
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    device = torch.device("cuda", local_rank) if args.backend == "nccl" else torch.device("cpu")
    # OnnxTrainer's exportModel() bytes, or a safetensors file of the weights (core's encodeSafetensors).
    weights = read_onnx_initializers(args.weights) if args.weights.endswith(".onnx") else read_weights(args.weights)
    model = build_model(weights).to(dtype=dtype, device=device)
    load_weights(model, weights)
    # The optimizer's groups are the file's: the same names, grouped the same way.
    file_groups, _ = read_state(args.state)
    named = dict(model.named_parameters())
    groups = [{"params": [named[name] for name in group["params"]]} for group in file_groups]
    distributed = world_size > 1
    net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) if distributed else model
    if args.zero:
        optimizer = ZeroRedundancyOptimizer(groups, optimizer_class=AccSGD, lr=0.0, foreach=args.foreach)
    else:
        optimizer = AccSGD(groups, lr=0.0, foreach=args.foreach)
    # lr=0.0 above is a placeholder: hyperparameters and step counts come from the file.
    names = parameter_names(model, optimizer)
    load_state(optimizer, args.state, names)

    batches = read_weights(args.batches)
    losses = []
    for step in range(args.first_batch, args.first_batch + args.steps):
        x, y = batches["x"][step], batches["y"][step]
        # Each rank takes its contiguous share of the batch; DDP averages the ranks' gradients, so
        # with equal shares the step sees the full batch's mean gradient.
        share = x.shape[0] // world_size
        rows = slice(rank * share, (rank + 1) * share)
        x, y = x[rows].to(dtype=dtype, device=device), y[rows].to(dtype=dtype, device=device)
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(net(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())

    disagreement = 0.0
    if distributed:
        flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        gathered = [torch.empty_like(flat) for _ in range(world_size)]
        dist.all_gather(gathered, flat)
        disagreement = max((g - gathered[0]).abs().max().item() for g in gathered)
    # A collective for ZeroRedundancyOptimizer: every rank calls it, rank 0 writes.
    save_state(optimizer, args.out_state, names)
    if rank == 0:
        save_weights(model, args.out_weights)
        if args.export_onnx:
            export_onnx(model, batches["x"].shape[-1], args.export_onnx)
        print(json.dumps({"world_size": world_size, "losses": losses, "rank_disagreement": disagreement}), flush=True)


def export_onnx(model, inputs, path):
    """The model as ONNX for OnnxTrainer: initializers keep the state_dict names; batch size free."""
    model = model.to(device="cpu", dtype=torch.float32).eval()
    torch.onnx.export(
        model,
        torch.zeros(1, inputs),
        path,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
        do_constant_folding=False,  # folding may rename or merge initializers
        opset_version=17,
    )


def worker(rank, world_size, args, init_method):
    # Die with the parent, so that no rank outlives a parent killed by a test's timeout.
    if sys.platform == "linux":
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    torch.set_num_threads(args.threads)
    dist.init_process_group(
        args.backend, init_method=init_method, rank=rank, world_size=world_size, timeout=datetime.timedelta(seconds=args.timeout)
    )
    try:
        train(rank, world_size, args)
    finally:
        dist.destroy_process_group()


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True)
    parser.add_argument("--state", required=True)
    parser.add_argument("--batches", required=True)
    parser.add_argument("--first-batch", type=int, default=0)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--world-size", type=int, default=1, help="processes to spawn on this machine (ignored under torchrun)")
    parser.add_argument("--zero", action="store_true", help="shard the optimizer state with ZeroRedundancyOptimizer")
    parser.add_argument("--foreach", action="store_true", help="AccSGD's multi-tensor path")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--backend", default="gloo", help="gloo (CPU) or nccl (one GPU per process)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds a collective may wait")
    parser.add_argument("--out-weights", required=True)
    parser.add_argument("--out-state", required=True)
    parser.add_argument("--export-onnx", help="also write the trained model as ONNX (for OnnxTrainer)")
    args = parser.parse_args()

    if "RANK" in os.environ:  # launched by torchrun: one process per rank, env:// rendezvous
        rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        dist.init_process_group(args.backend, timeout=datetime.timedelta(seconds=args.timeout))
        try:
            train(rank, world_size, args)
        finally:
            dist.destroy_process_group()
    elif args.world_size > 1 or args.zero:
        # Gloo's connections and the rendezvous stay on the loopback interface.
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
        init_method = f"tcp://127.0.0.1:{free_port()}"
        mp.spawn(worker, args=(args.world_size, args, init_method), nprocs=args.world_size, join=True)
    else:
        torch.set_num_threads(args.threads)
        train(0, 1, args)


if __name__ == "__main__":
    main()
