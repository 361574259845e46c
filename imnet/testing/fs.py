"""Real file systems for fault tests: a small tmpfs mounted for the duration of a test (disk full,
few inodes, read-only), and a process without root's permission override (to get EACCES as root).
Mounting needs root (CI runs as root); :func:`can_mount` says whether it is possible here."""
from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
from pathlib import Path

CAP_DAC_OVERRIDE = 1
PR_CAPBSET_DROP = 24


def can_mount() -> bool:
    """Whether this process may mount a tmpfs (root, with mount(8) on the PATH)."""
    return os.geteuid() == 0 and subprocess.run(["which", "mount"], capture_output=True).returncode == 0


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "4m", nr_inodes: int | None = None, readonly: bool = False):
    """Mount a tmpfs of ``size`` (mount(8) units: 3m, 512k) at ``path`` (created), optionally with
    only ``nr_inodes`` inodes or read-only; unmounted (lazily, if busy) on exit."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    options = [f"size={size}"] + ([f"nr_inodes={nr_inodes}"] if nr_inodes else []) + (["ro"] if readonly else [])
    subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(path)], check=True,
                   capture_output=True)
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def drop_permission_override() -> None:
    """``preexec_fn`` for a child process run as root: drop CAP_DAC_OVERRIDE from its bounding set,
    so the program it executes gets EACCES from permission bits like any user."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    if libc.prctl(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")
