"""The fallback loader (``--loader torch``): torchvision transforms over the same file lists.

Workers decode and resize with PIL (Pillow-SIMD when installed; ``decode.decode_resized`` uses JPEG
draft where safe) and torchvision's size rule, and cut torchvision's CenterCrop/FiveCrop/TenCrop boxes
(``transforms.crop_boxes``; for one centre crop, and for the classic train recipe's random crop,
only the crop's box is resized: the same pixels for less work). They hand over uint8 images in
PIL's own (H, W, 3) layout, collated straight into shared memory: no transposing copy per image and
4x less to copy and pin than float. After the copy to ``device`` the main process casts to float
and normalizes in place (on the CPU on one thread, into reused buffers: :class:`_ReusedBuffers`):
for a channels_last model the (H, W, 3) memory stays and the result is its (3, H, W) view, for an
NCHW one the cast's copy also transposes. The train workers persist through the run; eval workers
live for one pass. A file that does not decode comes back as a marker, so the main process can name it (ImnetError) or
record it as skipped.

Train augmentation beyond crop and flip is the libraries' own: timm's ``create_transform`` stage
(RandAugment, ColorJitter) or torchvision's ``TrivialAugmentWide`` in the workers (whose numpy
generators are seeded per worker, as timm's loader does), and timm's ``RandomErasing`` on the
normalized batch in the main process (:func:`~imnet.data.base.batch_erasing`).

Per-image CPU costs behind these choices are in benchmarks/RESULTS.md ("Where the CPU time goes").
"""
from __future__ import annotations

import random
from contextlib import contextmanager, nullcontext
from typing import Iterator

import numpy as np
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from imnet.data.base import (EpochOrder, EvalBatch, EvalLoader, Normalization, TrainLoader, batch_erasing,
                             torch_device)
from imnet.data.decode import decode_resized, decode_rgb
from imnet.data.filelist import SplitList
from imnet.data.transforms import RANDOM_INTERPOLATIONS, TrainAugment, crop_boxes
from imnet.errors import ImnetError

# Item = (uint8 (..., H, W, 3) image tensor or None when undecodable, list position, reason)
Item = tuple[torch.Tensor | None, int, str]


def to_uint8_hwc(image: Image.Image) -> torch.Tensor:
    """An RGB PIL image as an (H, W, 3) uint8 tensor (one copy out of PIL's 4-byte pixel layout)."""
    return torch.from_numpy(np.array(image))


def eval_crops(image: torch.Tensor, crop_size: int, crops: int) -> torch.Tensor:
    """torchvision's CenterCrop / FiveCrop / TenCrop of an (H, W, 3) image, stacked
    (crops, S, S, 3) in torchvision's order (boxes from ``transforms.crop_boxes``)."""
    views = []
    for box in crop_boxes(image.shape[0], image.shape[1], crop_size, crops):
        view = image[box.top:box.top + box.size, box.left:box.left + box.size]
        views.append(view.flip(1) if box.mirror else view)
    return torch.stack(views)


class EvalDataset(Dataset):
    """Item ``i`` = the crops of the image at ``positions[i]`` of the split list, as uint8."""

    def __init__(self, split: SplitList, positions: list[int], resize_size: int, crop_size: int,
                 crops: int, interpolation: str) -> None:
        self.split, self.positions = split, positions
        self.resize_size, self.crop_size, self.crops = resize_size, crop_size, crops
        self.interpolation = interpolation

    def __len__(self) -> int:
        return len(self.positions)

    def _centre(self, height: int, width: int) -> tuple[int, int, int]:
        box = crop_boxes(height, width, self.crop_size, 1)[0]
        return box.top, box.left, box.size

    def __getitem__(self, i: int) -> Item:
        position = self.positions[i]
        return self.crops_of(self.split.path(position), position)

    def crops_of(self, source, position: int) -> Item:
        """The crops of the image in ``source`` (a path, or a file object holding its bytes: a pack)."""
        # One crop: resize only the centre box (same pixels, less work); 5 or 10 need it all.
        window = self._centre if self.crops == 1 else None
        try:
            image = decode_resized(source, self.resize_size, self.interpolation, window=window)
        except FileNotFoundError:
            return None, position, "file not found"
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            return None, position, f"cannot decode: {err}"
        return eval_crops(to_uint8_hwc(image), self.crop_size, self.crops), position, ""


class TrainDataset(Dataset):
    """Item ``position`` = the augmented image at that position of the split list, as uint8.

    The crop (``classic``: a random window of the resized image, only that window resized; ``rrc``:
    torchvision's RandomResizedCrop, or timm's ``RandomResizedCropAndInterpolation`` for the
    ``random`` interpolation), the flip, then the per-image policy: timm's own (``create_transform``'s
    RandAugment or colour jitter, built by timm exactly as its train script builds them) or
    torchvision's ``TrivialAugmentWide``. Random erasing runs later, on the normalized batch."""

    def __init__(self, split: SplitList, augment: TrainAugment, resize_size: int, crop_size: int,
                 mean: tuple[float, float, float] = (0.485, 0.456, 0.406)) -> None:
        self.split, self.augment = split, augment
        self.aug = augment.crop
        self.resize_size, self.interpolation = resize_size, augment.interpolation
        self.crop_size = crop_size
        steps = [train_policy(augment, crop_size, mean)] if augment.per_image else []
        if augment.crop == "rrc":
            if augment.interpolation == "random":
                from timm.data.transforms import RandomResizedCropAndInterpolation

                crop = RandomResizedCropAndInterpolation(crop_size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                                                         interpolation="random")
            else:
                crop = T.RandomResizedCrop(crop_size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                                           interpolation=TF.InterpolationMode(augment.interpolation))
            steps = [crop, T.RandomHorizontalFlip()] + steps
        else:  # the random crop is chosen in _random_window, before resizing
            steps = [T.RandomHorizontalFlip()] + steps
        self.transform = steps[0] if len(steps) == 1 else T.Compose(steps)

    def __len__(self) -> int:
        return len(self.split)

    def _random_window(self, height: int, width: int) -> tuple[int, int, int]:
        """torchvision RandomCrop's draw (uniform top and left) on the resized image."""
        top, left, _, _ = T.RandomCrop.get_params(torch.empty(0, height, width),
                                                  (self.crop_size, self.crop_size))
        return top, left, self.crop_size

    def __getitem__(self, position: int) -> Item:
        return self.augmented(self.split.path(position), position)

    def augmented(self, path, position: int) -> Item:
        """The augmented image in ``path`` (a path, or a file object holding its bytes: a pack)."""
        try:
            if self.aug == "rrc":  # no draft: a small random window must keep full resolution
                image = decode_rgb(path)
            else:
                interpolation = self.interpolation
                if interpolation == "random":  # timm's choice per image
                    interpolation = random.choice(RANDOM_INTERPOLATIONS)
                image = decode_resized(path, self.resize_size, interpolation, window=self._random_window)
        except FileNotFoundError:
            return None, position, "file not found"
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            return None, position, f"cannot decode: {err}"
        return to_uint8_hwc(self.transform(image)), position, ""


def train_policy(augment: TrainAugment, crop_size: int, mean: tuple[float, float, float]):
    """The per-image policy after crop and flip, as the libraries build it: timm's
    ``create_transform`` (its "secondary" stage: RandAugment with timm's hparams, translate 0.45 x
    the crop, the mean as fill, the train interpolation; or ColorJitter when no auto-augment), or
    torchvision's ``TrivialAugmentWide`` (the reference recipe's, bilinear)."""
    if augment.auto_augment == "ta_wide":
        mode = "bilinear" if augment.interpolation == "random" else augment.interpolation
        return T.TrivialAugmentWide(interpolation=TF.InterpolationMode(mode))
    from timm.data import create_transform

    _, secondary, _ = create_transform(
        crop_size, is_training=True, auto_augment=augment.auto_augment or None,
        color_jitter=augment.jitter or None, interpolation=augment.interpolation, mean=mean, separate=True)
    return secondary


def seed_numpy_in_worker(worker_id: int) -> None:
    """DataLoader seeds Python's and torch's generators per worker but not numpy's, which timm's
    RandAugment draws its ops from: without this every worker would pick the same ops (timm's
    loader seeds numpy the same way)."""
    np.random.seed(torch.initial_seed() % 2**32)


def collate(items: list[Item]) -> tuple[torch.Tensor | None, torch.Tensor, list[tuple[int, str]]]:
    """Stack the decoded items; returns (uint8 images or None, their positions, [(position, reason)]).

    In a loader worker the batch is stacked straight into shared memory (as torch's default_collate
    does), so sending it to the main process copies nothing more."""
    good = [item for item in items if item[0] is not None]
    bad = [(position, reason) for image, position, reason in items if image is None]
    images = None
    if good:
        first = good[0][0]
        shape = (len(good), *first.shape)
        out = None
        if get_worker_info() is not None:
            storage = torch.UntypedStorage._new_shared(first.numel() * len(good) * first.element_size())
            out = torch.empty(0, dtype=first.dtype).set_(storage).view(shape)
        images = torch.stack([image for image, _, _ in good], out=out)
    return images, torch.tensor([position for _, position, _ in good], dtype=torch.int64), bad


def _storage_users(tensor: torch.Tensor) -> int | None:
    """How many tensors (views included) share ``tensor``'s storage; None where torch cannot say."""
    count = getattr(torch._C, "_storage_Use_Count", None)
    return None if count is None else count(tensor.untyped_storage()._cdata)


class _ReusedBuffers:
    """Float output buffers for normalizing on the CPU, reused once nobody else holds them.

    A new 64x3x224x224 float batch is 38 MB, which glibc maps afresh for every allocation: the
    ~9,400 page faults made normalizing cost 21 CPU-ms per batch, against 6 CPU-ms for the same
    work into a reused buffer (one thread; benchmarks/RESULTS.md). The caller gets a *view* of a
    buffer, and a buffer is handed out again only when its storage has no user besides the pool: no
    earlier batch, view of one, or tensor autograd saved from one is alive. A consumer that keeps
    its batches therefore never sees them change; it just gets fresh buffers."""

    def __init__(self, keep: int = 2) -> None:
        self.keep = keep
        self._pool: list[tuple[torch.Tensor, int]] = []  # (buffer, its use count when unshared)

    def get(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        for buffer, alone in self._pool:
            if buffer.shape == shape and buffer.dtype == dtype and _storage_users(buffer) == alone:
                return buffer.view(shape)
        buffer = torch.empty(shape, dtype=dtype)
        alone = _storage_users(buffer)
        if alone is not None:  # without a use count, never reuse
            self._pool = [(buffer, alone)] + self._pool[:self.keep - 1]
        return buffer.view(shape)


class _Normalizer:
    """uint8 (..., H, W, 3) -> float (or half) (..., 3, H, W) on ``device``,
    ``(x / 255 - mean) / std`` per channel: one copy that casts (and, for NCHW, transposes), then
    two in place. With ``channels_last`` the buffer keeps the workers' (..., H, W, 3) memory and the
    result is a (..., 3, H, W) view of it: the channels_last layout, made once, without a transpose."""

    def __init__(self, norm: Normalization, device: torch.device, channels_last: bool = False) -> None:
        self.device, self.dtype, self.channels_last = device, norm.dtype, channels_last
        shape = (3,) if channels_last else (3, 1, 1)
        self.mean = torch.tensor(norm.mean, device=device).view(shape) * 255
        self.std = torch.tensor(norm.std, device=device).view(shape) * 255
        self._buffers = _ReusedBuffers() if device.type == "cpu" else None

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True)
        if not self.channels_last:
            images = images.movedim(-1, -3)
        shape, on_cpu = tuple(images.shape), self._buffers is not None
        with _one_thread() if on_cpu else nullcontext():
            out = (self._buffers.get(shape, torch.float32) if on_cpu else
                   torch.empty(shape, dtype=torch.float32, device=self.device))
            out = out.copy_(images).sub_(self.mean).div_(self.std).to(self.dtype)
        return out.movedim(-1, -3) if self.channels_last else out


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch ops on one thread inside the block, then restore the thread count.

    Normalizing on the CPU is memory-bound; while loader workers keep every core busy, extra
    intra-op threads only spin and take CPU from them. Measured on 2 cores (benchmarks/RESULTS.md):
    the main process's CPU per image fell from 0.41-0.57 ms to 0.24-0.32 ms with one thread, at
    the same or higher images/s. Switching costs ~0.1 ms per batch."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _data_loader(dataset: Dataset, batch_size: int, workers: int, device: torch.device,
                 drop_last: bool, persistent: bool, sampler: Sampler | None = None,
                 worker_init_fn=None) -> DataLoader:
    """A DataLoader with ``workers`` processes; ``persistent`` keeps them between passes (train)
    instead of ending them after each pass (eval: a training run's val workers do not sit idle
    through the epochs)."""
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False,
                      num_workers=workers, persistent_workers=persistent and workers > 0,
                      pin_memory=device.type == "cuda", collate_fn=collate, drop_last=drop_last,
                      worker_init_fn=worker_init_fn)


class TorchEvalLoader(EvalLoader):
    """Eval loader on a torch DataLoader with ``workers`` processes (0 = in the main process),
    started for each pass and ended after it unless ``persistent``."""

    name = "torch"

    def __init__(self, split: SplitList, shard: range, *, crop_size: int, resize_size: int,
                 interpolation: str, norm: Normalization, crops: int, batch_size: int, workers: int,
                 device: str, skip_bad: bool, channels_last: bool = False, persistent: bool = False) -> None:
        super().__init__(split, shard, batch_size, skip_bad, channels_last)
        self.device = torch_device(device)
        self.workers = workers
        self._normalize = _Normalizer(norm, self.device, channels_last)
        self._loader = self._data_loader(split, shard, EvalDataset(split, list(shard), resize_size, crop_size, crops,
                                                                   interpolation), persistent)

    def _data_loader(self, split: SplitList, shard: range, dataset: "EvalDataset", persistent: bool) -> DataLoader:
        """The DataLoader of the pass over ``shard`` (:mod:`imnet.data.torch_pack` reads packs instead)."""
        return _data_loader(dataset, self.batch_size, self.workers, self.device, drop_last=False,
                            persistent=persistent)

    def __iter__(self) -> Iterator[EvalBatch]:
        self.skipped = []
        for images, positions, bad in self._loader:
            for position, reason in bad:
                self._bad_image(position, reason)
            if images is not None:
                yield EvalBatch(self._normalize(images), self._label_tensor[positions], positions)

    def close(self) -> None:
        self._loader = None


class _EpochSampler(Sampler):
    """Yields the current epoch's positions (read at each pass, so set_epoch takes effect with
    persistent workers too). Holds the schedule, not the loader: a reference cycle would leave the
    workers' shutdown to the garbage collector, which then waits out DataLoader's 5 s join timeout."""

    def __init__(self, schedule: EpochOrder) -> None:
        self.schedule = schedule

    def __iter__(self) -> Iterator[int]:
        return iter(self.schedule.positions())

    def __len__(self) -> int:
        return self.schedule.per_rank


class TorchTrainLoader(TrainLoader):
    """Train loader on a torch DataLoader; same epoch order and shards as the DALI one."""

    name = "torch"

    def __init__(self, split: SplitList, *, crop_size: int, resize_size: int, augment: TrainAugment,
                 norm: Normalization, batch_size: int, workers: int, device: str, rank: int,
                 world_size: int, seed: int, channels_last: bool = False) -> None:
        super().__init__(split, batch_size, rank, world_size, seed, channels_last, augment)
        self.device = torch_device(device)
        self.workers = workers
        self._normalize = _Normalizer(norm, self.device, channels_last)
        self._labels = torch.tensor(split.labels, dtype=torch.int64)
        self._erase = batch_erasing(augment, self.device)
        dataset = TrainDataset(split, augment, resize_size, crop_size, norm.mean)
        self._loader = _data_loader(dataset, batch_size, workers, self.device, drop_last=True,
                                    persistent=True, sampler=_EpochSampler(self.schedule),
                                    worker_init_fn=seed_numpy_in_worker if augment.per_image else None)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, positions, bad in self._loader:
            if bad:
                position, reason = bad[0]
                raise ImnetError(f"{self.split.path(position)}: {reason} (listed in "
                                 f"{self.split.list_path})")
            labels = self._labels[positions].to(self.device, non_blocking=True)
            images = self._normalize(images)
            yield (self._erase(images) if self._erase else images), labels

    def close(self) -> None:
        self._loader = None
