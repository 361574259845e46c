"""imnet verify: a sound tree passes; each kind of damage is found and named; trees made by
torchvision's ImageNet get their manifests written and then agree with imnet's own."""
import json
import shutil

import pytest

from imnet.cli import main
from imnet.prep import prepare, verify_tree
from imnet.prep.manifests import read_classes, read_file_list
from imnet.testing import fake_ilsvrc

SMALL = dict(classes=4, train_per_class=3, val=8, image_size=(24, 24))


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    return fake_ilsvrc(tmp_path_factory.mktemp("src"), **SMALL)


@pytest.fixture(scope="module")
def prepared(fake, tmp_path_factory):
    dst = tmp_path_factory.mktemp("tree") / "data"
    prepare(fake.root, dst, checksums=fake.checksums, workers=1, progress=False)
    return dst


@pytest.fixture
def tree(prepared, tmp_path):
    dst = tmp_path / "data"
    shutil.copytree(prepared, dst)
    return dst


@pytest.fixture
def cli(capsys):
    """Run the real entry point (with its error handling); returns (exit code, stdout + stderr)."""
    def run(*args):
        with pytest.raises(SystemExit) as exit_info:
            main(list(args))
        captured = capsys.readouterr()
        return exit_info.value.code, captured.out + captured.err
    return run


def first(tree, split):
    return tree / split / read_file_list(tree / "meta" / f"{split}.txt")[0][0]


def test_sound_tree_passes_with_decode(tree, cli):
    report = verify_tree(tree, decode=True, progress=False)
    assert report.ok, report.problems
    assert report.images == {"train": 12, "val": 8}
    code, output = cli("verify", "--data", str(tree), "--decode")
    assert code == 0 and "ok:" in output and "train 12 images" in output


def damage_missing(tree):
    path = first(tree, "val")
    path.unlink()
    return f"{path} is listed in val.txt but missing"


def damage_unlisted(tree):
    path = first(tree, "train").with_name("n00000000_1.JPEG")
    shutil.copy(first(tree, "train"), path)
    return f"{path} is not listed in train.txt"


def damage_label(tree):
    lines = (tree / "meta" / "train.txt").read_text().splitlines()
    rel, label = lines[0].split()
    lines[0] = f"{rel} {(int(label) + 1) % 4}"
    (tree / "meta" / "train.txt").write_text("\n".join(lines) + "\n")
    return f"train.txt: {rel} has label {(int(label) + 1) % 4}"


def damage_size(tree):
    path = first(tree, "train")
    path.write_bytes(path.read_bytes() + b"\0" * 10)
    return f"{path.parent}: 3 images, "


def damage_incomplete(tree):
    record = json.loads((tree / "meta" / "prep.json").read_text())
    del record["splits"]["train"]
    (tree / "meta" / "prep.json").write_text(json.dumps(record))
    return "no record of the train split"


@pytest.mark.parametrize("damage", [damage_missing, damage_unlisted, damage_label, damage_size, damage_incomplete])
def test_damage_is_found_and_named(tree, damage, cli):
    expected = damage(tree)
    report = verify_tree(tree, progress=False)
    assert any(expected in problem for problem in report.problems), report.problems
    code, output = cli("verify", "--data", str(tree))
    assert code == 2 and expected in output and "imnet: error:" in output


def test_decode_finds_an_image_that_does_not_decode(tree):
    path = first(tree, "val")
    size = path.stat().st_size
    path.write_bytes(path.read_bytes()[:200] + b"\0" * (size - 200))  # same size: only decoding tells
    assert verify_tree(tree, progress=False).ok
    report = verify_tree(tree, decode=True, progress=False)
    assert len(report.problems) == 1 and f"{path} does not decode" in report.problems[0]


def test_not_a_tree(tmp_path, cli):
    code, output = cli("verify", "--data", str(tmp_path))
    assert code == 2 and "not a prepared tree" in output


@pytest.mark.parametrize("with_devkit", [False, True])
def test_torchvision_tree_gets_manifests(fake, prepared, tmp_path, monkeypatch, with_devkit, cli):
    import torchvision.datasets.imagenet as tv_imagenet

    from imnet.testing.fake import torchvision_imagenet_root

    root = torchvision_imagenet_root(fake, tmp_path / "tv", monkeypatch)
    for split in ("train", "val"):
        tv_imagenet.ImageNet(str(root), split=split)
    code, output = cli("verify", "--data", str(root))
    assert code == 2 and "use --write-manifests" in output
    args = ["verify", "--data", str(root), "--write-manifests"]
    if with_devkit:
        args += ["--devkit", str(fake.devkit)]
    code, output = cli(*args)
    assert code == 0, output
    for split in ("train", "val"):
        assert read_file_list(root / "meta" / f"{split}.txt") == read_file_list(prepared / "meta" / f"{split}.txt")
    ours, theirs = read_classes(prepared), read_classes(root)
    assert [c.wnid for c in theirs] == [c.wnid for c in ours]
    assert [c.words for c in theirs] == [c.words for c in ours]  # from the devkit, or torchvision's meta.bin
    assert [c.ilsvrc_id for c in theirs] == ([c.ilsvrc_id for c in ours] if with_devkit else [0] * 4)
