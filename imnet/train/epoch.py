"""One epoch of training: the loader's order for the epoch (replayed to a resume position), the steps,
the tqdm bar, the periodic loss sync across ranks (NaN check, shown loss), and stopping on request.

The epoch stops early, resumably, on SIGTERM/SIGINT (:class:`StopRequest`) or at
``stop_after_updates``; the caller then writes ``last.pth`` with the position reached.
"""
from __future__ import annotations

import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable

import torch
from tqdm import tqdm

from imnet.distributed import DistContext
from imnet.train.checkpoint import capture_rng_state, restore_rng_state
from imnet.train.step import TrainStep


class StopRequest:
    """SIGTERM/SIGINT during training: finish the step, checkpoint, stop (resumable)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopRequest":
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


@dataclass
class EpochResult:
    """How an epoch's training part ended.

    ``stopped``: it stopped before its last step (``step`` + 1 batches done); ``stop_at_epoch_end``: a
    stop was requested during the last step, so the run ends after this epoch's validation.
    ``totals`` (this rank): loss sum, images, non-finite losses; ``train_time`` includes the time of
    an interrupted part of the epoch before a resume; ``start_rng``: every rank's RNG state at the
    epoch's start (what a mid-epoch resume replays the loader from)."""

    stopped: bool
    stop_at_epoch_end: bool
    step: int
    totals: torch.Tensor
    train_time: float
    start_rng: list


def train_epoch(step: TrainStep, loader, ctx: DistContext, *, epoch: int, epochs: int,
                steps_per_epoch: int, position: int, partial: dict | None, epoch_rng: dict | None,
                stop: StopRequest, log_interval: int, stop_after_updates: int | None, progress: bool,
                diverged: Callable[[int, int], None]) -> EpochResult:
    """Run the steps ``position .. steps_per_epoch - 1`` of ``epoch``.

    With ``position`` > 0 (a resume inside the epoch), the loader is replayed from the epoch's start
    under the RNG state ``epoch_rng`` of that start, then the RNG state of the moment of the
    checkpoint is put back; ``partial`` carries that checkpoint's loss sum, images and time.
    ``diverged(epoch, step)`` is called (and must raise) when a loss was not finite."""
    resume_rng = None
    if position > 0 and epoch_rng is not None:
        # Replay the loader from the epoch's start so its stream (workers' seeds included) matches,
        # then put back the RNG state of the moment the checkpoint was taken.
        resume_rng = capture_rng_state()
        restore_rng_state(epoch_rng)
    start_rng = ctx.gather_objects(capture_rng_state())
    loader.set_epoch(epoch)
    batches = iter(loader)
    for _ in range(position):
        next(batches)
    if resume_rng is not None:
        restore_rng_state(resume_rng)

    step.net.train()
    device = step.device
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, images, non-finite
    elapsed = 0.0
    if partial:
        totals[0], totals[1] = float(partial["loss_sum"]), float(partial["images"])
        elapsed = float(partial["elapsed"])
    bar = tqdm(
        total=steps_per_epoch, initial=position, desc=f"epoch {epoch + 1}/{epochs}",
        unit="batch", file=sys.stderr, dynamic_ncols=True, disable=not (ctx.is_main and progress),
    )
    t0 = time.perf_counter()
    images_seen_here = 0
    index = position
    stopped = stop_at_epoch_end = False
    for index in range(position, steps_per_epoch):
        images, labels = next(batches)
        is_update = (index + 1) % step.accum == 0 or index + 1 == steps_per_epoch
        loss = step(images, labels, is_update)
        batch = labels.shape[0]
        detached = loss.detach().double()
        totals[0] += detached * batch
        totals[1] += batch
        totals[2] += (~torch.isfinite(detached)).double()
        images_seen_here += batch * ctx.world_size
        bar.update(1)
        update_done = is_update and (step.num_updates % log_interval == 0)
        last_step = index + 1 == steps_per_epoch
        want_stop = is_update and step.num_updates == stop_after_updates
        if update_done or last_step or want_stop:
            flags = torch.tensor([totals[0].item(), totals[1].item(), totals[2].item(), float(stop.requested)],
                                 dtype=torch.float64, device=device)
            ctx.all_reduce(flags)
            if flags[2] > 0:
                bar.close()
                diverged(epoch, index)
            shown_loss = flags[0].item() / max(1.0, flags[1].item())
            rate = images_seen_here / max(1e-9, time.perf_counter() - t0)
            bar.set_postfix(loss=f"{shown_loss:.4f}", img_s=f"{rate:.0f}", lr=f"{step.current_lr():.3g}")
            if (flags[3] > 0 or want_stop) and not last_step:
                stopped = True
                break
            stop_at_epoch_end = bool(flags[3] > 0)
    bar.close()
    return EpochResult(stopped, stop_at_epoch_end, index, totals, elapsed + time.perf_counter() - t0,
                       start_rng)
