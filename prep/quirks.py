"""Image quirks of ILSVRC2012, found by content (header and decode), never by a list of names.

* CMYK JPEG (22 in train, 1 in val) -> decoded and re-encoded as an RGB JPEG (quality 95).
* PNG stored under a ``.JPEG`` name (1 in train) -> converted to an RGB JPEG under the same name.
* Grayscale JPEG (thousands) -> kept as they are: every imnet loader decodes to RGB, and re-encoding
  would only lose quality. They are counted, not listed as repairs.
* Anything PIL cannot identify or fully decode -> kept and reported as undecodable, with its name
  and why (PIL is the torch loader's decoder: a file it refuses is one the loaders must not use).

Every image is decoded in full by PIL on its way into the tree. A JPEG is decoded with DCT scaling
(``draft``, 1/8 size): libjpeg still reads every entropy-coded coefficient, marker and byte of the
file, so it fails on exactly the files a full-size decode fails on (checked on 4,000 random
corruptions of baseline, progressive and grayscale JPEGs: no disagreement; a smaller run is a test),
for about three quarters of the CPU time.

``manifests/ILSVRC2012_quirks.tsv`` names the known CMYK/PNG files of the real set;
:func:`cross_check` compares what was found against it.
"""
from __future__ import annotations

import io
import re
from dataclasses import asdict, dataclass

from PIL import Image

from imnet.prep.manifests import KnownQuirk

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REENCODE_QUALITY = 95


@dataclass(frozen=True)
class Quirk:
    """What was found in one file (``kind``: cmyk, png, grayscale, other-mode, undecodable) and done."""

    file: str
    kind: str
    action: str

    def to_dict(self) -> dict:
        return asdict(self)


def _encode_rgb_jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=REENCODE_QUALITY)
    return out.getvalue()


# Start-of-frame markers (baseline, progressive, lossless...; not DHT/JPG/DAC, which share the range).
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def jpeg_components(data: bytes) -> int | None:
    """Number of colour components in a JPEG's start-of-frame header (1 gray, 3 YCbCr/RGB, 4 CMYK),
    found by walking the marker segments; ``None`` when the header cannot be walked."""
    pos, end = 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = (data[pos + 2] << 8) | data[pos + 3]
        if marker in _SOF_MARKERS:
            return data[pos + 9] if pos + 9 < end else None
        if marker in (0xD9, 0xDA) or length < 2:  # end of image / start of scan before any frame
            return None
        pos += 2 + length
    return None


def undecodable_reason(err: BaseException) -> str:
    """Why PIL refused a file, as one line without object addresses (PIL's "cannot identify image
    file <_io.BytesIO object at 0x7f...>" names a buffer, not the file)."""
    from PIL import UnidentifiedImageError

    if isinstance(err, UnidentifiedImageError):
        return "PIL cannot identify it as an image"
    text = re.sub(r"\s*<[^<>]* at 0x[0-9a-fA-F]+>", "", " ".join(str(err).split())) or type(err).__name__
    return f"PIL cannot decode it: {text}"


def decode_fully(image: Image.Image) -> None:
    """Decode every byte of an opened image (JPEG: with 1/8 DCT scaling, see the module docstring);
    raises what PIL raises on corrupt data."""
    if image.format == "JPEG":
        image.draft(image.mode, (1, 1))
    image.load()


def inspect_image(rel: str, data: bytes, decode: bool = True) -> tuple[bytes, Quirk | None]:
    """Look at one image's bytes; return the bytes to write (repaired when needed) and the quirk
    found (``None`` for a plain RGB JPEG). ``rel`` is the file's path in the tree, for the record.

    With ``decode`` (prep's default) every image is decoded in full, so a file with a valid header
    and a corrupt body is found (~1 ms per ImageNet-sized JPEG; benchmarks/RESULTS.md). Without it
    only the JPEG frame header is read for ordinary files (microseconds).
    """
    if data.startswith(JPEG_MAGIC):
        if not decode and jpeg_components(data) == 3:  # the common case, decided without PIL
            return data, None
        try:
            with Image.open(io.BytesIO(data)) as image:
                mode = image.mode
                if mode in ("CMYK", "YCbCr", "P", "LA", "RGBA", "I;16"):
                    kind = "cmyk" if mode == "CMYK" else f"mode-{mode}"
                    return _encode_rgb_jpeg(image), Quirk(rel, kind, f"re-encoded {mode} JPEG as RGB JPEG")
                if decode:
                    decode_fully(image)
                if mode == "RGB":
                    return data, None
                if mode == "L":
                    return data, Quirk(rel, "grayscale", "kept (loaders decode to RGB)")
                return data, Quirk(rel, f"mode-{mode}", "kept")
        except Exception as err:  # PIL raises many types on broken data
            return data, Quirk(rel, "undecodable", f"kept; {undecodable_reason(err)}")
    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt = image.format or "unknown"
            repaired = _encode_rgb_jpeg(image)
    except Exception as err:
        return data, Quirk(rel, "undecodable", f"kept; {undecodable_reason(err)}")
    kind = "png" if data.startswith(PNG_MAGIC) else fmt.lower()
    return repaired, Quirk(rel, kind, f"converted {fmt} to RGB JPEG")


# Kinds that the known-quirks manifest lists, and so can be cross-checked.
CROSS_CHECKED = ("cmyk", "png")


def cross_check(split: str, found: list[Quirk], present: set[str], known: list[KnownQuirk]) -> dict:
    """Compare the quirks ``found`` in ``split`` with the ``known`` list of the real set, restricted to
    the file names ``present`` in this archive. Returns ``{"expected", "found_expected", "missing",
    "unexpected"}`` (file names); on the official archives ``missing`` and ``unexpected`` are empty."""
    found_names = {q.file.rsplit("/", 1)[-1]: q.kind for q in found if q.kind in CROSS_CHECKED}
    expected = {k.name: k.kind for k in known if k.split == split and k.name in present}
    return {
        "expected": len(expected),
        "found_expected": sorted(n for n, kind in expected.items() if found_names.get(n) == kind),
        "missing": sorted(n for n, kind in expected.items() if found_names.get(n) != kind),
        "unexpected": sorted(n for n in found_names if n not in expected),
    }
