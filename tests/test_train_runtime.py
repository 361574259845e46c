"""imnet train's GPU-path settings that a CPU can show: --deterministic's refused-ops list and the
ops recorded at run time, one DALI pipeline per loader for the whole run, channels_last loaders,
and the switches recorded in run.json."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn

from imnet.testing import prepared_tree
from imnet.train import TrainConfig, load_recipe, train
from imnet.train.runtime import nondeterministic_op, refused_ops
from imnet.zoo import create_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TREE = dict(classes=3, train_per_class=8, val=9, image_size=(40, 36))


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return prepared_tree(tmp_path_factory.mktemp("tree"), **TREE)


def _recipe(**changes):
    return load_recipe("demo", {"epochs": 1, "batch_size": 8, "lr": 0.01, "sched": "cosine", "warmup_epochs": 0,
                                "step_on_epochs": False, **changes})


@pytest.mark.parametrize("name, expected", [
    ("vgg11", ["avgpool AdaptiveAvgPool2d(output_size=(7, 7)): adaptive_avg_pool2d_backward_cuda"]),
    ("vgg16_bn", ["avgpool AdaptiveAvgPool2d(output_size=(7, 7)): adaptive_avg_pool2d_backward_cuda"]),
    ("vanillanet_13_x1_5_ada_pool", [f"stages.{i}.pool AdaptiveMaxPool2d(output_size=({s}, {s})): "
                                     "adaptive_max_pool2d_backward_cuda" for i, s in ((1, 38), (2, 19), (9, 10))]),
    ("resnet50", []),            # global average pooling is a mean: deterministic
    ("vanillanet_13_x1_5", []),
    ("cifar_resnet20", []),
])
def test_refused_ops_on_cuda(name, expected):
    # The ops that made --deterministic abort on CUDA (issue 14): named before training starts.
    with torch.device("meta"):
        model = create_model(name)
    assert refused_ops(model) == expected


def test_torchs_warning_names_the_op():
    assert nondeterministic_op("adaptive_avg_pool2d_backward_cuda does not have a deterministic "
                               "implementation, but you set 'torch.use_deterministic_algorithms(True, "
                               "warn_only=True)'.") == "adaptive_avg_pool2d_backward_cuda"
    assert nondeterministic_op("some other warning") is None


class PutModel(nn.Module):
    """A tiny classifier that runs ``Tensor.put_`` (no deterministic implementation, on the CPU
    too) and a 2x2 adaptive average pool (refused on CUDA)."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        mask = torch.zeros(4, device=x.device).put_(torch.tensor([1, 1], device=x.device),
                                                     torch.ones(2, device=x.device))
        return self.fc(self.pool(self.conv(x) * (1 + mask.sum())).flatten(1))


@pytest.fixture()
def put_model():
    from imnet.zoo import registry
    from imnet.zoo.registry import ModelConfig, register_model

    name = "test_put_model"
    register_model(ModelConfig(name=name, family="test", source="test", input_size=(3, 24, 24), crop_pct=1.0,
                               classifier="fc"))(PutModel)
    yield name
    registry._REGISTRY.pop(name)


def test_deterministic_runs_ops_without_a_deterministic_kernel_and_records_them(tree, tmp_path, put_model):
    # warn_only: the run goes on (it used to abort) and run.json names what ran non-deterministically
    # (seen at run time) and what would on CUDA (known from the modules).
    run = train(TrainConfig(arch=put_model, data=tree, out=tmp_path / "run", recipe=_recipe(), loader="torch",
                            workers=0, deterministic=True, progress=False))
    record = json.loads((run / "run.json").read_text())
    assert record["finished"] and record["deterministic"]
    assert record["nondeterministic_ops"] == ["put_"]
    assert record["refused_on_cuda"] == ["pool AdaptiveAvgPool2d(output_size=2): adaptive_avg_pool2d_backward_cuda"]
    assert record["cudnn_benchmark"] is False and set(record["fp32_precision"]) == {"matmul", "conv"}
    assert not torch.are_deterministic_algorithms_enabled()  # put back for a library caller


def test_dali_run_builds_each_pipeline_once(tree, tmp_path):
    # 3 epochs, EMA (two val passes per epoch), channels_last: one DALI pipeline for train and one
    # for val over the whole run; the train loader reads each epoch's own order.
    recipe = _recipe(epochs=3, ema_decay=0.5)
    run = train(TrainConfig(arch="cifar_resnet20", data=tree, out=tmp_path / "run", recipe=recipe, loader="dali",
                            workers=1, channels_last=True, progress=False))
    record = json.loads((run / "run.json").read_text())
    assert record["finished"] and record["loader"] == "dali-cpu" and record["channels_last"]
    assert record["pipeline_builds"] == {"train": 1, "val": 1}
    assert record["loader_workers"] == {"train": 1, "val": 1}
