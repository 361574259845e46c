"""The model zoo: ``create_model``, ``list_models``, ``get_config`` (mirrors timm).

Every module in this package other than the registry machinery is a family file that registers its
variants on import; all of them are imported here so the registry is complete.
"""
import importlib
import pkgutil

from imnet.zoo.factory import create_model
from imnet.zoo.registry import (
    ModelConfig,
    Published,
    WeightsFigures,
    WeightsSource,
    get_config,
    list_models,
    register_model,
)

_MACHINERY = {"registry", "weights", "measure", "table", "config", "factory", "figures", "official", "fidelity"}
for _mod in pkgutil.iter_modules(__path__):
    if not _mod.name.startswith("_") and _mod.name not in _MACHINERY:
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = [
    "ModelConfig",
    "Published",
    "WeightsFigures",
    "WeightsSource",
    "create_model",
    "get_config",
    "list_models",
    "register_model",
]
