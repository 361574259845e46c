"""Function fidelity: does a zoo model compute the same function as the network it reproduces?

Parameter counts hide functional differences (a missing max-pool, another activation, a concatenation
in the other order), so each zoo model with a reference is compared by what it computes:

* **Seeded weights** (:func:`seeded_state_dict`): every tensor of a state_dict filled from its key
  name alone (NumPy's frozen ``RandomState`` stream, seeded by the key's CRC-32), in ranges that keep a
  randomly weighted network numerically tame in eval mode (BN statistics and affine parameters
  around 1, convolutions at variance 1/fan-in). The same key list gives the same numbers on any
  machine, with no dependence on the order of the keys.
* **A trace** (:func:`trace_model`): every ``conv2d`` a forward pass executes, in execution order,
  with its kernel, stride, padding, dilation, groups, bias, output size and the operation that
  produced its input (``relu``, ``bn``, ``max_pool``, ``cat``, ...), the activations used, the
  classifier's input, and which state_dict keys the output depends on (the others are dead code:
  built, maybe even run, but never reaching the output). Traced on the ``meta`` device: no compute.
* **A fingerprint** (:func:`fingerprint`) of an output tensor: shape, sums, norm, three seeded
  projections and its first values, so that two outputs can be compared from a few numbers
  (:func:`fingerprints_match`), including permuted channels.

A reference is either a package (torch-resnet, torchvision, timm, bsconv: the reference model is
built, seeded, and its state_dict loaded through the zoo model's ``checkpoint_filter_fn``) or a
recording of the original code (:mod:`imnet.zoo.originals`: key names and shapes, trace and output
fingerprint, recorded once from each original repository at the commit the file names, by running
the original's constructor through :func:`trace_model` in a scratch checkout outside this repository). References
are registered per model with :func:`register_reference`; :func:`check_function` runs one.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

BASE_SEED = 13


# --- seeded weights ----------------------------------------------------------------------------------

def _uniform(key: str, numel: int, seed: int) -> np.ndarray:
    """``numel`` uniforms in [0, 1) from the legacy (frozen) NumPy stream seeded by ``key``."""
    state = np.random.RandomState([seed & 0xFFFFFFFF, zlib.crc32(key.encode())])
    return state.random_sample(numel)


def seeded_tensor(key: str, shape: Sequence[int], seed: int = BASE_SEED,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The tensor of state_dict entry ``key``, from its name and shape alone. Ranges: ``running_var``
    and 1-D weights (BN's) in [0.5, 1.5), ``running_mean``, biases and other 1-D tensors in
    [-0.1, 0.1), weights of dimension >= 2 uniform with variance 1/fan-in; ``num_batches_tracked`` 0."""
    shape = tuple(int(s) for s in shape)
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "num_batches_tracked":
        return torch.zeros(shape, dtype=torch.long)
    numel = math.prod(shape)
    u = _uniform(key, numel, seed)
    if leaf in ("running_var",) or (leaf == "weight" and len(shape) <= 1):
        values = 0.5 + u
    elif leaf in ("running_mean", "bias") or len(shape) <= 1:
        values = (u - 0.5) * 0.2
    else:
        fan_in = max(1, math.prod(shape[1:]))
        values = (2.0 * u - 1.0) * math.sqrt(3.0 / fan_in)
    return torch.from_numpy(values.reshape(shape).astype(np.float32)).to(dtype)


def seeded_state_dict(shapes: Mapping[str, Sequence[int]], seed: int = BASE_SEED) -> dict[str, torch.Tensor]:
    """A state_dict with the given key names and shapes, filled by :func:`seeded_tensor`."""
    return {k: seeded_tensor(k, shapes[k], seed) for k in shapes}


def seed_model(model: nn.Module, seed: int = BASE_SEED) -> nn.Module:
    """Load :func:`seeded_state_dict` of ``model``'s own keys into it (in place); returns it."""
    own = model.state_dict()
    values = seeded_state_dict({k: v.shape for k, v in own.items()}, seed)
    model.load_state_dict({k: values[k].to(own[k].dtype) for k in own}, assign=True)
    return model


@torch.no_grad()
def randomize_model(model: nn.Module, seed: int = BASE_SEED) -> nn.Module:
    """Fill ``model``'s state in place with the ranges of :func:`seeded_tensor`, from torch's generator
    (fast; reproducible on one machine only). For comparing two models that receive the same tensors,
    where only :func:`seed_model`'s machine-independence is not needed."""
    generator = torch.Generator().manual_seed(seed)
    for key, tensor in model.state_dict(keep_vars=True).items():
        leaf, shape = key.rsplit(".", 1)[-1], tuple(tensor.shape)
        if leaf == "num_batches_tracked":
            tensor.zero_()
            continue
        u = torch.rand(shape, generator=generator)
        if leaf == "running_var" or (leaf == "weight" and len(shape) <= 1):
            values = 0.5 + u
        elif leaf in ("running_mean", "bias") or len(shape) <= 1:
            values = (u - 0.5) * 0.2
        else:
            values = (2.0 * u - 1.0) * math.sqrt(3.0 / max(1, math.prod(shape[1:])))
        tensor.data.copy_(values)
    return model


def seeded_input(shape: Sequence[int], seed: int = BASE_SEED) -> torch.Tensor:
    """An input batch in [-2, 2), the range of normalized images."""
    return torch.from_numpy((_uniform("input", math.prod(shape), seed) * 4.0 - 2.0).reshape(tuple(shape))).float()


# --- fingerprints ------------------------------------------------------------------------------------

FINGERPRINT_RTOL = 1e-4


def fingerprint(output: torch.Tensor, seed: int = BASE_SEED) -> dict[str, Any]:
    """A few numbers standing for ``output``: shape, sum, sum of |x|, L2 norm, three seeded random
    projections (they change when elements are permuted), and the first 8 values."""
    flat = output.detach().double().flatten().cpu()
    projections = [float((flat * torch.from_numpy(_uniform(f"projection{i}", flat.numel(), seed) - 0.5)).sum())
                   for i in range(3)]
    return {"shape": list(output.shape), "sum": float(flat.sum()), "abs_sum": float(flat.abs().sum()),
            "norm": float(flat.norm()), "projections": projections, "head": [float(v) for v in flat[:8]]}


def fingerprints_match(a: Mapping[str, Any], b: Mapping[str, Any], rtol: float = FINGERPRINT_RTOL) -> tuple[bool, str]:
    """Whether two fingerprints agree (every figure within ``rtol`` of the output's scale); with the
    first figure that does not, and by how much."""
    if list(a["shape"]) != list(b["shape"]):
        return False, f"output shape {tuple(b['shape'])}, expected {tuple(a['shape'])}"
    numel = max(1, math.prod(a["shape"]))
    scale = max(float(a["norm"]), 1e-12)
    rms = scale / math.sqrt(numel)
    checks = [("abs_sum", a["abs_sum"], b["abs_sum"], a["abs_sum"]), ("norm", a["norm"], b["norm"], scale),
              ("sum", a["sum"], b["sum"], a["abs_sum"])]
    checks += [(f"projection {i}", x, y, scale) for i, (x, y) in enumerate(zip(a["projections"], b["projections"]))]
    checks += [(f"value {i}", x, y, rms) for i, (x, y) in enumerate(zip(a["head"], b["head"]))]
    for name, expected, got, ref in checks:
        if abs(expected - got) > rtol * max(abs(ref), 1e-12) + 1e-9:
            return False, f"{name} {got:.6g}, expected {expected:.6g} (relative difference {abs(expected - got) / max(abs(ref), 1e-12):.2g})"
    return True, ""


# --- trace -------------------------------------------------------------------------------------------

# Operations that pass their input through unchanged in eval mode (or only reshape it).
_PERMUTE = {"permute", "transpose", "swapaxes", "swapdims"}
_PASSTHROUGH = {"view", "reshape", "flatten", "squeeze", "unsqueeze", "contiguous", "dropout", "dropout2d",
                "alpha_dropout", "feature_dropout", "clone", "detach", "float", "to", "type_as"}
_ADD = {"add", "add_", "__add__", "__iadd__", "__radd__"}
_ACTIVATIONS = {"relu", "relu_", "relu6", "hardtanh", "leaky_relu", "leaky_relu_", "hardswish", "hardsigmoid",
                "sigmoid", "tanh", "gelu", "silu", "elu", "prelu", "softmax", "log_softmax", "threshold"}


@dataclass(frozen=True)
class ConvCall:
    """One executed convolution: ``in_chs, out_chs, kernel, stride, padding, dilation, groups, bias``,
    the spatial size of its output and the operation that produced its input."""

    in_chs: int
    out_chs: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    bias: bool
    out_size: tuple[int, int]
    input_from: str

    def as_list(self) -> list:
        return [self.in_chs, self.out_chs, list(self.kernel), list(self.stride), list(self.padding),
                list(self.dilation), self.groups, self.bias, list(self.out_size), self.input_from]

    @classmethod
    def from_list(cls, values: Sequence) -> "ConvCall":
        i, o, k, s, p, d, g, b, size, src = values
        return cls(i, o, tuple(k), tuple(s), tuple(p), tuple(d), g, bool(b), tuple(size), src)

    def describe(self) -> str:
        k, s, p = "x".join(map(str, self.kernel)), "x".join(map(str, self.stride)), "x".join(map(str, self.padding))
        return (f"conv {self.in_chs}->{self.out_chs} k{k} s{s} p{p} g{self.groups}{' +bias' if self.bias else ''} "
                f"-> {'x'.join(map(str, self.out_size))}, input from {self.input_from}")


@dataclass
class Trace:
    """What one forward pass ran: live convolutions in order, the set of activations (``relu``,
    ``leaky_relu(0.1)``, ...), what the final layer reads (``classifier``: ``"linear 512->1000 <-
    avg_pool(global)"``), the state_dict keys the output depends on (``live_keys``) and those it does
    not (``dead_keys``: parameters of layers whose result is never used, or never run)."""

    convs: list[ConvCall] = field(default_factory=list)
    activations: list[str] = field(default_factory=list)
    classifier: str = ""
    live_keys: list[str] = field(default_factory=list)
    dead_keys: list[str] = field(default_factory=list)
    output_shape: list[int] = field(default_factory=list)


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (list, tuple)):
        return (int(value[0]), int(value[-1]))
    return (int(value), int(value))


def _tensors(values: Any) -> list[torch.Tensor]:
    """Tensors in an argument tree (lists and tuples of tensors, as ``torch.cat`` takes them)."""
    if isinstance(values, torch.Tensor):
        return [values]
    if isinstance(values, (list, tuple)):
        return [t for v in values for t in _tensors(v)]
    if isinstance(values, dict):
        return [t for v in values.values() for t in _tensors(v)]
    return []


def _name(func: Any) -> str:
    name = getattr(func, "__name__", None) or str(func)
    return name.lstrip("_") if name.startswith("_max_pool") or name.startswith("_adaptive") else name


def _arg(args: tuple, kwargs: dict, index: int, name: str, default: Any) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[index] if len(args) > index else default


class _Recorder(TorchFunctionMode):
    """Records every torch function call of a forward pass as a node of a graph (inputs -> output)."""

    def __init__(self, param_keys: dict[int, list[str]]) -> None:
        super().__init__()
        self.param_keys = param_keys
        self.nodes: list[dict[str, Any]] = []
        self.producer: dict[int, int] = {}  # id(tensor) -> node index
        self.alive: list[torch.Tensor] = []  # keeps ids unique for the whole pass

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = _name(func)
        inputs = _tensors(args) + _tensors(kwargs)
        outputs = _tensors(out)
        if not outputs or name in ("size", "dim", "__get__", "shape"):
            return out
        parents = sorted({self.producer[id(t)] for t in inputs if id(t) in self.producer})
        keys = [k for t in inputs for k in self.param_keys.get(id(t), ())]
        node = {"name": name, "parents": parents, "keys": keys, "label": self._label(name, args, kwargs, inputs, out)}
        if name in ("conv2d",):
            node["conv"] = self._conv(args, kwargs, out)
        if name == "linear":
            weight = _arg(args, kwargs, 1, "weight", None)
            node["linear"] = (int(weight.shape[1]), int(weight.shape[0]))
        self.nodes.append(node)
        index = len(self.nodes) - 1
        for t in outputs:
            self.producer[id(t)] = index
            self.alive.append(t)
        self.alive.extend(inputs)
        return out

    @staticmethod
    def _label(name: str, args: tuple, kwargs: dict, inputs: list[torch.Tensor], out: Any) -> str:
        """The operation's kind as a trace shows it (pools and activations with their settings)."""
        x = inputs[0] if inputs else None
        if name in ("relu", "relu_", "threshold") or (name == "hardtanh" and _arg(args, kwargs, 1, "min_val", -1.0) == 0.0
                                                       and _arg(args, kwargs, 2, "max_val", 1.0) == 6.0):
            return "relu6" if name == "hardtanh" else "relu"
        if name in ("leaky_relu", "leaky_relu_"):
            return f"leaky_relu({float(_arg(args, kwargs, 1, 'negative_slope', 0.01)):g})"
        if name in _ACTIVATIONS:
            return name.rstrip("_")
        if name == "batch_norm":
            return "bn"
        if name in _ADD:
            return "add"
        if name in ("max_pool2d", "max_pool2d_with_indices", "avg_pool2d"):
            kind = "max_pool" if name.startswith("max") else "avg_pool"
            kernel = _pair(_arg(args, kwargs, 1, "kernel_size", 1))
            stride = _arg(args, kwargs, 2, "stride", None)
            stride = kernel if stride in (None, [], ()) else _pair(stride)
            padding = _pair(_arg(args, kwargs, 3, "padding", 0))
            if x is not None and tuple(x.shape[-2:]) == kernel and padding == (0, 0):
                return f"{kind}(global)"
            return f"{kind}(k{kernel[0]} s{stride[0]} p{padding[0]})"
        if name in ("adaptive_avg_pool2d", "adaptive_max_pool2d", "adaptive_max_pool2d_with_indices"):
            kind = "avg_pool" if "avg" in name else "max_pool"
            size = _pair(_arg(args, kwargs, 1, "output_size", 1))
            return f"{kind}(global)" if size == (1, 1) else f"{kind}(adaptive {size[0]})"
        if name in ("mean", "amax", "max") and x is not None and x.dim() == 4:
            dims = _arg(args, kwargs, 1, "dim", None)
            dims = (dims,) if isinstance(dims, int) else tuple(dims or ())
            if sorted(d % 4 for d in dims) == [2, 3]:
                return "avg_pool(global)" if name == "mean" else "max_pool(global)"
        if name in _PASSTHROUGH:
            return "passthrough"
        if name in _PERMUTE:  # a channel shuffle is written with either
            return "permute"
        return name

    @staticmethod
    def _conv(args: tuple, kwargs: dict, out: torch.Tensor) -> dict[str, Any]:
        weight = _arg(args, kwargs, 1, "weight", None)
        bias = _arg(args, kwargs, 2, "bias", None)
        groups = int(_arg(args, kwargs, 6, "groups", 1))
        padding = _arg(args, kwargs, 4, "padding", 0)
        kernel = tuple(int(k) for k in weight.shape[2:])
        if isinstance(padding, str):  # "same" / "valid"
            padding = tuple(k // 2 for k in kernel) if padding == "same" else (0, 0)
        return {"in_chs": int(weight.shape[1]) * groups, "out_chs": int(weight.shape[0]), "kernel": kernel,
                "stride": _pair(_arg(args, kwargs, 3, "stride", 1)), "padding": _pair(padding),
                "dilation": _pair(_arg(args, kwargs, 5, "dilation", 1)), "groups": groups,
                "bias": bias is not None, "out_size": tuple(int(s) for s in out.shape[-2:])}


def _source(nodes: list[dict[str, Any]], index: int | None) -> str:
    """The label of the operation that produced a tensor, looking through pass-through operations."""
    while index is not None:
        node = nodes[index]
        if node["label"] != "passthrough":
            return node["label"]
        index = node["parents"][0] if node["parents"] else None
    return "input"


def trace_model(model: nn.Module, input_size: Sequence[int], forward: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None,
                ) -> Trace:
    """Trace one forward pass of ``model`` (in eval mode) on an input of ``input_size`` (C, H, W).

    ``forward(model, x)`` replaces ``model(x)`` (e.g. ``forward_features``). The model is traced on
    the device its parameters are on; build it on ``meta`` to trace without computing."""
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    keys: dict[int, list[str]] = {}
    for key, tensor in model.state_dict(keep_vars=True).items():  # a shared module: several keys
        keys.setdefault(id(tensor), []).append(key)
    was_training = model.training
    model.eval()
    recorder = _Recorder(keys)
    x = torch.zeros((1, *input_size), device=device)
    try:
        with torch.no_grad(), recorder:
            out = forward(model, x) if forward else model(x)
    finally:
        model.train(was_training)
    nodes = recorder.nodes
    live: set[int] = set()
    stack = [recorder.producer[id(out)]] if id(out) in recorder.producer else []
    while stack:
        index = stack.pop()
        if index not in live:
            live.add(index)
            stack.extend(nodes[index]["parents"])
    trace = Trace(output_shape=list(out.shape))
    used: set[str] = set()
    activations: list[str] = []
    for index, node in enumerate(nodes):
        if index not in live:
            continue
        used.update(node["keys"])
        label = node["label"]
        if node["name"] in _ACTIVATIONS or label.startswith("leaky_relu") or label in ("relu", "relu6"):
            if label not in activations:
                activations.append(label)
        if "conv" in node:
            src = _source(nodes, node["parents"][0] if node["parents"] else None)
            trace.convs.append(ConvCall(**node["conv"], input_from=src))
    # The final layer: the last live linear (or 1x1 conv) and what feeds it.
    for index in sorted(live, reverse=True):
        node = nodes[index]
        if "linear" in node or "conv" in node:
            src = _source(nodes, node["parents"][0] if node["parents"] else None)
            if "linear" in node:
                trace.classifier = f"linear {node['linear'][0]}->{node['linear'][1]} <- {src}"
            else:
                conv = node["conv"]
                trace.classifier = f"conv {conv['in_chs']}->{conv['out_chs']} k{conv['kernel'][0]} <- {src}"
            break
    trace.activations = activations
    state = model.state_dict()
    # A BN's num_batches_tracked is never read in eval mode: it lives and dies with its BN.
    owners = {k.rsplit(".", 1)[0] for k in used}
    trace.live_keys = [k for k in state if k in used or (k.endswith("num_batches_tracked") and k.rsplit(".", 1)[0] in owners)]
    trace.dead_keys = [k for k in state if k not in set(trace.live_keys)]
    return trace


def compare_convs(expected: Sequence[ConvCall], got: Sequence[ConvCall]) -> str:
    """Empty when the two conv lists are equal, else the first difference in words."""
    for i, (a, b) in enumerate(zip(expected, got)):
        if a != b:
            return f"conv #{i}: {b.describe()}; the original: {a.describe()}"
    if len(expected) != len(got):
        return f"{len(got)} convolutions run, the original runs {len(expected)}"
    return ""


# --- references --------------------------------------------------------------------------------------

ORIGINALS_FILE = "originals.json.gz"
LOGITS_RTOL = 1e-5


@dataclass(frozen=True)
class Reference:
    """An independent implementation of a zoo model's network.

    ``build(num_classes)`` makes the reference model (randomly initialised); ``requires`` names the
    module it imports (a test-only package such as ``torch_resnet``: without it the check is
    "unavailable"); ``to_zoo(state_dict, model)`` maps its state_dict onto the zoo model's keys
    (default: the zoo config's ``checkpoint_filter``); ``zoo_kwargs`` are the zoo model's build
    arguments for this comparison (``shortcut="A"``), ``input_size`` the (small) input compared."""

    label: str
    build: Callable[[int], nn.Module]
    requires: str = ""
    to_zoo: Callable[[dict, nn.Module], dict] | None = None
    zoo_kwargs: Mapping[str, Any] = field(default_factory=dict)
    input_size: tuple[int, int, int] = (3, 64, 64)
    num_classes: int | None = None


@dataclass
class FunctionCheck:
    """The outcome of comparing one zoo model with one reference: ``status`` is "same", "differs"
    or "unavailable" (the reference package is not installed); ``detail`` says how close or what
    differs."""

    name: str
    reference: str
    status: str
    detail: str = ""


_REFERENCES: dict[str, list[Reference]] = {}


def register_reference(name: str, reference: Reference) -> None:
    """Declare ``reference`` an independent implementation of zoo model ``name``."""
    _REFERENCES.setdefault(name, []).append(reference)


def package_references(name: str) -> list[Reference]:
    """The package references registered for ``name`` (torch-resnet, torchvision, timm, bsconv)."""
    import imnet.zoo  # noqa: F401  (family files register their references on import)

    return list(_REFERENCES.get(name, []))


_ORIGINALS: dict[str, Any] | None = None


def load_originals() -> dict[str, Any]:
    """The recordings of the original code (``imnet/zoo/originals.json.gz``: facts recorded
    from the originals' repositories at the commits it names): ``{"sources": ..., "models": {key: recording}}``."""
    global _ORIGINALS
    if _ORIGINALS is None:
        import gzip
        import json
        from importlib import resources

        data = resources.files("imnet.zoo").joinpath(ORIGINALS_FILE).read_bytes()
        _ORIGINALS = json.loads(gzip.decompress(data))
    return _ORIGINALS


def recordings(name: str) -> dict[str, dict[str, Any]]:
    """The recordings of the original(s) of zoo model ``name``, by key (``name`` or ``name[deploy=True]``)."""
    return {k: v for k, v in load_originals()["models"].items() if v["zoo"] == name}


def recorded_state_shapes(recording: Mapping[str, Any]) -> dict[str, list[int]]:
    """The original's state_dict key names and shapes (``num_batches_tracked`` of each BN added back:
    the recording leaves them out)."""
    shapes: dict[str, list[int]] = {}
    for key, shape in recording["state_dict"].items():
        shapes[key] = shape
        if key.endswith(".running_var"):
            shapes[key[: -len("running_var")] + "num_batches_tracked"] = []
    return shapes


def _differs(name: str, reference: str, detail: str) -> FunctionCheck:
    return FunctionCheck(name, reference, "differs", detail)


def _load_into(model: nn.Module, state_dict: dict, name: str) -> str:
    """Load strictly; empty on success, else the first missing/unexpected keys or shape mismatch."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    if missing or unexpected:
        return (f"state_dict does not fit {name}: missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
                f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}")
    wrong = [k for k in own if tuple(own[k].shape) != tuple(state_dict[k].shape)]
    if wrong:
        return f"shape of {wrong[0]}: {tuple(state_dict[wrong[0]].shape)}, {name} has {tuple(own[wrong[0]].shape)}"
    # assign: the tensors become the model's (no copy; the weights of a check are not trained)
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state_dict.items()}, assign=True)
    return ""


def _materialize(build: Callable[[], nn.Module]) -> nn.Module:
    """Build on ``meta`` and allocate on CPU without running the initialisers (the weights are
    replaced anyway); models with non-persistent buffers are built on CPU."""
    with torch.device("meta"):
        model = build()
    persistent = set(model.state_dict())
    if any(name not in persistent for name, _ in model.named_buffers()):
        return build()
    return model.to_empty(device="cpu")


def check_package_reference(name: str, reference: Reference) -> FunctionCheck:
    """Seed ``reference``'s model, load its state_dict into zoo model ``name`` (through
    ``reference.to_zoo`` or the config's ``checkpoint_filter``) and compare the two outputs on a
    seeded input (eval mode): "same" when equal within 1e-5 of the logits' scale."""
    import importlib

    from imnet.zoo.factory import create_model
    from imnet.zoo.registry import get_config

    if reference.requires:
        try:
            importlib.import_module(reference.requires)
        except ImportError:
            return FunctionCheck(name, reference.label, "unavailable",
                                 f"{reference.requires} is not installed (pip install 'imnet[test]')")
    config = get_config(name)
    classes = reference.num_classes or config.num_classes
    ref = randomize_model(_materialize(lambda: reference.build(classes))).eval()
    model = _materialize(lambda: create_model(name, num_classes=classes, **dict(reference.zoo_kwargs))).eval()
    to_zoo = reference.to_zoo or config.checkpoint_filter or (lambda sd, m: sd)
    problem = _load_into(model, to_zoo(ref.state_dict(), model), name)
    if problem:
        return _differs(name, reference.label, problem)
    x = seeded_input((1, *reference.input_size))
    with torch.no_grad():
        expected, got = ref(x), model(x)
        if not torch.isfinite(expected).all():
            # Very deep nets (ResNet-1202) overflow in eval mode at random weights, whose BN statistics
            # fit no activations: compare with BN normalizing by batch statistics instead.
            ref.train(), model.train()
            torch.manual_seed(0)
            expected = ref(x)
            torch.manual_seed(0)
            got = model(x)
            check = _compare_outputs(name, reference.label, expected, got)
            check.detail += " (BN on batch statistics: eval-mode outputs overflow at random weights)"
            return check
    return _compare_outputs(name, reference.label, expected, got)


def _compare_outputs(name: str, label: str, expected: torch.Tensor, got: torch.Tensor) -> FunctionCheck:
    if expected.shape != got.shape:
        return _differs(name, label, f"output shape {tuple(got.shape)}, the reference gives {tuple(expected.shape)}")
    if not (torch.isfinite(expected).all() and torch.isfinite(got).all()):
        return _differs(name, label, "non-finite outputs")
    if torch.equal(expected, got):
        return FunctionCheck(name, label, "same", "bitwise")
    scale = float(expected.abs().max()) or 1.0
    diff = float((expected - got).abs().max())
    if diff <= LOGITS_RTOL * scale:
        return FunctionCheck(name, label, "same", f"max |diff| {diff / scale:.1e} of the output's scale")
    return _differs(name, label, f"max |diff| {diff:.3g} ({diff / scale:.1%} of the output's scale)")


def _forward_for(output: str) -> Callable[[nn.Module, torch.Tensor], torch.Tensor] | None:
    if output == "features":
        return lambda m, x: m.forward_features(x)
    return None


def check_recording(key: str, recording: Mapping[str, Any], structure: bool = True,
                    numbers: bool = True) -> FunctionCheck:
    """Compare zoo model ``recording["zoo"]`` with a recording of its original: with ``structure``
    the trace (every conv in order, the activations, the classifier's input); then a state_dict with
    the original's key names and shapes loaded through the config's ``checkpoint_filter`` (strictly:
    the filter must drop the original's dead keys), with ``numbers`` seeded and run on the recorded
    input (on the CPU), the output's fingerprint compared with the original's."""
    from imnet.zoo.factory import create_model
    from imnet.zoo.registry import get_config

    name = recording["zoo"]
    label = f"original {load_originals()['sources'][recording['source']]['repository']} {recording['file']} {recording['build']}"
    config = get_config(name)
    output = recording["output"]
    classes = recording["fingerprint"]["shape"][-1] if output != "features" else config.num_classes
    kwargs = dict(recording["zoo_kwargs"])
    input_size = tuple(recording["input_size"])
    forward = _forward_for(output)
    if structure:
        with torch.device("meta"):
            meta_model = create_model(name, num_classes=classes, **kwargs)
        trace = trace_model(meta_model, input_size, forward)
        problem = compare_convs([ConvCall.from_list(c) for c in recording["convs"]], trace.convs)
        if problem:
            return _differs(name, label, problem)
        expected_acts = [a for a in recording["activations"] if not (output == "log_softmax" and a == "log_softmax")]
        if sorted(trace.activations) != sorted(expected_acts):
            return _differs(name, label, f"activations {trace.activations}, the original uses {expected_acts}")
        if output == "logits" and trace.classifier != recording["classifier"]:
            return _differs(name, label, f"classifier {trace.classifier!r}, the original's {recording['classifier']!r}")
    to_zoo = config.checkpoint_filter or (lambda sd, m: sd)
    if not numbers:  # the key layout only, on the meta device
        with torch.device("meta"):
            model = create_model(name, num_classes=classes, **kwargs)
            state = {k: torch.empty(s) for k, s in recorded_state_shapes(recording).items()}
        problem = _load_into(model, to_zoo(state, model), name)
        if problem:
            return _differs(name, label, problem)
        return FunctionCheck(name, label, "same", "structure and key layout (output not computed)")
    model = _materialize(lambda: create_model(name, num_classes=classes, **kwargs)).eval()
    state = seeded_state_dict(recorded_state_shapes(recording))
    problem = _load_into(model, to_zoo(state, model), name)
    if problem:
        return _differs(name, label, problem)
    with torch.no_grad():
        x = seeded_input((1, *input_size))
        out = forward(model, x) if forward else model(x)
        if output == "log_softmax":
            out = F.log_softmax(out, dim=1)
    same, why = fingerprints_match(recording["fingerprint"], fingerprint(out))
    if not same:
        return _differs(name, label, why)
    return FunctionCheck(name, label, "same", f"fingerprint within {FINGERPRINT_RTOL:g}")


def check_function(name: str, structure: bool = True) -> list[FunctionCheck]:
    """Every reference of zoo model ``name`` checked (package references, then recordings of the
    original); an empty list when it has none."""
    checks = [check_package_reference(name, r) for r in package_references(name)]
    checks += [check_recording(k, r, structure) for k, r in recordings(name).items()]
    return checks


def has_reference(name: str) -> bool:
    """Whether zoo model ``name`` has a package reference or a recording of its original."""
    return bool(package_references(name) or recordings(name))
