"""Writing images into the tree: the work done by prep's worker processes.

A unit of work is one inner class tar of the train archive (its bytes, never written to disk) or a
chunk of val images. A worker checks every member, repairs quirks by content, decodes every image
fully (:func:`imnet.prep.quirks.inspect_image`), hashes the bytes it writes (SHA-256, on the bytes
already in memory) and writes each image under its final name. It returns a :class:`UnitResult`;
the parent journals it once every file of the unit is written. A killed run redoes every unit it
had not journaled (truncating and rewriting its files), and no image is listed in a manifest before
its whole split is done, so a file cut short by a kill is never taken for a prepared image. (A temp
name and a rename per file would say the same thing twice and cost about a fifth of prep's CPU time
on a busy machine.) A failed write (disk full, quota, name too long, permissions, read-only, I/O
error) raises :class:`~imnet.prep.layout.WriteError` naming the file.
"""
from __future__ import annotations

import errno
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from imnet.prep.layout import write_error
from imnet.prep.quirks import inspect_image
from imnet.prep.stream import iter_bytes, train_image_pattern

# Test hook (like IMNET_PREP_CRASH_AT): "<ERRNO NAME>:<n>" makes the n-th image write of each writer
# process fail with that errno, for causes no test can produce on a real file system (EIO, EDQUOT).
FAULT_ENV = "IMNET_PREP_FAULT"
# Benchmark hook: "decode", "hash" or "decode,hash" turns those checks off, to measure their cost.
SKIP_CHECKS_ENV = "IMNET_PREP_SKIP_CHECKS"
_writes = 0


@dataclass
class UnitResult:
    """What one unit wrote: ``files`` as (path relative to the split dir, size), ``sha256`` the
    32-byte digests of those files concatenated in the same order (b"" when hashing was off), and
    its quirks (repairs, grayscale, undecodable)."""

    unit: str
    files: list[tuple[str, int]] = field(default_factory=list)
    quirks: list[dict] = field(default_factory=list)
    sha256: bytes = b""

    @property
    def bytes(self) -> int:
        return sum(size for _, size in self.files)

    def digests(self):
        """(relative path, hex SHA-256) of each file, in ``files`` order (nothing when not hashed)."""
        if len(self.sha256) != 32 * len(self.files):
            return
        for i, (rel, _) in enumerate(self.files):
            yield rel, self.sha256[32 * i:32 * i + 32].hex()

    def to_dict(self) -> dict:
        return {"unit": self.unit, "files": self.files, "quirks": self.quirks, "sha256": self.sha256.hex()}

    @classmethod
    def from_dict(cls, record: dict) -> "UnitResult":
        return cls(record["unit"], [tuple(f) for f in record["files"]], record["quirks"],
                   bytes.fromhex(record["sha256"]))


def _checks() -> tuple[bool, bool]:
    skip = os.environ.get(SKIP_CHECKS_ENV, "")
    return "decode" not in skip, "hash" not in skip


def _fault() -> None:
    global _writes
    spec = os.environ.get(FAULT_ENV)
    if spec:
        name, _, count = spec.partition(":")
        _writes += 1
        if _writes == int(count or 1):
            code = getattr(errno, name)
            raise OSError(code, os.strerror(code))


def write_image(path: Path, data: bytes) -> None:
    """Write (or rewrite, when a unit is redone) one image. No fsync: a kill cannot lose what the OS
    holds; see the module docstring for why no temp name is needed. Raises WriteError naming it."""
    try:
        _fault()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
    except OSError as err:
        raise write_error(path, err) from err


def make_class_dir(path: Path) -> None:
    """Create a class folder (WriteError naming it when the file system refuses)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_error(path, err) from err


class _Unit:
    def __init__(self, name: str):
        self.result = UnitResult(name)
        self.decode, hashing = _checks()
        self.digests = bytearray() if hashing else None

    def store(self, split_dir: Path, split: str, rel: str, data: bytes) -> None:
        data, quirk = inspect_image(f"{split}/{rel}", data, decode=self.decode)
        if quirk is not None:
            self.result.quirks.append(quirk.to_dict())
        write_image(split_dir / rel, data)
        self.result.files.append((rel, len(data)))
        if self.digests is not None:
            self.digests += hashlib.sha256(data).digest()

    def done(self) -> UnitResult:
        self.result.sha256 = bytes(self.digests or b"")
        return self.result


def extract_class_tar(data: bytes | memoryview, split_dir: Path, wnid: str, archive: str) -> UnitResult:
    """Extract one inner ``<wnid>.tar`` held in memory (``data``) into ``split_dir/<wnid>/``."""
    unit = _Unit(wnid)
    make_class_dir(split_dir / wnid)
    for match, image in iter_bytes(data, f"{archive}:{wnid}.tar", train_image_pattern(wnid)):
        unit.store(split_dir, "train", f"{wnid}/{match.group(0)}", image)
    return unit.done()


def write_images(images, split_dir: Path, unit: str, split: str) -> UnitResult:
    """Write images given as an iterable of (wnid, file name, bytes) into ``split_dir/<wnid>/``: the
    unit of work for val chunks and for the other prep sources (``imnet.prep.sources``), whose
    iterables may read each image as it is asked for."""
    work = _Unit(unit)
    made: set[str] = set()
    for wnid, name, image in images:
        if wnid not in made:
            make_class_dir(split_dir / wnid)
            made.add(wnid)
        work.store(split_dir, split, f"{wnid}/{name}", image)
    return work.done()


def write_val_chunk(images: list[tuple[str, str, bytes]], split_dir: Path, unit: str) -> UnitResult:
    """Write a chunk of val images, given as (wnid, file name, bytes), into ``split_dir/<wnid>/``."""
    return write_images(images, split_dir, unit, "val")
