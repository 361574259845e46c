"""Writing images into the tree: the work done by prep's worker processes.

A unit of work is one inner class tar of the train archive (its bytes, never written to disk) or a
chunk of val images. A worker checks every member, repairs quirks by content, and writes each image
through a temp name and a rename, so a file with its final name is always whole. It returns a
:class:`UnitResult`; the parent journals it, so a killed run redoes only unfinished units.
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
    """Write one image via ``.<name>.part`` and a rename (no fsync: a kill cannot lose page-cache
    data, and the split is only marked complete after its manifests are fsynced)."""
    tmp = path.with_name(f".{path.name}.part")
    with open(tmp, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


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
    for wnid, name, image in images:
        (split_dir / wnid).mkdir(parents=True, exist_ok=True)
        _store(split_dir, "val", f"{wnid}/{name}", image, result)
    return result
