"""Training recipes as data: named :class:`Recipe` literals, recipe files (YAML/JSON) and overrides.

A recipe holds everything that defines *what* is trained (optimizer, schedule, augmentation, loss,
EMA, epochs, per-process batch size); *how* it runs (device, AMP, loader, workers) lives in
:class:`imnet.train.loop.TrainConfig`. Every field can be overridden on the command line with
``--set FIELD=VALUE``; an unknown field is a user error that names the field and the valid ones.

The optimizers, schedulers, mixup/cutmix, label smoothing and EMA these fields select are timm's
(``create_optimizer_v2``, ``create_scheduler_v2``, ``Mixup``, ``ModelEmaV3``); the augmentations
are timm's / torchvision's on the torch loader and DALI's equivalents on DALI (``imnet.data``).

Every zoo model has a default recipe (:data:`MODEL_RECIPES`, :func:`default_recipe`): the command
its seed published, where there is one (VanillaNet-5..10, SimpleNetV1), else ``classic``. Each named
recipe cites its source (:data:`SOURCES`: the command, and per field the flag or default it comes
from), which ``imnet train --show-recipe`` prints beside the fields (:func:`show_recipe`).
"""
from __future__ import annotations

import dataclasses
import difflib
import fnmatch
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
    opt_eps: float | None = None  # optimizer epsilon; None = the optimizer's default
    # layer-wise lr decay: lr x layer_decay^(depth from the head). With layer_decay_layers > 0,
    # VanillaNet's grouping (stem = 0, stages.i = i + 1, cls = layers + 1; its optim_factory.py),
    # else timm's param_groups_layer_decay (models with a group_matcher)
    layer_decay: float = 1.0
    layer_decay_layers: int = 0
    weight_decay_end: float | None = None  # cosine weight-decay schedule to this value, per update
    # schedule (timm name: multistep, step, cosine, ...)
    sched: str = "multistep"
    decay_milestones: tuple[int, ...] = (30, 60, 80)
    decay_epochs: float = 30.0
    decay_rate: float = 0.1
    min_lr: float = 0.0
    warmup_epochs: int = 0
    warmup_lr: float = 1e-5
    warmup_prefix: bool = False  # True: the schedule starts after the warm-up (epochs include both)
    step_on_epochs: bool = True  # False: the lr changes every optimizer step
    # loss and regularization
    loss: str = "ce"  # ce or bce (binary cross-entropy on soft targets, as VanillaNet trains)
    label_smoothing: float = 0.0
    mixup: float = 0.0  # mixup alpha; mixup/cutmix are on when either alpha > 0
    cutmix: float = 0.0
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    drop_rate: float = 0.0  # passed to the model builder when > 0
    drop_rates: tuple[tuple[int, float], ...] = ()  # SimpleNet's per-layer dropout ({layer: rate})
    ema_decay: float = 0.0  # 0 = no model EMA
    # data
    aug: str = "classic"  # classic (resize short side, random crop, flip) or rrc (RandomResizedCrop)
    train_interpolation: str = ""  # the crop's resampler: bilinear, bicubic, random; "" = the model's
    auto_augment: str = ""  # timm RandAugment string ("rand-m7-mstd0.5-inc1"), "ta_wide" or ""
    color_jitter: float = 0.0  # brightness/contrast/saturation strength; only without auto_augment
    reprob: float = 0.0  # random erasing probability per image (timm's RandomErasing)
    remode: str = "pixel"  # erasing fill: const (zeros), rand (a normal colour), pixel (normal noise)
    recount: int = 1  # erasing boxes per image (at most)
    img_size: int | None = None  # train/val crop; None = the model's input size
    train_img_size: int | None = None  # train crop when it differs from the val crop; None = img_size
    val_resize_size: int | None = None  # val resize; None = round(img_size / the model's crop_pct)
    resize_size: int | None = None  # classic train resize; None = round(train crop / 0.875)
    # VanillaNet deep training: act_learn goes 0 -> 1 over act_learn_epochs, then switch_to_deploy
    act_learn_epochs: int = 0
    act_learn_shape: str = "linear"  # linear or cosine
    source: str = ""  # what the values follow (shown by --show-recipe)

    def to_dict(self) -> dict:
        """Plain JSON-able dict of the fields (tuples as lists, drop_rates as a mapping)."""
        out = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
        out["drop_rates"] = {int(k): float(v) for k, v in self.drop_rates}
        return out

    def with_overrides(self, **changes) -> "Recipe":
        """A copy with fields replaced; values are checked against the field types."""
        checked = {name: _coerce(name, value, source=f"--{name.replace('_', '-')} {value}")
                   for name, value in changes.items()}
        return dataclasses.replace(self, **checked)


# name: what it is. Values follow the cited recipes; lr_base is the lr for a global batch of lr_base_size.
RECIPES: dict[str, Recipe] = {
    # pytorch/examples imagenet: SGD momentum 0.9, lr 0.1 x batch/256, wd 1e-4 on all weights, 90 epochs.
    "classic": Recipe(name="classic", source="pytorch/examples imagenet/main.py"),
    "classic-cosine": Recipe(name="classic-cosine", sched="cosine", step_on_epochs=False,
                             source="pytorch/examples imagenet/main.py, cosine per step"),
    # fb.resnet.torch / He et al. 2016 CIFAR ResNets: batch 128, lr 0.1, wd 1e-4, 164 epochs,
    # /10 at 81 and 122, a short low-lr warm-up (linear from 0.01 over the first epoch here).
    "resnet-cifar": Recipe(
        name="resnet-cifar", epochs=164, batch_size=128, lr_base=0.1, lr_base_size=128,
        decay_milestones=(81, 122), warmup_epochs=1, warmup_lr=0.01, source="He et al. 2016 (CIFAR-10 ResNets)",
    ),
    # imnet demo: a few CPU epochs on small generated images.
    "demo": Recipe(
        name="demo", epochs=6, batch_size=32, opt="momentum", lr_base=0.2, lr_base_size=256,
        weight_decay=5e-4, filter_bias_and_bn=True, sched="cosine", warmup_epochs=1, warmup_lr=0.01,
        step_on_epochs=False, label_smoothing=0.1, aug="classic", source="imnet demo",
    ),
}

# huawei-noah/VanillaNet: the README's "Training" command per variant over its main.py defaults.
# Shared by every variant: 8 GPUs x --batch_size 128 (global 1024), 300 epochs, LAMB (--opt_eps
# 1e-8), cosine per step to 1e-6 after 5 warm-up epochs from 0 (utils.cosine_scheduler), BCE on the
# mixup/cutmix targets (smoothing 0.1 folded into them), EMA 0.99996, dropout 0.05, act_learn 0 -> 1
# over --decay_epochs 100 (linear), RandAugment rand-m7-mstd0.5-inc1, bicubic RandomResizedCrop,
# random erasing 0.25 (pixel, 1 box), --color_jitter 0.4 (inert: timm turns it off with a policy).
VANILLANET_VARIANTS = {  # variant: (lr, weight decay, mixup, layer decay, layer decay layers)
    5: (3.5e-3, 0.35, 0.1, 1.0, 0),
    6: (4.8e-3, 0.32, 0.15, 0.8, 4),
    7: (4.7e-3, 0.35, 0.4, 0.8, 5),
    8: (3.5e-3, 0.3, 0.4, 1.0, 0),
    9: (3.5e-3, 0.3, 0.4, 1.0, 0),
    10: (3.5e-3, 0.25, 0.4, 1.0, 0),
}


def _vanillanet(variant: int, name: str) -> Recipe:
    lr, wd, mixup, layer_decay, layers = VANILLANET_VARIANTS[variant]
    return Recipe(
        name=name, epochs=300, batch_size=128, opt="lamb", opt_eps=1e-8, lr_base=lr, lr_base_size=1024,
        weight_decay=wd, filter_bias_and_bn=True, layer_decay=layer_decay, layer_decay_layers=layers,
        sched="cosine", min_lr=1e-6, warmup_epochs=5, warmup_lr=0.0, warmup_prefix=True, step_on_epochs=False,
        loss="bce", label_smoothing=0.1, mixup=mixup, cutmix=1.0, mixup_prob=1.0, mixup_switch_prob=0.5,
        drop_rate=0.05, ema_decay=0.99996, aug="rrc", train_interpolation="bicubic",
        auto_augment="rand-m7-mstd0.5-inc1", color_jitter=0.4, reprob=0.25, remode="pixel", recount=1,
        act_learn_epochs=100, act_learn_shape="linear",
        source=f"huawei-noah/VanillaNet README, Training: VanillaNet-{variant}; main.py defaults (timm 0.6.12)",
    )


for _variant in VANILLANET_VARIANTS:
    RECIPES[f"vanillanet_{_variant}"] = _vanillanet(_variant, f"vanillanet_{_variant}")
RECIPES["vanillanet"] = _vanillanet(5, "vanillanet")  # the README's example command (VanillaNet-5)

# Coderx7/SimpleNet_Pytorch imagenet/training_scripts/imagenet_training (its copy of timm 0.6.1's
# train.py): the README's first command over that train.py's defaults. Unnamed there and taken from
# the defaults: 3 warm-up epochs, label smoothing 0.1, colour jitter 0.4, "random" train
# interpolation, RandomResizedCrop 0.08-1, flip 0.5, no erasing or mixup; rmsproptf's alpha 0.9
# and filter_bias_and_bn come from timm's create_optimizer_v2.
_SIMPLENET = dict(
    epochs=900, batch_size=256, opt="rmsproptf", opt_eps=1e-3, momentum=0.9, lr_base=0.0195, lr_base_size=256,
    weight_decay=3e-5, filter_bias_and_bn=True, sched="step", decay_epochs=1.0, decay_rate=0.981,
    warmup_epochs=3, warmup_lr=1e-3, step_on_epochs=True, label_smoothing=0.1, drop_rate=0.0, ema_decay=0.9999,
    aug="rrc", train_interpolation="random", color_jitter=0.4,
)
# Phase 2 of the README: resumed from checkpoint-251 (timm resumes at epoch 252) with --opt-eps .002,
# --weight-decay 0.00002, --drop-rates '{"11":0.02,"12":0.05,"13":0.05}', --smoothing 0.0 and the same
# step schedule, which at epoch 252 stands at 0.0195 x 0.981^252: continued here as a fresh run of the
# remaining 648 epochs from that lr without warm-up (start it with --init-from PHASE1_RUN).
SIMPLENET_PHASE2_START = 252
RECIPES["simplenetv1"] = Recipe(
    name="simplenetv1", **_SIMPLENET,
    source="Coderx7/SimpleNet_Pytorch imagenet/training_scripts/imagenet_training/README.md (first command); "
           "its train.py (timm 0.6.1) defaults",
)
RECIPES["simplenetv1-small"] = Recipe(
    name="simplenetv1-small", **{**_SIMPLENET, "weight_decay": 1e-5},
    source="Coderx7/SimpleNet_Pytorch training README: the first command with weight decay 1e-5 "
           "(\"the small variants such as 1.5m ones are trained with weight decay of 1e-5\")",
)
RECIPES["simplenetv1-phase2"] = Recipe(
    name="simplenetv1-phase2", **{
        **_SIMPLENET, "epochs": 900 - SIMPLENET_PHASE2_START, "lr_base": 0.0195 * 0.981 ** SIMPLENET_PHASE2_START,
        "warmup_epochs": 0, "opt_eps": 2e-3, "weight_decay": 2e-5, "label_smoothing": 0.0,
        "drop_rates": ((11, 0.02), (12, 0.05), (13, 0.05))},
    source="Coderx7/SimpleNet_Pytorch training README (second command: resume at epoch 252 with dropout)",
)

# torchvision references/classification: the "new recipe" (ResNet-50 IMAGENET1K_V2, 80.858 top-1):
# torchrun --nproc_per_node=8 train.py --model resnet50 --batch-size 128 --lr 0.5 --lr-scheduler
# cosineannealinglr --lr-warmup-epochs 5 --lr-warmup-method linear --auto-augment ta_wide --epochs 600
# --random-erase 0.1 --weight-decay 0.00002 --norm-weight-decay 0.0 --label-smoothing 0.1 --mixup-alpha
# 0.2 --cutmix-alpha 1.0 --train-crop-size 176 --model-ema --val-resize-size 232 --ra-sampler --ra-reps 4
# over train.py's defaults (SGD momentum 0.9, --lr-warmup-decay 0.01, --lr-min 0, bilinear,
# --model-ema-steps 32, --model-ema-decay 0.99998). Its EMA updates every 32 steps with decay
# 1 - (1 - 0.99998) x 1024 x 32 / 600; per step that is the 32nd root, TORCHVISION_EMA_DECAY.
TORCHVISION_EMA_DECAY = (1.0 - (1.0 - 0.99998) * 1024 * 32 / 600) ** (1 / 32)
RECIPES["torchvision"] = Recipe(
    name="torchvision", epochs=600, batch_size=128, opt="momentum", momentum=0.9, lr_base=0.5, lr_base_size=1024,
    weight_decay=2e-5, filter_bias_and_bn=True, sched="cosine", min_lr=0.0, warmup_epochs=5, warmup_lr=0.5 * 0.01,
    warmup_prefix=True, step_on_epochs=True, label_smoothing=0.1, mixup=0.2, cutmix=1.0, mixup_prob=1.0,
    mixup_switch_prob=0.5, ema_decay=round(TORCHVISION_EMA_DECAY, 8), aug="rrc", train_interpolation="bilinear",
    auto_augment="ta_wide", reprob=0.1, remode="const", recount=1, train_img_size=176, val_resize_size=232,
    source="torchvision references/classification, the new recipe (ResNet-50 IMAGENET1K_V2); train.py defaults",
)

# Where each named recipe's values come from: the command it follows, and per field the flag or the
# default of the source's script that sets it (what `imnet train --show-recipe` prints beside it).
@dataclass(frozen=True)
class Source:
    command: str
    fields: dict
    run_options: str = ""  # flags of the command that are imnet train options, not recipe fields


def _vanillanet_source(variant: int) -> Source:
    lr, wd, mixup, layer_decay, layers = VANILLANET_VARIANTS[variant]
    lr = f"{lr * 1000:g}e-3"  # as the README writes it
    decay = f"--layer_decay {layer_decay} --layer_decay_num_layers {layers} " if layers else ""
    command = (f"python -m torch.distributed.launch --nproc_per_node=8 main.py --model vanillanet_{variant} "
               f"--data_path /path/to/imagenet-1k --batch_size 128 --update_freq 1 --epochs 300 --decay_epochs 100 "
               f"--lr {lr} --weight_decay {wd} --drop 0.05 {decay}--opt lamb --aa rand-m7-mstd0.5-inc1 "
               f"--mixup {mixup} --bce_loss --output_dir /path/to/save_results --model_ema true "
               f"--model_ema_eval true --model_ema_decay 0.99996 --use_amp true")
    return Source(command, {
        "epochs": "--epochs 300", "batch_size": "--batch_size 128 per GPU, 8 GPUs (global 1024)",
        "accum_steps": "--update_freq 1", "opt": "--opt lamb", "opt_eps": "main.py --opt_eps default 1e-8",
        "lr_base": f"--lr {lr}, the lr at the README's global batch 1024",
        "lr_base_size": "8 GPUs x --batch_size 128 x --update_freq 1",
        "weight_decay": f"--weight_decay {wd}",
        "filter_bias_and_bn": "optim_factory.get_parameter_groups: no decay on 1-D weights and biases",
        "layer_decay": f"--layer_decay {layer_decay}" if layers else "main.py --layer_decay default 1.0 (off)",
        "layer_decay_layers": f"--layer_decay_num_layers {layers} (stem, stages, cls: main.py's assigner)"
                              if layers else "(no layer decay)",
        "weight_decay_end": "main.py --weight_decay_end default None: constant weight decay",
        "sched": "utils.cosine_scheduler", "min_lr": "main.py --min_lr default 1e-6",
        "warmup_epochs": "main.py --warmup_epochs default 5",
        "warmup_lr": "cosine_scheduler's start_warmup_value 0", "warmup_prefix": "cosine over the 295 epochs after it",
        "step_on_epochs": "lr set every step", "loss": "--bce_loss",
        "label_smoothing": "main.py --smoothing default 0.1, folded into the mixup targets",
        "mixup": f"--mixup {mixup}", "cutmix": "main.py --cutmix default 1.0",
        "mixup_prob": "main.py --mixup_prob default 1.0", "mixup_switch_prob": "main.py --mixup_switch_prob default 0.5",
        "drop_rate": "--drop 0.05", "ema_decay": "--model_ema true --model_ema_decay 0.99996 (--model_ema_eval true)",
        "aug": "timm create_transform: RandomResizedCrop 0.08-1, flip 0.5",
        "train_interpolation": "main.py --train_interpolation default bicubic",
        "auto_augment": "--aa rand-m7-mstd0.5-inc1",
        "color_jitter": "main.py --color_jitter default 0.4; inert: timm 0.6.12 applies it only without --aa",
        "reprob": "main.py --reprob default 0.25", "remode": "main.py --remode default pixel",
        "recount": "main.py --recount default 1", "img_size": "main.py --input_size default 224 (the model's)",
        "act_learn_epochs": "--decay_epochs 100", "act_learn_shape": "main.py --decay_linear default True",
    }, run_options="--use_amp true: imnet train --amp (bf16 on GPU by default; the seed ran fp16 autocast)")


_SIMPLENET_COMMAND = (
    "./distributed_train.sh 1 /media/hossein/SSD_IMG/ImageNet_DataSet/ --model simplenet --netidx 0 --netscale 1.0 "
    "--netmode 2 -b 256 --sched step --epochs 900 --decay-epochs 1 --decay-rate 0.981 --opt rmsproptf --opt-eps .001 "
    "-j 20 --warmup-lr 1e-3 --weight-decay 0.00003 --drop 0.0 --amp --lr .0195 --pin-mem --channels-last --model-ema "
    "--model-ema-decay 0.9999")
_SIMPLENET_FIELDS = {
    "epochs": "--epochs 900", "batch_size": "-b 256 on 1 GPU", "opt": "--opt rmsproptf (timm: alpha 0.9)",
    "opt_eps": "--opt-eps .001", "momentum": "train.py --momentum default 0.9",
    "lr_base": "--lr .0195 at batch 256", "lr_base_size": "-b 256 x 1 GPU",
    "weight_decay": "--weight-decay 0.00003",
    "filter_bias_and_bn": "timm create_optimizer_v2 default: no decay on 1-D weights and biases",
    "sched": "--sched step", "decay_epochs": "--decay-epochs 1", "decay_rate": "--decay-rate 0.981",
    "warmup_epochs": "train.py --warmup-epochs default 3", "warmup_lr": "--warmup-lr 1e-3",
    "step_on_epochs": "timm's step scheduler steps per epoch", "label_smoothing": "train.py --smoothing default 0.1",
    "drop_rate": "--drop 0.0", "ema_decay": "--model-ema --model-ema-decay 0.9999",
    "aug": "timm RandomResizedCropAndInterpolation 0.08-1 (train.py --scale/--ratio defaults), --hflip 0.5",
    "train_interpolation": "train.py --train-interpolation default random",
    "color_jitter": "train.py --color-jitter default 0.4 (applied: no --aa)", "auto_augment": "train.py --aa default None",
    "reprob": "train.py --reprob default 0", "mixup": "train.py --mixup default 0", "cutmix": "train.py --cutmix default 0",
    "img_size": "the model's 224",
}
SOURCES: dict[str, Source] = {
    **{f"vanillanet_{v}": _vanillanet_source(v) for v in VANILLANET_VARIANTS},
    "vanillanet": _vanillanet_source(5),
    "simplenetv1": Source(_SIMPLENET_COMMAND, _SIMPLENET_FIELDS,
                          run_options="--amp --channels-last: imnet train --amp, --channels-last"),
    "simplenetv1-small": Source(_SIMPLENET_COMMAND.replace("0.00003", "0.00001"),
                                {**_SIMPLENET_FIELDS, "weight_decay": "1e-5, the README's small variants"},
                                run_options="--amp --channels-last: imnet train --amp, --channels-last"),
    "simplenetv1-phase2": Source(
        _SIMPLENET_COMMAND.replace("--opt-eps .001", "--opt-eps .002").replace("0.00003", "0.00002")
        + " --resume output/train/.../checkpoint-251.pth --drop-rates '{\"11\":0.02,\"12\":0.05,\"13\":0.05}' "
          "--smoothing 0.0",
        {**_SIMPLENET_FIELDS, "opt_eps": "--opt-eps .002", "weight_decay": "--weight-decay 0.00002",
         "drop_rates": "--drop-rates '{\"11\":0.02,\"12\":0.05,\"13\":0.05}'", "label_smoothing": "--smoothing 0.0",
         "epochs": f"epochs {SIMPLENET_PHASE2_START}..899 of --epochs 900",
         "lr_base": f"--lr .0195 x 0.981^{SIMPLENET_PHASE2_START}: the step schedule at the resumed epoch",
         "warmup_epochs": "none: a resumed schedule is past its warm-up"},
        run_options="--resume checkpoint-251: imnet train --init-from PHASE1_RUN (weights only: the optimizer "
                    "and EMA state start fresh); --amp --channels-last: imnet train options"),
    "torchvision": Source(
        "torchrun --nproc_per_node=8 train.py --model $MODEL --batch-size 128 --lr 0.5 --lr-scheduler "
        "cosineannealinglr --lr-warmup-epochs 5 --lr-warmup-method linear --auto-augment ta_wide --epochs 600 "
        "--random-erase 0.1 --weight-decay 0.00002 --norm-weight-decay 0.0 --label-smoothing 0.1 --mixup-alpha 0.2 "
        "--cutmix-alpha 1.0 --train-crop-size 176 --model-ema --val-resize-size 232 --ra-sampler --ra-reps 4", {
            "epochs": "--epochs 600", "batch_size": "--batch-size 128 per GPU, 8 GPUs (global 1024)",
            "opt": "train.py --opt default sgd: torch SGD, no Nesterov", "momentum": "train.py --momentum default 0.9",
            "lr_base": "--lr 0.5 at the global batch 1024", "lr_base_size": "8 GPUs x --batch-size 128",
            "weight_decay": "--weight-decay 0.00002",
            "filter_bias_and_bn": "--norm-weight-decay 0.0 (torchvision still decays conv/linear biases)",
            "sched": "--lr-scheduler cosineannealinglr (per epoch)", "min_lr": "train.py --lr-min default 0",
            "warmup_epochs": "--lr-warmup-epochs 5 --lr-warmup-method linear",
            "warmup_lr": "train.py --lr-warmup-decay default 0.01 x --lr 0.5",
            "warmup_prefix": "cosine over the 595 epochs after the warm-up (SequentialLR)",
            "label_smoothing": "--label-smoothing 0.1", "mixup": "--mixup-alpha 0.2", "cutmix": "--cutmix-alpha 1.0",
            "mixup_prob": "RandomMixup / RandomCutmix with p 1.0, one of them per batch",
            "ema_decay": "--model-ema, train.py --model-ema-steps 32 --model-ema-decay 0.99998: "
                         "1 - 2e-5 x 1024 x 32 / 600 every 32 steps, as a per-step decay",
            "aug": "RandomResizedCrop, RandomHorizontalFlip", "train_interpolation": "train.py --interpolation default bilinear",
            "auto_augment": "--auto-augment ta_wide (TrivialAugmentWide)", "reprob": "--random-erase 0.1",
            "remode": "torchvision RandomErasing: value 0", "train_img_size": "--train-crop-size 176",
            "val_resize_size": "--val-resize-size 232 (--val-crop-size default 224)",
        }, run_options="--ra-sampler --ra-reps 4: not reproduced (imnet has no repeated-augmentation sampler)"),
    "classic": Source("python main.py -a ARCH --lr 0.1 --momentum 0.9 --wd 1e-4 --epochs 90 -b 256 /path/to/imagenet", {
        "epochs": "--epochs 90", "lr_base": "--lr 0.1 at -b 256", "lr_base_size": "-b 256 (over all GPUs)",
        "momentum": "--momentum 0.9", "weight_decay": "--wd 1e-4 on every weight",
        "decay_milestones": "StepLR(step_size=30, gamma=0.1): /10 at 30, 60 (and 80 here)",
        "aug": "RandomResizedCrop(224), RandomHorizontalFlip"}),
}


# Each zoo model's default recipe: the first pattern its name matches (fnmatch). VanillaNet-11..13 and
# the 1.5x variants have no published command (the README's catalog: "Training Code of VanillaNet-11 to
# VanillaNet-13" not released): they take VanillaNet-10's, the nearest published one.
MODEL_RECIPES: tuple[tuple[str, str], ...] = (
    *((f"vanillanet_{v}", f"vanillanet_{v}") for v in VANILLANET_VARIANTS),
    ("vanillanet_*", "vanillanet_10"),
    ("simplenetv1_small_*", "simplenetv1-small"),
    ("simplenetv1_*", "simplenetv1"),
    ("*", "classic"),
)
UNPUBLISHED = {  # model pattern: why its default recipe is not its own published command
    "vanillanet_1[123]*": "the VanillaNet README publishes no training command for VanillaNet-11..13 or the 1.5x "
                          "variants (its catalog leaves their training code unreleased); VanillaNet-10's is used",
}


def default_recipe(arch: str | None) -> str:
    """The name of ``arch``'s default recipe (:data:`MODEL_RECIPES`); ``classic`` without an arch."""
    for pattern, name in MODEL_RECIPES:
        if arch and fnmatch.fnmatchcase(arch, pattern):
            return name
    return "classic"


def default_recipe_note(arch: str | None) -> str:
    """Why ``arch``'s default recipe is not its own published command, or ""."""
    return next((why for pattern, why in UNPUBLISHED.items() if arch and fnmatch.fnmatchcase(arch, pattern)), "")


# String fields with a closed set of values (opt and sched are checked by timm when they are built).
CHOICES = {"loss": ("ce", "bce"), "aug": ("classic", "rrc"), "act_learn_shape": ("linear", "cosine"),
           "remode": ("const", "rand", "pixel"),
           "train_interpolation": ("", "nearest", "bilinear", "bicubic", "lanczos", "random")}
FIELDS = tuple(f.name for f in dataclasses.fields(Recipe))
_HINTS = typing.get_type_hints(Recipe)


def _unknown(name: str, source: str) -> ImnetError:
    close = difflib.get_close_matches(name, FIELDS, n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return ImnetError(f"{source}: unknown recipe field {name!r}{hint}; valid fields: {', '.join(FIELDS)}")


# Integer fields that must be positive.
AT_LEAST_ONE = frozenset({"epochs", "batch_size", "accum_steps", "lr_base_size", "img_size", "resize_size",
                          "train_img_size", "val_resize_size", "recount"})


def _coerce(name: str, value, source: str):
    """Check ``value`` against the type of field ``name``; strings are parsed as YAML scalars/lists."""
    if name not in _HINTS:
        raise _unknown(name, source)
    hint = _HINTS[name]
    if name == "drop_rates":
        return _drop_rates(value, source)
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
        if name == "auto_augment" and value not in ("", "ta_wide"):
            from imnet.data.transforms import parse_rand_augment

            try:
                parse_rand_augment(value)
            except ImnetError as err:
                raise ImnetError(f"{source}: {err} (or ta_wide, or empty for none)") from None
        return value
    raise AssertionError(f"unhandled recipe field type {hint}")  # a bug: a field type nobody parses


def _drop_rates(value, source: str) -> tuple[tuple[int, float], ...]:
    """``{layer: rate}`` (a mapping, its JSON text, "11:0.02,12:0.05" or pairs) as sorted pairs."""
    wanted = f"{source}: recipe field 'drop_rates' wants {{layer: rate}}, e.g. 11:0.02,12:0.05; got {value!r}"
    try:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("{"):
                value = json.loads(text)
            else:  # "11:0.02,12:0.05" (not YAML: it reads 11:0.02 as a base-60 number)
                value = [item.split(":", 1) for item in text.split(",") if item.strip()]
        if isinstance(value, dict):
            value = list(value.items())
        pairs = tuple(sorted((int(layer), float(rate)) for layer, rate in (value or [])))
    except (TypeError, ValueError):  # JSONDecodeError is a ValueError
        raise ImnetError(wanted) from None
    if any(not 0 <= rate < 1 for _, rate in pairs):
        raise ImnetError(f"{source}: recipe field 'drop_rates' wants rates in [0, 1), got {dict(pairs)}")
    return pairs


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


def show_recipe(recipe: Recipe, arch: str | None = None) -> str:
    """The resolved ``recipe`` as YAML, each field with the flag or default of its source command
    that sets it, after comment lines naming the source, its command and what was changed from it."""
    source = SOURCES.get(recipe.name)
    named = RECIPES.get(recipe.name)
    lines = [f"# recipe {recipe.name}" + (f" (default of {arch})" if arch and default_recipe(arch) == recipe.name else "")
             + (f": {recipe.source}" if recipe.source else "")]
    note = default_recipe_note(arch)
    if note:
        lines.append(f"# note: {note}")
    if source is not None:
        lines.append(f"# command: {source.command}")
        if source.run_options:
            lines.append(f"# run options: {source.run_options}")
    changed = [name for name in FIELDS if named is not None and getattr(recipe, name) != getattr(named, name)]
    if changed:
        lines.append("# changed from the named recipe: " + ", ".join(f"{name}={getattr(recipe, name)!r}" for name in changed))
    for name, value in recipe.to_dict().items():
        text = f"{name}: " + yaml.safe_dump([value], default_flow_style=True, width=1000).strip()[1:-1]
        flag = source.fields.get(name) if source is not None and name not in changed else None
        lines.append(f"{text:<40}  # {flag}" if flag else text)
    return "\n".join(lines) + "\n"


def act_learn_lambda(recipe: Recipe, epoch: int) -> float:
    """VanillaNet's deep-training weight for ``epoch`` (0-based): 0 -> 1 over ``act_learn_epochs``."""
    if recipe.act_learn_epochs <= 0:
        return 1.0
    progress = min(1.0, epoch / recipe.act_learn_epochs)
    if recipe.act_learn_shape == "cosine":
        return 0.5 * (1.0 - math.cos(math.pi * progress))
    return progress


__all__ = ["Recipe", "RECIPES", "FIELDS", "MODEL_RECIPES", "SOURCES", "default_recipe", "default_recipe_note",
           "load_recipe", "parse_override", "recipe_from_dict", "show_recipe", "act_learn_lambda"]
