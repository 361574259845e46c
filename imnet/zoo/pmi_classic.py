"""The classic rows of seed 002 (pytorch_model_integration) that no library builds as printed.

Each follows the seed's file in ccq1n/pytorch_model_backbone (all counted at 1000 classes); module
names are the seed's, so its checkpoints load unchanged:

* ``pmi_vgg11/13/16/19`` (``models/vgg.py``): torchvision's VGG-BN feature stacks (configs A, B, D, E,
  biased convs) with a 7x7 average pool and a single 512 -> 1000 linear layer (no dropout), not the
  three 4096-wide fully connected layers (which hold 123.6M of torchvision's 132.9M-143.7M).
* ``pmi_resnext50/101_<C>x<d>d`` (``models/resnext.py``): torchvision's ResNet with
  ``groups=C, width_per_group=d`` (the seed's names are torchvision's).
* ``pmi_mobilenetv2`` (``models/mobilenetv2.py``): MobileNetV2 1.0 whose units always have the 1x1
  expansion (also at t=1) and a 1x1 conv + BN shortcut on stride-1 units that change width (59,808
  parameters over torchvision's), ReLU (not ReLU6).

The seed's ResNets and DenseNets are :mod:`imnet.zoo.pmi_resnet` and :mod:`imnet.zoo.pmi_densenet`.
The seed pools with ``avg_pool2d(x, 7)``, the global average at 224x224 (its only working size); these
models pool globally.
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.resnet import Bottleneck, ResNet
from torchvision.models.vgg import cfgs as vgg_cfgs
from torchvision.models.vgg import make_layers

from imnet.zoo.registry import ModelConfig, Published, register_model


class VGGGlobalPool(nn.Module):
    """VGG-BN features -> global average pool -> one linear layer (512 -> classes)."""

    def __init__(self, cfg: str, num_classes: int = 1000) -> None:
        super().__init__()
        self.features = make_layers(vgg_cfgs[cfg], batch_norm=True)
        self.classifier = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean((2, 3)))


def _resnext(layers: list[int], groups: int, width: int, num_classes: int) -> ResNet:
    return ResNet(Bottleneck, layers, num_classes=num_classes, groups=groups, width_per_group=width)


class MobileNetV2Block(nn.Module):
    """MobileNetV2 unit as the seed builds it: 1x1 expansion (even at t=1) -> BN -> ReLU, 3x3 depthwise
    -> BN -> ReLU, 1x1 -> BN; on stride-1 units a shortcut, a 1x1 conv + BN where the width changes
    (torchvision's has neither)."""

    def __init__(self, in_planes: int, out_planes: int, expansion: int, stride: int) -> None:
        super().__init__()
        planes = in_planes * expansion
        self.stride = stride
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, groups=planes, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut = nn.Sequential()
        if stride == 1 and in_planes != out_planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, out_planes, 1, bias=False), nn.BatchNorm2d(out_planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return out + self.shortcut(x) if self.stride == 1 else out


class SeedMobileNetV2(nn.Module):
    """MobileNetV2 1.0 with :class:`MobileNetV2Block` units (ImageNet strides, 1280-wide head)."""

    # t, c, n, s
    SETTING = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
               (6, 320, 1, 1)]

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        layers, in_planes = [], 32
        for t, c, n, s in self.SETTING:
            for i in range(n):
                layers.append(MobileNetV2Block(in_planes, c, t, s if i == 0 else 1))
                in_planes = c
        self.layers = nn.Sequential(*layers)
        self.conv2 = nn.Conv2d(in_planes, 1280, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(1280)
        self.linear = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        out = F.relu(self.bn2(self.conv2(out)))
        return self.linear(out.mean((2, 3)))


def checkpoint_filter_fn(state_dict: dict, model: nn.Module) -> dict:
    """The seed's checkpoints use these modules' names: passed through unchanged."""
    return state_dict


_SOURCE = "seed 002 (pytorch_model_integration) models/{}; {}"
_FLOPS_NOTE = ("the seed's FLOPs/G column is its own count (close to 2 x MACs for these nets); "
               "the measured MACs are stored by the zoo table")
_POOL_NOTE = ("the seed pools with a 7x7 average pool, the global average at 224x224 (its only working "
              "size); this model pools globally at any size")

# name, builder, seed file, body, params (M, exact count / 1e6 as printed), seed FLOPs (G), top-1, top-5
_VARIANTS = [
    ("pmi_vgg11", partial(VGGGlobalPool, "A"), "vgg.py", "torchvision VGG-BN features + GAP + 1 FC", 9.738984, 15.02879, 70.4, 89.6),
    ("pmi_vgg13", partial(VGGGlobalPool, "B"), "vgg.py", "torchvision VGG-BN features + GAP + 1 FC", 9.92388, 22.45644, 71.3, 90.1),
    ("pmi_vgg16", partial(VGGGlobalPool, "D"), "vgg.py", "torchvision VGG-BN features + GAP + 1 FC", 15.236136, 30.78787, 74.4, 91.9),
    ("pmi_vgg19", partial(VGGGlobalPool, "E"), "vgg.py", "torchvision VGG-BN features + GAP + 1 FC", 20.548392, 39.11929, 74.5, 92.0),
    ("pmi_resnext50_2x40d", partial(_resnext, [3, 4, 6, 3], 2, 40), "resnext.py", "torchvision ResNet (groups)", 25.425, 8.29756, 77.00, None),
    ("pmi_resnext50_4x24d", partial(_resnext, [3, 4, 6, 3], 4, 24), "resnext.py", "torchvision ResNet (groups)", 25.292968, 8.37150, 77.40, None),
    ("pmi_resnext50_8x14d", partial(_resnext, [3, 4, 6, 3], 8, 14), "resnext.py", "torchvision ResNet (groups)", 25.603016, 8.58994, 77.70, None),
    ("pmi_resnext101_2x40d", partial(_resnext, [3, 4, 23, 3], 2, 40), "resnext.py", "torchvision ResNet (groups)", 44.456296, 15.75783, 78.3, None),
    ("pmi_resnext101_4x24d", partial(_resnext, [3, 4, 23, 3], 4, 24), "resnext.py", "torchvision ResNet (groups)", 44.363432, 15.84712, 78.6, None),
    ("pmi_resnext101_8x14d", partial(_resnext, [3, 4, 23, 3], 8, 14), "resnext.py", "torchvision ResNet (groups)", 45.104328, 16.23445, 78.7, None),
    ("pmi_mobilenetv2", SeedMobileNetV2, "mobilenetv2.py", "own code", 3.56468, 0.66214, 74.07, None),
]

# module paths by family (default: torchvision ResNet's conv1 / fc)
_FIRST_CONV = {"vgg": "features.0", "mobilenetv": "conv1"}
_CLASSIFIER = {"vgg": "classifier", "mobilenetv": "linear"}


def _build(num_classes: int, body, **kwargs) -> nn.Module:
    return body(num_classes=num_classes)


for _name, _body, _file, _source, _params, _flops, _top1, _top5 in _VARIANTS:
    _family = _name.split("_")[1].rstrip("0123456789")
    register_model(ModelConfig(
        name=_name, family="pmi_classic", source=_SOURCE.format(_file, _source),
        first_conv=_FIRST_CONV.get(_family, "conv1"), classifier=_CLASSIFIER.get(_family, "fc"),
        checkpoint_filter=checkpoint_filter_fn, function_note=_POOL_NOTE,
        published=Published(params=_params, params_precision=6, flops=_flops, top1=_top1,
                            top5=_top5, num_classes=1000, macs_note=_FLOPS_NOTE,
                            note="seed 002 (pytorch_model_integration)"),
    ))(partial(_build, body=_body))
