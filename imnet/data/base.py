"""The loaders' shared types, imported by both backends (:mod:`imnet.data.dali`,
:mod:`imnet.data.torch_loader`) and by the builders above them (:mod:`imnet.data.loaders`).

:class:`EvalBatch` and :class:`EvalLoader` (eval: each rank's shard once per pass), :class:`EpochOrder`
and :class:`TrainLoader` (train: a permutation per epoch, equal full batches on every rank),
:class:`Normalization` and the device parsing.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Iterator, NamedTuple

import torch

from imnet.data.filelist import SplitList
from imnet.data.transforms import TrainAugment
from imnet.errors import ImnetError


class EvalBatch(NamedTuple):
    """One eval batch: ``images`` (B, crops, 3, S, S) normalized float on the loader's device;
    ``labels`` int64 (B,) class indices and ``indices`` int64 (B,) positions in the split's file list,
    both on the CPU."""

    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor


@dataclass(frozen=True)
class Normalization:
    """Per-channel mean and std in [0, 1] units (timm's convention); ``fp16`` asks for half output."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    fp16: bool = False

    @property
    def dtype(self) -> torch.dtype:
        return torch.float16 if self.fp16 else torch.float32


class EvalLoader:
    """Iterates a rank's shard of a split once per pass, as :class:`EvalBatch` es.

    Attributes: ``name`` (backend), ``files`` and ``labels`` (the whole list, relative paths and class
    indices), ``num_images`` (this rank's shard), ``skipped`` ((position, file, reason) of images
    skipped in the last pass with ``skip_bad``), ``len()`` = batches in a pass, ``channels_last``
    (images come as (B, crops, 3, S, S) views of (B, crops, S, S, 3) memory, which is channels_last
    once B and crops are merged), ``workers`` (DALI threads or DataLoader workers),
    ``pipeline_builds`` (DALI pipelines built so far: one per loader, plus one after each pass that
    met an undecodable image; 0 for torch).
    """

    name = "abstract"

    def __init__(self, split: SplitList, shard: range, batch_size: int, skip_bad: bool,
                 channels_last: bool = False) -> None:
        self.split = split
        self.channels_last = channels_last
        self.pipeline_builds = 0
        self.workers = 0
        self.files: list[str] = split.files
        self.labels: list[int] = split.labels
        self.shard = shard
        self.num_images = len(shard)
        self.batch_size = batch_size
        self.skip_bad = skip_bad
        self.skipped: list[tuple[int, str, str]] = []
        self._label_tensor = torch.tensor(split.labels, dtype=torch.int64)

    def __len__(self) -> int:
        return -(-self.num_images // self.batch_size)

    def __iter__(self) -> Iterator[EvalBatch]:
        raise NotImplementedError

    def close(self) -> None:
        """Release worker processes / pipelines (also done when the loader is garbage collected)."""

    def __enter__(self) -> "EvalLoader":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _bad_image(self, position: int, reason: str) -> None:
        """Record an undecodable image with ``skip_bad``, else raise ImnetError naming it."""
        path = self.split.path(position)
        if not self.skip_bad:
            raise ImnetError(f"{path}: {reason} (listed in {self.split.list_path}; "
                             f"--skip-bad counts such images as skipped)")
        print(f"imnet: skipping {path}: {reason}", file=sys.stderr)
        self.skipped.append((position, self.files[position], reason))


@dataclass
class EpochOrder:
    """Which positions of a list of ``num_images`` rank ``rank`` reads in epoch ``epoch``.

    The epoch's order is a permutation of the whole list drawn from ``(seed, epoch)``, cut to a
    multiple of ``world_size``; rank ``r`` reads its ``r``-th contiguous share (DALI's shard).
    """

    num_images: int
    rank: int
    world_size: int
    seed: int
    epoch: int = 0

    @property
    def per_rank(self) -> int:
        return self.num_images // self.world_size

    def order(self) -> list[int]:
        """The epoch's order of the whole list (all ranks), cut to a multiple of world_size."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.num_images, generator=generator)[:self.per_rank * self.world_size].tolist()

    def positions(self) -> list[int]:
        """This rank's positions for the epoch, in reading order."""
        return self.order()[self.rank * self.per_rank:(self.rank + 1) * self.per_rank]

    def batched_positions(self, batch_size: int) -> list[int]:
        """This rank's positions for the epoch cut to whole batches of ``batch_size``."""
        positions = self.positions()
        return positions[:len(positions) // batch_size * batch_size]


class TrainLoader:
    """Iterates one epoch of a rank's share of the train split as ``(images (B, 3, S, S), labels (B,))``
    on the loader's device.

    ``set_epoch(epoch)`` picks the epoch's order (:class:`EpochOrder`): all ranks see disjoint images
    and the same number of full batches, ``len()``; the last partial batch is dropped. With
    ``channels_last`` the images are channels_last tensors (NHWC memory), made so once, by the loader.
    ``workers`` and ``pipeline_builds`` as for :class:`EvalLoader`; ``augment`` is the
    :class:`~imnet.data.transforms.TrainAugment` it applies.
    """

    name = "abstract"

    def __init__(self, split: SplitList, batch_size: int, rank: int, world_size: int, seed: int,
                 channels_last: bool = False, augment: TrainAugment | None = None) -> None:
        self.split = split
        self.channels_last = channels_last
        self.augment = augment or TrainAugment()
        self.pipeline_builds = 0
        self.workers = 0
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.schedule = EpochOrder(len(split), rank, world_size, seed)
        if self.schedule.per_rank < batch_size:
            raise ImnetError(f"{split.list_path}: {len(split)} images are too few for one batch of "
                             f"{batch_size} on each of {world_size} rank(s)")
        self._batches = self.schedule.per_rank // batch_size

    @property
    def epoch(self) -> int:
        return self.schedule.epoch

    def set_epoch(self, epoch: int) -> None:
        """Select the order of epoch ``epoch`` (deterministic in ``(seed, epoch)``)."""
        self.schedule.epoch = epoch

    def __len__(self) -> int:
        return self._batches

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        raise NotImplementedError

    def close(self) -> None:
        """Release worker processes / pipelines."""

    def __enter__(self) -> "TrainLoader":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def batch_erasing(augment: TrainAugment, device: torch.device):
    """timm's ``RandomErasing`` for the augment's ``reprob``/``remode``/``recount``, applied in place
    to a normalized (B, 3, H, W) batch on ``device`` (each image on its own draw), as timm's
    prefetching loader does on the GPU; None when ``reprob`` is 0. Both backends call it on their
    output batches, so erasing is one implementation, timm's."""
    if augment.reprob <= 0:
        return None
    from timm.data.random_erasing import RandomErasing

    return RandomErasing(augment.reprob, mode=augment.remode, max_count=augment.recount, device=str(device))


def torch_device(device: str) -> torch.device:
    """``device`` ("cpu", "cuda", "cuda:N") as a torch.device; ImnetError for other strings."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ImnetError(f"unknown device {device!r}: {err}") from None
    if parsed.type not in ("cpu", "cuda"):
        raise ImnetError(f"device must be cpu or cuda[:N], got {device!r}")
    return parsed
