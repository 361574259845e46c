"""IGCV3-D (Sun et al., BMVC 2018) as seed 002 (pytorch_model_integration) builds it.

Interleaved low-rank group convolutions: a MobileNetV2 body whose 1x1 convs are group convs (2 groups),
with channel permutations after the expansion (2 groups) and after the projection, and the deeper
stage layout of IGCV3-D (units per stage 1, 4, 6, 8, 6, 6, 1). Channel counts follow the seed: the
width multiplier scales the stem and each stage (rounded up to even), the head stays 1280 wide below
1.0x. The seed's ``forward`` (``models/igcv3.py``) stops after the units: the 1x1 head (``conv1``),
pooling and classifier it builds (and counts) are never applied, their lines commented out; here they
run as those lines read, and ``forward_features`` is the seed's ``forward``. Module names are the seed's.
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn

from imnet.zoo.registry import ModelConfig, Published, register_model


class ChannelPermutation(nn.Module):
    """Interleave ``groups`` channel groups: (B, G*C', H, W) -> channel order c' * G + g."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        return x.view(b, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class IGCV3Block(nn.Module):
    """1x1 group conv (2 groups) expand -> permute -> 3x3 depthwise -> 1x1 group conv project -> permute."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, expansion: int) -> None:
        super().__init__()
        mid = in_chs * expansion
        self.use_skip = stride == 1 and in_chs == out_chs
        self.conv = nn.Sequential(
            nn.Conv2d(in_chs, mid, 1, groups=2, bias=False), nn.BatchNorm2d(mid), nn.ReLU6(inplace=True),
            ChannelPermutation(2),
            nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid), nn.ReLU6(inplace=True),
            nn.Conv2d(mid, out_chs, 1, groups=2, bias=False), nn.BatchNorm2d(out_chs),
            ChannelPermutation(out_chs // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_skip else self.conv(x)


def _even(channels: float) -> int:
    channels = int(channels)
    return channels + 1 if channels % 2 else channels


class IGCV3(nn.Module):
    """IGCV3-D at ``width_multiplier`` (0.7, 1.0, 1.4 in the seed)."""

    # t, c, n, s
    SETTING = [(1, 16, 1, 1), (6, 24, 4, 2), (6, 32, 6, 2), (6, 64, 8, 2), (6, 96, 6, 1), (6, 160, 6, 2),
               (6, 320, 1, 1)]

    def __init__(self, num_classes: int = 1000, width_multiplier: float = 1.0) -> None:
        super().__init__()
        in_chs = _even(32 * width_multiplier)
        last = int(1280 * width_multiplier) if width_multiplier > 1.0 else 1280
        layers: list[nn.Module] = [nn.Sequential(nn.Conv2d(3, in_chs, 3, 2, 1, bias=False),
                                                 nn.BatchNorm2d(in_chs), nn.ReLU6(inplace=True))]
        for t, c, n, s in self.SETTING:
            out_chs = _even(c * width_multiplier)
            for i in range(n):
                layers.append(IGCV3Block(in_chs, out_chs, s if i == 0 else 1, t))
                in_chs = out_chs
        self.features = nn.Sequential(*layers)
        self.conv1 = nn.Sequential(nn.Conv2d(in_chs, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU6(inplace=True))
        self.classifier = nn.Sequential(nn.Dropout(), nn.Linear(last, num_classes))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The seed's ``forward``: the last unit's output, ``(B, C, H/32, W/32)``."""
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits: the seed's commented-out head, 1x1 conv-BN-ReLU6, global average, dropout, linear."""
        return self.classifier(self.conv1(self.forward_features(x)).mean((2, 3)))


def checkpoint_filter_fn(state_dict: dict, model: nn.Module) -> dict:
    """The seed's checkpoints use this module's names (its head's ``conv1``/``classifier`` included):
    passed through unchanged."""
    return state_dict


_NOTE = "seed 002 (pytorch_model_integration)"
_MACS_NOTE = "the seed's FLOPs/G column is its own count; measured MACs are the zoo table's"

# name, width multiplier, params (M), seed FLOPs (G), top-1
_VARIANTS = [
    ("pmi_igcv3_d_070", 0.7, 2.490294, 0.31910, 68.45),
    ("pmi_igcv3_d_100", 1.0, 3.491688, 0.60653, 72.20),
    ("pmi_igcv3_d_140", 1.4, 6.015164, 1.11491, 74.70),
]


def _build(num_classes: int, width_multiplier: float, **kwargs) -> nn.Module:
    return IGCV3(num_classes, width_multiplier)


for _name, _width, _params, _flops, _top1 in _VARIANTS:
    register_model(ModelConfig(
        name=_name, family="igcv3", source=_NOTE + " models/igcv3.py; own code", first_conv="features.0.0",
        classifier="classifier.1", checkpoint_filter=checkpoint_filter_fn,
        function_note="the seed's forward() returns the last unit's features: the 1x1 head, pooling and "
                      "classifier it builds (and counts) are never applied, their lines commented out; this "
                      "model applies them as those lines read, and forward_features() is the seed's forward",
        published=Published(params=_params, params_precision=6, flops=_flops, top1=_top1, num_classes=1000,
                            macs_note=_MACS_NOTE, note=f"{_NOTE}, IGCV3-D ({_width})"),
    ))(partial(_build, width_multiplier=_width))
