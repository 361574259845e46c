"""MD5 checksums: reading ``md5sum``-format lists, and hashing the very bytes that get extracted.

:class:`HashingReader` wraps an open archive; every byte that ``tarfile`` reads through it is fed to
MD5, and :meth:`HashingReader.drain` reads whatever ``tarfile`` left (the end-of-archive padding) so
the digest covers the whole file. One read pass per archive, no separate checksum pass.
"""
from __future__ import annotations

import hashlib
import queue
import re
import threading
from pathlib import Path
from typing import BinaryIO

from imnet.errors import ImnetError
from imnet.manifests import manifest_path

_LINE = re.compile(r"^([0-9a-fA-F]{32}) [ *](.+)$")
CHUNK = 1 << 20


def read_checksums(path: Path | None = None) -> dict[str, str]:
    """Read an ``md5sum``-format file (``<md5>  <name>`` or ``<md5> *<name>`` per line) into
    ``{file name: lowercase md5}``. ``None`` reads the shipped ``manifests/ILSVRC2012.md5``."""
    path = Path(path) if path is not None else manifest_path("ILSVRC2012.md5")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ImnetError(f"{path}: cannot read the checksum file ({err})") from err
    checksums = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        match = _LINE.match(line.rstrip("\r"))
        if not match:
            raise ImnetError(f"{path}:{number}: not an md5sum line ('<md5>  <file name>'): {line!r}")
        checksums[Path(match.group(2)).name] = match.group(1).lower()
    return checksums


class HashingReader:
    """A read-only file object over ``path`` that MD5-hashes every byte read and calls
    ``on_read(nbytes)`` (e.g. a progress bar's update) as it goes (``algorithm``: another hashlib
    name, e.g. ``"sha256"`` for Hugging Face hub blobs, whose file name is their SHA-256).

    With ``threaded``, hashing runs in a background thread (``hashlib`` releases the GIL), so reading
    and dispatching the next member overlaps hashing the last one. Buffers handed to
    :meth:`readinto` must then stay unchanged until :meth:`wait_hashed` has passed their end.
    """

    def __init__(self, path: Path, on_read=None, threaded: bool = False, algorithm: str = "md5"):
        self.path = Path(path)
        self._file: BinaryIO = open(self.path, "rb")
        self._md5 = hashlib.new(algorithm)
        self._on_read = on_read
        self.bytes_read = 0
        self._hashed = 0
        self._queue: queue.SimpleQueue | None = None
        if threaded:
            self._queue = queue.SimpleQueue()
            self._progress = threading.Condition()
            self._thread = threading.Thread(target=self._hash_loop, name="md5", daemon=True)
            self._thread.start()

    def _hash_loop(self) -> None:
        while True:
            data = self._queue.get()
            if data is None:
                return
            self._md5.update(data)
            with self._progress:
                self._hashed += len(data)
                self._progress.notify_all()

    def _feed(self, data) -> None:
        self.bytes_read += len(data)
        if self._queue is None:
            self._md5.update(data)
            self._hashed = self.bytes_read
        elif len(data):
            self._queue.put(data)
        if self._on_read is not None and len(data):
            self._on_read(len(data))

    def wait_hashed(self, upto: int | None = None) -> None:
        """Block until the first ``upto`` bytes (default: all read so far) are hashed."""
        upto = self.bytes_read if upto is None else upto
        if self._queue is None:
            return
        with self._progress:
            self._progress.wait_for(lambda: self._hashed >= upto)

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size)
        self._feed(data)
        return data

    def readinto(self, buffer: memoryview) -> int:
        """Fill ``buffer`` from the file (fewer bytes only at the end of the file), hashing them."""
        filled = 0
        while filled < len(buffer):
            count = self._file.readinto(buffer[filled:])
            if not count:
                break
            filled += count
        self._feed(buffer[:filled])
        return filled

    def tell(self) -> int:
        return self.bytes_read

    def seek(self, offset: int, whence: int = 0) -> int:
        """Forward seeks only (``tarfile`` skips padding and unread members this way): the skipped
        bytes are read and hashed too, so the digest still covers every byte of the file."""
        target = offset if whence == 0 else self.bytes_read + offset if whence == 1 else None
        if target is None or target < self.bytes_read:
            raise OSError(f"{self.path}: HashingReader reads front to back; cannot seek to {offset} ({whence})")
        while self.bytes_read < target:
            if not self.read(min(CHUNK, target - self.bytes_read)):
                raise EOFError(f"{self.path}: unexpected end of file at byte {self.bytes_read}")
        return self.bytes_read

    def drain(self) -> None:
        """Read (and hash) the rest of the file, e.g. the zero blocks after the end-of-archive marker."""
        while self.read(CHUNK):
            pass

    def hexdigest(self) -> str:
        """The digest (MD5 unless another ``algorithm`` was given) of everything read so far."""
        self.wait_hashed()
        return self._md5.hexdigest()

    def close(self) -> None:
        """Close the file; the hashing thread finishes what is queued and stops."""
        if self._queue is not None:
            self._queue.put(None)
            self._thread.join()
            self._queue = None
        self._file.close()

    def __enter__(self) -> "HashingReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def md5_file(path: Path, on_read=None) -> str:
    """MD5 of a whole file, read in 1 MiB chunks (``imnet prep --reverify``)."""
    with HashingReader(path, on_read) as reader:
        reader.drain()
        return reader.hexdigest()


def check_digest(path: Path, actual: str, expected: str, checksums_file: str) -> None:
    """Raise :class:`ImnetError` naming the archive when its MD5 ``actual`` is not ``expected``."""
    if actual != expected:
        raise ImnetError(
            f"{path}: checksum mismatch: md5 {actual}, expected {expected} (from {checksums_file}); "
            f"the archive is corrupt or incomplete, download it again"
        )
