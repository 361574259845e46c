"""The pieces a :class:`~imnet.train.recipes.Recipe` selects, all timm's: optimizer, scheduler, mixup /
cutmix and the loss; plus the learning rate rule, the parameter groups (weight-decay filtering,
layer-wise lr decay: VanillaNet's own grouping or timm's), the weight-decay schedule, the AMP dtype
and VanillaNet's ``act_learn``.

Each builder takes the recipe (data) and returns the library object; a recipe field a library refuses
becomes an :class:`ImnetError` naming the recipe and the field's value.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from imnet.errors import ImnetError
from imnet.train.recipes import Recipe


def model_kwargs(recipe: Recipe) -> dict:
    """The builder arguments a recipe sets: ``drop_rate`` (when > 0) and SimpleNet's per-layer
    ``drop_rates`` ({layer index: rate}, when given)."""
    kwargs = {"drop_rate": recipe.drop_rate} if recipe.drop_rate > 0 else {}
    if recipe.drop_rates:
        kwargs["drop_rates"] = dict(recipe.drop_rates)
    return kwargs


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``--amp`` ("auto": bf16 on CUDA, none on CPU; "none", "bf16", "fp16")."""
    if amp == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if amp == "none":
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        if device.type != "cuda":
            raise ImnetError("--amp fp16 needs a CUDA GPU; use --amp bf16 or none on CPU")
        return torch.float16
    raise ImnetError(f"--amp {amp!r}: expected auto, none, bf16 or fp16")


def global_lr(recipe: Recipe, global_batch: int) -> float:
    """The recipe's absolute ``lr``, else ``lr_base`` scaled linearly by ``global_batch / lr_base_size``."""
    return recipe.lr if recipe.lr is not None else recipe.lr_base * global_batch / recipe.lr_base_size


def _no_decay(name: str, param: nn.Parameter, skip: set[str]) -> bool:
    """No weight decay for 1-D weights (norm layers, biases) and biases, as timm's
    ``param_groups_weight_decay`` and VanillaNet's ``get_parameter_groups`` (which also spares
    parameters named ``*.alpha`` / ``*.beta`` and the model's ``no_weight_decay()``)."""
    return param.ndim <= 1 or name.endswith((".bias", ".alpha", ".beta")) or name in skip


def vanillanet_layer_id(name: str, num_layers: int) -> int:
    """VanillaNet's ``get_num_layer_for_vanillanet``: stem 0, ``stages.i`` i + 1, the classifier
    (``cls*``) ``num_layers + 1``."""
    if name.startswith("stem"):
        return 0
    if name.startswith("stages."):
        return int(name.split(".")[1]) + 1
    if name.startswith("cls"):
        return num_layers + 1
    raise ValueError(name)


def layer_decay_groups(model: nn.Module, recipe: Recipe) -> list[dict]:
    """Parameter groups with an ``lr_scale`` per layer (timm's schedulers multiply the lr by it).

    With ``layer_decay_layers`` > 0: VanillaNet's own grouping and scales (its main.py:
    ``LayerDecayValueAssigner(values=[decay ** (layers + 1 - i) for i in range(layers + 2)])``),
    for models named as VanillaNet's (stem*, stages.N, cls*). Otherwise timm's
    ``param_groups_layer_decay`` over the model's ``group_matcher``."""
    skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    filtered = recipe.filter_bias_and_bn
    if recipe.layer_decay_layers <= 0:
        if not hasattr(model, "group_matcher"):
            raise ImnetError(f"recipe {recipe.name!r}: layer_decay needs a model with timm's group_matcher, or "
                             "VanillaNet's layer grouping (--set layer_decay_layers=N, N = its stages)")
        from timm.optim import param_groups_layer_decay

        return param_groups_layer_decay(model, weight_decay=recipe.weight_decay, no_weight_decay_list=skip,
                                        weight_decay_exclude_1d=filtered, layer_decay=recipe.layer_decay)
    layers = recipe.layer_decay_layers
    scales = [recipe.layer_decay ** (layers + 1 - i) for i in range(layers + 2)]
    groups: dict[tuple[int, bool], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        try:
            layer = vanillanet_layer_id(name, layers)
        except ValueError:
            raise ImnetError(f"recipe {recipe.name!r}: layer_decay_layers uses VanillaNet's grouping (stem*, "
                             f"stages.N, cls*), but the model has a parameter {name!r}") from None
        if layer > layers + 1 or (name.startswith("stages.") and layer > layers):
            raise ImnetError(f"recipe {recipe.name!r}: layer_decay_layers={layers}, but the model has parameter "
                             f"{name!r} of layer {layer}: set it to the model's number of stages")
        decays = not (filtered and _no_decay(name, param, skip))
        group = groups.setdefault((layer, decays), {"params": [], "weight_decay": recipe.weight_decay if decays else 0.0,
                                                    "lr_scale": scales[layer]})
        group["params"].append(param)
    return [groups[key] for key in sorted(groups)]


def build_optimizer(model: nn.Module, recipe: Recipe, lr: float):
    """timm's ``create_optimizer_v2`` for the recipe's ``opt``, weight decay, momentum, epsilon and
    filtering; with ``layer_decay`` < 1, over :func:`layer_decay_groups`."""
    from timm.optim import create_optimizer_v2

    extra = {"eps": recipe.opt_eps} if recipe.opt_eps is not None else {}
    params = layer_decay_groups(model, recipe) if recipe.layer_decay != 1.0 else model
    try:
        return create_optimizer_v2(
            params, opt=recipe.opt, lr=lr, weight_decay=recipe.weight_decay, momentum=recipe.momentum,
            filter_bias_and_bn=recipe.filter_bias_and_bn, **extra,
        )
    except (ValueError, AssertionError, TypeError) as err:
        raise ImnetError(f"recipe {recipe.name!r}: optimizer {recipe.opt!r} not usable ({err})") from None


def check_schedule(recipe: Recipe) -> int:
    """The epochs the schedule proper spans; ImnetError when a prefixed warm-up leaves none."""
    epochs = recipe.epochs - recipe.warmup_epochs if recipe.warmup_prefix else recipe.epochs
    if epochs < 1:
        raise ImnetError(f"recipe {recipe.name!r}: {recipe.epochs} epochs leave none after the "
                         f"{recipe.warmup_epochs} warm-up epochs (warmup_prefix): train more epochs or "
                         f"--set warmup_epochs=N")
    return epochs


def build_scheduler(optimizer, recipe: Recipe, updates_per_epoch: int):
    """timm's ``create_scheduler_v2`` for the recipe's schedule (stepped per epoch or per update).
    With ``warmup_prefix`` the schedule proper spans the epochs after the warm-up (VanillaNet's
    cosine_scheduler, torchvision's SequentialLR), so ``epochs`` counts both."""
    from timm.scheduler import create_scheduler_v2

    epochs = check_schedule(recipe)
    try:
        scheduler, _ = create_scheduler_v2(
            optimizer, sched=recipe.sched, num_epochs=epochs, decay_epochs=recipe.decay_epochs,
            decay_milestones=list(recipe.decay_milestones), decay_rate=recipe.decay_rate, min_lr=recipe.min_lr,
            warmup_lr=recipe.warmup_lr, warmup_epochs=recipe.warmup_epochs, warmup_prefix=recipe.warmup_prefix,
            step_on_epochs=recipe.step_on_epochs, updates_per_epoch=updates_per_epoch,
        )
    except (ValueError, AssertionError) as err:
        raise ImnetError(f"recipe {recipe.name!r}: scheduler {recipe.sched!r} not usable ({err})") from None
    if scheduler is None:
        raise ImnetError(f"recipe {recipe.name!r}: unknown scheduler {recipe.sched!r} (timm names: cosine, step, multistep, ...)")
    return scheduler


class WeightDecaySchedule:
    """VanillaNet's (BEiT's) weight-decay schedule: ``utils.cosine_scheduler(weight_decay,
    weight_decay_end, epochs, updates_per_epoch)`` without warm-up, set per update on every parameter
    group that decays (weight decay > 0). Stateless: the value follows from the update count."""

    def __init__(self, optimizer, start: float, end: float, total_updates: int) -> None:
        self.optimizer, self.start, self.end, self.total = optimizer, start, end, max(1, total_updates)
        self.groups = [group for group in optimizer.param_groups if group["weight_decay"] > 0]

    def value(self, update: int) -> float:
        progress = min(update, self.total - 1) / self.total
        return self.end + 0.5 * (self.start - self.end) * (1 + math.cos(math.pi * progress))

    def __call__(self, update: int) -> None:
        """Set the weight decay the next update (number ``update``, 0-based) uses."""
        value = self.value(update)
        for group in self.groups:
            group["weight_decay"] = value


def build_weight_decay_schedule(optimizer, recipe: Recipe, updates_per_epoch: int) -> WeightDecaySchedule | None:
    """A :class:`WeightDecaySchedule` when the recipe sets ``weight_decay_end``, else None."""
    if recipe.weight_decay_end is None or recipe.weight_decay_end == recipe.weight_decay:
        return None
    return WeightDecaySchedule(optimizer, recipe.weight_decay, recipe.weight_decay_end,
                               recipe.epochs * updates_per_epoch)


def build_mixup_and_loss(recipe: Recipe, num_classes: int):
    """(timm ``Mixup`` or None, the criterion): BCE, soft-target CE under mixup, label smoothing or CE."""
    from timm.data import Mixup
    from timm.loss import BinaryCrossEntropy, LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

    mixup = None
    if recipe.mixup > 0 or recipe.cutmix > 0:
        mixup = Mixup(
            mixup_alpha=recipe.mixup, cutmix_alpha=recipe.cutmix, prob=recipe.mixup_prob,
            switch_prob=recipe.mixup_switch_prob, label_smoothing=recipe.label_smoothing, num_classes=num_classes,
        )
    if recipe.loss == "bce":
        # with mixup the targets arrive soft (smoothing applied by Mixup); without, BCE smooths itself
        criterion = BinaryCrossEntropy(smoothing=0.0 if mixup else recipe.label_smoothing)
    elif mixup is not None:
        criterion = SoftTargetCrossEntropy()
    elif recipe.label_smoothing > 0:
        criterion = LabelSmoothingCrossEntropy(smoothing=recipe.label_smoothing)
    else:
        criterion = nn.CrossEntropyLoss()
    return mixup, criterion


def set_act_learn(modules: list[nn.Module], lam: float) -> None:
    """Set VanillaNet's deep-training weight on the model (and its EMA copy)."""
    for module in modules:
        if hasattr(module, "change_act"):
            module.change_act(lam)
        else:
            for sub in module.modules():
                if hasattr(sub, "act_learn"):
                    sub.act_learn = lam


def uses_act_learn(model: nn.Module) -> bool:
    """Whether the model has VanillaNet's ``act_learn`` (through ``change_act`` or on a submodule)."""
    return hasattr(model, "change_act") or any(hasattr(m, "act_learn") for m in model.modules())
