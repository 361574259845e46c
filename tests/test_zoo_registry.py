"""Zoo registry, library adapters and pass-through, measurement, the `imnet zoo` table and --check."""
import csv
import io
import json

import pytest
import torch
import torch.nn as nn

import imnet.zoo as zoo
from imnet.cli import main
from imnet.errors import ImnetError
from imnet.zoo import registry
from imnet.zoo.library import _CLASSIC, register_library_model
from imnet.zoo.measure import count_macs, count_params, measure_model
from imnet.zoo.table import check_config, check_models, format_check, render_rows, zoo_rows

NATIVE_FAMILIES = ("simplenet", "vanillanet", "torch_resnet")


def test_registry_holds_the_issue4_zoo():
    names = zoo.list_models()
    assert len(names) >= 100
    for name in ["simplenetv1_small_m1_05", "simplenetv1_9m_m2", "simplenet_cifar", "vanillanet_5",
                 "vanillanet_13_x1_5_ada_pool", "resnet200", "preact_wide_resnet50_2", "cifar_resnet1202",
                 "cifar_preact_resnet18_small", "cifar_wrn28_10", "vgg19_bn", "resnext101_32x4d",
                 "mobilenetv1_100", "ghostnet_100", "efficientnet_b7", "inception_v4", "dla169"]:
        assert name in names
    assert zoo.list_models("vanillanet_1?") == ["vanillanet_10", "vanillanet_11", "vanillanet_12",
                                                "vanillanet_13"]
    assert zoo.list_models(["resnet18", "resnet34"]) == ["resnet18", "resnet34"]


def test_unknown_name_suggests_close_names():
    with pytest.raises(ImnetError, match="did you mean.*vanillanet_5"):
        zoo.get_config("vanilanet_5")
    with pytest.raises(ImnetError, match="unknown model 'zzzz'"):
        zoo.create_model("zzzz")


@pytest.mark.parametrize("name, library_type", [("timm/resnet10t", "timm.models.resnet.ResNet"),
                                                ("tv/alexnet", "torchvision.models.alexnet.AlexNet")])
def test_library_pass_through(name, library_type):
    model = zoo.create_model(name, num_classes=7).eval()
    assert f"{type(model).__module__}.{type(model).__name__}" == library_type
    config = zoo.get_config(name)
    assert config.name == name and config.weights is not None
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 7)
    assert name not in zoo.list_models()


@pytest.mark.parametrize("name, hint", [("timm/resnet5O", "timm has no ImageNet classifier"),
                                        ("tv/resnet05", "did you mean resnet50")])
def test_pass_through_unknown_names(name, hint):
    with pytest.raises(ImnetError, match=hint):
        zoo.get_config(name)


def test_library_configs_carry_the_library_eval_config():
    inception = zoo.get_config("inception_v4")  # timm: 299 px, Inception mean/std, HF hub weights
    assert inception.input_size == (3, 299, 299) and inception.mean == (0.5, 0.5, 0.5)
    assert inception.interpolation == "bicubic" and inception.weights.hf_hub_id.startswith("timm/")
    b7 = zoo.get_config("efficientnet_b7")  # torchvision: crop 600 of resize 600, bicubic
    assert b7.input_size == (3, 600, 600) and b7.crop_pct == 1.0 and b7.interpolation == "bicubic"
    assert b7.weights.url.endswith(b7.weights.filename)
    vgg = zoo.get_config("vgg16")
    assert vgg.published.params == 138.357544 and vgg.published.macs == pytest.approx(15.47)


def test_register_library_model_helper(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    config = register_library_model("test_tiny_resnet", "resnet10t", library="timm", family="test",
                                    builder_kwargs={"drop_rate": 0.1}, crop_pct=0.9)
    assert zoo.get_config("test_tiny_resnet") is config
    assert config.crop_pct == 0.9 and config.source == "timm:resnet10t" and config.classifier == "fc"
    model = zoo.create_model("test_tiny_resnet", num_classes=3)
    assert model.drop_rate == 0.1 and model.fc.out_features == 3


def test_count_params_and_macs_of_a_known_layer():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Flatten(), nn.Linear(8 * 4 * 4, 5))
    assert count_params(model) == 3 * 8 * 9 + 8 + 128 * 5 + 5
    assert count_macs(model, (3, 4, 4)) == 3 * 8 * 9 * 16 + 128 * 5


def test_measure_model_matches_torchvision_docs():
    measured = measure_model("resnet18")  # torchvision documents 11,689,512 params, 1.814 GFLOPS (MACs)
    assert measured.params == 11_689_512
    assert round(measured.gmacs, 3) == 1.814


def _config(**published):
    return zoo.ModelConfig(name="probe", family="test", source="test", published=zoo.Published(**published))


def _measurement(params, macs):
    from imnet.zoo.measure import Measurement

    return Measurement(name="probe", params=params, macs=macs, input_size=(3, 224, 224))


@pytest.mark.parametrize("published, params, macs, status", [
    (dict(params=5.75, params_precision=2, macs=1.0), 5_752_800, 1_010_000_000, "ok"),
    (dict(params=5.75, params_precision=2), 5_756_000, 0, "failed"),  # 5.76 at 2 decimals
    (dict(params=5.7, params_precision=1, macs=1.0), 5_700_000, 1_030_000_000, "failed"),  # 3% off
    (dict(params=5.7, params_precision=1, flops=2.0), 5_700_000, 1_010_000_000, "ok"),  # FLOPs = 2 MACs
    (dict(params=5.48, params_precision=2, params_note="kernels only"), 5_498_378, 0, "explained"),
    (dict(params=1.0, params_precision=1, macs=1.0, macs_note="other counting"), 1_000_000, 2e9, "explained"),
])
def test_check_rules(published, params, macs, status):
    result = check_config(_config(**published), _measurement(params, int(macs)))
    assert result.status == status
    if status != "ok":
        assert result.messages and "probe" in format_check([result])


def test_check_passes_for_every_native_and_adapter_model():
    # The CIFAR ResNets' table counts are checked in test_zoo_torch_resnet (building the 1000-layer
    # ones twice would double the cost).
    # torchvision-documented adapters compare torchvision with itself (resnet18 below checks the method).
    mine = [n for n in zoo.list_models() if zoo.get_config(n).family in NATIVE_FAMILIES
            and not n.startswith("cifar_")] + [r[0] for r in _CLASSIC if r[-1] is not None]
    results = check_models(mine, progress=False)
    assert [r.name for r in results if r.status == "failed"] == []
    checked = {r.name for r in results}
    # Every SimpleNet and VanillaNet has a published count, so each is checked.
    assert set(zoo.list_models(["simplenet*", "vanillanet*"])) <= checked
    explained = {r.name for r in results if r.status == "explained"}
    assert explained == {"simplenet_cifar", "inception_v3", "inception_v4"} | set(zoo.list_models("efficientnet_b?"))


def test_vanillanet_counts_are_deployed_form():
    result = check_models("vanillanet_9", progress=False)[0]
    assert result.status == "ok" and result.measurement.params == count_params(
        zoo.create_model("vanillanet_9", deploy=True))


def test_table_formats():
    rows = zoo_rows(["resnet18", "simplenet_cifar", "vanillanet_5"], progress=False)
    parsed = json.loads(render_rows(rows, "json"))
    assert [r["name"] for r in parsed] == ["resnet18", "simplenet_cifar", "vanillanet_5"]
    assert parsed[0]["params"] == 11_689_512 and parsed[2]["counted_as"] == "deploy=True"
    table = list(csv.DictReader(io.StringIO(render_rows(rows, "csv"))))
    assert table[1]["pub_params_m"] == "5.48" and table[1]["img_size"] == "32"
    md = render_rows(rows, "md").splitlines()
    assert md[0].startswith("| name | family") and len(md) == 2 + 3 and "11,689,512" in md[2]
    with pytest.raises(ValueError):
        render_rows(rows, "xml")


def test_cli_zoo_table_check_and_errors(capsys, monkeypatch):
    with pytest.raises(SystemExit) as exit_info:
        main(["zoo", "--filter", "simplenetv1_small_*", "--format", "json"])
    assert exit_info.value.code == 0
    assert len(json.loads(capsys.readouterr().out)) == 4

    with pytest.raises(SystemExit) as exit_info:
        main(["zoo", "--check", "--filter", "simplenet*"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and "9 models checked" in out
    assert "explained  same        simplenet_cifar" in out  # counted differently, computes the original's function
    assert "function: 9 same as their references, 0 differ" in out

    with pytest.raises(SystemExit) as exit_info:
        main(["zoo", "--filter", "no_such_model*"])
    assert exit_info.value.code == 2 and "no zoo model matches" in capsys.readouterr().err

    # A model whose published count is wrong fails the check, named, with exit status 1.
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    bad = zoo.get_config("cifar_resnet20").with_overrides(
        name="bad_cifar_resnet20", published=zoo.Published(params=0.4, params_precision=1, num_classes=10))
    registry.register_model(bad)(registry._REGISTRY["cifar_resnet20"].builder)
    with pytest.raises(SystemExit) as exit_info:
        main(["zoo", "--check", "--no-function", "--filter", "bad_cifar_resnet20"])
    assert exit_info.value.code == 1
    assert "FAILED     -           bad_cifar_resnet20: params 272,474 = 0.3M, published 0.4M" in capsys.readouterr().out
