"""The training loop: any zoo model on a prepared tree, as a plain process or under ``torchrun``.

``train(TrainConfig) -> Path`` builds the model (``imnet.zoo``), the loaders (``imnet.data``), timm's
optimizer / scheduler / mixup / loss / EMA from the :class:`~imnet.train.recipes.Recipe`, then runs
epochs of: train (tqdm bar on rank 0), a 1-crop val pass, an atomic checkpoint (``last.pth``, and
``best.pth`` when top-1 improves), a row of ``summary.csv`` and an updated ``run.json``.

Distributed: under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) it joins the process group
torchrun set up (NCCL on GPU, gloo on CPU), wraps the model in DDP and shards the loaders per rank;
rank 0 alone shows progress and writes files. Nothing here does its own rendezvous.

Resume: ``TrainConfig(resume=RUN_DIR)`` reloads ``RUN_DIR/last.pth`` (model, optimizer, scheduler,
scaler, EMA, per-rank RNG states, epoch and loader position) and continues. With ``deterministic``
on CPU, an interrupted and resumed run ends bitwise equal to an uninterrupted one.
"""
from __future__ import annotations

import copy
import csv
import dataclasses
import io
import math
import os
import random
import signal
import sys
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from imnet.distributed import DistContext, init_distributed
from imnet.errors import ImnetError
from imnet.train.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    read_run_record,
    restore_rng_state,
    save_checkpoint,
    write_run_record,
    write_text_atomic,
)
from imnet.train.recipes import RECIPES, Recipe, act_learn_lambda, recipe_from_dict

SUMMARY_COLUMNS = (
    "epoch", "train_loss", "val_loss", "top1", "top5", "ema_top1", "ema_top5", "lr", "act_learn",
    "images_per_sec", "epoch_time_s", "val_time_s",
)


class TrainingDiverged(ImnetError):
    """The loss became NaN or infinite; the run stopped and its last good checkpoint was kept."""


@dataclass
class TrainConfig:
    """One training run: what to train (``arch``, ``data``, ``recipe``) and how to run it.

    ``out`` is the run directory (default ``runs/<arch>-<UTC time>``). ``resume`` names a run
    directory to continue; its ``run.json`` then supplies arch, data, recipe and seed.
    ``stop_after_epochs`` / ``stop_after_updates`` end the run early as an interruption would (a
    checkpoint, ``finished: false``), for tests and for time-sliced clusters.
    """

    arch: str | None = None
    data: Path | None = None
    out: Path | None = None
    recipe: Recipe = field(default_factory=lambda: RECIPES["classic"])
    loader: str = "auto"  # dali, torch or auto (see imnet.data)
    workers: int | None = None
    device: str = "auto"  # auto (cuda when present), cuda or cpu
    amp: str = "auto"  # auto (bf16 on GPU, none on CPU), none, bf16, fp16
    channels_last: bool = False
    compile: bool = False
    deterministic: bool = False
    seed: int = 0
    resume: Path | None = None
    init_from: str | None = None  # "official" or a checkpoint / run directory to fine-tune from
    stop_after_epochs: int | None = None
    stop_after_updates: int | None = None
    progress: bool = True
    log_interval: int = 10  # optimizer steps between loss syncs (progress bar, NaN check)


# ---------------------------------------------------------------------------------------------------
# process group and device


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ImnetError("--device cuda: no CUDA GPU is visible to this process; use --device cpu")
    if name not in {"cpu", "cuda"}:
        raise ImnetError(f"--device {name!r}: expected auto, cuda or cpu")
    return torch.device(name)


def _init_distributed(device_name: str) -> DistContext:
    """Join torchrun's process group when there is one (NCCL on GPU, gloo on CPU)."""
    return init_distributed(str(_resolve_device(device_name)))


def _broadcast_object(ctx: DistContext, value):
    if not ctx.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _gather_objects(ctx: DistContext, value) -> list:
    if not ctx.distributed:
        return [value]
    out = [None] * ctx.world_size
    dist.all_gather_object(out, value)
    return out


def _all_reduce(ctx: DistContext, tensor: torch.Tensor, op=None) -> torch.Tensor:
    if ctx.distributed:
        dist.all_reduce(tensor, op=op or dist.ReduceOp.SUM)
    return tensor


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _set_determinism(deterministic: bool, device: torch.device) -> None:
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True


# ---------------------------------------------------------------------------------------------------
# the pieces the recipe selects (all timm)


def _amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
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


def _global_lr(recipe: Recipe, global_batch: int) -> float:
    return recipe.lr if recipe.lr is not None else recipe.lr_base * global_batch / recipe.lr_base_size


def _build_optimizer(model: nn.Module, recipe: Recipe, lr: float):
    from timm.optim import create_optimizer_v2

    try:
        return create_optimizer_v2(
            model, opt=recipe.opt, lr=lr, weight_decay=recipe.weight_decay, momentum=recipe.momentum,
            filter_bias_and_bn=recipe.filter_bias_and_bn,
        )
    except (ValueError, AssertionError) as err:
        raise ImnetError(f"recipe {recipe.name!r}: optimizer {recipe.opt!r} not usable ({err})") from None


def _build_scheduler(optimizer, recipe: Recipe, updates_per_epoch: int):
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


def _build_mixup_and_loss(recipe: Recipe, num_classes: int):
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


def _set_act_learn(modules: list[nn.Module], lam: float) -> None:
    """Set VanillaNet's deep-training weight on the model (and its EMA copy)."""
    for module in modules:
        if hasattr(module, "change_act"):
            module.change_act(lam)
        else:
            for sub in module.modules():
                if hasattr(sub, "act_learn"):
                    sub.act_learn = lam


def _uses_act_learn(model: nn.Module) -> bool:
    return hasattr(model, "change_act") or any(hasattr(m, "act_learn") for m in model.modules())


# ---------------------------------------------------------------------------------------------------
# data


def _count_classes(data: Path) -> int:
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


def _build_loaders(config: TrainConfig, data: Path, recipe: Recipe, model_cfg, img_size: int, ctx: DistContext):
    from imnet.data import build_eval_loader, build_train_loader

    resize = recipe.resize_size or round(img_size / 0.875)
    common = dict(
        interpolation=model_cfg.interpolation, mean=model_cfg.mean, std=model_cfg.std, workers=config.workers,
        loader=config.loader, device=str(ctx.device), rank=ctx.rank, world_size=ctx.world_size,
    )
    train_loader = build_train_loader(
        data, crop_size=img_size, resize_size=resize, aug=recipe.aug, batch_size=recipe.batch_size,
        seed=config.seed, **common,
    )
    val_loader = build_eval_loader(
        data, "val", crop_size=img_size, resize_size=round(img_size / model_cfg.crop_pct), crops=1,
        batch_size=recipe.batch_size * 2, **common,
    )
    return train_loader, val_loader


# ---------------------------------------------------------------------------------------------------
# the run


@dataclass
class _Best:
    top1: float = -1.0
    top5: float = 0.0
    epoch: int = 0
    source: str = "model"


class _StopRequest:
    """SIGTERM/SIGINT during training: finish the step, checkpoint, stop (resumable)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "_StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:  # a second signal: give up at once
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def train(config: TrainConfig) -> Path:
    """Train ``config.arch`` on the prepared tree ``config.data``; returns the run directory.

    The directory holds ``run.json`` (``{"arch", "finished", ...}``), ``last.pth``, ``best.pth``,
    ``summary.csv`` and, for models with ``switch_to_deploy``, ``deploy.pth``. A resumed run that is
    already finished returns at once. User errors raise :class:`ImnetError`; a NaN/inf loss raises
    :class:`TrainingDiverged` after keeping the last good checkpoint.
    """
    ctx = _init_distributed(config.device)
    # --deterministic changes process-wide switches; put them back for a library caller.
    saved = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
             torch.backends.cudnn.deterministic)
    try:
        return _Run(config, ctx).run()
    finally:
        torch.use_deterministic_algorithms(saved[0])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[1], saved[2]
        ctx.close()


def _log(ctx: DistContext, message: str) -> None:
    if ctx.is_main:
        tqdm.write(message, file=sys.stderr)


class _Run:
    def __init__(self, config: TrainConfig, ctx: DistContext) -> None:
        self.config = config
        self.ctx = ctx
        self.device = torch.device(ctx.device)

    # ---- setup -----------------------------------------------------------------------------------
    def _resolve_run(self) -> tuple[Path, dict | None]:
        """The run directory, and the stored record when resuming."""
        config = self.config
        if config.resume is not None:
            run_dir = Path(config.resume)
            record = read_run_record(run_dir)
            if config.arch and config.arch != record["arch"]:
                raise ImnetError(f"{run_dir / 'run.json'}: run is for arch {record['arch']!r}, not {config.arch!r}")
            return run_dir, record
        if not config.arch:
            raise ImnetError("--arch is required (or --resume RUN_DIR)")
        if config.data is None:
            raise ImnetError("--data is required: a tree prepared by `imnet prep`")
        if config.out is not None:
            run_dir = Path(config.out)
        else:
            stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
            run_dir = Path("runs") / f"{config.arch.replace('/', '_')}-{stamp}"
        run_dir = Path(_broadcast_object(self.ctx, str(run_dir)))
        if (run_dir / "run.json").exists() or (run_dir / "last.pth").exists():
            raise ImnetError(
                f"{run_dir}: already holds an `imnet train` run; continue it with --resume {run_dir} "
                "or choose another --out"
            )
        return run_dir, None

    def run(self) -> Path:
        config, ctx = self.config, self.ctx
        run_dir, record = self._resolve_run()
        if record is not None and record.get("finished"):
            _log(ctx, f"{run_dir}: run already finished ({record.get('completed_epochs')} epochs); nothing to do")
            return run_dir
        if record is not None:
            arch = record["arch"]
            data = Path(config.data) if config.data is not None else Path(record["data"])
            recipe = recipe_from_dict(record["recipe"], source=str(run_dir / "run.json"))
            seed = int(record.get("seed", 0))
            deterministic = bool(record.get("deterministic", False)) or config.deterministic
            channels_last = bool(record.get("channels_last", config.channels_last))
        else:
            arch, data, recipe = config.arch, Path(config.data), config.recipe
            seed, deterministic, channels_last = config.seed, config.deterministic, config.channels_last
        self.run_dir, self.arch, self.data, self.recipe = run_dir, arch, data, recipe
        self.seed, self.channels_last = seed, channels_last

        import imnet.zoo as zoo

        model_cfg = zoo.get_config(arch)
        num_classes = _count_classes(data)
        img_size = recipe.img_size or int(model_cfg.input_size[-1])
        self.model_cfg, self.num_classes, self.img_size = model_cfg, num_classes, img_size
        amp_dtype = _amp_dtype(config.amp, self.device)
        _set_determinism(deterministic, self.device)

        # Same seed on every rank for the model's init (DDP broadcasts rank 0's anyway), then one
        # stream per rank so augmentation and mixup differ across ranks.
        _seed_everything(seed)
        build_kwargs = {"drop_rate": recipe.drop_rate} if recipe.drop_rate > 0 else {}
        model = zoo.create_model(arch, num_classes=num_classes, **build_kwargs).to(self.device)
        init_from = None
        if record is None and config.init_from:
            from imnet.zoo.weights import initialise_from

            # Local rank 0 loads (and fetches) first; the other ranks then find the file cached.
            if ctx.local_rank != 0:
                ctx.barrier()
            init_from = initialise_from(model, model_cfg, config.init_from, progress=ctx.is_main)
            if ctx.local_rank == 0:
                ctx.barrier()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        _seed_everything(seed + ctx.rank)

        train_loader, val_loader = _build_loaders(config, data, recipe, model_cfg, img_size, ctx)
        steps = torch.tensor([len(train_loader)], device=self.device)
        steps_per_epoch = int(_all_reduce(ctx, steps, dist.ReduceOp.MIN if ctx.distributed else None).item())
        if steps_per_epoch < 1:
            raise ImnetError(
                f"{data}: the train split gives no full batch of {recipe.batch_size} per process; lower --batch-size"
            )
        accum = max(1, recipe.accum_steps)
        updates_per_epoch = math.ceil(steps_per_epoch / accum)
        global_batch = recipe.batch_size * ctx.world_size * accum
        lr = _global_lr(recipe, global_batch)

        optimizer = _build_optimizer(model, recipe, lr)
        scheduler = _build_scheduler(optimizer, recipe, updates_per_epoch)
        mixup, criterion = _build_mixup_and_loss(recipe, num_classes)
        if mixup is not None and recipe.batch_size % 2:
            raise ImnetError(f"recipe {recipe.name!r}: mixup/cutmix need an even --batch-size, got {recipe.batch_size}")
        scaler = torch.amp.GradScaler(self.device.type, enabled=amp_dtype == torch.float16)
        ema = None
        if recipe.ema_decay > 0:
            from timm.utils import ModelEmaV3

            ema = ModelEmaV3(model, decay=recipe.ema_decay)
        act_learn = recipe.act_learn_epochs > 0 and _uses_act_learn(model)

        net: nn.Module = model
        self.ddp = None
        if ctx.distributed:
            net = self.ddp = nn.parallel.DistributedDataParallel(
                model, device_ids=[ctx.local_rank] if self.device.type == "cuda" else None
            )
        if config.compile:
            net = torch.compile(net)

        self.model, self.net, self.ema = model, net, ema
        self.optimizer, self.scheduler, self.scaler = optimizer, scheduler, scaler
        self.mixup, self.criterion, self.amp_dtype = mixup, criterion, amp_dtype
        self.train_loader, self.val_loader = train_loader, val_loader
        self.steps_per_epoch, self.accum, self.lr = steps_per_epoch, accum, lr
        self.act_learn = act_learn
        self.history: list[dict] = []
        self.best = _Best()
        self.num_updates = 0
        start_epoch, position = 0, 0
        partial = None
        epoch_rng = None

        if ctx.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
        self.record = {
            "arch": arch,
            "finished": False,
            "init_from": init_from if record is None else record.get("init_from"),
            "data": str(data),
            "num_classes": num_classes,
            "img_size": img_size,
            "crop_pct": model_cfg.crop_pct,
            "epochs": recipe.epochs,
            "completed_epochs": 0,
            "best_epoch": None,
            "best_top1": None,
            "best_top5": None,
            "best_source": None,
            "checkpoint": "best.pth",
            "world_size": ctx.world_size,
            "global_batch": global_batch,
            "lr": lr,
            "seed": seed,
            "deterministic": deterministic,
            "channels_last": channels_last,
            "amp": str(amp_dtype).replace("torch.", "") if amp_dtype else "none",
            "loader": getattr(train_loader, "name", config.loader),
            "recipe": recipe.to_dict(),
            "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        if record is not None:
            self.record.update({k: record[k] for k in ("started_at",) if k in record})
            last = run_dir / "last.pth"
            if last.exists():
                state = load_checkpoint(last, arch=arch)
                start_epoch, position, partial, epoch_rng = self._load_state(state, last)
                _log(ctx, f"resuming {run_dir}: epoch {start_epoch + 1}, batch {position} of {steps_per_epoch}")
            else:
                _log(ctx, f"{run_dir}: no last.pth yet, starting from epoch 1")
            # --data on resume may differ from the run's (a moved tree): keep where each part ran.
            history = list(record.get("data_history") or [{"data": record.get("data"), "from_epoch": 0}])
            if str(data) != history[-1]["data"]:
                history.append({"data": str(data), "from_epoch": start_epoch})
                _log(ctx, f"resuming {run_dir} on --data {data}; epochs up to {start_epoch} ran on "
                          f"{history[-2]['data']} (run.json keeps both in data_history)")
            if len(history) > 1:
                self.record["data_history"] = history
        if ctx.is_main:
            write_run_record(run_dir, self.record)

        with _StopRequest() as stop:
            self.stop = stop
            for epoch in range(start_epoch, recipe.epochs):
                if not self._run_epoch(epoch, position, partial, epoch_rng):
                    return run_dir
                position, partial, epoch_rng = 0, None, None
                if config.stop_after_epochs is not None and epoch + 1 >= config.stop_after_epochs:
                    if epoch + 1 < recipe.epochs:
                        _log(ctx, f"stopped after epoch {epoch + 1} (--stop-after-epochs); resume with --resume {run_dir}")
                        return run_dir
        self._finish()
        return run_dir

    def _load_state(self, state: dict, path: Path):
        ctx = self.ctx
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            if self.ema is not None:
                if state.get("ema") is None:
                    raise KeyError("ema")
                self.ema.load_state_dict(state["ema"])
        except (KeyError, RuntimeError, ValueError) as err:
            raise ImnetError(f"{path}: checkpoint does not match this run's model/optimizer "
                             f"({' '.join(str(err).split())[:300]})") from None
        self.num_updates = int(state["num_updates"])
        self.history = list(state.get("history", []))
        best = state.get("best") or {}
        self.best = _Best(**best) if best else _Best()
        loader = state["loader"]
        rng_states = state["rng"]
        epoch_rng = state.get("epoch_rng")
        if len(rng_states) == ctx.world_size:
            restore_rng_state(rng_states[ctx.rank])
        else:
            _log(ctx, f"{path}: saved with {len(rng_states)} processes, resuming with {ctx.world_size}: "
                      "RNG streams restart, the run is not bit-exact")
            _seed_everything(self.seed + ctx.rank + 7919 * int(loader["epoch"]))
            epoch_rng = None if loader["position"] == 0 else epoch_rng
        if epoch_rng is not None and len(epoch_rng) == ctx.world_size:
            epoch_rng = epoch_rng[ctx.rank]
        else:
            epoch_rng = None
        partial = state.get("partial")
        partial = partial[ctx.rank] if partial and len(partial) == ctx.world_size else None
        return int(loader["epoch"]), int(loader["position"]), partial, epoch_rng

    # ---- one epoch -------------------------------------------------------------------------------
    def _run_epoch(self, epoch: int, position: int, partial: dict | None, epoch_rng: dict | None) -> bool:
        """Train and validate one epoch; False when the run stopped early (interrupted)."""
        ctx, recipe, config = self.ctx, self.recipe, self.config
        lam = act_learn_lambda(recipe, epoch) if self.act_learn else None
        if lam is not None:
            _set_act_learn([self.model] + ([self.ema.module] if self.ema is not None else []), lam)
        resume_rng = None
        if position > 0 and epoch_rng is not None:
            # Replay the loader from the epoch's start so its stream (workers' seeds included) matches,
            # then put back the RNG state of the moment the checkpoint was taken.
            resume_rng = capture_rng_state()
            restore_rng_state(epoch_rng)
        start_rng = _gather_objects(ctx, capture_rng_state())
        self.train_loader.set_epoch(epoch)
        batches = iter(self.train_loader)
        for _ in range(position):
            next(batches)
        if resume_rng is not None:
            restore_rng_state(resume_rng)

        self.net.train()
        totals = torch.zeros(3, dtype=torch.float64, device=self.device)  # loss sum, images, non-finite
        elapsed = 0.0
        if partial:
            totals[0], totals[1] = float(partial["loss_sum"]), float(partial["images"])
            elapsed = float(partial["elapsed"])
        shown_loss = float("nan")
        bar = tqdm(
            total=self.steps_per_epoch, initial=position, desc=f"epoch {epoch + 1}/{recipe.epochs}",
            unit="batch", file=sys.stderr, dynamic_ncols=True, disable=not (ctx.is_main and config.progress),
        )
        t0 = time.perf_counter()
        images_seen_here = 0
        step = position
        stopped = stop_at_epoch_end = False
        for step in range(position, self.steps_per_epoch):
            images, labels = next(batches)
            images = images.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            targets = labels
            if self.mixup is not None:
                images, targets = self.mixup(images, labels)
            is_update = (step + 1) % self.accum == 0 or step + 1 == self.steps_per_epoch
            sync = nullcontext() if (is_update or self.ddp is None) else self.ddp.no_sync()
            with sync:
                with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                    enabled=self.amp_dtype is not None):
                    output = self.net(images)
                    loss = self.criterion(output, targets)
                self.scaler.scale(loss / self.accum).backward()
            if is_update:
                self._optimizer_step()
            batch = labels.shape[0]
            detached = loss.detach().double()
            totals[0] += detached * batch
            totals[1] += batch
            totals[2] += (~torch.isfinite(detached)).double()
            images_seen_here += batch * ctx.world_size
            bar.update(1)
            update_done = is_update and (self.num_updates % config.log_interval == 0)
            last_step = step + 1 == self.steps_per_epoch
            want_stop = is_update and self.num_updates == config.stop_after_updates
            if update_done or last_step or want_stop:
                flags = torch.tensor([totals[0].item(), totals[1].item(), totals[2].item(), float(self.stop.requested)],
                                     dtype=torch.float64, device=self.device)
                _all_reduce(ctx, flags)
                if flags[2] > 0:
                    bar.close()
                    self._diverged(epoch, step)
                shown_loss = flags[0].item() / max(1.0, flags[1].item())
                rate = images_seen_here / max(1e-9, time.perf_counter() - t0)
                bar.set_postfix(loss=f"{shown_loss:.4f}", img_s=f"{rate:.0f}", lr=f"{self._current_lr():.3g}")
                if (flags[3] > 0 or want_stop) and not last_step:
                    stopped = True
                    break
                stop_at_epoch_end = bool(flags[3] > 0)
        bar.close()
        train_time = elapsed + time.perf_counter() - t0
        if stopped:
            self._save_last(epoch, step + 1, start_rng, totals, train_time)
            self._write_record()
            why = "--stop-after-updates" if not self.stop.requested else "a stop signal"
            _log(ctx, f"stopped at epoch {epoch + 1}, batch {step + 1} ({why}); checkpoint {self.run_dir / 'last.pth'}; "
                      f"resume with --resume {self.run_dir}")
            return False

        self.scheduler.step(epoch + 1)
        reduced = _all_reduce(ctx, totals.clone())
        train_loss = reduced[0].item() / max(1.0, reduced[1].item())
        images_total = reduced[1].item()
        v0 = time.perf_counter()
        val_loss, top1, top5 = self._validate(self.model, f"val {epoch + 1}/{recipe.epochs}")
        ema_top1 = ema_top5 = None
        if self.ema is not None:
            _, ema_top1, ema_top5 = self._validate(self.ema.module, f"val ema {epoch + 1}/{recipe.epochs}")
        val_time = time.perf_counter() - v0
        if not math.isfinite(val_loss):  # the last update broke the weights before any loss showed it
            self._diverged(epoch, self.steps_per_epoch - 1)
        row = {
            "epoch": epoch + 1, "train_loss": round(train_loss, 6), "val_loss": round(val_loss, 6),
            "top1": round(top1, 4), "top5": round(top5, 4),
            "ema_top1": None if ema_top1 is None else round(ema_top1, 4),
            "ema_top5": None if ema_top5 is None else round(ema_top5, 4),
            "lr": self._current_lr(), "act_learn": lam,
            "images_per_sec": round(images_total / max(1e-9, train_time), 2),
            "epoch_time_s": round(train_time, 3), "val_time_s": round(val_time, 3),
        }
        self.history.append(row)
        improved_source = None
        for source, t1, t5 in (("model", top1, top5), ("ema", ema_top1, ema_top5)):
            if t1 is not None and t1 > self.best.top1:
                self.best = _Best(t1, t5, epoch + 1, source)
                improved_source = source
        self._save_last(epoch + 1, 0, None, None, 0.0)
        if improved_source is not None and ctx.is_main:
            weights = self.model if improved_source == "model" else self.ema.module
            save_checkpoint(self._header() | {"model": weights.state_dict(), "source": improved_source,
                                              "epoch": epoch + 1, "act_learn": lam,
                                              "top1": top1 if improved_source == "model" else ema_top1},
                            self.run_dir / "best.pth")
        if ctx.is_main:
            self._write_summary()
        self._write_record()
        ema_text = f", EMA top-1 {ema_top1:.2f}%" if ema_top1 is not None else ""
        _log(ctx, f"epoch {epoch + 1}/{recipe.epochs}: train loss {train_loss:.4f}, val loss {val_loss:.4f}, "
                  f"top-1 {top1:.2f}%, top-5 {top5:.2f}%{ema_text}, {row['images_per_sec']:.0f} img/s")
        if stop_at_epoch_end and epoch + 1 < recipe.epochs:
            _log(ctx, f"stopped after epoch {epoch + 1} (a stop signal); resume with --resume {self.run_dir}")
            return False
        return True

    def _optimizer_step(self) -> None:
        if self.recipe.clip_grad:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.recipe.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.num_updates += 1
        if self.ema is not None:
            self.ema.update(self.model, step=self.num_updates)
        self.scheduler.step_update(num_updates=self.num_updates)

    def _current_lr(self) -> float:
        return max(group["lr"] for group in self.optimizer.param_groups)

    @torch.no_grad()
    def _validate(self, model: nn.Module, desc: str) -> tuple[float, float, float]:
        """1-crop val pass: (mean loss, top-1 %, top-5 %) over every rank's shard."""
        ctx = self.ctx
        was_training = model.training
        model.eval()
        sums = torch.zeros(4, dtype=torch.float64, device=self.device)  # loss, top1, top5, images
        k = min(5, self.num_classes)
        bar = tqdm(self.val_loader, desc=desc, unit="batch", file=sys.stderr, dynamic_ncols=True, leave=False,
                   disable=not (ctx.is_main and self.config.progress))
        for batch in bar:
            images = batch.images[:, 0].to(self.device, non_blocking=True)
            labels = batch.labels.to(self.device, non_blocking=True)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                enabled=self.amp_dtype is not None):
                logits = model(images)
            logits = logits.float()
            correct = logits.topk(k, dim=1).indices.eq(labels[:, None])
            sums += torch.stack([
                F.cross_entropy(logits, labels, reduction="sum").double(),
                correct[:, :1].sum().double(), correct.sum().double(), torch.tensor(float(labels.shape[0]), dtype=torch.float64, device=self.device),
            ])
        bar.close()
        _all_reduce(ctx, sums)
        model.train(was_training)
        n = max(1.0, sums[3].item())
        return sums[0].item() / n, 100.0 * sums[1].item() / n, 100.0 * sums[2].item() / n

    # ---- files -----------------------------------------------------------------------------------
    def _header(self) -> dict:
        return {"arch": self.arch, "num_classes": self.num_classes, "img_size": self.img_size,
                "recipe": self.recipe.to_dict()}

    def _save_last(self, epoch: int, position: int, epoch_rng: list | None, totals, elapsed: float) -> None:
        """Checkpoint at (epoch, position): epoch = epochs completed, position = batches done in it."""
        rng = _gather_objects(self.ctx, capture_rng_state())
        partial = None if totals is None else _gather_objects(
            self.ctx, {"loss_sum": totals[0].item(), "images": totals[1].item(), "elapsed": elapsed})
        if not self.ctx.is_main:
            return
        state = self._header() | {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "num_updates": self.num_updates,
            "loader": {"epoch": epoch, "position": position, "seed": self.seed},
            "rng": rng,
            "epoch_rng": epoch_rng,
            "partial": partial,  # per rank: this epoch's loss sum and images so far
            "history": self.history,
            "best": dataclasses.asdict(self.best) if self.best.top1 >= 0 else None,
        }
        save_checkpoint(state, self.run_dir / "last.pth")

    def _write_summary(self) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in self.history:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in SUMMARY_COLUMNS})
        write_text_atomic(self.run_dir / "summary.csv", buffer.getvalue())

    def _write_record(self, **extra) -> None:
        if not self.ctx.is_main:
            return
        self.record.update(
            completed_epochs=len(self.history),
            best_epoch=self.best.epoch or None,
            best_top1=self.best.top1 if self.best.top1 >= 0 else None,
            best_top5=self.best.top5 if self.best.top1 >= 0 else None,
            best_source=self.best.source if self.best.top1 >= 0 else None,
            updated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **extra,
        )
        write_run_record(self.run_dir, self.record)

    def _diverged(self, epoch: int, step: int):
        last = self.run_dir / "last.pth"
        kept = (f"last good checkpoint kept: {last} (epoch {len(self.history)})" if last.exists()
                else "no checkpoint was written yet")
        self._write_record(diverged={"epoch": epoch + 1, "batch": step + 1})
        raise TrainingDiverged(
            f"{self.run_dir}: loss became NaN/inf at epoch {epoch + 1}, batch {step + 1} "
            f"(lr {self._current_lr():.3g}); training stopped, {kept}. Lower the lr (--lr or --set lr_base=...) "
            "or use --amp none"
        )

    def _write_deploy(self) -> Path | None:
        """deploy.pth: the best weights (or the last, when the best predate act_learn == 1) fused by
        the model's ``switch_to_deploy``; None when deep training never reached act_learn == 1."""
        best = load_checkpoint(self.run_dir / "best.pth", arch=self.arch)
        final_lam = act_learn_lambda(self.recipe, self.recipe.epochs - 1) if self.act_learn else None
        if best.get("act_learn") in (None, 1.0):
            weights, source = best["model"], f"best.pth ({best.get('source')}, epoch {best.get('epoch')})"
        elif final_lam == 1.0:
            model = self.model if self.best.source == "model" or self.ema is None else self.ema.module
            weights, source = model.state_dict(), f"last epoch ({self.best.source})"
        else:
            _log(self.ctx, f"no deploy.pth: act_learn reached only {final_lam:.3f} < 1 "
                           f"(act_learn_epochs {self.recipe.act_learn_epochs} >= epochs {self.recipe.epochs})")
            return None
        deploy_model = copy.deepcopy(self.model).cpu()
        deploy_model.load_state_dict(weights)
        _set_act_learn([deploy_model], 1.0)
        deploy_model.eval()
        deploy_model.switch_to_deploy()
        path = self.run_dir / "deploy.pth"
        save_checkpoint(self._header() | {"model": deploy_model.state_dict(), "deploy": True, "source": source}, path)
        _log(self.ctx, f"deploy.pth: {source} fused by switch_to_deploy")
        return path

    def _finish(self) -> None:
        """Write deploy.pth for re-parameterizable models and mark the run finished."""
        ctx = self.ctx
        extra = {}
        if ctx.is_main and hasattr(self.model, "switch_to_deploy"):
            deploy_path = self._write_deploy()
            if deploy_path is not None:
                extra["deploy_checkpoint"] = deploy_path.name
        self._write_record(finished=True, finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), **extra)
        if self.best.top1 >= 0:
            _log(ctx, f"trained {self.arch} for {len(self.history)} epochs: best top-1 {self.best.top1:.2f}% "
                      f"(epoch {self.best.epoch}, {self.best.source}); run in {self.run_dir}")
