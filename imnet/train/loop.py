"""The training loop: any zoo model on a prepared tree, as a plain process or under ``torchrun``.

This module sets a run up and drives it; each concern has its own module: :mod:`~imnet.train.parts`
(what the recipe selects), :mod:`~imnet.train.data` (the loaders), :mod:`~imnet.train.step` (one
step), :mod:`~imnet.train.epoch` (one epoch of steps, stopping), :mod:`~imnet.train.validation`,
:mod:`~imnet.train.state` (what checkpoints hold, resuming) and :mod:`~imnet.train.checkpoint` (files).

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

import csv
import io
import math
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn
from tqdm import tqdm

from imnet.distributed import DistContext, init_distributed
from imnet.errors import ImnetError
from imnet.train.checkpoint import load_checkpoint, read_run_record, write_run_record, write_text_atomic
from imnet.train.data import build_loaders, count_classes
from imnet.train.epoch import StopRequest, train_epoch
from imnet.train.parts import (amp_dtype, build_mixup_and_loss, build_optimizer, build_scheduler,
                               build_weight_decay_schedule, check_schedule, global_lr, model_kwargs,
                               set_act_learn, uses_act_learn)
from imnet.train.recipes import Recipe, act_learn_lambda, default_recipe, load_recipe, recipe_from_dict
from imnet.train.runtime import refused_ops, resolve_device, seed_everything, set_determinism
from imnet.train.state import Best, restore_last, save_best, save_last, write_deploy
from imnet.train.step import TrainStep
from imnet.train.validation import validate

SUMMARY_COLUMNS = (
    "epoch", "train_loss", "val_loss", "top1", "top5", "ema_top1", "ema_top5", "lr", "act_learn",
    "images_per_sec", "epoch_time_s", "val_time_s",
)


class TrainingDiverged(ImnetError):
    """The loss became NaN or infinite; the run stopped and its last good checkpoint was kept."""


@dataclass
class TrainConfig:
    """One training run: what to train (``arch``, ``data``, ``recipe``) and how to run it.

    ``recipe`` None trains the arch's default recipe (its seed's published command, else classic).
    ``out`` is the run directory (default ``runs/<arch>-<UTC time>``). ``resume`` names a run
    directory to continue; its ``run.json`` then supplies arch, data, recipe and seed.
    ``stop_after_epochs`` / ``stop_after_updates`` end the run early as an interruption would (a
    checkpoint, ``finished: false``), for tests and for time-sliced clusters.
    """

    arch: str | None = None
    data: Path | None = None
    out: Path | None = None
    recipe: Recipe | None = None  # None: the arch's default recipe (imnet.train.recipes.default_recipe)
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


def train(config: TrainConfig) -> Path:
    """Train ``config.arch`` on the prepared tree ``config.data``; returns the run directory.

    The directory holds ``run.json`` (``{"arch", "finished", ...}``), ``last.pth``, ``best.pth``,
    ``summary.csv`` and, for models with ``switch_to_deploy``, ``deploy.pth``. A resumed run that is
    already finished returns at once. User errors raise :class:`ImnetError`; a NaN/inf loss raises
    :class:`TrainingDiverged` after keeping the last good checkpoint.
    """
    ctx = init_distributed(str(resolve_device(config.device)))
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
    """One run: set-up (:meth:`run`), then per epoch :func:`~imnet.train.epoch.train_epoch`,
    :func:`~imnet.train.validation.validate` and the files (:mod:`imnet.train.state`)."""

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
        run_dir = Path(self.ctx.broadcast_object(str(run_dir)))
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
            arch, data, recipe = config.arch, Path(config.data), config.recipe or load_recipe(default_recipe(config.arch))
            seed, deterministic, channels_last = config.seed, config.deterministic, config.channels_last
        check_schedule(recipe)
        self.run_dir, self.arch, self.data, self.recipe = run_dir, arch, data, recipe
        self.seed, self.channels_last = seed, channels_last

        import imnet.zoo as zoo

        model_cfg = zoo.get_config(arch)
        num_classes = count_classes(data)
        img_size = recipe.img_size or int(model_cfg.input_size[-1])
        self.model_cfg, self.num_classes, self.img_size = model_cfg, num_classes, img_size
        dtype = amp_dtype(config.amp, self.device)
        switches = set_determinism(deterministic, self.device)

        # Same seed on every rank for the model's init (DDP broadcasts rank 0's anyway), then one
        # stream per rank so augmentation and mixup differ across ranks.
        seed_everything(seed)
        build_kwargs = model_kwargs(recipe)
        try:
            model = zoo.create_model(arch, num_classes=num_classes, **build_kwargs).to(self.device)
        except TypeError as err:
            if not build_kwargs:
                raise
            raise ImnetError(f"recipe {recipe.name!r}: {arch} does not take {', '.join(build_kwargs)} ({err})") from None
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
        seed_everything(seed + ctx.rank)

        refused = refused_ops(model) if deterministic else []
        if refused and self.device.type == "cuda":
            _log(ctx, "--deterministic: no deterministic CUDA implementation, run as they are (warn_only) "
                      "and recorded in run.json: " + "; ".join(refused))
        train_loader, val_loader = build_loaders(data, recipe, model_cfg, img_size, ctx, loader=config.loader,
                                                 workers=config.workers, seed=config.seed,
                                                 channels_last=channels_last)
        steps = torch.tensor([len(train_loader)], device=self.device)
        steps_per_epoch = int(ctx.all_reduce(steps, dist.ReduceOp.MIN if ctx.distributed else None).item())
        if steps_per_epoch < 1:
            raise ImnetError(
                f"{data}: the train split gives no full batch of {recipe.batch_size} per process; lower --batch-size"
            )
        accum = max(1, recipe.accum_steps)
        updates_per_epoch = math.ceil(steps_per_epoch / accum)
        global_batch = recipe.batch_size * ctx.world_size * accum
        lr = global_lr(recipe, global_batch)

        optimizer = build_optimizer(model, recipe, lr)
        scheduler = build_scheduler(optimizer, recipe, updates_per_epoch)
        wd_schedule = build_weight_decay_schedule(optimizer, recipe, updates_per_epoch)
        mixup, criterion = build_mixup_and_loss(recipe, num_classes)
        if mixup is not None and recipe.batch_size % 2:
            raise ImnetError(f"recipe {recipe.name!r}: mixup/cutmix need an even --batch-size, got {recipe.batch_size}")
        scaler = torch.amp.GradScaler(self.device.type, enabled=dtype == torch.float16)
        ema = None
        if recipe.ema_decay > 0:
            from timm.utils import ModelEmaV3

            ema = ModelEmaV3(model, decay=recipe.ema_decay)
        self.act_learn = recipe.act_learn_epochs > 0 and uses_act_learn(model)

        net: nn.Module = model
        ddp = None
        if ctx.distributed:
            net = ddp = nn.parallel.DistributedDataParallel(
                model, device_ids=[ctx.local_rank] if self.device.type == "cuda" else None
            )
        if config.compile:
            net = torch.compile(net)

        self.step = TrainStep(model=model, net=net, ddp=ddp, optimizer=optimizer, scheduler=scheduler,
                              scaler=scaler, ema=ema, mixup=mixup, criterion=criterion, amp_dtype=dtype,
                              device=self.device, channels_last=channels_last, accum=accum,
                              clip_grad=recipe.clip_grad, wd_schedule=wd_schedule,
                              watch_determinism=deterministic)
        self.model, self.ema = model, ema
        self.train_loader, self.val_loader = train_loader, val_loader
        self.steps_per_epoch = steps_per_epoch
        self.history: list[dict] = []
        self.best = Best()
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
            **({"refused_on_cuda": refused} if deterministic else {}),
            **switches,
            "channels_last": channels_last,
            "amp": str(dtype).replace("torch.", "") if dtype else "none",
            "loader": getattr(train_loader, "name", config.loader),
            "loader_workers": {"train": train_loader.workers, "val": val_loader.workers},
            "recipe": recipe.to_dict(),
            "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        if record is not None:
            self.record.update({k: record[k] for k in ("started_at",) if k in record})
            last = run_dir / "last.pth"
            if last.exists():
                point = restore_last(load_checkpoint(last, arch=arch), last, ctx, self.step, self.seed,
                                     lambda message: _log(ctx, message))
                self.history, self.best = point.history, point.best
                start_epoch, position, partial, epoch_rng = point.epoch, point.position, point.partial, point.epoch_rng
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

        with StopRequest() as stop:
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

    # ---- one epoch -------------------------------------------------------------------------------
    def _run_epoch(self, epoch: int, position: int, partial: dict | None, epoch_rng: dict | None) -> bool:
        """Train and validate one epoch; False when the run stopped early (interrupted)."""
        ctx, recipe, config = self.ctx, self.recipe, self.config
        lam = act_learn_lambda(recipe, epoch) if self.act_learn else None
        if lam is not None:
            set_act_learn([self.model] + ([self.ema.module] if self.ema is not None else []), lam)
        result = train_epoch(self.step, self.train_loader, ctx, epoch=epoch, epochs=recipe.epochs,
                             steps_per_epoch=self.steps_per_epoch, position=position, partial=partial,
                             epoch_rng=epoch_rng, stop=self.stop, log_interval=config.log_interval,
                             stop_after_updates=config.stop_after_updates, progress=config.progress,
                             diverged=self._diverged)
        if result.stopped:
            self._save_last(epoch, result.step + 1, result.start_rng, result.totals, result.train_time)
            self._write_record()
            why = "--stop-after-updates" if not self.stop.requested else "a stop signal"
            _log(ctx, f"stopped at epoch {epoch + 1}, batch {result.step + 1} ({why}); checkpoint {self.run_dir / 'last.pth'}; "
                      f"resume with --resume {self.run_dir}")
            return False

        self.step.scheduler.step(epoch + 1)
        reduced = ctx.all_reduce(result.totals.clone())
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
            "lr": self.step.current_lr(), "act_learn": lam,
            "images_per_sec": round(images_total / max(1e-9, result.train_time), 2),
            "epoch_time_s": round(result.train_time, 3), "val_time_s": round(val_time, 3),
        }
        self.history.append(row)
        improved_source = None
        for source, t1, t5 in (("model", top1, top5), ("ema", ema_top1, ema_top5)):
            if t1 is not None and t1 > self.best.top1:
                self.best = Best(t1, t5, epoch + 1, source)
                improved_source = source
        self._save_last(epoch + 1, 0, None, None, 0.0)
        if improved_source is not None and ctx.is_main:
            weights = self.model if improved_source == "model" else self.ema.module
            save_best(self.run_dir / "best.pth", self._header(), weights, source=improved_source,
                      epoch=epoch + 1, act_learn=lam, top1=top1 if improved_source == "model" else ema_top1)
        if ctx.is_main:
            self._write_summary()
        self._write_record()
        ema_text = f", EMA top-1 {ema_top1:.2f}%" if ema_top1 is not None else ""
        _log(ctx, f"epoch {epoch + 1}/{recipe.epochs}: train loss {train_loss:.4f}, val loss {val_loss:.4f}, "
                  f"top-1 {top1:.2f}%, top-5 {top5:.2f}%{ema_text}, {row['images_per_sec']:.0f} img/s")
        if result.stop_at_epoch_end and epoch + 1 < recipe.epochs:
            _log(ctx, f"stopped after epoch {epoch + 1} (a stop signal); resume with --resume {self.run_dir}")
            return False
        return True

    def _validate(self, model: nn.Module, desc: str) -> tuple[float, float, float]:
        return validate(model, self.val_loader, self.ctx, device=self.device, amp_dtype=self.step.amp_dtype,
                        channels_last=self.channels_last, num_classes=self.num_classes,
                        progress=self.config.progress, desc=desc)

    # ---- files -----------------------------------------------------------------------------------
    def _header(self) -> dict:
        return {"arch": self.arch, "num_classes": self.num_classes, "img_size": self.img_size,
                "recipe": self.recipe.to_dict()}

    def _save_last(self, epoch: int, position: int, epoch_rng: list | None, totals, elapsed: float) -> None:
        save_last(self.run_dir / "last.pth", self.ctx, self.step, self._header(), epoch=epoch,
                  position=position, seed=self.seed, epoch_rng=epoch_rng, totals=totals, elapsed=elapsed,
                  history=self.history, best=self.best)

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
        if self.step.nondeterministic_ops is not None:
            self.record["nondeterministic_ops"] = self.step.nondeterministic_ops
        self.record["pipeline_builds"] = {"train": self.train_loader.pipeline_builds,
                                          "val": self.val_loader.pipeline_builds}
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
            f"(lr {self.step.current_lr():.3g}); training stopped, {kept}. Lower the lr (--lr or --set lr_base=...) "
            "or use --amp none"
        )

    def _finish(self) -> None:
        """Write deploy.pth for re-parameterizable models and mark the run finished."""
        ctx = self.ctx
        extra = {}
        if ctx.is_main and hasattr(self.model, "switch_to_deploy"):
            final_lam = act_learn_lambda(self.recipe, self.recipe.epochs - 1) if self.act_learn else None
            deploy_path = write_deploy(self.run_dir, self._header(), self.arch, self.model, self.ema, self.best,
                                       final_lam, self.recipe.act_learn_epochs, self.recipe.epochs,
                                       lambda message: _log(ctx, message))
            if deploy_path is not None:
                extra["deploy_checkpoint"] = deploy_path.name
        self._write_record(finished=True, finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), **extra)
        if self.best.top1 >= 0:
            _log(ctx, f"trained {self.arch} for {len(self.history)} epochs: best top-1 {self.best.top1:.2f}% "
                      f"(epoch {self.best.epoch}, {self.best.source}); run in {self.run_dir}")
