"""Writing one shard: a WebDataset tar of samples (``<key>.jpg``, ``<key>.cls``, ``<key>.json``)
and its DALI index, both through temp names unique to the process, renamed when whole.

The tar is plain POSIX ustar with fixed metadata (mtime 0, uid/gid 0, mode 0444), so the same
samples give the same bytes: a resumed pack writes shards identical to an uninterrupted one. The
index is what DALI's ``wds2idx`` writes (``v1.2 <samples>``, then per sample ``ext offset size
name`` per component, offsets of the data, after each 512-byte header), taken from the offsets
while writing instead of re-reading the tar.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from imnet.prep.layout import temp_path, write_error

BLOCK = 512
INDEX_VERSION = "v1.2"


@dataclass
class Sample:
    """One sample to write: ``key`` (no dot, no whitespace), image bytes, class index, json fields."""

    key: str
    jpg: bytes
    label: int
    meta: dict


class _HashingFile(io.RawIOBase):
    """A write-only file that SHA-256s what passes through it and counts the bytes."""

    def __init__(self, handle):
        self.handle = handle
        self.sha256 = hashlib.sha256()
        self.position = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.handle.write(data)
        self.sha256.update(data)
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position


def _member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid = size, 0, 0o444, 0, 0
    info.uname = info.gname = ""
    return info


@dataclass
class WrittenShard:
    """What :func:`write_shard` wrote: the shard's and the index's sizes and SHA-256s."""

    name: str
    images: int
    bytes: int
    sha256: str
    index_bytes: int
    index_sha256: str


def write_shard(path: Path, samples: list[Sample]) -> WrittenShard:
    """Write ``samples`` as the tar ``path`` and its index ``path`` with ``.idx``; each through a temp
    file, fsynced, then renamed (index first: a tar under its final name always has its index).
    An OSError becomes a one-line WriteError naming the file."""
    index_path = path.with_suffix(".idx")
    tmp_tar, tmp_index = temp_path(path), temp_path(index_path)
    rows = []
    try:
        with open(tmp_tar, "wb", buffering=1 << 20) as handle:
            out = _HashingFile(handle)
            with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
                for sample in samples:
                    parts = [("jpg", sample.jpg), ("cls", str(sample.label).encode()),
                             ("json", json.dumps(sample.meta, sort_keys=True).encode())]
                    row = []
                    for ext, data in parts:
                        name = f"{sample.key}.{ext}"
                        info = _member(name, len(data))
                        header = len(info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape"))
                        row.append(f"{ext} {tar.offset + header} {len(data)} {name}")
                        tar.addfile(info, io.BytesIO(data))
                    rows.append(" ".join(row))
            handle.flush()
            os.fsync(handle.fileno())
        text = f"{INDEX_VERSION} {len(rows)}\n" + "".join(row + "\n" for row in rows)
        index_bytes = text.encode()
        with open(tmp_index, "wb") as handle:
            handle.write(index_bytes)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_index, index_path)
        os.replace(tmp_tar, path)
    except OSError as err:
        for tmp in (tmp_tar, tmp_index):
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
        raise write_error(path, err) from err
    return WrittenShard(path.name, len(samples), out.position, out.sha256.hexdigest(), len(index_bytes),
                        hashlib.sha256(index_bytes).hexdigest())
