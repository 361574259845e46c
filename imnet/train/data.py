"""A run's data: the class count of the prepared tree and its train / val loaders (``imnet.data``)."""
from __future__ import annotations

from pathlib import Path

from imnet.distributed import DistContext
from imnet.errors import ImnetError
from imnet.train.recipes import Recipe


def count_classes(data: Path) -> int:
    """Number of classes of a prepared tree: the rows of ``DATA/meta/classes.tsv``."""
    classes = data / "meta" / "classes.tsv"
    if not data.is_dir():
        raise ImnetError(f"{data}: data directory not found; prepare one with `imnet prep --dst {data}`")
    if not classes.is_file():
        raise ImnetError(f"{classes}: not found; {data} is not a prepared tree (run `imnet prep`)")
    for split in ("train", "val"):
        if not (data / "meta" / f"{split}.txt").is_file():
            raise ImnetError(f"{data / 'meta' / f'{split}.txt'}: not found; the {split} split is not prepared")
    rows = [line for line in classes.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not rows:
        raise ImnetError(f"{classes}: no classes listed")
    return len(rows)


def build_loaders(data: Path, recipe: Recipe, model_cfg, img_size: int, ctx: DistContext, *,
                  loader: str, workers: int | None, seed: int, channels_last: bool = False):
    """The run's (train loader, 1-crop val loader), sharded for ``ctx``'s rank, in the memory format
    the model runs in. The train loader crops ``recipe.train_img_size`` (else ``img_size``) with the
    recipe's augmentation (crop, train interpolation, auto-augment or colour jitter, random
    erasing); the val loader resizes to ``recipe.val_resize_size`` (else ``img_size / crop_pct``)
    and takes the centre ``img_size`` crop with the model's interpolation. Each is built once and
    serves every epoch (DALI: one pipeline each for the run; torch: persistent train workers, val
    workers per pass)."""
    from imnet.data import build_eval_loader, build_train_loader

    train_size = recipe.train_img_size or img_size
    resize = recipe.resize_size or round(train_size / 0.875)
    common = dict(
        mean=model_cfg.mean, std=model_cfg.std, workers=workers, loader=loader, device=str(ctx.device),
        rank=ctx.rank, world_size=ctx.world_size, channels_last=channels_last,
    )
    train_loader = build_train_loader(
        data, crop_size=train_size, resize_size=resize, aug=recipe.aug, batch_size=recipe.batch_size,
        seed=seed, interpolation=recipe.train_interpolation or model_cfg.interpolation,
        auto_augment=recipe.auto_augment, color_jitter=recipe.color_jitter, reprob=recipe.reprob,
        remode=recipe.remode, recount=recipe.recount, **common,
    )
    val_loader = build_eval_loader(
        data, "val", crop_size=img_size, resize_size=recipe.val_resize_size or round(img_size / model_cfg.crop_pct),
        crops=1, batch_size=recipe.batch_size * 2, interpolation=model_cfg.interpolation, **common,
    )
    return train_loader, val_loader
