"""Every zoo model of issue 4 (native families and library adapters) builds and runs one image at its
input size on CPU: batch 1, eval mode, no autograd; output (1, num_classes)."""
import pytest
import torch

import imnet.zoo as zoo
from imnet.zoo.library import _CLASSIC

NATIVE_FAMILIES = ("simplenet", "vanillanet", "torch_resnet")
MODELS = [n for n in zoo.list_models() if zoo.get_config(n).family in NATIVE_FAMILIES] + [r[0] for r in _CLASSIC]
# Over 2 GMACs or 40M parameters in the default (training) form, as `imnet zoo` measures them, and the
# ones slow on CPU for their depth (Python overhead per module) or depthwise convolutions.
HEAVY = {
    "cifar_resnet164", "cifar_preact_resnet164", "cifar_wrn16_8", "cifar_preact_wrn16_8", "efficientnet_b2",
    "efficientnet_b3", "googlenet",
    "cifar_preact_resnet101_small", "cifar_preact_resnet1202", "cifar_preact_wrn28_10", "cifar_resnet101_small",
    "cifar_resnet1202", "cifar_wrn28_10", "cifar_resnet1001", "cifar_preact_resnet1001", "densenet121", "densenet169", "densenet201", "dla102", "dla102x",
    "dla102x2", "dla169", "dla34", "dla60", "dla60_res2net", "dla60_res2next", "dla60x", "efficientnet_b4",
    "efficientnet_b5", "efficientnet_b6", "efficientnet_b7", "inception_v3", "inception_v4", "preact_resnet101",
    "preact_resnet152", "preact_resnet200", "preact_resnet34", "preact_resnet50", "preact_wide_resnet101_2",
    "preact_wide_resnet50_2", "resnet101", "resnet152", "resnet200", "resnet34", "resnet50", "resnext101_32x4d",
    "resnext50_32x4d", "simplenetv1_9m_m1", "simplenetv1_9m_m2", "vanillanet_10", "vanillanet_11",
    "vanillanet_12", "vanillanet_13", "vanillanet_13_x1_5", "vanillanet_13_x1_5_ada_pool", "vanillanet_5",
    "vanillanet_6", "vanillanet_7", "vanillanet_8", "vanillanet_9", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn",
    "vgg16", "vgg16_bn", "vgg19", "vgg19_bn", "wide_resnet101_2", "wide_resnet50_2",
}


# 1000+ layer residual nets at their random init in eval mode (BN with untrained unit statistics)
# grow their activations exponentially through 333-600 blocks and overflow float32, as in torch-resnet.
OVERFLOW_UNTRAINED = {"cifar_resnet1001", "cifar_resnet1202", "cifar_preact_resnet1001", "cifar_preact_resnet1202"}


def test_heavy_list_names_registered_models():
    assert HEAVY <= set(MODELS) and len(MODELS) >= 100


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in MODELS])
def test_forward_at_input_size(name):
    config = zoo.get_config(name)
    model = zoo.create_model(name).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        logits = model(torch.randn(1, *config.input_size))
    assert logits.shape == (1, config.num_classes)
    assert torch.isfinite(logits).all() or name in OVERFLOW_UNTRAINED
