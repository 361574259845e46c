"""Small guards of issue 12, each a test: ReaL labels checked against the tree's classes, train
--epochs 0 and eval --img-size 0 refused, and train --resume on another --data keeping the history."""
import json
import shutil

import pytest
import torch

from imnet.errors import ImnetError
from imnet.eval.real import load_real_labels
from imnet.eval.runner import EvalOptions, evaluate
from imnet.testing import prepared_tree
from imnet.train import TrainConfig, load_recipe, train

CLASSES = 6
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return prepared_tree(tmp_path_factory.mktemp("guards"), classes=CLASSES, train_per_class=8, val=12,
                         image_size=(40, 36))


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from imnet.zoo import create_model

    path = tmp_path_factory.mktemp("weights") / "cifar_resnet20.pth"
    torch.manual_seed(0)
    torch.save(create_model("cifar_resnet20", num_classes=CLASSES).state_dict(), path)
    return path


def test_real_label_outside_the_trees_classes_is_an_error(tree, weights, tmp_path, cli_error):
    real = tmp_path / "real.json"
    labels = [[i % CLASSES] for i in range(12)]
    labels[4] = [2, 7]  # class 7 on a 6-class tree: could never be predicted, would lower ReaL top-1
    real.write_text(json.dumps(labels))
    with pytest.raises(ImnetError, match=r"entry 4 \(ILSVRC2012_val_00000005.JPEG\) holds 7, not a class index in "
                                         r"0..5 \(the tree has 6 classes\)"):
        load_real_labels(real, 12, CLASSES)
    assert load_real_labels(real, 12) == labels  # 0..999 alone would have let it through
    line = cli_error(["eval", "--arch", "cifar_resnet20", "--weights", str(weights), "--data", str(tree),
                      "--img-size", "32", "--loader", "torch", "--workers", "0", "--out", str(tmp_path / "out"),
                      "--real-labels", str(real)])
    assert str(real) in line and "holds 7" in line and "0..5" in line


def test_eval_img_size_zero_is_refused(tree, weights, tmp_path, cli_error):
    line = cli_error(["eval", "--arch", "cifar_resnet20", "--weights", str(weights), "--data", str(tree),
                      "--img-size", "0", "--out", str(tmp_path / "out")])
    assert "--img-size" in line and "0 is not in the range x>=1" in line
    with pytest.raises(ImnetError, match=r"--img-size 0: must be at least 1"):
        evaluate(EvalOptions(data=tree, out=tmp_path / "out", archs=["cifar_resnet20"], weights=weights, img_size=0,
                             loader="torch", workers=0))
    assert not (tmp_path / "out" / "predictions.h5").exists()


def test_train_epochs_zero_is_refused(tree, tmp_path, cli_error):
    line = cli_error(["train", "--arch", "cifar_resnet20", "--data", str(tree), "--out", str(tmp_path / "run"),
                      "--epochs", "0"])
    assert "--epochs 0: recipe field 'epochs' must be at least 1, got 0" in line
    line = cli_error(["train", "--arch", "cifar_resnet20", "--data", str(tree), "--out", str(tmp_path / "run"),
                      "--set", "epochs=0"])
    assert "must be at least 1" in line
    assert not (tmp_path / "run").exists()


def test_resume_on_other_data_keeps_the_history(tree, tmp_path):
    recipe = load_recipe("demo", {"epochs": 2, "batch_size": 16, "lr": 0.05, "warmup_epochs": 0})
    run = tmp_path / "run"
    config = dict(arch="cifar_resnet20", recipe=recipe, loader="torch", workers=0, progress=False, out=run)
    train(TrainConfig(data=tree, stop_after_epochs=1, **config))
    moved = tmp_path / "moved"
    shutil.copytree(tree, moved)
    train(TrainConfig(data=moved, resume=run, **{k: v for k, v in config.items() if k not in ("out", "recipe")}))
    record = json.loads((run / "run.json").read_text())
    assert record["finished"] and record["data"] == str(moved)
    assert record["data_history"] == [{"data": str(tree), "from_epoch": 0}, {"data": str(moved), "from_epoch": 1}]
