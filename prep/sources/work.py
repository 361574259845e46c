"""The units of work of the other sources, run by prep's writer processes.

Each reads its images itself (a folder's files, a zip's members) and hands them, one at a time, to
:func:`imnet.prep.extract.write_images`, which decode-checks, repairs, hashes and writes them as for
the official archives. A stream source (Hugging Face ``.tar.gz``) sends the bytes instead and uses
``write_images`` directly.

Zip members are read from the file by their central-directory entry (offset, sizes, CRC-32,
method), which the parent process read once: a worker never parses the central directory of a
1.4-million-member zip again. The CRC-32 and size of every member are checked.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

from imnet.errors import ImnetError
from imnet.prep.extract import UnitResult, write_images

LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")
LOCAL_SIGNATURE = 0x04034B50
STORED, DEFLATED = 0, 8


class ReadError(ImnetError):
    """A file of the source could not be read (permissions, an I/O error). Like a write error it keeps
    what is journaled: once the cause is fixed the same command resumes."""


def read_file(path: str) -> bytes:
    """The bytes of one source file; :class:`ReadError` naming it when it cannot be read."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as err:
        raise ReadError(f"{path}: cannot read: {err.strerror or err}; fix it and run the same command again "
                        f"(it resumes)") from err


def copy_files(items: list[tuple[str, str, str]], split_dir: Path, unit: str, split: str) -> UnitResult:
    """Write images read from files: ``items`` are (wnid, official file name, source path)."""
    return write_images(((wnid, name, read_file(path)) for wnid, name, path in items), split_dir, unit, split)


def read_zip_member(handle, zip_path: str, member: tuple) -> bytes:
    """The bytes of one zip member, ``member`` = (name, header offset, compressed size, size, CRC-32,
    method) from the central directory; checks its local header, size and CRC-32."""
    name, offset, compressed, size, crc, method = member
    where = f"{zip_path}:{name}"
    handle.seek(offset)
    header = handle.read(LOCAL_HEADER.size)
    if len(header) != LOCAL_HEADER.size:
        raise ImnetError(f"{where}: the zip is truncated (member header past its end); download it again")
    signature, _, flags, _, _, _, _, _, _, name_len, extra_len = LOCAL_HEADER.unpack(header)
    if signature != LOCAL_SIGNATURE:
        raise ImnetError(f"{where}: no zip member header at offset {offset}; the zip is damaged, download it again")
    if flags & 1:
        raise ImnetError(f"{where}: the member is encrypted; imnet reads the competition zip as published")
    handle.seek(offset + LOCAL_HEADER.size + name_len + extra_len)
    raw = handle.read(compressed)
    if len(raw) != compressed:
        raise ImnetError(f"{where}: the zip is truncated ({len(raw)} of {compressed} bytes); download it again")
    if method == STORED:
        data = raw
    elif method == DEFLATED:
        try:
            inflate = zlib.decompressobj(-15)
            data = inflate.decompress(raw) + inflate.flush()
        except zlib.error as err:
            raise ImnetError(f"{where}: damaged compressed data ({err}); download the zip again") from err
    else:
        raise ImnetError(f"{where}: compression method {method} (imnet reads stored and deflated members)")
    if len(data) != size or zlib.crc32(data) != crc:
        raise ImnetError(f"{where}: CRC-32 or size differs from the zip's directory; the zip is damaged, "
                         f"download it again")
    return data


def copy_zip_members(data: tuple[str, list[tuple[str, str, tuple]]], split_dir: Path, unit: str,
                     split: str) -> UnitResult:
    """Write images read from a zip: ``data`` = (zip path, [(wnid, official file name, member)])."""
    zip_path, items = data
    try:
        handle = open(zip_path, "rb")
    except OSError as err:
        raise ReadError(f"{zip_path}: cannot read: {err.strerror or err}") from err
    with handle:
        try:
            return write_images(((wnid, name, read_zip_member(handle, zip_path, member)) for wnid, name, member in items),
                                split_dir, unit, split)
        except OSError as err:  # reading the zip (writes fail as WriteError, which is no OSError)
            raise ReadError(f"{zip_path}: cannot read: {err.strerror or err}") from err
