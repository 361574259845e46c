"""The loaders' builders: backend choice, default resources, then a backend's loader.

``build_eval_loader`` / ``build_train_loader`` (signatures in docs/INTERFACES.md) read a prepared
tree or a pack (``imnet pack``: :mod:`imnet.data.packsplit`, read by DALI's webdataset reader or the
``webdataset`` package; the same pipelines after the reader) and return a DALI
loader (``"dali-gpu"`` with nvJPEG decoding on ``device="cuda"``, ``"dali-cpu"`` otherwise) or the
torchvision + PIL fallback (``"torch"``). ``loader="auto"`` takes the torch loader on the CPU (it
is ~1.6x DALI-CPU per core, benchmarks/RESULTS.md) and DALI on a GPU when it imports and runs a
trivial pipeline there (else torch), and says which on stderr. The types both backends share live
in :mod:`imnet.data.base`; this module imports the backends, never the other way round.
"""
from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from imnet.data.base import (EpochOrder, EvalBatch, EvalLoader, Normalization, TrainLoader,  # noqa: F401
                             torch_device)
from imnet.data.filelist import check_rank, shard_range
from imnet.data.packsplit import PackSplit, read_split
from imnet.data.resources import default_workers  # noqa: F401  (re-exported)
from imnet.data.resources import loader_resources
from imnet.data.screen import SkipRecorded, screen_eval, screen_train
from imnet.data.transforms import TrainAugment, check_eval_geometry, check_interpolation
from imnet.errors import ImnetError

LOADERS = ("auto", "dali", "torch")
AUGMENTATIONS = ("classic", "rrc")


def build_eval_loader(data: Path, split: str = "val", *, crop_size: int, resize_size: int,
                      interpolation: str = "bilinear", mean: Sequence[float], std: Sequence[float],
                      crops: int = 1, batch_size: int = 64, workers: int | None = None,
                      loader: str = "auto", device: str = "cpu", rank: int = 0, world_size: int = 1,
                      limit: int | None = None, skip_bad: bool = False, fp16: bool = False,
                      channels_last: bool = False, persistent_workers: bool = False) -> EvalLoader:
    """An eval loader over ``data/meta/<split>.txt``: resize the shorter side to ``resize_size``
    (torchvision's size rule), cut ``crops`` (1 centre, 5 FiveCrop, 10 TenCrop) of ``crop_size``,
    normalize with ``mean``/``std`` (in [0, 1] units). Rank ``rank`` of ``world_size`` reads its
    contiguous shard of the first ``limit`` images once per pass; see :class:`EvalLoader`.
    ``workers`` None: this rank's share of the CPUs (:mod:`imnet.data.resources`). ``channels_last``:
    images in NHWC memory, as a channels_last model wants them (no conversion per batch later).
    ``persistent_workers`` (torch backend): keep the DataLoader workers between passes; off, a pass
    starts its workers and ends them (a training run's val loader does not hold them through the
    epochs). DALI keeps its one pipeline either way.
    """
    check_eval_geometry(crop_size, resize_size, crops)
    check_interpolation(interpolation)
    check_rank(rank, world_size)
    _check_batch(batch_size, workers)
    table = read_split(Path(data), split, limit)
    shard = shard_range(len(table), rank, world_size)
    norm = Normalization(_triple(mean, "mean"), _triple(std, "std"), fp16)
    backend = choose_loader(loader, device)
    skip = screen_eval(table, shard, skip_bad, backend)  # images the tree records as undecodable
    if isinstance(table, PackSplit):  # a pack: the readers of its shards, the same pipelines
        built = _pack_eval_loader(table, shard, backend, crop_size=crop_size, resize_size=resize_size,
                                  interpolation=interpolation, norm=norm, crops=crops, batch_size=batch_size,
                                  workers=workers, device=device, rank=rank, world_size=world_size,
                                  skip_bad=skip_bad or bool(skip), channels_last=channels_last,
                                  persistent_workers=persistent_workers)
    elif backend == "dali":
        from imnet.data.dali import DaliEvalLoader, decoder_for

        threads = _default_threads(workers, "dali-gpu" if decoder_for(device)[0] == "mixed" else "dali-cpu")
        built = DaliEvalLoader(table, shard, crop_size=crop_size, resize_size=resize_size,
                               interpolation=interpolation, norm=norm, crops=crops,
                               batch_size=batch_size, threads=threads, device=device, rank=rank,
                               skip_bad=skip_bad or bool(skip), channels_last=channels_last)
    else:
        from imnet.data.torch_loader import TorchEvalLoader

        built = TorchEvalLoader(table, shard, crop_size=crop_size, resize_size=resize_size,
                                interpolation=interpolation, norm=norm, crops=crops, batch_size=batch_size,
                                workers=_default_threads(workers, "torch"), device=device,
                                skip_bad=skip_bad or bool(skip), channels_last=channels_last,
                                persistent=persistent_workers)
    return SkipRecorded(built, skip, skip_bad) if skip else built


def build_train_loader(data: Path, *, crop_size: int = 224, resize_size: int = 256,
                       aug: str = "classic", interpolation: str = "bilinear",
                       mean: Sequence[float], std: Sequence[float], batch_size: int = 64,
                       workers: int | None = None, loader: str = "auto", device: str = "cpu",
                       rank: int = 0, world_size: int = 1, seed: int = 0, fp16: bool = False,
                       channels_last: bool = False, auto_augment: str = "", color_jitter: float = 0.0,
                       reprob: float = 0.0, remode: str = "pixel", recount: int = 1) -> TrainLoader:
    """A train loader over ``data/meta/train.txt``. ``aug="classic"``: resize the shorter side to
    ``resize_size``, random ``crop_size`` crop, random horizontal flip; ``aug="rrc"``:
    RandomResizedCrop(scale 0.08-1, ratio 3/4-4/3) to ``crop_size`` and flip. ``interpolation`` is
    the crop's resampler (or ``"random"``: bilinear or bicubic per image). Then ``auto_augment``
    (a timm RandAugment string such as ``"rand-m7-mstd0.5-inc1"``, or ``"ta_wide"``) or, without one,
    ``color_jitter``; normalize; random erasing (``reprob``, ``remode``, ``recount``, timm's).
    Both backends apply the same policies (:class:`~imnet.data.transforms.TrainAugment`).
    See :class:`TrainLoader` for the order and sharding; batches are full (the remainder is dropped).
    ``workers`` and ``channels_last`` as for :func:`build_eval_loader`.
    """
    augment = TrainAugment(crop=aug, interpolation=interpolation, auto_augment=auto_augment,
                           color_jitter=color_jitter, reprob=reprob, remode=remode, recount=recount)
    if aug == "classic":
        check_eval_geometry(crop_size, resize_size, 1)
    check_rank(rank, world_size)
    _check_batch(batch_size, workers)
    table = read_split(Path(data), "train")
    norm = Normalization(_triple(mean, "mean"), _triple(std, "std"), fp16)
    options = dict(crop_size=crop_size, resize_size=resize_size, augment=augment, norm=norm,
                   batch_size=batch_size, device=device, rank=rank, world_size=world_size, seed=seed,
                   channels_last=channels_last)
    backend = choose_loader(loader, device)
    table = screen_train(table, backend)  # without the images the tree records as undecodable
    if isinstance(table, PackSplit):  # a pack: the readers of its shards, the same pipelines
        return _pack_train_loader(table, backend, workers, **options)
    if backend == "dali":
        from imnet.data.dali import DaliTrainLoader, decoder_for

        threads = _default_threads(workers, "dali-gpu" if decoder_for(device)[0] == "mixed" else "dali-cpu")
        return DaliTrainLoader(table, threads=threads, **options)
    from imnet.data.torch_loader import TorchTrainLoader

    return TorchTrainLoader(table, workers=_default_threads(workers, "torch"), **options)


def _pack_eval_loader(table: PackSplit, shard: range, backend: str, *, workers: int | None, world_size: int,
                      persistent_workers: bool, **options) -> EvalLoader:
    """The eval loader of a pack: DALI's webdataset reader, or the torch loader's reader."""
    if backend == "dali" and len(table) != table.shards.num_samples:
        # DALI's reader shards the whole split; the first `limit` images are the torch reader's job
        _announce("imnet: loader: torch (--limit on a pack: DALI's webdataset reader reads whole splits)")
        backend = "torch"
    if backend == "dali":
        from imnet.data.dali import decoder_for
        from imnet.data.dali_pack import DaliPackEvalLoader

        threads = _default_threads(workers, "dali-gpu" if decoder_for(options["device"])[0] == "mixed" else "dali-cpu")
        return DaliPackEvalLoader(table, shard, threads=threads, world_size=world_size, **options)
    from imnet.data.torch_pack import TorchPackEvalLoader

    options.pop("rank")
    return TorchPackEvalLoader(table, shard, workers=_default_threads(workers, "torch"),
                               persistent=persistent_workers, **options)


def _pack_train_loader(table: PackSplit, backend: str, workers: int | None, **options) -> TrainLoader:
    """The train loader of a pack (see :func:`_pack_eval_loader`)."""
    if backend == "dali":
        from imnet.data.dali import decoder_for
        from imnet.data.dali_pack import DaliPackTrainLoader

        threads = _default_threads(workers, "dali-gpu" if decoder_for(options["device"])[0] == "mixed" else "dali-cpu")
        return DaliPackTrainLoader(table, threads=threads, **options)
    from imnet.data.torch_pack import TorchPackTrainLoader

    return TorchPackTrainLoader(table, workers=_default_threads(workers, "torch"), **options)


def _default_threads(workers: int | None, backend: str) -> int:
    return loader_resources().threads(backend) if workers is None else workers


_ANNOUNCED: set[str] = set()


def _announce(message: str) -> None:
    """Print the loader choice on stderr once per process (eval builds a loader per model)."""
    if message not in _ANNOUNCED:
        _ANNOUNCED.add(message)
        print(message, file=sys.stderr)


def choose_loader(loader: str, device: str) -> str:
    """Resolve ``loader`` ("auto", "dali", "torch") to "dali" or "torch" for ``device``.

    "auto" takes torch on the CPU (per core the torch loader is ~1.6x DALI-CPU: RESULTS.md) and,
    on a GPU, DALI when it imports and runs a one-sample pipeline there, else torch; it prints the
    choice and why on stderr. "dali" raises ImnetError when DALI does not work on ``device``.
    """
    if loader not in LOADERS:
        raise ImnetError(f"unknown loader {loader!r} (expected one of {', '.join(LOADERS)})")
    if loader == "torch":
        return "torch"
    on_gpu = torch_device(device).type == "cuda"
    if loader == "auto" and not on_gpu:
        _announce("imnet: loader: torch (auto on the CPU: faster per core than DALI-CPU; "
                  "--loader dali to choose it)")
        return "torch"
    problem = dali_problem(device)
    if loader == "dali":
        if problem:
            raise ImnetError(f"--loader dali: DALI does not work here ({problem}); use --loader torch")
        return "dali"
    if problem:
        _announce(f"imnet: loader: torch (DALI unavailable on {device}: {problem})")
        return "torch"
    _announce("imnet: loader: dali (gpu)")
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
