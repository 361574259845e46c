"""ParC-MobileNetV2 (ParC-Net, Zhang et al. ECCV 2022) and its padding-free twin (seed 001).

No library ships ParC, so the network is written here on torchvision's MobileNetV2 blocks: in each
stage the first ``gcc`` units are MobileNetV2 inverted residuals, the rest replace the depthwise 3x3
conv by a pair of position-aware circular convolutions (ParC: half the channels with a global ``r x 1``
kernel over H, half with ``1 x r`` over W, padded circularly; the first ParC unit of a stage adds a
learned positional embedding). ``r`` equals the feature map size, so a variant is built for one
input size (32x32 CIFAR-100, 224x224 VegFru-292).

The padding-free twin swaps the stem conv for :class:`imnet.zoo.padding_free.StemBlock` and each
stride-2 depthwise conv-BN-ReLU6 for :class:`imnet.zoo.padding_free.PaddingFreeDownsample`; the
feature maps shrink by one pixel at each such step (32 -> 15 -> 7 -> 3), so the global kernels do too.

The seed's parameter counts leave out the positional embeddings (thop counts module weights only):
``positional_embedding_count(model)`` gives the difference.
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn
from torchvision.models.mobilenetv2 import InvertedResidual, _make_divisible
from torchvision.ops.misc import Conv2dNormActivation

from imnet.errors import ImnetError
from imnet.zoo.padding_free import (CIFAR100_MEAN, CIFAR100_STD, PaddingFreeDownsample, StemBlock,
                                    padding_free_conv)
from imnet.zoo.registry import ModelConfig, Published, register_model


class ParCOperator(nn.Module):
    """Position-aware circular conv along H (``axis="H"``) or W with a global kernel of ``size``."""

    def __init__(self, channels: int, axis: str, size: int, use_pe: bool) -> None:
        super().__init__()
        self.axis, self.size = axis, size
        kernel = (size, 1) if axis == "H" else (1, size)
        self.gcc_conv = nn.Conv2d(channels, channels, kernel, groups=channels)
        shape = (1, channels, size, 1) if axis == "H" else (1, channels, 1, size)
        self.pe = nn.Parameter(torch.zeros(shape)) if use_pe else None
        if self.pe is not None:
            nn.init.trunc_normal_(self.pe, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pe is not None:
            x = x + self.pe
        dim = 2 if self.axis == "H" else 3
        # Circular padding: the map followed by all but its last row (column) again.
        x = torch.cat((x, x.narrow(dim, 0, x.shape[dim] - 1)), dim=dim)
        return self.gcc_conv(x)


class ParCInvertedResidual(nn.Module):
    """1x1 expand -> [ParC-H | ParC-W] -> BN -> ReLU6 -> 1x1 project (+ skip when shapes agree)."""

    def __init__(self, in_chs: int, out_chs: int, expand_ratio: int, size: int, use_pe: bool) -> None:
        super().__init__()
        hidden = int(round(in_chs * expand_ratio))
        self.use_skip = in_chs == out_chs
        self.pw_expand = Conv2dNormActivation(in_chs, hidden, 1, activation_layer=nn.ReLU6)
        self.gcc_h = ParCOperator(hidden // 2, "H", size, use_pe)
        self.gcc_w = ParCOperator(hidden // 2, "W", size, use_pe)
        self.bn = nn.BatchNorm2d(hidden)
        self.act = nn.ReLU6()
        self.pw_linear = nn.Sequential(nn.Conv2d(hidden, out_chs, 1, bias=False), nn.BatchNorm2d(out_chs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_h, x_w = torch.chunk(self.pw_expand(x), 2, dim=1)
        y = self.act(self.bn(torch.cat((self.gcc_h(x_h), self.gcc_w(x_w)), dim=1)))
        y = self.pw_linear(y)
        return x + y if self.use_skip else y


class ParCMobileNetV2(nn.Module):
    """ParC-MobileNetV2 for ``input_size`` 32 (CIFAR strides: 1 in the stem and second stage) or 224."""

    def __init__(self, num_classes: int = 1000, input_size: int = 224, padding_free: bool = False) -> None:
        super().__init__()
        cifar = input_size == 32
        # t, c, n, s, gcc (MobileNetV2 units before the ParC units of the stage)
        setting = [[1, 16, 1, 1, 1], [6, 24, 2, 1 if cifar else 2, 2], [6, 32, 3, 2, 3],
                   [6, 64, 4, 2, 2], [6, 96, 3, 1, 2], [6, 160, 3, 2, 2], [6, 320, 1, 1, 1]]
        stem_stride = 1 if cifar else 2
        size = input_size // stem_stride
        in_chs = 32
        layers: list[nn.Module] = [
            StemBlock(3, in_chs, nn.ReLU6, stride=stem_stride) if padding_free
            else Conv2dNormActivation(3, in_chs, 3, stem_stride, activation_layer=nn.ReLU6)]
        for t, c, n, s, gcc in setting:
            out_chs = _make_divisible(c, 8)
            for i in range(n):
                stride = s if i == 0 else 1
                if stride == 2:  # padding-free: (size - 3) // 2 + 1; padded: ceil(size / 2)
                    size = (size - 3) // 2 + 1 if padding_free else (size + 1) // 2
                if i < gcc:
                    block = InvertedResidual(in_chs, out_chs, stride, t)
                    if padding_free and stride == 2:
                        _swap_depthwise(block)
                    layers.append(block)
                else:
                    layers.append(ParCInvertedResidual(in_chs, out_chs, t, size, use_pe=i == gcc))
                in_chs = out_chs
        layers.append(Conv2dNormActivation(in_chs, 1280, 1, activation_layer=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))
        self.input_size = input_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            raise ImnetError(f"ParC-MobileNetV2 is built for {self.input_size}x{self.input_size} inputs "
                             f"(its global kernels span the feature maps), got {x.shape[-2]}x{x.shape[-1]}; "
                             f"use --img-size {self.input_size} or the variant for that size")
        return self.classifier(self.features(x).mean((2, 3)))


def _swap_depthwise(block: InvertedResidual) -> None:
    for i, layer in enumerate(block.conv):
        if isinstance(layer, Conv2dNormActivation) and layer[0].stride[0] == 2:
            padding_free_conv(layer[0])
            block.conv[i] = PaddingFreeDownsample(layer)


def positional_embedding_count(model: nn.Module) -> int:
    """Number of ParC positional-embedding parameters (the part the seed's counts leave out)."""
    return sum(m.pe.numel() for m in model.modules() if isinstance(m, ParCOperator) and m.pe is not None)


_PARAMS_NOTE = ("the seed counts with thop, which leaves out the ParC positional embeddings "
                "(nn.Parameter on a non-leaf module); without them the count matches: {}")
_FLOPS_NOTE = ("the seed's FLOPs column is thop's multiply-add count (plus BN/activation terms); "
               "the measured MACs count conv/linear only")

# name, input size, padding-free, table, params (M), seed FLOPs (M), top-1, classes,
# measured params without the positional embeddings (the count the seed prints, rounded)
_VARIANTS = [
    ("parc_mobilenetv2_cifar100", 32, False, "Orig CIFAR-100 (second set)", 2.348, 91.3, 76.20, 100, 2348132),
    ("parc_mobilenetv2_cifar100_pfd", 32, True, "Ours CIFAR-100 (second set)", 2.348, 73.0, 76.60, 100, 2348292),
    ("parc_mobilenetv2_vegfru292", 224, False, "Orig VegFru-292", 2.605, 314.8, 89.1, 292, 2605028),
    ("parc_mobilenetv2_vegfru292_pfd", 224, True, "Ours VegFru-292", 2.605, 305.5, 90.0, 292, 2605188),
]


def _build(num_classes: int, input_size: int, padding_free: bool, **kwargs) -> nn.Module:
    return ParCMobileNetV2(num_classes, input_size, padding_free)


for _name, _size, _pfd, _table, _params, _flops, _top1, _classes, _no_pe in _VARIANTS:
    _published = Published(
        params=_params, params_precision=3, macs=_flops / 1000, top1=_top1, num_classes=_classes,
        params_note=_PARAMS_NOTE.format(f"{_no_pe:,} without them"),
        macs_note=_FLOPS_NOTE, note=f"seed 001, table {_table}")
    register_model(ModelConfig(
        name=_name, family="parc", source=f"seed 001 (Padding-free Downsampling), table {_table}",
        input_size=(3, _size, _size), crop_pct=1.0 if _size == 32 else 0.875,
        mean=CIFAR100_MEAN if _size == 32 else (0.485, 0.456, 0.406),
        std=CIFAR100_STD if _size == 32 else (0.229, 0.224, 0.225),
        first_conv="features.0.stem_1.0" if _pfd else "features.0.0", classifier="classifier.1", num_classes=_classes,
        published=_published))(partial(_build, input_size=_size, padding_free=_pfd))
