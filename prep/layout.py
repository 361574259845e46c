"""Where things live in a prepared tree, and the two ways prep writes files safely.

Layout (DESIGN.md)::

    DST/train/<wnid>/<original name>       DST/meta/classes.tsv
    DST/val/<wnid>/ILSVRC2012_val_X.JPEG   DST/meta/train.txt, val.txt, prep.json

While a split is being prepared, ``DST/meta/.journal-<split>.jsonl`` holds one line per finished
unit (an inner class tar, or a chunk of val images) so that a killed run resumes where it stopped;
the journal goes away once the split's record in ``prep.json`` says it is complete.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from imnet.errors import ImnetError

SPLITS = ("train", "val")


@dataclass(frozen=True)
class TreeLayout:
    """The paths of a prepared tree rooted at ``dst``."""

    dst: Path

    @property
    def meta(self) -> Path:
        return self.dst / "meta"

    @property
    def prep_json(self) -> Path:
        return self.meta / "prep.json"

    @property
    def classes_tsv(self) -> Path:
        return self.meta / "classes.tsv"

    def split_dir(self, split: str) -> Path:
        """``DST/<split>``: the ImageFolder tree of one split."""
        return self.dst / split

    def file_list(self, split: str) -> Path:
        """``DST/meta/<split>.txt``: the DALI file_list of one split."""
        return self.meta / f"{split}.txt"

    def journal(self, split: str) -> Path:
        """``DST/meta/.journal-<split>.jsonl``: finished units while a split is in progress."""
        return self.meta / f".journal-{split}.jsonl"


def atomic_write_bytes(path: Path, data: bytes, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` through a temp file and a rename, so a reader (or a later run after
    a crash) sees the old file or the whole new one, never a part. ``fsync`` makes it durable."""
    tmp = path.with_name(f".{path.name}.part")
    with open(tmp, "wb") as handle:
        handle.write(data)
        if fsync:
            handle.flush()
            os.fsync(handle.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str, fsync: bool = True) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync)


def read_prep_json(layout: TreeLayout) -> dict:
    """The tree's ``prep.json`` as a dict (``{"splits": {}}`` when there is none yet)."""
    if not layout.prep_json.exists():
        return {"splits": {}}
    try:
        record = json.loads(layout.prep_json.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ImnetError(f"{layout.prep_json}: unreadable prep record ({err}); remove it to redo prep") from err
    record.setdefault("splits", {})
    return record


def split_is_complete(record: dict, split: str) -> bool:
    """Whether ``prep.json`` (as read by :func:`read_prep_json`) marks ``split`` as prepared."""
    return bool(record.get("splits", {}).get(split, {}).get("complete"))


def free_bytes(path: Path) -> int:
    """Free bytes on the file system that holds ``path`` (or its nearest existing ancestor)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def check_disk_space(dst: Path, needed: int, what: str) -> None:
    """Raise :class:`ImnetError` before anything is written when ``dst`` has less than ``needed``
    bytes free; ``what`` says what the bytes are for."""
    free = free_bytes(dst)
    if free < needed:
        raise ImnetError(
            f"{dst}: not enough disk space for {what}: needs {needed / 1e9:.2f} GB, "
            f"{free / 1e9:.2f} GB free; free some space or choose another --dst"
        )


def check_src_dst(src: Path, dst: Path) -> None:
    """Refuse a ``dst`` that is ``src`` or lies inside it (prep never modifies ``--src``)."""
    src_r, dst_r = src.resolve(), dst.resolve()
    if dst_r == src_r or src_r in dst_r.parents:
        raise ImnetError(f"--dst {dst} is inside --src {src}; prep never writes into the archive folder")


def ensure_writable_dir(dst: Path) -> None:
    """Create ``dst`` (and ``dst/meta``) or raise :class:`ImnetError` saying why it cannot be written."""
    try:
        (dst / "meta").mkdir(parents=True, exist_ok=True)
        probe = dst / "meta" / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ImnetError(f"--dst {dst} is not writable: {err.strerror or err}") from err
