"""Geometry and names shared by both loader backends: resize size rule, eval crop layouts, resamplers.

The torch backend uses torchvision's own ``Resize`` size rule and ``CenterCrop``/``FiveCrop``/
``TenCrop``; the DALI backend computes the same sizes and boxes with DALI arithmetic inside the
pipeline. The pure-Python functions here are the reference both are tested against.
"""
from __future__ import annotations

from dataclasses import dataclass

from imnet.errors import ImnetError

# Resampler names as timm's pretrained configs spell them.
#   name        PIL.Image.Resampling   DALI types.DALIInterpType
INTERPOLATIONS = {
    "nearest": ("NEAREST", "INTERP_NN"),
    "bilinear": ("BILINEAR", "INTERP_LINEAR"),
    "bicubic": ("BICUBIC", "INTERP_CUBIC"),
    "lanczos": ("LANCZOS", "INTERP_LANCZOS3"),
}

# Eval crops in torchvision's order. FiveCrop: top-left, top-right, bottom-left, bottom-right,
# centre. TenCrop: those five, then FiveCrop of the horizontally flipped image, whose top-left crop is
# the mirror of the original's top-right one, and so on. Per crop:
#   vertical anchor, horizontal anchor, mirrored
# where "start" = 0, "end" = image size - crop size, "centre" = torchvision's
# int(round((size - crop) / 2.0)) (round half to even), and "centre_mirrored" = the centre box of the
# flipped image mapped back onto the original, (size - crop) - centre, which differs from "centre"
# by one pixel when size - crop is odd.
_FIVE = [("start", "start", False), ("start", "end", False), ("end", "start", False),
         ("end", "end", False), ("centre", "centre", False)]
_FIVE_OF_FLIPPED = [("start", "end", True), ("start", "start", True), ("end", "end", True),
                    ("end", "start", True), ("centre", "centre_mirrored", True)]
CROP_LAYOUTS = {
    1: [("centre", "centre", False)],
    5: _FIVE,
    10: _FIVE + _FIVE_OF_FLIPPED,
}


@dataclass(frozen=True)
class CropBox:
    """A crop of the resized image: rows ``top:top+size``, columns ``left:left+size``, then mirrored."""

    top: int
    left: int
    size: int
    mirror: bool


def check_interpolation(name: str) -> str:
    """Return ``name`` if it is a resampler both backends offer, else raise ImnetError."""
    if name not in INTERPOLATIONS:
        raise ImnetError(f"unknown interpolation {name!r} (expected one of {', '.join(INTERPOLATIONS)})")
    return name


def check_eval_geometry(crop_size: int, resize_size: int, crops: int) -> None:
    """Raise ImnetError unless ``crops`` is 1, 5 or 10 and ``0 < crop_size <= resize_size``."""
    if crops not in CROP_LAYOUTS:
        raise ImnetError(f"crops must be 1, 5 or 10, got {crops}")
    if not 0 < crop_size <= resize_size:
        raise ImnetError(f"crop size {crop_size} must be positive and at most the resize size "
                         f"{resize_size}")


def eval_resize_size(crop_size: int, crop_pct: float) -> int:
    """The shorter side to resize to before cropping ``crop_size``: ``round(crop_size / crop_pct)``."""
    return int(round(crop_size / crop_pct))


def resized_size(height: int, width: int, resize_size: int) -> tuple[int, int]:
    """torchvision ``Resize(resize_size)``'s output (height, width) for a ``height x width`` image.

    The shorter side becomes ``resize_size`` and the longer ``int(resize_size * long / short)``
    (truncated, not rounded), which equals ``resize_size * long // short`` in integers.
    """
    if height <= width:
        return resize_size, resize_size * width // height
    return resize_size * height // width, resize_size


def round_half_even_half(extent: int) -> int:
    """``int(round(extent / 2.0))`` as torchvision's center_crop computes it (round half to even)."""
    half = extent // 2
    return half + (extent % 2) * (half % 2)


def crop_boxes(height: int, width: int, crop_size: int, crops: int) -> list[CropBox]:
    """The ``crops`` boxes (1, 5 or 10) torchvision cuts from a resized ``height x width`` image."""
    check_eval_geometry(crop_size, min(height, width), crops)
    anchors_y = _anchors(height - crop_size)
    anchors_x = _anchors(width - crop_size)
    return [CropBox(anchors_y[vertical], anchors_x[horizontal], crop_size, mirror)
            for vertical, horizontal, mirror in CROP_LAYOUTS[crops]]


def _anchors(extent: int) -> dict[str, int]:
    centre = round_half_even_half(extent)
    return {"start": 0, "end": extent, "centre": centre, "centre_mirrored": extent - centre}


# --- train augmentation (both backends) ---------------------------------------------------------------
# Train resamplers: the eval ones, plus "random" (a per-image choice of bilinear or bicubic, timm's
# RandomResizedCropAndInterpolation and RandAugment "random" interpolation).
TRAIN_INTERPOLATIONS = (*INTERPOLATIONS, "random")
RANDOM_INTERPOLATIONS = ("bilinear", "bicubic")
ERASE_MODES = ("const", "rand", "pixel")
# RandAugment's option keys in timm's "rand-m9-n2-mstd0.5-inc1-p0.5-mmax10" strings.
_RAND_KEYS = {"m": float, "n": int, "mstd": float, "inc": int, "p": float, "mmax": float}


@dataclass(frozen=True)
class RandAugmentSpec:
    """A timm RandAugment string parsed: ``n`` ops per image, each applied with probability ``p`` at
    level ``magnitude`` (out of 10) plus Gaussian noise of std ``magnitude_std`` (inf: uniform in
    [0, magnitude]), clipped to [0, ``magnitude_max``]; ``increasing`` picks timm's
    "increasing" op set (posterize, solarize and the enhance ops stronger with the level)."""

    magnitude: float = 10.0
    num_layers: int = 2
    magnitude_std: float = 0.0
    increasing: bool = False
    prob: float = 0.5
    magnitude_max: float = 10.0


def parse_rand_augment(text: str) -> RandAugmentSpec:
    """``"rand-m7-mstd0.5-inc1"`` -> :class:`RandAugmentSpec`, with timm's defaults (m10, n2, mstd0,
    inc0, p0.5, mmax10) and its rule that an mstd over 100 means uniform sampling. timm's weighted or
    named transform sets (``-t...``) are refused: neither backend here implements them."""
    parts = text.split("-")
    if parts[0] != "rand":
        raise ImnetError(f"auto_augment {text!r}: a RandAugment string starts with 'rand-'")
    values: dict = {}
    for part in parts[1:]:
        key = part.rstrip("0123456789.")
        number = part[len(key):]
        if key not in _RAND_KEYS or not number:
            raise ImnetError(f"auto_augment {text!r}: unknown section {part!r} (timm's sections: "
                             f"{', '.join(k + 'N' for k in _RAND_KEYS)})")
        try:
            values[key] = _RAND_KEYS[key](number)
        except ValueError:
            raise ImnetError(f"auto_augment {text!r}: {part!r} is not {key} followed by a number") from None
    spec = RandAugmentSpec(magnitude=values.get("m", 10.0), num_layers=values.get("n", 2),
                           magnitude_std=values.get("mstd", 0.0), increasing=bool(values.get("inc", 0)),
                           prob=values.get("p", 0.5), magnitude_max=values.get("mmax", 10.0))
    if spec.magnitude_std > 100:
        spec = RandAugmentSpec(**{**spec.__dict__, "magnitude_std": float("inf")})
    if not (spec.num_layers >= 1 and 0 <= spec.prob <= 1 and 0 <= spec.magnitude <= spec.magnitude_max
            and spec.magnitude_std >= 0):
        raise ImnetError(f"auto_augment {text!r}: wants n >= 1, 0 <= p <= 1, 0 <= m <= mmax, mstd >= 0")
    return spec


@dataclass(frozen=True)
class TrainAugment:
    """What a train loader does to each image, the same on both backends:

    * ``crop``: ``"classic"`` (shorter side to the resize size, random crop) or ``"rrc"``
      (RandomResizedCrop, scale 0.08-1, ratio 3/4-4/3), then a horizontal flip with probability 0.5;
    * ``interpolation`` of the crop's resize (and of RandAugment's geometric ops on the torch loader):
      a resampler name, or ``"random"`` (bilinear or bicubic per image, as timm);
    * ``auto_augment``: ``""`` (none), a timm RandAugment string (``"rand-m7-mstd0.5-inc1"``) or
      ``"ta_wide"`` (TrivialAugmentWide, torchvision's policy);
    * ``color_jitter``: brightness/contrast/saturation factors uniform in [1 - x, 1 + x], in a
      random order (torchvision's ColorJitter); applied only without ``auto_augment``, timm's rule
      (timm 0.6 and 1.0 both disable it when an auto-augment policy is given);
    * random erasing (timm's ``RandomErasing`` on the normalized batch): ``reprob`` per image,
      ``remode`` (``"const"`` zeros, ``"rand"`` one normal colour, ``"pixel"`` normal noise per pixel),
      up to ``recount`` boxes of 2-33 % of the image in total, aspect 0.3-3.3.
    """

    crop: str = "classic"
    interpolation: str = "bilinear"
    auto_augment: str = ""
    color_jitter: float = 0.0
    reprob: float = 0.0
    remode: str = "pixel"
    recount: int = 1

    def __post_init__(self) -> None:
        if self.crop not in ("classic", "rrc"):
            raise ImnetError(f"unknown augmentation {self.crop!r} (expected one of classic, rrc)")
        if self.interpolation not in TRAIN_INTERPOLATIONS:
            raise ImnetError(f"unknown train interpolation {self.interpolation!r} (expected one of "
                             f"{', '.join(TRAIN_INTERPOLATIONS)})")
        if self.auto_augment not in ("", "ta_wide"):
            parse_rand_augment(self.auto_augment)
        if not 0 <= self.color_jitter < 1:
            raise ImnetError(f"color_jitter must be in [0, 1), got {self.color_jitter}")
        if not 0 <= self.reprob <= 1:
            raise ImnetError(f"reprob (random erasing probability) must be in [0, 1], got {self.reprob}")
        if self.remode not in ERASE_MODES:
            raise ImnetError(f"remode must be one of {', '.join(ERASE_MODES)}, got {self.remode!r}")
        if self.recount < 1:
            raise ImnetError(f"recount (random erasing boxes) must be at least 1, got {self.recount}")

    @property
    def rand_augment(self) -> RandAugmentSpec | None:
        return parse_rand_augment(self.auto_augment) if self.auto_augment.startswith("rand") else None

    @property
    def jitter(self) -> float:
        """The colour jitter actually applied: 0 when an auto-augment policy is on (timm's rule)."""
        return 0.0 if self.auto_augment else self.color_jitter

    @property
    def per_image(self) -> bool:
        """Whether anything beyond crop and flip runs per image (auto-augment or colour jitter)."""
        return bool(self.auto_augment) or self.jitter > 0


def fill_value(mean) -> int:
    """The grey the geometric ops of RandAugment fill with: timm fills with the dataset mean per
    channel (``round(255 * mean)``); DALI takes one value, their average."""
    return int(round(sum(min(255, round(255 * m)) for m in mean) / len(mean)))
