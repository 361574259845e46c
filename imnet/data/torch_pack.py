"""The torch loader on a pack: samples read from the shards, shuffled with the ``webdataset``
package's buffer, decoded and augmented by the same datasets as the tree's
(:mod:`imnet.data.torch_loader`), finished by the same normalizer.

Each rank reads its part of the split (:mod:`imnet.data.packsplit`: eval a contiguous range, train
a fresh partition every epoch); DataLoader workers split the rank's part again into contiguous runs
(train: whole batches each), so every sample is read by exactly one worker of one rank per epoch. A part is a few pieces of shards: each piece is read from
its shard by the offsets in the shard's DALI index, as DALI reads it: one ``pread`` per member,
in file order (the ``webdataset`` package's Python tar iterator cost 0.2 ms per sample here, ~7 % of
the decode; timm's ``wds/`` reader, which uses it, reads imnet packs too: tested). Train
shuffles every epoch: the shards' order (the partition), the pieces' order per (seed, epoch, rank,
worker), then the samples through
``webdataset``'s shuffle buffer (``shuffle_buffer`` samples, seeded the same way). The epoch is a
shared-memory counter, so persistent workers see ``set_epoch``.
"""
from __future__ import annotations

import io
import random
from typing import Iterator

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from imnet.data.base import Normalization, TrainLoader, batch_erasing, torch_device
from imnet.data.packsplit import PackSplit, Piece, train_pieces
from imnet.data.torch_loader import (EvalDataset, TorchEvalLoader, TrainDataset, _Normalizer, collate,
                                     seed_numpy_in_worker)
from imnet.data.transforms import TrainAugment
from imnet.errors import ImnetError
from imnet.pack.layout import read_index

# Raw samples held per worker for shuffling (~110 KB each for ImageNet: ~110 MB per worker).
SHUFFLE_BUFFER = 1024
SHUFFLE_INITIAL = 256


def read_piece(split: PackSplit, piece: Piece) -> Iterator[tuple[bytes, int, int]]:
    """(jpg bytes, class index from ``.cls``, list position) of each sample of ``piece``, in order,
    read by the offsets of the shard's DALI index (one ``pread`` per member, sequential in the file)."""
    import os

    tar = split.shards.tars[piece.shard]
    index = read_index(split.shards.indexes[piece.shard])
    fd = os.open(tar, os.O_RDONLY)
    try:
        for i, components in enumerate(index[piece.start:piece.stop]):
            found = {ext: (offset, size) for ext, offset, size, _ in components}
            if "jpg" not in found or "cls" not in found:
                raise ImnetError(f"{tar}: sample {components[0][3].split('.')[0]!r} lacks a .jpg or .cls member")
            jpg = os.pread(fd, found["jpg"][1], found["jpg"][0])
            cls = os.pread(fd, found["cls"][1], found["cls"][0])
            if len(jpg) != found["jpg"][1] or not cls.strip().isdigit():
                raise ImnetError(f"{tar}: cut short or damaged at sample {components[0][3]!r}; check the pack with "
                                 f"`sha256sum -c SHA256SUMS` in {split.root}")
            yield jpg, int(cls), piece.first + i
    finally:
        os.close(fd)


def _worker_part(total: int, unit: int) -> tuple[int, int]:
    """This worker's share [lo, hi) of ``total`` units (batches or samples), contiguous."""
    worker = get_worker_info()
    workers, index = (worker.num_workers, worker.id) if worker is not None else (1, 0)
    return index * total // workers, (index + 1) * total // workers


def _cut_pieces(pieces: list[Piece], lo: int, hi: int) -> list[Piece]:
    """The samples ``lo``..``hi - 1`` of the run of ``pieces`` (counted along it), as pieces."""
    out, at = [], 0
    for piece in pieces:
        length = piece.stop - piece.start
        a, b = max(lo, at), min(hi, at + length)
        if a < b:
            out.append(Piece(piece.shard, piece.start + a - at, piece.start + b - at, piece.first + a - at))
        at += length
    return out


class PackEvalDataset(IterableDataset):
    """Eval items (crops, position, reason) of ``positions`` (a rank's contiguous range), each worker
    a contiguous part of it, in order."""

    def __init__(self, split: PackSplit, positions: range, crops: EvalDataset) -> None:
        self.split, self.positions, self.crops = split, positions, crops

    def __iter__(self):
        lo, hi = _worker_part(len(self.positions), 1)
        part = range(self.positions.start + lo, self.positions.start + hi)
        for piece in self.split.pieces(part):
            for jpg, _, position in read_piece(self.split, piece):
                yield self.crops.crops_of(io.BytesIO(jpg), position)


class PackTrainDataset(IterableDataset):
    """Whole train batches (uint8 images, labels) of this rank's range of the epoch, each worker
    its contiguous run of batches, shuffled (module docstring)."""

    def __init__(self, split: PackSplit, augment: TrainDataset, batch_size: int, batches: int, rank: int,
                 world_size: int, seed: int, shuffle_buffer: int) -> None:
        self.split, self.augment, self.batch_size, self.batches = split, augment, batch_size, batches
        self.rank, self.world_size, self.seed, self.shuffle_buffer = rank, world_size, seed, shuffle_buffer
        self.epoch = torch.zeros(1, dtype=torch.int64).share_memory_()

    def __iter__(self):
        from webdataset.filters import _shuffle

        epoch = int(self.epoch[0])
        worker = get_worker_info()
        worker_id = worker.id if worker is not None else 0
        lo, hi = _worker_part(self.batches, 1)
        rng = random.Random(f"{self.seed}/{epoch}/{self.rank}/{worker_id}")
        pieces = _cut_pieces(train_pieces(self.split, self.rank, self.world_size, self.seed, epoch),
                             lo * self.batch_size, hi * self.batch_size)
        rng.shuffle(pieces)
        samples = (s for piece in pieces for s in read_piece(self.split, piece))
        if self.shuffle_buffer > 1:
            samples = _shuffle(samples, bufsize=self.shuffle_buffer,
                               initial=min(SHUFFLE_INITIAL, self.shuffle_buffer), rng=rng)
        batch = []
        for jpg, label, position in samples:
            image, _, reason = self.augment.augmented(io.BytesIO(jpg), position)
            if image is None:
                raise ImnetError(f"{self.split.path(position)}: {reason} (in the pack {self.split.root})")
            batch.append((image, label, ""))
            if len(batch) == self.batch_size:
                images, labels, _ = collate(batch)
                yield images, labels
                batch = []


class TorchPackEvalLoader(TorchEvalLoader):
    """Eval loader on a pack: DataLoader workers each read a contiguous part of the rank's range; the
    rest (normalizing, bad images, batches) is the tree's loader's."""

    def _data_loader(self, split: PackSplit, shard: range, dataset: EvalDataset, persistent: bool) -> DataLoader:
        pack = PackEvalDataset(split, shard, dataset)  # the tree's dataset decodes and crops each member
        return DataLoader(pack, batch_size=self.batch_size, num_workers=self.workers, collate_fn=collate,
                          persistent_workers=persistent and self.workers > 0, pin_memory=self.device.type == "cuda")


class TorchPackTrainLoader(TrainLoader):
    """Train loader on a pack: rank r reads range (r + epoch) % W, split among persistent workers in
    whole batches, shuffled per epoch; ``len()`` full batches on every rank."""

    name = "torch"

    def __init__(self, split: PackSplit, *, crop_size: int, resize_size: int, augment: TrainAugment,
                 norm: Normalization, batch_size: int, workers: int, device: str, rank: int, world_size: int,
                 seed: int, channels_last: bool = False, shuffle_buffer: int = SHUFFLE_BUFFER) -> None:
        super().__init__(split, batch_size, rank, world_size, seed, channels_last, augment)
        self.device = torch_device(device)
        self.workers = workers
        self._normalize = _Normalizer(norm, self.device, channels_last)
        self._erase = batch_erasing(augment, self.device)
        # the tree's dataset does the decoding and augmentation; only where samples come from differs
        transform = TrainDataset(split, augment, resize_size, crop_size, norm.mean)
        self._dataset = PackTrainDataset(split, transform, batch_size, len(self), rank, world_size, seed,
                                         shuffle_buffer)
        self._loader = DataLoader(self._dataset, batch_size=None, num_workers=workers,
                                  persistent_workers=workers > 0, pin_memory=self.device.type == "cuda",
                                  worker_init_fn=seed_numpy_in_worker if augment.per_image else None)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self._dataset.epoch[0] = epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, labels in self._loader:
            images = self._normalize(images)
            yield (self._erase(images) if self._erase else images), labels.to(self.device, non_blocking=True)

    def close(self) -> None:
        self._loader = None
