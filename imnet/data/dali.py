"""DALI pipelines: one ``@pipeline_def`` per recipe, the decoder device a parameter.

``decoder="mixed"`` decodes with nvJPEG on the GPU (``hw_decoder_load`` of the work goes to the A100/
H100 hardware JPEG decoder) and everything after runs on the GPU; ``decoder="cpu"`` with
``device_id=None`` runs the same graph on the CPU, which is how CI exercises every line here.

The readers get a DALI ``file_list`` whose label column is the *position* in the split's list, not
the class: positions make the eval's ``indices`` exact, let the reader's padding be dropped by
position, and let a pass resume after an undecodable image; class labels are looked up from the
positions in Python. These lists are written to a temporary folder per loader (a file list is parsed
by DALI in C++: 1.28M entries build in ~2 s, passed as a Python ``files=`` list they took ~14 s).
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterator

import torch
from nvidia.dali import fn, pipeline_def, types
from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

from imnet.data.decode import probe_image
from imnet.data.filelist import SplitList
from imnet.data.loaders import EvalBatch, EvalLoader, Normalization, TrainLoader, torch_device
from imnet.data.transforms import CROP_LAYOUTS, INTERPOLATIONS
from imnet.errors import ImnetError

READER = "Reader"
PREFETCH = 2
# nvJPEG scratch sizes, and the hardware decoder's preallocation for ImageNet's largest image, as in
# DALI's ResNet-50 example: no reallocations during the first epochs. "mixed" decoding only.
MIXED_DECODER_PADDING = dict(device_memory_padding=211_025_920, host_memory_padding=140_544_512,
                             preallocate_width_hint=5980, preallocate_height_hint=6430)


def decoder_for(device: str) -> tuple[str, int | None]:
    """DALI decoder placement and device_id for a torch device string: ("mixed", N) or ("cpu", None)."""
    parsed = torch_device(device)
    if parsed.type == "cuda":
        return "mixed", parsed.index if parsed.index is not None else torch.cuda.current_device()
    return "cpu", None


def decode(encoded, decoder: str, hw_decoder_load: float):
    """Decode to RGB (HWC uint8) on ``decoder`` ("cpu" or "mixed"); EXIF orientation ignored, as PIL."""
    extra = dict(MIXED_DECODER_PADDING, hw_decoder_load=hw_decoder_load) if decoder == "mixed" else {}
    return fn.decoders.image(encoded, device=decoder, output_type=types.RGB, adjust_orientation=False,
                             **extra)


def resize_shorter(images, resize_size: int, interp):
    """Resize so the shorter side is ``resize_size`` and the longer ``resize_size * long // short``.

    This is torchvision's ``Resize(int)`` size rule in integer arithmetic (DALI's own
    ``resize_shorter`` rounds the longer side instead, which moves crop boxes by a pixel).
    Returns the resized images and their (height, width) as DALI nodes.
    """
    shape = images.shape()
    height, width = shape[0], shape[1]
    portrait = height > width  # bool nodes act as 0/1 in DALI arithmetic
    new_height = (1 - portrait) * resize_size + portrait * (resize_size * height // width)
    new_width = portrait * resize_size + (1 - portrait) * (resize_size * width // height)
    resized = fn.resize(images, resize_x=fn.cast(new_width, dtype=types.FLOAT),
                        resize_y=fn.cast(new_height, dtype=types.FLOAT), interp_type=interp,
                        antialias=True)
    return resized, new_height, new_width


def crop_positions(extent):
    """DALI ``crop_pos`` values placing a crop at torchvision's anchors along one axis.

    ``extent`` = resized size - crop size. DALI's anchor is ``round(crop_pos * extent)`` with halves
    rounded up, torchvision's centre is ``int(round(extent / 2.0))`` with halves to even, so the
    centre is computed exactly here and passed as ``anchor / extent``.
    """
    half = extent // 2
    centre = half + (extent % 2) * (half % 2)
    denominator = fn.cast(extent + (extent == 0), dtype=types.FLOAT)
    return {"start": 0.0, "end": 1.0, "centre": fn.cast(centre, dtype=types.FLOAT) / denominator,
            "centre_mirrored": fn.cast(extent - centre, dtype=types.FLOAT) / denominator}


def _normalize_args(norm: Normalization) -> dict:
    return dict(mean=[255.0 * m for m in norm.mean], std=[255.0 * s for s in norm.std],
                dtype=types.FLOAT16 if norm.fp16 else types.FLOAT, output_layout="CHW")


@pipeline_def
def eval_pipeline(file_root: str, file_list: str, shard_id: int, num_shards: int, decoder: str, resize_size: int, crop_size: int, crops: int,
                  interpolation: str, norm: Normalization, hw_decoder_load: float = 0.65):
    """Eval: read, decode, resize the shorter side, cut 1/5/10 crops of one decoded image, stack.

    Outputs ``(crops, 3, crop_size, crop_size)`` normalized images and the list position per sample.
    """
    encoded, position = fn.readers.file(file_root=file_root, file_list=file_list,
                                        shard_id=shard_id, num_shards=num_shards,
                                        random_shuffle=False, pad_last_batch=True,
                                        stick_to_shard=True, name=READER)
    images = decode(encoded, decoder, hw_decoder_load)
    interp = getattr(types, INTERPOLATIONS[interpolation][1])
    images, height, width = resize_shorter(images, resize_size, interp)
    along_y = crop_positions(height - crop_size)
    along_x = crop_positions(width - crop_size)
    views = [fn.crop_mirror_normalize(images, crop=(crop_size, crop_size), crop_pos_y=along_y[vertical],
                                      crop_pos_x=along_x[horizontal], mirror=int(mirrored),
                                      **_normalize_args(norm))
             for vertical, horizontal, mirrored in CROP_LAYOUTS[crops]]
    return fn.stack(*views), position


@pipeline_def
def train_pipeline(file_root: str, file_list: str, shard_id: int, num_shards: int, decoder: str, aug: str, resize_size: int, crop_size: int,
                   interpolation: str, norm: Normalization, hw_decoder_load: float = 0.65):
    """Train: "classic" = resize shorter side, random crop, flip; "rrc" = RandomResizedCrop fused into
    the decoder (only the chosen window is decoded), resize to the crop, flip. Then normalize.

    Outputs ``(3, crop_size, crop_size)`` images and the list position per sample.
    """
    encoded, position = fn.readers.file(file_root=file_root, file_list=file_list,
                                        shard_id=shard_id, num_shards=num_shards,
                                        random_shuffle=False, pad_last_batch=False, name=READER)
    interp = getattr(types, INTERPOLATIONS[interpolation][1])
    flip = fn.random.coin_flip(probability=0.5)
    if aug == "rrc":
        extra = dict(MIXED_DECODER_PADDING, hw_decoder_load=hw_decoder_load) if decoder == "mixed" else {}
        images = fn.decoders.image_random_crop(encoded, device=decoder, output_type=types.RGB,
                                               adjust_orientation=False, random_area=[0.08, 1.0],
                                               random_aspect_ratio=[3 / 4, 4 / 3], num_attempts=10,
                                               **extra)
        images = fn.resize(images, resize_x=crop_size, resize_y=crop_size, interp_type=interp,
                           antialias=True)
        window = {}
    else:
        images = decode(encoded, decoder, hw_decoder_load)
        images, _, _ = resize_shorter(images, resize_size, interp)
        # Uniform crop position, as RandomCrop (DALI rounds pos * extent, so the two edge anchors
        # come up half as often as the others; immaterial at ImageNet's extents of 32+ pixels).
        window = dict(crop=(crop_size, crop_size), crop_pos_x=fn.random.uniform(range=(0.0, 1.0)),
                      crop_pos_y=fn.random.uniform(range=(0.0, 1.0)))
    images = fn.crop_mirror_normalize(images, mirror=flip, **window, **_normalize_args(norm))
    return images, position


def smoke_test(device: str) -> None:
    """Build and run a one-sample DALI pipeline on ``device``; raises whatever DALI raises."""
    decoder, device_id = decoder_for(device)

    @pipeline_def
    def tiny():
        noise = fn.random.uniform(range=(0.0, 1.0), shape=(4, 4, 3))
        return fn.resize(noise.gpu() if decoder == "mixed" else noise, size=(2, 2))

    pipe = tiny(batch_size=1, num_threads=1, device_id=device_id)
    pipe.build()
    pipe.run()


def _iterator(pipe, last_batch: LastBatchPolicy) -> DALIGenericIterator:
    """Wrap ``pipe`` for PyTorch. The first batch is not prepared in the constructor, so a decoding
    error surfaces in ``next()``, where the loaders catch it and name the file."""
    pipe.build()
    return DALIGenericIterator([pipe], ["images", "positions"], reader_name=READER,
                               last_batch_policy=last_batch, auto_reset=False,
                               prepare_first_batch=False)


class PositionLists:
    """DALI file lists ("<relative path> <position>" per line) in a temporary folder owned by one
    loader; removed by ``close()`` or when the loader is garbage collected."""

    def __init__(self, split: SplitList) -> None:
        self.split = split
        self._folder = tempfile.TemporaryDirectory(prefix="imnet-dali-")
        self._lines: list[str] | None = None

    def write(self, positions: list[int] | range, name: str) -> str:
        """Write the entries at ``positions`` (in that order) to a list file; returns its path."""
        if self._lines is None:
            self._lines = [f"{file} {position}\n" for position, file in enumerate(self.split.files)]
        path = Path(self._folder.name) / name
        path.write_text("".join(self._lines[p] for p in positions), encoding="utf-8")
        return str(path)

    def close(self) -> None:
        self._folder.cleanup()


def _find_undecodable(split: SplitList, positions: list[int], window: int,
                      stop_at_first: bool) -> list[tuple[int, str]]:
    """PIL-probe the first ``window`` of ``positions`` (the batches a failed pipeline may have been
    working on: the current one and those prefetched) and return (position, reason) of those that
    do not decode. DALI reports a failed batch without always naming the file, hence the probe."""
    found = []
    for position in positions[:window]:
        reason = probe_image(split.path(position))
        if reason:
            found.append((position, reason))
            if stop_at_first:
                break
    return found


class DaliEvalLoader(EvalLoader):
    """Eval loader on DALI: "dali-gpu" (nvJPEG, output on the GPU) or "dali-cpu" (device_id=None)."""

    def __init__(self, split: SplitList, shard: range, *, crop_size: int, resize_size: int,
                 interpolation: str, norm: Normalization, crops: int, batch_size: int, threads: int,
                 device: str, rank: int, world_size: int, skip_bad: bool,
                 hw_decoder_load: float = 0.65) -> None:
        super().__init__(split, shard, batch_size, skip_bad)
        self.decoder, self.device_id = decoder_for(device)
        self.name = "dali-gpu" if self.decoder == "mixed" else "dali-cpu"
        self.rank, self.world_size = rank, world_size
        self.threads = max(1, threads)
        self.recipe = dict(decoder=self.decoder, resize_size=resize_size, crop_size=crop_size,
                           crops=crops, interpolation=interpolation, norm=norm,
                           hw_decoder_load=hw_decoder_load)
        self._lists = PositionLists(split)

    def close(self) -> None:
        self._lists.close()

    def _start(self, positions: list[int] | None) -> DALIGenericIterator:
        """An iterator over this rank's DALI shard (``positions`` None) or over ``positions``."""
        if positions is None:
            file_list = self._lists.write(range(len(self.files)), "eval.txt")
            shard_id, num_shards = self.rank, self.world_size
        else:
            file_list = self._lists.write(positions, "eval-rest.txt")
            shard_id, num_shards = 0, 1
        pipe = eval_pipeline(file_root=str(self.split.root), file_list=file_list,
                             shard_id=shard_id, num_shards=num_shards, batch_size=self.batch_size,
                             num_threads=self.threads, device_id=self.device_id,
                             prefetch_queue_depth=PREFETCH, **self.recipe)
        return _iterator(pipe, LastBatchPolicy.PARTIAL)

    def __iter__(self) -> Iterator[EvalBatch]:
        self.skipped = []
        expected = list(self.shard)  # positions still to deliver, in reading order
        if not expected:  # more ranks than images: this rank's shard is empty
            return
        iterator = self._start(None)
        while expected:
            try:
                output = next(iterator)[0]
            except StopIteration:
                break
            except RuntimeError as err:
                iterator = None  # drop the failed pipeline before probing and restarting
                bad = _find_undecodable(self.split, expected, (PREFETCH + 2) * self.batch_size,
                                        stop_at_first=not self.skip_bad)
                if not bad:  # not a file PIL can pin down (or not a data problem): as it is
                    raise
                for position, reason in bad:
                    self._bad_image(position, reason)
                dropped = {position for position, _ in bad}
                expected = [p for p in expected if p not in dropped]
                if expected:
                    iterator = self._start(expected)
                continue
            positions = output["positions"].view(-1).to(torch.int64)
            # Keep the positions this rank still expects, in order; anything after them is the
            # reader's padding of the last batch (a repeat of the shard's last image).
            count = min(len(positions), len(expected))
            want = torch.tensor(expected[:count], dtype=torch.int64)
            if not torch.equal(positions[:count], want):
                raise RuntimeError(f"DALI reader order diverged: got {positions[:count].tolist()}, "
                                   f"expected {want.tolist()}")
            expected = expected[count:]
            yield EvalBatch(output["images"][:count], self._label_tensor[want], want)
        if expected:  # never drop images silently
            raise RuntimeError(f"DALI reader ended with {len(expected)} images of rank {self.rank}'s "
                               f"shard of {self.split.list_path} unread, from {expected[0]}")


class DaliTrainLoader(TrainLoader):
    """Train loader on DALI; a fresh pipeline per epoch reads that epoch's permutation of the list."""

    def __init__(self, split: SplitList, *, crop_size: int, resize_size: int, aug: str,
                 interpolation: str, norm: Normalization, batch_size: int, threads: int, device: str,
                 rank: int, world_size: int, seed: int, hw_decoder_load: float = 0.65) -> None:
        super().__init__(split, batch_size, rank, world_size, seed)
        self.decoder, self.device_id = decoder_for(device)
        self.name = "dali-gpu" if self.decoder == "mixed" else "dali-cpu"
        self.threads = max(1, threads)
        self.recipe = dict(decoder=self.decoder, aug=aug, resize_size=resize_size,
                           crop_size=crop_size, interpolation=interpolation, norm=norm,
                           hw_decoder_load=hw_decoder_load)
        self._labels = torch.tensor(split.labels, dtype=torch.int64)
        self._lists = PositionLists(split)

    def close(self) -> None:
        self._lists.close()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # The epoch's order, cut to equal rank shares; the reader takes this rank's contiguous share
        # (shard_id=rank), which is schedule.positions(), and drops its last partial batch.
        order = self.schedule.order()
        positions = self.schedule.positions()
        pipe = train_pipeline(file_root=str(self.split.root),
                              file_list=self._lists.write(order, "train.txt"),
                              shard_id=self.rank, num_shards=self.world_size,
                              batch_size=self.batch_size, num_threads=self.threads,
                              device_id=self.device_id, prefetch_queue_depth=PREFETCH,
                              seed=(self.schedule.seed * 7919 + self.epoch * 104_729 + self.rank) % 2**31,
                              **self.recipe)
        iterator = _iterator(pipe, LastBatchPolicy.DROP)
        delivered = 0
        while True:
            try:
                output = next(iterator)[0]
            except StopIteration:
                return
            except RuntimeError as err:
                iterator = None
                bad = _find_undecodable(self.split, positions[delivered:],
                                        (PREFETCH + 2) * self.batch_size, stop_at_first=True)
                if bad:
                    position, reason = bad[0]
                    raise ImnetError(f"{self.split.path(position)}: {reason} (listed in "
                                     f"{self.split.list_path})") from err
                raise
            batch_positions = output["positions"].view(-1).to(torch.int64)
            delivered += len(batch_positions)
            labels = self._labels[batch_positions]
            yield output["images"], labels.to(output["images"].device, non_blocking=True)

