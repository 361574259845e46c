"""``create_model``: a registered model, randomly initialised or with its weights loaded.

The one place that joins the registry (:mod:`imnet.zoo.registry`: names, builders, configs) and the
weights code (:mod:`imnet.zoo.weights`: resolving, fetching and loading files), like timm's
``_factory``; neither of those imports the other.
"""
from __future__ import annotations

import os

import torch.nn as nn

from imnet.zoo.registry import get_builder, get_config
from imnet.zoo.weights import load_weights


def create_model(
    name: str,
    pretrained: bool = False,
    num_classes: int | None = None,
    weights: str | os.PathLike | None = None,
    **kwargs,
) -> nn.Module:
    """Build a registered model (an ``nn.Module`` in training mode, randomly initialised).

    ``num_classes`` defaults to the config's; other keyword arguments go to the family's builder
    (e.g. ``deploy=True`` for VanillaNet, ``shortcut="A"`` for the torch-resnet families). With
    ``pretrained=True`` or ``weights=PATH`` (a file or a finished ``imnet train`` run directory) the
    weights are resolved, fetched when they are official, not cached and imnet is online, and loaded
    (see :mod:`imnet.zoo.weights`); unresolvable weights raise :class:`ImnetError` saying where imnet
    looked."""
    config = get_config(name)
    num_classes = config.num_classes if num_classes is None else num_classes  # 0: no classifier
    model = get_builder(name)(num_classes=num_classes, **kwargs)
    # Beside timm's own ``pretrained_cfg`` dict (left untouched so timm's helpers keep working).
    model.imnet_cfg = config  # type: ignore[attr-defined]
    if pretrained or weights:
        load_weights(model, config, weights)
    return model
