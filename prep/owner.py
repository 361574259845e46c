"""What in ``--dst`` belongs to imnet prep, and removing only that.

prep owns, under ``DST/train``, ``DST/val`` and ``DST/meta``, exactly what it writes:

* ``DST/<split>/<wnid>/`` class folders (real folders named ``nXXXXXXXX``) holding regular files named
  as the archive's members (``<wnid>_N.JPEG`` in train, ``ILSVRC2012_val_XXXXXXXX.JPEG`` in val),
  once ``meta/`` records the split as its own: a record in ``prep.json`` or a journal
  (``meta/.journal-<split>.jsonl``, written before the first image of a run);
* in ``meta/``: ``prep.json`` (an imnet record), the journals, ``classes.tsv``, ``<split>.txt`` and
  ``<split>.sha256`` of recorded splits, and the temp files of its atomic writes.

Anything else found there (another tool's files, a tree from torchvision, a foreign ``train.txt``,
a symlink inside a split) is refused by :func:`check_owned` before anything is written, naming the
first such path. ``meta/real.json`` (ReaL labels, where ``imnet eval --real-labels`` looks) is
allowed and never touched. ``DST/train`` and ``DST/val`` may themselves be symlinks to folders
elsewhere (another disk); prep writes and removes inside them, never the links.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from imnet.errors import ImnetError
from imnet.prep.layout import SPLITS, TEMP_FILE, TreeLayout

WNID = re.compile(r"^n\d{8}$")
IMAGE_NAMES = {
    "train": lambda wnid: re.compile(rf"^{re.escape(wnid)}_\d+\.JPEG$"),
    "val": lambda wnid: re.compile(r"^ILSVRC2012_val_\d{8}\.JPEG$"),
}
# Files of meta/ that imnet's other commands may put there and prep leaves alone.
ALLOWED_META = frozenset({"real.json"})
JOURNAL = re.compile(r"^\.journal-(train|val)\.jsonl$")


class ForeignFile(ImnetError):
    """``--dst`` holds a file imnet prep did not write, where prep would write."""


def journal_identity(path: Path) -> dict | None:
    """The identity line of an imnet journal (archive, bytes, mtime, md5), or None when ``path`` is
    not one."""
    try:
        with open(path, encoding="utf-8") as handle:
            identity = json.loads(handle.readline())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if isinstance(identity, dict) and {"archive", "md5"} <= set(identity):
        return identity
    return None


def recorded_splits(layout: TreeLayout, record: dict) -> set[str]:
    """The splits ``meta/`` records as prep's own: those with a record in ``prep.json`` or a journal."""
    return {s for s in SPLITS if s in record.get("splits", {}) or journal_identity(layout.journal(s))}


@dataclass
class SplitScan:
    """One pass over a split folder: files per class folder, and the first path prep does not own."""

    counts: dict[str, int] = field(default_factory=dict)
    foreign: Path | None = None
    why: str = ""


def scan_split(layout: TreeLayout, split: str, owned: bool) -> SplitScan:
    """List ``DST/<split>`` once: count the files of each class folder and stop at the first entry
    prep does not own (``owned``: whether meta/ records the split; if not, only empty class folders
    may be there). O(files), holding one count per class."""
    scan = SplitScan()
    top = layout.split_dir(split)
    if not os.path.lexists(top):
        return scan
    if not top.is_dir():
        scan.foreign, scan.why = top, "is not a folder"
        return scan
    with os.scandir(top) as classes:
        for entry in sorted(classes, key=lambda e: e.name):
            if entry.is_symlink() or not entry.is_dir() or not WNID.match(entry.name):
                scan.foreign, scan.why = Path(entry.path), "is not a class folder imnet prep writes"
                return scan
            pattern = IMAGE_NAMES[split](entry.name)
            count = 0
            with os.scandir(entry.path) as images:
                for image in images:
                    if not owned:
                        scan.foreign, scan.why = Path(image.path), f"was not written by imnet prep (no record of " \
                            f"the {split} split in {layout.meta})"
                        return scan
                    if image.is_symlink() or not image.is_file() or not pattern.match(image.name):
                        scan.foreign, scan.why = Path(image.path), "was not written by imnet prep"
                        return scan
                    count += 1
            scan.counts[entry.name] = count
    return scan


def meta_foreign(layout: TreeLayout, record: dict, owned_splits: set[str]) -> tuple[Path, str] | None:
    """The first entry of ``DST/meta`` that prep does not own, with why; None when all are."""
    meta = layout.meta
    if not os.path.lexists(meta):
        return None
    if not meta.is_dir():
        return meta, "is not a folder"
    with os.scandir(meta) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            name = entry.name
            if entry.is_symlink() or not entry.is_file():
                return Path(entry.path), "is not a file imnet prep writes"
            if name in ALLOWED_META or TEMP_FILE.match(name):
                continue
            if name == "prep.json":
                if "format" in record:
                    continue
                return Path(entry.path), "is not a record written by imnet prep"
            if JOURNAL.match(name):
                if journal_identity(Path(entry.path)):
                    continue
                return Path(entry.path), "is not a journal written by imnet prep"
            if name == "classes.tsv" and owned_splits:
                continue
            stem, _, suffix = name.partition(".")
            if stem in owned_splits and suffix in ("txt", "sha256"):
                continue
            return Path(entry.path), "was not written by imnet prep" + (
                f" (no record of the {stem} split in {layout.prep_json})" if stem in SPLITS else "")
    return None


def check_owned(layout: TreeLayout, record: dict) -> dict[str, SplitScan]:
    """Refuse (:class:`ForeignFile`, naming the first path) a tree whose ``train/``, ``val/`` or
    ``meta/`` holds anything prep did not write; returns the scan of each split folder (files per
    class, used by the cheap check of complete splits)."""
    owned = recorded_splits(layout, record)
    scans = {}
    found = meta_foreign(layout, record, owned)
    for split in SPLITS:
        if found is not None:
            break
        scans[split] = scan = scan_split(layout, split, split in owned)
        if scan.foreign is not None:
            found = scan.foreign, scan.why
    if found is not None:
        path, why = found
        raise ForeignFile(
            f"--dst {layout.dst}: {path} {why}; prep writes only into train/, val/ and meta/ folders that hold "
            f"nothing else, and removes only what it wrote: move it away or choose another --dst"
        )
    return scans


def remove_split_files(layout: TreeLayout, split: str, remove_folder: bool = False) -> None:
    """Remove what prep wrote in ``DST/<split>``: the image files its names match in class folders,
    then those folders once empty, then, with ``remove_folder`` (prep made it), the split folder once
    empty; never a symlinked ``DST/<split>`` itself, nor anything prep does not own."""
    top = layout.split_dir(split)
    if not top.is_dir():
        return
    with os.scandir(top) as classes:
        for entry in list(classes):
            if entry.is_symlink() or not entry.is_dir() or not WNID.match(entry.name):
                continue
            pattern = IMAGE_NAMES[split](entry.name)
            with os.scandir(entry.path) as images:
                for image in list(images):
                    if pattern.match(image.name) and not image.is_symlink() and image.is_file():
                        os.unlink(image.path)
            try:
                os.rmdir(entry.path)
            except OSError:
                pass
    if remove_folder and not top.is_symlink():
        try:
            top.rmdir()
        except OSError:
            pass
