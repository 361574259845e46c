"""SqueezeNet 1.0 with BatchNorm, plain and with the simple and complex bypasses (Iandola et al.,
ICLR 2017, section 6), as seed 002 (pytorch_model_integration) builds them (``models/squeezenet.py``).

Every conv is bias-free and followed by BN + ReLU (torchvision's SqueezeNet has biases and no BN);
the stem is conv7x7/2 (padding 2) with 96 filters, the classifier a 1x1 conv to the classes (+ BN +
ReLU) and a global average pool (the seed's 13x13 average pool at 224x224). Fire modules: 1x1 squeeze
-> [1x1 expand | 3x3 expand] concatenated (then a ReLU, a no-op the seed has). Simple bypass:
``relu(fire(x) + x)`` around fire 3, 5, 7 and 9 (no parameters). Complex bypass: also
``relu(fire(x) + conv_bn_relu(x))`` around fire 2, 4, 6 and 8, where the width changes: the shortcut
is a 1x1 conv + BN + **ReLU**. Module names are the seed's, so its checkpoints load unchanged.
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

from imnet.zoo.registry import ModelConfig, Published, register_model


class ConvBnReLU(nn.Module):
    """Conv (no bias) -> BN -> ReLU (the seed's ``Conv_bn_relu``: ``conv``, ``bn``, ``relu``)."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 1, stride: int = 1, padding: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_chs)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class Fire(nn.Module):
    """1x1 squeeze (``layer1``) -> [1x1 expand (``layer2``) | 3x3 expand (``layer3``)] concatenated."""

    def __init__(self, in_chs: int, squeeze_chs: int, expand_chs: int) -> None:
        super().__init__()
        self.layer1 = ConvBnReLU(in_chs, squeeze_chs)
        self.layer2 = ConvBnReLU(squeeze_chs, expand_chs)
        self.layer3 = ConvBnReLU(squeeze_chs, expand_chs, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer1(x)
        return F.relu(torch.cat([self.layer2(x), self.layer3(x)], 1))


# fire index: in, squeeze, expand (per branch)
_FIRES = {2: (96, 16, 64), 3: (128, 16, 64), 4: (128, 32, 128), 5: (256, 32, 128), 6: (256, 48, 192),
          7: (384, 48, 192), 8: (384, 64, 256), 9: (512, 64, 256)}
_POOL_AFTER = (4, 8)  # a 3x3/2 max-pool follows fire 4 and fire 8 (and the stem)


class SqueezeNetBN(nn.Module):
    """SqueezeNet 1.0 with BN; ``bypass`` is ``"none"``, ``"simple"`` or ``"complex"``."""

    def __init__(self, num_classes: int = 1000, bypass: str = "none") -> None:
        super().__init__()
        if bypass not in ("none", "simple", "complex"):
            raise ValueError(f"bypass must be none, simple or complex, not {bypass!r}")
        self.bypass = bypass
        self.conv1 = ConvBnReLU(3, 96, 7, 2, 2)
        self.maxpool = nn.MaxPool2d(3, 2)
        for index, (in_chs, squeeze, expand) in _FIRES.items():
            setattr(self, f"fire{index}", Fire(in_chs, squeeze, expand))
            if bypass == "complex" and in_chs != 2 * expand:
                setattr(self, f"conv_fire{index}", ConvBnReLU(in_chs, 2 * expand))
        self.conv2 = ConvBnReLU(512, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        for index, (in_chs, _, expand) in _FIRES.items():
            shortcut = None
            if in_chs == 2 * expand and self.bypass != "none":
                shortcut = x
            elif hasattr(self, f"conv_fire{index}"):  # run before the fire module, as the seed does
                shortcut = getattr(self, f"conv_fire{index}")(x)
            out = getattr(self, f"fire{index}")(x)
            if shortcut is not None:
                out = F.relu(out + shortcut)
            x = self.maxpool(out) if index in _POOL_AFTER else out
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.forward_features(x)).mean((2, 3))


def checkpoint_filter_fn(state_dict: dict, model: nn.Module) -> dict:
    """The seed's checkpoints use this module's names: passed through unchanged."""
    return state_dict


_NOTE = "seed 002 (pytorch_model_integration)"
_MACS_NOTE = "the seed's FLOPs/G column is its own count; measured MACs are the zoo table's"
_POOL_NOTE = ("the seed pools with a 13x13 average pool, the global average at 224x224 (its only working "
              "size); this model pools globally at any size")

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
        name=_name, family="squeezenet_bypass", source=_NOTE + " models/squeezenet.py; own code",
        first_conv="conv1.conv", classifier="conv2.conv", checkpoint_filter=checkpoint_filter_fn,
        function_note=_POOL_NOTE,
        published=Published(params=_params, params_precision=6, flops=_flops, top1=_top1, top5=_top5,
                            num_classes=1000, macs_note=_MACS_NOTE, note=_NOTE),
    ))(partial(_build, bypass=_bypass))
