"""The model registry: names -> builder + :class:`ModelConfig` (eval config, published figures, weights).

Mirrors timm's ``_registry``: ``register_model``, ``list_models``, ``get_config``, ``get_builder``.
Family files under ``imnet/zoo/`` register their variants with :func:`register_model`; ``imnet.zoo``
imports every family file so the registry is complete after ``import imnet.zoo``. Building a model
with weights is :func:`imnet.zoo.factory.create_model` (registry and weights code import the shared
records of :mod:`imnet.zoo.config`, never each other). Registering attaches the figures published
for a config's official weights (:mod:`imnet.zoo.figures`) to ``config.weights.figures``.
"""
from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, replace
from typing import Callable

import torch.nn as nn

from imnet.errors import ImnetError
# The shared records live in imnet.zoo.config; re-exported so family files import them from here.
from imnet.zoo.config import (IMAGENET_MEAN, IMAGENET_STD, INCEPTION_MEAN, INCEPTION_STD, ModelConfig,
                              Published, WeightsFigures, WeightsSource)
from imnet.zoo.figures import weights_figures

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "INCEPTION_MEAN", "INCEPTION_STD", "ModelConfig", "Published",
    "WeightsFigures", "WeightsSource", "get_builder", "get_config", "list_models", "register_model",
    "register_prefix", "with_weights_figures",
]


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
        _REGISTRY[config.name] = _Entry(builder, with_weights_figures(config))
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
                _PREFIXED[name] = _Entry(builder, with_weights_figures(config))
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


def get_builder(name: str) -> Callable[..., nn.Module]:
    """The builder ``(num_classes=..., **kwargs) -> nn.Module`` of a registered (or pass-through)
    model; it builds randomly initialised weights."""
    return _entry(name).builder


def with_weights_figures(config: ModelConfig) -> ModelConfig:
    """``config`` with ``weights.figures`` filled from :mod:`imnet.zoo.figures` where the family
    gave none (a config without official weights is returned as is)."""
    if config.weights is None or config.weights.figures is not None:
        return config
    figures = weights_figures(config)
    return config if figures is None else replace(config, weights=replace(config.weights, figures=figures))
