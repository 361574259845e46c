"""Measured figures of a model: parameter count and multiply-adds (MACs) of one image.

MACs come from ``torch.utils.flop_counter.FlopCounterMode`` (no extra dependency): it counts the
FLOPs of convolutions and matrix products, 2 per multiply-add, so MACs = FLOPs / 2. Elementwise ops
(BN, activations, pooling) are not counted, as in most published MAC figures. The model is built on
the ``meta`` device where it allows it, so measuring VGG or EfficientNet-B7 costs no compute.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from imnet.zoo.factory import create_model
from imnet.zoo.registry import get_config


@dataclass(frozen=True)
class Measurement:
    """``params``: parameter count; ``macs``: multiply-adds of one image at ``input_size`` (None when
    not measured)."""

    name: str
    params: int
    macs: int | None
    input_size: tuple[int, int, int]

    @property
    def gmacs(self) -> float | None:
        """MACs in G (1e9)."""
        return None if self.macs is None else self.macs / 1e9


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not) of ``model``; buffers (BN statistics) are not counted."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_size: tuple[int, int, int]) -> int:
    """Multiply-adds of ``model`` (in eval mode) on one image of ``input_size`` (C, H, W), on the
    device its parameters are on."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros((1, *input_size), device=device))
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def measure_model(name: str, num_classes: int | None = None, input_size: tuple[int, int, int] | None = None,
                  with_macs: bool = True, **build_kwargs: Any) -> Measurement:
    """Build zoo model ``name`` (with ``num_classes`` and ``build_kwargs``) and measure its
    parameters and, with ``with_macs``, its MACs at ``input_size`` (default: the config's)."""
    config = get_config(name)
    size = tuple(input_size or config.input_size)
    try:
        with torch.device("meta"):
            model = create_model(name, num_classes=num_classes, **build_kwargs)
        macs = count_macs(model, size) if with_macs else None
    except (NotImplementedError, RuntimeError):
        # Some models read tensor values while building or running (e.g. .item()): measure on CPU.
        model = create_model(name, num_classes=num_classes, **build_kwargs)
        macs = count_macs(model, size) if with_macs else None
    return Measurement(name=name, params=count_params(model), macs=macs, input_size=size)
