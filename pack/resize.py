"""Re-encoding images whose longer side exceeds ``max_side`` (``imnet pack --max-side N --quality Q``).

An image whose longer side is at most ``max_side`` keeps its bytes untouched. A larger one is
decoded (JPEG ``draft`` first, DCT-domain downscaling to no less than twice the target, so the final
Lanczos resize still downsamples by 2x or more with its antialiasing), resized so the longer side is
``max_side`` and the shorter ``round(short * max_side / long)`` (at least 1), and encoded as a
baseline JPEG of ``quality`` (4:2:0 chroma, libjpeg's default). Grayscale stays grayscale; any other
mode becomes RGB. EXIF and ICC data are dropped, as every imnet loader ignores them.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

DRAFT_MARGIN = 2


@dataclass(frozen=True)
class ResizeSettings:
    """``max_side`` in pixels (None: keep every image's bytes) and JPEG ``quality`` of re-encoded ones."""

    max_side: int | None = None
    quality: int = 90

    def to_dict(self) -> dict:
        return {"max_side": self.max_side, "quality": self.quality if self.max_side else None}


def target_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) with the longer side ``max_side`` and the aspect ratio kept (rounded)."""
    if width >= height:
        return max_side, max(1, round(height * max_side / width))
    return max(1, round(width * max_side / height)), max_side


def fit(data: bytes, settings: ResizeSettings) -> tuple[bytes, tuple[int, int] | None]:
    """``data`` as stored in the pack: the same bytes when no resize applies, else a JPEG of the
    resized image. Returns (bytes, original (width, height) when re-encoded, else None). Raises
    OSError/ValueError (PIL's) for data PIL cannot decode."""
    if not settings.max_side:
        return data, None
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        if max(width, height) <= settings.max_side:
            return data, None
        new_width, new_height = target_size(width, height, settings.max_side)
        source = None
        if image.format == "JPEG":
            drafted = image.draft(image.mode if image.mode in ("L", "RGB") else "RGB",
                                  (DRAFT_MARGIN * new_width, DRAFT_MARGIN * new_height))
            if drafted is not None:
                source = drafted[1]
        image.load()
        if image.mode not in ("L", "RGB"):
            image = image.convert("RGB")
        resized = image.resize((new_width, new_height), Image.Resampling.LANCZOS, box=source)
    out = io.BytesIO()
    resized.save(out, format="JPEG", quality=settings.quality)
    return out.getvalue(), (width, height)
