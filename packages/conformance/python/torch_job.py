"""Runs one AccSGD job on PyTorch for src/pytorch.test.ts: a JSON job on stdin, a JSON result on stdout.

    python3 torch_job.py <path of @accsgd/core's python/accsgd_torch.py> < job.json


Job (or {"validate": [paths]}, answered {"results": [{"ok": true} | {"error": message} |
{"crash": repr}]}, what accsgd_torch.read_state says of each file)::

    {"dtype": "float64" | "float32",
     "groups": [{"lr": ..., "kappa": ..., "xi": ..., "small_const": ..., "weight_decay": ..., "params": [names]}],
     "params": {name: {"shape": [...], "init": [numbers]}},
     "load_state": path or null,          loaded (accsgd_torch.load_state) before the steps
     "steps": [{"lr": {group index: lr} or absent, "grads": {name: [numbers] or null}}],
     "save_state": path or null,          written (accsgd_torch.save_state) after the steps
     "trace": true or absent}             also return params and buffers after every step

Result: {"params": {name: [numbers]}, "buffers": {name: [numbers] or null}, "steps": [per group],
"trace": [{"params": ..., "buffers": ...} after each step] with "trace"},
or, when load_state rejects the file, {"error": message, "untouched": whether nothing changed}.
Numbers cross as JSON, which carries float64 (and so float32) values exactly.
"""

import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[1])))
from accsgd_torch import AccSGD, StateError, load_state, read_state, save_state  # noqa: E402


def main():
    job = json.load(sys.stdin)
    if "validate" in job:
        json.dump({"results": [validate(path) for path in job["validate"]]}, sys.stdout)
        return
    torch.set_num_threads(1)
    dtype = {"float64": torch.float64, "float32": torch.float32}[job["dtype"]]
    tensors = {
        name: torch.tensor(spec["init"], dtype=torch.float64).to(dtype).reshape(spec["shape"]).requires_grad_(False)
        for name, spec in job["params"].items()
    }
    groups = [
        {**{k: v for k, v in group.items() if k != "params"}, "params": [tensors[name] for name in group["params"]]}
        for group in job["groups"]
    ]
    names = [name for group in job["groups"] for name in group["params"]]
    optimizer = AccSGD(groups, lr=job["groups"][0]["lr"])
    trace = []
    if job.get("load_state"):
        try:
            load_state(optimizer, job["load_state"], names)
        except StateError as error:
            # Report the error and whether the optimizer is exactly as it was before the load.
            untouched = all("momentum_buffer" not in optimizer.state[p] for p in tensors.values()) and [
                {k: v for k, v in g.items() if k not in ("params", "foreach")} for g in optimizer.param_groups
            ] == [{**{k: v for k, v in g.items() if k != "params"}, "step": 0} for g in job["groups"]]
            json.dump({"error": str(error), "untouched": untouched}, sys.stdout)
            return
    for step in job["steps"]:
        for index, lr in step.get("lr", {}).items():
            optimizer.param_groups[int(index)]["lr"] = lr
        for name, p in tensors.items():
            grad = step["grads"].get(name)
            p.grad = None if grad is None else torch.tensor(grad, dtype=torch.float64).to(dtype).reshape(p.shape)
        optimizer.step()
        if job.get("trace"):
            trace.append(snapshot(tensors, optimizer))
    if job.get("save_state"):
        save_state(optimizer, job["save_state"], names)
    result = {**snapshot(tensors, optimizer), "steps": [group["step"] for group in optimizer.param_groups]}
    if job.get("trace"):
        result["trace"] = trace
    json.dump(result, sys.stdout)


def validate(path):
    """What read_state says of a file: accepted, rejected with StateError, or anything else (a bug)."""
    try:
        read_state(path)
        return {"ok": True}
    except StateError as error:
        return {"error": str(error)}
    except Exception as error:  # noqa: BLE001 - reported, so that the test fails naming it
        return {"crash": repr(error)}


def snapshot(tensors, optimizer):
    return {
        "params": {name: p.detach().flatten().tolist() for name, p in tensors.items()},
        "buffers": {
            name: (optimizer.state[p]["momentum_buffer"].flatten().tolist() if "momentum_buffer" in optimizer.state[p] else None)
            for name, p in tensors.items()
        },
    }


if __name__ == "__main__":
    main()
