"""SimpleNetV1: published counts, stride modes, and the official checkpoints' flat layout.

timm 1.0.31 does not ship SimpleNet (``timm.list_models('simplenet*')`` is empty), so the twin here is
the official code's module layout: a flat ``nn.Sequential`` of conv, BN, ReLU(, Dropout2d) and
max-pool, Dropout2d, global max-pool and linear. Its state_dict goes through ``checkpoint_filter_fn``
into imnet's model, and both give the same logits."""
import pytest
import timm
import torch
import torch.nn as nn

import imnet.zoo as zoo
from imnet.zoo.measure import count_params
from imnet.zoo.simplenet import _CIFAR_NO_DROPOUT, LAYOUTS, STRIDE_MODES, SimpleNet, checkpoint_filter_fn


def official_layout(model: SimpleNet) -> nn.Sequential:
    """The official implementation's flat ``features`` for the same variant, built from its rules."""
    layers: list[nn.Module] = []
    chs = 3
    strides = STRIDE_MODES[model.mode]
    for index, layer in enumerate(LAYOUTS[model.layout]):
        if layer == "p":
            layers += [nn.MaxPool2d(2, strides.get(index, 2)), nn.Dropout2d(0.0)]
            continue
        out_chs, kernel = layer
        out_chs = round(out_chs * model.scale)
        layers += [nn.Conv2d(chs, out_chs, kernel, stride=strides.get(index, 1), padding=kernel // 2),
                   nn.BatchNorm2d(out_chs, momentum=0.05), nn.ReLU()]
        if not (model.layout.startswith("cifar") and index in _CIFAR_NO_DROPOUT):
            layers.append(nn.Dropout2d(0.0))
        chs = out_chs
    return nn.Sequential(*layers)


def test_timm_has_no_simplenet_twin():
    assert timm.list_models("simplenet*") == []


@pytest.mark.parametrize("name, size", [("simplenetv1_small_m1_05", 96), ("simplenetv1_small_m2_075", 96),
                                        ("simplenet_cifar", 32)])
def test_official_checkpoint_layout_gives_same_logits(name, size):
    model = zoo.create_model(name, num_classes=10).eval()
    features = official_layout(model)
    classifier = nn.Linear(model.num_features, 10)
    torch.manual_seed(0)
    for module in features:  # non-trivial BN statistics, so a mis-mapped BN shows
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
    official = {f"features.{k}": v for k, v in features.state_dict().items()}
    official.update({f"classifier.{k}": v for k, v in classifier.state_dict().items()})
    model.load_state_dict(checkpoint_filter_fn(official, model))
    features.eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected = classifier(torch.amax(features(x), dim=(-2, -1)))
        assert torch.allclose(model(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, params_m", [("simplenetv1_small_m1_05", 1.51), ("simplenetv1_small_m2_05", 1.51),
                                            ("simplenetv1_small_m1_075", 3.29), ("simplenetv1_small_m2_075", 3.29),
                                            ("simplenetv1_5m_m1", 5.75), ("simplenetv1_5m_m2", 5.75),
                                            ("simplenetv1_9m_m1", 9.51), ("simplenetv1_9m_m2", 9.51)])
def test_published_parameter_counts(name, params_m):
    with torch.device("meta"):
        model = zoo.create_model(name)
    assert round(count_params(model) / 1e6, 2) == params_m == zoo.get_config(name).published.params


def test_cifar_count_is_the_papers_kernels_only():
    model = zoo.create_model("simplenet_cifar")
    kernels = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Conv2d))
    assert round(kernels / 1e6, 2) == 5.48 and model.classifier.out_features == 10
    assert "kernels only" in zoo.get_config("simplenet_cifar").published.params_note


@pytest.mark.parametrize("name, strides", [("simplenetv1_small_m1_05", (2, 2, 2, 1)),
                                           ("simplenetv1_small_m2_05", (2, 2, 1, 2))])
def test_stride_modes(name, strides):
    # m1 strides the first three convs, m2 convs 0, 1 and 3; with the two pools both reach /32.
    model = zoo.create_model(name).eval()
    assert tuple(model.features[i].conv.stride[0] for i in range(4)) == strides
    with torch.no_grad():
        assert model.forward_features(torch.randn(1, 3, 224, 224)).shape[-1] == 7


def test_drop_rates_apply_by_layer_index():
    model = zoo.create_model("simplenetv1_small_m1_05", drop_rates={6: 0.1, 15: 0.2})
    assert model.features[6].drop.p == 0.1 and model.last_drop_rate == 0.2
    assert model.features[0].drop.p == 0.0
