"""Streaming tar reading with path safety.

Archives are read front to back by ``tarfile`` over a
:class:`~imnet.prep.checksum.HashingReader` that only seeks forward, hashing what it skips: one
pass, the checksum computed on the bytes being extracted. Every member is checked before its bytes are used: regular files only (no links,
devices, directories), no absolute paths or ``..``, and a name matching the pattern its archive
must have (``n01440764.tar``, ``n01440764_10026.JPEG``, ``ILSVRC2012_val_00000001.JPEG``). A member
that fails is refused with an error naming it; nothing is ever written outside ``--dst``.
"""
from __future__ import annotations

import io
import re
import tarfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from imnet.errors import ImnetError

TRAIN_CLASS_TAR = re.compile(r"^(n\d{8})\.tar$")
VAL_IMAGE = re.compile(r"^ILSVRC2012_val_(\d{8})\.JPEG$")


def train_image_pattern(wnid: str) -> re.Pattern:
    """Names allowed inside the inner tar of class ``wnid``: ``<wnid>_<number>.JPEG``."""
    return re.compile(rf"^{re.escape(wnid)}_\d+\.JPEG$")


def check_member(member: tarfile.TarInfo, archive: str, pattern: re.Pattern) -> re.Match:
    """Refuse an unsafe or unexpected tar member; return the pattern's match on its name.

    ``archive`` names the archive in the error (for an inner tar: ``outer.tar:n01440764.tar``).
    """
    name = member.name
    if name.startswith("/") or name.startswith("\\") or re.match(r"^[A-Za-z]:", name):
        raise ImnetError(f"{archive}: member {name!r} has an absolute path; refusing to extract it")
    if ".." in Path(name).parts or ".." in name.split("\\"):
        raise ImnetError(f"{archive}: member {name!r} points outside the destination ('..'); refusing it")
    if member.issym() or member.islnk():
        raise ImnetError(f"{archive}: member {name!r} is a link (to {member.linkname!r}); refusing it")
    if member.isdev() or member.isfifo():
        raise ImnetError(f"{archive}: member {name!r} is a device or fifo; refusing it")
    if not member.isreg():
        raise ImnetError(f"{archive}: member {name!r} is not a regular file; refusing it")
    match = pattern.match(name)
    if match is None:
        raise ImnetError(f"{archive}: unexpected member name {name!r} (expected {pattern.pattern}); refusing it")
    return match


def iter_stream(fileobj, archive: str, pattern: re.Pattern,
                into: Callable[[int], memoryview | None] | None = None) -> Iterator[tuple[re.Match, bytes]]:
    """Yield ``(name match, member bytes)`` for each member of the tar read front to back from
    ``fileobj`` (a :class:`~imnet.prep.checksum.HashingReader`, which seeks forward only, or a
    ``BytesIO``), after :func:`check_member`. A truncated or corrupt archive raises :class:`ImnetError`.

    Member data is read straight from ``fileobj`` (one read per member, not ``extractfile``'s many
    small copies). With ``into``, ``into(size)`` may return a buffer (e.g. shared memory for the
    workers) that the member is read into and which is yielded instead of new bytes.
    """
    try:
        with tarfile.open(fileobj=fileobj, mode="r:") as tar:
            for member in tar:
                match = check_member(member, archive, pattern)
                fileobj.seek(member.offset_data)
                buffer = into(member.size) if into is not None else None
                if buffer is not None:
                    data = buffer
                    got = fileobj.readinto(buffer)
                else:
                    data = fileobj.read(member.size)
                    got = len(data)
                if got != member.size:
                    raise tarfile.ReadError("unexpected end of data")
                yield match, data
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise ImnetError(f"{archive}: truncated or corrupt tar archive ({err}); download it again") from err


def iter_bytes(data: bytes, archive: str, pattern: re.Pattern) -> Iterator[tuple[re.Match, bytes]]:
    """:func:`iter_stream` over a tar held in memory (an inner class tar)."""
    yield from iter_stream(io.BytesIO(data), archive, pattern)
