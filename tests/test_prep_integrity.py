"""A tree says truthfully what it is: every image decoded by prep (corrupt ones reported on stderr,
in the summary and the record; imnet verify fails until they are acknowledged or repaired), a
SHA-256 of every image in sha256sum format (checked with the real sha256sum), --reverify and verify
--hashes checking content, and a killed val extraction advised rightly."""
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from imnet.cli import main
from imnet.errors import ImnetError
from imnet.prep import prepare, verify_tree
from imnet.prep.manifests import read_file_list
from imnet.prep.quirks import inspect_image
from imnet.testing import fake_ilsvrc
from imnet.testing.fake import encode, render_image, _class_looks

SMALL = dict(classes=4, train_per_class=3, val=8, image_size=(24, 24))
CORRUPT = 2  # ILSVRC2012_val_00000002.JPEG: valid header, corrupt body


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    return fake_ilsvrc(tmp_path_factory.mktemp("src"), **SMALL, corrupt_val=(CORRUPT,))


@pytest.fixture(scope="module")
def prepared(fake, tmp_path_factory):
    dst = tmp_path_factory.mktemp("tree") / "data"
    result = subprocess.run([sys.executable, "-m", "imnet", "prep", "--src", str(fake.root), "--dst", str(dst),
                             "--checksums", str(fake.checksums)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return dst, result


@pytest.fixture
def tree(prepared, tmp_path):
    dst = tmp_path / "data"
    shutil.copytree(prepared[0], dst)
    return dst


def corrupt_rel(fake):
    return next(rel for rel, kind in fake.quirks.items() if kind == "corrupt")


@pytest.fixture
def cli(capsys):
    def run(*args):
        with pytest.raises(SystemExit) as exit_info:
            main(list(args))
        captured = capsys.readouterr()
        return exit_info.value.code, captured.out, captured.err
    return run


# --- corrupt images -----------------------------------------------------------------------------------

def test_prep_finds_a_corrupt_body_and_says_so_where_the_user_looks(fake, prepared):
    dst, result = prepared
    rel = corrupt_rel(fake)
    with pytest.raises(OSError):  # the planted file: PIL refuses it
        Image.open(dst / rel).load()
    assert "val prepared: 8 images" in result.stdout and "1 undecodable" in result.stdout
    assert f"imnet prep: {dst / rel} does not decode (PIL cannot decode it: broken data stream" in result.stderr
    assert "--acknowledge-bad" in result.stderr
    record = json.loads((dst / "meta" / "prep.json").read_text())["splits"]
    assert record["val"]["decode_checked"] and record["train"]["decode_checked"]
    assert [b["file"] for b in record["val"]["undecodable"]] == [rel]
    assert record["train"]["undecodable"] == []
    # Kept (it is part of the archive), listed, counted:
    assert rel.split("/", 1)[1] in [r for r, _ in read_file_list(dst / "meta" / "val.txt")]


def test_undecodable_reason_holds_no_object_address():
    _, quirk = inspect_image("train/n0/n0_1.JPEG", b"hello, not an image")
    assert quirk.kind == "undecodable" and quirk.action == "kept; PIL cannot identify it as an image"
    assert "0x" not in quirk.action and "BytesIO" not in quirk.action


def test_verify_fails_on_a_tree_holding_them_until_acknowledged(fake, tree, cli):
    rel = corrupt_rel(fake)
    code, _, err = cli("verify", "--data", str(tree))
    assert code == 2 and f"{tree / rel} does not decode" in err and "--acknowledge-bad" in err
    code, out, err = cli("verify", "--data", str(tree), "--acknowledge-bad")
    assert code == 0, err
    assert f"acknowledged {tree / rel}" in err and "1 undecodable val image(s) acknowledged" in err and "ok:" in out
    record = json.loads((tree / "meta" / "prep.json").read_text())["splits"]["val"]
    assert record["undecodable"][0]["acknowledged"]
    assert verify_tree(tree, decode=True, progress=False).ok  # the acknowledged file is not a problem


def test_a_repaired_image_is_recorded_with_its_new_size_and_hash(fake, tree, cli):
    rel = corrupt_rel(fake)
    good = encode(render_image(_class_looks(4, 0)[0], (24, 24), np.random.default_rng(5), 6.0))
    (tree / rel).write_bytes(good)  # the user replaced it with a good copy
    assert not verify_tree(tree, progress=False).ok
    code, _, err = cli("verify", "--data", str(tree), "--acknowledge-bad", "--hashes")
    assert code == 0, err
    assert f"recorded {tree / rel} as repaired" in err
    record = json.loads((tree / "meta" / "prep.json").read_text())["splits"]["val"]
    assert record["undecodable"] == [] and record["repaired_by_user"][0]["file"] == rel
    if shutil.which("sha256sum"):
        assert subprocess.run(["sha256sum", "--quiet", "-c", "meta/val.sha256"], cwd=tree).returncode == 0


def test_prep_decode_verdict_is_a_full_decodes_on_random_corruptions():
    """prep accepts a structurally clean baseline JPEG after decoding its headers and first KiB, and
    decodes every other image at 1/8 DCT scale; over random corruptions (cut, overwritten, inserted,
    flipped bytes, in headers and scans) of baseline, progressive, 4:4:4 and grayscale JPEGs its
    verdict must be exactly that of a plain full-size decode."""
    from imnet.prep.quirks import decodes_by_structure

    rng = random.Random(12)
    looks = _class_looks(3, 0)
    bases = []
    for i in range(3):
        image = Image.fromarray(render_image(looks[i], (96, 72), np.random.default_rng(i), 20.0))
        for options, mode in (({}, "RGB"), ({"progressive": True}, "RGB"), ({"subsampling": 0}, "RGB"), ({}, "L")):
            out = io.BytesIO()
            image.convert(mode).save(out, "JPEG", quality=90, **options)
            bases.append(out.getvalue())

    def full_decode_fails(data):
        try:
            with Image.open(io.BytesIO(data)) as image:
                image.load()
        except Exception:
            return True
        return False

    refused = shortcut = 0
    for _ in range(600):
        data = bytearray(rng.choice(bases))
        scan = data.find(b"\xff\xda")
        kind, at = rng.randrange(5), rng.randrange(len(data))
        if kind == 0:
            data = data[:at]
        elif kind == 1:
            data[at:at + 2] = b"\xff" + bytes([rng.randrange(256)])
        elif kind == 2:
            data[at:at + 300] = bytes(rng.randrange(256) for _ in data[at:at + 300])
        elif kind == 3:
            data[rng.randrange(scan + 4)] = rng.randrange(256)  # a header byte
        else:
            for _ in range(8):
                data[rng.randrange(scan + 4, len(data))] = rng.randrange(256)  # scan bytes
        data = bytes(data)
        _, quirk = inspect_image("val/n0/x.JPEG", data)
        expected = full_decode_fails(data)
        assert (quirk is not None and quirk.kind == "undecodable") == expected
        refused += expected
        shortcut += decodes_by_structure(data)
    assert 100 < refused < 500 and shortcut > 100  # both verdicts, and the shortcut, were exercised


# --- hashes ---------------------------------------------------------------------------------------------

def test_hash_lists_are_standard_sha256sum_files(prepared):
    dst, _ = prepared
    for split in ("train", "val"):
        lines = (dst / "meta" / f"{split}.sha256").read_text().splitlines()
        listed = [f"{split}/{rel}" for rel, _ in read_file_list(dst / "meta" / f"{split}.txt")]
        assert [line.split("  ", 1)[1] for line in lines] == listed  # same order as the file list
    if not shutil.which("sha256sum"):
        pytest.skip("no sha256sum binary")
    check = subprocess.run(["sha256sum", "-c", "meta/train.sha256", "meta/val.sha256"], cwd=dst,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count(": OK") == 12 + 8


def test_reverify_and_verify_hashes_find_a_same_size_change(fake, tree, cli):
    victim = tree / "train" / read_file_list(tree / "meta" / "train.txt")[4][0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit inside the image: same size, sizes cannot tell
    victim.write_bytes(bytes(data))
    assert not any(str(victim) in problem for problem in verify_tree(tree, progress=False).problems)
    with pytest.raises(ImnetError, match=rf"{victim}: SHA-256 [0-9a-f]{{64}} differs from train.sha256"):
        prepare(fake.root, tree, checksums=fake.checksums, reverify=True, progress=False)
    code, _, err = cli("verify", "--data", str(tree), "--hashes")
    assert code == 2 and f"{victim}: SHA-256" in err and "sha256 train" in err  # named, with its progress bar
    if shutil.which("sha256sum"):
        independent = subprocess.run(["sha256sum", "--quiet", "-c", "meta/train.sha256"], cwd=tree,
                                     capture_output=True, text=True)
        assert independent.returncode != 0 and str(victim.relative_to(tree)) in independent.stdout


def test_reverify_passes_on_a_sound_tree_with_hashes(fake, tree):
    summary = prepare(fake.root, tree, checksums=fake.checksums, reverify=True, progress=False)
    assert {s["status"] for s in summary["splits"].values()} == {"reverified"}
    assert verify_tree(tree, hashes=True, progress=False).problems == [
        p for p in verify_tree(tree, progress=False).problems]  # only the undecodable image, nothing else


# --- a killed val extraction ------------------------------------------------------------------------------

def test_killed_val_extraction_gets_the_right_advice_and_no_manifest(fake, tmp_path, cli):
    dst = tmp_path / "data"
    killed = subprocess.run([sys.executable, "-m", "imnet", "prep", "--src", str(fake.root), "--dst", str(dst),
                             "--checksums", str(fake.checksums)], capture_output=True, text=True,
                            env=dict(os.environ, IMNET_PREP_CRASH_AT="val:unit:1"))
    assert killed.returncode == -signal.SIGKILL
    assert list((dst / "val").rglob("*.JPEG")) and not (dst / "meta" / "val.txt").exists()
    advice = "run the same imnet prep again to finish it"
    code, _, err = cli("verify", "--data", str(dst), "--write-manifests")
    assert code == 2 and advice in err and "not writing" in err
    assert not (dst / "meta" / "val.txt").exists()
    code, _, err = cli("verify", "--data", str(dst))
    assert code == 2 and advice in err
    from imnet.data import build_eval_loader
    from imnet.eval.runner import EvalOptions, evaluate

    with pytest.raises(ImnetError, match=advice):
        evaluate(EvalOptions(data=dst, out=tmp_path / "out", archs=["resnet18"]))
    with pytest.raises(ImnetError, match=advice):
        build_eval_loader(dst, "val", crop_size=16, resize_size=18, mean=(0.5,) * 3, std=(0.5,) * 3, loader="torch")
    resumed = subprocess.run([sys.executable, "-m", "imnet", "prep", "--src", str(fake.root), "--dst", str(dst),
                              "--checksums", str(fake.checksums)], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
