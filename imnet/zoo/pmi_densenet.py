"""DenseNet-121/169/201/264 as seed 002 (pytorch_model_integration) builds them (``models/densenet.py``).

Not torchvision's DenseNet (whose counts are 122 higher): the stem is **BN on the 3-channel input,
then ReLU, then** the 7x7/2 conv (no BN after it) and a 3x3/2 max-pool; each dense layer is BN-ReLU-
conv1x1 (4k) - BN-ReLU-conv3x3 (k) and **puts its new features first**: ``cat([new, x])``; transitions
are BN-ReLU-conv1x1 (compression 0.5) and a 2x2 average pool. Growth rate 32, 64 initial features.

The seed's ``forward()`` stops at the last dense block: it builds a final BN and a linear layer (they
are in its parameter counts) but the lines that apply them are commented out (``avg_pool2d(relu(
bn(out)), 7)``, ``linear``). These models apply that head, as the commented lines read, so they are
classifiers with the seed's parameter count; ``forward_features`` is the seed's ``forward``. Module
names are the seed's, so its checkpoints load unchanged.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from imnet.zoo.registry import ModelConfig, Published, register_model


class Bottleneck(nn.Module):
    """Dense layer: BN-ReLU-conv1x1 (4 * growth) -> BN-ReLU-conv3x3 (growth); returns ``cat([new, x])``."""

    def __init__(self, in_planes: int, growth_rate: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, 4 * growth_rate, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth_rate)
        self.conv2 = nn.Conv2d(4 * growth_rate, growth_rate, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return torch.cat([out, x], 1)


class Transition(nn.Module):
    """BN-ReLU-conv1x1 then a 2x2 average pool."""

    def __init__(self, in_planes: int, out_planes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(in_planes)
        self.conv = nn.Conv2d(in_planes, out_planes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2)


class PmiDenseNet(nn.Module):
    """The seed's DenseNet: ``nblocks`` dense layers per block, ``growth_rate``, compression
    ``reduction``; head BN-ReLU, global average pool, linear."""

    def __init__(self, nblocks: list[int], growth_rate: int = 32, reduction: float = 0.5,
                 num_classes: int = 1000) -> None:
        super().__init__()
        num_planes = 2 * growth_rate
        self.bn1 = nn.BatchNorm2d(3)
        self.conv1 = nn.Conv2d(3, num_planes, 7, 2, 3, bias=False)
        for index, blocks in enumerate(nblocks, start=1):
            layers = []
            for _ in range(blocks):
                layers.append(Bottleneck(num_planes, growth_rate))
                num_planes += growth_rate
            setattr(self, f"dense{index}", nn.Sequential(*layers))
            if index < len(nblocks):
                out_planes = int(math.floor(num_planes * reduction))
                setattr(self, f"trans{index}", Transition(num_planes, out_planes))
                num_planes = out_planes
        self.depth = len(nblocks)
        self.num_features = num_planes
        self.bn = nn.BatchNorm2d(num_planes)
        self.linear = nn.Linear(num_planes, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The seed's ``forward``: the last dense block's output, ``(B, num_features, H/32, W/32)``."""
        x = F.max_pool2d(self.conv1(F.relu(self.bn1(x))), kernel_size=3, stride=2, padding=1)
        for index in range(1, self.depth):
            x = getattr(self, f"trans{index}")(getattr(self, f"dense{index}")(x))
        return getattr(self, f"dense{self.depth}")(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits: the seed's commented-out head, ReLU(BN) -> global average -> linear."""
        return self.linear(F.relu(self.bn(self.forward_features(x))).mean((2, 3)))


def checkpoint_filter_fn(state_dict: dict, model: nn.Module) -> dict:
    """The seed's checkpoints use this module's names (its head's ``bn``/``linear`` included):
    passed through unchanged."""
    return state_dict


_NOTE = "seed 002 (pytorch_model_integration)"
_FUNCTION_NOTE = ("the seed's forward() returns the last dense block's features: the final BN and linear "
                  "layer it builds (and counts) are never applied, their lines commented out; this model "
                  "applies them as those lines read (ReLU(BN), global average, linear), and "
                  "forward_features() is the seed's forward")
_FLOPS_NOTE = ("the seed's FLOPs/G column is its own count (close to 2 x MACs for these nets); "
               "the measured MACs are stored by the zoo table")

# name, dense layers per block, params (M, exact / 1e6 as printed), seed FLOPs (G)
_VARIANTS = [
    ("pmi_densenet121", [6, 12, 24, 16], 7.978734, 5.69836),
    ("pmi_densenet169", [6, 12, 32, 32], 14.149358, 6.75643),
    ("pmi_densenet201", [6, 12, 48, 32], 20.013806, 8.63084),
    ("pmi_densenet264", [6, 12, 64, 48], 33.337582, 11.57003),
]


def _register(name: str, nblocks: list[int], params: float, flops: float) -> None:
    config = ModelConfig(
        name=name, family="pmi_densenet", source=f"{_NOTE} models/densenet.py; own code", first_conv="conv1",
        classifier="linear", checkpoint_filter=checkpoint_filter_fn, function_note=_FUNCTION_NOTE,
        published=Published(params=params, params_precision=6, flops=flops, num_classes=1000,
                            macs_note=_FLOPS_NOTE, note=_NOTE))

    def build(num_classes: int = 1000, **kwargs: Any) -> PmiDenseNet:
        return PmiDenseNet(nblocks, growth_rate=32, num_classes=num_classes)

    build.__name__ = name
    build.__doc__ = f"DenseNet with {nblocks} dense layers as seed 002 builds it (its head applied)."
    register_model(config)(build)


for _variant in _VARIANTS:
    _register(*_variant)
