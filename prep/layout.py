"""Where things live in a prepared tree, and how prep writes files safely.

Layout (DESIGN.md)::

    DST/train/<wnid>/<original name>       DST/meta/classes.tsv
    DST/val/<wnid>/ILSVRC2012_val_X.JPEG   DST/meta/train.txt, val.txt, prep.json
                                           DST/meta/train.sha256, val.sha256 (sha256sum -c format)
    DST/<eval set>/<wnid>/<original name>  DST/meta/<eval set>.txt, <eval set>.sha256 (imnet.prep.sets)
    DST/.imnet-lock                        while an imnet run writes the tree (see ``lock``)

While a split is being prepared, ``DST/meta/.journal-<split>.jsonl`` holds one line per finished
unit (an inner class tar, or a chunk of val images) so that a killed run resumes where it stopped;
the journal goes away once the split's record in ``prep.json`` says it is complete.

Every file prep writes outside the split folders goes through a temp name unique to the process
(``.<name>.<pid>.part``), an fsync and a rename. An ``OSError`` while writing becomes a
:class:`WriteError`: one line naming the file, the cause (ENOSPC, EDQUOT, ENAMETOOLONG, EACCES,
EROFS, EIO...) and what to do.
"""
from __future__ import annotations

import errno
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from imnet.errors import ImnetError
from imnet.prep.sets import EVAL_SET_NAMES

SPLITS = ("train", "val")
# Every folder prep may write besides meta/: the ILSVRC2012 splits and the eval sets (imnet.prep.sets).
ALL_SPLITS = SPLITS + EVAL_SET_NAMES
# Temp files of the atomic writes: ".<name>.<pid>.part" (and the older ".<name>.part").
TEMP_FILE = re.compile(r"^\.(?P<name>.+?)(?:\.(?P<pid>\d+))?\.part$")


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

    @property
    def lock(self) -> Path:
        """``DST/.imnet-lock``: held by the one imnet run writing the tree (prep, verify --write-manifests)."""
        return self.dst / ".imnet-lock"

    def split_dir(self, split: str) -> Path:
        """``DST/<split>``: the ImageFolder tree of one split."""
        return self.dst / split

    def file_list(self, split: str) -> Path:
        """``DST/meta/<split>.txt``: the DALI file_list of one split."""
        return self.meta / f"{split}.txt"

    def hash_list(self, split: str) -> Path:
        """``DST/meta/<split>.sha256``: ``sha256sum -c`` lines of every image, paths relative to DST."""
        return self.meta / f"{split}.sha256"

    def journal(self, split: str) -> Path:
        """``DST/meta/.journal-<split>.jsonl``: finished units while a split is in progress."""
        return self.meta / f".journal-{split}.jsonl"


# --- write errors ---------------------------------------------------------------------------------

_ADVICE = {
    errno.ENOSPC: "free some space (or choose another --dst) and run the same command again: it resumes",
    errno.EDQUOT: "free some of your quota (or choose another --dst) and run the same command again: it resumes",
    errno.ENAMETOOLONG: "the path is longer than the file system allows: choose a shorter --dst",
    errno.EACCES: "make the folder writable for this user (or choose another --dst), then run the same command again",
    errno.EPERM: "make the folder writable for this user (or choose another --dst), then run the same command again",
    errno.EROFS: "the file system is mounted read-only: remount it read-write (or choose another --dst), then run "
                 "the same command again",
    errno.EIO: "the disk or network file system reported an I/O error: check it (dmesg), then run the same command "
               "again",
}


class WriteError(ImnetError):
    """Writing a file of the tree failed (disk full, quota, name too long, permissions, read-only, I/O
    error). What was journaled stays: once the cause is fixed the same command resumes."""


def write_error(path: Path | str, err: OSError) -> WriteError:
    """The one-line :class:`WriteError` for ``err`` raised while writing ``path``."""
    code = err.errno if err.errno is not None else 0
    name = errno.errorcode.get(code, f"errno {code}")
    cause = err.strerror or os.strerror(code) if code else str(err)
    advice = _ADVICE.get(code, "fix the cause and run the same command again")
    return WriteError(f"{path}: cannot write: {cause} ({name}); {advice}")


def temp_path(path: Path) -> Path:
    """The temp name of an atomic write of ``path``, unique to this process."""
    return path.with_name(f".{path.name}.{os.getpid()}.part")


def atomic_write_lines(path: Path, lines, fsync: bool = True) -> None:
    """Write the strings of the iterable ``lines`` to ``path`` through a temp file unique to this
    process and a rename, so a reader (or a later run after a crash) sees the old file or the whole
    new one, never a part; streamed, so a list of a million lines is not joined in memory. An
    ``OSError`` becomes a :class:`WriteError` naming the file, and the temp file is removed."""
    tmp = temp_path(path)
    try:
        with open(tmp, "w", encoding="utf-8", buffering=1 << 20) as handle:
            for line in lines:
                handle.write(line)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise write_error(path, err) from err


def atomic_write_text(path: Path, text: str, fsync: bool = True) -> None:
    """:func:`atomic_write_lines` of one string."""
    atomic_write_lines(path, (text,), fsync=fsync)


def fsync_dir(path: Path) -> None:
    """fsync a folder, so the renames inside it are durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Remove the temp files of atomic writes left in ``folder`` by killed runs (call while holding
    the tree's lock: no other imnet run is writing). Returns what was removed."""
    removed = []
    if not folder.is_dir():
        return removed
    for entry in os.scandir(folder):
        if TEMP_FILE.match(entry.name) and entry.is_file(follow_symlinks=False):
            os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed


# --- the record -------------------------------------------------------------------------------------

def read_journal_lines(path: Path, parse) -> tuple[dict | None, dict]:
    """``(identity, {key: value})`` of a journal: a JSON object naming the input on the first line, then
    a JSON line per finished unit, ``parse(line) -> (key, value)``. ``(None, {})`` when there is none or
    it cannot be read. A line cut short by a kill, or one ``parse`` refuses (ValueError, KeyError,
    TypeError: an older imnet's), is dropped: that unit is done again."""
    done = {}
    try:
        with open(path, encoding="utf-8") as handle:
            try:
                identity = json.loads(handle.readline())
            except ValueError:
                return None, {}
            for line in handle:
                try:
                    key, value = parse(json.loads(line))
                except (ValueError, KeyError, TypeError):
                    continue
                done[key] = value
    except (OSError, UnicodeDecodeError):
        return None, {}
    return (identity, done) if isinstance(identity, dict) else (None, {})


def read_prep_json(layout: TreeLayout) -> dict:
    """The tree's ``prep.json`` as a dict (``{"splits": {}}`` when there is none yet)."""
    if not layout.prep_json.exists():
        return {"splits": {}}
    try:
        record = json.loads(layout.prep_json.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ImnetError(f"{layout.prep_json}: unreadable prep record ({err}); remove it to redo prep") from err
    if not isinstance(record, dict) or not isinstance(record.get("splits", {}), dict):
        raise ImnetError(f"{layout.prep_json}: not a record written by imnet prep (no 'splits' mapping)")
    record.setdefault("splits", {})
    return record


def split_is_complete(record: dict, split: str) -> bool:
    """Whether ``prep.json`` (as read by :func:`read_prep_json`) marks ``split`` as prepared."""
    return bool(record.get("splits", {}).get(split, {}).get("complete"))


# --- disk space -------------------------------------------------------------------------------------

def human_bytes(count: float) -> str:
    """``count`` bytes in binary units, as ``df -h`` shows them: ``512 B``, ``3.0 MiB``, ``137.7 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class FreeSpace:
    """What the file system holding a path has free for an unprivileged user (``statvfs``)."""

    bytes: int
    inodes: int | None  # None: the file system does not count inodes (f_files == 0)
    block: int  # allocation unit: every file takes a whole number of these


def free_space(path: Path) -> FreeSpace:
    """``statvfs`` of ``path`` or of its nearest existing ancestor."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    stat = os.statvfs(probe)
    return FreeSpace(bytes=stat.f_bavail * stat.f_frsize, inodes=stat.f_favail if stat.f_files else None,
                     block=stat.f_frsize or stat.f_bsize or 4096)


def blocks_for(size: int, block: int) -> int:
    """Bytes a file of ``size`` bytes takes on disk: whole blocks (an empty file takes none)."""
    return -(-size // block) * block


def check_disk_space(dst: Path, needed_bytes: int, needed_inodes: int, what: str) -> None:
    """Raise :class:`ImnetError` before anything is written when the file system of ``dst`` has
    fewer than ``needed_bytes`` bytes (already rounded up to its blocks) or ``needed_inodes`` files
    free; ``what`` says what they are for."""
    free = free_space(dst)
    short = []
    if free.bytes < needed_bytes:
        short.append(f"needs {human_bytes(needed_bytes)} ({needed_inodes:,} files in blocks of "
                     f"{human_bytes(free.block)}), {human_bytes(free.bytes)} free")
    if free.inodes is not None and free.inodes < needed_inodes:
        short.append(f"needs {needed_inodes:,} inodes (one per file and folder), {free.inodes:,} free")
    if short:
        raise ImnetError(f"{dst}: not enough disk space for {what}: {'; '.join(short)}; "
                         f"free some space or choose another --dst")


# --- where prep may write -------------------------------------------------------------------------------

def check_src_dst(src: Path, dst: Path) -> None:
    """Refuse a ``dst`` that is ``src``, lies inside it, or holds it (at any depth, through symlinks
    too), and a ``DST/train``, ``DST/val``, ``DST/meta`` or eval-set folder that leads into ``src``: prep never
    modifies ``--src`` and may remove what it wrote under ``--dst``."""
    src_r, dst_r = src.resolve(), dst.resolve()
    if dst_r == src_r or src_r in dst_r.parents:
        raise ImnetError(f"--dst {dst} is inside --src {src}; prep never writes into the archive folder")
    if dst_r in src_r.parents:
        raise ImnetError(f"--src {src} is inside --dst {dst}; prep writes (and, on failure, removes) files under "
                         f"--dst, so the archives must live outside it")
    for name in (*ALL_SPLITS, "meta"):
        sub = dst / name
        if os.path.lexists(sub):
            sub_r = sub.resolve()
            if sub_r == src_r or src_r in sub_r.parents or sub_r in src_r.parents:
                raise ImnetError(f"{sub} leads to {sub_r}, which is or holds --src {src}; prep never writes "
                                 f"into the archive folder")


def ensure_writable_dir(dst: Path) -> None:
    """Create ``dst`` (and ``dst/meta``) or raise :class:`ImnetError` saying why it cannot be written."""
    try:
        (dst / "meta").mkdir(parents=True, exist_ok=True)
        probe = dst / "meta" / f".write-test.{os.getpid()}.part"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ImnetError(f"--dst {dst} is not writable: {err.strerror or err}") from err
