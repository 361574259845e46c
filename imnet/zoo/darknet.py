"""DarkNet classifiers of seed 002 (pytorch_model_integration): DarkNet-19 (YOLOv2) and DarkNet-53 (YOLOv3).

Both follow the seed's ``models/darknet_19.py`` and ``models/darknet_53.py`` (ccq1n/pytorch_model_
backbone): every conv is bias-free, followed by BN and **ReLU** (the YOLO papers use leaky ReLU),
'same' padding; global average pool (the seed's ``avg_pool2d(x, 7)`` at 224x224) and one linear
layer. Module names are the seed's, so its checkpoints load (``checkpoint_filter_fn``).

DarkNet-19 (Redmon & Farhadi 2017): conv3x3 32, then five stages of alternating 3x3 (2C) and 1x1 (C)
layers (1, 3, 3, 5, 5 layers; widths 64 ... 1024) after 2x2 max-pools. The seed builds each stage
from two module objects that it appends again and again, so within a stage every 3x3 layer shares
one set of weights and every 1x1 layer another: that weight-tied network is what its 8.01556M counts
(``tied=True``, ``pmi_darknet19``); the paper's untied DarkNet-19 has 20.8M (``darknet19``). The seed
also builds a 1x1 layer in the first stage, which has a single layer and never uses it (2,112
parameters in its count, not here; ``checkpoint_filter_fn`` drops it).

DarkNet-53: conv3x3 32, then five stages of a conv3x3/2 (64 ... 1024) and residual blocks (1, 2, 8,
8, 4) of 1x1 (C/2) -> 3x3 (C) plus the input, then ReLU (a no-op on a sum of two ReLU outputs, kept as
the seed has it). timm's ``darknet53`` with ``act_layer="relu"`` is the same network (checked by
``imnet zoo --check``; timm's default is leaky ReLU 0.01).
"""
from __future__ import annotations

import re

import torch
import torch.nn as nn
import torch.nn.functional as F

from imnet.zoo.fidelity import Reference, register_reference
from imnet.zoo.registry import ModelConfig, Published, register_model


class ConvBnReLU(nn.Module):
    """Conv (no bias) -> BN -> ReLU, as ``convs`` (the seed's ``Conv_bn_relu``)."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.convs = nn.Sequential(nn.Conv2d(in_chs, out_chs, kernel_size, stride, kernel_size // 2, bias=False),
                                   nn.BatchNorm2d(out_chs), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x)


class DarkNet19Stage(nn.Module):
    """``layers`` alternating 3x3 (``width//2 -> width``) and 1x1 (``width -> width//2``) layers. With
    ``tied`` the 3x3 layers are one module (``conv1``) repeated, and so are the 1x1 layers (``conv2``)."""

    def __init__(self, width: int, layers: int, tied: bool) -> None:
        super().__init__()
        if tied:
            self.conv1 = ConvBnReLU(width // 2, width, 3)
            if layers > 1:
                self.conv2 = ConvBnReLU(width, width // 2, 1)
            self.layers = nn.Sequential(*[self.conv1 if i % 2 == 0 else self.conv2 for i in range(layers)])
        else:
            self.layers = nn.Sequential(*[ConvBnReLU(width // 2, width, 3) if i % 2 == 0 else
                                          ConvBnReLU(width, width // 2, 1) for i in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class DarkNet19(nn.Module):
    """DarkNet-19 classifier; ``tied=True`` is the seed's weight-tied form."""

    # stage width, layers
    STAGES = [(64, 1), (128, 3), (256, 3), (512, 5), (1024, 5)]

    def __init__(self, num_classes: int = 1000, tied: bool = False) -> None:
        super().__init__()
        self.layer1 = ConvBnReLU(3, 32, 3)
        for index, (width, n) in enumerate(self.STAGES, start=2):
            setattr(self, f"layer{index}", DarkNet19Stage(width, n, tied))
        self.linear = nn.Linear(1024, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer1(x)
        for index in range(2, 2 + len(self.STAGES)):
            x = getattr(self, f"layer{index}")(F.max_pool2d(x, 2, 2))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.forward_features(x).mean((2, 3)))


class DarkBlock(nn.Module):
    """1x1 (``width -> width//2``) -> 3x3 (``-> width``), plus the input, then ReLU."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = ConvBnReLU(width, width // 2, 1)
        self.conv2 = ConvBnReLU(width // 2, width, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(self.conv1(x)) + x)


class DarkNet53(nn.Module):
    """DarkNet-53 classifier: ``conv1`` (3x3, 32), then ``conv2..6`` (3x3/2) each followed by
    ``resblock1..5`` (``blocks`` residual blocks), global average pool, linear."""

    def __init__(self, num_classes: int = 1000, blocks: tuple[int, ...] = (1, 2, 8, 8, 4)) -> None:
        super().__init__()
        self.conv1 = ConvBnReLU(3, 32, 3)
        width = 32
        for index, n in enumerate(blocks, start=1):
            setattr(self, f"conv{index + 1}", ConvBnReLU(width, width * 2, 3, stride=2))
            width *= 2
            setattr(self, f"resblock{index}", nn.Sequential(*[DarkBlock(width) for _ in range(n)]))
        self.stages = len(blocks)
        self.linear = nn.Linear(width, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        for index in range(1, self.stages + 1):
            x = getattr(self, f"resblock{index}")(getattr(self, f"conv{index + 1}")(x))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.forward_features(x).mean((2, 3)))


def checkpoint_filter_fn(state_dict: dict, model: nn.Module) -> dict:
    """The seed's checkpoints use these modules' names; the 1x1 layer its DarkNet-19 builds in the
    single-layer first stage and never uses (``layer2.conv2``) is dropped."""
    own = model.state_dict()
    return {k: v for k, v in state_dict.items() if k in own or not k.startswith("layer2.conv2.")}


_TIMM_RENAMES = [  # timm darknet53 -> the seed's names
    (r"^stem\.conv1\.conv\.", "conv1.convs.0."), (r"^stem\.conv1\.bn\.", "conv1.convs.1."),
    (r"^stages\.(\d)\.conv_down\.conv\.", lambda m: f"conv{int(m[1]) + 2}.convs.0."),
    (r"^stages\.(\d)\.conv_down\.bn\.", lambda m: f"conv{int(m[1]) + 2}.convs.1."),
    (r"^stages\.(\d)\.blocks\.(\d+)\.(conv\d)\.conv\.", lambda m: f"resblock{int(m[1]) + 1}.{m[2]}.{m[3]}.convs.0."),
    (r"^stages\.(\d)\.blocks\.(\d+)\.(conv\d)\.bn\.", lambda m: f"resblock{int(m[1]) + 1}.{m[2]}.{m[3]}.convs.1."),
    (r"^head\.fc\.", "linear."),
]


def from_timm_darknet53(state_dict: dict, model: nn.Module) -> dict:
    """Map timm's ``darknet53`` state_dict onto :class:`DarkNet53`'s names."""
    out = {}
    for key, value in state_dict.items():
        for pattern, target in _TIMM_RENAMES:
            key = re.sub(pattern, target, key)
        out[key] = value
    return out


def _timm_darknet53_relu(num_classes: int) -> nn.Module:
    import timm

    return timm.create_model("darknet53", pretrained=False, num_classes=num_classes, act_layer="relu")


_NOTE = "seed 002 (pytorch_model_integration)"
_MACS_NOTE = "the seed's FLOPs/G column is its own count; measured MACs are the zoo table's"
_POOL_NOTE = ("the seed pools with avg_pool2d(x, 7), the global average at 224x224 (its only working "
              "size); this model pools globally at any size")


@register_model(ModelConfig(
    name="pmi_darknet19", family="darknet", source=_NOTE + " models/darknet_19.py; own code",
    first_conv="layer1.convs.0", classifier="linear", checkpoint_filter=checkpoint_filter_fn,
    function_note=_POOL_NOTE,
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
    first_conv="layer1.convs.0", classifier="linear"))
def darknet19(num_classes: int = 1000, **kwargs) -> nn.Module:
    """DarkNet-19 as the paper defines it (no weight tying; ReLU as in the seed)."""
    return DarkNet19(num_classes, tied=False)


@register_model(ModelConfig(
    name="pmi_darknet53", family="darknet", source=_NOTE + " models/darknet_53.py; own code",
    first_conv="conv1.convs.0", classifier="linear", checkpoint_filter=checkpoint_filter_fn,
    function_note=_POOL_NOTE,
    published=Published(params=41.609928, params_precision=6, flops=14.25625, num_classes=1000, note=_NOTE,
                        macs_note=_MACS_NOTE)))
def pmi_darknet53(num_classes: int = 1000, **kwargs) -> nn.Module:
    """DarkNet-53 (YOLOv3) classifier as the seed builds it (ReLU)."""
    return DarkNet53(num_classes)


register_reference("pmi_darknet53", Reference("timm darknet53 (act_layer='relu')", _timm_darknet53_relu,
                                              to_zoo=from_timm_darknet53))
