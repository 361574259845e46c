"""The fallback loader (``--loader torch``): torchvision transforms over the same file lists.

Workers decode with PIL (Pillow-SIMD when installed; ``decode.decode_resized`` uses JPEG draft where
safe), resize with torchvision's size rule and cut crops with torchvision's ``FiveCrop``/``TenCrop``
functions (for one centre crop, and for the classic train recipe's random crop, only the crop's box
is resized: the same pixels for less work), and hand uint8 tensors to the main process: 4x less to
copy and pin than float. Normalization happens after the copy to ``device``. A file that does not decode comes
back as a marker, so the main process can name it (ImnetError) or record it as skipped.

PIL was chosen over ``torchvision.io.decode_jpeg`` + tensor ``Resize`` after measuring both on
ImageNet-sized JPEGs (benchmarks/RESULTS.md): Pillow-SIMD's decode + resize is faster per image.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from imnet.data.decode import decode_resized, decode_rgb
from imnet.data.filelist import SplitList
from imnet.data.transforms import crop_boxes
from imnet.data.loaders import (EpochOrder, EvalBatch, EvalLoader, Normalization, TrainLoader,
                                torch_device)
from imnet.errors import ImnetError

# Item = (uint8 image tensor or None when undecodable, list position, reason it did not decode)
Item = tuple[torch.Tensor | None, int, str]


def to_uint8_chw(image: Image.Image) -> torch.Tensor:
    """An RGB PIL image as a (3, H, W) uint8 tensor (what ``PILToTensor`` gives, without a copy loop)."""
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)


def eval_crops(image: torch.Tensor, crop_size: int, crops: int) -> torch.Tensor:
    """torchvision's CenterCrop / FiveCrop / TenCrop of a (3, H, W) image, stacked (crops, 3, S, S)."""
    if crops == 1:
        views = [TF.center_crop(image, [crop_size, crop_size])]
    elif crops == 5:
        views = TF.five_crop(image, [crop_size, crop_size])
    else:
        views = TF.ten_crop(image, [crop_size, crop_size])
    return torch.stack(list(views))


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
        # One crop: resize only the centre box (same pixels, less work); 5 or 10 need it all.
        window = self._centre if self.crops == 1 else None
        try:
            image = decode_resized(self.split.path(position), self.resize_size, self.interpolation,
                                   window=window)
        except FileNotFoundError:
            return None, position, "file not found"
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            return None, position, f"cannot decode: {err}"
        return eval_crops(to_uint8_chw(image), self.crop_size, self.crops), position, ""


class TrainDataset(Dataset):
    """Item ``position`` = the augmented image at that position of the split list, as uint8."""

    def __init__(self, split: SplitList, aug: str, resize_size: int, crop_size: int,
                 interpolation: str) -> None:
        self.split, self.aug = split, aug
        self.resize_size, self.interpolation = resize_size, interpolation
        self.crop_size = crop_size
        mode = TF.InterpolationMode(interpolation)
        if aug == "rrc":
            self.transform = T.Compose([T.RandomResizedCrop(crop_size, scale=(0.08, 1.0),
                                                            ratio=(3 / 4, 4 / 3), interpolation=mode),
                                        T.RandomHorizontalFlip()])
        else:  # the random crop is chosen in _random_window, before resizing
            self.transform = T.RandomHorizontalFlip()

    def __len__(self) -> int:
        return len(self.split)

    def _random_window(self, height: int, width: int) -> tuple[int, int, int]:
        """torchvision RandomCrop's draw (uniform top and left) on the resized image."""
        top, left, _, _ = T.RandomCrop.get_params(torch.empty(0, height, width),
                                                  (self.crop_size, self.crop_size))
        return top, left, self.crop_size

    def __getitem__(self, position: int) -> Item:
        path = self.split.path(position)
        try:
            if self.aug == "rrc":  # no draft: a small random window must keep full resolution
                image = decode_rgb(path)
            else:
                image = decode_resized(path, self.resize_size, self.interpolation,
                                       window=self._random_window)
        except FileNotFoundError:
            return None, position, "file not found"
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            return None, position, f"cannot decode: {err}"
        return to_uint8_chw(self.transform(image)), position, ""


def collate(items: list[Item]) -> tuple[torch.Tensor | None, torch.Tensor, list[tuple[int, str]]]:
    """Stack the decoded items; returns (uint8 images or None, their positions, [(position, reason)])."""
    good = [item for item in items if item[0] is not None]
    bad = [(position, reason) for image, position, reason in items if image is None]
    images = torch.stack([image for image, _, _ in good]) if good else None
    return images, torch.tensor([position for _, position, _ in good], dtype=torch.int64), bad


class _Normalizer:
    """uint8 -> float (or half) on ``device``, ``(x / 255 - mean) / std`` per channel."""

    def __init__(self, norm: Normalization, device: torch.device) -> None:
        self.device, self.dtype = device, norm.dtype
        self.mean = torch.tensor(norm.mean, device=device).view(3, 1, 1) * 255
        self.std = torch.tensor(norm.std, device=device).view(3, 1, 1) * 255

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True).float()
        return images.sub_(self.mean).div_(self.std).to(self.dtype)


def _data_loader(dataset: Dataset, batch_size: int, workers: int, device: torch.device,
                 drop_last: bool, sampler: Sampler | None = None) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False,
                      num_workers=workers, persistent_workers=workers > 0,
                      pin_memory=device.type == "cuda", collate_fn=collate, drop_last=drop_last)


class TorchEvalLoader(EvalLoader):
    """Eval loader on a torch DataLoader with ``workers`` processes (0 = in the main process)."""

    name = "torch"

    def __init__(self, split: SplitList, shard: range, *, crop_size: int, resize_size: int,
                 interpolation: str, norm: Normalization, crops: int, batch_size: int, workers: int,
                 device: str, skip_bad: bool) -> None:
        super().__init__(split, shard, batch_size, skip_bad)
        self.device = torch_device(device)
        self._normalize = _Normalizer(norm, self.device)
        dataset = EvalDataset(split, list(shard), resize_size, crop_size, crops, interpolation)
        self._loader = _data_loader(dataset, batch_size, workers, self.device, drop_last=False)

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

    def __init__(self, split: SplitList, *, crop_size: int, resize_size: int, aug: str,
                 interpolation: str, norm: Normalization, batch_size: int, workers: int, device: str,
                 rank: int, world_size: int, seed: int) -> None:
        super().__init__(split, batch_size, rank, world_size, seed)
        self.device = torch_device(device)
        self._normalize = _Normalizer(norm, self.device)
        self._labels = torch.tensor(split.labels, dtype=torch.int64)
        dataset = TrainDataset(split, aug, resize_size, crop_size, interpolation)
        self._loader = _data_loader(dataset, batch_size, workers, self.device, drop_last=True,
                                    sampler=_EpochSampler(self.schedule))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, positions, bad in self._loader:
            if bad:
                position, reason = bad[0]
                raise ImnetError(f"{self.split.path(position)}: {reason} (listed in "
                                 f"{self.split.list_path})")
            labels = self._labels[positions].to(self.device, non_blocking=True)
            yield self._normalize(images), labels

    def close(self) -> None:
        self._loader = None
