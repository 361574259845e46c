"""imnet prep on a real user's disk: it writes only where it owns the files, one run per tree at a
time (two real prep processes), write errors from real file systems (a small tmpfs when root) as one
line and a resumable tree, the space check in blocks and inodes, SIGTERM, and archives that are not
the recorded ones."""
import errno
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from imnet.errors import ImnetError
from imnet.prep import prepare, verify_tree
from imnet.prep.layout import temp_path, write_error
from imnet.testing import fake_ilsvrc
from imnet.testing.fake import add_bytes, write_checksums
from imnet.testing.fs import can_mount, drop_permission_override, tmpfs

SMALL = dict(classes=4, train_per_class=3, val=8, image_size=(24, 24))
needs_root = pytest.mark.skipif(not can_mount(), reason="mounting a tmpfs needs root")


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    return fake_ilsvrc(tmp_path_factory.mktemp("src"), **SMALL)


@pytest.fixture(scope="module")
def clean(fake, tmp_path_factory):
    dst = tmp_path_factory.mktemp("clean") / "data"
    prepare(fake.root, dst, checksums=fake.checksums, workers=1, progress=False)
    return dst


def prep_cmd(src, dst, checksums, *extra):
    return [sys.executable, "-m", "imnet", "prep", "--src", str(src), "--dst", str(dst),
            "--checksums", str(checksums), *extra]


def run_prep(fake, dst, *extra, env=None, **kw):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("IMNET_PREP_")}
    environment.update(env or {})
    return subprocess.run(prep_cmd(fake.root, dst, fake.checksums, *extra), capture_output=True, text=True,
                          env=environment, **kw)


def error_line(result) -> str:
    """The last stderr line (after any progress bar), which must be imnet's one-line error."""
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().replace("\r", "\n").splitlines()[-1]
    assert last.startswith("imnet: error: "), result.stderr
    return last


def snapshot(root: Path) -> dict:
    """Every path under ``root`` -> md5 of the file (None for folders)."""
    out = {}
    for path in sorted(root.rglob("*")):
        out[str(path.relative_to(root))] = None if path.is_dir() else hashlib.md5(path.read_bytes()).hexdigest()
    return out


def same_content(dst: Path, reference: Path) -> None:
    """The tree holds the same files and bytes as the reference (prep.json compared without timings)."""
    a, b = snapshot(dst), snapshot(reference)
    for digest in (a, b):
        digest.pop("meta/prep.json", None)
    assert a == b
    ra, rb = (json.loads((t / "meta" / "prep.json").read_text()) for t in (dst, reference))
    for record in (ra, rb):
        for split in record["splits"].values():
            for key in ("started", "finished", "seconds", "workers", "created_dir"):
                split.pop(key, None)
    assert ra == rb


def wait_stopped(process: subprocess.Popen, timeout: float = 60) -> None:
    """Wait until ``process`` has stopped itself (SIGSTOP at an IMNET_PREP_STOP_AT point)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert process.poll() is None, process.communicate()
        with open(f"/proc/{process.pid}/stat") as handle:
            if handle.read().rsplit(")", 1)[1].split()[0] == "T":
                return
        time.sleep(0.02)
    raise AssertionError("prep did not reach its stop point")


# --- ownership ------------------------------------------------------------------------------------

@pytest.mark.parametrize("planted", [
    "train/my_experiment.py", "val/results.csv", "meta/train.txt", "meta/notes.txt",
    "train/n00000001/notes.txt", "val/n01739381/ILSVRC2012_val_00000001.JPEG",  # a torchvision-made tree
])
def test_foreign_files_are_refused_before_anything_is_written(fake, tmp_path, planted):
    dst = tmp_path / "data"
    (dst / planted).parent.mkdir(parents=True)
    (dst / planted).write_text("the user's own file\n")
    before = snapshot(dst)
    result = run_prep(fake, dst)
    assert result.returncode == 2
    line = error_line(result)
    assert f"{dst / planted} " in line or f"{dst / Path(planted).parent} " in line
    assert "choose another --dst" in line
    assert snapshot(dst) == before  # nothing written, nothing removed (no lock file left either)


def test_foreign_file_in_a_prepared_tree_is_refused_even_with_redo(fake, clean, tmp_path):
    dst = tmp_path / "data"
    shutil.copytree(clean, dst)
    wnid = fake.wnids[0]
    (dst / "train" / wnid / "notes.txt").write_text("mine")
    (dst / "val" / fake.wnids[1] / "ILSVRC2012_val_00000001.JPEG").unlink(missing_ok=True)
    before = snapshot(dst)
    for extra in ((), ("--redo",)):
        result = run_prep(fake, dst, *extra)
        assert result.returncode == 2 and str(dst / "train" / wnid / "notes.txt") in error_line(result)
    assert snapshot(dst) == before


def test_failed_split_under_a_symlinked_train_leaves_nothing_behind(fake, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(fake.root, src)
    data = (src / "ILSVRC2012_img_train.tar").read_bytes()
    (src / "ILSVRC2012_img_train.tar").write_bytes(data[: len(data) * 3 // 4])  # truncated
    write_checksums(src / "checksums.md5", [src / n for n in ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar",
                                                              "ILSVRC2012_devkit_t12.tar.gz")])
    other_disk = tmp_path / "other_disk" / "train"
    other_disk.mkdir(parents=True)
    dst = tmp_path / "data"
    dst.mkdir()
    (dst / "train").symlink_to(other_disk)
    with pytest.raises(ImnetError, match="truncated or corrupt.*nothing of the train split was kept"):
        prepare(src, dst, checksums=src / "checksums.md5", only="train", workers=2, progress=False)
    assert (dst / "train").is_symlink() and other_disk.is_dir()
    assert list(other_disk.iterdir()) == []  # the class folders and images prep wrote there are gone


@pytest.mark.parametrize("where", ["dst/train", "dst/deeper/still/src", "symlink-into-dst", "train-link-to-src"])
def test_src_inside_dst_is_refused(fake, tmp_path, where):
    dst = tmp_path / "X"
    if where == "symlink-into-dst":
        real = dst / "stash"
        src = tmp_path / "archives"
        real.parent.mkdir(parents=True)
        shutil.copytree(fake.root, real)
        src.symlink_to(real)
    elif where == "train-link-to-src":
        src = tmp_path / "archives"
        shutil.copytree(fake.root, src)
        dst.mkdir()
        (dst / "train").symlink_to(src)
    else:
        src = tmp_path / where.replace("dst", "X")
        shutil.copytree(fake.root, src)
    before = snapshot(src.resolve())
    with pytest.raises(ImnetError, match=r"inside --dst|leads to .* --src"):
        prepare(src, dst, checksums=src / "checksums.md5", progress=False)
    assert snapshot(src.resolve()) == before


# --- one run per tree -----------------------------------------------------------------------------------

def test_second_prep_exits_at_once_naming_the_holder_then_the_first_finishes(fake, clean, tmp_path):
    dst = tmp_path / "data"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("IMNET_PREP_")}
    first = subprocess.Popen(prep_cmd(fake.root, dst, fake.checksums, "--workers", "2"),
                             env=dict(environment, IMNET_PREP_STOP_AT="locked"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_stopped(first)
        holder = json.loads((dst / ".imnet-lock").read_text())
        assert holder["pid"] == first.pid and holder["host"] == socket.gethostname()
        started = time.monotonic()
        second = run_prep(fake, dst, timeout=60)
        assert time.monotonic() - started < 30  # at once, not after waiting for the first
        assert second.returncode == 2
        line = error_line(second)
        assert f"pid {first.pid} on host {socket.gethostname()}, started {holder['started']}" in line
        assert f"lock file {dst / '.imnet-lock'}" in line
    finally:
        first.send_signal(signal.SIGCONT)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    same_content(dst, clean)  # one writer: the tree is the clean one, lock file gone


def test_lock_left_by_a_killed_prep_is_taken_over_with_a_note(fake, clean, tmp_path):
    dst = tmp_path / "data"
    killed = run_prep(fake, dst, env={"IMNET_PREP_CRASH_AT": "train:unit:1"})
    assert killed.returncode == -signal.SIGKILL
    dead = json.loads((dst / ".imnet-lock").read_text())
    resumed = run_prep(fake, dst)
    assert resumed.returncode == 0, resumed.stderr
    assert f"taking over the lock left by pid {dead['pid']} on host {dead['host']}" in resumed.stderr
    assert "no longer running" in resumed.stderr
    same_content(dst, clean)


def test_verify_write_manifests_takes_the_same_lock(fake, tmp_path):
    dst = tmp_path / "data"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("IMNET_PREP_")}
    first = subprocess.Popen(prep_cmd(fake.root, dst, fake.checksums), env=dict(environment, IMNET_PREP_STOP_AT="locked"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_stopped(first)
        verify = subprocess.run([sys.executable, "-m", "imnet", "verify", "--data", str(dst), "--write-manifests"],
                                capture_output=True, text=True, timeout=60)
        assert verify.returncode == 2 and f"pid {first.pid}" in error_line(verify)
    finally:
        first.send_signal(signal.SIGCONT)
    assert first.wait(timeout=120) == 0


def test_temp_names_are_unique_per_process_and_stale_ones_are_removed(fake, clean, tmp_path):
    assert str(os.getpid()) in temp_path(tmp_path / "prep.json").name
    dst = tmp_path / "data"
    killed = run_prep(fake, dst, env={"IMNET_PREP_CRASH_AT": "train:record-temp"})
    assert killed.returncode == -signal.SIGKILL
    left = [p.name for p in (dst / "meta").iterdir() if p.name.endswith(".part")]
    assert left and all(str(json.loads((dst / ".imnet-lock").read_text())["pid"]) in name for name in left)
    assert run_prep(fake, dst).returncode == 0
    same_content(dst, clean)  # the stale temp file is gone


# --- write errors -------------------------------------------------------------------------------------

def test_write_error_text_names_file_cause_and_advice():
    error = write_error(Path("/d/train/x.JPEG"), OSError(errno.EDQUOT, os.strerror(errno.EDQUOT)))
    assert str(error).startswith("/d/train/x.JPEG: cannot write: Disk quota exceeded (EDQUOT); free some of your quota")


@needs_root
def test_disk_full_during_prep_is_one_line_then_resumes(tmp_path):
    fake = fake_ilsvrc(tmp_path / "src", classes=6, train_per_class=20, val=40, image_size=(64, 48))
    clean = tmp_path / "clean"
    prepare(fake.root, clean, checksums=fake.checksums, workers=1, progress=False)
    with tmpfs(tmp_path / "disk", size="6m") as disk:
        dst = disk / "data"
        environment = {k: v for k, v in os.environ.items() if not k.startswith("IMNET_PREP_")}
        process = subprocess.Popen(prep_cmd(fake.root, dst, fake.checksums, "--workers", "2"),
                                   env=dict(environment, IMNET_PREP_STOP_AT="space-checked"),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_stopped(process)
            free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
            with open(disk / "filler", "wb") as handle:  # leave room for a few images only
                handle.write(b"\0" * (free - 96 * 1024))
        finally:
            process.send_signal(signal.SIGCONT)
        _, err = process.communicate(timeout=120)
        assert process.returncode == 2
        line = error_line(subprocess.CompletedProcess([], 2, "", err))
        assert "cannot write: No space left on device (ENOSPC)" in line and str(dst) in line
        assert "run the same command again: it resumes" in line
        record = dst / "meta" / "prep.json"
        assert not record.exists() or not json.loads(record.read_text())["splits"].get("train", {}).get("complete")
        assert not (dst / "meta" / "train.txt").exists()
        (disk / "filler").unlink()
        resumed = run_prep(fake, dst)
        assert resumed.returncode == 0, resumed.stderr
        same_content(dst, clean)


@needs_root
def test_space_check_counts_blocks_per_file_and_says_it_in_human_units(tmp_path):
    # The case: 1,500 small images hold ~1 MB but take a 4 KiB page each on a tmpfs.
    fake = fake_ilsvrc(tmp_path / "src", classes=10, train_per_class=140, val=100, image_size=(16, 16),
                       quirks=False)
    with tmpfs(tmp_path / "disk", size="3m") as disk:
        result = run_prep(fake, disk / "data")
        assert result.returncode == 2
        line = error_line(result)
        assert "not enough disk space for train and val: needs" in line and "MiB" in line
        assert "3.0 MiB free" in line and "0.00 GB" not in line
        assert not (disk / "data").exists()


@needs_root
def test_space_check_counts_free_inodes(fake, tmp_path):
    with tmpfs(tmp_path / "disk", size="64m", nr_inodes=12) as disk:
        result = run_prep(fake, disk / "data")
        assert result.returncode == 2
        assert "inodes (one per file and folder)" in error_line(result)


def test_name_too_long_is_one_line(fake, tmp_path):
    dst = tmp_path
    while len(str(dst)) < 4055 - 201:
        dst = dst / ("d" * 200)
    dst = dst / ("e" * (4055 - len(str(dst)) - 1))
    assert len(str(dst)) == 4055
    dst.mkdir(parents=True)
    result = run_prep(fake, dst, "--only", "val")
    assert result.returncode == 2
    line = error_line(result)
    assert "cannot write: File name too long (ENAMETOOLONG); the path is longer than the file system allows" in line
    assert "/val/n" in line  # a writer process's image, named


def test_permission_denied_is_one_line_then_resumes(fake, clean, tmp_path):
    dst = tmp_path / "data"
    (dst / "val").mkdir(parents=True)
    (dst / "val").chmod(0o555)
    preexec = drop_permission_override if os.geteuid() == 0 else None
    result = run_prep(fake, dst, "--only", "val", preexec_fn=preexec)
    assert result.returncode == 2
    line = error_line(result)
    assert "cannot write: Permission denied (EACCES)" in line and str(dst / "val") in line
    (dst / "val").chmod(0o755)
    assert run_prep(fake, dst, "--only", "val").returncode == 0
    assert run_prep(fake, dst).returncode == 0
    same_content(dst, clean)


@needs_root
def test_read_only_file_system_is_one_line_then_resumes(fake, clean, tmp_path):
    dst = tmp_path / "data"
    with tmpfs(dst / "val", size="1m", readonly=True):
        result = run_prep(fake, dst, "--only", "val")
        assert result.returncode == 2
        assert "cannot write: Read-only file system (EROFS)" in error_line(result)
    assert run_prep(fake, dst).returncode == 0
    same_content(dst, clean)


@pytest.mark.parametrize("code", ["EIO", "EDQUOT"])
def test_io_error_and_quota_in_a_writer_process_then_resume(fake, clean, tmp_path, code):
    """No real file system here can fail with EIO or EDQUOT on demand: the writer processes' test hook
    makes their 5th image write fail with it; everything after is the real error path."""
    dst = tmp_path / "data"
    result = run_prep(fake, dst, "--workers", "2", env={"IMNET_PREP_FAULT": f"{code}:5"})
    assert result.returncode == 2
    line = error_line(result)
    assert f"({code})" in line and str(dst) in line and "kept in" in line
    assert not (dst / "meta" / "train.txt").exists()
    resumed = run_prep(fake, dst, "--workers", "2")
    assert resumed.returncode == 0, resumed.stderr
    same_content(dst, clean)


# --- SIGTERM, archives --------------------------------------------------------------------------------

def test_sigterm_ends_prep_saying_how_to_resume(fake, clean, tmp_path):
    dst = tmp_path / "data"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("IMNET_PREP_")}
    process = subprocess.Popen(prep_cmd(fake.root, dst, fake.checksums, "--workers", "2"),
                               env=dict(environment, IMNET_PREP_STOP_AT="train:unit:1"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_stopped(process)
    process.send_signal(signal.SIGTERM)
    process.send_signal(signal.SIGCONT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM
    line = error_line(subprocess.CompletedProcess([], 2, "", err))
    assert "terminated by SIGTERM while preparing the train split" in line
    assert "run the same command again to resume" in line and ".journal-train.jsonl" in line
    assert run_prep(fake, dst).returncode == 0
    same_content(dst, clean)


@pytest.mark.parametrize("which", ["ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar",
                                   "ILSVRC2012_devkit_t12.tar.gz"])
def test_a_folder_where_an_archive_should_be(fake, tmp_path, which):
    src = tmp_path / "src"
    shutil.copytree(fake.root, src)
    (src / which).unlink()
    (src / which).mkdir()
    with pytest.raises(ImnetError, match=rf"{which} is a folder, not the archive file"):
        prepare(src, tmp_path / "data", checksums=src / "checksums.md5", progress=False)
    assert not (tmp_path / "data").exists()


def test_other_archives_than_the_recorded_ones_are_refused_then_redone(fake, clean, tmp_path):
    other = fake_ilsvrc(tmp_path / "other", **dict(SMALL, seed=7))
    dst = tmp_path / "data"
    shutil.copytree(clean, dst)
    before = snapshot(dst)
    with pytest.raises(ImnetError, match=r"gives md5 .* but the train split was prepared from an archive of md5 "
                                         r".*a different archive.*--redo"):
        prepare(other.root, dst, checksums=other.checksums, progress=False)
    assert snapshot(dst) == before
    summary = prepare(other.root, dst, checksums=other.checksums, redo=True, progress=False)
    assert {s["status"] for s in summary["splits"].values()} == {"prepared"}
    reference = tmp_path / "reference"
    prepare(other.root, reference, checksums=other.checksums, progress=False)
    same_content(dst, reference)
    assert verify_tree(dst, hashes=True, progress=False).ok


def _train_tar_with_empty_class(src: Path, wnid: str) -> None:
    with tarfile.open(src / "ILSVRC2012_img_train.tar") as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar]
    empty = io.BytesIO()
    tarfile.open(fileobj=empty, mode="w", format=tarfile.USTAR_FORMAT).close()
    with tarfile.open(src / "ILSVRC2012_img_train.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
        for member, content in members:
            add_bytes(tar, member.name, empty.getvalue() if member.name == f"{wnid}.tar" else content)


def test_class_tar_with_no_images_is_an_error_naming_it(fake, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(fake.root, src)
    _train_tar_with_empty_class(src, fake.wnids[2])
    write_checksums(src / "checksums.md5", [src / n for n in ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar",
                                                              "ILSVRC2012_devkit_t12.tar.gz")])
    with pytest.raises(ImnetError, match=rf"img_train.tar:{fake.wnids[2]}.tar holds no images"):
        prepare(src, tmp_path / "data", checksums=src / "checksums.md5", only="train", workers=2, progress=False)
    assert not (tmp_path / "data" / "train").exists()


def test_official_archive_class_counts_come_from_the_official_devkit(fake, tmp_path, monkeypatch):
    """For the official train archive every class must hold the devkit's num_train_images (they sum to
    the manifest's 1,281,167). The shipped manifest is replaced by one that calls this fake official."""
    import imnet.prep.pipeline as pipeline
    from imnet.testing.fake import add_to_class_tar, md5_of

    src = tmp_path / "src"
    shutil.copytree(fake.root, src)
    add_to_class_tar(src / "ILSVRC2012_img_train.tar", fake.wnids[1], f"{fake.wnids[1]}_99999.JPEG",
                     (src / "ILSVRC2012_img_val.tar").read_bytes()[512:1024])
    train = src / "ILSVRC2012_img_train.tar"
    write_checksums(src / "checksums.md5", [train, src / "ILSVRC2012_img_val.tar", src / "ILSVRC2012_devkit_t12.tar.gz"])
    official = {train.name: {"split": "train", "md5": md5_of(train), "bytes": train.stat().st_size,
                             "images": SMALL["classes"] * SMALL["train_per_class"], "classes": SMALL["classes"]}}
    monkeypatch.setattr(pipeline, "official_archives", lambda: official)
    with pytest.raises(ImnetError, match=rf"{fake.wnids[1]}.tar holds 4 images; the official archive has 3 in this "
                                         rf"class \(num_train_images of ILSVRC2012_devkit_t12.tar.gz\)"):
        prepare(src, tmp_path / "data", checksums=src / "checksums.md5", only="train", workers=1, progress=False)
