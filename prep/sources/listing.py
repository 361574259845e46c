"""Splits held as files (a folder tree, Kaggle's folder or zip): listed and checked before anything is
written.

A split folder holds class folders (``<wnid>/<name>``) or flat files (``<name>``), or both. Each
image's label comes from what says it (its class folder, a Hugging Face name's wnid suffix, a label
list: Kaggle's ``LOC_val_solution.csv`` or the devkit's ground truth), and they must agree. Names are
normalized to the official ones; hidden files (``.DS_Store``) are ignored and listed; anything else
that is not an ILSVRC2012 image name, a class not in the class list, an image without a label, a
name twice, or a listed label with no image is an error naming it, before anything is written.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from imnet.errors import ImnetError
from imnet.prep.sources.base import (
    EXPECTED_NAMES,
    WNID,
    ClassList,
    SplitPlan,
    Unit,
    chunks,
    fingerprint,
    label_of,
    official_name,
)

SHOWN_IGNORED = 20


@dataclass(frozen=True)
class Image:
    """One image of a split as listed: its label, official name, size, where to read it (a path, or
    a zip member's directory entry) and, for val, its number."""

    wnid: str
    name: str
    size: int
    where: object
    number: int | None = None

    @property
    def rel(self) -> str:
        return f"{self.wnid}/{self.name}"


@dataclass
class Listing:
    """The images of a split, sorted as the file list will be (train by class and name, val by
    number), how many names were normalized, and the entries ignored."""

    images: list[Image]
    renamed: int = 0
    ignored: list[str] = field(default_factory=list)


def _printable(path: str) -> str:
    """``path`` for an error line; a name that is not UTF-8 (undecodable bytes) as its bytes' repr."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        import os

        return repr(os.fsencode(path))


def list_split(entries: Iterable[tuple[tuple[str, ...], int, object, object]], split: str, classes: ClassList,
               base: str, labels: dict[int, str] | None = None, labels_from: str = "") -> Listing:
    """Read a split's ``entries`` (path parts below the split folder, size, where to read it, and a
    stamp for the fingerprint, e.g. the mtime) into a checked :class:`Listing`. ``base`` names the
    split folder in errors; ``labels`` maps val numbers to wnids (from ``labels_from``)."""
    images: list[Image] = []
    renamed = 0
    ignored: list[str] = []
    for parts, size, where, _ in entries:
        shown = _printable(f"{base}/{'/'.join(parts)}")
        if any(part.startswith(".") for part in parts):
            ignored.append(shown)
            continue
        if len(parts) > 2 or (len(parts) == 2 and not WNID.match(parts[0])):
            raise ImnetError(f"{shown}: not an image of the {split} split (expected {base}/<wnid>/<name> or "
                             f"{base}/<name>)")
        folder = parts[0] if len(parts) == 2 else None
        name = official_name(split, parts[-1])
        if name is None:
            raise ImnetError(f"{shown}: not an ILSVRC2012 {split} image name (expected {EXPECTED_NAMES[split]})")
        listed = None
        if labels is not None and name.number is not None:
            if name.number not in labels:
                raise ImnetError(f"{shown}: no label for this image in {labels_from}")
            listed = labels[name.number]
        wnid = label_of(shown, split, name, folder, listed, labels_from or "the label list")
        classes.require(wnid, shown)
        if name.renamed:
            renamed += 1
        images.append(Image(wnid, name.name, size, where, name.number))
    if split == "train":
        images.sort(key=lambda image: image.rel)
        twice = next((a for a, b in zip(images, images[1:]) if a.rel == b.rel), None)
        if twice is not None:
            raise ImnetError(f"{base}: holds {twice.name} of class {twice.wnid} twice (under two names)")
    else:
        images.sort(key=lambda image: image.number)
        twice = next((a for a, b in zip(images, images[1:]) if a.number == b.number), None)
        if twice is not None:
            raise ImnetError(f"{base}: holds {twice.name} twice (in two class folders or under two names)")
        if labels is not None:
            have = {image.number for image in images}
            missing = sorted(set(labels) - have)
            if missing:
                raise ImnetError(f"{labels_from} lists ILSVRC2012_val_{missing[0]:08d} ({len(missing)} images in all) "
                                 f"but {base} has no such image; the download is incomplete")
    if not images:
        raise ImnetError(f"{base}: holds no {split} images")
    return Listing(images, renamed, ignored)


def listing_plan(listing: Listing, split: str, kind: str, description: str, fn: Callable,
                 data: Callable[[list[Image]], object], stamps: object, record: dict) -> SplitPlan:
    """The :class:`SplitPlan` of a listed split: train one unit per class (as the official class tars),
    val chunks in val-number order; ``data(images)`` makes a unit's payload for ``fn``; ``stamps``
    goes into the fingerprint (names below the split folder, sizes, mtimes or CRCs of the input; no
    absolute path, so a moved source is still the same input)."""
    images = listing.images
    if split == "train":
        groups: dict[str, list[Image]] = {}
        for image in images:
            groups.setdefault(image.wnid, []).append(image)
        runs = [(wnid, group) for wnid, group in groups.items()]
    else:
        runs = [(f"chunk-{n:06d}", run) for n, (run, _) in
                enumerate(chunks(images, [image.size for image in images]))]

    def units(advance: Callable[[int], None]):
        for name, run in runs:
            nbytes = sum(image.size for image in run)
            advance(nbytes)
            yield Unit(name, nbytes, fn, data(run))

    record = dict(record, renamed=listing.renamed, ignored=len(listing.ignored),
                  ignored_first=listing.ignored[:SHOWN_IGNORED])
    return SplitPlan(split=split, kind=kind, description=description, total_bytes=sum(i.size for i in images),
                     images=len(images), fingerprint=fingerprint([kind, split, stamps]), units=units, record=record)


def walk_split(split_dir) -> list[tuple[tuple[str, ...], int, str, int]]:
    """The files of a split folder on disk, two levels deep (class folders and flat files), as
    ``list_split`` entries: (parts, size, path, mtime_ns). Symlinked files and folders are followed (a
    tree may link to a shared store); a deeper file is listed with its whole path (``list_split``
    refuses it). One ``stat`` per file, as ``os.scandir`` gives it."""
    import os

    entries = []

    def visit(folder: str, parts: tuple[str, ...]) -> None:
        try:
            listing = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as err:
            from imnet.prep.sources.work import ReadError

            raise ReadError(f"{folder}: cannot list: {err.strerror or err}") from err
        for entry in listing:
            if entry.is_dir():
                if len(parts) < 2:
                    visit(entry.path, parts + (entry.name,))
                else:
                    entries.append((parts + (entry.name, "..."), 0, entry.path, 0))
                continue
            stat = entry.stat()
            entries.append((parts + (entry.name,), stat.st_size, entry.path, stat.st_mtime_ns))

    visit(str(split_dir), ())
    return entries
