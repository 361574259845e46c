"""Decoding for the torch backend (PIL, Pillow-SIMD when installed) and the bad-file probe of both.

``decode_resized`` does what torchvision's ``Resize(resize_size)`` does on a PIL image, with JPEG
``draft()`` (DCT-domain downscaling inside libjpeg) for images much larger than the target.

Why ``draft`` is safe here, and how that was checked:
* it is only used when the reduced image is still at least ``DRAFT_MARGIN`` (2) times the target in
  both sides, so the final resize still downsamples by >= 2x with its antialiasing filter and the
  DCT scaling only replaces part of a low-pass that the resize would apply anyway;
* the output size is computed from the *original* size (torchvision's rule) and the resize maps the
  exact source box draft reports, so geometry (and every crop box) is unchanged;
* ``tests/test_data_decode.py::test_draft_changes_pixels_less_than_the_resampler_choice`` decodes a
  large photo with and without draft: the mean absolute difference is 0.38 grey levels at 1400x1100
  (0.53 at 2048x2400; the test bounds it by 0.6), less than half of what switching bilinear to
  bicubic changes on the same image (1.26).
Random-resized-crop training does not use draft (a small crop of the full image would lose detail).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from PIL import Image

from imnet.data.transforms import INTERPOLATIONS, resized_size

DRAFT_MARGIN = 2
# Given the resized (height, width), the square (top, left, size) of it to produce.
Window = Callable[[int, int], tuple[int, int, int]]


def pil_resample(interpolation: str) -> Image.Resampling:
    """The PIL resampling filter for a timm interpolation name ("bilinear", "bicubic", ...)."""
    return getattr(Image.Resampling, INTERPOLATIONS[interpolation][0])


def decode_rgb(path: Path) -> Image.Image:
    """Decode an image file (JPEG, or PNG under a .JPEG name, any mode) to an RGB PIL image."""
    with Image.open(path) as image:
        return _loaded_rgb(image)


def _loaded_rgb(image: Image.Image) -> Image.Image:
    """``image`` decoded, as RGB: converted when it is not (grayscale, CMYK, palette, RGBA...), else
    just loaded (``convert("RGB")`` of an RGB image is a full copy: ~0.1 ms per ImageNet image)."""
    if image.mode != "RGB":
        return image.convert("RGB")
    image.load()
    return image


def decode_resized(path: Path, resize_size: int, interpolation: str = "bilinear",
                   use_draft: bool = True, window: Window | None = None) -> Image.Image:
    """Decode ``path`` and resize its shorter side to ``resize_size`` as torchvision's Resize does.

    Returns an RGB image of ``resized_size(height, width, resize_size)``; pixels differ from a full
    decode only when draft applied (see the module docstring for the bound). With ``window``, a
    function of the resized (height, width) returning ``(top, left, size)``, only that square of the
    resized image is computed and returned: the resampler gets the matching source box, so the
    result equals resizing the whole image and cropping (within one grey level of rounding) at a
    fraction of the resize work.
    """
    with Image.open(path) as image:
        width, height = image.size
        target_height, target_width = resized_size(height, width, resize_size)
        source = (0.0, 0.0, float(width), float(height))  # the original's extent, in decoded pixels
        if use_draft and image.format == "JPEG":
            drafted = image.draft("RGB", (DRAFT_MARGIN * target_width, DRAFT_MARGIN * target_height))
            if drafted is not None and image.size != (width, height):
                source = drafted[1]
        image = _loaded_rgb(image)
    size = (target_width, target_height)
    if window is not None:
        top, left, crop = window(target_height, target_width)
        step_x, step_y = source[2] / target_width, source[3] / target_height
        source = (left * step_x, top * step_y, (left + crop) * step_x, (top + crop) * step_y)
        size = (crop, crop)
    return image.resize(size, pil_resample(interpolation), box=source)


def probe_image(path: Path) -> str | None:
    """Fully decode ``path``; return None if it decodes, else a short reason (missing, truncated...)."""
    try:
        with Image.open(path) as image:
            image.load()
    except FileNotFoundError:
        return "file not found"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        return f"cannot decode: {err}"
    return None
