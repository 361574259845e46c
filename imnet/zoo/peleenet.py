"""PeleeNet (Wang et al., NeurIPS 2018) as seed 002 (pytorch_model_integration) builds it.

A DenseNet for mobile devices: a stem block (conv3x3/2, then [1x1 -> 3x3/2 | max-pool 2x2]
concatenated and fused by a 1x1 conv), four stages of two-way dense layers (one 3x3 path, one double
3x3 path, each adding half the growth rate) closed by a 1x1 transition without compression (average
pool 2x2 after the first three), global average pool and one linear layer.

The seed (``models/peleenet.py``) builds it with 224 initial features (the paper uses 32): that is what
gives its 4.51988M parameters (the paper's PeleeNet has 2.8M); ``num_init_features`` keeps both
reachable. The seed's ``forward`` returns ``log_softmax`` of the logits; this model returns the logits
(``log_softmax`` of them is the seed's output). Module names are the seed's.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from imnet.zoo.registry import ModelConfig, Published, register_model


class ConvBnReLU(nn.Module):
    """Conv (no bias, 'same' padding) -> BN -> ReLU, as ``convs`` (the seed's ``Conv_bn_relu``)."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(in_chs, out_chs, kernel_size, stride, (kernel_size - 1) // 2, bias=False),
            nn.BatchNorm2d(out_chs), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x)


class StemBlock(nn.Module):
    """conv3x3/2 -> [1x1 -> 3x3/2 | max-pool 2x2/2] -> concat -> 1x1: (B, 3, H, W) -> (B, C, H/4, W/4)."""

    def __init__(self, out_chs: int) -> None:
        super().__init__()
        self.stem_1 = ConvBnReLU(3, out_chs, 3, 2)
        self.stem_2a = ConvBnReLU(out_chs, out_chs // 2, 1)
        self.stem_2b = ConvBnReLU(out_chs // 2, out_chs, 3, 2)
        self.stem_2p = nn.MaxPool2d(2, 2)
        self.stem_3 = ConvBnReLU(out_chs * 2, out_chs, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_1(x)
        return self.stem_3(torch.cat((self.stem_2b(self.stem_2a(x)), self.stem_2p(x)), dim=1))


class DenseBlock(nn.Module):
    """Two-way dense layer: x -> concat(x, 1x1 -> 3x3, 1x1 -> 3x3 -> 3x3), adding ``2 * half_growth``."""

    def __init__(self, in_chs: int, inter_chs: int, half_growth: int) -> None:
        super().__init__()
        self.cb1_a = ConvBnReLU(in_chs, inter_chs, 1)
        self.cb1_b = ConvBnReLU(inter_chs, half_growth)
        self.cb2_a = ConvBnReLU(in_chs, inter_chs, 1)
        self.cb2_b = ConvBnReLU(inter_chs, half_growth)
        self.cb2_c = ConvBnReLU(half_growth, half_growth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((x, self.cb1_b(self.cb1_a(x)), self.cb2_c(self.cb2_b(self.cb2_a(x)))), dim=1)


class TransitionBlock(nn.Module):
    """1x1 conv-BN-ReLU without compression, then (``with_pooling``) a 2x2 average pool."""

    def __init__(self, in_chs: int, out_chs: int, with_pooling: bool = True) -> None:
        super().__init__()
        self.tb = nn.Sequential(ConvBnReLU(in_chs, out_chs, 1), nn.AvgPool2d(2, 2)) if with_pooling \
            else ConvBnReLU(in_chs, out_chs, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tb(x)


class PeleeNet(nn.Module):
    """PeleeNet: dense layers per stage ``(3, 4, 8, 6)``, bottleneck widths ``(1, 2, 4, 4)``; returns
    logits (the seed's returns their ``log_softmax``)."""

    def __init__(self, num_classes: int = 1000, num_init_features: int = 224, growth_rate: int = 32,
                 dense_layers: tuple[int, ...] = (3, 4, 8, 6), bottleneck_width: tuple[int, ...] = (1, 2, 4, 4)) -> None:
        super().__init__()
        half_growth = growth_rate // 2
        self.stage = nn.Sequential()
        self.stage.add_module("stage_0", StemBlock(num_init_features))
        in_chs = total = num_init_features
        for i, (n, width) in enumerate(zip(dense_layers, bottleneck_width)):
            inter_chs = int(half_growth * width / 4) * 4
            total += growth_rate * n
            layers: list[nn.Module] = []
            for _ in range(n):
                layers.append(DenseBlock(in_chs, inter_chs, half_growth))
                in_chs += 2 * half_growth
            layers.append(TransitionBlock(in_chs, total, with_pooling=i < len(dense_layers) - 1))
            self.stage.add_module(f"stage_{i + 1}", nn.Sequential(*layers))
            in_chs = total
        self.num_features = total
        self.linear = nn.Linear(total, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.forward_features(x).mean((2, 3)))


def checkpoint_filter_fn(state_dict: dict, model: nn.Module) -> dict:
    """The seed's checkpoints use this module's names: passed through unchanged."""
    return state_dict


_NOTE = "seed 002 (pytorch_model_integration)"


@register_model(ModelConfig(
    name="pmi_peleenet", family="peleenet", source=_NOTE + " models/peleenet.py; own code",
    first_conv="stage.stage_0.stem_1.convs.0", classifier="linear", checkpoint_filter=checkpoint_filter_fn,
    function_note="the seed's forward() returns log_softmax of the logits; this model returns the logits "
                  "(as every zoo classifier), and pools globally where the seed's 7x7 average pool is the "
                  "global average at 224x224",
    published=Published(params=4.51988, params_precision=6, flops=4.96656, top1=72.6, top5=90.6, num_classes=1000,
                        macs_note="the seed's FLOPs/G column is its own count; measured MACs are the zoo table's",
                        note=_NOTE)))
def pmi_peleenet(num_classes: int = 1000, **kwargs) -> nn.Module:
    """PeleeNet as seed 002 counts it (224 initial features)."""
    return PeleeNet(num_classes, **kwargs)
