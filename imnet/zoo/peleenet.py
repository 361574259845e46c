"""PeleeNet (Wang et al., NeurIPS 2018) as seed 002 (pytorch_model_integration) builds it.

A DenseNet for mobile devices: a stem block (conv3x3/2, then [1x1 -> 3x3/2 | max-pool 2x2]
concatenated and fused by a 1x1 conv), four stages of two-way dense layers (one 3x3 path, one double
3x3 path, each adding half the growth rate) closed by a 1x1 transition without compression (average
pool 2x2 after the first three), global average pool and one linear layer.

The seed builds it with 224 initial features (the paper uses 32): that is what gives its 4.51988M
parameters (the paper's PeleeNet has 2.8M); ``num_init_features`` keeps both reachable.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from imnet.zoo.registry import ModelConfig, Published, register_model


def conv_bn_relu(in_chs: int, out_chs: int, kernel_size: int = 3, stride: int = 1) -> nn.Sequential:
    """Conv (no bias, 'same' padding) -> BN -> ReLU."""
    return nn.Sequential(nn.Conv2d(in_chs, out_chs, kernel_size, stride, (kernel_size - 1) // 2, bias=False),
                         nn.BatchNorm2d(out_chs), nn.ReLU(inplace=True))


class PeleeStem(nn.Module):
    """conv3x3/2 -> [1x1 -> 3x3/2 | max-pool 2x2/2] -> concat -> 1x1: (B, 3, H, W) -> (B, C, H/4, W/4)."""

    def __init__(self, out_chs: int) -> None:
        super().__init__()
        self.stem_1 = conv_bn_relu(3, out_chs, 3, 2)
        self.stem_2a = conv_bn_relu(out_chs, out_chs // 2, 1)
        self.stem_2b = conv_bn_relu(out_chs // 2, out_chs, 3, 2)
        self.stem_2p = nn.MaxPool2d(2, 2)
        self.stem_3 = conv_bn_relu(out_chs * 2, out_chs, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_1(x)
        return self.stem_3(torch.cat((self.stem_2b(self.stem_2a(x)), self.stem_2p(x)), dim=1))


class TwoWayDenseLayer(nn.Module):
    """x -> concat(x, 1x1 -> 3x3, 1x1 -> 3x3 -> 3x3): adds ``2 * half_growth`` channels."""

    def __init__(self, in_chs: int, inter_chs: int, half_growth: int) -> None:
        super().__init__()
        self.branch1 = nn.Sequential(conv_bn_relu(in_chs, inter_chs, 1), conv_bn_relu(inter_chs, half_growth))
        self.branch2 = nn.Sequential(conv_bn_relu(in_chs, inter_chs, 1), conv_bn_relu(inter_chs, half_growth),
                                     conv_bn_relu(half_growth, half_growth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((x, self.branch1(x), self.branch2(x)), dim=1)


class PeleeNet(nn.Module):
    """PeleeNet: dense layers per stage ``(3, 4, 8, 6)``, bottleneck widths ``(1, 2, 4, 4)``."""

    def __init__(self, num_classes: int = 1000, num_init_features: int = 224, growth_rate: int = 32,
                 dense_layers: tuple[int, ...] = (3, 4, 8, 6), bottleneck_width: tuple[int, ...] = (1, 2, 4, 4)) -> None:
        super().__init__()
        half_growth = growth_rate // 2
        stages: list[nn.Module] = [PeleeStem(num_init_features)]
        in_chs = total = num_init_features
        for i, (n, width) in enumerate(zip(dense_layers, bottleneck_width)):
            inter_chs = int(half_growth * width / 4) * 4
            total += growth_rate * n
            layers: list[nn.Module] = []
            for _ in range(n):
                layers.append(TwoWayDenseLayer(in_chs, inter_chs, half_growth))
                in_chs += 2 * half_growth
            layers.append(conv_bn_relu(in_chs, total, 1))  # transition without compression
            if i < len(dense_layers) - 1:
                layers.append(nn.AvgPool2d(2, 2))
            stages.append(nn.Sequential(*layers))
            in_chs = total
        self.features = nn.Sequential(*stages)
        self.classifier = nn.Linear(total, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean((2, 3)))


_NOTE = "seed 002 (pytorch_model_integration)"


@register_model(ModelConfig(
    name="pmi_peleenet", family="peleenet", source=_NOTE + "; own code", first_conv="features.0.stem_1.0",
    classifier="classifier",
    published=Published(params=4.51988, params_precision=6, flops=4.96656, top1=72.6, top5=90.6, num_classes=1000,
                        macs_note="the seed's FLOPs/G column is its own count; measured MACs are the zoo table's",
                        note=_NOTE)))
def pmi_peleenet(num_classes: int = 1000, **kwargs) -> nn.Module:
    """PeleeNet as seed 002 counts it (224 initial features)."""
    return PeleeNet(num_classes, **kwargs)
