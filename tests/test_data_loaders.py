"""imnet.data loaders, both backends: crop geometry against torchvision, DALI-vs-torch pixels,
sharding (in one process and under torch.distributed gloo), corrupt files, train statistics."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image

from imnet.data import build_eval_loader, build_train_loader, crop_boxes, read_split, resized_size
from imnet.data import loaders as loaders_module
from imnet.errors import ImnetError
from imnet.testing import prepared_tree

BACKENDS = ["dali", "torch"]
RESIZE, CROP = 40, 32
# Output == raw pixel values: mean 0, std 1/255.
RAW = dict(mean=(0.0, 0.0, 0.0), std=(1 / 255, 1 / 255, 1 / 255))
# (height, width) of coordinate images: shorter side = RESIZE, so resizing is the identity and crops
# are exact copies. Long-side extents 0, 9, 11, 12, 13, 21: odd extents with an even half (9, 13)
# are where DALI's round-half-up centre would differ from torchvision's round-half-to-even.
COORDINATE_SIZES = [(40, 40), (40, 49), (40, 51), (40, 52), (53, 40), (40, 61), (61, 40)]


def coordinate_image(height: int, width: int, image_id: int) -> np.ndarray:
    """R = 4x, G = 4y, B = image id: every pixel tells where it came from and in which image."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[..., 0] = 4 * np.arange(width)[None, :]
    pixels[..., 1] = 4 * np.arange(height)[:, None]
    pixels[..., 2] = image_id
    return pixels


def write_coordinate_tree(root: Path, sizes: list[tuple[int, int]], repeat: int = 1) -> Path:
    """A prepared-tree-shaped folder of lossless PNG coordinate images (train and val alike),
    ``repeat`` copies of ``sizes``; image ``k`` has class ``k % 3``."""
    lines = []
    for k, (height, width) in enumerate(sizes * repeat):
        name = f"n{k % 3:08d}/img_{k}.png"
        for split in ("train", "val"):
            (root / split / name).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(coordinate_image(height, width, k)).save(root / split / name)
        lines.append(f"{name} {k % 3}\n")
    (root / "meta").mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        (root / "meta" / f"{split}.txt").write_text("".join(lines))
    return root


def raw_pixels(images: torch.Tensor) -> np.ndarray:
    """Loader output built with RAW normalization back to uint8 pixel values (..., H, W, 3)."""
    return images.float().round().clamp(0, 255).to(torch.uint8).movedim(-3, -1).numpy()


def torchvision_crops(image: Image.Image, crops: int) -> np.ndarray:
    """The reference: torchvision Resize + CenterCrop/FiveCrop/TenCrop on a PIL image."""
    image = T.Resize(RESIZE)(image.convert("RGB"))
    views = {1: lambda im: [T.CenterCrop(CROP)(im)], 5: T.FiveCrop(CROP), 10: T.TenCrop(CROP)}[crops](image)
    return np.stack([np.asarray(view) for view in views])


def collect(loader) -> tuple[np.ndarray, list[int], list[int]]:
    images, indices, labels = [], [], []
    for batch in loader:
        assert batch.images.dim() == 5 and batch.labels.dtype == batch.indices.dtype == torch.int64
        images.append(batch.images)
        indices += batch.indices.tolist()
        labels += batch.labels.tolist()
    return torch.cat(images).numpy() if images else np.zeros(0), indices, labels


@pytest.fixture(scope="module")
def coordinate_tree(tmp_path_factory) -> Path:
    return write_coordinate_tree(tmp_path_factory.mktemp("coords"), COORDINATE_SIZES)


@pytest.fixture(scope="module")
def jpeg_tree(tmp_path_factory) -> Path:
    """A tree prepared by imnet prep from fake archives (JPEG, with the real set's quirks)."""
    return prepared_tree(tmp_path_factory.mktemp("prepared"), classes=3, train_per_class=6, val=9)


# ---- geometry ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("height,width", [(350, 500), (500, 375), (77, 400), (300, 301), (256, 256),
                                          (333, 499), (481, 640)])
def test_resized_size_is_torchvision_resize_rule(height, width):
    assert resized_size(height, width, 256)[::-1] == TF.resize(Image.new("RGB", (width, height)), 256).size


def test_dali_resize_matches_torchvision_output_size():
    from nvidia.dali import fn, pipeline_def, types

    from imnet.data.dali import resize_shorter

    sizes = [(350, 500), (500, 375), (77, 400), (300, 301), (333, 499), (481, 640), (375, 500)]

    @pipeline_def
    def sizes_pipeline():
        images = fn.external_source(source=lambda: [np.zeros((h, w, 3), np.uint8) for h, w in sizes],
                                    batch=True, layout="HWC")
        return resize_shorter(images, 256, types.INTERP_LINEAR)[0].shape()

    pipe = sizes_pipeline(batch_size=len(sizes), num_threads=1, device_id=None)
    pipe.build()
    shapes = [tuple(np.array(shape)[:2]) for shape in pipe.run()[0]]
    assert shapes == [resized_size(h, w, 256) for h, w in sizes]


@pytest.mark.parametrize("height,width", COORDINATE_SIZES)
@pytest.mark.parametrize("crops", [1, 5, 10])
def test_crop_boxes_are_torchvisions(height, width, crops):
    pixels = coordinate_image(height, width, 0)
    expected = torchvision_crops(Image.fromarray(pixels), crops)  # Resize is the identity here
    boxes = crop_boxes(height, width, CROP, crops)
    got = []
    for box in boxes:
        view = pixels[box.top:box.top + box.size, box.left:box.left + box.size]
        got.append(view[:, ::-1] if box.mirror else view)
    np.testing.assert_array_equal(np.stack(got), expected)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("crops", [1, 5, 10])
def test_eval_crops_equal_torchvision_exactly(coordinate_tree, backend, crops):
    loader = build_eval_loader(coordinate_tree, crop_size=CROP, resize_size=RESIZE, crops=crops,
                               batch_size=3, workers=1, loader=backend, **RAW)
    images, indices, labels = collect(loader)
    split = read_split(coordinate_tree, "val")
    assert indices == list(range(len(split))) and labels == split.labels
    assert images.shape == (len(split), crops, 3, CROP, CROP)
    for position in indices:
        np.testing.assert_array_equal(raw_pixels(torch.from_numpy(images[position])),
                                      torchvision_crops(Image.open(split.path(position)), crops))


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_dali_and_torch_pixels_close_on_jpegs(jpeg_tree, interpolation):
    # Same boxes, different resamplers (DALI's separable filters vs Pillow's): measured on 400x350
    # photos at 256/224, MAD 0.17 (bilinear) / 0.19 (bicubic) grey levels, max 6 / 10. Bound: 1.0.
    outputs = {}
    for backend in BACKENDS:
        loader = build_eval_loader(jpeg_tree, crop_size=48, resize_size=56, crops=5, batch_size=4,
                                   workers=1, interpolation=interpolation, loader=backend, **RAW)
        outputs[backend], indices, _ = collect(loader)
        assert indices == list(range(9))
    difference = np.abs(outputs["dali"] - outputs["torch"])
    assert difference.mean() < 1.0
    assert np.percentile(difference, 99) <= 6


# ---- sharding -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("world_size", [2, 3])
def test_sharded_eval_reads_each_image_once(coordinate_tree, backend, world_size):
    seen = []
    for rank in range(world_size):
        loader = build_eval_loader(coordinate_tree, crop_size=CROP, resize_size=RESIZE, batch_size=2,
                                   workers=1, loader=backend, rank=rank, world_size=world_size, **RAW)
        images, indices, _ = collect(loader)
        assert len(indices) == loader.num_images == len(images)
        # each delivered image is the one its index names (B channel = image id)
        assert [int(round(image[0, 2, 0, 0])) for image in images] == indices
        seen += indices
    assert sorted(seen) == list(range(len(COORDINATE_SIZES)))


GLOO_WORKER = """
import json, sys
from pathlib import Path
import torch.distributed as dist
from imnet.data import build_eval_loader

dist.init_process_group("gloo")  # RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT as torchrun sets them
loader = build_eval_loader(Path(sys.argv[1]), crop_size=32, resize_size=40, mean=(0, 0, 0),
                           std=(1, 1, 1), batch_size=2, workers=1, loader="dali",
                           rank=dist.get_rank(), world_size=dist.get_world_size())
indices = [i for batch in loader for i in batch.indices.tolist()]
gathered = [None] * dist.get_world_size()
dist.all_gather_object(gathered, indices)
if dist.get_rank() == 0:
    print(json.dumps(gathered))
dist.destroy_process_group()
"""


def test_sharded_eval_under_gloo(coordinate_tree, tmp_path):
    # Two processes started the way torchrun starts them (environment variables), without the
    # elastic agent's start-up cost; each builds its DALI loader from its rank.
    script = tmp_path / "worker.py"
    script.write_text(GLOO_WORKER)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2")
    workers = [subprocess.Popen([sys.executable, str(script), str(coordinate_tree)],
                                env=dict(base, RANK=str(rank), LOCAL_RANK=str(rank)),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for rank in range(2)]
    outputs = [worker.communicate(timeout=120) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs
    per_rank = json.loads(outputs[0][0])
    assert [len(r) for r in per_rank] == [3, 4]
    assert sorted(per_rank[0] + per_rank[1]) == list(range(len(COORDINATE_SIZES)))


# ---- corrupt files --------------------------------------------------------------------------------------

@pytest.fixture()
def corrupt_tree(tmp_path) -> tuple[Path, dict[int, str]]:
    """Coordinate tree of 9 images with image 0 truncated and image 6 not an image at all."""
    root = write_coordinate_tree(tmp_path, COORDINATE_SIZES[:3], repeat=3)
    split = read_split(root, "val")
    damaged = {0: split.files[0], 6: split.files[6]}
    for split_name in ("train", "val"):
        path = root / split_name / damaged[0]
        path.write_bytes(path.read_bytes()[:60])
        (root / split_name / damaged[6]).write_bytes(b"this is not an image\n" * 10)
    return root, damaged


@pytest.mark.parametrize("backend", BACKENDS)
def test_corrupt_image_fails_naming_the_file(corrupt_tree, backend):
    root, damaged = corrupt_tree
    loader = build_eval_loader(root, crop_size=CROP, resize_size=RESIZE, batch_size=2, workers=1,
                               loader=backend, **RAW)
    with pytest.raises(ImnetError, match=damaged[0]):
        collect(loader)


@pytest.mark.parametrize("backend", BACKENDS)
def test_skip_bad_counts_corrupt_images_as_skipped(corrupt_tree, backend):
    root, damaged = corrupt_tree
    loader = build_eval_loader(root, crop_size=CROP, resize_size=RESIZE, batch_size=2, workers=1,
                               loader=backend, skip_bad=True, **RAW)
    for _ in range(2):  # a second pass starts afresh
        images, indices, _ = collect(loader)
        assert indices == [i for i in range(9) if i not in damaged]
        assert [int(round(image[0, 2, 0, 0])) for image in images] == indices
        assert [(position, file) for position, file, _ in loader.skipped] == sorted(damaged.items())
        assert all(reason for _, _, reason in loader.skipped)


@pytest.mark.parametrize("backend", BACKENDS)
def test_corrupt_train_image_fails_naming_the_file(corrupt_tree, backend):
    root, damaged = corrupt_tree
    loader = build_train_loader(root, crop_size=CROP, resize_size=RESIZE, batch_size=3, workers=1,
                                loader=backend, **RAW)
    with pytest.raises(ImnetError, match="|".join(damaged.values())):
        for _ in loader:
            pass


# ---- train -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_train_crops_flips_and_positions(tmp_path, backend):
    sizes = [(40, 52), (61, 40), (40, 57), (48, 40)]
    root = write_coordinate_tree(tmp_path, sizes, repeat=4)
    loader = build_train_loader(root, crop_size=CROP, resize_size=RESIZE, batch_size=8, workers=1,
                                loader=backend, seed=3, **RAW)
    assert len(loader) == 2 and loader.name.startswith(backend)
    flips, relative_left, relative_top = [], [], []
    for epoch in range(4):
        loader.set_epoch(epoch)
        for images, labels in loader:
            assert images.shape == (8, 3, CROP, CROP) and images.dtype == torch.float32
            for pixels, label in zip(raw_pixels(images), labels.tolist()):
                image_id = int(pixels[0, 0, 2])
                height, width = sizes[image_id % len(sizes)]
                assert label == image_id % 3
                flipped = pixels[0, 0, 0] > pixels[0, -1, 0]
                left = int(pixels[0, -1 if flipped else 0, 0]) // 4
                top = int(pixels[0, 0, 1]) // 4
                view = coordinate_image(height, width, image_id)[top:top + CROP, left:left + CROP]
                np.testing.assert_array_equal(pixels, view[:, ::-1] if flipped else view)
                flips.append(flipped)
                if width > RESIZE:
                    relative_left.append(left / (width - CROP))
                if height > RESIZE:
                    relative_top.append(top / (height - CROP))
    assert 0.25 < np.mean(flips) < 0.75  # 64 coin flips: 4 standard deviations either side
    for positions in (relative_left, relative_top):  # crops reach both ends of the image
        assert min(positions) < 0.25 and max(positions) > 0.75


@pytest.mark.parametrize("backend", BACKENDS)
def test_train_rrc_output(jpeg_tree, backend):
    loader = build_train_loader(jpeg_tree, crop_size=24, aug="rrc", batch_size=6, workers=1,
                                loader=backend, fp16=True, mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2))
    batches = list(loader)
    assert len(batches) == len(loader) == 3
    for images, labels in batches:
        assert images.shape == (6, 3, 24, 24) and images.dtype == torch.float16
        assert torch.isfinite(images).all() and labels.dtype == torch.int64


def test_train_order_is_seeded_per_epoch_and_sharded(coordinate_tree):
    def order(backend, epoch, rank=0, world_size=1):
        loader = build_train_loader(coordinate_tree, crop_size=CROP, resize_size=RESIZE, batch_size=1,
                                    workers=1, loader=backend, rank=rank, world_size=world_size,
                                    seed=5, **RAW)
        loader.set_epoch(epoch)
        return [int(raw_pixels(images)[0, 0, 0, 2]) for images, _ in loader]

    first = order("dali", 0)
    assert sorted(first) == list(range(len(COORDINATE_SIZES)))
    assert order("dali", 0) == first == order("torch", 0)
    assert order("dali", 1) != first
    ranks = [order(backend, 2, rank, 2) for backend, rank in (("dali", 0), ("torch", 1))]
    assert len(ranks[0]) == len(ranks[1]) == len(COORDINATE_SIZES) // 2
    assert not set(ranks[0]) & set(ranks[1])


# ---- GPU graphs ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("recipe", [dict(kind="eval", crops=10), dict(kind="eval", crops=1, channels_last=True),
                                    dict(kind="train", aug="classic"),
                                    dict(kind="train", aug="rrc", channels_last=True),
                                    dict(kind="train", aug="rrc", auto_augment="rand-m7-mstd0.5-inc1"),
                                    dict(kind="train", aug="classic", auto_augment="ta_wide"),
                                    dict(kind="train", aug="rrc", color_jitter=0.4, interpolation="random")])
def test_mixed_pipelines_define_valid_graphs(coordinate_tree, recipe):
    # DALI generates and checks the graph (operators, devices, every argument against its schema)
    # when the pipeline object is created; only build() needs the GPU. So the "mixed" branches are
    # checked here without one (decoder hints and fancy upsampling included); a wrong argument
    # fails the same way (last case).
    from imnet.data.base import Normalization
    from imnet.data.dali import PathSource, eval_pipeline, train_pipeline

    from imnet.data.transforms import TrainAugment

    recipe = dict(recipe)
    if recipe.pop("kind") == "eval":
        make = eval_pipeline
        recipe["interpolation"] = "bicubic"
    else:  # the GPU twins of the augmentation ops (images on the GPU, their arguments on the CPU)
        make = train_pipeline
        keys = ("aug", "auto_augment", "color_jitter", "interpolation")
        augment = {"crop" if k == "aug" else k: recipe.pop(k) for k in keys if k in recipe}
        recipe["augment"] = TrainAugment(**{"interpolation": "bicubic", **augment})
    options = dict(source=PathSource(read_split(coordinate_tree, "val"), 2), decoder="mixed",
                   resize_size=RESIZE, crop_size=CROP, norm=Normalization((0.5,) * 3, (0.2,) * 3, fp16=True),
                   batch_size=2, num_threads=1, device_id=0, **recipe)
    make(**options)
    with pytest.raises(ValueError):
        make(**dict(options, hw_decoder_load="most"))


# ---- one pipeline per run -------------------------------------------------------------------------------

def test_dali_builds_one_pipeline_per_loader_for_every_pass_and_epoch(coordinate_tree):
    # The orders come from the loader (the rank's shard, the epoch's permutation), so one DALI
    # pipeline serves every pass: nothing is rebuilt per epoch or per validation pass.
    from imnet.data.base import EpochOrder

    val = build_eval_loader(coordinate_tree, crop_size=CROP, resize_size=RESIZE, batch_size=2,
                            workers=1, loader="dali", rank=1, world_size=2, **RAW)
    train = build_train_loader(coordinate_tree, crop_size=CROP, resize_size=RESIZE, batch_size=2,
                               workers=1, loader="dali", seed=4, **RAW)
    for epoch in range(3):
        train.set_epoch(epoch)
        ids = [int(pixels[0, 0, 2]) for images, _ in train for pixels in raw_pixels(images)]
        assert ids == EpochOrder(len(COORDINATE_SIZES), 0, 1, 4, epoch).batched_positions(2)
        images, indices, _ = collect(val)
        assert indices == [3, 4, 5, 6] == [int(round(image[0, 2, 0, 0])) for image in images]
    assert train.pipeline_builds == 1 and val.pipeline_builds == 1
    # A pass left before its end (a consumer that stops early) cannot be reset by DALI mid-epoch:
    # the next pass gets a fresh pipeline, and still every image once, in order.
    next(iter(val))
    assert collect(val)[1] == [3, 4, 5, 6] and val.pipeline_builds == 2


# ---- choice of backend, options and bad input ------------------------------------------------------------

def test_auto_is_torch_on_cpu_and_says_why(coordinate_tree, capsys):
    loaders_module._ANNOUNCED.clear()
    loader = build_eval_loader(coordinate_tree, crop_size=CROP, resize_size=RESIZE, workers=1, **RAW)
    assert loader.name == "torch"
    assert "loader: torch (auto on the CPU" in capsys.readouterr().err
    assert build_eval_loader(coordinate_tree, crop_size=CROP, resize_size=RESIZE, workers=1, loader="dali",
                             **RAW).name == "dali-cpu"


def test_auto_on_a_gpu_falls_back_to_torch_when_dali_fails_there(capsys):
    # On this GPU-less machine DALI's "mixed" smoke pipeline really fails: auto says why and takes
    # torch; --loader dali refuses with the reason.
    loaders_module._ANNOUNCED.clear()
    assert loaders_module.choose_loader("auto", "cuda:0") == "torch"
    message = capsys.readouterr().err
    assert "loader: torch (DALI unavailable on cuda:0:" in message
    reason = message.split("cuda:0: ", 1)[1].strip().rstrip(")")
    with pytest.raises(ImnetError, match="--loader dali: DALI does not work here"):
        loaders_module.choose_loader("dali", "cuda:0")
    assert reason


@pytest.mark.parametrize("backend", BACKENDS)
def test_limit_and_fp16(coordinate_tree, backend):
    loader = build_eval_loader(coordinate_tree, crop_size=CROP, resize_size=RESIZE, batch_size=2,
                               workers=0 if backend == "torch" else 1, loader=backend, limit=5,
                               fp16=True, rank=1, world_size=2, **RAW)
    assert len(loader.files) == 5 and loader.num_images == 3 and len(loader) == 2
    batches = list(loader)
    assert all(batch.images.dtype == torch.float16 for batch in batches)
    assert [i for batch in batches for i in batch.indices.tolist()] == [2, 3, 4]


@pytest.mark.parametrize("change,message", [
    (dict(crops=3), "crops must be 1, 5 or 10"),
    (dict(crop_size=48), "at most the resize size"),
    (dict(interpolation="area"), "unknown interpolation"),
    (dict(rank=2, world_size=2), "rank 2 is not in 0..1"),
    (dict(loader="opencv"), "unknown loader"),
    (dict(mean=(0.5, 0.5)), "mean needs 3 values"),
    (dict(std=(0.2, 0.0, 0.2)), "std values must be positive"),
    (dict(batch_size=0), "batch size"),
    (dict(split="test"), "unknown split"),
    (dict(device="tpu"), "device"),
])
def test_bad_options_are_user_errors(coordinate_tree, change, message):
    options = dict(crop_size=CROP, resize_size=RESIZE, loader="torch", workers=0, **RAW)
    options.update(change)
    split = options.pop("split", "val")
    with pytest.raises(ImnetError, match=message):
        build_eval_loader(coordinate_tree, split, **options)


def test_train_needs_a_full_batch_per_rank(coordinate_tree):
    with pytest.raises(ImnetError, match="train.txt: 7 images are too few"):
        build_train_loader(coordinate_tree, crop_size=CROP, resize_size=RESIZE, batch_size=4,
                           world_size=2, loader="torch", **RAW)
    with pytest.raises(ImnetError, match="unknown augmentation"):
        build_train_loader(coordinate_tree, aug="mixup", loader="torch", **RAW)


def test_cpu_batches_reuse_buffers_only_when_nothing_holds_them(coordinate_tree):
    # The torch loader normalizes on the CPU into reused buffers (no page faults per batch). A
    # batch - or a view of one - that the consumer keeps must never change afterwards.
    loader = build_eval_loader(coordinate_tree, crop_size=CROP, resize_size=RESIZE, batch_size=2,
                               workers=0, loader="torch", **RAW)
    reference = [batch.images.clone() for batch in loader]  # 7 images: batches of 2, 2, 2, 1
    kept = [batch.images for batch in loader]
    assert len({images.data_ptr() for images in kept}) == len(kept)  # all held: all distinct
    for images, expected in zip(kept, reference):
        torch.testing.assert_close(images, expected, rtol=0, atol=0)
    first_crop, pointers = None, []
    threads = torch.get_num_threads()
    for batch in loader:  # (not enumerate: it holds the previous batch while fetching the next)
        if first_crop is None:
            first_crop = batch.images[1]  # a view keeps its batch's buffer out of the pool
        pointers.append(batch.images.data_ptr())
        del batch
    assert torch.get_num_threads() == threads  # normalizing on one thread restores the count
    torch.testing.assert_close(first_crop, reference[0][1], rtol=0, atol=0)
    # Batches 2 and 3 (full size, released) share one reused buffer; batch 1's is still viewed.
    assert pointers[0] not in pointers[1:3] and pointers[1] == pointers[2]


# ---- layout -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_channels_last_output_is_made_once_by_the_loader(coordinate_tree, backend):
    # channels_last: the loader hands out NHWC memory seen as (..., 3, H, W), the same values as
    # the NCHW output; what the model code then does (merge crops into the batch, ask for
    # channels_last) costs no copy.
    def batches(channels_last, train):
        options = dict(crop_size=CROP, resize_size=RESIZE, batch_size=3, workers=1, loader=backend,
                       channels_last=channels_last, **RAW)
        if train:
            loader = build_train_loader(coordinate_tree, seed=1, **options)
            loader.set_epoch(0)
            return [images for images, _ in loader]
        return [batch.images for batch in build_eval_loader(coordinate_tree, crops=10, **options)]

    for train in (False, True):
        for nchw, nhwc in zip(batches(False, train), batches(True, train)):
            if not train:  # DALI's crops are random in train, torch's are drawn per process too
                torch.testing.assert_close(nhwc, nchw, rtol=0, atol=0)
            assert nchw.is_contiguous() and not nhwc.is_contiguous()
            merged = nhwc.reshape(-1, *nhwc.shape[-3:])
            assert merged.is_contiguous(memory_format=torch.channels_last)
            assert merged.contiguous(memory_format=torch.channels_last).data_ptr() == nhwc.data_ptr()


def test_torch_val_workers_live_for_one_pass_train_workers_for_the_run(coordinate_tree):
    import multiprocessing

    options = dict(crop_size=CROP, resize_size=RESIZE, batch_size=2, workers=2, loader="torch", **RAW)
    val = build_eval_loader(coordinate_tree, **options)
    collect(val)
    assert multiprocessing.active_children() == []  # the pass's workers have exited
    train = build_train_loader(coordinate_tree, **options)
    for _ in train:
        pass
    assert len(multiprocessing.active_children()) == 2  # kept for the next epoch
    train.close()
    del train


# ---- on a GPU (benchmarks/gpu.sh runs these) -------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("crops", [1, 10])
def test_gpu_mixed_decoding_matches_the_cpu_twin(jpeg_tree, crops):
    # nvJPEG with fancy upsampling against the same graph on the CPU (libjpeg-turbo): the same
    # boxes and resampler, so only decoder rounding may differ.
    options = dict(crop_size=24, resize_size=28, crops=crops, batch_size=4, workers=2, loader="dali",
                   channels_last=True, **RAW)
    gpu = build_eval_loader(jpeg_tree, device="cuda", **options)
    cpu = build_eval_loader(jpeg_tree, device="cpu", **options)
    assert gpu.name == "dali-gpu"
    got = [batch for batch in gpu]
    assert all(b.images.is_cuda and b.images.reshape(-1, 3, 24, 24).is_contiguous(memory_format=torch.channels_last)
               for b in got)
    difference = (torch.cat([b.images.cpu() for b in got]) - torch.cat([b.images for b in cpu])).abs()
    assert difference.mean() < 1.0, f"mean {difference.mean():.3f} grey levels"
    assert [i for b in got for i in b.indices.tolist()] == list(range(len(gpu.files)))


@pytest.mark.gpu
def test_gpu_train_loader_one_pipeline_for_all_epochs(jpeg_tree):
    loader = build_train_loader(jpeg_tree, crop_size=24, aug="rrc", batch_size=4, workers=2, loader="dali",
                                device="cuda", channels_last=True, fp16=True, **RAW)
    for epoch in range(3):
        loader.set_epoch(epoch)
        for images, labels in loader:
            assert images.is_cuda and labels.is_cuda and images.dtype == torch.float16
            assert images.is_contiguous(memory_format=torch.channels_last)
    assert loader.pipeline_builds == 1
