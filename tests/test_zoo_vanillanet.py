"""VanillaNet: deployed form equals the training form after switch_to_deploy, for every depth."""
import pytest
import torch
import torch.nn as nn

import imnet.zoo as zoo
from imnet.errors import ImnetError
from imnet.zoo.measure import count_params
from imnet.zoo.vanillanet import checkpoint_filter_fn

VARIANTS = zoo.list_models("vanillanet_*")


def _random_model(name: str, seed: int = 0, **kwargs) -> nn.Module:
    """``name`` with random weights and non-trivial BN statistics and affine parameters, so a wrong
    fusion cannot pass. Built on the meta device and filled with normal noise: the models' own
    truncated-normal init of up to 237M parameters would dominate the test's time."""
    with torch.device("meta"):
        model = zoo.create_model(name, num_classes=16, **kwargs)
    model.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if key.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif key.endswith("num_batches_tracked"):
                tensor.zero_()
            elif key.endswith("bn.weight") or tensor.dim() == 1 and "weight" in key:
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.02)
    return model.eval()


def test_all_eleven_variants_registered():
    assert len(VARIANTS) == 11


# Fusing the paired 1x1 convolutions is a (dim_out x dim x dim) product: 69 GMACs per 4096-wide stage,
# 232 for the 1.5x models' 6144-wide ones; the deepest and widest variants are marked slow.
HEAVY = {"vanillanet_8", "vanillanet_9", "vanillanet_10", "vanillanet_11", "vanillanet_12", "vanillanet_13", "vanillanet_13_x1_5",
         "vanillanet_13_x1_5_ada_pool"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in VARIANTS])
def test_switch_to_deploy_keeps_logits(name):
    model = _random_model(name)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))  # any size works for the algebra; 64 px keeps the test light
    with torch.no_grad():
        before = model(x)
        model.switch_to_deploy()
        after = model(x)
    assert model.deploy and not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert torch.allclose(after, before, rtol=1e-4, atol=1e-4 * before.abs().max().item())
    # The switched model is exactly what deploy=True builds: same keys and shapes, loadable.
    deployed = _random_model(name, deploy=True)
    assert {k: v.shape for k, v in deployed.state_dict().items()} == \
           {k: v.shape for k, v in model.state_dict().items()}
    deployed.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.allclose(deployed(x), after, rtol=1e-5, atol=1e-6 * after.abs().max().item())


def test_deployed_count_is_published():
    with torch.device("meta"):
        deployed = zoo.create_model("vanillanet_5", deploy=True)
        training = zoo.create_model("vanillanet_5")
    assert round(count_params(deployed) / 1e6, 1) == 15.5 == zoo.get_config("vanillanet_5").published.params
    assert count_params(training) > count_params(deployed)


def test_act_learn_schedules_the_leaky_relus_and_guards_fusion():
    model = zoo.create_model("vanillanet_5", num_classes=4).eval()
    model.change_act(0.0)  # start of deep training: plain ReLU between the paired convs
    assert all(stage.act_learn == 0.0 for stage in model.stages)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        relu_out = model(x)
        model.change_act(1.0)
        identity_out = model(x)
    assert not torch.allclose(relu_out, identity_out, rtol=1e-3, atol=0)  # logits are tiny: relative
    model.change_act(0.5)
    with pytest.raises(ImnetError, match="act_learn == 1"):
        model.switch_to_deploy()


def test_checkpoint_form_must_match_model_form():
    training = zoo.create_model("vanillanet_5", num_classes=4)
    deployed = zoo.create_model("vanillanet_5", num_classes=4, deploy=True)
    with pytest.raises(ImnetError, match="deploy=True"):
        checkpoint_filter_fn(deployed.state_dict(), training)
    with pytest.raises(ImnetError, match="switch_to_deploy"):
        checkpoint_filter_fn(training.state_dict(), deployed)
    assert checkpoint_filter_fn(deployed.state_dict(), deployed).keys() == deployed.state_dict().keys()
