"""The manifests of a prepared tree (``DST/meta``) and the data shipped in ``manifests/``.

* ``classes.tsv``: ``index <TAB> wnid <TAB> ILSVRC2012_ID <TAB> words``, one row per class in index
  order (the class index is the position of the wnid in sorted order).
* ``train.txt`` / ``val.txt``: DALI ``file_list`` format, ``<path relative to DST/<split>> <index>``
  per image; train sorted by (class, file name) like torchvision's ImageFolder, val in val-number order.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from imnet.errors import ImnetError
from imnet.manifests import manifest_path
from imnet.prep.layout import atomic_write_text


@dataclass(frozen=True)
class ClassInfo:
    """One ILSVRC2012 class: its index (sorted-wnid position), wnid, devkit ID and words."""

    class_index: int
    wnid: str
    ilsvrc_id: int
    words: str


def write_classes(path: Path, classes: list[ClassInfo]) -> None:
    """Write ``classes.tsv`` atomically; ``classes`` must be in class-index order."""
    lines = [f"{c.class_index}\t{c.wnid}\t{c.ilsvrc_id}\t{c.words}\n" for c in classes]
    atomic_write_text(path, "".join(lines))


def read_classes(dst: Path) -> list[ClassInfo]:
    """Read ``DST/meta/classes.tsv`` (``dst`` is the tree root, or the tsv itself) into
    :class:`ClassInfo` rows in index order; raises :class:`ImnetError` on a missing or malformed file."""
    path = dst if dst.suffix == ".tsv" else dst / "meta" / "classes.tsv"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ImnetError(f"{path}: cannot read the class list ({err.strerror or err}); run imnet prep") from err
    classes = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split("\t")
        if len(fields) != 4 or not fields[0].isdigit() or not fields[2].isdigit():
            raise ImnetError(f"{path}:{number}: expected 'index<TAB>wnid<TAB>ILSVRC2012_ID<TAB>words', got {line!r}")
        if int(fields[0]) != number - 1:
            raise ImnetError(f"{path}:{number}: class index {fields[0]} out of order (expected {number - 1})")
        classes.append(ClassInfo(int(fields[0]), fields[1], int(fields[2]), fields[3]))
    return classes


def write_file_list(path: Path, entries: list[tuple[str, int]]) -> None:
    """Write a DALI file_list (``<relative path> <class index>`` per line) atomically."""
    atomic_write_text(path, "".join(f"{rel} {index}\n" for rel, index in entries))


def read_file_list(path: Path) -> list[tuple[str, int]]:
    """Read ``meta/train.txt`` or ``meta/val.txt`` into ``(relative path, class index)`` pairs, in file
    order; raises :class:`ImnetError` naming the file and line when one is malformed."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise ImnetError(f"{path}: cannot read the file list ({err.strerror or err}); run imnet prep") from err
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        rel, _, index = line.rpartition(" ")
        if not rel or not index.isdigit():
            raise ImnetError(f"{path}:{number}: expected '<relative path> <class index>', got {line!r}")
        entries.append((rel, int(index)))
    return entries


@dataclass(frozen=True)
class KnownQuirk:
    """A file of the official archives known to need repair: ``split``, file ``name``, ``kind``."""

    split: str
    name: str
    kind: str


def known_quirks() -> list[KnownQuirk]:
    """The known quirks of the real ILSVRC2012 archives (``manifests/ILSVRC2012_quirks.tsv``)."""
    rows = []
    for line in manifest_path("ILSVRC2012_quirks.tsv").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            split, name, kind = line.split("\t")
            rows.append(KnownQuirk(split, name, kind))
    return rows


def official_archives() -> dict[str, dict]:
    """Official archive facts by file name (md5, bytes, images, classes) from ``manifests/``."""
    return json.loads(manifest_path("ILSVRC2012.json").read_text(encoding="utf-8"))["archives"]
