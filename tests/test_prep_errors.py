"""Bad input to imnet prep: each case a clear one-line error naming the file, a non-zero exit, and
nothing half-done that looks prepared."""
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
from collections import namedtuple

import numpy as np
import pytest
import scipy.io

from imnet.errors import ImnetError
from imnet.prep import prepare
from imnet.testing import fake_ilsvrc
from imnet.testing.fake import add_bytes, add_to_class_tar, meta_mat_bytes, write_checksums, write_devkit
from imnet.testing.fs import can_mount, tmpfs

SMALL = dict(classes=4, train_per_class=3, val=8, image_size=(24, 24))
Src = namedtuple("Src", "root train val devkit checksums fake")


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    return fake_ilsvrc(tmp_path_factory.mktemp("src"), **SMALL)


@pytest.fixture
def src(fake, tmp_path):
    """A private copy of the fake archives, to be damaged by the test."""
    root = tmp_path / "src"
    shutil.copytree(fake.root, root)
    return Src(root, root / fake.train_tar.name, root / fake.val_tar.name, root / fake.devkit.name,
               root / "checksums.md5", fake)


def rechecksum(src: Src) -> None:
    write_checksums(src.checksums, [src.train, src.val, src.devkit])


def rewrite_val(src: Src, extra: tarfile.TarInfo, data: bytes = b"") -> None:
    """Rewrite the val tar with one more member (e.g. a link or a '..' name) in the middle."""
    with tarfile.open(src.val) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar]
    with tarfile.open(src.val, "w", format=tarfile.GNU_FORMAT) as tar:
        for i, (member, content) in enumerate(members):
            if i == 2:
                tar.addfile(extra, io.BytesIO(data) if extra.isreg() else None)
            tar.addfile(member, io.BytesIO(content))
    rechecksum(src)


def run(src: Src, dst, **kw):
    return prepare(src.root, dst, checksums=src.checksums, progress=False, **kw)


def assert_nothing_prepared(dst, split):
    record = dst / "meta" / "prep.json"
    if record.exists():
        assert split not in json.loads(record.read_text())["splits"]
    assert not (dst / split).exists()
    assert not (dst / "meta" / f"{split}.txt").exists()
    assert not (dst / "meta" / f".journal-{split}.jsonl").exists()


def test_wrong_checksum(src, tmp_path):
    text = src.checksums.read_text().splitlines()
    text = [("0" * 32 + line[32:]) if "img_val" in line else line for line in text]
    src.checksums.write_text("\n".join(text) + "\n")
    with pytest.raises(ImnetError, match=r"ILSVRC2012_img_val.tar: checksum mismatch.*nothing of the val"):
        run(src, tmp_path / "dst")
    assert_nothing_prepared(tmp_path / "dst", "val")
    record = json.loads((tmp_path / "dst" / "meta" / "prep.json").read_text())
    assert record["splits"]["train"]["complete"]  # the good split stays prepared


def test_wrong_checksum_after_an_interrupted_run_discards_the_partial_split(src, tmp_path):
    dst = tmp_path / "dst"
    killed = subprocess.run([sys.executable, "-m", "imnet", "prep", "--src", str(src.root), "--dst", str(dst),
                             "--checksums", str(src.checksums), "--only", "train"],
                            env=dict(os.environ, IMNET_PREP_CRASH_AT="train:record-temp"), capture_output=True)
    assert killed.returncode == -signal.SIGKILL  # killed before the record: train is partial, journaled
    src.checksums.write_text(src.checksums.read_text().replace(src.checksums.read_text()[:32], "f" * 32, 1))
    with pytest.raises(ImnetError, match="checksum mismatch"):
        run(src, dst, only="train")
    assert_nothing_prepared(dst, "train")


@pytest.mark.parametrize("which", ["train", "val"])
def test_truncated_archive(src, tmp_path, which):
    path = getattr(src, which)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 + 100])
    rechecksum(src)
    with pytest.raises(ImnetError, match=rf"{path.name}: truncated or corrupt"):
        run(src, tmp_path / "dst", only=which)
    assert_nothing_prepared(tmp_path / "dst", which)


@pytest.mark.parametrize("which", ["train", "val", "devkit"])
def test_missing_archive(src, tmp_path, which):
    getattr(src, which).unlink()
    with pytest.raises(ImnetError, match=rf"missing archive .*{getattr(src, which).name}"):
        run(src, tmp_path / "dst")
    assert not (tmp_path / "dst").exists()


def test_checksum_file_without_the_archive(src, tmp_path):
    src.checksums.write_text("".join(l + "\n" for l in src.checksums.read_text().splitlines() if "val" not in l))
    with pytest.raises(ImnetError, match=r"checksums.md5: no checksum for ILSVRC2012_img_val.tar"):
        run(src, tmp_path / "dst")


def test_malformed_checksum_file(src, tmp_path):
    src.checksums.write_text("this is not md5sum output\n")
    with pytest.raises(ImnetError, match=r"checksums.md5:1: not an md5sum line"):
        run(src, tmp_path / "dst")


def test_official_checksums_with_wrong_size_fail_before_hashing(src, tmp_path):
    with pytest.raises(ImnetError, match=r"ILSVRC2012_img_train.tar: \d+ bytes, the official archive has 147897477120"):
        prepare(src.root, tmp_path / "dst", progress=False)


def test_corrupt_devkit(src, tmp_path):
    src.devkit.write_bytes(b"\x1f\x8b" + b"not really gzip" * 50)
    rechecksum(src)
    with pytest.raises(ImnetError, match=r"ILSVRC2012_devkit_t12.tar.gz: corrupt devkit archive"):
        run(src, tmp_path / "dst")
    assert not (tmp_path / "dst").exists()


def test_devkit_without_meta_mat(src, tmp_path):
    with tarfile.open(src.devkit, "w:gz") as tar:
        add_bytes(tar, "ILSVRC2012_devkit_t12/readme.txt", b"hello")
    rechecksum(src)
    with pytest.raises(ImnetError, match=r"devkit_t12.tar.gz: devkit archive has no .*meta.mat"):
        run(src, tmp_path / "dst")


def test_meta_mat_without_expected_fields(src, tmp_path):
    synsets = np.zeros((2, 1), dtype=[("ILSVRC2012_ID", "O"), ("words", "O"), ("num_children", "O")])
    synsets[0, 0] = (1, "a", 0)
    synsets[1, 0] = (2, "b", 0)
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"synsets": synsets})
    write_devkit(src.devkit, buffer.getvalue(), [1, 2])
    rechecksum(src)
    with pytest.raises(ImnetError, match=r"meta.mat: meta.mat 'synsets' lacks the fields WNID"):
        run(src, tmp_path / "dst")


def test_meta_mat_that_is_not_matlab(src, tmp_path):
    write_devkit(src.devkit, b"garbage" * 100, [1])
    rechecksum(src)
    with pytest.raises(ImnetError, match=r"meta.mat is not a readable MATLAB file"):
        run(src, tmp_path / "dst")


def _devkit_with_truth(src, truth_ids):
    fake = src.fake
    inner = ["n19999991", "n19999992"]
    write_devkit(src.devkit, meta_mat_bytes(fake.wnids, fake.ilsvrc_ids, inner, {w: 3 for w in fake.wnids}), truth_ids)
    rechecksum(src)


def _truth(src):
    return [src.fake.ilsvrc_ids[src.fake.wnids[label]] for label in src.fake.val_labels]


@pytest.mark.parametrize("delta, message", [
    (-1, r"ILSVRC2012_val_00000008.JPEG has no line in the devkit's ground-truth file \(7 lines\)"),
    (+1, r"devkit_t12.tar.gz: the ground-truth file has 9 lines but .*img_val.tar holds 8 images"),
])
def test_ground_truth_of_wrong_length(src, tmp_path, delta, message):
    truth = _truth(src)
    _devkit_with_truth(src, truth[:-1] if delta < 0 else truth + [truth[0]])
    with pytest.raises(ImnetError, match=message):
        run(src, tmp_path / "dst", only="val")
    assert_nothing_prepared(tmp_path / "dst", "val")


def test_meta_mat_with_a_duplicate_ilsvrc_id(src, tmp_path):
    """Two synsets with one ILSVRC2012_ID would relabel the val images of one class: refused."""
    fake = src.fake
    ids = dict(fake.ilsvrc_ids)
    first, second = fake.wnids[0], fake.wnids[3]
    ids[second] = ids[first]
    write_devkit(src.devkit, meta_mat_bytes(fake.wnids, ids, ["n19999991", "n19999992"], {w: 3 for w in fake.wnids}),
                 _truth(src))
    rechecksum(src)
    with pytest.raises(ImnetError, match=rf"meta.mat: meta.mat gives ILSVRC2012_ID {ids[first]} to both "
                                         rf"n\d{{8}} and n\d{{8}}; the devkit is corrupt"):
        run(src, tmp_path / "dst")
    assert not (tmp_path / "dst").exists()


def test_ground_truth_with_ids_outside_the_leaves(src, tmp_path):
    truth = _truth(src)
    truth[3] = 4 + 2  # a non-leaf row's ID
    _devkit_with_truth(src, truth)
    with pytest.raises(ImnetError, match=r"ground_truth.txt: line 4 has ILSVRC2012_ID 6, which is not one of the 4"):
        run(src, tmp_path / "dst")


def _member(name, kind=tarfile.REGTYPE, linkname="", size=0):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, linkname, size
    return info


@pytest.mark.parametrize("member, message", [
    (_member("README.txt", size=5), r"unexpected member name 'README.txt'"),
    (_member("ILSVRC2012_val_00000003.jpg", size=5), r"unexpected member name 'ILSVRC2012_val_00000003.jpg'"),
    (_member("val/ILSVRC2012_val_00000003.JPEG", size=5), r"unexpected member name"),
    (_member("../ILSVRC2012_val_00000009.JPEG", size=5), r"'\.\./ILSVRC2012_val_00000009.JPEG' points outside"),
    (_member("/tmp/ILSVRC2012_val_00000009.JPEG", size=5), r"has an absolute path"),
    (_member("ILSVRC2012_val_00000009.JPEG", tarfile.SYMTYPE, "/etc/passwd"), r"is a link \(to '/etc/passwd'\)"),
    (_member("ILSVRC2012_val_00000009.JPEG", tarfile.LNKTYPE, "ILSVRC2012_val_00000001.JPEG"), r"is a link"),
    (_member("ILSVRC2012_val_00000009.JPEG", tarfile.CHRTYPE), r"is a device"),
])
def test_unsafe_or_unexpected_val_members(src, tmp_path, member, message):
    rewrite_val(src, member, b"hello" if member.isreg() else b"")
    with pytest.raises(ImnetError, match=message) as caught:
        run(src, tmp_path / "dst", only="val")
    assert str(caught.value).startswith(f"{src.val}: ")  # names the archive and the member
    assert_nothing_prepared(tmp_path / "dst", "val")
    assert not (tmp_path / "ILSVRC2012_val_00000009.JPEG").exists()


@pytest.mark.parametrize("inner_name, message", [
    ("../../escape.JPEG", r"n\d{8}.tar: member '\.\./\.\./escape.JPEG' points outside"),
    ("n00000001_1.JPEG", r"n\d{8}.tar: unexpected member name 'n00000001_1.JPEG'"),  # another class's name
])
def test_unsafe_member_inside_a_class_tar(src, tmp_path, inner_name, message):
    wnid = src.fake.wnids[0]
    add_to_class_tar(src.train, wnid, inner_name, b"evil")
    rechecksum(src)
    with pytest.raises(ImnetError, match=message):
        run(src, tmp_path / "dst", only="train", workers=2)
    assert_nothing_prepared(tmp_path / "dst", "train")
    assert not list(tmp_path.rglob("escape.JPEG"))


def test_train_class_not_in_devkit(src, tmp_path):
    with tarfile.open(src.train, "a") as tar:
        add_bytes(tar, "n99999999.tar", b"")
    rechecksum(src)
    with pytest.raises(ImnetError, match=r"class tar n99999999.tar is not one of the devkit's 4 classes"):
        run(src, tmp_path / "dst", only="train")
    assert_nothing_prepared(tmp_path / "dst", "train")


def test_dst_inside_src(src):
    with pytest.raises(ImnetError, match=r"--dst .* is inside --src"):
        run(src, src.root / "prepared")
    assert not (src.root / "prepared").exists()


@pytest.mark.skipif(not can_mount(), reason="mounting a tmpfs needs root")
def test_not_enough_disk_space(src, tmp_path):
    with tmpfs(tmp_path / "disk", size="96k") as disk:
        with pytest.raises(ImnetError, match=r"data: not enough disk space for train and val: needs [\d.]+ KiB "
                                             r"\(\d+ files in blocks of 4.0 KiB\), [\d.]+ KiB free"):
            run(src, disk / "data")
        assert not (disk / "data").exists()  # checked before anything is written


@pytest.mark.parametrize("layout", ["dst-is-a-file", "parent-is-a-file"])
def test_unwritable_dst(src, tmp_path, layout):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    dst = blocker if layout == "dst-is-a-file" else blocker / "data"
    with pytest.raises(ImnetError, match=r"--dst .* is not writable"):
        run(src, dst)


def test_cli_user_error_is_one_line_exit_2_and_debug_shows_traceback(src, tmp_path):
    src.val.unlink()
    args = ["prep", "--src", str(src.root), "--dst", str(tmp_path / "dst"), "--checksums", str(src.checksums)]
    plain = subprocess.run([sys.executable, "-m", "imnet", *args], capture_output=True, text=True)
    assert plain.returncode == 2
    assert plain.stderr.strip().splitlines() == [f"imnet: error: missing archive {src.val}; download "
                                                 f"ILSVRC2012_img_val.tar from image-net.org into --src"]
    debug = subprocess.run([sys.executable, "-m", "imnet", "--debug", *args], capture_output=True, text=True)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "ImnetError" in debug.stderr
