"""DarkNet classifiers of seed 002 (pytorch_model_integration): DarkNet-19 (YOLOv2) and DarkNet-53 (YOLOv3).

DarkNet-19 (Redmon & Farhadi 2017): conv3x3 32, then five stages of alternating 3x3 (2C) and 1x1 (C)
conv-BN-ReLU layers (1, 3, 3, 5, 5 layers; widths 64 ... 1024) separated by 2x2 max-pools, global
average pool and a linear layer. The seed builds each stage from two module objects that it appends
again and again, so within a stage every 3x3 layer shares one set of weights and every 1x1 layer
another: that weight-tied network is what its 8.01556M counts (``tied=True``, ``pmi_darknet19``);
the paper's untied DarkNet-19 has 20.8M (``darknet19``). The seed also builds a 1x1 layer in the
first stage, which has a single layer and never uses it (2,112 parameters in its count, not here).

DarkNet-53 is timm's ``darknet53`` (the seed's count, 41,609,928, exactly).
"""
from __future__ import annotations

import timm
import torch
import torch.nn as nn

from imnet.zoo.registry import ModelConfig, Published, register_model


def conv_bn_relu(in_chs: int, out_chs: int, kernel_size: int) -> nn.Sequential:
    """Conv (no bias, 'same' padding) -> BN -> ReLU."""
    return nn.Sequential(nn.Conv2d(in_chs, out_chs, kernel_size, 1, kernel_size // 2, bias=False),
                         nn.BatchNorm2d(out_chs), nn.ReLU(inplace=True))


def darknet19_stage(width: int, layers: int, tied: bool) -> nn.Sequential:
    """``layers`` alternating 3x3 (``width//2 -> width``) and 1x1 (``width -> width//2``) conv-BN-ReLU.
    With ``tied`` the 3x3 layers are one module repeated, and so are the 1x1 layers."""
    if tied:
        conv3, conv1 = conv_bn_relu(width // 2, width, 3), conv_bn_relu(width, width // 2, 1)
        return nn.Sequential(*[conv3 if i % 2 == 0 else conv1 for i in range(layers)])
    return nn.Sequential(*[conv_bn_relu(width // 2, width, 3) if i % 2 == 0 else conv_bn_relu(width, width // 2, 1)
                           for i in range(layers)])


class DarkNet19(nn.Module):
    """DarkNet-19 classifier; ``tied=True`` is the seed's weight-tied form."""

    # stage width, layers
    STAGES = [(64, 1), (128, 3), (256, 3), (512, 5), (1024, 5)]

    def __init__(self, num_classes: int = 1000, tied: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn_relu(3, 32, 3)]
        for width, n in self.STAGES:
            layers += [nn.MaxPool2d(2, 2), darknet19_stage(width, n, tied)]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean((2, 3)))


_NOTE = "seed 002 (pytorch_model_integration)"
_MACS_NOTE = "the seed's FLOPs/G column is its own count; measured MACs are the zoo table's"


@register_model(ModelConfig(
    name="pmi_darknet19", family="darknet", source=_NOTE + "; own code", first_conv="features.0.0",
    classifier="classifier",
    published=Published(params=8.01556, params_precision=6, flops=10.90831, num_classes=1000, note=_NOTE,
                        macs_note="the seed prints 10.90831 GFLOPs, 3.98x the measured 2.742 GMACs where its "
                                  "other rows print about 2x: its counter's figure for the weight-tied stages is "
                                  "not reproduced",
                        params_note="the seed's count includes a 1x1 conv + BN (2,112 parameters) it builds "
                                    "in the single-layer 64-wide stage and never uses: 8,013,448 + 2,112")))
def pmi_darknet19(num_classes: int = 1000, **kwargs) -> nn.Module:
    """DarkNet-19 (YOLOv2) as the seed builds it: weights tied within each stage."""
    return DarkNet19(num_classes, tied=True)


@register_model(ModelConfig(
    name="darknet19", family="darknet", source="Redmon & Farhadi 2017 (YOLO9000), table 6; own code",
    first_conv="features.0.0", classifier="classifier"))
def darknet19(num_classes: int = 1000, **kwargs) -> nn.Module:
    """DarkNet-19 as the paper defines it (no weight tying; ReLU as in the seed)."""
    return DarkNet19(num_classes, tied=False)


@register_model(ModelConfig(
    name="pmi_darknet53", family="darknet", source=_NOTE + "; body: timm darknet53", first_conv="stem.conv1.conv",
    classifier="head.fc",
    published=Published(params=41.609928, params_precision=6, flops=14.25625, num_classes=1000, note=_NOTE,
                        macs_note=_MACS_NOTE)))
def pmi_darknet53(num_classes: int = 1000, **kwargs) -> nn.Module:
    """DarkNet-53 (YOLOv3) classifier, built by timm."""
    return timm.create_model("darknet53", pretrained=False, num_classes=num_classes)
