"""Train augmentation on both loaders: each policy applied with its probability and its magnitude range,
measured over many draws on generated images.

Each backend is exercised through the very function its train loader calls: the torch loader's
``train_policy`` (timm's ``create_transform`` stage, torchvision's TrivialAugmentWide) on PIL images,
and DALI's ``per_image_policy`` / ``dali_augment`` ops in a CPU pipeline (``device_id=None``). The
same statistics hold for both, within sampling error. Loader-level tests check that both loaders
apply erasing and the random interpolation, and that a bad policy string is refused.
"""
from __future__ import annotations

import copy
import random

import numpy as np
import pytest
import torch
from PIL import Image

from imnet.data.transforms import TrainAugment, parse_rand_augment
from imnet.errors import ImnetError

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
SIZE = 32

dali = pytest.importorskip("nvidia.dali")


def textured(count: int, seed: int = 0) -> list[np.ndarray]:
    """Smooth colour images in 40..160 (no op of RandAugment leaves them unchanged)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    images = []
    for _ in range(count):
        a, b, c = rng.uniform(0.5, 2.0, 3)
        channels = [60 + 40 * np.sin(a * 6 * x + b) + 30 * y, 90 + 30 * np.cos(b * 5 * y) + 20 * x,
                    100 + 25 * np.sin(c * 4 * (x + y)) - 10 * y]
        images.append(np.clip(np.stack(channels, -1), 40, 160).astype(np.uint8))
    return images


def ramp(count: int) -> list[np.ndarray]:
    """Grey horizontal ramps 0..255 (every grey level, for posterize and solarize)."""
    row = np.repeat(np.arange(256, dtype=np.uint8)[None, :], 8, 0)
    return [np.repeat(row[:, :, None], 3, 2) for _ in range(count)]


def dot(count: int) -> list[np.ndarray]:
    """A white 4x4 square right of the centre of a black 64x64 image (its centroid shows a shift)."""
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    image[30:34, 40:44] = 255
    return [image.copy() for _ in range(count)]


def run_torch(transform, images: list[np.ndarray], seed: int = 0) -> list[np.ndarray]:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return [np.asarray(transform(Image.fromarray(image))) for image in images]


def run_dali(policy, images: list[np.ndarray], seed: int = 0) -> list[np.ndarray]:
    from nvidia.dali import fn, pipeline_def

    @pipeline_def(enable_conditionals=True)
    def pipe():
        return policy(fn.external_source(source=lambda: images, batch=True, layout="HWC"))

    pipeline = pipe(batch_size=len(images), num_threads=1, device_id=None, seed=seed + 1, prefetch_queue_depth=1)
    pipeline.build()
    (out,) = pipeline.run()
    return [np.array(out[i]) for i in range(len(images))]


def torch_policy(augment: TrainAugment):
    from imnet.data.torch_loader import train_policy

    return train_policy(augment, SIZE, MEAN)


def dali_policy(augment: TrainAugment):
    from imnet.data.dali import per_image_policy

    return lambda images: per_image_policy(images, augment, MEAN)


def policy_outputs(backend: str, augment: TrainAugment, images):
    if backend == "torch":
        return run_torch(torch_policy(augment), images)
    return run_dali(dali_policy(augment), images)


def one_op(backend: str, text: str, name: str, images):
    """timm's RandAugment op ``name`` alone, applied to every image (p=1, n=1), at ``text``'s levels."""
    spec = parse_rand_augment(text)
    if backend == "torch":
        from timm.data.auto_augment import RandAugment

        loader_ops = torch_policy(TrainAugment(crop="rrc", auto_augment=text)).transforms[0].ops
        op = copy.copy(next(op for op in loader_ops if op.name == name))  # the loader's own op, hparams
        op.prob = 1.0
        return run_torch(RandAugment([op], num_layers=1), images)
    from imnet.data import dali_augment
    from imnet.data.transforms import RandAugmentSpec, fill_value

    single = RandAugmentSpec(**{**spec.__dict__, "num_layers": 1, "prob": 1.0})
    return run_dali(lambda x: dali_augment.rand_augment(x, single, fill_value(MEAN), only=(name,)), images)


BACKENDS = ["torch", "dali"]
RA = "rand-m7-mstd0.5-inc1"  # VanillaNet's: m 7, level noise 0.5, the increasing op set, n 2, p 0.5


# --- RandAugment -----------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_rand_augment_applies_each_layer_with_probability_half(backend):
    images = textured(400)
    out = policy_outputs(backend, TrainAugment(crop="rrc", auto_augment=RA), images)
    unchanged = np.mean([np.array_equal(a, b) for a, b in zip(images, out)])
    assert 0.19 <= unchanged <= 0.31, unchanged  # both layers skipped: 0.5 x 0.5
    one_layer = policy_outputs(backend, TrainAugment(crop="rrc", auto_augment=RA + "-n1"), images)
    assert 0.43 <= np.mean([np.array_equal(a, b) for a, b in zip(images, one_layer)]) <= 0.57


@pytest.mark.parametrize("backend", BACKENDS)
def test_rand_augment_brightness_factor_is_one_plus_or_minus_0_9_level(backend):
    images = textured(300)
    out = one_op(backend, RA, "BrightnessIncreasing", images)
    factors = np.array([o.astype(float).mean() / i.astype(float).mean() for i, o in zip(images, out)])
    deviation = np.abs(factors - 1)
    # level ~ N(7, 0.5): |factor - 1| = 0.9 x level / 10 ~ N(0.63, 0.045), either sign
    assert 0.61 <= np.median(deviation) <= 0.65 and 0.025 <= deviation.std() <= 0.07
    assert deviation.min() > 0.45 and deviation.max() < 0.8
    assert 0.4 <= np.mean(factors > 1) <= 0.6


@pytest.mark.parametrize("backend", BACKENDS)
def test_rand_augment_posterize_bits_follow_the_level_noise(backend):
    out = one_op(backend, RA, "PosterizeIncreasing", ramp(300))
    levels = np.array([len(np.unique(o)) for o in out])
    # 4 - int(0.4 x level) bits kept: 2 bits (4 grey levels) for level in [5, 7.5), 1 bit from 7.5 up
    assert set(levels) <= {2, 4}
    assert 0.09 <= np.mean(levels == 2) <= 0.23, np.mean(levels == 2)  # P(N(7, 0.5) >= 7.5) = 0.16


@pytest.mark.parametrize("backend", BACKENDS)
def test_rand_augment_solarize_threshold(backend):
    images = ramp(200)
    out = one_op(backend, RA, "SolarizeIncreasing", images)
    # the first grey level inverted = the threshold 256 - int(25.6 x level): ~77, within 3.5 sigma
    thresholds = np.array([int(np.argmax(o[0, :, 0] != i[0, :, 0])) for i, o in zip(images, out)])
    assert 60 <= np.median(thresholds) <= 92 and thresholds.min() >= 30 and thresholds.max() <= 125


@pytest.mark.parametrize("backend", BACKENDS)
def test_rand_augment_translate_is_0_45_level_of_the_width(backend):
    images = dot(120)
    out = one_op(backend, RA, "TranslateXRel", images)
    # the white square's centroid moves by 0.45 x level / 10 x 64 px: ~20 px, either way
    shifts = np.array([np.argwhere(o[..., 0] > 128)[:, 1].mean() - 41.5 for o in out if (o[..., 0] > 128).any()
                       ] + [np.nan] * sum(not (o[..., 0] > 128).any() for o in out))
    moved = np.abs(shifts[~np.isnan(shifts)])
    assert np.isnan(shifts).mean() < 0.55  # moved out of the frame to the right (shift > 20 px) at most
    assert 17 <= np.median(moved) <= 23 and moved.min() > 12


@pytest.mark.parametrize("backend", BACKENDS)
def test_rand_augment_rotation_angle(backend):
    out = one_op(backend, RA, "Rotate", dot(150))
    angles = []
    for o in out:
        ys, xs = np.nonzero(o[..., 0] > 128)
        angles.append(np.degrees(np.arctan2(ys.mean() - 31.5, xs.mean() - 31.5)))
    magnitude = np.abs(angles)
    # +-30 x level / 10 degrees: ~21, either sense
    assert 18 <= np.median(magnitude) <= 24 and magnitude.min() > 14 and magnitude.max() < 28
    assert 0.35 <= np.mean(np.array(angles) > 0) <= 0.65


def test_rand_augment_strings_are_parsed_as_timm_does():
    spec = parse_rand_augment("rand-m9-n3-mstd101-inc1-p0.7-mmax12")
    assert (spec.magnitude, spec.num_layers, spec.increasing, spec.prob, spec.magnitude_max) == (9, 3, True, 0.7, 12)
    assert spec.magnitude_std == float("inf")  # timm: mstd > 100 means uniform sampling
    assert parse_rand_augment("rand-m7") == parse_rand_augment("rand-m7-n2-mstd0-inc0-p0.5")
    for bad, why in [("augmix-m5", "starts with 'rand-'"), ("rand-m7-tweights", "unknown section 'tweights'"),
                     ("rand-mx", "unknown section"), ("rand-m7-p2", "wants n >= 1")]:
        with pytest.raises(ImnetError, match=why):
            parse_rand_augment(bad)


# --- TrivialAugmentWide and colour jitter ----------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_trivial_augment_wide_one_op_per_image_identity_one_in_14(backend):
    images = textured(420)
    out = policy_outputs(backend, TrainAugment(crop="rrc", auto_augment="ta_wide"), images)
    unchanged = np.mean([np.array_equal(a, b) for a, b in zip(images, out)])
    # Identity 1/14, plus magnitude bin 0 (1 in 31) of the 11 ops neutral there: ~0.095
    assert 0.05 <= unchanged <= 0.15, unchanged
    grey_shift = np.array([abs(o.astype(float).mean() - i.astype(float).mean()) for i, o in zip(images, out)])
    assert np.mean(grey_shift > 1) > 0.5  # most images really change


@pytest.mark.parametrize("backend", BACKENDS)
def test_color_jitter_factors_are_uniform_in_0_6_to_1_4(backend):
    rng = np.random.default_rng(3)
    images = []
    hue = np.array([12.0, -5.0, -5.73])  # a colour offset of (almost) no luma: 0.299 x 12 = 0.587 x 5 + 0.114 x 5.73
    for _ in range(300):  # a grey ramp 60..90 plus 1.5-2x that colour: no clipping at any factor
        grey = np.linspace(60, 90, SIZE)[None, :, None] + np.zeros((SIZE, SIZE, 1))
        images.append(np.clip(grey + rng.uniform(1.5, 2.0) * hue, 0, 255).round().astype(np.uint8))
    out = policy_outputs(backend, TrainAugment(crop="rrc", color_jitter=0.4), images)
    weights = np.array([0.299, 0.587, 0.114])
    b, c, s = [], [], []
    for i, o in zip(images, out):
        i, o = i.astype(float), o.astype(float)
        luma_i, luma_o = i @ weights, o @ weights
        b.append(luma_o.mean() / luma_i.mean())
        c.append(luma_o.std() / luma_i.std() / b[-1])
        s.append(np.abs(o - luma_o[..., None]).mean() / np.abs(i - luma_i[..., None]).mean() / (b[-1] * c[-1]))
    for name, factors in (("brightness", b), ("contrast", c), ("saturation", s)):
        factors = np.array(factors)
        assert factors.min() > 0.52 and factors.max() < 1.48, (name, factors.min(), factors.max())
        assert 0.93 <= factors.mean() <= 1.07 and 0.17 <= factors.std() <= 0.29, (name, factors.mean(), factors.std())


def test_color_jitter_is_off_with_an_auto_augment_policy_as_timm():
    assert TrainAugment(auto_augment=RA, color_jitter=0.4).jitter == 0.0
    assert TrainAugment(color_jitter=0.4).jitter == 0.4
    names = [type(t).__name__ for t in torch_policy(TrainAugment(crop="rrc", auto_augment=RA, color_jitter=0.4)).transforms]
    assert names == ["RandAugment"]


# --- random erasing --------------------------------------------------------------------------------


@pytest.mark.parametrize("remode, count", [("pixel", 1), ("const", 3)])
def test_random_erasing_probability_area_and_fill(remode, count):
    from imnet.data.base import batch_erasing

    torch.manual_seed(0)
    random.seed(0)
    erase = batch_erasing(TrainAugment(reprob=0.25, remode=remode, recount=count), torch.device("cpu"))
    batch = torch.full((1600, 3, SIZE, SIZE), 7.0)
    erased = erase(batch) != 7.0
    hit = erased.flatten(1).any(1)
    assert 0.21 <= hit.float().mean() <= 0.29
    area = erased[hit][:, 0].flatten(1).float().mean(1)
    assert area.min() >= 0.015 and area.max() <= 1 / 3 + 0.02  # 2-33 % of the image, split over the boxes
    values = batch[erased]
    if remode == "pixel":  # per-pixel normal noise, in normalized units
        assert abs(values.mean()) < 0.05 and 0.95 <= values.std() <= 1.05
    else:
        assert torch.all(values == 0)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    from imnet.testing import prepared_tree

    return prepared_tree(tmp_path_factory.mktemp("tree"), classes=2, train_per_class=8, val=4, image_size=(48, 40))


def _batches(tree, backend, **augment):
    from imnet.data import build_train_loader

    loader = build_train_loader(tree, crop_size=SIZE, resize_size=36, mean=MEAN, std=STD, batch_size=8,
                                workers=0 if backend == "torch" else 1, loader=backend, **augment)
    with loader:
        return [images.clone() for images, _ in loader]


@pytest.mark.parametrize("backend", BACKENDS)
def test_both_loaders_erase_on_the_normalized_batch(tree, backend):
    # (x / 255 - mean) / std is never exactly 0 for a uint8 x: exact zeros are erased pixels
    for images in _batches(tree, backend, aug="rrc", auto_augment=RA, reprob=1.0, remode="const"):
        zeros = (images == 0).all(1)  # (B, H, W)
        assert zeros.flatten(1).float().mean(1).min() >= 0.015  # every image has its box
    for images in _batches(tree, backend, aug="rrc", auto_augment=RA):
        assert not (images == 0).all(1).any()


def test_both_loaders_build_every_policy(tree):
    for augment in (dict(aug="classic", color_jitter=0.4, interpolation="random"),
                    dict(aug="rrc", auto_augment="ta_wide", reprob=0.1, remode="const")):
        for backend in BACKENDS:
            batches = _batches(tree, backend, **augment)
            assert len(batches) == 2 and batches[0].shape == (8, 3, SIZE, SIZE)
            assert all(torch.isfinite(b).all() for b in batches)


@pytest.mark.parametrize("backend", BACKENDS)
def test_random_interpolation_picks_bilinear_or_bicubic_per_image(tmp_path, backend):
    # one image, mirror-symmetric (the flip does not show), resized straight to the crop (no window)
    from imnet.data import build_train_loader

    root = tmp_path / "tree"
    image = np.zeros((48, 48, 3), dtype=np.uint8)
    image[:, :24] = np.random.default_rng(0).integers(0, 255, (48, 24, 3))
    image[:, 24:] = image[:, :24][:, ::-1]
    (root / "train" / "n00000000").mkdir(parents=True)
    (root / "meta").mkdir()
    Image.fromarray(image).save(root / "train" / "n00000000" / "a.png")
    (root / "meta" / "train.txt").write_text("n00000000/a.png 0\n" * 32)
    seen = {}
    for interpolation in ("bilinear", "bicubic", "random"):
        loader = build_train_loader(root, crop_size=SIZE, resize_size=SIZE, interpolation=interpolation, mean=MEAN,
                                    std=STD, batch_size=32, workers=0 if backend == "torch" else 1, loader=backend)
        with loader:
            seen[interpolation] = next(iter(loader))[0]
    kinds = set()
    for sample in seen["random"]:
        close = [name for name in ("bilinear", "bicubic")
                 if torch.allclose(sample, seen[name][0], atol=1e-4) or torch.allclose(sample, seen[name][0].flip(-1), atol=1e-4)]
        assert len(close) == 1
        kinds.add(close[0])
    assert kinds == {"bilinear", "bicubic"}


def test_bad_augmentation_settings_are_refused():
    for kwargs, why in [(dict(auto_augment="rand-q3"), "unknown section"), (dict(remode="noise"), "remode"),
                        (dict(reprob=1.5), "reprob"), (dict(interpolation="area"), "train interpolation"),
                        (dict(color_jitter=1.2), "color_jitter"), (dict(recount=0), "recount")]:
        with pytest.raises(ImnetError, match=why):
            TrainAugment(**kwargs)


@pytest.mark.parametrize("backend", BACKENDS)
def test_flip_comes_before_the_per_image_policy_with_probability_half(tmp_path, backend):
    # a left-to-right ramp; a near-neutral colour jitter puts the loader on its per-image path
    from imnet.data import build_train_loader

    root = tmp_path / "tree"
    (root / "train" / "n00000000").mkdir(parents=True)
    (root / "meta").mkdir()
    ramp_image = np.repeat(np.repeat(np.linspace(20, 230, 40, dtype=np.uint8)[None, :, None], 40, 0), 3, 2)
    Image.fromarray(ramp_image).save(root / "train" / "n00000000" / "a.png")
    (root / "meta" / "train.txt").write_text("n00000000/a.png 0\n" * 64)
    loader = build_train_loader(root, crop_size=SIZE, resize_size=SIZE, color_jitter=1e-4, mean=MEAN, std=STD,
                                batch_size=64, workers=0 if backend == "torch" else 1, loader=backend)
    with loader:
        images = next(iter(loader))[0]
    flipped = (images[:, 0, :, 0] > images[:, 0, :, -1]).all(1)
    assert 0.3 <= flipped.float().mean() <= 0.7  # 64 coin flips
