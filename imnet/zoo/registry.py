"""The model registry: names -> builder + :class:`ModelConfig` (eval config, published figures, weights).

Mirrors timm: ``create_model``, ``list_models``, ``get_config``. Family files under ``imnet/zoo/``
register their variants with :func:`register_model`; ``imnet.zoo`` imports every family file so the
registry is complete after ``import imnet.zoo``.
"""
from __future__ import annotations

import difflib
import os
import fnmatch
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

import torch.nn as nn

from imnet.errors import ImnetError

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
    failure); ``note`` is free text shown in the table (where the figures come from)."""

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
class WeightsSource:
    """Where official weights live: a URL (torch hub cache), a Hugging Face hub id, and the file name."""

    url: str | None = None
    hf_hub_id: str | None = None
    filename: str | None = None


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
    # ``imnet zoo --check`` beside the function comparison (imnet.zoo.fidelity).
    function_note: str = ""

    def with_overrides(self, **changes) -> "ModelConfig":
        """A copy with some fields replaced (e.g. ``input_size`` from ``--img-size``)."""
        return replace(self, **changes)


@dataclass(frozen=True)
class _Entry:
    builder: Callable[..., nn.Module]
    config: ModelConfig


_REGISTRY: dict[str, _Entry] = {}
# Name prefixes ("timm/", "tv/") whose models are built on demand by a library; not listed.
_PREFIXES: dict[str, Callable[[str], tuple[Callable[..., nn.Module], ModelConfig]]] = {}
_PREFIXED: dict[str, _Entry] = {}


def register_model(config: ModelConfig) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register ``builder(**kwargs) -> nn.Module`` under ``config.name``.

    The builder takes at least ``num_classes``; other keyword arguments pass through from
    :func:`create_model`."""

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if config.name in _REGISTRY:
            raise ValueError(f"model {config.name!r} registered twice")
        _REGISTRY[config.name] = _Entry(builder, config)
        return builder

    return decorate


def register_prefix(prefix: str, resolve: Callable[[str], tuple[Callable[..., nn.Module], ModelConfig]]) -> None:
    """Let names ``<prefix><library name>`` (e.g. ``timm/convnext_tiny``) pass through to a library.

    ``resolve(library_name)`` returns ``(builder, config)`` or raises :class:`ImnetError` for a name
    the library does not know. Such models are built on demand and not listed by :func:`list_models`."""
    _PREFIXES[prefix] = resolve


def _entry(name: str) -> _Entry:
    if name in _REGISTRY:
        return _REGISTRY[name]
    for prefix, resolve in _PREFIXES.items():
        if name.startswith(prefix):
            if name not in _PREFIXED:
                builder, config = resolve(name[len(prefix):])
                _PREFIXED[name] = _Entry(builder, config)
            return _PREFIXED[name]
    close = difflib.get_close_matches(name, list(_REGISTRY), n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else "; `imnet zoo` lists every model"
    prefixes = ", ".join(f"{p}<name>" for p in _PREFIXES)
    if prefixes:
        hint += f" (library models pass through as {prefixes})"
    raise ImnetError(f"unknown model {name!r}{hint}")


def list_models(pattern: str | list[str] = "*") -> list[str]:
    """Registered names matching a shell-style pattern (or a list of patterns), sorted.

    Library pass-through names (``timm/...``, ``tv/...``) are not listed; they work anywhere a name
    is accepted."""
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    return sorted(n for n in _REGISTRY if any(fnmatch.fnmatchcase(n, p) for p in patterns))


def get_config(name: str) -> ModelConfig:
    """The :class:`ModelConfig` of a registered model."""
    return _entry(name).config


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
    weights are resolved and loaded (see :mod:`imnet.zoo.weights`); unresolvable weights raise
    :class:`ImnetError` saying where imnet looked."""
    entry = _entry(name)
    num_classes = entry.config.num_classes if num_classes is None else num_classes  # 0: no classifier
    model = entry.builder(num_classes=num_classes, **kwargs)
    # Beside timm's own ``pretrained_cfg`` dict (left untouched so timm's helpers keep working).
    model.imnet_cfg = entry.config  # type: ignore[attr-defined]
    if pretrained or weights:
        from imnet.zoo.weights import load_weights

        load_weights(model, entry.config, weights)
    return model
