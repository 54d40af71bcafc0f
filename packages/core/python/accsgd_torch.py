"""AccSGD for PyTorch, and the accsgd-state file of @accsgd/core (SPEC.md section 4) in Python.

``AccSGD`` is the reference optimizer of Jain, Kakade, Kidambi, Netrapalli and Sidford
(arXiv 1704.08227) as SPEC.md section 2 states it, written the way the reference writes it: seven
in-place tensor operations per parameter, with weight decay added into ``p.grad`` in place (the
reference does this; @accsgd/core never mutates a caller's gradient). Per group, in float64::

    large_lr = lr * kappa / small_const
    alpha    = 1 - small_const * small_const * xi / kappa
    beta     = 1 - alpha
    zeta     = small_const / (small_const + beta)

and for each parameter p with a gradient g::

    g   = g + weight_decay * p                     (only when weight_decay != 0)
    buf = copy of p                                (the first time p is stepped)
    buf = beta * ((1/beta - 1) * buf - large_lr * g + p)
    p   = zeta * (p - lr * g) + (1 - zeta) * buf

Beyond the reference it counts, per group, the steps in which at least one member had a gradient
(``group["step"]``), which the state file carries.

``AccSGD(..., foreach=True)`` takes the multi-tensor path instead: per group (and per device and
dtype; on the CPU with one thread, per cache-sized block), six ``torch._foreach_*`` operations
over all the group's tensors at once, in the fused form of SPEC.md section 2.1 (multipliers formed
in float64, each rounded once to the tensors' dtype)::

    buf = alpha * buf + beta * (1 - large_lr * weight_decay) * p - beta * large_lr * g
    p   = zeta * (1 - lr * weight_decay) * p - zeta * lr * g + (1 - zeta) * buf

It leaves ``p.grad`` as it was (weight decay enters through the multipliers), and agrees with the
per-parameter path within SPEC.md section 3's float32 bound; it is the path to use on GPUs and
with many tensors. Both paths are plain ``torch.optim.Optimizer`` code, so ``AccSGD`` runs
unchanged under ``DistributedDataParallel`` (which averages gradients before ``step``) and as the
``optimizer_class`` of ``torch.distributed.optim.ZeroRedundancyOptimizer`` (which gives each rank
an ``AccSGD`` over its shard).

``save_state`` and ``load_state`` write and read the state file (for a ZeroRedundancyOptimizer too:
``save_state`` consolidates the shards into one file, ``load_state`` gives each rank its part of
one file, whatever the number of ranks that wrote it) with the standard library, torch
and numpy (which torch depends on), without the safetensors package (Debian has no
python3-safetensors). The file is a plain safetensors file, so the
``safetensors`` package reads it too. ``read_state`` is strict and bounded like the JavaScript
reader (a differential test feeds both the same damaged files), and ``load_state`` is
all-or-nothing: it checks the whole file against the optimizer before changing anything, and
raises ``StateError`` saying what is wrong.

``save_weights``/``read_weights``/``load_weights`` move a module's ``state_dict`` tensors by name
through a plain safetensors file (what ``encodeSafetensors`` in @accsgd/core writes and reads), and
``read_onnx_initializers`` reads the float initializers of an ONNX model (``OnnxTrainer``'s
``exportModel()``) under their names, which ``torch.onnx.export`` takes from the ``state_dict``.
``parameter_names`` gives the state-file names of an optimizer's parameters in a module.
"""

import json
import math
import struct
import sys

import torch
from torch.optim import Optimizer

FORMAT = "accsgd-state"
FORMAT_VERSION = "1"
BUFFER_SUFFIX = ".momentum_buffer"
# The JS reader's default (state-file.ts): large enough for every state the writers can produce
# (100,000 buffers with long names need about 75 MB of header).
MAX_HEADER_BYTES = 100_000_000
_DTYPES = {"F32": (torch.float32, 4), "F64": (torch.float64, 8)}
_HYPERPARAMS = ("lr", "kappa", "xi", "small_const", "weight_decay")


class AccSGD(Optimizer):
    def __init__(self, params, lr, kappa=1000.0, xi=10.0, small_const=0.7, weight_decay=0.0, *, foreach=False):
        defaults = dict(lr=lr, kappa=kappa, xi=xi, small_const=small_const, weight_decay=weight_decay, foreach=foreach)
        super().__init__(params, defaults)

    def add_param_group(self, param_group):
        param_group.setdefault("step", 0)
        super().add_param_group(param_group)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            states = [self.state[p] for p in params]
            for p, state in zip(params, states):
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = p.clone().detach()
            update = _multi_tensor_accsgd if group.get("foreach") else _single_tensor_accsgd
            update(params, [p.grad for p in params], [s["momentum_buffer"] for s in states], group)
            group["step"] += 1
        return loss


def _coefficients(group):
    """SPEC.md section 2's per-group coefficients, in float64 (Python floats)."""
    large_lr = (group["lr"] * group["kappa"]) / group["small_const"]
    alpha = 1.0 - (group["small_const"] * group["small_const"] * group["xi"]) / group["kappa"]
    beta = 1.0 - alpha
    zeta = group["small_const"] / (group["small_const"] + beta)
    return large_lr, alpha, beta, zeta


def _single_tensor_accsgd(params, grads, bufs, group):
    """The reference's seven in-place operations per parameter (weight decay added into the gradient)."""
    large_lr, _, beta, zeta = _coefficients(group)
    weight_decay = group["weight_decay"]
    for p, d_p, buf in zip(params, grads, bufs):
        if weight_decay != 0:
            d_p.add_(p, alpha=weight_decay)
        buf.mul_((1.0 / beta) - 1.0)
        buf.add_(d_p, alpha=-large_lr)
        buf.add_(p)
        buf.mul_(beta)
        p.add_(d_p, alpha=-group["lr"])
        p.mul_(zeta)
        p.add_(buf, alpha=1.0 - zeta)


def _multi_tensor_accsgd(params, grads, bufs, group):
    """SPEC.md section 2.1's fused form as six multi-tensor operations per device and dtype."""
    large_lr, alpha, beta, zeta = _coefficients(group)
    lr, weight_decay = group["lr"], group["weight_decay"]
    buf_from_param = beta * (1.0 - large_lr * weight_decay)
    buf_from_grad = -beta * large_lr
    param_from_param = zeta * (1.0 - lr * weight_decay)
    param_from_grad = -zeta * lr
    param_from_buf = 1.0 - zeta
    # _foreach_* kernels take one device and dtype per call; mixed groups split.
    batches = {}
    for p, g, buf in zip(params, grads, bufs):
        batch = batches.setdefault((p.device, p.dtype), ([], [], []))
        batch[0].append(p)
        batch[1].append(g)
        batch[2].append(buf)
    for (device, _), (ps, gs, bs) in batches.items():
        blocked = device.type == "cpu" and torch.get_num_threads() == 1
        for ps, gs, bs in _cache_blocks(ps, gs, bs) if blocked else [(ps, gs, bs)]:
            # The buffer first, from the parameters before this step.
            torch._foreach_mul_(bs, alpha)
            torch._foreach_add_(bs, ps, alpha=buf_from_param)
            torch._foreach_add_(bs, gs, alpha=buf_from_grad)
            torch._foreach_mul_(ps, param_from_param)
            torch._foreach_add_(ps, gs, alpha=param_from_grad)
            torch._foreach_add_(ps, bs, alpha=param_from_buf)


# On the CPU, six passes over every tensor stream p, g and buf through memory six times; in blocks
# of 2^17 elements (1.5 MB of float32 p, g and buf, within a core's L2) the six passes of a block
# hit the cache. Measured on a 2-core Xeon with 2 MB of L2 per core: 16.7M parameters step in
# about 1.1x the time of torch.optim.SGD(momentum=0.9, foreach=True) (three passes) instead of 2x.
# Blocking changes no value: every element sees the same six operations. Only with one torch
# thread: with more, every block is six more OpenMP parallel regions, and on a loaded 2-core
# machine (where other processes hold the cores) each region's barrier cost milliseconds, making
# a step 10x slower than unblocked; a quiet many-core machine was not available to measure.
# DDP on CPUs commonly runs one thread per rank.
CPU_BLOCK = 1 << 17


def _cache_blocks(ps, gs, bs):
    """The tensors as lists of views of about CPU_BLOCK elements each (whole tensors where a
    tensor is not contiguous)."""
    block = CPU_BLOCK
    pieces = []
    for p, g, b in zip(ps, gs, bs):
        if p.is_contiguous() and g.is_contiguous() and b.is_contiguous() and p.numel() > block:
            pieces.extend(zip(p.view(-1).split(block), g.view(-1).split(block), b.view(-1).split(block)))
        else:
            pieces.append((p, g, b))
    blocks, current, size = [], ([], [], []), 0
    for piece in pieces:
        for column, tensor in zip(current, piece):
            column.append(tensor)
        size += piece[0].numel()
        if size >= block:
            blocks.append(current)
            current, size = ([], [], []), 0
    if current[0]:
        blocks.append(current)
    return blocks


class StateError(ValueError):
    """The state file is malformed, or does not describe the optimizer it is loaded into."""


def _names(optimizer, names):
    params = [p for group in optimizer.param_groups for p in group["params"]]
    names = list(names) if names is not None else [str(i) for i in range(len(params))]
    if len(names) != len(params) or len(set(names)) != len(names):
        raise ValueError(f"names must be {len(params)} unique strings, one per parameter in group order")
    return params, names


def _is_zero(optimizer):
    """Whether this is a torch.distributed.optim.ZeroRedundancyOptimizer (without importing it eagerly)."""
    return hasattr(optimizer, "consolidate_state_dict") and hasattr(optimizer, "optim")


def save_state(optimizer, path, names=None, to=0):
    """Writes the optimizer's groups and momentum buffers as an accsgd-state file.

    ``names`` are the parameters' names in group order (default "0", "1", ..., as in a state_dict;
    ``parameter_names(module, optimizer)`` gives a module's state_dict names).

    For a ZeroRedundancyOptimizer (over AccSGD) this is a collective: every rank must call it. The
    shards are consolidated on rank ``to`` (``consolidate_state_dict``, as PyTorch saves), which
    writes the one file; the other ranks write nothing. A group's step count is the largest any
    rank's shard counted (the same on every rank under DDP, where every parameter gets a gradient).
    Returns whether this process wrote the file.
    """
    params, names = _names(optimizer, names)
    if _is_zero(optimizer):
        optimizer.consolidate_state_dict(to=to)
        if optimizer.rank != to:
            return False
        consolidated = optimizer.state_dict()  # global parameter indices, as in _names's order
        steps = [
            max(local["param_groups"][i].get("step", 0) for local in optimizer._all_state_dicts)
            for i in range(len(optimizer.param_groups))
        ]
        settings = [dict(group, step=step) for group, step in zip(consolidated["param_groups"], steps)]
        buffers = {i: s.get("momentum_buffer") for i, s in consolidated["state"].items() if s is not None}
        buffers = [buffers.get(i) for i in range(len(params))]
    else:
        settings = optimizer.param_groups
        buffers = [optimizer.state.get(p, {}).get("momentum_buffer") for p in params]
    groups, k = [], 0
    for i, (group, setting) in enumerate(zip(optimizer.param_groups, settings)):
        record = {key: float(setting[key]) for key in _HYPERPARAMS}
        record["params"] = names[k : k + len(group["params"])]
        record["step"] = int(setting.get("step", 0))
        try:
            _check_hyperparams(i, record)
        except StateError as error:
            raise ValueError(f"no reader would accept this state: {error}") from None
        groups.append(record)
        k += len(group["params"])
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "param_groups": json.dumps(groups)}
    tensors = {}
    for name, buf in zip(names, buffers):
        if buf is None:
            continue
        if buf.dtype not in (torch.float32, torch.float64):
            raise ValueError(f'the buffer of "{name}" is {buf.dtype}; the state file holds float32 or float64')
        tensors[name + BUFFER_SUFFIX] = buf
    _write_safetensors(path, tensors, metadata)
    return True


def _write_safetensors(path, tensors, metadata=None):
    """A safetensors file of float32/float64 tensors (little-endian, packed, header padded to 8 bytes)."""
    header = {"__metadata__": metadata} if metadata is not None else {}
    blobs, offset = [], 0
    for name, tensor in tensors.items():
        dtype = {torch.float32: "F32", torch.float64: "F64"}[tensor.dtype]
        little_endian = {"F32": "<f4", "F64": "<f8"}[dtype]
        data = tensor.detach().cpu().contiguous().numpy().astype(little_endian, copy=False).tobytes()
        header[name] = {"dtype": dtype, "shape": list(tensor.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


MAX_TENSORS = 100_000
_MAX_SAFE_INTEGER = 2**53 - 1
_GROUP_KEYS = set(_HYPERPARAMS) | {"params", "step"}


def _unique_keys(pairs):
    result = {}
    for key, value in pairs:
        if key in result:
            raise StateError(f"key {json.dumps(key)} appears more than once in one object")
        result[key] = value
    return result


def _no_constants(name):
    raise StateError(f"{name} is not JSON")


def _int(literal):
    # Past 400 digits an integer is beyond any double, as JavaScript reads it (and Python refuses
    # literals of over 4,300 digits).
    if len(literal.lstrip("-")) > 400:
        return -math.inf if literal.startswith("-") else math.inf
    return int(literal)


def _json(text, what):
    """Strict JSON, as JavaScript's JSON.parse reads it, with duplicate keys rejected at any depth."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constants, parse_int=_int)
    except (json.JSONDecodeError, RecursionError) as error:
        raise StateError(f"{what} is not JSON ({type(error).__name__})") from None


def _safe_int(value):
    """The integer a JSON number is where JavaScript's Number.isSafeInteger holds (2.0 is 2), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if abs(value) <= _MAX_SAFE_INTEGER else None
    if isinstance(value, float) and value.is_integer() and abs(value) <= _MAX_SAFE_INTEGER:
        return int(value)
    return None


def _finite(value):
    """A JSON number as a finite float, else None (an integer literal too large for a double is infinite)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        value = float(value)
    except OverflowError:
        return None
    return value if math.isfinite(value) else None


def _check_hyperparams(i, group):
    """The ranges of @accsgd/core's validateHyperparams, beta formed as the update forms it."""
    h = {key: _finite(group[key]) for key in _HYPERPARAMS}
    ranges = {
        "lr": lambda v: v >= 0,
        "kappa": lambda v: v > 0,
        "xi": lambda v: v > 0,
        "small_const": lambda v: 0 < v <= 1,
        "weight_decay": lambda v: v >= 0,
    }
    for key, ok in ranges.items():
        if h[key] is None or not ok(h[key]):
            raise StateError(f"param_groups[{i}].{key} is {group[key]!r}; out of range")
    ratio = (h["small_const"] * h["small_const"] * h["xi"]) / h["kappa"]
    beta = 1 - (1 - ratio)
    if not 0 < beta <= 1:
        raise StateError(f"param_groups[{i}]: beta = small_const^2 * xi / kappa = {ratio} must be in (0, 1]")
    if not math.isfinite((h["lr"] * h["kappa"]) / h["small_const"]):
        raise StateError(f"param_groups[{i}]: lr * kappa / small_const overflows")


def _read_safetensors(path, max_header_bytes):
    """The checks every safetensors file of ours passes: (metadata, [(begin, end, key, dtype, shape)], data, start)."""
    if sys.byteorder != "little":
        raise StateError("reading state files needs a little-endian host")
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise StateError(f"file is {len(data)} bytes, shorter than the 8-byte header length")
    (header_length,) = struct.unpack("<Q", data[:8])
    if header_length > max_header_bytes:
        raise StateError(f"header length {header_length} exceeds the limit of {max_header_bytes} bytes")
    if 8 + header_length > len(data):
        raise StateError(f"header length {header_length} runs past the end of the {len(data)}-byte file")
    try:
        text = data[8 : 8 + header_length].decode("utf-8")
    except UnicodeDecodeError:
        raise StateError("header is not valid UTF-8") from None
    if not text.startswith("{"):
        raise StateError('header does not start with "{"')
    header = _json(text, "header")
    if not isinstance(header, dict):
        raise StateError("header is not a JSON object")
    metadata = header.pop("__metadata__", {})
    if len(header) > MAX_TENSORS:
        raise StateError(f"{len(header)} tensors exceed the limit of {MAX_TENSORS}")
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise StateError("__metadata__ is not an object of strings")

    body = len(data) - 8 - header_length
    spans = []
    for key, entry in header.items():
        if not isinstance(entry, dict) or set(entry) - {"dtype", "shape", "data_offsets"}:
            raise StateError(f'tensor "{key}" is not an object of dtype, shape and data_offsets')
        if not isinstance(entry.get("dtype"), str) or entry["dtype"] not in _DTYPES:
            raise StateError(f'tensor "{key}" has dtype {entry.get("dtype")!r}; expected F32 or F64')
        shape = entry.get("shape")
        if not isinstance(shape, list) or any(_safe_int(d) is None or d < 0 for d in shape):
            raise StateError(f'tensor "{key}" has shape {shape!r}; expected integers >= 0')
        shape = [_safe_int(d) for d in shape]
        if math.prod(d for d in shape if d > 0) > _MAX_SAFE_INTEGER:
            raise StateError(f'tensor "{key}" has shape {shape}, whose dimensions multiply past 2^53 - 1')
        offsets = entry.get("data_offsets")
        if not isinstance(offsets, list) or len(offsets) != 2 or any(_safe_int(o) is None or o < 0 for o in offsets):
            raise StateError(f'tensor "{key}" has data_offsets {offsets!r}; expected [begin, end]')
        begin, end = (_safe_int(o) for o in offsets)
        if begin > end or end > body:
            raise StateError(f'tensor "{key}" has data_offsets [{begin}, {end}] outside the {body}-byte data section')
        dtype, size = _DTYPES[entry["dtype"]]
        count = math.prod(shape)
        if end - begin != count * size:
            raise StateError(f'tensor "{key}" has {end - begin} bytes; shape {shape} of {entry["dtype"]} needs {count * size}')
        spans.append((begin, end, key, dtype, shape))
    position = 0
    for begin, end, key, _, _ in sorted(spans, key=lambda span: (span[0], span[1])):
        if begin != position:
            raise StateError(f'tensor "{key}" starts at byte {begin}; the data section must be packed (expected {position})')
        position = end
    if position != body:
        raise StateError(f"{body - position} bytes after the last tensor")
    return metadata, spans, data, 8 + header_length


def _tensor(data, start, begin, end, dtype, shape):
    raw = bytearray(data[start + begin : start + end])
    return torch.frombuffer(raw, dtype=dtype).reshape(shape) if raw else torch.zeros(shape, dtype=dtype)


def read_state(path, max_header_bytes=MAX_HEADER_BYTES):
    """Parses an accsgd-state file: (groups, {name: tensor}). Raises StateError.

    It follows the rules of @accsgd/core's decodeState (SPEC.md section 4); a differential test
    feeds both the same damaged files and requires the same verdict on each.
    """
    metadata, spans, data, start = _read_safetensors(path, max_header_bytes)
    if metadata.get("format") != FORMAT:
        raise StateError(f'__metadata__.format is not "{FORMAT}"')
    if metadata.get("format_version") != FORMAT_VERSION:
        raise StateError(f'format_version {metadata.get("format_version")!r} is not "{FORMAT_VERSION}"')
    unknown = set(metadata) - {"format", "format_version", "param_groups"}
    if unknown:
        raise StateError(f"unknown metadata key {sorted(unknown)[0]!r}")
    if "param_groups" not in metadata:
        raise StateError("metadata has no param_groups")
    groups = _json(metadata["param_groups"], "param_groups")
    if not isinstance(groups, list):
        raise StateError("param_groups is not a list")
    owner = set()
    for i, group in enumerate(groups):
        if not isinstance(group, dict) or set(group) != _GROUP_KEYS:
            raise StateError(f"param_groups[{i}] must have exactly the keys {sorted(_GROUP_KEYS)}")
        if not isinstance(group["params"], list) or not all(isinstance(n, str) for n in group["params"]):
            raise StateError(f"param_groups[{i}].params is not a list of names")
        for name in group["params"]:
            if name in owner:
                raise StateError(f'parameter "{name}" is listed twice')
            owner.add(name)
        step = _safe_int(group["step"])
        if step is None or step < 0:
            raise StateError(f"param_groups[{i}].step is {group['step']!r}; expected an integer >= 0")
        group["step"] = step
        _check_hyperparams(i, group)

    tensors = {}
    for begin, end, key, dtype, shape in spans:
        if not key.endswith(BUFFER_SUFFIX):
            raise StateError(f'tensor "{key}" is not named <param>{BUFFER_SUFFIX}')
        name = key[: -len(BUFFER_SUFFIX)]
        if name not in owner:
            raise StateError(f'tensor "{key}" belongs to no parameter group')
        tensors[name] = _tensor(data, start, begin, end, dtype, shape)
    return groups, tensors


def load_state(optimizer, path, names=None):
    """Loads an accsgd-state file into an AccSGD optimizer: all of it, or nothing (StateError).

    The file's groups must hold the optimizer's parameters, group by group, in any order within a
    group (``names`` as for save_state); buffers take each parameter's dtype and must have its
    shape. Hyperparameters and step counts come from the file, as in load_state_dict.

    For a ZeroRedundancyOptimizer (over AccSGD), every rank reads the whole file and keeps the
    buffers of its own shard (through its ``load_state_dict``), so one file, written by any number
    of ranks or by another adapter, loads into any number of ranks. Not a collective.
    """
    params, names = _names(optimizer, names)
    groups, tensors = read_state(path)
    if len(groups) != len(optimizer.param_groups):
        raise StateError(f"the file has {len(groups)} parameter groups; the optimizer has {len(optimizer.param_groups)}")
    k = 0
    for i, (record, group) in enumerate(zip(groups, optimizer.param_groups)):
        expected = names[k : k + len(group["params"])]
        # Membership, not order, as @accsgd/core's assertStateFits: buffers are found by name.
        if sorted(record["params"]) != sorted(expected):
            raise StateError(f"group {i} names {record['params']}; the optimizer's group {i} has {expected}")
        k += len(group["params"])
    by_name = dict(zip(names, params))
    buffers = {}
    for name, tensor in tensors.items():
        p = by_name.get(name)
        if p is None:
            raise StateError(f'buffer "{name}{BUFFER_SUFFIX}" belongs to no parameter of the optimizer')
        if tuple(tensor.shape) != tuple(p.shape):
            raise StateError(f'buffer "{name}{BUFFER_SUFFIX}" has shape {list(tensor.shape)}; the parameter has {list(p.shape)}')
        buffers[p] = tensor.to(dtype=p.dtype, device=p.device).clone()
    # Everything checked: now change the optimizer.
    if _is_zero(optimizer):
        index = {p: i for i, p in enumerate(params)}
        optimizer.load_state_dict(
            {
                "state": {index[p]: {"momentum_buffer": buf} for p, buf in buffers.items()},
                # Settings the file does not hold (foreach) stay as they are.
                "param_groups": [
                    dict(
                        {key: value for key, value in group.items() if key != "params"},
                        **{key: float(record[key]) for key in _HYPERPARAMS},
                        step=record["step"],
                        params=[index[p] for p in group["params"]],
                    )
                    for record, group in zip(groups, optimizer.param_groups)
                ],
            }
        )
        # load_state_dict keeps the local state of parameters that the file gives no buffer.
        for p in optimizer.optim.state:
            if p not in buffers:
                optimizer.optim.state[p].pop("momentum_buffer", None)
        return
    for record, group in zip(groups, optimizer.param_groups):
        for key in _HYPERPARAMS:
            group[key] = float(record[key])
        group["step"] = record["step"]
    for p in params:
        state = optimizer.state[p]
        if p in buffers:
            state["momentum_buffer"] = buffers[p]
        else:
            state.pop("momentum_buffer", None)


def parameter_names(module, optimizer):
    """The state_dict names (in ``module``, or the module inside a DistributedDataParallel) of the
    optimizer's parameters, in group order: the ``names`` of save_state and load_state."""
    module = getattr(module, "module", module)
    by_tensor = {p: name for name, p in module.named_parameters()}
    names = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p not in by_tensor:
                raise ValueError(f"a parameter of shape {list(p.shape)} in the optimizer is not a parameter of the module")
            names.append(by_tensor[p])
    return names


def save_weights(module, path):
    """Writes the module's floating-point state_dict (parameters and float buffers such as running
    means) as a plain safetensors file under the state_dict names. Integer buffers (BatchNorm's
    num_batches_tracked) are left out: the format holds F32 and F64."""
    module = getattr(module, "module", module)
    tensors = {name: t for name, t in module.state_dict().items() if t.dtype in (torch.float32, torch.float64)}
    _write_safetensors(path, tensors)


def read_weights(path, max_header_bytes=MAX_HEADER_BYTES):
    """{name: tensor} from a safetensors file of F32/F64 tensors (any metadata). Raises StateError."""
    _, spans, data, start = _read_safetensors(path, max_header_bytes)
    return {key: _tensor(data, start, begin, end, dtype, shape) for begin, end, key, dtype, shape in spans}


def load_weights(module, tensors):
    """Copies ``{name: tensor}`` (read_weights, read_onnx_initializers) into the module by state_dict
    name: all or nothing. Every parameter of the module must be there with its shape; other names
    must be float entries of the state_dict (tensors of an ONNX model that are no state_dict entry,
    such as constants, are skipped when ``tensors`` came from read_onnx_initializers). Values take the
    module's dtype and device."""
    module = getattr(module, "module", module)
    state = module.state_dict()
    missing = [name for name, _ in module.named_parameters() if name not in tensors]
    if missing:
        raise StateError(f"no weights for the parameters {missing}")
    for name, tensor in tensors.items():
        if name not in state:
            if getattr(tensors, "onnx", False):
                continue
            raise StateError(f'"{name}" is not in the module\'s state_dict')
        if tuple(tensor.shape) != tuple(state[name].shape):
            raise StateError(f'"{name}" has shape {list(tensor.shape)}; the module has {list(state[name].shape)}')
    with torch.no_grad():
        for name, tensor in tensors.items():
            if name in state:
                state[name].copy_(tensor)


class _Initializers(dict):
    onnx = True


def _varint(data, i):
    value, shift = 0, 0
    while True:
        if i >= len(data):
            raise StateError("the ONNX model ends inside a varint")
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def _fields(data):
    """(field number, wire type, value) of one protobuf message; length-delimited values as bytes."""
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(data, i)
        elif wire == 1:
            value, i = data[i : i + 8], i + 8
        elif wire == 2:
            length, i = _varint(data, i)
            value, i = data[i : i + length], i + length
        elif wire == 5:
            value, i = data[i : i + 4], i + 4
        else:
            raise StateError(f"the ONNX model has protobuf wire type {wire}, which ONNX does not use")
        if i > len(data):
            raise StateError("the ONNX model ends inside a field")
        yield number, wire, value


_ONNX_FLOAT, _ONNX_DOUBLE = 1, 11


def read_onnx_initializers(path):
    """{name: tensor} of the float32/float64 initializers of an ONNX model file (the graph's own,
    with data inside the file), without the onnx package. ``torch.onnx.export`` names a module's
    initializers by their state_dict names, and OnnxTrainer.exportModel() keeps them."""
    with open(path, "rb") as f:
        model = f.read()
    graph = next((value for number, wire, value in _fields(model) if number == 7 and wire == 2), None)
    if graph is None:
        raise StateError(f"{path} has no graph: not an ONNX model")
    tensors = _Initializers()
    for number, wire, value in _fields(graph):
        if number != 5 or wire != 2:  # GraphProto.initializer
            continue
        dims, data_type, name, raw, floats, doubles, external = [], 0, None, None, [], [], False
        for n, w, v in _fields(value):
            if n == 1:  # dims, packed or not
                if w == 2:
                    j = 0
                    while j < len(v):
                        d, j = _varint(v, j)
                        dims.append(d)
                else:
                    dims.append(v)
            elif n == 2:
                data_type = v
            elif n == 8:
                name = v.decode("utf-8")
            elif n == 9:
                raw = v
            elif n == 4:
                floats.append(v if w == 2 else struct.pack("<I", int.from_bytes(v, "little")))
            elif n == 10:
                doubles.append(v)
            elif n == 14 and v == 1:
                external = True
        if data_type not in (_ONNX_FLOAT, _ONNX_DOUBLE) or name is None:
            continue
        if external:
            raise StateError(f'initializer "{name}" keeps its data outside the model file')
        dtype = torch.float32 if data_type == _ONNX_FLOAT else torch.float64
        payload = raw if raw is not None else b"".join(floats if data_type == _ONNX_FLOAT else doubles)
        size = 4 if data_type == _ONNX_FLOAT else 8
        if len(payload) != math.prod(dims) * size:
            raise StateError(f'initializer "{name}" has {len(payload)} bytes for shape {dims}')
        tensors[name] = _tensor(payload, 0, 0, len(payload), dtype, dims)
    return tensors
