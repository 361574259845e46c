"""Zoo fidelity (issue 13): every seed-native model computes its original's function.

* The torch-resnet family against the real torch-resnet package (every variant, shortcut options A, B
  and C), torchvision's ResNets, timm's DarkNet-53 and the bsconv package: the reference's seeded
  state_dict goes through the zoo model's ``checkpoint_filter_fn`` and both give the same logits.
* Every family without a package against the recording of its original code
  (``imnet/zoo/originals.json.gz``, facts recorded from the original
  repositories): the zoo model runs the same convolutions in the same order (kernel, stride,
  padding, dilation, groups, bias, output size, what feeds each), the same activations and the same
  classifier input; a state_dict with the original's key names and shapes loads through its
  ``checkpoint_filter_fn`` (which drops exactly the original's dead keys) and gives the original's
  output.
* The structural facts of the issue's table, one test each, and checks that the comparison fails
  where the function differs.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import imnet.zoo as zoo
from imnet.zoo import fidelity
from imnet.zoo.fidelity import (ConvCall, Reference, check_package_reference, check_recording, fingerprint,
                                fingerprints_match, load_originals, recorded_state_shapes, seeded_input,
                                seeded_state_dict, seeded_tensor, trace_model)
from imnet.zoo.measure import measure_model
from imnet.zoo.torch_resnet import default_cfgs as TORCH_RESNETS
from imnet.zoo.torch_resnet import torch_resnet_reference, torchvision_reference

RECORDINGS = load_originals()["models"]


# --- seeded weights are the recordings' ground: they must not drift -----------------------------------

def test_seeded_values_depend_on_the_key_alone():
    a = seeded_state_dict({"x.weight": [4, 3, 3, 3], "x.bias": [4], "bn.running_var": [4]})
    b = seeded_state_dict({"bn.running_var": [4], "x.bias": [4], "x.weight": [4, 3, 3, 3]})
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(seeded_tensor("x.weight", [4, 3, 3, 3]), seeded_tensor("y.weight", [4, 3, 3, 3]))
    # The legacy NumPy stream is frozen: these numbers are what every recording was made with.
    assert seeded_tensor("conv1.weight", [2]).tolist() == pytest.approx([0.6682485938072205, 1.198853611946106])
    assert seeded_input((1, 3))[0].tolist() == pytest.approx([-0.3667158782482147, 1.192082405090332,
                                                            -1.536074161529541])
    assert seeded_tensor("bn.num_batches_tracked", []).dtype == torch.long
    w = seeded_tensor("c.weight", [64, 32, 3, 3])
    assert abs(float(w.var()) - 1 / (32 * 9)) < 0.1 / (32 * 9)  # variance 1/fan-in


def test_fingerprint_sees_a_permutation_and_a_small_change():
    x = torch.randn(2, 64, 7, 7)
    assert fingerprints_match(fingerprint(x), fingerprint(x.clone()))[0]
    same, why = fingerprints_match(fingerprint(x), fingerprint(x[:, torch.randperm(64)]))
    assert not same and "projection" in why
    assert not fingerprints_match(fingerprint(x), fingerprint(x * (1 + 1e-3)))[0]
    assert not fingerprints_match(fingerprint(x), fingerprint(x[:, :32]))[0]


def test_trace_records_convs_inputs_and_dead_code():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm2d(3)
            self.conv = nn.Conv2d(3, 8, 3, 2, 1, groups=1)
            self.unused = nn.Conv2d(3, 8, 1)  # run, result dropped
            self.never = nn.Linear(8, 2)  # built, never run
            self.fc = nn.Linear(8, 5)

        def forward(self, x):
            _ = self.unused(x)
            x = self.conv(F.relu(self.bn(x)))
            return self.fc(F.leaky_relu(x, 0.1).mean((2, 3)))

    with torch.device("meta"):
        trace = trace_model(Net(), (3, 16, 16))
    assert trace.convs == [ConvCall(3, 8, (3, 3), (2, 2), (1, 1), (1, 1), 1, True, (8, 8), "relu")]
    assert trace.activations == ["relu", "leaky_relu(0.1)"]
    assert trace.classifier == "linear 8->5 <- avg_pool(global)"
    assert sorted(trace.dead_keys) == ["never.bias", "never.weight", "unused.bias", "unused.weight"]


# --- the torch-resnet family against the torch-resnet package ----------------------------------------

_HEAVY_TORCH_RESNETS = {"resnet101", "resnet152", "resnet200", "wide_resnet50_2", "wide_resnet101_2",
                        "preact_resnet101", "preact_resnet152", "preact_resnet200", "preact_wide_resnet50_2",
                        "preact_wide_resnet101_2", "cifar_resnet1001", "cifar_resnet1202", "cifar_preact_resnet1001",
                        "cifar_preact_resnet1202", "cifar_resnet101_small", "cifar_preact_resnet101_small",
                        "cifar_wrn28_10", "cifar_preact_wrn28_10", "cifar_resnet164", "cifar_preact_resnet164",
                        "cifar_preact_resnet110", "cifar_resnet110"}


# Every variant (every depth and width) with option B, the default; options A and C (the shortcut code
# paths) on one variant of each block kind, stem and width: a depth only repeats the same blocks.
_ALL_SHORTCUTS = {"resnet18", "resnet50", "preact_resnet18", "preact_resnet50", "wide_resnet50_2",
                  "preact_wide_resnet50_2", "cifar_resnet20", "cifar_resnet164", "cifar_preact_resnet20",
                  "cifar_preact_resnet164", "cifar_resnet18_small", "cifar_preact_resnet50_small", "cifar_wrn16_4",
                  "cifar_preact_wrn16_4"}


def _torch_resnet_cases():
    for name in TORCH_RESNETS:
        for shortcut in ("A", "B", "C") if name in _ALL_SHORTCUTS else ("B",):
            mark = [pytest.mark.slow] if name in _HEAVY_TORCH_RESNETS else []
            yield pytest.param(name, shortcut, marks=mark, id=f"{name}-{shortcut}")


@pytest.mark.parametrize("name, shortcut", list(_torch_resnet_cases()))
def test_torch_resnet_family_equals_the_torch_resnet_package(name, shortcut):
    check = check_package_reference(name, torch_resnet_reference(name, shortcut))
    assert check.status == "same" and check.detail.startswith("bitwise"), check


def test_every_variant_and_every_shortcut_option_is_compared():
    cases = [c.values for c in _torch_resnet_cases()]
    assert {name for name, _ in cases} == set(TORCH_RESNETS)
    assert {s for _, s in cases} == {"A", "B", "C"}
    kinds = {(TORCH_RESNETS[n][0]["block"], TORCH_RESNETS[n][0].get("small_images", False),
              TORCH_RESNETS[n][0].get("width", 1) > 1) for n in TORCH_RESNETS}
    assert kinds == {(TORCH_RESNETS[n][0]["block"], TORCH_RESNETS[n][0].get("small_images", False),
                      TORCH_RESNETS[n][0].get("width", 1) > 1) for n in _ALL_SHORTCUTS}


def test_every_torch_resnet_variant_has_a_package_reference():
    import torch_resnet

    for name in TORCH_RESNETS:
        labels = [r.label for r in fidelity.package_references(name)]
        assert any(label.startswith("torch-resnet ") for label in labels), name
        assert hasattr(torch_resnet, labels[0].split()[1].split("(")[0])


def test_a_shortcut_mismatch_is_caught():
    # The zoo model with option B against torch-resnet's option C: the state_dicts do not fit.
    reference = torch_resnet_reference("cifar_resnet20", "C")
    check = check_package_reference("cifar_resnet20", Reference(reference.label, reference.build,
                                                                requires="torch_resnet", input_size=(3, 32, 32)))
    assert check.status == "differs" and "does not fit" in check.detail


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50",
                                  pytest.param("resnet101", marks=pytest.mark.slow),
                                  pytest.param("resnet152", marks=pytest.mark.slow),
                                  pytest.param("wide_resnet50_2", marks=pytest.mark.slow),
                                  pytest.param("wide_resnet101_2", marks=pytest.mark.slow)])
def test_imagenet_resnets_equal_torchvision(name):
    check = check_package_reference(name, torchvision_reference(name))
    assert check.status == "same" and check.detail == "bitwise", check


# --- other packages: timm's DarkNet-53 (ReLU), bsconv ------------------------------------------------

def test_pmi_darknet53_equals_timms_darknet53_with_relu():
    (check,) = [check_package_reference("pmi_darknet53", r) for r in fidelity.package_references("pmi_darknet53")]
    assert check.reference.startswith("timm darknet53") and check.status == "same", check


_BSCONV = [n for n in zoo.list_models("bsconv_*") if not n.endswith("_pfd")]


def test_every_bsconv_original_has_the_package_as_reference():
    assert len(_BSCONV) == 8
    assert all([r.label.split()[0] for r in fidelity.package_references(n)] == ["bsconv"] for n in _BSCONV)
    assert not any(fidelity.package_references(n + "_pfd") for n in _BSCONV)  # no package has the twins


@pytest.mark.parametrize("name", _BSCONV)
def test_bsconv_models_equal_the_bsconv_package(name):
    (reference,) = fidelity.package_references(name)
    check = check_package_reference(name, reference)
    assert check.status == "same" and check.detail == "bitwise", check


def test_bsconv_s_regularizer_is_the_packages():
    import bsconv.pytorch

    reference = bsconv.pytorch.get_model("cifar_mobilenetv3_large_w1_bsconvs_p1d6", num_classes=100)
    model = zoo.create_model("bsconv_mobilenetv3_large_bsconvs_cifar100")
    config = zoo.get_config("bsconv_mobilenetv3_large_bsconvs_cifar100")
    model.load_state_dict(config.checkpoint_filter(reference.state_dict(), model))
    torch.testing.assert_close(model.regularization_loss(), reference.reg_loss(alpha=1.0))


# --- recordings of the original code -----------------------------------------------------------------

# Their output is computed by `imnet zoo --check`; here their structure and key layout are compared
# (a lighter depth of each family, same blocks, has its output compared here).
_HEAVY_RECORDINGS = {
    "pmi_densenet201", "pmi_densenet264", "pmi_dla102", "pmi_dla102x", "pmi_dla169", "pmi_dla60", "pmi_dla60x",
    "pmi_preactresnet101", "pmi_preactresnet152", "pmi_resnet101", "pmi_resnet152", "pmi_resnext101_2x40d",
    "pmi_resnext101_4x24d", "pmi_resnext101_8x14d", "pmi_resnext50_4x24d", "pmi_resnext50_8x14d", "pmi_vgg16",
    "pmi_vgg19", "pmi_peleenet", "vanillanet_11", "vanillanet_12", "vanillanet_13", "vanillanet_13_x1_5",
    "vanillanet_13_x1_5_ada_pool", "vanillanet_10", "vanillanet_9", "vanillanet_8", "vanillanet_7",
    "pmi_densenet169", "pmi_resnet34", "pmi_preactresnet34", "simplenetv1_5m_m1", "simplenetv1_9m_m1",
    "simplenetv1_5m_m2", "simplenetv1_9m_m2",
}
# Every seed-native model whose original code runs (pmi_googlenet_v1_lrn: its original's LRN calls
# are commented out, the code is pmi_googlenet_v1's, see its function_note).
_NOT_RECORDED = {"pmi_googlenet_v1_lrn"}


def _recording_cases():
    for key, recording in RECORDINGS.items():
        yield pytest.param(key, recording["zoo"] not in _HEAVY_RECORDINGS, id=key)


def test_every_seed_native_model_has_a_recording():
    natives = zoo.list_models(["pmi_*", "vanillanet_*", "simplenet*"])
    recorded = {r["zoo"] for r in RECORDINGS.values()}
    assert set(natives) - recorded == _NOT_RECORDED
    assert recorded <= set(natives)
    assert {f"{k}" for k in RECORDINGS if k.startswith("vanillanet_") and k.endswith("[deploy=True]")} == {
        f"{n}[deploy=True]" for n in zoo.list_models("vanillanet_*")}  # both forms of every VanillaNet
    sources = load_originals()["sources"]
    assert {s["repository"] for s in sources.values()} == {
        "ccq1n/pytorch_model_backbone", "huawei-noah/VanillaNet", "Coderx7/SimpleNet_Pytorch"}


@pytest.mark.parametrize("key, numbers", list(_recording_cases()))
def test_zoo_model_computes_its_originals_function(key, numbers):
    check = check_recording(key, RECORDINGS[key], numbers=numbers)
    assert check.status == "same", f"{key}: {check.detail}"
    assert check.detail.startswith("fingerprint") if numbers else "structure" in check.detail


@pytest.mark.parametrize("key", [k for k in RECORDINGS if k.startswith("pmi_")])
def test_checkpoint_filter_drops_only_the_originals_dead_keys(key):
    recording = RECORDINGS[key]
    config = zoo.get_config(recording["zoo"])
    with torch.device("meta"):
        model = zoo.create_model(recording["zoo"], **recording["zoo_kwargs"])
        state = {k: torch.empty(shape) for k, shape in recorded_state_shapes(recording).items()}
    mapped = config.checkpoint_filter(state, model)
    assert set(mapped) == set(model.state_dict())  # the original's names are the model's
    dropped = set(state) - set(mapped)
    assert dropped <= set(recording["dead_keys"]) | {k for k in dropped if k.endswith("num_batches_tracked")}


def test_a_different_function_is_caught_by_the_fingerprint():
    # Same keys and the same convolutions, but the simple bypass adds the input around four fires.
    recording = dict(RECORDINGS["pmi_squeezenet"], zoo="pmi_squeezenet_simple_bypass")
    check = check_recording("pmi_squeezenet", recording)
    assert check.status == "differs" and "expected" in check.detail


def test_a_different_structure_is_caught_by_the_trace():
    recording = dict(RECORDINGS["pmi_googlenet_v1"], zoo="pmi_googlenet_v1_lrn")
    check = check_recording("pmi_googlenet_v1", recording)
    assert check.status == "differs" and "local_response_norm" in check.detail


# --- the table, fact by fact (read from the original code) ------------------------------------

def _trace(name: str, **kwargs):
    with torch.device("meta"):
        return trace_model(zoo.create_model(name, **kwargs), zoo.get_config(name).input_size)


@pytest.mark.parametrize("name", ["pmi_resnet18", "pmi_resnet34", "pmi_resnet50", "pmi_preactresnet18",
                                  "pmi_preactresnet50"])
def test_seed_resnets_have_no_stem_pool_and_a_strided_layer1(name):
    trace = _trace(name)
    stem = trace.convs[0]
    first = next(c for c in trace.convs[1:] if c.kernel == (3, 3))  # layer1's first 3x3 conv
    assert (stem.kernel, stem.stride, stem.out_size) == ((7, 7), (2, 2), (112, 112))
    assert first.stride == (2, 2) and first.out_size == (56, 56)
    assert trace.convs[1].input_from == "relu"  # the stem feeds layer1 directly: no max-pool
    assert not any(c.input_from.startswith("max_pool") for c in trace.convs)
    shortcut = next(c for c in trace.convs[1:] if c.kernel == (1, 1) and c.stride == (2, 2))
    assert shortcut.in_chs == 64 and shortcut.out_size == (56, 56)  # layer1's shortcut is strided too
    model = zoo.create_model(name)
    assert model.layer1[0].shortcut[0].stride == (2, 2)


def test_pmi_resnets_50_101_152_carry_the_seed_table():
    for depth, params, top1 in ((50, 25.557032, 77.15), (101, 44.54916, 78.25), (152, 60.192808, 78.57)):
        published = zoo.get_config(f"pmi_resnet{depth}").published
        assert (published.params, published.top1) == (params, top1) and "seed 002" in published.note
        assert zoo.get_config(f"resnet{depth}").published.flops is None  # torchvision's figures there


def test_pmi_darknet53_uses_relu():
    trace = _trace("pmi_darknet53")
    assert trace.activations == ["relu"] and len(trace.convs) == 52
    assert trace.classifier == "linear 1024->1000 <- avg_pool(global)"


def test_complex_bypass_shortcut_is_conv_bn_relu():
    model = zoo.create_model("pmi_squeezenet_complex_bypass")
    for index in (2, 4, 6, 8):
        shortcut = getattr(model, f"conv_fire{index}")
        assert isinstance(shortcut.relu, nn.ReLU) and shortcut.conv.kernel_size == (1, 1)
    assert not hasattr(model, "conv_fire3")
    assert "conv_fire2.conv.weight" in RECORDINGS["pmi_squeezenet_complex_bypass"]["state_dict"]


def test_densenet_stem_is_bn_relu_conv_and_new_features_come_first():
    trace = _trace("pmi_densenet121")
    assert trace.convs[0].input_from == "relu" and trace.convs[0].in_chs == 3
    assert trace.convs[1].input_from == "relu"  # the first dense layer: BN-ReLU of the max-pool's output
    assert trace.classifier == "linear 1024->1000 <- avg_pool(global)"
    model = zoo.create_model("pmi_densenet121").eval()
    layer = model.dense1[0]
    x = torch.randn(1, 64, 8, 8)
    with torch.no_grad():
        out = layer(x)
    torch.testing.assert_close(out[:, 32:], x)  # cat([new, x])
    config = zoo.get_config("pmi_densenet121")
    assert "never applied" in config.function_note and config.published.params == 7.978734
    # The head the original builds (and never applies) is in its dead keys, and in this model's count.
    assert {"bn.weight", "linear.weight"} <= set(RECORDINGS["pmi_densenet121"]["dead_keys"])


def test_peleenet_returns_logits_the_original_log_probabilities():
    recording = RECORDINGS["pmi_peleenet"]
    assert recording["output"] == "log_softmax" and "log_softmax" in zoo.get_config("pmi_peleenet").function_note
    model = zoo.create_model("pmi_peleenet").eval()
    model.load_state_dict(seeded_state_dict(recorded_state_shapes(recording)))
    with torch.no_grad():
        logits = model(seeded_input((1, 3, 224, 224)))
    assert not fingerprints_match(recording["fingerprint"], fingerprint(logits))[0]
    assert fingerprints_match(recording["fingerprint"], fingerprint(F.log_softmax(logits, 1)))[0]


def test_vanillanet_ada_pool_is_the_released_weights_network():
    trace = _trace("vanillanet_13_x1_5_ada_pool", deploy=True)
    stem = trace.convs[0]
    assert (stem.kernel, stem.stride, stem.padding, stem.out_size) == ((4, 4), (3, 3), (1, 1), (75, 75))
    model = zoo.create_model("vanillanet_13_x1_5_ada_pool", deploy=True)
    pools = [s.pool.output_size for s in model.stages if isinstance(s.pool, nn.AdaptiveMaxPool2d)]
    assert pools == [(38, 38), (19, 19), (10, 10)]
    measured = measure_model("vanillanet_13_x1_5_ada_pool", deploy=True)
    assert round(measured.gmacs, 2) == 48.98 and zoo.get_config("vanillanet_13_x1_5_ada_pool").published.macs == 48.9
    # The other 1.5x model keeps the 4x4/4 stem.
    assert _trace("vanillanet_13_x1_5", deploy=True).convs[0].stride == (4, 4)


def test_simplenet_cifar_last_dropout_reads_index_15():
    model = zoo.create_model("simplenet_cifar", drop_rates={15: 0.3, 17: 0.5})
    assert model.last_drop_rate == 0.3 and model.features[15].drop.p == 0.3
    assert zoo.create_model("simplenet_cifar", drop_rates={17: 0.5}).last_drop_rate == 0.0


def test_simplenet_filter_follows_dropout_given_to_a_layer_without_one():
    # The official code adds a Dropout2d after a cfg-None layer when drop_rates names it, which shifts
    # the flat indices of every later layer.
    from imnet.zoo.simplenet import checkpoint_filter_fn

    model = zoo.create_model("simplenet_cifar", drop_rates={3: 0.1})
    # flat layout: conv0 (0-3: conv, bn, relu, drop), conv1 (4-7), conv2 (8-11), conv3 with dropout
    # now (12-15), pool (16-17), conv5 at 18
    state = {f"features.{k}.weight": torch.zeros(1) for k in (12, 13, 18)}
    renamed = checkpoint_filter_fn(state, model)
    assert {"features.3.conv.weight", "features.3.bn.weight", "features.5.conv.weight"} == set(renamed)


def test_dla_and_classic_docstrings_name_their_sources():
    import imnet.zoo.pmi_classic as pmi_classic
    import imnet.zoo.pmi_dla as pmi_dla

    for module in (pmi_classic, pmi_dla):
        assert "could not be read" not in module.__doc__ and "unidentified" not in module.__doc__
    assert "models/dlanet.py" in pmi_dla.__doc__ and "1,037" in pmi_dla.__doc__


def test_zoo_check_function_column_names_the_references(capsys):
    from imnet.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["zoo", "--check", "--filter", "resnet18"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    line = next(line for line in out.splitlines() if " resnet18" in line)
    assert line.startswith("ok         same        resnet18")
    assert "torch-resnet ResNet18() (bitwise)" in line and "torchvision resnet18 (bitwise)" in line
