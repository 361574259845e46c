"""imnet.testing.fake_ilsvrc: the official formats, planted quirks, learnable content, determinism,
and torchvision's own ImageNet parser accepting the fixture and agreeing with imnet's tree."""
import hashlib
import io
import json
import re
import tarfile

import numpy as np
import pytest
import scipy.io
from click.testing import CliRunner
from PIL import Image

from imnet.cli import cli
from imnet.prep import prepare
from imnet.prep.manifests import read_classes, read_file_list
from imnet.testing import fake_ilsvrc, prepared_tree

SMALL = dict(classes=5, train_per_class=4, val=15, image_size=(40, 32))


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    return fake_ilsvrc(tmp_path_factory.mktemp("fake"), **SMALL)


def test_train_archive_is_tar_of_class_tars(fake):
    seen = []
    with tarfile.open(fake.train_tar) as outer:
        for member in outer:
            assert re.fullmatch(r"n\d{8}\.tar", member.name) and member.isreg()
            wnid = member.name[:-4]
            with tarfile.open(fileobj=io.BytesIO(outer.extractfile(member).read())) as inner:
                names = inner.getnames()
            assert all(re.fullmatch(rf"{wnid}_\d+\.JPEG", n) for n in names)
            seen += [(wnid, n) for n in names]
    assert sorted(seen) == fake.train_files
    assert len(seen) == SMALL["classes"] * SMALL["train_per_class"]
    assert fake.wnids == sorted(fake.wnids) and len(fake.wnids) == SMALL["classes"]


def test_val_archive_is_flat_and_numbered(fake):
    with tarfile.open(fake.val_tar) as tar:
        names = tar.getnames()
    assert names == [f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(1, SMALL["val"] + 1)]
    assert set(fake.val_labels) == set(range(SMALL["classes"]))  # every class has val images


def test_devkit_meta_mat_and_ground_truth(fake):
    with tarfile.open(fake.devkit, "r:gz") as tar:
        meta = tar.extractfile("ILSVRC2012_devkit_t12/data/meta.mat").read()
        truth = tar.extractfile("ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt").read()
    synsets = scipy.io.loadmat(io.BytesIO(meta), squeeze_me=True)["synsets"]
    assert synsets.dtype.names == ("ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children",
                                   "wordnet_height", "num_train_images")
    leaves = [row for row in synsets if row["num_children"] == 0]
    assert len(leaves) == SMALL["classes"] and len(synsets) > len(leaves)  # non-leaf rows too
    by_id = sorted(leaves, key=lambda r: int(r["ILSVRC2012_ID"]))
    assert [int(r["ILSVRC2012_ID"]) for r in by_id] == list(range(1, SMALL["classes"] + 1))
    id_order = [str(r["WNID"]) for r in by_id]
    assert sorted(id_order) == fake.wnids and id_order != fake.wnids  # ID order is not sorted order
    ids = [int(line) for line in truth.decode().split()]
    assert [fake.wnids.index(id_order[i - 1]) for i in ids] == fake.val_labels


def test_checksums_and_real_json(fake):
    lines = dict(reversed(line.split("  ")) for line in fake.checksums.read_text().splitlines())
    for path in (fake.train_tar, fake.val_tar, fake.devkit):
        assert lines[path.name] == hashlib.md5(path.read_bytes()).hexdigest()
    real = json.loads(fake.real_json.read_text())
    assert len(real) == SMALL["val"]
    assert all(all(0 <= c < SMALL["classes"] for c in labels) for labels in real)
    assert any(labels == [] for labels in real) and any(len(labels) == 2 for labels in real)


def test_quirks_are_planted_by_content(fake):
    kinds = {}
    with tarfile.open(fake.train_tar) as outer:
        for member in outer:
            with tarfile.open(fileobj=io.BytesIO(outer.extractfile(member).read())) as inner:
                for m in inner:
                    data = inner.extractfile(m).read()
                    kinds[f"train/{member.name[:-4]}/{m.name}"] = data
    with tarfile.open(fake.val_tar) as tar:
        for m in tar:
            label = fake.val_labels[int(m.name[15:23]) - 1]
            kinds[f"val/{fake.wnids[label]}/{m.name}"] = tar.extractfile(m).read()
    modes = {rel: (Image.open(io.BytesIO(data)).format, Image.open(io.BytesIO(data)).mode)
             for rel, data in kinds.items()}
    expected = {"cmyk": ("JPEG", "CMYK"), "png": ("PNG", "RGB"), "grayscale": ("JPEG", "L")}
    assert sorted(fake.quirks.values()) == ["cmyk", "cmyk", "grayscale", "png"]
    for rel, kind in fake.quirks.items():
        assert modes[rel] == expected[kind], rel
    assert "train/n02105855/n02105855_2933.JPEG" in fake.quirks  # the real PNG's name
    plain = [m for rel, m in modes.items() if rel not in fake.quirks]
    assert set(plain) == {("JPEG", "RGB")}


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = fake_ilsvrc(tmp_path / "a", classes=3, train_per_class=2, val=3, image_size=(16, 16))
    b = fake_ilsvrc(tmp_path / "b", classes=3, train_per_class=2, val=3, image_size=(16, 16))
    c = fake_ilsvrc(tmp_path / "c", classes=3, train_per_class=2, val=3, image_size=(16, 16), seed=1)
    assert a.checksums.read_text() == b.checksums.read_text()
    assert a.checksums.read_text() != c.checksums.read_text()


def test_meta_mat_has_no_timestamp_so_bytes_do_not_depend_on_the_clock(tmp_path):
    # savemat writes "Created on: <time>" into the MAT header: two fixtures made a second apart
    # had different devkit MD5s (a flaky same-seed test). The header text is fixed instead.
    import io

    import scipy.io

    from imnet.testing.fake import MAT_HEADER_TEXT, meta_mat_bytes

    data = meta_mat_bytes(["n01440764"], {"n01440764": 1}, ["n00001740"], {"n01440764": 2})
    assert data[:116] == MAT_HEADER_TEXT and b"Created on" not in data
    mat = scipy.io.loadmat(io.BytesIO(data))
    assert mat["__header__"].startswith(b"MATLAB 5.0 MAT-file") and mat["synsets"].shape == (2, 1)


def test_images_are_learnable(tmp_path):
    """A nearest-class-mean classifier on tiny thumbnails, fit on train, beats chance by far on val."""
    data = prepared_tree(tmp_path, classes=8, train_per_class=6, val=40, image_size=(40, 32))

    def features(path):
        image = Image.open(path).convert("RGB").resize((8, 8))
        return np.asarray(image, dtype=np.float32).ravel() / 255

    train = read_file_list(data / "meta" / "train.txt")
    val = read_file_list(data / "meta" / "val.txt")
    x = np.stack([features(data / "train" / rel) for rel, _ in train])
    y = np.array([label for _, label in train])
    means = np.stack([x[y == c].mean(0) for c in range(8)])
    xv = np.stack([features(data / "val" / rel) for rel, _ in val])
    predicted = ((xv[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    accuracy = (predicted == np.array([label for _, label in val])).mean()
    assert accuracy >= 0.7


def test_torchvision_imagenet_parser_agrees_with_imnet_tree(fake, tmp_path, monkeypatch):
    """torchvision.datasets.ImageNet parses the fixture itself; every (file, class index) pair must be
    the same as in imnet's prepared tree, for both splits."""
    import torchvision.datasets.imagenet as tv_imagenet

    from imnet.testing.fake import torchvision_imagenet_root

    root = torchvision_imagenet_root(fake, tmp_path / "tv", monkeypatch)
    prepare(fake.root, tmp_path / "imnet", checksums=fake.checksums, workers=1, progress=False)
    classes = read_classes(tmp_path / "imnet")
    for split in ("train", "val"):
        dataset = tv_imagenet.ImageNet(str(root), split=split)
        assert dataset.wnids == [c.wnid for c in classes]
        theirs = [(str(p.replace(str(root / split) + "/", "")), idx) for p, idx in dataset.imgs]
        ours = read_file_list(tmp_path / "imnet" / "meta" / f"{split}.txt")
        assert len(ours) == len(fake.train_files if split == "train" else fake.val_labels)
        if split == "train":  # same order too: (class, file name), like ImageFolder
            assert theirs == ours
        else:  # torchvision lists val by class folder; imnet by val number
            assert sorted(theirs) == sorted(ours)


def test_cli_fake_writes_archives(tmp_path):
    result = CliRunner().invoke(cli, ["fake", "--out", str(tmp_path), "--classes", "3", "--train-per-class", "2",
                                      "--val", "4", "--image-size", "16", "16"])
    assert result.exit_code == 0, result.output
    names = {p.name for p in tmp_path.iterdir()}
    assert {"ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar", "ILSVRC2012_devkit_t12.tar.gz",
            "checksums.md5", "real.json"} <= names
    assert "3 classes" in result.output
