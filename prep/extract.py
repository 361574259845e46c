"""Writing images into the tree: the work done by prep's worker processes.

A unit of work is one inner class tar of the train archive (its bytes, never written to disk) or a
chunk of val images. A worker checks every member, repairs quirks by content, and writes each image
under its final name. It returns a :class:`UnitResult`; the parent journals it once every file of the
unit is written. A killed run redoes every unit it had not journaled (truncating and rewriting its
files), and no image is listed in a manifest before its whole split is done, so a file cut short by
a kill is never taken for a prepared image. (A temp name and a rename per file would say the same
thing twice and cost about a fifth of prep's CPU time on a busy machine.)
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from imnet.prep.quirks import inspect_image
from imnet.prep.stream import iter_bytes, train_image_pattern


@dataclass
class UnitResult:
    """What one unit wrote: ``files`` as (path relative to the split dir, size), and its quirks."""

    unit: str
    files: list[tuple[str, int]] = field(default_factory=list)
    quirks: list[dict] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(size for _, size in self.files)

    def to_dict(self) -> dict:
        return {"unit": self.unit, "files": self.files, "quirks": self.quirks}

    @classmethod
    def from_dict(cls, record: dict) -> "UnitResult":
        return cls(record["unit"], [tuple(f) for f in record["files"]], record["quirks"])


def write_image(path: Path, data: bytes) -> None:
    """Write (or rewrite, when a unit is redone) one image. No fsync: a kill cannot lose what the OS
    holds; see the module docstring for why no temp name is needed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _store(split_dir: Path, split: str, rel: str, data: bytes, result: UnitResult) -> None:
    data, quirk = inspect_image(f"{split}/{rel}", data)
    if quirk is not None:
        result.quirks.append(quirk.to_dict())
    write_image(split_dir / rel, data)
    result.files.append((rel, len(data)))


def extract_class_tar(data: bytes | memoryview, split_dir: Path, wnid: str, archive: str) -> UnitResult:
    """Extract one inner ``<wnid>.tar`` held in memory (``data``) into ``split_dir/<wnid>/``."""
    result = UnitResult(wnid)
    (split_dir / wnid).mkdir(parents=True, exist_ok=True)
    for match, image in iter_bytes(data, f"{archive}:{wnid}.tar", train_image_pattern(wnid)):
        _store(split_dir, "train", f"{wnid}/{match.group(0)}", image, result)
    return result


def write_val_chunk(images: list[tuple[str, str, bytes]], split_dir: Path, unit: str) -> UnitResult:
    """Write a chunk of val images, given as (wnid, file name, bytes), into ``split_dir/<wnid>/``."""
    result = UnitResult(unit)
    made: set[str] = set()
    for wnid, name, image in images:
        if wnid not in made:
            (split_dir / wnid).mkdir(parents=True, exist_ok=True)
            made.add(wnid)
        _store(split_dir, "val", f"{wnid}/{name}", image, result)
    return result
