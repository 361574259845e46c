"""The records every part of the zoo shares: a model's eval config, the figures its sources print,
where its official weights live and what is published for those weights.

Only dataclasses and constants live here, so that the registry (:mod:`imnet.zoo.registry`), the
weights code (:mod:`imnet.zoo.weights`) and the family files all import them without importing
each other.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

import torch.nn as nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class Published:
    """Figures printed by the model's source (seed table or library docs); None where not printed.

    ``params`` in millions as printed, ``params_precision`` the number of decimals printed (so a
    check can compare at the printed precision), ``macs``/``flops`` in G at the input size.
    ``num_classes`` is the class count the printed figures were counted at (10 for a CIFAR-10 table),
    ``build_kwargs`` the builder arguments of the counted form (``{"deploy": True}`` for VanillaNet).
    ``params_note``/``macs_note`` record why a figure differs from imnet's measurement when the
    source's own counting explains it (``imnet zoo --check`` then reports it as explained, not as a
    failure); ``note`` is free text shown in the table (where the figures come from).

    The accuracies here describe the architecture as its table prints it (often the paper's own
    training); the accuracy of the official weights file is :class:`WeightsFigures`."""

    params: float | None = None
    params_precision: int | None = None
    macs: float | None = None
    flops: float | None = None
    top1: float | None = None
    top5: float | None = None
    real_top1: float | None = None
    real_top5: float | None = None
    num_classes: int | None = None
    build_kwargs: Mapping[str, Any] = field(default_factory=dict)
    params_note: str = ""
    macs_note: str = ""
    note: str = ""


@dataclass(frozen=True)
class WeightsFigures:
    """The accuracy a source publishes for one official weights file, at the eval config it states.

    ``top1``/``top5`` (and ``real_top1``/``real_top5`` on ReaL labels, where printed) in percent, 1
    crop, at ``img_size`` / ``crop_pct`` / ``interpolation``. ``source`` names the page the top-1/top-5
    come from, ``real_source`` the page of the ReaL figures when it is another one."""

    top1: float | None = None
    top5: float | None = None
    real_top1: float | None = None
    real_top5: float | None = None
    img_size: int | None = None
    crop_pct: float | None = None
    interpolation: str | None = None
    source: str = ""
    real_source: str = ""

    def eval_config(self) -> str:
        """``"224/0.875/bilinear"``: the eval config the figures were measured at."""
        crop = "?" if self.crop_pct is None else f"{self.crop_pct:.4g}"
        return f"{self.img_size or '?'}/{crop}/{self.interpolation or '?'}"

    def matches(self, img_size: int, crop_pct: float, interpolation: str) -> bool:
        """Whether a measurement at this eval config is comparable with these figures (crop_pct
        within 0.001: sources print 0.965 for torchvision's 224/232)."""
        return (self.img_size == img_size and self.crop_pct is not None
                and abs(self.crop_pct - crop_pct) <= 1e-3 and self.interpolation == interpolation)


@dataclass(frozen=True)
class WeightsSource:
    """Where official weights live: a URL (torch hub cache), a Hugging Face hub id (the hub cache),
    the file name, and the figures published for that file (attached by the registry from
    :mod:`imnet.zoo.figures`). With both a hub id and a URL, the hub is the one fetched (timm's
    order)."""

    url: str | None = None
    hf_hub_id: str | None = None
    filename: str | None = None
    figures: WeightsFigures | None = None


@dataclass(frozen=True)
class ModelConfig:
    """Eval config (like timm's pretrained_cfg) plus provenance and published figures of one variant."""

    name: str
    family: str
    source: str
    input_size: tuple[int, int, int] = (3, 224, 224)
    crop_pct: float = 0.875
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    first_conv: str = ""
    classifier: str = ""
    num_classes: int = 1000
    published: Published = field(default_factory=Published)
    weights: WeightsSource | None = None
    # Maps a foreign checkpoint's state_dict onto this model's keys (timm's checkpoint_filter_fn).
    checkpoint_filter: Callable[[dict, nn.Module], dict] | None = None
    # How this model's function relates to the original code it reproduces, where they are not
    # line for line the same (a decision on the original's dead or inconsistent code); shown by
    # ``imnet zoo --check`` beside the function comparison (imnet.zoo.fidelity, issue 13).
    function_note: str = ""

    def with_overrides(self, **changes) -> "ModelConfig":
        """A copy with some fields replaced (e.g. ``input_size`` from ``--img-size``)."""
        return replace(self, **changes)
