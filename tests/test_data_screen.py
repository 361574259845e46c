"""Every loader is at least as strict as the torch loader about corrupt images: the tree's record of
the images prep could not decode is read with the file list (DALI's libjpeg alone only warns on
them); --skip-bad and acknowledged images are skipped, counted and named; a path DALI cannot take
falls back to the torch loader or says why."""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from imnet.cli import main
from imnet.data import build_eval_loader, build_train_loader
from imnet.errors import ImnetError
from imnet.prep import prepare
from imnet.prep.verify import acknowledge_bad
from imnet.testing import fake_ilsvrc, prepared_tree
from imnet.testing.fake import add_to_class_tar, corrupt_jpeg, encode, render_image, _class_looks, write_checksums

TREE = dict(classes=3, train_per_class=8, val=9, image_size=(40, 32), corrupt_val=(2,))
EVAL = dict(crop_size=32, resize_size=36, mean=(0.5,) * 3, std=(0.25,) * 3, batch_size=4, workers=1)
LOADERS = ["dali", "torch"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def tree(tmp_path):
    return prepared_tree(tmp_path, **TREE)


def bad_val(tree: Path) -> tuple[int, str]:
    files = [line.split()[0] for line in (tree / "meta" / "val.txt").read_text().splitlines()]
    rel = json.loads((tree / "meta" / "prep.json").read_text())["splits"]["val"]["undecodable"][0]["file"]
    return files.index(rel.split("/", 1)[1]), rel.split("/", 1)[1]


def positions(loader) -> list[int]:
    with loader:
        return [int(i) for batch in loader for i in batch.indices]


@pytest.mark.parametrize("backend", LOADERS)
def test_eval_refuses_a_recorded_bad_image_naming_it(tree, backend):
    _, rel = bad_val(tree)
    with pytest.raises(ImnetError, match=rf"{tree / 'val' / rel}: does not decode .*--skip-bad"):
        build_eval_loader(tree, "val", loader=backend, **EVAL)


@pytest.mark.parametrize("backend", LOADERS)
def test_eval_skip_bad_counts_and_names_it(tree, backend, capsys):
    position, rel = bad_val(tree)
    loader = build_eval_loader(tree, "val", loader=backend, skip_bad=True, **EVAL)
    assert positions(loader) == [p for p in range(9) if p != position]
    assert [(p, f) for p, f, _ in loader.skipped] == [(position, rel)] and loader.num_images == 8
    assert f"skipping {tree / 'val' / rel}" in capsys.readouterr().err


def test_without_the_record_dali_alone_would_score_it(tree, capsys):
    """Why the record is needed: with it removed, DALI-CPU decodes the corrupt file (libjpeg warns
    only) and says it cannot check; the torch loader refuses the file itself."""
    _, rel = bad_val(tree)
    path = tree / "meta" / "prep.json"
    record = json.loads(path.read_text())
    record["splits"]["val"].update(decode_checked=False, undecodable=[])
    path.write_text(json.dumps(record))
    assert positions(build_eval_loader(tree, "val", loader="dali", **EVAL)) == list(range(9))
    assert "records no decode check of the val split" in capsys.readouterr().err
    with pytest.raises(ImnetError, match=rel):
        positions(build_eval_loader(tree, "val", loader="torch", **EVAL))


@pytest.mark.parametrize("backend", LOADERS)
def test_acknowledged_images_are_skipped_by_eval(tree, backend):
    position, rel = bad_val(tree)
    acknowledge_bad(tree)
    loader = build_eval_loader(tree, "val", loader=backend, **EVAL)
    assert positions(loader) == [p for p in range(9) if p != position] and loader.skipped[0][1] == rel


@pytest.fixture
def train_tree(tmp_path):
    fake = fake_ilsvrc(tmp_path / "src", classes=3, train_per_class=8, val=6, image_size=(40, 32), quirks=False)
    wnid = fake.wnids[1]
    data = corrupt_jpeg(encode(render_image(_class_looks(3, 0)[1], (40, 32), np.random.default_rng(1), 6.0)))
    add_to_class_tar(fake.train_tar, wnid, f"{wnid}_99999.JPEG", data)
    write_checksums(fake.checksums, [fake.train_tar, fake.val_tar, fake.devkit])
    prepare(fake.root, tmp_path / "data", checksums=fake.checksums, workers=1, progress=False)
    return tmp_path / "data", f"{wnid}/{wnid}_99999.JPEG"


@pytest.mark.parametrize("backend", LOADERS)
def test_train_refuses_a_recorded_bad_image_then_skips_it_once_acknowledged(train_tree, backend, capsys):
    tree, rel = train_tree
    options = dict(crop_size=32, resize_size=36, mean=(0.5,) * 3, std=(0.25,) * 3, batch_size=5, workers=1,
                   loader=backend)
    with pytest.raises(ImnetError, match=rf"{tree / 'train' / rel}: does not decode .*training would use it.*"
                                         r"--acknowledge-bad"):
        build_train_loader(tree, **options)
    acknowledge_bad(tree)
    with build_train_loader(tree, **options) as loader:
        assert len(loader.split) == 24 and rel not in loader.split.files
        seen = sum(len(labels) for _, labels in loader)
    assert seen == 20  # 4 full batches of 5 out of 24 images
    assert "skipping 1 acknowledged undecodable image(s)" in capsys.readouterr().err


def test_imnet_eval_with_dali_fails_naming_the_file_then_skip_bad_marks_partial(tree, tmp_path, capsys):
    from imnet.eval.store import read_model
    from imnet.zoo import create_model

    weights = tmp_path / "cifar_resnet20.pth"
    torch.manual_seed(0)
    torch.save(create_model("cifar_resnet20", num_classes=3).state_dict(), weights)
    args = ["eval", "--arch", "cifar_resnet20", "--weights", str(weights), "--data", str(tree), "--img-size", "32",
            "--loader", "dali", "--workers", "1", "--batch-size", "4", "--out", str(tmp_path / "out")]
    position, rel = bad_val(tree)
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2 and rel in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(args + ["--skip-bad"])
    assert exit_info.value.code == 0
    preds = read_model(tmp_path / "out" / "predictions.h5", "cifar_resnet20")
    assert preds.info["partial"] and [s[1] for s in preds.info["skipped_images"]] == [rel]
    assert position not in preds.indices.tolist() and len(preds.indices) == 8


# --- paths that are not UTF-8 ---------------------------------------------------------------------------

@pytest.fixture
def odd_tree(tmp_path):
    tree = prepared_tree(tmp_path / "base", classes=3, train_per_class=8, val=6, image_size=(40, 32))
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9"))  # a Latin-1 folder name: not UTF-8
    shutil.copytree(tree, odd)
    return odd


@pytest.mark.parametrize("backend", ["dali", "torch", "auto"])
def test_a_tree_under_a_non_utf8_path_is_read_by_every_loader(odd_tree, backend):
    """DALI used to fail on such a root with a traceback; its reader is now fed the paths' own bytes."""
    assert positions(build_eval_loader(odd_tree, "val", loader=backend, **EVAL)) == list(range(6))
    with build_train_loader(odd_tree, loader=backend, crop_size=32, resize_size=36, mean=(0.5,) * 3,
                            std=(0.25,) * 3, batch_size=4, workers=1) as train:
        assert sum(len(labels) for _, labels in train) == 24
