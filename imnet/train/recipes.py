"""Training recipes as data: named :class:`Recipe` literals, recipe files (YAML/JSON) and overrides.

A recipe holds everything that defines *what* is trained (optimizer, schedule, augmentation, loss,
EMA, epochs, per-process batch size); *how* it runs (device, AMP, loader, workers) lives in
:class:`imnet.train.loop.TrainConfig`. Every field can be overridden on the command line with
``--set FIELD=VALUE``; an unknown field is a user error that names the field and the valid ones.

The optimizers, schedulers, mixup/cutmix, label smoothing and EMA these fields select are timm's
(``create_optimizer_v2``, ``create_scheduler_v2``, ``Mixup``, ``ModelEmaV3``).
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path

import yaml

from imnet.errors import ImnetError


@dataclass(frozen=True)
class Recipe:
    """One training recipe. ``lr`` wins over ``lr_base`` (which is scaled by global batch / lr_base_size)."""

    name: str = "custom"
    epochs: int = 90
    batch_size: int = 64  # per process (per GPU); global batch = batch_size * world_size * accum_steps
    accum_steps: int = 1  # gradient accumulation: optimizer steps every accum_steps batches
    # optimizer (timm name: momentum = SGD without Nesterov, sgd = SGD with Nesterov, lamb, adamw, ...)
    opt: str = "momentum"
    lr: float | None = None
    lr_base: float = 0.1
    lr_base_size: int = 256
    momentum: float = 0.9
    weight_decay: float = 1e-4
    filter_bias_and_bn: bool = False  # True: no weight decay on biases and norm layers
    clip_grad: float | None = None
    # schedule (timm name: multistep, step, cosine, ...)
    sched: str = "multistep"
    decay_milestones: tuple[int, ...] = (30, 60, 80)
    decay_epochs: float = 30.0
    decay_rate: float = 0.1
    min_lr: float = 0.0
    warmup_epochs: int = 0
    warmup_lr: float = 1e-5
    step_on_epochs: bool = True  # False: the lr changes every optimizer step
    # loss and regularization
    loss: str = "ce"  # ce or bce (binary cross-entropy on soft targets, as VanillaNet trains)
    label_smoothing: float = 0.0
    mixup: float = 0.0  # mixup alpha; mixup/cutmix are on when either alpha > 0
    cutmix: float = 0.0
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    drop_rate: float = 0.0  # passed to the model builder when > 0
    ema_decay: float = 0.0  # 0 = no model EMA
    # data
    aug: str = "classic"  # classic (resize short side, random crop, flip) or rrc (RandomResizedCrop)
    img_size: int | None = None  # train/val crop; None = the model's input size
    resize_size: int | None = None  # classic train resize; None = round(img_size / 0.875)
    # VanillaNet deep training: act_learn goes 0 -> 1 over act_learn_epochs, then switch_to_deploy
    act_learn_epochs: int = 0
    act_learn_shape: str = "linear"  # linear or cosine

    def to_dict(self) -> dict:
        """Plain JSON-able dict of the fields (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def with_overrides(self, **changes) -> "Recipe":
        """A copy with fields replaced; values are checked against the field types."""
        checked = {name: _coerce(name, value, source=f"--{name.replace('_', '-')} {value}")
                   for name, value in changes.items()}
        return dataclasses.replace(self, **checked)


# name: what it is. Values follow the cited recipes; lr_base is the lr for a global batch of lr_base_size.
RECIPES: dict[str, Recipe] = {
    # pytorch/examples imagenet: SGD momentum 0.9, lr 0.1 x batch/256, wd 1e-4 on all weights, 90 epochs.
    "classic": Recipe(name="classic"),
    "classic-cosine": Recipe(name="classic-cosine", sched="cosine", step_on_epochs=False),
    # fb.resnet.torch / He et al. 2016 CIFAR ResNets: batch 128, lr 0.1, wd 1e-4, 164 epochs,
    # /10 at 81 and 122, a short low-lr warm-up (linear from 0.01 over the first epoch here).
    "resnet-cifar": Recipe(
        name="resnet-cifar", epochs=164, batch_size=128, lr_base=0.1, lr_base_size=128,
        decay_milestones=(81, 122), warmup_epochs=1, warmup_lr=0.01,
    ),
    # huawei-noah/VanillaNet README (vanillanet_5): LAMB lr 3.5e-3 at batch 1024, wd 0.35, 300 epochs
    # cosine with 5 warm-up epochs, mixup 0.1 + cutmix 1.0, smoothing 0.1, BCE loss, EMA 0.99996,
    # dropout 0.05, act_learn 0 -> 1 over the first 100 epochs.
    "vanillanet": Recipe(
        name="vanillanet", epochs=300, batch_size=128, opt="lamb", lr_base=3.5e-3, lr_base_size=1024,
        weight_decay=0.35, filter_bias_and_bn=True, sched="cosine", min_lr=1e-6, warmup_epochs=5,
        warmup_lr=1e-6, step_on_epochs=False, loss="bce", label_smoothing=0.1, mixup=0.1, cutmix=1.0,
        drop_rate=0.05, ema_decay=0.99996, aug="rrc", act_learn_epochs=100,
    ),
    # imnet demo: a few CPU epochs on small generated images.
    "demo": Recipe(
        name="demo", epochs=6, batch_size=32, opt="momentum", lr_base=0.2, lr_base_size=256,
        weight_decay=5e-4, filter_bias_and_bn=True, sched="cosine", warmup_epochs=1, warmup_lr=0.01,
        step_on_epochs=False, label_smoothing=0.1, aug="classic",
    ),
}

# String fields with a closed set of values (opt and sched are checked by timm when they are built).
CHOICES = {"loss": ("ce", "bce"), "aug": ("classic", "rrc"), "act_learn_shape": ("linear", "cosine")}
FIELDS = tuple(f.name for f in dataclasses.fields(Recipe))
_HINTS = typing.get_type_hints(Recipe)


def _unknown(name: str, source: str) -> ImnetError:
    close = difflib.get_close_matches(name, FIELDS, n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return ImnetError(f"{source}: unknown recipe field {name!r}{hint}; valid fields: {', '.join(FIELDS)}")


# Integer fields that must be positive.
AT_LEAST_ONE = frozenset({"epochs", "batch_size", "accum_steps", "lr_base_size", "img_size", "resize_size"})


def _coerce(name: str, value, source: str):
    """Check ``value`` against the type of field ``name``; strings are parsed as YAML scalars/lists."""
    if name not in _HINTS:
        raise _unknown(name, source)
    hint = _HINTS[name]
    if isinstance(value, str) and hint is not str:
        text = value.strip()
        if text.lower() in {"none", "null", "~", ""}:
            text = "null"
        # "30,60,80" and "[30, 60, 80]" both give a list
        value = yaml.safe_load(f"[{text}]" if "," in text and not text.startswith("[") else text)
    args = typing.get_args(hint)
    optional = isinstance(hint, types.UnionType) and type(None) in args
    base = next((a for a in args if a is not type(None)), hint) if optional else hint
    if value is None:
        if optional:
            return None
        raise ImnetError(f"{source}: recipe field {name!r} cannot be empty")
    origin = typing.get_origin(base)
    if origin is tuple:
        items = value if isinstance(value, (list, tuple)) else [value]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
            raise ImnetError(f"{source}: recipe field {name!r} wants a list of integers, got {value!r}")
        return tuple(items)
    if base is bool:
        if not isinstance(value, bool):
            raise ImnetError(f"{source}: recipe field {name!r} wants true/false, got {value!r}")
        return value
    if base is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ImnetError(f"{source}: recipe field {name!r} wants an integer, got {value!r}")
        if name in AT_LEAST_ONE and value < 1:
            # epochs=0 would record a "finished" run with no checkpoint; a 0 size means nothing
            raise ImnetError(f"{source}: recipe field {name!r} must be at least 1, got {value}")
        return value
    if base is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ImnetError(f"{source}: recipe field {name!r} wants a number, got {value!r}")
        return float(value)
    if base is str:
        value = str(value)
        if name in CHOICES and value not in CHOICES[name]:
            raise ImnetError(f"{source}: recipe field {name!r} must be one of {', '.join(CHOICES[name])}, got {value!r}")
        return value
    raise AssertionError(f"unhandled recipe field type {hint}")  # a bug: a field type nobody parses


def parse_override(text: str) -> tuple[str, str]:
    """``"FIELD=VALUE"`` -> ``(FIELD, VALUE)``; the value stays text until :func:`_coerce` types it."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise ImnetError(f"--set {text!r}: expected FIELD=VALUE, e.g. --set epochs=10")
    return name.strip().replace("-", "_"), value


def load_recipe(name_or_path: str | Path, overrides: list[str] | dict | None = None) -> Recipe:
    """A named recipe (see :data:`RECIPES`) or a YAML/JSON file, with ``overrides`` applied.

    A file is a mapping of recipe fields; an optional ``base: NAME`` key starts from a named recipe
    (default ``classic``). ``overrides`` is a list of ``"FIELD=VALUE"`` strings or a dict. Unknown
    names and fields, wrong types and unreadable files raise :class:`ImnetError` naming the source.
    """
    key = str(name_or_path)
    if key in RECIPES:
        recipe = RECIPES[key]
    else:
        path = Path(name_or_path)
        if path.suffix.lower() not in {".yaml", ".yml", ".json"} and not path.exists():
            close = difflib.get_close_matches(key, list(RECIPES), n=3, cutoff=0.5)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ImnetError(
                f"unknown recipe {key!r}{hint}; named recipes: {', '.join(RECIPES)}, or give a .yaml/.json file"
            )
        recipe = _read_recipe_file(path)
    if overrides:
        items = overrides.items() if isinstance(overrides, dict) else (parse_override(o) for o in overrides)
        changes = {}
        for name, value in items:
            source = f"--set {name}={value}"
            changes[name] = _coerce(name, value, source=source)
        recipe = dataclasses.replace(recipe, **changes)
    return recipe


def _read_recipe_file(path: Path) -> Recipe:
    if not path.is_file():
        raise ImnetError(f"{path}: recipe file not found")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as err:
        raise ImnetError(f"{path}: cannot read recipe file ({err.__class__.__name__}: {' '.join(str(err).split())})") from None
    if not isinstance(data, dict):
        raise ImnetError(f"{path}: a recipe file must be a mapping of field: value, got {type(data).__name__}")
    base_name = data.pop("base", "classic")
    if base_name not in RECIPES:
        raise ImnetError(f"{path}: unknown base recipe {base_name!r}; named recipes: {', '.join(RECIPES)}")
    changes = {name: _coerce(str(name), value, source=str(path)) for name, value in data.items()}
    changes.setdefault("name", path.stem)
    return dataclasses.replace(RECIPES[base_name], **changes)


def recipe_from_dict(data: dict, source: str) -> Recipe:
    """Rebuild a :class:`Recipe` from :meth:`Recipe.to_dict` output (e.g. a run's ``run.json``)."""
    return Recipe(**{name: _coerce(name, value, source=source) for name, value in data.items()})


def act_learn_lambda(recipe: Recipe, epoch: int) -> float:
    """VanillaNet's deep-training weight for ``epoch`` (0-based): 0 -> 1 over ``act_learn_epochs``."""
    if recipe.act_learn_epochs <= 0:
        return 1.0
    progress = min(1.0, epoch / recipe.act_learn_epochs)
    if recipe.act_learn_shape == "cosine":
        return 0.5 * (1.0 - math.cos(math.pi * progress))
    return progress


__all__ = ["Recipe", "RECIPES", "FIELDS", "load_recipe", "parse_override", "recipe_from_dict", "act_learn_lambda"]
