"""The DLA rows of seed 002 (pytorch_model_integration), as its ``models/dlanet.py`` builds them.

The seed's DLA (ccq1n/pytorch_model_backbone) has ucbdrive's trees, roots and blocks (timm's
``DlaTree``, ``DlaBasic`` and ``DlaBottleneck`` build them here; the X blocks are grouped 32-wide
bottlenecks with ``bottle_planes = out``), but not timm's (ucbdrive's) stem and strides:

* ``base_layer`` is a 7x7 conv from 3 to **3** channels (+ BN + ReLU) at full resolution, and
  ``level0`` / ``level1`` are each a basic residual block at the incoming width followed by a
  3x3/**2** conv (+ BN + ReLU) to 16 / 32 channels: 10,429 parameters, where timm's stem (7x7 to 16,
  3x3 16 -> 16, 3x3/2 16 -> 32) has 9,392. That is the "1,037 parameters" every DLA row of the seed
  has over timm's DLA.
* ``level2`` ... ``level4`` downsample (stride 2) and ``level5`` does **not** (stride 1): the same
  total stride 32 as timm's, reached two levels earlier, so the trees run at half timm's resolution.
* The seed's ``forward()`` returns ``level5``'s features; the linear layer it builds (and counts) is
  never applied. These models apply it after a global average pool (``forward_features`` is the
  seed's ``forward``).
* Like ucbdrive's code, the seed builds a 1x1 conv + BN ``project`` in every tree whose width
  changes; in trees of more than one level the forward computes it but never uses the result (timm
  drops those, and so do these models: ``checkpoint_filter_fn`` drops their keys, and each variant's
  ``params_note`` gives the count, :func:`official_unused_project_params`).

Module names are the seed's. The library's DLA stays available as part one's ``dla*`` adapters.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from timm.models.dla import DlaBasic, DlaBottleneck, DlaTree

from imnet.zoo.registry import ModelConfig, Published, register_model


def _conv_bn_relu(in_chs: int, out_chs: int, kernel_size: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_chs, out_chs, kernel_size, stride, kernel_size // 2, bias=False),
                         nn.BatchNorm2d(out_chs), nn.ReLU(inplace=True))


class PmiDLA(nn.Module):
    """The seed's DLA: ``levels`` (tree depths of level0..5; 0 and 1 are single blocks), ``channels``
    (widths of level0..5), ``block`` (timm's ``DlaBasic`` or ``DlaBottleneck`` with ``cardinality`` /
    ``base_width``), global average pool, linear."""

    def __init__(self, levels: tuple[int, ...], channels: tuple[int, ...], block: type[nn.Module] = DlaBasic,
                 cardinality: int = 1, base_width: int = 64, num_classes: int = 1000) -> None:
        super().__init__()
        self.base_layer = _conv_bn_relu(3, 3, 7, 1)
        self.level0 = nn.Sequential(DlaBasic(3, 3), _conv_bn_relu(3, channels[0], 3, 2))
        self.level1 = nn.Sequential(DlaBasic(channels[0], channels[0]), _conv_bn_relu(channels[0], channels[1], 3, 2))
        tree = dict(cardinality=cardinality, base_width=base_width)
        # level: stride, level_root
        for index, (stride, level_root) in enumerate(((2, False), (2, True), (2, True), (1, True)), start=2):
            setattr(self, f"level{index}", DlaTree(levels[index], block, channels[index - 1], channels[index],
                                                   stride, level_root=level_root, **tree))
        self.num_features = channels[5]
        self.linear = nn.Linear(channels[5], num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The seed's ``forward``: level5's features, ``(B, channels[5], H/32, W/32)``."""
        x = self.level1(self.level0(self.base_layer(x)))
        return self.level5(self.level4(self.level3(self.level2(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits: global average pool and the linear layer the seed builds."""
        return self.linear(self.forward_features(x).mean((2, 3)))


def official_unused_project_params(model: nn.Module) -> int:
    """Parameters of the 1x1 conv + BN ``project`` layers that the seed's (and ucbdrive's) DLA builds,
    and never uses, in trees with ``levels > 1`` whose input and output widths differ."""
    total = 0
    for tree in model.modules():
        if not isinstance(tree, DlaTree) or tree.levels == 1:
            continue
        first, last = tree.tree1, tree.tree2
        while isinstance(first, DlaTree):
            first = first.tree1
        while isinstance(last, DlaTree):
            last = last.tree2
        in_chs = first.conv1.in_channels
        out_chs = (last.conv3 if hasattr(last, "conv3") else last.conv2).out_channels
        if in_chs != out_chs:
            total += in_chs * out_chs + 2 * out_chs
    return total


def checkpoint_filter_fn(state_dict: dict, model: nn.Module) -> dict:
    """The seed's checkpoints use this module's names; the never-used ``project`` layers of its
    multi-level trees (keys ``...project.*`` this model does not have) are dropped."""
    own = model.state_dict()
    return {k: v for k, v in state_dict.items() if k in own or ".project." not in k}


_NOTE = "seed 002 (pytorch_model_integration)"
_PARAMS_NOTE = ("the seed's count includes {:,} parameters of 1x1 project layers it builds in multi-level trees "
                "and never uses (this model leaves them out)")
_MACS_NOTE = "the seed's FLOPs/G column is its own count; measured MACs are the zoo table's"
_FUNCTION_NOTE = ("the seed's forward() returns level5's features: the linear layer it builds (and counts) is "
                  "never applied; this model applies it after a global average pool, and forward_features() "
                  "is the seed's forward. The seed's never-used project layers are left out")

# name, tree levels, channels, block, cardinality, base width, params (M), seed FLOPs (G), top-1, top-5
_B, _X = DlaBottleneck, DlaBottleneck
_VARIANTS = [
    ("pmi_dla34", (1, 1, 1, 2, 2, 1), (16, 32, 64, 128, 256, 512), DlaBasic, 1, 64, 15.784869, 2.27950, None, None),
    ("pmi_dla46_c", (1, 1, 1, 2, 2, 1), (16, 32, 64, 64, 128, 256), _B, 1, 64, 1.310885, 0.40895, 64.9, 86.7),
    ("pmi_dla60", (1, 1, 1, 2, 3, 1), (16, 32, 128, 256, 512, 1024), _B, 1, 64, 22.335141, 2.93399, None, None),
    ("pmi_dla102", (1, 1, 1, 3, 4, 1), (16, 32, 128, 256, 512, 1024), _B, 1, 64, 33.732773, 4.42848, None, None),
    ("pmi_dla169", (1, 1, 2, 3, 5, 1), (16, 32, 128, 256, 512, 1024), _B, 1, 64, 53.990053, 6.65083, None, None),
    ("pmi_dla46x_c", (1, 1, 1, 2, 2, 1), (16, 32, 64, 64, 128, 256), _X, 32, 4, 1.077925, 0.37765, 66.0, 87.0),
    ("pmi_dla60x_c", (1, 1, 1, 2, 3, 1), (16, 32, 64, 64, 128, 256), _X, 32, 4, 1.337765, 0.40313, 68.0, 88.4),
    ("pmi_dla60x", (1, 1, 1, 2, 3, 1), (16, 32, 128, 256, 512, 1024), _X, 32, 4, 17.650853, 2.39033, None, None),
    ("pmi_dla102x", (1, 1, 1, 3, 4, 1), (16, 32, 128, 256, 512, 1024), _X, 32, 4, 26.773157, 3.58778, None, None),
]


def _register(name: str, levels: tuple[int, ...], channels: tuple[int, ...], block: type[nn.Module],
              cardinality: int, base_width: int, params: float, flops: float, top1: float | None,
              top5: float | None) -> None:
    def build(num_classes: int = 1000, **kwargs: Any) -> PmiDLA:
        return PmiDLA(levels, channels, block, cardinality, base_width, num_classes)

    with torch.device("meta"):
        unused = official_unused_project_params(build())
    config = ModelConfig(
        name=name, family="pmi_dla", source=f"{_NOTE} models/dlanet.py; own code on timm's DLA trees",
        first_conv="base_layer.0", classifier="linear", checkpoint_filter=checkpoint_filter_fn,
        function_note=_FUNCTION_NOTE,
        published=Published(params=params, params_precision=6, flops=flops, top1=top1, top5=top5,
                            num_classes=1000, params_note=_PARAMS_NOTE.format(unused), macs_note=_MACS_NOTE,
                            note=_NOTE))
    build.__name__ = name
    build.__doc__ = f"{name[4:].upper()} as seed 002 builds it (its linear layer applied)."
    register_model(config)(build)


for _variant in _VARIANTS:
    _register(*_variant)
