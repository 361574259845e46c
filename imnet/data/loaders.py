"""The loaders' public face: the batch and loader types, and the two builders with backend choice.

``build_eval_loader`` / ``build_train_loader`` (signatures in docs/INTERFACES.md) return a DALI
loader (``"dali-gpu"`` with nvJPEG decoding on ``device="cuda"``, ``"dali-cpu"`` otherwise) or the
torchvision + PIL fallback (``"torch"``); ``loader="auto"`` takes DALI when it imports and runs a
trivial pipeline, else torch, and says which on stderr.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator, NamedTuple, Sequence

import torch

from imnet.data.filelist import SplitList, check_rank, read_split, shard_range
from imnet.data.screen import SkipRecorded, backend_for_paths, screen_eval, screen_train
from imnet.data.transforms import check_eval_geometry, check_interpolation
from imnet.errors import ImnetError

LOADERS = ("auto", "dali", "torch")
AUGMENTATIONS = ("classic", "rrc")


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
    skipped in the last pass with ``skip_bad``), ``len()`` = batches in a pass.
    """

    name = "abstract"

    def __init__(self, split: SplitList, shard: range, batch_size: int, skip_bad: bool) -> None:
        self.split = split
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


class TrainLoader:
    """Iterates one epoch of a rank's share of the train split as ``(images (B, 3, S, S), labels (B,))``
    on the loader's device.

    ``set_epoch(epoch)`` picks the epoch's order (:class:`EpochOrder`): all ranks see disjoint images
    and the same number of full batches, ``len()``; the last partial batch is dropped.
    """

    name = "abstract"

    def __init__(self, split: SplitList, batch_size: int, rank: int, world_size: int, seed: int) -> None:
        self.split = split
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


def default_workers() -> int:
    """CPU cores this process may use: the default DALI thread / DataLoader worker count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def build_eval_loader(data: Path, split: str = "val", *, crop_size: int, resize_size: int,
                      interpolation: str = "bilinear", mean: Sequence[float], std: Sequence[float],
                      crops: int = 1, batch_size: int = 64, workers: int | None = None,
                      loader: str = "auto", device: str = "cpu", rank: int = 0, world_size: int = 1,
                      limit: int | None = None, skip_bad: bool = False,
                      fp16: bool = False) -> EvalLoader:
    """An eval loader over ``data/meta/<split>.txt``: resize the shorter side to ``resize_size``
    (torchvision's size rule), cut ``crops`` (1 centre, 5 FiveCrop, 10 TenCrop) of ``crop_size``,
    normalize with ``mean``/``std`` (in [0, 1] units). Rank ``rank`` of ``world_size`` reads its
    contiguous shard of the first ``limit`` images once; see :class:`EvalLoader`.
    """
    check_eval_geometry(crop_size, resize_size, crops)
    check_interpolation(interpolation)
    check_rank(rank, world_size)
    _check_batch(batch_size, workers)
    table = read_split(Path(data), split, limit)
    shard = shard_range(len(table), rank, world_size)
    norm = Normalization(_triple(mean, "mean"), _triple(std, "std"), fp16)
    workers = default_workers() if workers is None else workers
    backend = backend_for_paths(table, choose_loader(loader, device), loader)
    skip = screen_eval(table, shard, skip_bad, backend)  # images the tree records as undecodable
    if backend == "dali":
        from imnet.data.dali import DaliEvalLoader

        built = DaliEvalLoader(table, shard, crop_size=crop_size, resize_size=resize_size,
                               interpolation=interpolation, norm=norm, crops=crops,
                               batch_size=batch_size, threads=workers, device=device, rank=rank,
                               world_size=world_size, skip_bad=skip_bad or bool(skip))
    else:
        from imnet.data.torch_loader import TorchEvalLoader

        built = TorchEvalLoader(table, shard, crop_size=crop_size, resize_size=resize_size,
                                interpolation=interpolation, norm=norm, crops=crops, batch_size=batch_size,
                                workers=workers, device=device, skip_bad=skip_bad or bool(skip))
    return SkipRecorded(built, skip, skip_bad) if skip else built


def build_train_loader(data: Path, *, crop_size: int = 224, resize_size: int = 256,
                       aug: str = "classic", interpolation: str = "bilinear",
                       mean: Sequence[float], std: Sequence[float], batch_size: int = 64,
                       workers: int | None = None, loader: str = "auto", device: str = "cpu",
                       rank: int = 0, world_size: int = 1, seed: int = 0,
                       fp16: bool = False) -> TrainLoader:
    """A train loader over ``data/meta/train.txt``. ``aug="classic"``: resize the shorter side to
    ``resize_size``, random ``crop_size`` crop, random horizontal flip; ``aug="rrc"``:
    RandomResizedCrop(scale 0.08-1, ratio 3/4-4/3) to ``crop_size`` and flip. Then normalize.
    See :class:`TrainLoader` for the order and sharding; batches are full (the remainder is dropped).
    """
    if aug not in AUGMENTATIONS:
        raise ImnetError(f"unknown augmentation {aug!r} (expected one of {', '.join(AUGMENTATIONS)})")
    if aug == "classic":
        check_eval_geometry(crop_size, resize_size, 1)
    check_interpolation(interpolation)
    check_rank(rank, world_size)
    _check_batch(batch_size, workers)
    table = read_split(Path(data), "train")
    norm = Normalization(_triple(mean, "mean"), _triple(std, "std"), fp16)
    workers = default_workers() if workers is None else workers
    options = dict(crop_size=crop_size, resize_size=resize_size, aug=aug, interpolation=interpolation,
                   norm=norm, batch_size=batch_size, device=device, rank=rank,
                   world_size=world_size, seed=seed)
    backend = backend_for_paths(table, choose_loader(loader, device), loader)
    table = screen_train(table, backend)  # without the images the tree records as undecodable
    if backend == "dali":
        from imnet.data.dali import DaliTrainLoader

        return DaliTrainLoader(table, threads=workers, **options)
    from imnet.data.torch_loader import TorchTrainLoader

    return TorchTrainLoader(table, workers=workers, **options)


def choose_loader(loader: str, device: str) -> str:
    """Resolve ``loader`` ("auto", "dali", "torch") to "dali" or "torch" for ``device``.

    "auto" takes DALI when it imports and runs a one-sample pipeline on ``device``, else torch, and
    prints the choice (and why) on stderr. "dali" raises ImnetError when DALI does not work.
    """
    if loader not in LOADERS:
        raise ImnetError(f"unknown loader {loader!r} (expected one of {', '.join(LOADERS)})")
    if loader == "torch":
        return "torch"
    problem = dali_problem(device)
    if loader == "dali":
        if problem:
            raise ImnetError(f"--loader dali: DALI does not work here ({problem}); use --loader torch")
        return "dali"
    if problem:
        print(f"imnet: loader: torch (DALI unavailable: {problem})", file=sys.stderr)
        return "torch"
    print(f"imnet: loader: dali ({'gpu' if device.startswith('cuda') else 'cpu'})", file=sys.stderr)
    return "dali"


@lru_cache(maxsize=None)
def dali_problem(device: str) -> str | None:
    """None when DALI imports and runs a trivial pipeline on ``device``, else the reason it does not."""
    try:
        from imnet.data.dali import smoke_test
    except ImportError as err:
        return f"cannot import DALI: {err}"
    try:
        smoke_test(device)
    except Exception as err:  # any failure means "do not use DALI here"; the reason is reported
        return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    return None


def torch_device(device: str) -> torch.device:
    """``device`` ("cpu", "cuda", "cuda:N") as a torch.device; ImnetError for other strings."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ImnetError(f"unknown device {device!r}: {err}") from None
    if parsed.type not in ("cpu", "cuda"):
        raise ImnetError(f"device must be cpu or cuda[:N], got {device!r}")
    return parsed


def _triple(values: Sequence[float], what: str) -> tuple[float, float, float]:
    values = tuple(float(v) for v in values)
    if len(values) != 3:
        raise ImnetError(f"{what} needs 3 values (R, G, B), got {len(values)}")
    if what == "std" and min(values) <= 0:
        raise ImnetError(f"std values must be positive, got {values}")
    return values


def _check_batch(batch_size: int, workers: int | None) -> None:
    if batch_size < 1:
        raise ImnetError(f"batch size must be at least 1, got {batch_size}")
    if workers is not None and workers < 0:
        raise ImnetError(f"workers must be >= 0, got {workers}")
