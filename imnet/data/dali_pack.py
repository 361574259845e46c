"""DALI loaders on a pack: the same ``@pipeline_def`` graphs as the tree's (:mod:`imnet.data.dali`),
fed by DALI's own ``fn.readers.webdataset`` (:class:`~imnet.data.dali.PackReader`) instead of an
external source of paths. One pipeline per loader serves the run; DALI moves through the epochs
itself.

* Eval: each rank reads its contiguous range in order (``stick_to_shard``; the last batch padded
  and the padding dropped by the iterator), so ``indices`` are the range's positions; the labels
  read from each sample's ``.cls`` are checked against the pack's list batch by batch.
* Train: a fresh partition every epoch (``shuffle_after_epoch``, seeded alike on every rank) and a
  shuffle buffer. ``len()`` full batches on every rank; a rank whose range holds one batch more
  reads it and drops it, so the next epoch starts clean. DALI's epoch stream starts at the
  pipeline's build: a resumed run gets every epoch's partition exact, but not the order of the
  uninterrupted run (its epoch e is DALI's epoch e - first epoch of the run).
"""
from __future__ import annotations

import io
from typing import Iterator

import torch
from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

from imnet.data.base import EvalBatch, EvalLoader, Normalization, TrainLoader, batch_erasing, torch_device
from imnet.data.dali import PREFETCH, READER, PackReader, _as_nchw, _DaliLoader, eval_pipeline, train_pipeline
from imnet.data.packsplit import PackSplit
from imnet.data.transforms import TrainAugment
from imnet.errors import ImnetError
from imnet.pack.layout import read_index


def parse_cls(padded: torch.Tensor) -> torch.Tensor:
    """Class indices from ``.cls`` bytes (ASCII digits, zero-padded on the right), as int64 (B,)."""
    digits = padded.to(torch.int64).reshape(padded.shape[0], -1)
    value = torch.zeros(digits.shape[0], dtype=torch.int64)
    for column in digits.cpu().unbind(1):
        value = torch.where(column > 0, value * 10 + (column - 48), value)
    return value


def _first_undecodable(split: PackSplit, positions: list[int]) -> tuple[int, str] | None:
    """The first of ``positions`` whose image PIL cannot decode (read from its shard by offset)."""
    from PIL import Image

    for position in positions:
        shard, sample = split.locate(position)
        ext, offset, size, _ = next(c for c in read_index(split.shards.indexes[shard])[sample] if c[0] == "jpg")
        with open(split.shards.tars[shard], "rb") as handle:
            handle.seek(offset)
            data = handle.read(size)
        try:
            with Image.open(io.BytesIO(data)) as image:
                image.load()
        except (OSError, SyntaxError, ValueError) as err:
            return position, f"cannot decode: {err}"
    return None


class _ReaderRunner:
    """A built reader-driven pipeline and its iterator; ``run()`` yields one DALI epoch. A pass left
    before its end makes it unusable (DALI iterators reset only at an epoch's end)."""

    def __init__(self, pipe, policy: LastBatchPolicy) -> None:
        pipe.build()
        self.iterator = DALIGenericIterator([pipe], ["images", "cls"], reader_name=READER,
                                            last_batch_policy=policy, auto_reset=False, prepare_first_batch=False)
        self.passes = 0
        self.finished = True
        self.current: Iterator[dict] | None = None

    def run(self) -> Iterator[dict]:
        self.current = self._run()
        return self.current

    def _run(self) -> Iterator[dict]:
        if self.passes:
            self.iterator.reset()
        self.passes += 1
        self.finished = False
        for output in self.iterator:
            yield output[0]
        self.finished = True

    def finish(self) -> None:
        """Read a pass its consumer left (a training epoch takes exactly ``len()`` batches) to DALI's
        end of epoch, so the next pass starts clean; after an error it stays unfinished."""
        if self.finished or self.current is None:
            return
        try:
            for _ in self.current:
                pass
        except Exception:  # a failed pass: the owner builds a new pipeline
            pass


class _DaliPackLoader(_DaliLoader):
    def _reader_runner(self, policy: LastBatchPolicy) -> _ReaderRunner:
        if self._runner is not None:
            self._runner.finish()
        if self._runner is None or not self._runner.finished:
            self._runner = None
            self._runner = _ReaderRunner(self._make_pipeline(None), policy)
            self.pipeline_builds += 1
        return self._runner


class DaliPackEvalLoader(_DaliPackLoader, EvalLoader):
    """Eval loader on a pack with DALI's webdataset reader ("dali-gpu" or "dali-cpu")."""

    def __init__(self, split: PackSplit, shard: range, *, crop_size: int, resize_size: int, interpolation: str,
                 norm: Normalization, crops: int, batch_size: int, threads: int, device: str, rank: int = 0,
                 world_size: int = 1, skip_bad: bool, channels_last: bool = False,
                 hw_decoder_load: float = 0.65) -> None:
        EvalLoader.__init__(self, split, shard, batch_size, skip_bad, channels_last)
        self._setup(split, device, threads, batch_size)
        self.rank, self.world_size = rank, world_size
        self.recipe = dict(decoder=self.decoder, resize_size=resize_size, crop_size=crop_size, crops=crops,
                           interpolation=interpolation, norm=norm, channels_last=channels_last,
                           hw_decoder_load=hw_decoder_load)

    def _make_pipeline(self, _source):
        reader = PackReader([str(t) for t in self.split.shards.tars], [str(i) for i in self.split.shards.indexes],
                            self.rank, self.world_size, train=False)
        return eval_pipeline(source=reader, batch_size=self.batch_size, num_threads=self.threads,
                             device_id=self.device_id, prefetch_queue_depth=PREFETCH, **self.recipe)

    def __iter__(self) -> Iterator[EvalBatch]:
        self.skipped = []
        if not len(self.shard):
            return
        if len(self.split) != self.split.shards.num_samples:
            raise ImnetError(f"{self.split.root}: the DALI reader reads whole packs; --limit needs --loader torch")
        expected = list(self.shard)
        try:
            for output in self._reader_runner(LastBatchPolicy.PARTIAL).run():
                count = int(output["cls"].shape[0])
                want = torch.tensor(expected[:count], dtype=torch.int64)
                labels = parse_cls(output["cls"])
                if count > len(expected) or not torch.equal(labels, self._label_tensor[want]):
                    raise RuntimeError(f"DALI pack reader out of step with {self.split.list_path} at position "
                                       f"{expected[0] if expected else '?'}")
                expected = expected[count:]
                yield EvalBatch(_as_nchw(output["images"], self.channels_last), self._label_tensor[want], want)
        except RuntimeError as err:
            if "out of step" in str(err):
                raise
            bad = _first_undecodable(self.split, expected[:(PREFETCH + 2) * self.batch_size])
            if bad:
                raise ImnetError(f"{self.split.path(bad[0])}: {bad[1]} (DALI cannot skip it inside a pack: "
                                 f"--loader torch --skip-bad does)") from err
            raise
        if expected:
            raise RuntimeError(f"DALI pack reader ended with {len(expected)} images of rank {self.rank}'s range "
                               f"unread, from {expected[0]}")


class DaliPackTrainLoader(_DaliPackLoader, TrainLoader):
    """Train loader on a pack with DALI's webdataset reader: a fresh partition and shuffle per epoch."""

    def __init__(self, split: PackSplit, *, crop_size: int, resize_size: int, augment: TrainAugment,
                 norm: Normalization, batch_size: int, threads: int, device: str, rank: int, world_size: int,
                 seed: int, channels_last: bool = False, hw_decoder_load: float = 0.65,
                 shuffle_buffer: int = 1024) -> None:
        TrainLoader.__init__(self, split, batch_size, rank, world_size, seed, channels_last, augment)
        self._setup(split, device, threads, batch_size)
        self.shuffle_buffer = shuffle_buffer
        self.recipe = dict(decoder=self.decoder, augment=augment, resize_size=resize_size, crop_size=crop_size,
                           norm=norm, channels_last=channels_last, hw_decoder_load=hw_decoder_load)
        self._erase = batch_erasing(augment, torch_device(device))

    def _make_pipeline(self, _source):
        reader = PackReader([str(t) for t in self.split.shards.tars], [str(i) for i in self.split.shards.indexes],
                            self.rank, self.world_size, train=True, seed=self.schedule.seed,
                            shuffle_buffer=self.shuffle_buffer)
        return train_pipeline(source=reader, batch_size=self.batch_size, num_threads=self.threads,
                              device_id=self.device_id, prefetch_queue_depth=PREFETCH,
                              seed=(self.schedule.seed * 7919 + self.rank) % 2**31, **self.recipe)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        delivered = 0
        try:
            for output in self._reader_runner(LastBatchPolicy.DROP).run():
                if delivered == len(self):
                    continue  # a batch more than every rank has: read to the epoch's end, not used
                delivered += 1
                images = _as_nchw(output["images"], self.channels_last)
                labels = parse_cls(output["cls"]).to(images.device, non_blocking=True)
                yield (self._erase(images) if self._erase else images), labels
        except RuntimeError as err:
            raise ImnetError(f"{self.split.root}: the DALI pack reader failed ({str(err).splitlines()[0]}); "
                             f"`--loader torch` names an undecodable image") from err
