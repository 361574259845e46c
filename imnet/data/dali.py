"""DALI pipelines: one ``@pipeline_def`` per recipe, the decoder device a parameter; built once per
loader and run for every epoch or pass.

``decoder="mixed"`` decodes with nvJPEG on the GPU (``hw_decoder_load`` of the work goes to the A100/
H100 hardware JPEG decoder) and everything after runs on the GPU; ``decoder="cpu"`` with
``device_id=None`` runs the same graph on the CPU, which is how CI exercises every line here.

What to read comes from an ``external_source``: per batch, the files' paths (read by DALI's own
``fn.io.file.read`` on its threads) and their *positions* in the split's list. The loader owns the
order, the same one the torch loader uses (:class:`~imnet.data.base.EpochOrder` for train, the
rank's contiguous shard for eval), so one pipeline serves every epoch: ``set_epoch`` changes what the
source hands out at the next pass, with no pipeline, file list or decoder rebuilt. Positions make the
eval's ``indices`` exact and let a pass resume after an undecodable image; class labels are looked up
from them in Python. A pipeline is rebuilt only after it raised (DALI pipelines are not reusable
after an error) or when a pass was left with batches undelivered.

The train pipeline's per-image policies (RandAugment in timm's form, TrivialAugmentWide, colour
jitter) are :mod:`imnet.data.dali_augment`'s; the pipeline is defined with ``enable_conditionals``
for them, and random erasing runs on its output batch (timm's ``RandomErasing``, on the GPU there).

Decoder settings ("mixed" only): nvJPEG scratch stays at DALI's defaults (16 MiB of GPU memory and
2 x 8 MiB pinned per thread, :mod:`imnet.data.resources`); only the hardware decoder's
preallocation hint for ImageNet's largest image is given, as NVIDIA's current ResNet-50 example does.
``jpeg_fancy_upsampling`` is on for eval *and* train: chroma is upsampled the way libjpeg does for
PIL and the CPU twin, so GPU-decoded pixels match the CPU paths (and published, PIL-based
figures); training sees the same pixels as evaluation, for the cost of an interpolation in the
colour-conversion step (measured by benchmarks/gpu.sh).
"""
from __future__ import annotations

import os
from typing import Iterator

import numpy as np
import torch
from nvidia.dali import fn, pipeline_def, types
from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

from imnet.data import dali_augment
from imnet.data.base import EvalBatch, EvalLoader, Normalization, TrainLoader, batch_erasing, torch_device
from imnet.data.decode import probe_image
from imnet.data.filelist import SplitList
from imnet.data.transforms import CROP_LAYOUTS, INTERPOLATIONS, TrainAugment, fill_value
from imnet.errors import ImnetError

PREFETCH = 2
# The hardware decoder's preallocation for ImageNet's largest image (NVIDIA's ResNet-50 example).
# benchmarks/gpu.sh measures what it costs; set to {} there to compare.
MIXED_DECODER_HINTS = dict(preallocate_width_hint=5980, preallocate_height_hint=6430)
FANCY_UPSAMPLING = True


def decoder_for(device: str) -> tuple[str, int | None]:
    """DALI decoder placement and device_id for a torch device string: ("mixed", N) or ("cpu", None)."""
    parsed = torch_device(device)
    if parsed.type == "cuda":
        return "mixed", parsed.index if parsed.index is not None else torch.cuda.current_device()
    return "cpu", None


def _mixed_options(decoder: str, hw_decoder_load: float) -> dict:
    if decoder != "mixed":
        return {}
    return dict(MIXED_DECODER_HINTS, hw_decoder_load=hw_decoder_load,
                jpeg_fancy_upsampling=FANCY_UPSAMPLING)


def decode(encoded, decoder: str, hw_decoder_load: float):
    """Decode to RGB (HWC uint8) on ``decoder`` ("cpu" or "mixed"); EXIF orientation ignored, as PIL."""
    return fn.decoders.image(encoded, device=decoder, output_type=types.RGB, adjust_orientation=False,
                             **_mixed_options(decoder, hw_decoder_load))


def read_files(source):
    """The external source of file paths and list positions, and the files' bytes read by DALI."""
    paths, positions = fn.external_source(source=source, num_outputs=2, batch=True,
                                          dtype=[types.UINT8, types.INT64])
    return fn.io.file.read(paths), positions


READER = "Reader"


class PackReader:
    """What a pack's pipeline reads: DALI's own ``fn.readers.webdataset`` over the split's shards and
    their index files, sharded by rank (``shard_id=rank``, ``num_shards=world_size``: contiguous
    ranges of samples, :mod:`imnet.data.packsplit`). Eval: in order, each rank its range, the last
    batch padded (the iterator drops the padding). Train: ``shuffle_after_epoch`` (a new order of
    the shards every epoch, the same on every rank from ``seed``: a fresh partition) and
    ``random_shuffle`` through a buffer of ``shuffle_buffer`` samples."""

    def __init__(self, tars: list[str], indexes: list[str], rank: int, world_size: int, train: bool,
                 seed: int = 0, shuffle_buffer: int = 1024) -> None:
        self.tars, self.indexes = tars, indexes
        self.rank, self.world_size, self.train = rank, world_size, train
        self.seed, self.shuffle_buffer = seed, shuffle_buffer

    def read(self):
        """(encoded images, ``.cls`` bytes zero-padded to the batch's longest) as DALI nodes."""
        order = (dict(random_shuffle=True, initial_fill=self.shuffle_buffer, shuffle_after_epoch=True,
                      shuffle_after_epoch_seed=self.seed % 2**31) if self.train
                 else dict(random_shuffle=False, stick_to_shard=True, pad_last_batch=True))
        encoded, cls = fn.readers.webdataset(paths=self.tars, index_paths=self.indexes, ext=["jpg", "cls"],
                                             missing_component_behavior="error", shard_id=self.rank,
                                             num_shards=self.world_size, name=READER, **order)
        return encoded, fn.pad(cls, fill_value=0)


def read_samples(source):
    """The pipeline's input: a pack's reader (encoded images, ``.cls`` bytes), or the external source
    of a tree's paths (encoded images, list positions)."""
    return source.read() if isinstance(source, PackReader) else read_files(source)


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


def _normalize_args(norm: Normalization, channels_last: bool) -> dict:
    return dict(mean=[255.0 * m for m in norm.mean], std=[255.0 * s for s in norm.std],
                dtype=types.FLOAT16 if norm.fp16 else types.FLOAT,
                output_layout="HWC" if channels_last else "CHW")


@pipeline_def
def eval_pipeline(source, decoder: str, resize_size: int, crop_size: int, crops: int,
                  interpolation: str, norm: Normalization, channels_last: bool = False,
                  hw_decoder_load: float = 0.65):
    """Eval: read, decode, resize the shorter side, cut 1/5/10 crops of one decoded image, stack.

    Outputs ``(crops, 3, crop_size, crop_size)`` normalized images (``(crops, crop_size, crop_size,
    3)`` with ``channels_last``) and the list position per sample.
    """
    encoded, position = read_samples(source)
    images = decode(encoded, decoder, hw_decoder_load)
    interp = getattr(types, INTERPOLATIONS[interpolation][1])
    images, height, width = resize_shorter(images, resize_size, interp)
    along_y = crop_positions(height - crop_size)
    along_x = crop_positions(width - crop_size)
    views = [fn.crop_mirror_normalize(images, crop=(crop_size, crop_size), crop_pos_y=along_y[vertical],
                                      crop_pos_x=along_x[horizontal], mirror=int(mirrored),
                                      **_normalize_args(norm, channels_last))
             for vertical, horizontal, mirrored in CROP_LAYOUTS[crops]]
    return fn.stack(*views), position


def _train_interp(interpolation: str):
    """The crop's resampler: a DALI interpolation type, or for "random" a per-image choice of linear
    or cubic (timm's random bilinear/bicubic)."""
    if interpolation == "random":
        choice = fn.random.uniform(values=[int(types.INTERP_LINEAR), int(types.INTERP_CUBIC)], dtype=types.INT32)
        return fn.cast(choice, dtype=types.DALIDataType.INTERP_TYPE)
    return getattr(types, INTERPOLATIONS[interpolation][1])


def per_image_policy(images, augment: TrainAugment, mean):
    """The augment's per-image policy on uint8 HWC images (after crop and flip): timm's RandAugment,
    TrivialAugmentWide or colour jitter (:mod:`imnet.data.dali_augment`); a pipeline that calls it
    needs ``enable_conditionals``."""
    if augment.rand_augment is not None:
        return dali_augment.rand_augment(images, augment.rand_augment, fill_value(mean))
    if augment.auto_augment == "ta_wide":
        return dali_augment.trivial_augment(images)
    if augment.jitter > 0:
        return dali_augment.color_jitter(images, augment.jitter)
    return images


@pipeline_def(enable_conditionals=True)
def train_pipeline(source, decoder: str, augment: TrainAugment, resize_size: int, crop_size: int,
                   norm: Normalization, channels_last: bool = False, hw_decoder_load: float = 0.65):
    """Train: "classic" = resize shorter side, random crop, flip; "rrc" = RandomResizedCrop fused into
    the decoder (only the chosen window is decoded), resize to the crop, flip. Then the per-image
    policy of ``augment`` (:mod:`imnet.data.dali_augment`: timm's RandAugment, TrivialAugmentWide or
    colour jitter) and normalize; random erasing runs on the output batch (:func:`batch_erasing`).

    Outputs ``(3, crop_size, crop_size)`` images (``(crop_size, crop_size, 3)`` with
    ``channels_last``) and the list position per sample.
    """
    encoded, position = read_samples(source)
    interp = _train_interp(augment.interpolation)
    flip = fn.random.coin_flip(probability=0.5)
    if augment.crop == "rrc":
        images = fn.decoders.image_random_crop(encoded, device=decoder, output_type=types.RGB,
                                               adjust_orientation=False, random_area=[0.08, 1.0],
                                               random_aspect_ratio=[3 / 4, 4 / 3], num_attempts=10,
                                               **_mixed_options(decoder, hw_decoder_load))
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
    if augment.per_image:  # crop and flip first, as the torch loader (timm, torchvision) does
        if window:
            images = fn.crop(images, **window)
            window = {}
        images = per_image_policy(fn.flip(images, horizontal=flip), augment, norm.mean)
        flip = 0
    images = fn.crop_mirror_normalize(images, mirror=flip, **window, **_normalize_args(norm, channels_last))
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


class PathSource:
    """DALI external source: consecutive batches of (encoded path, position) over the positions of
    the current pass (``start``); raises StopIteration after the last one, ending DALI's epoch.

    DALI calls it when it schedules a batch (up to ``PREFETCH`` ahead), so ``start`` must be called
    before the pass's first batch is requested; ``handed_out`` counts positions given so far."""

    def __init__(self, split: SplitList, batch_size: int) -> None:
        self._prefix = f"{split.root}/"
        self._files = split.files
        self.batch_size = batch_size
        self.positions: list[int] = []
        self.handed_out = 0

    def start(self, positions: list[int]) -> None:
        self.positions, self.handed_out = list(positions), 0

    def __call__(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        chunk = self.positions[self.handed_out:self.handed_out + self.batch_size]
        if not chunk:
            raise StopIteration
        self.handed_out += len(chunk)
        # os.fsencode: the path's own bytes, so a non-UTF-8 file name reads as PIL would open it
        return ([np.frombuffer(os.fsencode(self._prefix + self._files[p]), dtype=np.uint8) for p in chunk],
                [np.array([p], dtype=np.int64) for p in chunk])


class PipelineRunner:
    """One built pipeline, its iterator and its :class:`PathSource`, run pass after pass.

    ``run(positions)`` yields the pass's outputs (dicts of ``images`` and ``positions``). The
    pipeline is reused while every pass it ran ended cleanly: drained to DALI's end of epoch, or with
    all its batches handed out and delivered (DALI then ends the epoch without decoding more).
    ``reusable`` is False after an error or an abandoned pass; the owner then builds a new one."""

    def __init__(self, pipe, source: PathSource) -> None:
        pipe.build()
        self.source = source
        self.iterator = DALIGenericIterator([pipe], ["images", "positions"],
                                            last_batch_policy=LastBatchPolicy.PARTIAL,
                                            auto_reset=False, prepare_first_batch=False)
        self.passes = 0
        self.reusable = True
        self._delivered = 0
        self._open = False  # a pass whose end of epoch DALI has not yet reported

    def _finish_open_pass(self) -> None:
        """Let DALI report the end of a pass whose batches were all delivered."""
        if not self._open:
            return
        if self._delivered < len(self.source.positions):
            self.reusable = False  # batches left in flight: only a new pipeline starts clean
            return
        try:
            next(self.iterator)
            self.reusable = False  # more than the pass: never expected
        except StopIteration:
            self._open = False

    def run(self, positions: list[int]) -> Iterator[dict]:
        self._finish_open_pass()
        if not self.reusable:
            raise RuntimeError("DALI pipeline reused after an unfinished pass or an error")
        self.source.start(positions)
        if self.passes:
            self.iterator.reset()
        self.passes += 1
        self._open, self._delivered = True, 0
        if not positions:
            return
        while True:
            try:
                output = next(self.iterator)[0]
            except StopIteration:
                self._open = False
                return
            except BaseException:
                self.reusable = False
                raise
            self._delivered += int(output["positions"].shape[0])
            yield output


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


def _as_nchw(images: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """DALI's (..., H, W, 3) channels_last output as a (..., 3, H, W) view (no copy)."""
    return images.movedim(-1, -3) if channels_last else images


class _DaliLoader:
    """What the DALI eval and train loaders share: decoder placement, the runner, (re)building."""

    def _setup(self, split: SplitList, device: str, threads: int, batch_size: int) -> None:
        self.decoder, self.device_id = decoder_for(device)
        self.name = "dali-gpu" if self.decoder == "mixed" else "dali-cpu"
        self.threads = self.workers = max(1, threads)
        self._source_split, self._source_batch = split, batch_size
        self._runner: PipelineRunner | None = None

    def _make_pipeline(self, source: PathSource):
        raise NotImplementedError

    def _pass(self, positions: list[int]) -> Iterator[dict]:
        """A pass over ``positions`` on the loader's pipeline, built (again) when needed."""
        if self._runner is not None:
            self._runner._finish_open_pass()
        if self._runner is None or not self._runner.reusable:
            self._runner = None  # let DALI free the old pipeline before building the next
            source = PathSource(self._source_split, self._source_batch)
            self._runner = PipelineRunner(self._make_pipeline(source), source)
            self.pipeline_builds += 1
        return self._runner.run(positions)

    def close(self) -> None:
        self._runner = None


class DaliEvalLoader(_DaliLoader, EvalLoader):
    """Eval loader on DALI: "dali-gpu" (nvJPEG, output on the GPU) or "dali-cpu" (device_id=None).
    One pipeline for every pass; a pass that meets an undecodable image continues on a new one."""

    def __init__(self, split: SplitList, shard: range, *, crop_size: int, resize_size: int,
                 interpolation: str, norm: Normalization, crops: int, batch_size: int, threads: int,
                 device: str, rank: int = 0, skip_bad: bool, channels_last: bool = False,
                 hw_decoder_load: float = 0.65) -> None:
        EvalLoader.__init__(self, split, shard, batch_size, skip_bad, channels_last)
        self._setup(split, device, threads, batch_size)
        self.rank = rank
        self.recipe = dict(decoder=self.decoder, resize_size=resize_size, crop_size=crop_size,
                           crops=crops, interpolation=interpolation, norm=norm,
                           channels_last=channels_last, hw_decoder_load=hw_decoder_load)

    def _make_pipeline(self, source: PathSource):
        return eval_pipeline(source=source, batch_size=self.batch_size, num_threads=self.threads,
                             device_id=self.device_id, prefetch_queue_depth=PREFETCH, **self.recipe)

    def __iter__(self) -> Iterator[EvalBatch]:
        self.skipped = []
        expected = list(self.shard)  # positions still to deliver, in reading order
        if not expected:  # more ranks than images: this rank's shard is empty
            return
        outputs = self._pass(expected)
        while expected:
            try:
                output = next(outputs)
            except StopIteration:
                break
            except RuntimeError:
                outputs = None  # drop the failed pass before probing and restarting
                bad = _find_undecodable(self.split, expected, (PREFETCH + 2) * self.batch_size,
                                        stop_at_first=not self.skip_bad)
                if not bad:  # not a file PIL can pin down (or not a data problem): as it is
                    raise
                for position, reason in bad:
                    self._bad_image(position, reason)
                dropped = {position for position, _ in bad}
                expected = [p for p in expected if p not in dropped]
                if expected:
                    outputs = self._pass(expected)
                continue
            positions = output["positions"].view(-1).to(torch.int64)
            want = torch.tensor(expected[:len(positions)], dtype=torch.int64)
            if not torch.equal(positions, want):
                raise RuntimeError(f"DALI output order diverged: got {positions.tolist()}, "
                                   f"expected {want.tolist()}")
            expected = expected[len(positions):]
            images = _as_nchw(output["images"], self.channels_last)
            yield EvalBatch(images, self._label_tensor[want], want)
        if expected:  # never drop images silently
            raise RuntimeError(f"DALI pipeline ended with {len(expected)} images of rank {self.rank}'s "
                               f"shard of {self.split.list_path} unread, from {expected[0]}")


class DaliTrainLoader(_DaliLoader, TrainLoader):
    """Train loader on DALI: one pipeline for the whole run, fed each epoch's order of positions
    (:class:`~imnet.data.base.EpochOrder`, the torch loader's too). DALI's random augmentation
    stream runs on across epochs from the pipeline's seed (seed, rank)."""

    def __init__(self, split: SplitList, *, crop_size: int, resize_size: int, augment: TrainAugment,
                 norm: Normalization, batch_size: int, threads: int, device: str, rank: int,
                 world_size: int, seed: int, channels_last: bool = False,
                 hw_decoder_load: float = 0.65) -> None:
        TrainLoader.__init__(self, split, batch_size, rank, world_size, seed, channels_last, augment)
        self._setup(split, device, threads, batch_size)
        self.recipe = dict(decoder=self.decoder, augment=augment, resize_size=resize_size,
                           crop_size=crop_size, norm=norm, channels_last=channels_last,
                           hw_decoder_load=hw_decoder_load)
        self._labels = torch.tensor(split.labels, dtype=torch.int64)
        self._erase = batch_erasing(augment, torch_device(device))

    def _make_pipeline(self, source: PathSource):
        return train_pipeline(source=source, batch_size=self.batch_size, num_threads=self.threads,
                              device_id=self.device_id, prefetch_queue_depth=PREFETCH,
                              seed=(self.schedule.seed * 7919 + self.rank) % 2**31, **self.recipe)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        positions = self.schedule.batched_positions(self.batch_size)
        delivered = 0
        outputs = self._pass(positions)
        while True:
            try:
                output = next(outputs)
            except StopIteration:
                return
            except RuntimeError as err:
                outputs = None
                bad = _find_undecodable(self.split, positions[delivered:],
                                        (PREFETCH + 2) * self.batch_size, stop_at_first=True)
                if bad:
                    position, reason = bad[0]
                    raise ImnetError(f"{self.split.path(position)}: {reason} (listed in "
                                     f"{self.split.list_path})") from err
                raise
            batch_positions = output["positions"].view(-1).to(torch.int64)
            delivered += len(batch_positions)
            images = _as_nchw(output["images"], self.channels_last)
            if self._erase is not None:
                images = self._erase(images)
            yield images, self._labels[batch_positions].to(images.device, non_blocking=True)
