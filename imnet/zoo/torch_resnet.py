"""ResNets, pre-activation ResNets and wide ResNets for ImageNet and CIFAR (seed: torch-resnet).

Follows the torch-resnet package (raphaelreme/torch-resnet): He et al. 2015 [1] (ResNet, shortcut
options A/B/C), He et al. 2016 [2] (pre-activation), Zagoruyko & Komodakis 2016 [3] (wide ResNets),
with the stride of bottlenecks on the 3x3 convolution (ResNet v1.5, as torchvision). Module names are
torch-resnet's (``init_layer``, ``layers``, ``head``; ``set_head()`` and ``out_planes`` as its users
expect), so its checkpoints load unchanged; :func:`checkpoint_filter_fn` maps torchvision's ResNet
checkpoints (``conv1``/``layer1``/``downsample``/``fc``) onto them, with identical logits.

Variants: ImageNet ``resnet18..200``, ``preact_resnet18..200``, ``wide_resnet50_2/101_2``,
``preact_wide_resnet50_2/101_2``; CIFAR ``cifar_resnet20..1202``, ``cifar_preact_resnet20..1202``,
the "-small" ImageNet ResNets for 32 px images (3x3 stem, no max-pool) ``cifar_resnet18_small`` ...,
and wide ResNets ``cifar_wrn<depth>_<k>`` / ``cifar_preact_wrn<depth>_<k>``.
"""
from __future__ import annotations

import re
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from imnet.errors import ImnetError
from imnet.zoo.fidelity import Reference, register_reference
from imnet.zoo.registry import ModelConfig, Published, WeightsSource, register_model

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


# --- shortcuts (option A, B, C of [1]) ------------------------------------------------------------

class IdentityShortcut(nn.Module):
    """Option A: identity; when shapes change, strided subsampling and zero-padded channels."""

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        if out_planes < in_planes:
            raise ValueError("the identity shortcut cannot reduce the number of channels")
        self.requires_activation = False
        self.in_planes, self.out_planes, self.stride = in_planes, out_planes, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[..., :: self.stride, :: self.stride]
        if self.out_planes > self.in_planes:
            x = F.pad(x, (0, 0, 0, 0, 0, self.out_planes - self.in_planes))
        return x


class ProjectionShortcut(nn.Module):
    """Option B: identity where shapes match, else a strided 1x1 convolution."""

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.requires_activation = stride != 1 or in_planes != out_planes
        if self.requires_activation:
            self.conv = nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) if self.requires_activation else x


class FullProjectionShortcut(nn.Module):
    """Option C: a 1x1 convolution on every shortcut."""

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.requires_activation = True
        self.conv = nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


SHORTCUTS = {"A": IdentityShortcut, "B": ProjectionShortcut, "C": FullProjectionShortcut}


def _shortcut_class(shortcut: str | type) -> type:
    if isinstance(shortcut, type):
        return shortcut
    try:
        return SHORTCUTS[shortcut.upper()]
    except (KeyError, AttributeError):
        raise ImnetError(f"shortcut must be one of {', '.join(SHORTCUTS)}, not {shortcut!r}") from None


# --- blocks ------------------------------------------------------------------------------------------

class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BN; dropout between them for wide ResNets [3]."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, *, shortcut: type = ProjectionShortcut, stride: int = 1,
                 width: int = 1, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.out_planes = planes * width
        self.conv1 = nn.Conv2d(in_planes, self.out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(self.out_planes)
        self.dropout = nn.Dropout(drop_rate)
        self.conv2 = nn.Conv2d(self.out_planes, self.out_planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(self.out_planes)
        self.shortcut = nn.Sequential(shortcut(in_planes, self.out_planes, stride))
        if self.shortcut[0].requires_activation:
            self.shortcut.append(nn.BatchNorm2d(self.out_planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(self.dropout(out)))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided; ``width`` widens it), 1x1 expand x4, with BN."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, *, shortcut: type = ProjectionShortcut, stride: int = 1,
                 width: int = 1, drop_rate: float = 0.0) -> None:
        super().__init__()
        if drop_rate:
            raise ImnetError("dropout is not supported in bottleneck blocks")
        self.out_planes = planes * self.expansion
        mid = planes * width
        self.conv1 = nn.Conv2d(in_planes, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, self.out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(self.out_planes)
        self.shortcut = nn.Sequential(shortcut(in_planes, self.out_planes, stride))
        if self.shortcut[0].requires_activation:
            self.shortcut.append(nn.BatchNorm2d(self.out_planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3 twice [2]; a projecting shortcut takes the activated input."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, *, shortcut: type = ProjectionShortcut, stride: int = 1,
                 width: int = 1, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.out_planes = planes * width
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, self.out_planes, 3, stride=stride, padding=1, bias=False)
        self.dropout = nn.Dropout(drop_rate)
        self.bn2 = nn.BatchNorm2d(self.out_planes)
        self.conv2 = nn.Conv2d(self.out_planes, self.out_planes, 3, padding=1, bias=False)
        self.shortcut = shortcut(in_planes, self.out_planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        skip = self.shortcut(out) if self.shortcut.requires_activation else self.shortcut(x)
        out = self.conv1(out)
        out = self.conv2(self.dropout(F.relu(self.bn2(out))))
        return out + skip


class PreActBottleneck(nn.Module):
    """BN-ReLU-conv for the 1x1 / 3x3 / 1x1 bottleneck [2]."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, *, shortcut: type = ProjectionShortcut, stride: int = 1,
                 width: int = 1, drop_rate: float = 0.0) -> None:
        super().__init__()
        if drop_rate:
            raise ImnetError("dropout is not supported in bottleneck blocks")
        self.out_planes = planes * self.expansion
        mid = planes * width
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, mid, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, self.out_planes, 1, bias=False)
        self.shortcut = shortcut(in_planes, self.out_planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        skip = self.shortcut(out) if self.shortcut.requires_activation else self.shortcut(x)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + skip


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck,
          "preact_basic": PreActBlock, "preact_bottleneck": PreActBottleneck}


# --- the model ---------------------------------------------------------------------------------------

class ResNet(nn.Module):
    """A (pre-activation, wide) ResNet backbone with a replaceable ``head``.

    ``stages`` is ``[(blocks, planes), ...]``: its first entry gives the stem width (blocks unused),
    the others one stage each (the first at stride 1, the rest at stride 2). ``small_images`` swaps
    the 7x7/2 stem and max-pool for a 3x3/1 stem (CIFAR). ``out_planes`` is the feature width that
    ``head`` receives after global average pooling."""

    def __init__(self, stages: list[tuple[int, int]], block: str = "basic", *, num_classes: int = 1000,
                 shortcut: str | type = "B", in_chans: int = 3, width: int = 1, drop_rate: float = 0.0,
                 small_images: bool = False, zero_init_residual: bool = False) -> None:
        super().__init__()
        block_cls = BLOCKS[block]
        self.preact = block.startswith("preact")
        shortcut_cls = _shortcut_class(shortcut)
        self.out_planes = stages[0][1]
        stem: list[nn.Module]
        if small_images:
            stem = [nn.Conv2d(in_chans, self.out_planes, 3, stride=1, padding=1, bias=False)]
        else:
            stem = [nn.Conv2d(in_chans, self.out_planes, 7, stride=2, padding=3, bias=False)]
        if not self.preact:
            stem += [nn.BatchNorm2d(self.out_planes), nn.ReLU(inplace=True)]
        if not small_images:
            stem.append(nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        # torch-resnet's pre-activation CIFAR stem is the bare conv (its state_dict key is init_layer.weight)
        self.init_layer = stem[0] if len(stem) == 1 else nn.Sequential(*stem)

        layers = []
        for index, (num_blocks, planes) in enumerate(stages[1:]):
            stride = 1 if index == 0 else 2
            blocks = []
            for block_stride in [stride] + [1] * (num_blocks - 1):
                blocks.append(block_cls(self.out_planes, planes, shortcut=shortcut_cls, stride=block_stride,
                                        width=width, drop_rate=drop_rate))
                self.out_planes = blocks[-1].out_planes
            layers.append(nn.Sequential(*blocks))
        self.layers = nn.Sequential(*layers)
        self.norm = nn.BatchNorm2d(self.out_planes) if self.preact else nn.Identity()
        self.head: nn.Module = nn.Linear(self.out_planes, num_classes) if num_classes else nn.Identity()
        self.num_classes = num_classes
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init_residual:  # each residual branch starts as zero: the block is an identity
            last = {BasicBlock: "bn2", Bottleneck: "bn3", PreActBlock: "conv2", PreActBottleneck: "conv3"}
            for module in self.modules():
                if type(module) in last:
                    nn.init.zeros_(getattr(module, last[type(module)]).weight)

    def set_head(self, head: nn.Module) -> None:
        """Replace the head (applied to the pooled ``out_planes`` features), e.g.
        ``model.set_head(nn.Linear(model.out_planes, 10))``."""
        self.head = head

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map before pooling, ``(B, out_planes, H', W')``."""
        x = self.layers(self.init_layer(x))
        return F.relu(self.norm(x)) if self.preact else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` (or pooled features when the head is an identity)."""
        return self.head(self.forward_features(x).mean(dim=(-2, -1)))


# --- foreign checkpoints -----------------------------------------------------------------------------

# torchvision name -> torch-resnet name, applied in order to each key.
_TV_RENAMES = [
    (r"^conv1\.", "init_layer.0."),
    (r"^bn1\.", "init_layer.1."),
    (r"\.downsample\.0\.", ".shortcut.0.conv."),
    (r"\.downsample\.1\.", ".shortcut.1."),
    (r"^layer(\d+)\.", lambda m: f"layers.{int(m.group(1)) - 1}."),  # layer1..4 -> layers.0..3
    (r"^fc\.", "head."),
]


def _from_torchvision(key: str) -> str:
    for pattern, target in _TV_RENAMES:
        key = re.sub(pattern, target, key)
    return key


def checkpoint_filter_fn(state_dict: dict, model: nn.Module) -> dict:
    """Map a torchvision ResNet / wide ResNet state_dict (``conv1``, ``bn1``, ``layerN.M.downsample``,
    ``fc``) onto this family's names; torch-resnet's own checkpoints (``init_layer``, ``layers``,
    ``head``) pass unchanged."""
    if "conv1.weight" not in state_dict:
        return state_dict
    return {_from_torchvision(k): v for k, v in state_dict.items()}


# --- configuration -----------------------------------------------------------------------------------

# Stages: (blocks, planes) per stage; the first entry is the stem width.
_IMAGENET_STEM = (1, 64)
_DEPTHS = {  # depth: block kind, blocks per stage
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    200: ("bottleneck", (3, 24, 36, 3)),
}
_CIFAR_DEPTHS = {  # depth: block kind, blocks per stage (16, 32, 64 planes)
    20: ("basic", 3), 32: ("basic", 5), 44: ("basic", 7), 56: ("basic", 9), 110: ("basic", 18),
    164: ("bottleneck", 18), 1001: ("bottleneck", 111), 1202: ("basic", 200),
}


def _imagenet_stages(depth: int) -> tuple[str, list[tuple[int, int]]]:
    kind, blocks = _DEPTHS[depth]
    return kind, [_IMAGENET_STEM] + list(zip(blocks, (64, 128, 256, 512)))


def _cifar_stages(blocks: int) -> list[tuple[int, int]]:
    return [(1, 16)] + [(blocks, p) for p in (16, 32, 64)]


def _create(arch: dict[str, Any], num_classes: int, **kwargs: Any) -> ResNet:
    """Build from a literal arch entry: ``stages``, ``block``, and default keyword arguments."""
    args = {k: v for k, v in arch.items() if k not in ("stages", "block")}
    args.update(kwargs)
    return ResNet(arch["stages"], arch["block"], num_classes=num_classes, **args)


def _tv_weights(tv_name: str) -> WeightsSource:
    """torchvision's IMAGENET1K_V1 weights (the classic 256 -> 224 recipe) of ``tv_name``."""
    import torchvision

    url = torchvision.models.get_model_weights(tv_name).IMAGENET1K_V1.url
    return WeightsSource(url=url, filename=url.rsplit("/", 1)[-1])


def _tr(params: float, precision: int = 1) -> Published:
    """A row of torch-resnet's results table (counted at 10 classes, CIFAR-10)."""
    return Published(params=params, params_precision=precision, num_classes=10, note="torch-resnet table")


def _cfg(name: str, published: Published = Published(), cifar: bool = False,
         weights: WeightsSource | None = None) -> ModelConfig:
    if cifar:
        return ModelConfig(name=name, family="torch_resnet", source="seed:torch-resnet", input_size=(3, 32, 32),
                           crop_pct=1.0, mean=CIFAR_MEAN, std=CIFAR_STD, first_conv="init_layer",
                           classifier="head", num_classes=10, published=published,
                           checkpoint_filter=checkpoint_filter_fn)
    return ModelConfig(name=name, family="torch_resnet", source="seed:torch-resnet", first_conv="init_layer.0",
                       classifier="head", published=published, weights=weights,
                       checkpoint_filter=checkpoint_filter_fn)


def _imagenet(depth: int, preact: bool = False, width: int = 1) -> dict[str, Any]:
    kind, stages = _imagenet_stages(depth)
    return {"stages": stages, "block": ("preact_" if preact else "") + kind, "width": width}


def _small(depth: int, preact: bool = False) -> dict[str, Any]:
    return {**_imagenet(depth, preact), "small_images": True}


def _cifar(depth: int, preact: bool = False) -> dict[str, Any]:
    kind, blocks = _CIFAR_DEPTHS[depth]
    return {"stages": _cifar_stages(blocks), "block": ("preact_" if preact else "") + kind, "small_images": True}


def _wrn(depth: int, k: int, preact: bool = False) -> dict[str, Any]:
    """WRN-depth-k [3]: (depth - 4) / 6 basic blocks per stage, k times wider, dropout 0.3."""
    return {"stages": _cifar_stages((depth - 4) // 6), "block": ("preact_" if preact else "") + "basic",
            "width": k, "drop_rate": 0.3, "small_images": True}


# name: (arch, config)
default_cfgs: dict[str, tuple[dict[str, Any], ModelConfig]] = {}


def _add(name: str, arch: dict[str, Any], config: ModelConfig) -> None:
    default_cfgs[name] = (arch, config)

    def build(num_classes: int = config.num_classes, **kwargs: Any) -> ResNet:
        return _create(arch, num_classes, **kwargs)

    build.__name__ = name
    build.__doc__ = f"{name} ({config.source}); keyword arguments go to :class:`ResNet`."
    register_model(config)(build)


# ImageNet: the torchvision-compatible ResNets, with torchvision's figures for the IMAGENET1K_V1
# weights they load. pytorch_model_integration's ResNet rows are another network (no stem max-pool,
# layer1 at stride 2): its pmi_resnet18..152 (imnet.zoo.pmi_resnet) carry that table's figures.
_add("resnet18", _imagenet(18), _cfg("resnet18", Published(
    params=11.689512, params_precision=6, macs=1.814, top1=69.758, top5=89.078,
    note="torchvision docs (same architecture)"), weights=_tv_weights("resnet18")))
_add("resnet34", _imagenet(34), _cfg("resnet34", Published(
    params=21.797672, params_precision=6, macs=3.664, top1=73.314, top5=91.42,
    note="torchvision docs (same architecture)"), weights=_tv_weights("resnet34")))
_add("resnet50", _imagenet(50), _cfg("resnet50", Published(
    params=25.557032, params_precision=6, macs=4.089, top1=76.13, top5=92.862,
    note="torchvision docs (same architecture)"), weights=_tv_weights("resnet50")))
_add("resnet101", _imagenet(101), _cfg("resnet101", Published(
    params=44.54916, params_precision=6, macs=7.801, top1=77.374, top5=93.546,
    note="torchvision docs (same architecture)"), weights=_tv_weights("resnet101")))
_add("resnet152", _imagenet(152), _cfg("resnet152", Published(
    params=60.192808, params_precision=6, macs=11.514, top1=78.312, top5=94.046,
    note="torchvision docs (same architecture)"), weights=_tv_weights("resnet152")))
_add("resnet200", _imagenet(200), _cfg("resnet200"))
_add("wide_resnet50_2", _imagenet(50, width=2), _cfg("wide_resnet50_2", weights=_tv_weights("wide_resnet50_2")))
_add("wide_resnet101_2", _imagenet(101, width=2),
     _cfg("wide_resnet101_2", weights=_tv_weights("wide_resnet101_2")))
_add("preact_resnet18", _imagenet(18, True), _cfg("preact_resnet18"))
_add("preact_resnet34", _imagenet(34, True), _cfg("preact_resnet34"))
_add("preact_resnet50", _imagenet(50, True), _cfg("preact_resnet50"))
_add("preact_resnet101", _imagenet(101, True), _cfg("preact_resnet101"))
_add("preact_resnet152", _imagenet(152, True), _cfg("preact_resnet152"))
_add("preact_resnet200", _imagenet(200, True), _cfg("preact_resnet200"))
_add("preact_wide_resnet50_2", _imagenet(50, True, width=2), _cfg("preact_wide_resnet50_2"))
_add("preact_wide_resnet101_2", _imagenet(101, True, width=2), _cfg("preact_wide_resnet101_2"))

# CIFAR ResNets [1], [2] (torch-resnet's table: params at 10 classes, option B shortcuts).
for _depth, _params in [(20, 0.3), (32, 0.5), (44, 0.7), (56, 0.9), (110, 1.7), (164, 1.7), (1001, 10.3),
                        (1202, 19.4)]:
    _add(f"cifar_resnet{_depth}", _cifar(_depth), _cfg(f"cifar_resnet{_depth}", _tr(_params), cifar=True))
    _add(f"cifar_preact_resnet{_depth}", _cifar(_depth, True),
         _cfg(f"cifar_preact_resnet{_depth}", _tr(_params), cifar=True))

# ImageNet ResNets for 32 px images ("-small": 3x3 stem, no max-pool; SimCLR's CIFAR variant).
for _depth, _params in [(18, 11.2), (34, 21.3), (50, 23.5), (101, 42.5)]:
    _add(f"cifar_resnet{_depth}_small", _small(_depth),
         _cfg(f"cifar_resnet{_depth}_small", _tr(_params), cifar=True))
    _add(f"cifar_preact_resnet{_depth}_small", _small(_depth, True),
         _cfg(f"cifar_preact_resnet{_depth}_small", _tr(_params), cifar=True))

# Wide ResNets for CIFAR [3] (no published counts in torch-resnet's table).
for _depth, _k in [(16, 4), (16, 8), (28, 10), (40, 3), (40, 4)]:
    _add(f"cifar_wrn{_depth}_{_k}", _wrn(_depth, _k), _cfg(f"cifar_wrn{_depth}_{_k}", cifar=True))
    _add(f"cifar_preact_wrn{_depth}_{_k}", _wrn(_depth, _k, True),
         _cfg(f"cifar_preact_wrn{_depth}_{_k}", cifar=True))


# --- references: the torch-resnet package (every variant) and torchvision (its ResNets) -------------

def _torch_resnet_name(name: str) -> tuple[str, dict[str, Any]]:
    """The torch-resnet class and keyword arguments of zoo variant ``name``."""
    match = re.fullmatch(r"(cifar_)?(preact_)?(wide_)?resnet(\d+)(_2)?(_small)?", name)
    if match:
        cifar, preact, wide, depth, _, small = match.groups()
        kwargs: dict[str, Any] = {"width": 2} if wide else {}
        if small:
            kwargs["small_images"] = True
        return f"{'PreAct' if preact else ''}ResNet{depth}", kwargs
    match = re.fullmatch(r"cifar_(preact_)?wrn(\d+)_(\d+)", name)
    if match:
        preact, depth, k = match.groups()
        return f"{'PreAct' if preact else ''}WideResNet{depth}", {"width": int(k)}
    raise ValueError(f"no torch-resnet counterpart for {name}")


def torch_resnet_reference(name: str, shortcut: str = "B") -> Reference:
    """The torch-resnet package's model for zoo variant ``name`` (its head set to a linear layer),
    with shortcut option ``shortcut`` on both sides."""
    cls_name, kwargs = _torch_resnet_name(name)

    def build(num_classes: int) -> nn.Module:
        import torch_resnet

        model = getattr(torch_resnet, cls_name)(shortcut=getattr(torch_resnet, SHORTCUTS[shortcut].__name__),
                                                **kwargs)
        model.set_head(nn.Linear(model.out_planes, num_classes))
        return model

    args = ", ".join([f"{k}={v}" for k, v in kwargs.items()] + ([f"shortcut={shortcut}"] if shortcut != "B" else []))
    return Reference(f"torch-resnet {cls_name}({args})", build, requires="torch_resnet",
                     zoo_kwargs={"shortcut": shortcut} if shortcut != "B" else {},
                     input_size=(3, 16, 16))  # small and fast: every stem still reaches a 1x1 or 2x2 map


def torchvision_reference(name: str) -> Reference:
    """torchvision's ``name`` (resnet18..152, wide_resnet50_2/101_2), its state_dict mapped by
    :func:`checkpoint_filter_fn`."""
    def build(num_classes: int) -> nn.Module:
        import torchvision

        return torchvision.models.get_model(name, weights=None, num_classes=num_classes)

    return Reference(f"torchvision {name}", build, to_zoo=checkpoint_filter_fn)


for _name in default_cfgs:
    register_reference(_name, torch_resnet_reference(_name))
for _name in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "wide_resnet50_2", "wide_resnet101_2"):
    register_reference(_name, torchvision_reference(_name))
