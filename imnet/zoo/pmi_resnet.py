"""ResNet and pre-activation ResNet as seed 002 (pytorch_model_integration) builds them.

The seed's ``models/resnet.py`` and ``models/preact_resnet.py`` (ccq1n/pytorch_model_backbone) are
not torchvision's ResNet: the 7x7/2 stem has **no max-pool**, and ``layer1`` runs at **stride 2**
like the other three stages (its first block's 3x3 conv, or the bottleneck's 3x3, and its shortcut
are strided), so the feature maps are as torchvision's from ``layer1`` on. Every block whose stride
or width changes has a 1x1 conv shortcut: with BN in the ResNet, without BN in the pre-activation
ResNet (which also has no stem BN and no final BN: the last block's sum is pooled directly).
Bottlenecks stride their 3x3 conv (v1.5). Global average pooling and one linear layer.

The seed pools with ``avg_pool2d(x, 7)``, which is the global average at 224x224 (its only size: at
another the pooled map is not 1x1 and its linear layer does not fit); these models pool globally, so
they run at any size and equal the seed's at 224. Module names are the seed's, so its checkpoints
load unchanged (``checkpoint_filter_fn`` passes them through).

The torchvision-shaped ResNets are :mod:`imnet.zoo.torch_resnet`'s ``resnet18..152``.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from imnet.zoo.registry import ModelConfig, Published, register_model


class BasicBlock(nn.Module):
    """conv3x3 (stride) -> BN -> ReLU -> conv3x3 -> BN, plus the shortcut, -> ReLU."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _shortcut(in_planes, planes, stride, bn=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride) -> 1x1 (x4), each with BN (ReLU after the first two), shortcut, ReLU."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.shortcut = _shortcut(in_planes, planes * 4, stride, bn=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return F.relu(self.bn3(self.conv3(out)) + self.shortcut(x))


class PreActBlock(nn.Module):
    """BN -> ReLU -> conv3x3 (stride) -> BN -> ReLU -> conv3x3, plus the shortcut (a bias-free 1x1
    conv of the activated input where the shape changes, else the input)."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.shortcut = _shortcut(in_planes, planes, stride, bn=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        residual = self.shortcut(out) if len(self.shortcut) else x
        out = self.conv2(F.relu(self.bn2(self.conv1(out))))
        return out + residual


class PreActBottleneck(nn.Module):
    """BN-ReLU-conv for 1x1 -> 3x3 (stride) -> 1x1 (x4), shortcut as :class:`PreActBlock`'s."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.shortcut = _shortcut(in_planes, planes * 4, stride, bn=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        residual = self.shortcut(out) if len(self.shortcut) else x
        out = self.conv2(F.relu(self.bn2(self.conv1(out))))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + residual


def _shortcut(in_planes: int, out_planes: int, stride: int, bn: bool) -> nn.Sequential:
    """Empty (identity) when the shape is kept, else a strided 1x1 conv (+ BN)."""
    if stride == 1 and in_planes == out_planes:
        return nn.Sequential()
    layers: list[nn.Module] = [nn.Conv2d(in_planes, out_planes, 1, stride, bias=False)]
    if bn:
        layers.append(nn.BatchNorm2d(out_planes))
    return nn.Sequential(*layers)


class PmiResNet(nn.Module):
    """The seed's (pre-activation) ResNet: conv7x7/2 (+ BN + ReLU unless ``preact``), four stages of
    ``num_blocks`` blocks, **all four at stride 2** (64, 128, 256, 512 planes), global average pool,
    linear."""

    def __init__(self, block: type[nn.Module], num_blocks: list[int], num_classes: int = 1000,
                 preact: bool = False) -> None:
        super().__init__()
        self.preact = preact
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        if not preact:
            self.bn1 = nn.BatchNorm2d(64)
        in_planes = 64
        for index, (planes, blocks) in enumerate(zip((64, 128, 256, 512), num_blocks), start=1):
            layers = []
            for stride in [2] + [1] * (blocks - 1):
                layers.append(block(in_planes, planes, stride))
                in_planes = planes * block.expansion
            setattr(self, f"layer{index}", nn.Sequential(*layers))
        self.num_features = in_planes
        self.linear = nn.Linear(in_planes, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map after ``layer4``, ``(B, num_features, H/32, W/32)``."""
        x = self.conv1(x)
        if not self.preact:
            x = F.relu(self.bn1(x))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)``."""
        return self.linear(self.forward_features(x).mean((2, 3)))


def checkpoint_filter_fn(state_dict: dict, model: nn.Module) -> dict:
    """The seed's checkpoints use this module's names: passed through unchanged."""
    return state_dict


# --- variants ----------------------------------------------------------------------------------------

_SOURCE = "seed 002 (pytorch_model_integration) models/{}; own code"
_FUNCTION_NOTE = ("the seed pools with avg_pool2d(x, 7), the global average at 224x224 (its only working "
                  "size); this model pools globally at any size")
_FLOPS_NOTE = ("the seed's FLOPs/G column is its own count (close to 2 x MACs for these nets); "
               "the measured MACs are stored by the zoo table")

# depth: block kind, blocks per stage
_DEPTHS = {18: ("basic", [2, 2, 2, 2]), 34: ("basic", [3, 4, 6, 3]), 50: ("bottleneck", [3, 4, 6, 3]),
           101: ("bottleneck", [3, 4, 23, 3]), 152: ("bottleneck", [3, 8, 36, 3])}
_BLOCKS = {("basic", False): BasicBlock, ("bottleneck", False): Bottleneck,
           ("basic", True): PreActBlock, ("bottleneck", True): PreActBottleneck}

# name, depth, pre-activation, params (M, exact count / 1e6 as printed), seed FLOPs (G), top-1, top-5
_VARIANTS = [
    ("pmi_resnet18", 18, False, 11.693736, 3.65921, None, None),
    ("pmi_resnet34", 34, False, 21.801896, 7.36109, 75.81, 92.6),
    ("pmi_resnet50", 50, False, 25.557032, 8.27887, 77.15, 93.29),
    ("pmi_resnet101", 101, False, 44.54916, 15.71355, 78.25, 93.95),
    ("pmi_resnet152", 152, False, 60.192808, 23.15064, 78.57, 94.29),
    ("pmi_preactresnet18", 18, True, 11.690792, 3.65840, None, None),
    ("pmi_preactresnet34", 34, True, 21.798952, 7.36029, None, None),
    ("pmi_preactresnet50", 50, True, 25.545256, 8.27566, None, None),
    ("pmi_preactresnet101", 101, True, 44.537384, 15.71034, None, None),
    ("pmi_preactresnet152", 152, True, 60.181032, 23.14743, 78.90, 94.50),
]


def _create(depth: int, preact: bool, num_classes: int, **kwargs: Any) -> PmiResNet:
    kind, blocks = _DEPTHS[depth]
    return PmiResNet(_BLOCKS[(kind, preact)], blocks, num_classes=num_classes, preact=preact)


def _register(name: str, depth: int, preact: bool, params: float, flops: float, top1: float | None,
              top5: float | None) -> None:
    config = ModelConfig(
        name=name, family="pmi_resnet", source=_SOURCE.format("preact_resnet.py" if preact else "resnet.py"),
        first_conv="conv1", classifier="linear", checkpoint_filter=checkpoint_filter_fn,
        published=Published(params=params, params_precision=6, flops=flops, top1=top1, top5=top5,
                            num_classes=1000, macs_note=_FLOPS_NOTE, note="seed 002 (pytorch_model_integration)"),
        function_note=_FUNCTION_NOTE)

    def build(num_classes: int = 1000, **kwargs: Any) -> PmiResNet:
        return _create(depth, preact, num_classes, **kwargs)

    build.__name__ = name
    build.__doc__ = f"{'Pre-activation ' if preact else ''}ResNet-{depth} as seed 002 builds it."
    register_model(config)(build)


for _variant in _VARIANTS:
    _register(*_variant)
