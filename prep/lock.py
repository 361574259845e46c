"""One writer per tree: the lock ``DST/.imnet-lock`` held for the whole of an ``imnet prep`` or
``imnet verify --write-manifests`` run.

The lock is a POSIX record lock (``fcntl.lockf``) on that file, which names its holder (pid, host,
start time, command) in JSON. The kernel drops the lock when its process dies, however it dies
(``kill -9`` included), so a lock file left behind is not held: the next run takes it over and says
whose it was. A second run while the holder lives exits at once naming the holder and the file.

On NFS, ``lockf`` goes through the NFS lock manager (NLM for NFSv3, part of the protocol for NFSv4),
so runs on different hosts exclude each other too. With a ``nolock`` mount (locks local to each
client) they do not: then run imnet on the tree from one host at a time. If a host dies holding the
lock, the NFS server frees it once that host's lease runs out (NFSv4) or it reboots (NLM).
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from imnet.errors import ImnetError


class LockHeld(ImnetError):
    """Another imnet run holds the tree's lock."""


# Lock files this process holds. POSIX locks belong to the process and go away when it closes *any*
# descriptor of the file, so this process must never open its own lock file again (lock_holder).
_HELD: dict[str, dict] = {}


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot, from /proc), to tell a live holder
    from a new process that reuses a dead holder's pid; None where /proc does not say."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        return fields[19].decode()
    except (OSError, IndexError):
        return None


def _pid_alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return start is None or _process_start(pid) in (None, start)


def describe_holder(holder: dict) -> str:
    """``pid 123 on host h, started 2026-...Z (imnet prep)`` from a lock file's content."""
    if not holder:
        return "a process that has not written its details yet"
    return (f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, started "
            f"{holder.get('started', '?')} ({holder.get('command', 'imnet')})")


def _read(fd: int) -> dict:
    try:
        text = os.pread(fd, 1 << 16, 0).decode("utf-8", "replace")
        holder = json.loads(text) if text.strip() else {}
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}


class TreeLock:
    """``with TreeLock(path, "imnet prep"):`` holds the lock at ``path`` (creating its folder when
    needed, and removing that folder again on release when it is still empty). Raises
    :class:`LockHeld` naming the holder and the file when a live process holds it; takes over (with a
    note on stderr) a lock file left by a process that died."""

    def __init__(self, path: Path, command: str, label: str = ""):
        self.path = Path(path)
        self.command = command
        self.label = f"{label} " if label else ""
        self._fd: int | None = None
        self._made: list[Path] = []
        self.took_over: dict | None = None

    def _make_parent(self) -> None:
        missing = []
        folder = self.path.parent
        while not folder.exists() and folder != folder.parent:
            missing.append(folder)
            folder = folder.parent
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ImnetError(f"{self.label}{self.path.parent} is not writable: {err.strerror or err}") from err
        self._made = missing  # innermost first: removed in this order on release

    def acquire(self) -> "TreeLock":
        self._make_parent()
        for _ in range(50):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as err:
                self._remove_made()
                raise ImnetError(f"{self.path}: cannot create the lock file: {err.strerror or err}") from err
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                holder = _read(fd)
                os.close(fd)
                if err.errno in (errno.EAGAIN, errno.EACCES):
                    raise LockHeld(
                        f"{self.path.parent} is being written by another imnet run: {describe_holder(holder)}; "
                        f"lock file {self.path}. Wait for it to finish; the lock goes away with its process"
                    ) from None
                self._remove_made()
                raise ImnetError(f"{self.path}: cannot lock the tree ({err.strerror or err}); on NFS, mount "
                                 f"with locking (not 'nolock')") from err
            # A releasing holder unlinks the file before it unlocks: if ours is no longer the file
            # at the path, start again on the new one.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            previous = _read(fd)
            if previous and previous.get("host") == socket.gethostname() and isinstance(previous.get("pid"), int) \
                    and previous["pid"] != os.getpid() and _pid_alive(previous["pid"], previous.get("pid_start")):
                os.close(fd)
                raise LockHeld(
                    f"{self.path.parent} is being written by another imnet run: {describe_holder(previous)} "
                    f"(its lock is not enforced on this file system); lock file {self.path}"
                )
            if previous:
                self.took_over = previous
                print(f"imnet: note: {self.path}: taking over the lock left by {describe_holder(previous)}, "
                      f"which is no longer running", file=sys.stderr)
            mine = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                    "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "pid_start": _process_start(os.getpid())}
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, (json.dumps(mine) + "\n").encode(), 0)
            except OSError as err:
                os.close(fd)
                self._remove_made()
                raise ImnetError(f"{self.path}: cannot write the lock file: {err.strerror or err}") from err
            self._fd = fd
            _HELD[os.path.realpath(self.path)] = mine
            return self
        raise ImnetError(f"{self.path}: the lock file keeps being replaced; is another imnet run starting?")

    def _remove_made(self) -> None:
        for folder in self._made:
            try:
                folder.rmdir()
            except OSError:
                break
        self._made = []

    def release(self) -> None:
        """Remove the lock file, then unlock (so a run waiting on the old file starts afresh)."""
        if self._fd is None:
            return
        _HELD.pop(os.path.realpath(self.path), None)
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None
        self._remove_made()

    def __enter__(self) -> "TreeLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def lock_holder(path: Path) -> dict | None:
    """The holder of the lock at ``path`` when a live process holds it, else None. For readers
    (``imnet verify``, the loaders' advice): opens the file read-only and tests it with a shared lock."""
    own = _HELD.get(os.path.realpath(path))
    if own is not None:
        return own
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EAGAIN, errno.EACCES):
                return _read(fd) or {}
            return None
        fcntl.lockf(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
