"""One training step: forward under autocast, the loss, backward (scaled for fp16, DDP's gradient sync
only on the micro-batch that updates), and every ``accum``-th step the optimizer update with clipping,
the scheduled weight decay, the EMA update and the per-update scheduler step."""
from __future__ import annotations

import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from imnet.train.runtime import nondeterministic_op


@dataclass
class TrainStep:
    """The objects a step touches and the update count. ``model`` is the bare module (what is saved),
    ``net`` what runs the forward pass (``model``, its DDP wrapper, or a compiled one of those)."""

    model: nn.Module
    net: nn.Module
    ddp: nn.parallel.DistributedDataParallel | None
    optimizer: torch.optim.Optimizer
    scheduler: object
    scaler: torch.amp.GradScaler
    ema: nn.Module | None
    mixup: object | None
    criterion: nn.Module
    amp_dtype: torch.dtype | None
    device: torch.device
    channels_last: bool
    accum: int
    clip_grad: float | None
    num_updates: int = 0
    # The recipe's weight-decay schedule (parts.WeightDecaySchedule), or None: constant weight decay
    wd_schedule: object | None = None
    # With --deterministic: the ops torch warned about (no deterministic implementation) during
    # the steps up to the first update, which run every op a step runs; None until then.
    watch_determinism: bool = False
    nondeterministic_ops: list[str] | None = field(default=None)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, is_update: bool) -> torch.Tensor:
        """Forward and backward one micro-batch; updates when ``is_update``. Returns the loss."""
        if not self.watch_determinism:
            return self._run(images, labels, is_update)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loss = self._run(images, labels, is_update)
        ops = set(self.nondeterministic_ops or [])
        for warning in caught:
            op = nondeterministic_op(str(warning.message))
            if op:
                ops.add(op)
            else:  # not ours to swallow
                warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
        self.nondeterministic_ops = sorted(ops)
        self.watch_determinism = not is_update
        return loss

    def _run(self, images: torch.Tensor, labels: torch.Tensor, is_update: bool) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        if self.channels_last:  # a no-op when the loader already delivers channels_last
            images = images.contiguous(memory_format=torch.channels_last)
        targets = labels
        if self.mixup is not None:
            images, targets = self.mixup(images, labels)
        sync = nullcontext() if (is_update or self.ddp is None) else self.ddp.no_sync()
        with sync:
            with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                enabled=self.amp_dtype is not None):
                output = self.net(images)
                loss = self.criterion(output, targets)
            self.scaler.scale(loss / self.accum).backward()
        if is_update:
            self.update()
        return loss

    def update(self) -> None:
        """The optimizer update: clip (after unscaling), step (at the weight decay the schedule sets for
        this update), zero the gradients, EMA, scheduler."""
        if self.wd_schedule is not None:
            self.wd_schedule(self.num_updates)
        if self.clip_grad:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.num_updates += 1
        if self.ema is not None:
            self.ema.update(self.model, step=self.num_updates)
        self.scheduler.step_update(num_updates=self.num_updates)

    def current_lr(self) -> float:
        """The largest learning rate of the optimizer's parameter groups."""
        return max(group["lr"] for group in self.optimizer.param_groups)
