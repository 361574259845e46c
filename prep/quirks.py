"""Image quirks of ILSVRC2012, found by content (header and decode), never by a list of names.

* CMYK JPEG (22 in train, 1 in val) -> decoded and re-encoded as an RGB JPEG (quality 95).
* PNG stored under a ``.JPEG`` name (1 in train) -> converted to an RGB JPEG under the same name.
* Grayscale JPEG (thousands) -> kept as they are: every imnet loader decodes to RGB, and re-encoding
  would only lose quality. They are counted, not listed as repairs.
* Anything PIL cannot identify or fully decode -> kept and reported as undecodable, with its name
  and why (PIL is the torch loader's decoder: a file it refuses is one the loaders must not use).

Every image gets PIL's verdict (does it decode?) on its way into the tree, in one of two ways:

* A JPEG whose structure leaves libjpeg nothing to fail on (:func:`decodes_by_structure`): baseline
  or extended sequential, one scan holding every component, no marker inside the entropy-coded data
  (no restart markers, nothing but stuffed ``FF 00``), ending in EOI right after the scan, and whose
  headers and first KiB of scan PIL decodes (so libjpeg has read and checked every table). Past that
  point libjpeg only *warns* on bad data (a bad Huffman code, a marker hit early, extraneous bytes)
  and PIL decodes on; it can fail only at a marker or when data runs out, and there is none but the
  final EOI. These take ~0.1 ms instead of ~1 ms.
* Every other image (progressive, restart markers, anything unusual, and every file failing the
  above) is decoded in full: a JPEG with DCT scaling (``draft``, 1/8 size), which still reads every
  entropy-coded coefficient, marker and byte, so it fails on exactly the files a full-size decode
  fails on, for about three quarters of the CPU time.

Both were checked against a plain full-size ``Image.load()`` on 12,000 random corruptions (cut,
overwritten, inserted, flipped bytes in headers and scans) of baseline, progressive, 4:4:4,
optimized, EXIF-carrying and grayscale JPEGs: no disagreement (a smaller run is a test).

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


_SEQUENTIAL_SOF = frozenset({0xC0, 0xC1})
_SCAN_MARKER = re.compile(rb"\xff[^\x00]")  # in entropy-coded data, FF is followed by 00 unless a marker
_SCAN_PREFIX = 1024
# Benchmark hook: "shortcut" in IMNET_PREP_SKIP_CHECKS decodes every image in full (to measure it).
_SKIP_ENV = "IMNET_PREP_SKIP_CHECKS"


def decodes_by_structure(data: bytes) -> bool:
    """True when ``data`` is a JPEG that PIL certainly decodes, as the module docstring explains:
    sequential, one scan of every component, no marker in its entropy-coded data, EOI at the end, and
    headers plus the first KiB of the scan decoded by PIL (the rest could only raise warnings).
    False means "not certain": decode it in full."""
    import os

    n = len(data)
    if "shortcut" in os.environ.get(_SKIP_ENV, "") or n < 8 or data[:2] != b"\xff\xd8" or data[-2:] != b"\xff\xd9":
        return False
    pos, components = 2, None
    while True:
        if pos + 4 > n or data[pos] != 0xFF:
            return False
        marker = data[pos + 1]
        length = (data[pos + 2] << 8) | data[pos + 3]
        if length < 2 or marker in (0xFF, 0xD8, 0xD9, 0x01, 0xDD) or 0xD0 <= marker <= 0xD7:
            return False  # fill bytes, a second SOI, EOI, TEM, a restart interval or marker
        if marker in _SOF_MARKERS:
            if marker not in _SEQUENTIAL_SOF or components is not None or pos + 9 >= n:
                return False
            components = data[pos + 9]
        elif marker == 0xDA:
            if components is None or pos + 4 >= n or data[pos + 4] != components:
                return False  # not one interleaved scan of the whole frame
            scan = pos + 2 + length
            break
        pos += 2 + length
    if scan > n - 2 or _SCAN_MARKER.search(data, scan, n - 2) or data[n - 3] == 0xFF:
        return False
    try:
        with Image.open(io.BytesIO(data[:min(n - 2, scan + _SCAN_PREFIX)])) as head:
            head.draft(head.mode, (1, 1))
            head.load()  # libjpeg reads every header and table, starts the scan, then runs out of data
    except OSError as err:
        return str(err).startswith("image file is truncated")
    except Exception:
        return False
    return False


def decode_fully(image: Image.Image) -> None:
    """Decode every byte of an opened image (JPEG: with 1/8 DCT scaling, see the module docstring);
    raises what PIL raises on corrupt data."""
    if image.format == "JPEG":
        image.draft(image.mode, (1, 1))
    image.load()


def inspect_image(rel: str, data: bytes, decode: bool = True) -> tuple[bytes, Quirk | None]:
    """Look at one image's bytes; return the bytes to write (repaired when needed) and the quirk
    found (``None`` for a plain RGB JPEG). ``rel`` is the file's path in the tree, for the record.

    With ``decode`` (prep's default) every image gets PIL's verdict, so a file with a valid header
    and a corrupt body is found (~0.1 ms per ImageNet-sized baseline JPEG, ~1 ms when it must be
    decoded in full; benchmarks/RESULTS.md). Without it only the JPEG frame header is read for
    ordinary files (microseconds).
    """
    if data.startswith(JPEG_MAGIC):
        proven = None
        if jpeg_components(data) == 3:  # the common case, decided from the header (and structure)
            proven = decode and decodes_by_structure(data)
            if proven or not decode:
                return data, None
        try:
            with Image.open(io.BytesIO(data)) as image:
                mode = image.mode
                if mode in ("CMYK", "YCbCr", "P", "LA", "RGBA", "I;16"):
                    kind = "cmyk" if mode == "CMYK" else f"mode-{mode}"
                    return _encode_rgb_jpeg(image), Quirk(rel, kind, f"re-encoded {mode} JPEG as RGB JPEG")
                if decode and not (proven if proven is not None else decodes_by_structure(data)):
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
