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

``save_state`` and ``load_state`` write and read the state file with the standard library, torch
and numpy (which torch depends on), without the safetensors package (Debian has no
python3-safetensors). The file is a plain safetensors file, so the
``safetensors`` package reads it too. ``read_state`` is strict and bounded like the JavaScript
reader (a differential test feeds both the same damaged files), and ``load_state`` is
all-or-nothing: it checks the whole file against the optimizer before changing anything, and
raises ``StateError`` saying what is wrong.
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
    def __init__(self, params, lr, kappa=1000.0, xi=10.0, small_const=0.7, weight_decay=0.0):
        defaults = dict(lr=lr, kappa=kappa, xi=xi, small_const=small_const, weight_decay=weight_decay)
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
            weight_decay = group["weight_decay"]
            large_lr = (group["lr"] * group["kappa"]) / group["small_const"]
            alpha = 1.0 - (group["small_const"] * group["small_const"] * group["xi"]) / group["kappa"]
            beta = 1.0 - alpha
            zeta = group["small_const"] / (group["small_const"] + beta)
            stepped = False
            for p in group["params"]:
                if p.grad is None:
                    continue
                stepped = True
                d_p = p.grad
                if weight_decay != 0:
                    d_p.add_(p, alpha=weight_decay)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = p.clone().detach()
                buf = state["momentum_buffer"]
                buf.mul_((1.0 / beta) - 1.0)
                buf.add_(d_p, alpha=-large_lr)
                buf.add_(p)
                buf.mul_(beta)
                p.add_(d_p, alpha=-group["lr"])
                p.mul_(zeta)
                p.add_(buf, alpha=1.0 - zeta)
            if stepped:
                group["step"] += 1
        return loss


class StateError(ValueError):
    """The state file is malformed, or does not describe the optimizer it is loaded into."""


def _names(optimizer, names):
    params = [p for group in optimizer.param_groups for p in group["params"]]
    names = list(names) if names is not None else [str(i) for i in range(len(params))]
    if len(names) != len(params) or len(set(names)) != len(names):
        raise ValueError(f"names must be {len(params)} unique strings, one per parameter in group order")
    return params, names


def save_state(optimizer, path, names=None):
    """Writes the optimizer's groups and momentum buffers as an accsgd-state file.

    ``names`` are the parameters' names in group order (default "0", "1", ..., as in a state_dict).
    """
    params, names = _names(optimizer, names)
    groups, k = [], 0
    for i, group in enumerate(optimizer.param_groups):
        record = {key: float(group[key]) for key in _HYPERPARAMS}
        record["params"] = names[k : k + len(group["params"])]
        record["step"] = int(group.get("step", 0))
        try:
            _check_hyperparams(i, record)
        except StateError as error:
            raise ValueError(f"no reader would accept this state: {error}") from None
        groups.append(record)
        k += len(group["params"])
    header = {"__metadata__": {"format": FORMAT, "format_version": FORMAT_VERSION, "param_groups": json.dumps(groups)}}
    blobs, offset = [], 0
    for name, p in zip(names, params):
        buf = optimizer.state.get(p, {}).get("momentum_buffer")
        if buf is None:
            continue
        dtype = {torch.float32: "F32", torch.float64: "F64"}.get(buf.dtype)
        if dtype is None:
            raise ValueError(f'the buffer of "{name}" is {buf.dtype}; the state file holds float32 or float64')
        little_endian = {"F32": "<f4", "F64": "<f8"}[dtype]
        data = buf.detach().cpu().contiguous().numpy().astype(little_endian, copy=False).tobytes()
        header[name + BUFFER_SUFFIX] = {"dtype": dtype, "shape": list(buf.shape), "data_offsets": [offset, offset + len(data)]}
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


def read_state(path, max_header_bytes=MAX_HEADER_BYTES):
    """Parses an accsgd-state file: (groups, {name: tensor}). Raises StateError.

    It follows the rules of @accsgd/core's decodeState (SPEC.md section 4); a differential test
    feeds both the same damaged files and requires the same verdict on each.
    """
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
    start = 8 + header_length
    for begin, end, key, dtype, shape in spans:
        if not key.endswith(BUFFER_SUFFIX):
            raise StateError(f'tensor "{key}" is not named <param>{BUFFER_SUFFIX}')
        name = key[: -len(BUFFER_SUFFIX)]
        if name not in owner:
            raise StateError(f'tensor "{key}" belongs to no parameter group')
        raw = bytearray(data[start + begin : start + end])
        tensors[name] = torch.frombuffer(raw, dtype=dtype).reshape(shape) if raw else torch.zeros(shape, dtype=dtype)
    return groups, tensors


def load_state(optimizer, path, names=None):
    """Loads an accsgd-state file into an AccSGD optimizer: all of it, or nothing (StateError).

    The file's groups must hold the optimizer's parameters, group by group, in any order within a
    group (``names`` as for save_state); buffers take each parameter's dtype and must have its
    shape. Hyperparameters and step counts come from the file, as in load_state_dict.
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
