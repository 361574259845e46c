"""Zoo models on a CUDA GPU the way eval and train run them: channels_last, autocast (bf16), and
VanillaNet's fusion on the device. Skipped cleanly where no GPU is present (conftest)."""
import pytest
import torch

import imnet.zoo as zoo


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["simplenetv1_5m_m2", "vanillanet_5", "resnet50", "cifar_preact_resnet56",
                                  "efficientnet_b0"])
def test_channels_last_autocast_matches_cpu(name):
    config = zoo.get_config(name)
    torch.manual_seed(0)
    model = zoo.create_model(name).eval()
    x = torch.randn(4, *config.input_size)
    with torch.no_grad():
        expected = model(x)
        gpu_model = model.cuda().to(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            got = gpu_model(x.cuda().to(memory_format=torch.channels_last)).float().cpu()
    assert got.shape == expected.shape
    scale = expected.abs().max().item()
    assert torch.allclose(got, expected, rtol=5e-2, atol=5e-2 * scale)
    assert (got.argmax(1) == expected.argmax(1)).float().mean() >= 0.75


@pytest.mark.gpu
def test_vanillanet_switch_to_deploy_on_gpu():
    torch.manual_seed(0)
    model = zoo.create_model("vanillanet_6", num_classes=10).cuda().eval()
    x = torch.randn(2, 3, 224, 224, device="cuda")
    with torch.no_grad():
        before = model(x)
        model.switch_to_deploy()
        after = model(x)
    assert all(p.is_cuda for p in model.parameters())
    assert torch.allclose(after, before, rtol=1e-3, atol=1e-3 * before.abs().max().item())
