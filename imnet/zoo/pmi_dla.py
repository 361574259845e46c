"""The DLA rows of seed 002 (pytorch_model_integration), on timm's DLA (ucbdrive's network).

The seed's DLA source could not be read. Its printed counts decompose exactly, for all nine rows, as

    timm's DLA  +  the ``project`` layers ucbdrive's official code builds in every tree of more than
    one level whose width changes (a 1x1 conv + BN its forward never uses; timm drops them)
    +  1,037 parameters in every variant, whatever its depth or width (not identified).

So the rows are registered as timm's DLA (the same network as part one's ``dla*`` adapters, whose
weights fit) with the seed's figures and this decomposition in ``params_note``;
:func:`official_unused_project_params` computes the middle term.
"""
from __future__ import annotations

import torch.nn as nn
from timm.models.dla import DlaTree

from imnet.zoo.library import register_library_model
from imnet.zoo.registry import Published

UNIDENTIFIED = 1037


def official_unused_project_params(model: nn.Module) -> int:
    """Parameters of the 1x1 conv + BN ``project`` layers that ucbdrive's DLA builds (and never uses)
    in trees with ``levels > 1`` whose input and output widths differ; 0 for other models."""
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


_NOTE = "seed 002 (pytorch_model_integration)"
_PARAMS_NOTE = ("the seed's count is this network + {:,} in never-used 1x1 project layers (ucbdrive's "
                "official code builds them in multi-level trees; timm drops them) + 1,037 unidentified "
                "parameters found in every DLA row of the seed")
_MACS_NOTE = "the seed's FLOPs/G column is its own count; measured MACs are the zoo table's"

# name, timm name, params (M), seed FLOPs (G), top-1, top-5, unused project params
_VARIANTS = [
    ("pmi_dla34", "dla34", 15.784869, 2.27950, None, None, 41728),
    ("pmi_dla46_c", "dla46_c", 1.310885, 0.40895, 64.9, 86.7, 8448),
    ("pmi_dla60", "dla60", 22.335141, 2.93399, None, None, 297472),
    ("pmi_dla102", "dla102", 33.732773, 4.42848, None, None, 462848),
    ("pmi_dla169", "dla169", 53.990053, 6.65083, None, None, 599296),
    ("pmi_dla46x_c", "dla46x_c", 1.077925, 0.37765, 66.0, 87.0, 8448),
    ("pmi_dla60x_c", "dla60x_c", 1.337765, 0.40313, 68.0, 88.4, 16896),
    ("pmi_dla60x", "dla60x", 17.650853, 2.39033, None, None, 297472),
    ("pmi_dla102x", "dla102x", 26.773157, 3.58778, None, None, 462848),
]

for _name, _timm_name, _params, _flops, _top1, _top5, _unused in _VARIANTS:
    register_library_model(
        _name, _timm_name, library="timm", family="pmi_dla", source=f"{_NOTE}; body: timm {_timm_name}",
        published=Published(params=_params, params_precision=6, flops=_flops, top1=_top1, top5=_top5,
                            num_classes=1000, params_note=_PARAMS_NOTE.format(_unused),
                            macs_note=_MACS_NOTE, note=_NOTE))
