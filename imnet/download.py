"""Fetching one official file into a cache: offline switches, the mirror setting, resumable and
verified downloads, and failures that say what went wrong in a few words.

- Offline: ``IMNET_OFFLINE`` or ``HF_HUB_OFFLINE`` set to 1/true/yes/on means no network access at
  all (:func:`offline_reason`); a mirror that is a local folder still works.
- Mirror: ``IMNET_WEIGHTS_MIRROR`` is a URL (``http(s)://...``) or a folder under which every official
  file is looked up by its file name (Hugging Face hub files by ``<hub id>/<file>``); when set, the
  mirror is the only place files come from. A ``SHA256SUMS`` file at the mirror's root (``sha256sum``
  format, paths relative to the root) is used to check files that carry no hash of their own.
- Downloads (:func:`fetch_url`) go through huggingface_hub's ``http_get`` (HTTP Range resume, retries
  of cut connections, a tqdm bar): torch.hub's ``download_url_to_file`` writes a random temp name and
  cannot resume. The part already fetched is kept as ``<file>.imnet-partial`` (one writer at a time,
  by an ``flock`` on ``.locks/<file>.lock`` that dies with its process), so a later run continues it;
  the file gets its final name only after its checks pass. A file failing them is deleted.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

from tqdm import tqdm

from imnet.errors import ImnetError

OFFLINE_VARS = ("IMNET_OFFLINE", "HF_HUB_OFFLINE")
MIRROR_VAR = "IMNET_WEIGHTS_MIRROR"
MIRROR_SUMS = "SHA256SUMS"
PARTIAL_SUFFIX = ".imnet-partial"
# A host that refused or timed out is not asked again for this long (one failure per host and run,
# not one per model of the zoo).
UNREACHABLE_MEMORY_S = 300.0
_TRUE = {"1", "true", "yes", "on"}


class DownloadError(ImnetError):
    """A file could not be fetched or failed its checks. ``kind`` is a short group label for
    summaries ("not found (HTTP 404)", "connection refused", "hash mismatch", "offline", ...)."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Expected:
    """What a fetched file must be: a full SHA-256 or a prefix of it (torch hub's ``-<hex>.`` file
    name convention), an MD5, a size in bytes. None: not checked."""

    sha256: str | None = None
    sha256_prefix: str | None = None
    md5: str | None = None
    size: int | None = None

    @property
    def verifiable(self) -> bool:
        return any(v is not None for v in (self.sha256, self.sha256_prefix, self.md5))


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in _TRUE


def offline_reason() -> str | None:
    """``"IMNET_OFFLINE=1"`` (or the HF variable) when network access is switched off, else None."""
    for var in OFFLINE_VARS:
        if _truthy(os.environ.get(var)):
            return f"{var}={os.environ[var]}"
    return None


def mirror() -> str | None:
    """The value of ``$IMNET_WEIGHTS_MIRROR`` (a URL or a folder), or None."""
    value = (os.environ.get(MIRROR_VAR) or "").strip()
    return value or None


def mirror_is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


def mirror_location(value: str, relative: str) -> str:
    """Where ``relative`` (a file name, or ``<hub id>/<file>``) is under the mirror ``value``."""
    if mirror_is_url(value):
        return value.rstrip("/") + "/" + relative
    base = value[len("file://"):] if value.startswith("file://") else value
    return str(Path(base).expanduser() / relative)


# --- checks ---------------------------------------------------------------------------------------

def file_digests(path: Path) -> tuple[str, str]:
    """(sha256, md5) hex digests of a file, read once."""
    sha, md5 = hashlib.sha256(), hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
            md5.update(chunk)
    return sha.hexdigest(), md5.hexdigest()


def check_file(path: Path, expected: Expected) -> str | None:
    """None when ``path`` meets ``expected``, else what is wrong (one phrase)."""
    size = path.stat().st_size
    if expected.size is not None and size != expected.size:
        return f"size {size:,} bytes, expected {expected.size:,}"
    if not expected.verifiable:
        return None
    sha, md5 = file_digests(path)
    if expected.sha256 is not None and sha != expected.sha256.lower():
        return f"SHA-256 {sha}, expected {expected.sha256.lower()}"
    if expected.sha256_prefix is not None and not sha.startswith(expected.sha256_prefix.lower()):
        return f"SHA-256 {sha[:16]}..., its file name says {expected.sha256_prefix}..."
    if expected.md5 is not None and md5 != expected.md5.lower():
        return f"MD5 {md5}, expected {expected.md5.lower()}"
    return None


def mirror_sha256(value: str, relative: str) -> str | None:
    """The SHA-256 the mirror's ``SHA256SUMS`` lists for ``relative`` (read from a mirror folder;
    a URL mirror's list is fetched once per process), or None."""
    sums = _mirror_sums(value)
    return sums.get(relative.lstrip("./"))


_SUMS_CACHE: dict[str, dict[str, str]] = {}


def _mirror_sums(value: str) -> dict[str, str]:
    if value in _SUMS_CACHE:
        return _SUMS_CACHE[value]
    text = ""
    location = mirror_location(value, MIRROR_SUMS)
    if mirror_is_url(value):
        if offline_reason() is None:
            import io

            from huggingface_hub.file_download import http_get

            buffer = io.BytesIO()
            try:
                http_get(location, buffer, tqdm_class=bar_class(False))
                text = buffer.getvalue().decode("utf-8", "replace")
            except Exception:  # no list on the mirror: files are checked by their own hashes only
                text = ""
    elif Path(location).is_file():
        text = Path(location).read_text(encoding="utf-8", errors="replace")
    sums = {}
    for line in text.splitlines():
        parts = line.strip().split(maxsplit=1)
        if len(parts) == 2 and len(parts[0]) == 64:
            sums[parts[1].lstrip("*").lstrip("./")] = parts[0].lower()
    _SUMS_CACHE[value] = sums
    return sums


# --- errors in a few words ------------------------------------------------------------------------

def _status_code(err: BaseException) -> int | None:
    response = getattr(err, "response", None)
    return getattr(response, "status_code", None)


def describe_failure(err: BaseException) -> tuple[str, str]:
    """(kind, detail) for an exception raised while downloading (httpx / huggingface_hub / OS),
    looking through its causes: "not found (HTTP 404)", "connection refused", "timed out", ..."""
    seen: list[BaseException] = []
    cur: BaseException | None = err
    while cur is not None and cur not in seen:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    for e in seen:
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return "disk full", f"no space left on the device ({e.filename or 'the cache'})"
        code = _status_code(e)
        if code is not None:
            phrase = {401: "unauthorized", 403: "forbidden", 404: "not found"}.get(code, "HTTP error")
            return f"{phrase} (HTTP {code})", f"HTTP {code}"
    names = [type(e).__name__ for e in seen]
    text = " ".join(str(e) for e in seen).lower()
    if "refused" in text:
        return "connection refused", "connection refused"
    if any("Timeout" in n for n in names) or "timed out" in text:
        return "timed out", "timed out"
    if any(n in ("ConnectError", "NetworkError") for n in names) or "name or service not known" in text:
        return "cannot connect", str(seen[-1]).splitlines()[0][:120] if str(seen[-1]) else "cannot connect"
    if any(n in ("RemoteProtocolError", "ReadError") for n in names):
        return "connection cut", str(seen[-1]).splitlines()[0][:120]
    if "consistency check failed" in text:
        return "incomplete download", str(err).splitlines()[0][:160]
    first = str(err).splitlines()[0] if str(err) else type(err).__name__
    return type(err).__name__, first[:160]


_UNREACHABLE: dict[str, tuple[float, str, str]] = {}


def _host(url: str) -> str:
    return urlsplit(url).netloc


def remember_unreachable(url: str, kind: str, detail: str) -> None:
    """Note that ``url``'s host failed to connect, so other files on it are not tried for a while."""
    if kind in ("connection refused", "timed out", "cannot connect"):
        _UNREACHABLE[_host(url)] = (time.monotonic(), kind, detail)


def check_reachable(url: str) -> None:
    """:class:`DownloadError` when ``url``'s host failed to connect in the last few minutes."""
    found = _UNREACHABLE.get(_host(url))
    if found is not None and time.monotonic() - found[0] < UNREACHABLE_MEMORY_S:
        raise DownloadError(f"{url}: not tried, {_host(url)} failed a moment ago ({found[2]})", found[1])


def forget_unreachable() -> None:
    """Forget every host failure (tests; a long-lived process after the network came back)."""
    _UNREACHABLE.clear()


# --- fetching -------------------------------------------------------------------------------------

def bar_class(progress: bool) -> type[tqdm]:
    """A tqdm class for huggingface_hub's downloaders: bytes, to stderr, shown or not."""

    class Bar(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs.setdefault("file", sys.stderr)
            kwargs.setdefault("unit_divisor", 1024)
            kwargs["disable"] = not progress
            super().__init__(*args, **kwargs)

    return Bar


@contextmanager
def file_lock(target: Path, echo=None) -> Iterator[None]:
    """Hold ``<folder>/.locks/<name>.lock`` exclusively (flock: released when this process ends,
    however it ends). Says so on ``echo`` when another process holds it and this one waits."""
    lock_dir = target.parent / ".locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_dir / f"{target.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if echo is not None:
                echo(f"imnet: waiting for another process fetching {target.name}")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _finish(partial: Path, target: Path, expected: Expected, source: str) -> Path:
    problem = check_file(partial, expected)
    if problem is not None:
        partial.unlink(missing_ok=True)
        raise DownloadError(f"{source}: {problem}; the download was deleted", "hash mismatch"
                            if "SHA-256" in problem or "MD5" in problem else "size mismatch")
    with open(partial, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(partial, target)
    return target


def fetch_url(url: str, target: Path, expected: Expected = Expected(), *, desc: str | None = None,
              progress: bool = True, echo=None) -> Path:
    """Download ``url`` to ``target`` (resuming ``<target>.imnet-partial`` when one is there), check
    it against ``expected`` and give it its final name; returns ``target``. A ``target`` already
    present is returned as it is. :class:`DownloadError` (with a ``kind``) when offline, when the
    host is unreachable, on an HTTP error or a failed check; a file failing its check is deleted, a
    cut transfer keeps its partial file for the next run."""
    reason = offline_reason()
    if reason is not None:
        raise DownloadError(f"{url}: not fetched, network access is off ({reason})", "offline")
    check_reachable(url)
    from huggingface_hub.file_download import http_get

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + PARTIAL_SUFFIX)
    with file_lock(target, echo):
        if target.is_file():  # another process finished it while this one waited
            return target
        for attempt in range(2):
            try:
                with open(partial, "ab") as f:
                    resume = f.tell()
                    http_get(url, f, resume_size=resume, displayed_filename=desc or target.name,
                             tqdm_class=bar_class(progress))
                break
            except Exception as err:
                if _status_code(err) == 416 and attempt == 0:
                    # The partial file is already whole (a run stopped before renaming it): keep it
                    # if it passes its checks, else fetch it again from the start.
                    if expected.verifiable and check_file(partial, expected) is None:
                        break
                    partial.unlink(missing_ok=True)
                    continue
                _raise_fetch_error(err, url, partial)
        return _finish(partial, target, expected, url)


def _raise_fetch_error(err: Exception, url: str, partial: Path) -> None:
    kind, detail = describe_failure(err)
    remember_unreachable(url, kind, detail)
    if partial.is_file() and partial.stat().st_size == 0:
        partial.unlink()
    kept = (f"; {partial.stat().st_size:,} bytes kept in {partial.name} for the next run"
            if partial.is_file() else "")
    raise DownloadError(f"{url}: {detail}{kept}", kind) from None


def copy_file(source: Path, target: Path, expected: Expected = Expected(), *, desc: str | None = None,
              progress: bool = True, echo=None) -> Path:
    """Copy ``source`` (a file in a mirror folder) to ``target`` the way :func:`fetch_url` downloads:
    resumable partial file, checks, final name last. :class:`DownloadError` when it is missing."""
    if not source.is_file():
        raise DownloadError(f"{source}: not in the mirror folder", "not on the mirror")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + PARTIAL_SUFFIX)
    with file_lock(target, echo):
        if target.is_file():
            return target
        total = source.stat().st_size
        with open(source, "rb") as src, open(partial, "ab") as dst:
            done = dst.tell()
            if done > total:  # a partial of another file: start again
                dst.truncate(0)
                done = 0
            src.seek(done)
            with bar_class(progress)(total=total, initial=done, unit="B", unit_scale=True,
                                      desc=desc or target.name) as bar:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
                    bar.update(len(chunk))
        return _finish(partial, target, expected, str(source))


def fetch_to(location: str, target: Path, expected: Expected = Expected(), **kwargs) -> Path:
    """:func:`fetch_url` for a URL, :func:`copy_file` for a path."""
    if mirror_is_url(location):
        return fetch_url(location, target, expected, **kwargs)
    return copy_file(Path(location), target, expected, **kwargs)


def remove_quietly(path: Path) -> None:
    """Delete a file or a symlink, or a folder tree, if there."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
