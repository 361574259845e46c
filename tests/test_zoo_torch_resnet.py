"""torch-resnet families: torchvision twins, published counts, shortcut options, the head API."""
import pytest
import torch
import torch.nn as nn
import torchvision

import imnet.zoo as zoo
from imnet.errors import ImnetError
from imnet.zoo.measure import count_params


# Logits against torchvision's ResNets and the torch-resnet package (every variant, shortcut options A,
# B, C): tests/test_zoo_fidelity.py.


@pytest.mark.parametrize("name, params", [("resnet50", 25_557_032), ("resnet101", 44_549_160),
                                          ("resnet152", 60_192_808)])
def test_imagenet_resnets_carry_torchvisions_figures(name, params):
    # pytorch_model_integration's ResNet rows (the same counts) are another network: its pmi_resnet*.
    with torch.device("meta"):
        ours = count_params(zoo.create_model(name))
        theirs = count_params(torchvision.models.get_model(name, weights=None))
    assert ours == theirs == params
    published = zoo.get_config(name).published
    meta = torchvision.models.get_model_weights(name).IMAGENET1K_V1.meta
    assert published.params == meta["num_params"] / 1e6 and published.macs == meta["_ops"]
    assert (published.top1, published.top5) == (meta["_metrics"]["ImageNet-1K"]["acc@1"],
                                                meta["_metrics"]["ImageNet-1K"]["acc@5"])
    assert "torchvision" in published.note and published.flops is None
    assert zoo.get_config(f"pmi_{name}").published.params == params / 1e6


def test_resnet18_34_stay_torchvision_compatible():
    # pytorch_model_integration's ResNet18/34 rows count a 1x1 projection in the first block.
    for name, pmi_row in [("resnet18", 11_693_736), ("resnet34", 21_801_896)]:
        with torch.device("meta"):
            ours = count_params(zoo.create_model(name))
        assert ours == count_params(torchvision.models.get_model(name, weights=None)) == pmi_row - 4224


CIFAR_TABLE = [("cifar_resnet20", 0.3), ("cifar_resnet32", 0.5), ("cifar_resnet44", 0.7), ("cifar_resnet56", 0.9),
               ("cifar_resnet110", 1.7), ("cifar_resnet164", 1.7), ("cifar_resnet1001", 10.3),
               ("cifar_resnet1202", 19.4), ("cifar_resnet18_small", 11.2), ("cifar_resnet34_small", 21.3),
               ("cifar_resnet50_small", 23.5), ("cifar_resnet101_small", 42.5)]


@pytest.mark.parametrize("name, params_m", CIFAR_TABLE + [(n.replace("cifar_", "cifar_preact_"), p)
                                                          for n, p in CIFAR_TABLE])
def test_cifar_counts_at_10_classes(name, params_m):
    with torch.device("meta"):
        model = zoo.create_model(name, num_classes=10)
    assert round(count_params(model) / 1e6, 1) == params_m


@pytest.mark.parametrize("shortcut, extra", [("A", -1), ("B", 0), ("C", 1)])
def test_shortcut_options(shortcut, extra):
    baseline = count_params(zoo.create_model("cifar_resnet20"))
    model = zoo.create_model("cifar_resnet20", shortcut=shortcut).eval()
    params = count_params(model)
    assert (params > baseline) - (params < baseline) == extra  # A: no projections; C: one on every block
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_unknown_shortcut_is_a_user_error():
    with pytest.raises(ImnetError, match="shortcut must be one of A, B, C"):
        zoo.create_model("cifar_resnet20", shortcut="D")


@pytest.mark.parametrize("name", ["cifar_preact_resnet20", "cifar_resnet20"])
def test_set_head_and_out_planes(name):
    model = zoo.create_model(name, num_classes=0).eval()
    assert isinstance(model.head, nn.Identity) and model.out_planes == 64
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert model(x).shape == (2, 64)
        model.set_head(nn.Linear(model.out_planes, 3))
        assert model(x).shape == (2, 3)


def test_wide_cifar_resnets_widen_and_drop():
    model = zoo.create_model("cifar_wrn16_8")
    assert model.out_planes == 64 * 8 and model.layers[0][0].dropout.p == 0.3
