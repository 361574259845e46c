"""The pieces a :class:`~imnet.train.recipes.Recipe` selects, all timm's: optimizer, scheduler, mixup /
cutmix and the loss; plus the learning rate rule, the AMP dtype and VanillaNet's ``act_learn``.

Each builder takes the recipe (data) and returns the library object; a recipe field a library refuses
becomes an :class:`ImnetError` naming the recipe and the field's value.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from imnet.errors import ImnetError
from imnet.train.recipes import Recipe


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


def build_optimizer(model: nn.Module, recipe: Recipe, lr: float):
    """timm's ``create_optimizer_v2`` for the recipe's ``opt``, weight decay, momentum and filtering."""
    from timm.optim import create_optimizer_v2

    try:
        return create_optimizer_v2(
            model, opt=recipe.opt, lr=lr, weight_decay=recipe.weight_decay, momentum=recipe.momentum,
            filter_bias_and_bn=recipe.filter_bias_and_bn,
        )
    except (ValueError, AssertionError) as err:
        raise ImnetError(f"recipe {recipe.name!r}: optimizer {recipe.opt!r} not usable ({err})") from None


def build_scheduler(optimizer, recipe: Recipe, updates_per_epoch: int):
    """timm's ``create_scheduler_v2`` for the recipe's schedule (stepped per epoch or per update)."""
    from timm.scheduler import create_scheduler_v2

    try:
        scheduler, _ = create_scheduler_v2(
            optimizer, sched=recipe.sched, num_epochs=recipe.epochs, decay_epochs=recipe.decay_epochs,
            decay_milestones=list(recipe.decay_milestones), decay_rate=recipe.decay_rate, min_lr=recipe.min_lr,
            warmup_lr=recipe.warmup_lr, warmup_epochs=recipe.warmup_epochs,
            step_on_epochs=recipe.step_on_epochs, updates_per_epoch=updates_per_epoch,
        )
    except (ValueError, AssertionError) as err:
        raise ImnetError(f"recipe {recipe.name!r}: scheduler {recipe.sched!r} not usable ({err})") from None
    if scheduler is None:
        raise ImnetError(f"recipe {recipe.name!r}: unknown scheduler {recipe.sched!r} (timm names: cosine, step, multistep, ...)")
    return scheduler


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
