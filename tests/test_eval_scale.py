"""imnet eval at scale, as far as a CPU shows it: any shard size under torchrun (an empty one, a rank
whose images are all skipped), --compile over many models of one class, steady-state speed apart
from start-up, and the numerics switches recorded."""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import time

import pytest
import torch
import torch.nn as nn

from imnet.eval.runner import EvalOptions, evaluate
from imnet.eval.store import read_model
from imnet.testing import prepared_tree
from imnet.zoo import create_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CLASSES = 3


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    base = tmp_path_factory.mktemp("scale")
    data = prepared_tree(base, classes=CLASSES, train_per_class=2, val=9, image_size=(48, 40))
    weights = base / "weights"
    weights.mkdir()
    torch.manual_seed(0)
    for name in ("cifar_resnet20", "cifar_resnet32", "cifar_resnet44", "cifar_resnet56",
                 "cifar_resnet18_small", "cifar_resnet34_small"):
        torch.save(create_model(name, num_classes=CLASSES).state_dict(), weights / f"{name}.pth")
    return data, weights


def _torchrun(args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "imnet", *args], capture_output=True, text=True, env=env, timeout=timeout)


def test_torchrun_limit_1_leaves_rank_0_empty_and_counts_the_image_once(tree, tmp_path):
    # --limit 1 over 2 ranks: rank 0's shard is empty (DALI's shard rule), rank 1 has the image.
    # The gather used to abort in gloo (scores of shape (0, K, 0) against (1, K, C)).
    data, weights = tree
    proc = _torchrun(["eval", "--arch", "cifar_resnet20", "--weights", str(weights / "cifar_resnet20.pth"),
                      "--data", str(data), "--img-size", "32", "--crops", "1", "10", "--limit", "1",
                      "--loader", "torch", "--workers", "0", "--out", str(tmp_path / "out")])
    assert proc.returncode == 0, proc.stderr[-3000:]
    preds = read_model(tmp_path / "out" / "predictions.h5", "cifar_resnet20")
    assert preds.indices.tolist() == [0] and preds.info["world_size"] == 2
    assert {c: v.shape for c, v in preds.logits.items()} == {1: (1, CLASSES), 10: (1, CLASSES)}
    with (tmp_path / "out" / "results.csv").open() as f:
        assert [int(r["n_images"]) for r in csv.DictReader(f)] == [1, 1]


def test_torchrun_rank_whose_images_are_all_skipped(tree, tmp_path):
    # --limit 4 over 2 ranks: rank 1 reads images 2 and 3, both corrupt; with --skip-bad it scores
    # nothing, and every image is still counted once (2 scored, 2 skipped), with DALI's loader.
    data, weights = tree
    copy = tmp_path / "tree"
    shutil.copytree(data, copy)
    lines = (copy / "meta" / "val.txt").read_text().splitlines()
    victims = [lines[i].split()[0] for i in (2, 3)]
    for victim in victims:
        (copy / "val" / victim).write_bytes(b"\xff\xd8\xff\xe0 not a whole JPEG")
    proc = _torchrun(["eval", "--arch", "cifar_resnet20", "--weights", str(weights / "cifar_resnet20.pth"),
                      "--data", str(copy), "--img-size", "32", "--limit", "4", "--skip-bad",
                      "--loader", "dali", "--workers", "1", "--out", str(tmp_path / "out")])
    assert proc.returncode == 0, proc.stderr[-3000:]
    preds = read_model(tmp_path / "out" / "predictions.h5", "cifar_resnet20")
    assert preds.indices.tolist() == [0, 1] and preds.info["partial"]
    assert [s[1] for s in preds.info["skipped_images"]] == victims
    assert preds.info["loader"] == "dali-cpu"


def test_compile_over_six_models_of_one_class_compiles_each(tree, tmp_path, monkeypatch):
    # Six ResNets share ResNet.forward's code object. Without a dynamo reset per model the
    # recompile limit (lowered to 2 here, 8 by default) silently leaves later models eager while
    # results said "compile: True". Each model must really compile, with one graph (the last, partial
    # batch is padded), and score exactly what the eager model scores.
    import torch._dynamo

    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 2)
    data, weights = tree
    names = sorted(p.stem for p in weights.glob("*.pth"))
    options = dict(data=data, archs=names, weights=weights, loader="torch", workers=0, batch_size=4,
                   img_size=32, limit=6)
    evaluate(EvalOptions(out=tmp_path / "compiled", compile=True, compile_backend="eager", **options))
    evaluate(EvalOptions(out=tmp_path / "eager", **options))
    for name in names:
        compiled = read_model(tmp_path / "compiled" / "predictions.h5", name)
        record = compiled.info["compile"]
        assert record["requested"] and record["backend"] == "eager", record
        assert record["ran"] == "compiled" and record["frames_compiled"] >= 1, (name, record)
        assert record["graphs"] == 1, (name, record)  # one shape: full and padded last batch alike
        eager = read_model(tmp_path / "eager" / "predictions.h5", name)
        assert eager.info["compile"] == {"requested": False, "ran": "eager"}
        assert (compiled.logits[1] == eager.logits[1]).all(), name
    with (tmp_path / "compiled" / "results.csv").open() as f:
        assert {r["compiled"] for r in csv.DictReader(f)} == {"compiled"}


class SlowFirstForward(nn.Module):
    """A small classifier whose first forward pass takes 1.5 s longer, as cuDNN autotuning or
    compilation make a real one's."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))
        self.warm = False

    def forward(self, x):
        if not self.warm and torch.is_inference_mode_enabled():  # the eval pass, not the MAC count
            self.warm = True
            time.sleep(1.5)
        return self.net(x)


@pytest.fixture()
def slow_first_model():
    from imnet.zoo import registry
    from imnet.zoo.registry import ModelConfig, register_model

    name = "test_slow_first_forward"
    register_model(ModelConfig(name=name, family="test", source="test", input_size=(3, 32, 32), crop_pct=1.0,
                               classifier="net.3"))(SlowFirstForward)
    yield name
    registry._REGISTRY.pop(name)


def test_images_per_sec_is_steady_state_and_start_up_is_separate(tree, tmp_path, slow_first_model):
    data, _ = tree
    weights = tmp_path / "w.pth"
    torch.save(SlowFirstForward(CLASSES).state_dict(), weights)
    evaluate(EvalOptions(data=data, out=tmp_path / "out", archs=[slow_first_model], weights=weights,
                         loader="torch", workers=0, batch_size=3, img_size=32))
    info = read_model(tmp_path / "out" / "predictions.h5", slow_first_model).info
    assert info["startup_s"] >= 1.5
    # 9 images in 3 batches: the steady rate counts the 6 images after the first batch over the time
    # after it, so it leaves the 1.5 s out; with start-up, 9 images took more than 1.5 s.
    assert info["images_per_sec_with_startup"] < 9 / 1.5
    assert info["images_per_sec"] > 3 * info["images_per_sec_with_startup"]
    assert info["seconds"] >= info["startup_s"]
    assert info["cudnn_benchmark"] is False and info["tf32"] is False  # CPU: recorded as set
    with (tmp_path / "out" / "results.csv").open() as f:
        row = next(csv.DictReader(f))
    assert float(row["startup_s"]) >= 1.5 and float(row["images_per_sec"]) == pytest.approx(info["images_per_sec"], rel=1e-2)


@pytest.mark.parametrize("device, tf32", [("cpu", False), ("cuda:0", False), ("cuda:0", True)])
def test_numerics_switches_are_set_recorded_and_restored(device, tf32):
    # (The switches are process flags, so a GPU is not needed to see them set.) Inside, torch's
    # cuDNN TF32 flag must stay readable: inductor's conv templates read it.
    from imnet.eval.runner import numerics

    before = (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    with numerics(device, tf32) as switches:
        assert switches == {"cudnn_benchmark": device.startswith("cuda"), "tf32": tf32}
        assert torch.backends.cudnn.benchmark is device.startswith("cuda")
        assert torch.backends.cudnn.allow_tf32 is tf32 and torch.backends.cuda.matmul.allow_tf32 is tf32
    assert (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32,
            torch.backends.cuda.matmul.allow_tf32) == before
