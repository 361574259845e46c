"""SqueezeNext-23 (Gholami et al., CVPR 2018 workshops) as seed 002 (pytorch_model_integration) builds it.

The seed's unit is five 1x1 conv-BN-ReLU layers (``out/2, out/4, out/2, out/2, out``: its "1x3" and
"3x1" layers are built with the default 1x1 kernel, so the printed counts are those of 1x1 layers),
with a 1x1 conv-BN-ReLU shortcut on the first unit of each stage. Stem conv7x7/2 (64), max-pools
2x2 between stages, a 1x1 conv to 128, global average pool, linear. Widths (32, 64, 128, 256) for
1.0x and (64, 128, 256, 512) for 2.0x; units per stage (6, 6, 8, 1) for -23 and (2, 4, 14, 1) for -23v5.

The seed also builds the shortcut conv in every other unit, where its forward never uses it; those
parameters are in its printed counts but not in this network (``params_note`` of each variant gives
the exact difference; ``checkpoint_filter_fn`` drops their keys). ``kernel_3x3=True`` builds the
paper's 1x3 / 3x1 layers instead. Module names are the seed's (``models/squeezenext.py``).
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn

from imnet.zoo.registry import ModelConfig, Published, register_model


class ConvBnReLU(nn.Module):
    """Conv (no bias, 'same' padding) -> BN -> ReLU, as ``convs`` (the seed's ``Conv_bn_relu``)."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: tuple[int, int] = (1, 1), stride: int = 1) -> None:
        super().__init__()
        padding = (kernel_size[0] // 2, kernel_size[1] // 2)
        self.convs = nn.Sequential(nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, bias=False),
                                   nn.BatchNorm2d(out_chs), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x)


class SqNxtUnit(nn.Module):
    """Five conv-BN-ReLU layers ``in -> out/2 -> out/4 -> out/2 -> out/2 -> out`` (``layer1..5``), and
    on the first unit of a stage ``relu(layers + layer6(x))`` with a 1x1 conv-BN-ReLU ``layer6``."""

    def __init__(self, in_chs: int, out_chs: int, shortcut: bool, kernel_3x3: bool = False) -> None:
        super().__init__()
        k13, k31 = ((1, 3), (3, 1)) if kernel_3x3 else ((1, 1), (1, 1))
        self.layer1 = ConvBnReLU(in_chs, out_chs // 2)
        self.layer2 = ConvBnReLU(out_chs // 2, out_chs // 4)
        self.layer3 = ConvBnReLU(out_chs // 4, out_chs // 2, k13)
        self.layer4 = ConvBnReLU(out_chs // 2, out_chs // 2, k31)
        self.layer5 = ConvBnReLU(out_chs // 2, out_chs)
        if shortcut:
            self.layer6 = ConvBnReLU(in_chs, out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer5(self.layer4(self.layer3(self.layer2(self.layer1(x)))))
        return torch.relu(self.layer6(x) + out) if hasattr(self, "layer6") else out


class SqueezeNext(nn.Module):
    """SqueezeNext-23 with ``units`` per stage and stage ``widths``: ``conv1`` (7x7/2, 64), a 2x2
    max-pool before each stage ``layer1..4``, ``conv2`` (1x1 to 128), global average pool, linear."""

    def __init__(self, units: tuple[int, ...], widths: tuple[int, ...], num_classes: int = 1000,
                 kernel_3x3: bool = False) -> None:
        super().__init__()
        self.conv1 = ConvBnReLU(3, 64, (7, 7), 2)
        in_chs = 64
        for index, (n, width) in enumerate(zip(units, widths), start=1):
            layers = []
            for i in range(n):
                layers.append(SqNxtUnit(in_chs, width, shortcut=i == 0, kernel_3x3=kernel_3x3))
                in_chs = width
            setattr(self, f"layer{index}", nn.Sequential(*layers))
        self.stages = len(units)
        self.conv2 = ConvBnReLU(in_chs, 128)
        self.maxpool = nn.MaxPool2d(2, 2)
        self.linear = nn.Linear(128, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        for index in range(1, self.stages + 1):
            x = getattr(self, f"layer{index}")(self.maxpool(x))
        return self.conv2(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.forward_features(x).mean((2, 3)))


def checkpoint_filter_fn(state_dict: dict, model: nn.Module) -> dict:
    """The seed's checkpoints use this module's names; the shortcut layers (``layer6``) it builds in
    units that never use them are dropped."""
    own = model.state_dict()
    return {k: v for k, v in state_dict.items() if k in own or ".layer6." not in k}


def unused_shortcut_params(units: tuple[int, ...], widths: tuple[int, ...]) -> int:
    """Parameters of the shortcut convs the seed builds but never uses (units after the first)."""
    return sum((n - 1) * (w * w + 2 * w) for n, w in zip(units, widths))


_NOTE = "seed 002 (pytorch_model_integration)"
_MACS_NOTE = "the seed's FLOPs/G column is its own count; measured MACs are the zoo table's"
_PARAMS_NOTE = ("the seed's count includes the 1x1 shortcut conv + BN it builds in every unit but uses "
                "in the first of each stage only ({:,} unused parameters); this network leaves them out")

# name, units, widths, params (M), seed FLOPs (G), top-1, top-5
_VARIANTS = [
    ("pmi_sqnxt23_w1", (6, 6, 8, 1), (32, 64, 128, 256), 0.690824, 0.48130, 59.05, 82.60),
    ("pmi_sqnxt23v5_w1", (2, 4, 14, 1), (32, 64, 128, 256), 0.909704, 0.47743, 59.24, 82.41),
    ("pmi_sqnxt23_w2", (6, 6, 8, 1), (64, 128, 256, 512), 2.2474, 1.12928, 67.18, 88.17),
    ("pmi_sqnxt23v5_w2", (2, 4, 14, 1), (64, 128, 256, 512), 3.11524, 1.12155, 67.44, 88.20),
]


def _build(num_classes: int, units: tuple[int, ...], widths: tuple[int, ...], **kwargs) -> nn.Module:
    return SqueezeNext(units, widths, num_classes, **kwargs)


for _name, _units, _widths, _params, _flops, _top1, _top5 in _VARIANTS:
    register_model(ModelConfig(
        name=_name, family="squeezenext", source=_NOTE + " models/squeezenext.py; own code",
        first_conv="conv1.convs.0", classifier="linear", checkpoint_filter=checkpoint_filter_fn,
        function_note="the seed pools with a 7x7 average pool, the global average at 224x224 (its only "
                      "working size); this model pools globally at any size",
        published=Published(params=_params, params_precision=6, flops=_flops, top1=_top1, top5=_top5,
                            num_classes=1000, macs_note=_MACS_NOTE, note=_NOTE,
                            params_note=_PARAMS_NOTE.format(unused_shortcut_params(_units, _widths))),
    ))(partial(_build, units=_units, widths=_widths))
