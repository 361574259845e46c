"""GoogLeNet V1 and V2 as seed 002 (pytorch_model_integration) builds them.

The seed's Inception-V1 differs from torchvision's ``googlenet``: its convolutions carry biases, the
third branch is a true 5x5 conv (torchvision uses 3x3 there), there are no auxiliary heads, and the
BN variant puts a BatchNorm after every conv. 7x7/2 stem, 1x1 and 3x3 convs, 3x3/2 max-pools
(padding 1) between stages, 7x7 average pool, one linear layer. The seed's ``GoogleNetV1`` builds a
LocalResponseNorm (size 5) but has its two calls, after the two stem pools, commented out: that code is
``pmi_googlenet_v1``; the LRN variant (the table's "GoogleNet V1 (LRN)" row, same count: LRN has no
parameters) applies it there. Module names are the seed's (``models/googlenet_v1.py``, ``_v2.py``).

V2 (BN-Inception, Ioffe & Szegedy 2015) in the seed's form: the V1 stem with BN, inception units whose
"5x5" branch is two 3x3 convs and whose pool branch averages, and two stride-2 reduction units (3a-c,
4a-e, 5a-b); every conv has a bias and a BatchNorm.
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn

from imnet.zoo.registry import ModelConfig, Published, register_model


def branch(convs: list[tuple[int, int, int, int]], bn: bool, pool: nn.Module | None = None) -> nn.Sequential:
    """One flat branch, as the seed writes it: [pool], then per ``(in, out, kernel, stride)`` a conv
    (with bias, 'same' padding) -> [BN] -> ReLU."""
    layers: list[nn.Module] = [pool] if pool is not None else []
    for in_chs, out_chs, kernel_size, stride in convs:
        layers.append(nn.Conv2d(in_chs, out_chs, kernel_size, stride, (kernel_size - 1) // 2))
        if bn:
            layers.append(nn.BatchNorm2d(out_chs))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class Inception(nn.Module):
    """Four branches concatenated: 1x1 | 1x1 -> 3x3 | 1x1 -> 5x5 | max-pool 3x3 -> 1x1."""

    def __init__(self, in_chs: int, n1x1: int, n3x3red: int, n3x3: int, n5x5red: int, n5x5: int,
                 pool_proj: int, bn: bool) -> None:
        super().__init__()
        self.b1 = branch([(in_chs, n1x1, 1, 1)], bn)
        self.b2 = branch([(in_chs, n3x3red, 1, 1), (n3x3red, n3x3, 3, 1)], bn)
        self.b3 = branch([(in_chs, n5x5red, 1, 1), (n5x5red, n5x5, 5, 1)], bn)
        self.b4 = branch([(in_chs, pool_proj, 1, 1)], bn, nn.MaxPool2d(3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)


# name: in, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj; a 3x3/2 max-pool follows b3 and e4
_INCEPTIONS = {
    "a3": (192, 64, 96, 128, 16, 32, 32), "b3": (256, 128, 128, 192, 32, 96, 64),
    "a4": (480, 192, 96, 208, 16, 48, 64), "b4": (512, 160, 112, 224, 24, 64, 64), "c4": (512, 128, 128, 256, 24, 64, 64),
    "d4": (512, 112, 144, 288, 32, 64, 64), "e4": (528, 256, 160, 320, 32, 128, 128),
    "a5": (832, 256, 160, 320, 32, 128, 128), "b5": (832, 384, 192, 384, 48, 128, 128),
}


class GoogLeNetV1(nn.Module):
    """Inception-V1 for 224x224 inputs; ``bn`` adds BatchNorm after each conv (``GoogleNetV1_Bn``),
    ``lrn`` applies the stem's LocalResponseNorm after each of the two stem pools."""

    def __init__(self, num_classes: int = 1000, bn: bool = False, lrn: bool = False) -> None:
        super().__init__()
        self.pre_layers_1 = branch([(3, 64, 7, 2)], bn)
        self.lrn = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0) if lrn else nn.Identity()
        self.pre_layers_2 = branch([(64, 64, 1, 1), (64, 192, 3, 1)], bn)
        for name, cfg in _INCEPTIONS.items():
            setattr(self, name, Inception(*cfg, bn=bn))
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.linear = nn.Linear(1024, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lrn(self.maxpool(self.pre_layers_1(x)))
        x = self.lrn(self.maxpool(self.pre_layers_2(x)))
        for name in _INCEPTIONS:
            x = getattr(self, name)(x)
            if name in ("b3", "e4"):
                x = self.maxpool(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.forward_features(x).mean((2, 3)))


class InceptionV2(nn.Module):
    """BN-Inception unit: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 -> 3x3 | avg-pool 3x3 -> 1x1, concatenated."""

    def __init__(self, in_chs: int, n1x1: int, n3x3red: int, n3x3: int, d3x3red: int, d3x3: int,
                 pool_proj: int) -> None:
        super().__init__()
        self.b1 = branch([(in_chs, n1x1, 1, 1)], True)
        self.b2 = branch([(in_chs, n3x3red, 1, 1), (n3x3red, n3x3, 3, 1)], True)
        self.b3 = branch([(in_chs, d3x3red, 1, 1), (d3x3red, d3x3, 3, 1), (d3x3, d3x3, 3, 1)], True)
        self.b4 = branch([(in_chs, pool_proj, 1, 1)], True, nn.AvgPool2d(3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)


class InceptionV2Reduction(nn.Module):
    """Stride-2 BN-Inception unit: 1x1 -> 3x3/2 | 1x1 -> 3x3 -> 3x3/2 | max-pool 3x3/2, concatenated."""

    def __init__(self, in_chs: int, n3x3red: int, n3x3: int, d3x3red: int, d3x3: int) -> None:
        super().__init__()
        self.b1 = branch([(in_chs, n3x3red, 1, 1), (n3x3red, n3x3, 3, 2)], True)
        self.b2 = branch([(in_chs, d3x3red, 1, 1), (d3x3red, d3x3, 3, 1), (d3x3, d3x3, 3, 2)], True)
        self.b3 = nn.MaxPool2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b2(x), self.b3(x)], 1)


# name: in, 1x1, 3x3 reduce, 3x3, double-3x3 reduce, double-3x3, pool proj; 5-tuples are reductions
_INCEPTIONS_V2 = {
    "a3": (192, 64, 64, 64, 64, 96, 32), "b3": (256, 64, 64, 96, 64, 96, 64), "c3": (320, 128, 160, 64, 96),
    "a4": (576, 224, 64, 96, 96, 128, 128), "b4": (576, 192, 96, 128, 96, 128, 128),
    "c4": (576, 160, 128, 160, 128, 160, 96), "d4": (576, 96, 128, 192, 160, 192, 96), "e4": (576, 128, 192, 192, 256),
    "a5": (1024, 352, 192, 320, 160, 224, 128), "b5": (1024, 352, 192, 320, 192, 224, 128),
}


class GoogLeNetV2(nn.Module):
    """BN-Inception for 224x224 inputs, as the seed builds it."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.pre_layers_1 = branch([(3, 64, 7, 2)], True)
        self.pre_layers_2 = branch([(64, 64, 1, 1), (64, 192, 3, 1)], True)
        for name, cfg in _INCEPTIONS_V2.items():
            setattr(self, name, InceptionV2Reduction(*cfg) if len(cfg) == 5 else InceptionV2(*cfg))
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.linear = nn.Linear(1024, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.pre_layers_2(self.maxpool(self.pre_layers_1(x))))
        for name in _INCEPTIONS_V2:
            x = getattr(self, name)(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.forward_features(x).mean((2, 3)))


def checkpoint_filter_fn(state_dict: dict, model: nn.Module) -> dict:
    """The seed's checkpoints use these modules' names: passed through unchanged."""
    return state_dict


_NOTE = "seed 002 (pytorch_model_integration), GoogleNet Inception V1-V4 table"
_MACS_NOTE = "the seed's FLOPs/G column is its own count; measured MACs are the zoo table's"
_POOL_NOTE = ("the seed pools with a 7x7 average pool, the global average at 224x224 (its only working "
              "size); this model pools globally at any size")
_LRN_NOTE = ("the seed's GoogleNetV1 builds the LRN but its two calls are commented out, so its code computes "
             "pmi_googlenet_v1; this model (the table's 'GoogleNet V1 (LRN)' row) applies the LRN where those "
             "lines are, after each stem pool. " + _POOL_NOTE)

# name, bn, lrn, params (M), seed FLOPs (G), top-1, top-5
_VARIANTS = [
    ("pmi_googlenet_v1", False, False, 6.998552, 3.20387, None, None),
    ("pmi_googlenet_v1_lrn", False, True, 6.998552, 3.20387, 71.00, 90.80),
    ("pmi_googlenet_v1_bn", True, False, 7.013112, 3.21032, 73.20, None),
]


def _build(num_classes: int, bn: bool, lrn: bool, **kwargs) -> nn.Module:
    return GoogLeNetV1(num_classes, bn=bn, lrn=lrn)


@register_model(ModelConfig(
    name="pmi_googlenet_v2", family="googlenet_natives", source=_NOTE + "; models/googlenet_v2.py; own code",
    first_conv="pre_layers_1.0", classifier="linear", checkpoint_filter=checkpoint_filter_fn,
    function_note=_POOL_NOTE,
    published=Published(params=11.204936, params_precision=6, flops=4.08437, top1=76.60, num_classes=1000,
                        macs_note=_MACS_NOTE, note=_NOTE)))
def pmi_googlenet_v2(num_classes: int = 1000, **kwargs) -> nn.Module:
    """GoogLeNet V2 (BN-Inception) of seed 002."""
    return GoogLeNetV2(num_classes)


for _name, _bn, _lrn, _params, _flops, _top1, _top5 in _VARIANTS:
    register_model(ModelConfig(
        name=_name, family="googlenet_natives", source=_NOTE + "; models/googlenet_v1.py; own code",
        first_conv="pre_layers_1.0", classifier="linear", checkpoint_filter=checkpoint_filter_fn,
        function_note=_LRN_NOTE if _lrn else _POOL_NOTE,
        published=Published(params=_params, params_precision=6, flops=_flops, top1=_top1, top5=_top5,
                            num_classes=1000, macs_note=_MACS_NOTE, note=_NOTE),
    ))(partial(_build, bn=_bn, lrn=_lrn))
