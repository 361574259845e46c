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
