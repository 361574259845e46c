"""SqueezeNet 1.0 with BatchNorm, plain and with the simple and complex bypasses (Iandola et al.,
ICLR 2017, section 6), as seed 002 (pytorch_model_integration) builds them.

Every conv is bias-free and followed by BN + ReLU (torchvision's SqueezeNet has biases and no BN);
the stem is conv7x7/2 (padding 2) with 96 filters, the classifier a 1x1 conv to the classes (+ BN +
ReLU) and a global average pool. Simple bypass: identity shortcuts around fire 3, 5, 7 and 9 (no
parameters). Complex bypass: also 1x1 conv + BN shortcuts around fire 2, 4, 6 and 8, where the width
changes.
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn

from imnet.zoo.registry import ModelConfig, Published, register_model


def conv_bn_relu(in_chs: int, out_chs: int, kernel_size: int = 1, stride: int = 1, padding: int = 0) -> nn.Sequential:
    """Conv (no bias) -> BN -> ReLU."""
    return nn.Sequential(nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, bias=False),
                         nn.BatchNorm2d(out_chs), nn.ReLU(inplace=True))


class Fire(nn.Module):
    """1x1 squeeze -> [1x1 expand | 3x3 expand] concatenated: ``in_chs -> 2 * expand_chs``."""

    def __init__(self, in_chs: int, squeeze_chs: int, expand_chs: int) -> None:
        super().__init__()
        self.squeeze = conv_bn_relu(in_chs, squeeze_chs)
        self.expand1x1 = conv_bn_relu(squeeze_chs, expand_chs)
        self.expand3x3 = conv_bn_relu(squeeze_chs, expand_chs, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze(x)
        return torch.cat((self.expand1x1(x), self.expand3x3(x)), dim=1)


# in, squeeze, expand (per branch); "M" = max-pool 3x3/2
_FIRES = [(96, 16, 64), (128, 16, 64), (128, 32, 128), "M", (256, 32, 128), (256, 48, 192), (384, 48, 192),
          (384, 64, 256), "M", (512, 64, 256)]


class BypassFire(nn.Module):
    """A fire module with an optional shortcut: identity (same width) or 1x1 conv + BN (``project``)."""

    def __init__(self, in_chs: int, squeeze_chs: int, expand_chs: int, bypass: str) -> None:
        super().__init__()
        self.fire = Fire(in_chs, squeeze_chs, expand_chs)
        out_chs = 2 * expand_chs
        self.shortcut: nn.Module | None = None
        if bypass in ("simple", "complex") and in_chs == out_chs:
            self.shortcut = nn.Identity()
        elif bypass == "complex":
            self.shortcut = nn.Sequential(nn.Conv2d(in_chs, out_chs, 1, bias=False), nn.BatchNorm2d(out_chs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fire(x)
        return torch.relu(out + self.shortcut(x)) if self.shortcut is not None else out


class SqueezeNetBN(nn.Module):
    """SqueezeNet 1.0 with BN; ``bypass`` is ``"none"``, ``"simple"`` or ``"complex"``."""

    def __init__(self, num_classes: int = 1000, bypass: str = "none") -> None:
        super().__init__()
        if bypass not in ("none", "simple", "complex"):
            raise ValueError(f"bypass must be none, simple or complex, not {bypass!r}")
        layers: list[nn.Module] = [conv_bn_relu(3, 96, 7, 2, 2), nn.MaxPool2d(3, 2)]
        for cfg in _FIRES:
            layers.append(nn.MaxPool2d(3, 2) if cfg == "M" else BypassFire(*cfg, bypass=bypass))
        self.features = nn.Sequential(*layers)
        self.classifier = conv_bn_relu(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x)).mean((2, 3))


_NOTE = "seed 002 (pytorch_model_integration)"
_MACS_NOTE = "the seed's FLOPs/G column is its own count; measured MACs are the zoo table's"

# name, bypass, params (M), seed FLOPs (G), top-1, top-5
_VARIANTS = [
    ("pmi_squeezenet", "none", 1.2524, 1.69362, 57.50, 80.30),
    ("pmi_squeezenet_simple_bypass", "simple", 1.2524, 1.69550, 60.40, 82.50),
    ("pmi_squeezenet_complex_bypass", "complex", 1.594928, 2.40896, 58.80, 82.00),
]


def _build(num_classes: int, bypass: str, **kwargs) -> nn.Module:
    return SqueezeNetBN(num_classes, bypass)


for _name, _bypass, _params, _flops, _top1, _top5 in _VARIANTS:
    register_model(ModelConfig(
        name=_name, family="squeezenet_bypass", source=_NOTE + "; own code", first_conv="features.0.0",
        classifier="classifier.0",
        published=Published(params=_params, params_precision=6, flops=_flops, top1=_top1, top5=_top5,
                            num_classes=1000, macs_note=_MACS_NOTE, note=_NOTE),
    ))(partial(_build, bypass=_bypass))
