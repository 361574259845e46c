"""What a run's checkpoints hold and how a run continues from them: ``last.pth`` (everything to resume,
at an epoch boundary or inside an epoch), ``best.pth`` (the best weights) and ``deploy.pth`` (those
fused by the model's ``switch_to_deploy``). Files are written by :mod:`imnet.train.checkpoint`."""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from imnet.distributed import DistContext
from imnet.errors import ImnetError
from imnet.train.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from imnet.train.parts import set_act_learn
from imnet.train.runtime import seed_everything
from imnet.train.step import TrainStep


@dataclass
class Best:
    """The best val top-1 so far, its top-5, epoch (1-based) and whether the model or its EMA."""

    top1: float = -1.0
    top5: float = 0.0
    epoch: int = 0
    source: str = "model"


@dataclass
class ResumePoint:
    """Where a resumed run continues: ``epoch`` (epochs completed), ``position`` (batches done in the
    next one), this rank's partial totals and its RNG state at the epoch's start (None when not
    resuming inside an epoch), and the history and best so far."""

    epoch: int
    position: int
    partial: dict | None
    epoch_rng: dict | None
    history: list[dict]
    best: Best


def save_last(path: Path, ctx: DistContext, step: TrainStep, header: dict, *, epoch: int, position: int,
              seed: int, epoch_rng: list | None, totals: torch.Tensor | None, elapsed: float,
              history: list[dict], best: Best) -> None:
    """Checkpoint at (epoch, position): epoch = epochs completed, position = batches done in it.

    Collective (every rank's RNG state and partial totals are gathered); rank 0 writes ``path``."""
    rng = ctx.gather_objects(capture_rng_state())
    partial = None if totals is None else ctx.gather_objects(
        {"loss_sum": totals[0].item(), "images": totals[1].item(), "elapsed": elapsed})
    if not ctx.is_main:
        return
    state = header | {
        "model": step.model.state_dict(),
        "optimizer": step.optimizer.state_dict(),
        "scheduler": step.scheduler.state_dict(),
        "scaler": step.scaler.state_dict(),
        "ema": step.ema.state_dict() if step.ema is not None else None,
        "num_updates": step.num_updates,
        "loader": {"epoch": epoch, "position": position, "seed": seed},
        "rng": rng,
        "epoch_rng": epoch_rng,
        "partial": partial,  # per rank: this epoch's loss sum and images so far
        "history": history,
        "best": dataclasses.asdict(best) if best.top1 >= 0 else None,
    }
    save_checkpoint(state, path)


def restore_last(state: dict, path: Path, ctx: DistContext, step: TrainStep, seed: int,
                 log) -> ResumePoint:
    """Load ``last.pth``'s ``state`` into ``step``'s objects and this rank's RNG; returns where to go on.

    A checkpoint written by another number of processes resumes with fresh RNG streams (``log`` says
    so): the run continues correctly but not bit-exactly."""
    try:
        step.model.load_state_dict(state["model"])
        step.optimizer.load_state_dict(state["optimizer"])
        step.scheduler.load_state_dict(state["scheduler"])
        step.scaler.load_state_dict(state["scaler"])
        if step.ema is not None:
            if state.get("ema") is None:
                raise KeyError("ema")
            step.ema.load_state_dict(state["ema"])
    except (KeyError, RuntimeError, ValueError) as err:
        raise ImnetError(f"{path}: checkpoint does not match this run's model/optimizer "
                         f"({' '.join(str(err).split())[:300]})") from None
    step.num_updates = int(state["num_updates"])
    history = list(state.get("history", []))
    best = state.get("best") or {}
    loader = state["loader"]
    rng_states = state["rng"]
    epoch_rng = state.get("epoch_rng")
    if len(rng_states) == ctx.world_size:
        restore_rng_state(rng_states[ctx.rank])
    else:
        log(f"{path}: saved with {len(rng_states)} processes, resuming with {ctx.world_size}: "
            "RNG streams restart, the run is not bit-exact")
        seed_everything(seed + ctx.rank + 7919 * int(loader["epoch"]))
        epoch_rng = None if loader["position"] == 0 else epoch_rng
    if epoch_rng is not None and len(epoch_rng) == ctx.world_size:
        epoch_rng = epoch_rng[ctx.rank]
    else:
        epoch_rng = None
    partial = state.get("partial")
    partial = partial[ctx.rank] if partial and len(partial) == ctx.world_size else None
    return ResumePoint(int(loader["epoch"]), int(loader["position"]), partial, epoch_rng, history,
                       Best(**best) if best else Best())


def save_best(path: Path, header: dict, weights: nn.Module, *, source: str, epoch: int,
              act_learn: float | None, top1: float) -> None:
    """``best.pth``: ``weights``' state dict (the model or its EMA, named by ``source``)."""
    save_checkpoint(header | {"model": weights.state_dict(), "source": source, "epoch": epoch,
                              "act_learn": act_learn, "top1": top1}, path)


def write_deploy(run_dir: Path, header: dict, arch: str, model: nn.Module, ema, best: Best,
                 final_act_learn: float | None, act_learn_epochs: int, epochs: int, log) -> Path | None:
    """deploy.pth: the best weights (or the last, when the best predate act_learn == 1) fused by
    the model's ``switch_to_deploy``; None when deep training never reached act_learn == 1."""
    stored = load_checkpoint(run_dir / "best.pth", arch=arch)
    if stored.get("act_learn") in (None, 1.0):
        weights, source = stored["model"], f"best.pth ({stored.get('source')}, epoch {stored.get('epoch')})"
    elif final_act_learn == 1.0:
        chosen = model if best.source == "model" or ema is None else ema.module
        weights, source = chosen.state_dict(), f"last epoch ({best.source})"
    else:
        log(f"no deploy.pth: act_learn reached only {final_act_learn:.3f} < 1 "
            f"(act_learn_epochs {act_learn_epochs} >= epochs {epochs})")
        return None
    deploy_model = copy.deepcopy(model).cpu()
    deploy_model.load_state_dict(weights)
    set_act_learn([deploy_model], 1.0)
    deploy_model.eval()
    deploy_model.switch_to_deploy()
    path = run_dir / "deploy.pth"
    save_checkpoint(header | {"model": deploy_model.state_dict(), "deploy": True, "source": source}, path)
    log(f"deploy.pth: {source} fused by switch_to_deploy")
    return path
