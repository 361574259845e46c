"""Recipes that reproduce the seeds: per-model defaults, the fields against the seeds' published commands
(written out here from the READMEs, not imported), the schedules against the seeds' own formulas,
VanillaNet's layer-decay grouping, the weight-decay schedule, `--show-recipe`, and a short CPU run of each
recipe on both loaders."""
from __future__ import annotations

import csv
import json
import math

import pytest
import torch
import yaml

from imnet.cli import main
from imnet.errors import ImnetError
from imnet.train import RECIPES, TrainConfig, load_recipe, train
from imnet.train.parts import (WeightDecaySchedule, build_optimizer, build_scheduler,
                               build_weight_decay_schedule, layer_decay_groups)
from imnet.train.recipes import default_recipe, default_recipe_note

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# The VanillaNet README's per-variant flags: --lr, --weight_decay, --mixup, --layer_decay (--layer_decay_num_layers)
VANILLANET_README = {
    5: (3.5e-3, 0.35, 0.1, None),
    6: (4.8e-3, 0.32, 0.15, (0.8, 4)),
    7: (4.7e-3, 0.35, 0.4, (0.8, 5)),
    8: (3.5e-3, 0.3, 0.4, None),
    9: (3.5e-3, 0.3, 0.4, None),
    10: (3.5e-3, 0.25, 0.4, None),
}


def _lrs(recipe, updates_per_epoch: int, model=None) -> list[float]:
    """The lr of the first parameter group, per update, over the whole schedule (timm's scheduler)."""
    model = model or torch.nn.Linear(4, 2)
    optimizer = build_optimizer(model, recipe, recipe.lr_base)
    scheduler = build_scheduler(optimizer, recipe, updates_per_epoch)
    out = []
    for epoch in range(recipe.epochs):
        scheduler.step(epoch)
        for update in range(updates_per_epoch):
            scheduler.step_update(epoch * updates_per_epoch + update)
            out.append(optimizer.param_groups[0]["lr"])
    return out


# --- the fields, per variant ----------------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(VANILLANET_README))
def test_vanillanet_recipes_hold_the_readme_command_of_each_variant(variant):
    lr, wd, mixup, layer_decay = VANILLANET_README[variant]
    name = f"vanillanet_{variant}"
    assert default_recipe(name) == name and default_recipe_note(name) == ""
    recipe = RECIPES[name]
    assert (recipe.lr_base, recipe.weight_decay, recipe.mixup) == (lr, wd, mixup)
    assert (recipe.layer_decay, recipe.layer_decay_layers) == (layer_decay or (1.0, 0))
    # shared by every command: 8 GPUs x 128, 300 epochs, --decay_epochs 100, --drop 0.05, LAMB, RandAugment,
    # BCE, EMA 0.99996; and main.py's defaults for what the command leaves out
    assert (recipe.batch_size, recipe.lr_base_size, recipe.accum_steps, recipe.epochs) == (128, 1024, 1, 300)
    assert (recipe.act_learn_epochs, recipe.act_learn_shape, recipe.drop_rate) == (100, "linear", 0.05)
    assert (recipe.opt, recipe.opt_eps, recipe.auto_augment, recipe.loss) == ("lamb", 1e-8, "rand-m7-mstd0.5-inc1", "bce")
    assert recipe.ema_decay == 0.99996 and recipe.filter_bias_and_bn
    assert (recipe.sched, recipe.min_lr, recipe.warmup_epochs, recipe.warmup_lr, recipe.warmup_prefix,
            recipe.step_on_epochs) == ("cosine", 1e-6, 5, 0.0, True, False)
    assert (recipe.label_smoothing, recipe.cutmix, recipe.mixup_prob, recipe.mixup_switch_prob) == (0.1, 1.0, 1.0, 0.5)
    assert (recipe.aug, recipe.train_interpolation, recipe.color_jitter) == ("rrc", "bicubic", 0.4)
    assert (recipe.reprob, recipe.remode, recipe.recount, recipe.weight_decay_end) == (0.25, "pixel", 1, None)


@pytest.mark.parametrize("name", ["vanillanet_11", "vanillanet_12", "vanillanet_13", "vanillanet_13_x1_5",
                                  "vanillanet_13_x1_5_ada_pool"])
def test_vanillanet_variants_without_a_published_command_say_so(name):
    assert default_recipe(name) == "vanillanet_10"
    assert "publishes no training command" in default_recipe_note(name)
    assert RECIPES["vanillanet"] == RECIPES["vanillanet_5"].with_overrides(name="vanillanet")


def test_simplenet_recipe_is_the_readme_command_over_timm_0_6_1_defaults():
    recipe = RECIPES["simplenetv1"]
    # -b 256 --sched step --epochs 900 --decay-epochs 1 --decay-rate 0.981 --opt rmsproptf --opt-eps .001
    # --warmup-lr 1e-3 --weight-decay 0.00003 --drop 0.0 --lr .0195 --model-ema --model-ema-decay 0.9999
    assert (recipe.batch_size, recipe.lr_base_size, recipe.lr_base, recipe.epochs) == (256, 256, 0.0195, 900)
    assert (recipe.sched, recipe.decay_epochs, recipe.decay_rate, recipe.step_on_epochs) == ("step", 1.0, 0.981, True)
    assert (recipe.opt, recipe.opt_eps, recipe.momentum, recipe.weight_decay) == ("rmsproptf", 1e-3, 0.9, 3e-5)
    assert (recipe.warmup_lr, recipe.drop_rate, recipe.ema_decay) == (1e-3, 0.0, 0.9999)
    # that train.py's defaults for the rest: 3 warm-up epochs, smoothing 0.1, colour jitter 0.4, random
    # interpolation, RandomResizedCrop, no auto-augment, erasing or mixup
    assert (recipe.warmup_epochs, recipe.label_smoothing, recipe.color_jitter, recipe.train_interpolation) == (3, 0.1, 0.4, "random")
    assert (recipe.aug, recipe.auto_augment, recipe.reprob, recipe.mixup, recipe.cutmix) == ("rrc", "", 0.0, 0.0, 0.0)
    import imnet.zoo as zoo

    for name in zoo.list_models("simplenetv1_*"):
        expected = "simplenetv1-small" if name.startswith("simplenetv1_small_") else "simplenetv1"
        assert default_recipe(name) == expected, name
    assert RECIPES["simplenetv1-small"].weight_decay == 1e-5
    phase2 = RECIPES["simplenetv1-phase2"]  # --opt-eps .002 --weight-decay 0.00002 --drop-rates ... --smoothing 0.0
    assert (phase2.opt_eps, phase2.weight_decay, phase2.label_smoothing) == (2e-3, 2e-5, 0.0)
    assert dict(phase2.drop_rates) == {11: 0.02, 12: 0.05, 13: 0.05}


def test_torchvision_new_recipe():
    recipe = RECIPES["torchvision"]
    assert (recipe.epochs, recipe.batch_size, recipe.lr_base, recipe.lr_base_size, recipe.opt) == (600, 128, 0.5, 1024, "momentum")
    assert (recipe.auto_augment, recipe.reprob, recipe.remode, recipe.label_smoothing) == ("ta_wide", 0.1, "const", 0.1)
    assert (recipe.mixup, recipe.cutmix, recipe.weight_decay, recipe.train_img_size, recipe.val_resize_size) == (0.2, 1.0, 2e-5, 176, 232)
    # --model-ema-steps 32 --model-ema-decay 0.99998 on 8 x 128 over 600 epochs, as a per-step decay
    assert recipe.ema_decay ** 32 == pytest.approx(1 - (1 - 0.99998) * 1024 * 32 / 600, rel=1e-6)


def test_every_zoo_model_names_a_recipe():
    import imnet.zoo as zoo

    for name in zoo.list_models():
        assert default_recipe(name) in RECIPES, name
    assert default_recipe("resnet50") == default_recipe("pmi_vgg11") == default_recipe(None) == "classic"


# --- schedules against the seeds' own formulas ----------------------------------------------------------


def test_vanillanet_schedule_is_its_cosine_scheduler():
    recipe = RECIPES["vanillanet_9"].with_overrides(epochs=30)  # utils.cosine_scheduler, shorter
    lrs, per_epoch, lr = _lrs(recipe, 4), 4, 3.5e-3
    warmup = 5 * per_epoch
    total = 30 * per_epoch
    for i in range(warmup):  # np.linspace(0, lr, warmup) (timm: lr * i / warmup: one step apart at most)
        assert abs(lrs[i] - lr * i / (warmup - 1)) <= lr / warmup * (1 + 1e-9)
    for i in range(warmup, total):
        j = i - warmup
        seed = 1e-6 + 0.5 * (lr - 1e-6) * (1 + math.cos(math.pi * j / (total - warmup)))
        assert lrs[i] == pytest.approx(seed, rel=1e-9)


def test_simplenet_and_torchvision_schedules_per_epoch():
    simplenet = _lrs(RECIPES["simplenetv1"].with_overrides(epochs=20), 1)
    for epoch, lr in enumerate(simplenet):  # timm 0.6.1 StepLRScheduler with 3 warm-up epochs from 1e-3
        expected = 1e-3 + epoch * (0.0195 - 1e-3) / 3 if epoch < 3 else 0.0195 * 0.981 ** epoch
        assert lr == pytest.approx(expected, rel=1e-9)
    phase2 = _lrs(RECIPES["simplenetv1-phase2"].with_overrides(epochs=5), 1)
    assert phase2 == pytest.approx([0.0195 * 0.981 ** (252 + k) for k in range(5)], rel=1e-9)
    tv = _lrs(RECIPES["torchvision"], 1)
    for epoch, lr in enumerate(tv):  # LinearLR(start_factor=0.01, total_iters=5), then CosineAnnealingLR(595)
        expected = 0.5 * (0.01 + 0.99 * epoch / 5) if epoch < 5 else 0.25 * (1 + math.cos(math.pi * (epoch - 5) / 595))
        assert lr == pytest.approx(expected, rel=1e-9, abs=1e-12)


# --- parameter groups ------------------------------------------------------------------------------------


def test_vanillanet_6_layer_decay_groups_are_the_seeds():
    import imnet.zoo as zoo

    model = zoo.create_model("vanillanet_6", num_classes=10)
    recipe = RECIPES["vanillanet_6"]
    groups = layer_decay_groups(model, recipe)
    where = {id(p): g for g in groups for p in g["params"]}
    for name, param in model.named_parameters():
        # main.py: LayerDecayValueAssigner(num_max_layer=4, values=[0.8 ** (5 - i) for i in range(6)]) over
        # stem -> 0, stages.i -> i + 1, cls -> 5; get_parameter_groups: no decay on 1-D params and biases
        layer = 0 if name.startswith("stem") else int(name.split(".")[1]) + 1 if name.startswith("stages") else 5
        group = where[id(param)]
        assert group["lr_scale"] == pytest.approx(0.8 ** (5 - layer)), name
        assert group["weight_decay"] == (0.0 if param.ndim == 1 or name.endswith(".bias") else 0.32), name
    assert len(where) == sum(1 for _ in model.parameters())
    optimizer = build_optimizer(model, recipe, 4.8e-3)
    scheduler = build_scheduler(optimizer, recipe, updates_per_epoch=10)
    scheduler.step_update(100)  # after the warm-up: each group at the schedule's lr x its scale
    lrs = {group["lr_scale"]: group["lr"] for group in optimizer.param_groups}
    assert lrs[1.0] == pytest.approx(4.8e-3 * (1 + math.cos(math.pi * 50 / 2950)) / 2, rel=1e-3)
    assert len(lrs) == 6 and all(lr == pytest.approx(lrs[1.0] * scale) for scale, lr in lrs.items())


def test_layer_decay_errors_and_timm_grouping():
    recipe = RECIPES["vanillanet_7"]
    with pytest.raises(ImnetError, match="VanillaNet's grouping .* parameter 'weight'"):
        build_optimizer(torch.nn.Linear(3, 2), recipe, 1e-3)
    import imnet.zoo as zoo

    model = zoo.create_model("vanillanet_7", num_classes=10)  # 5 stages: fine; 4 layers is too few
    with pytest.raises(ImnetError, match="layer_decay_layers=4, but the model has parameter 'stages.4"):
        build_optimizer(model, recipe.with_overrides(layer_decay_layers=4), 1e-3)
    timm_model = zoo.create_model("timm/resnet18", num_classes=10)  # timm's own grouping (group_matcher)
    groups = layer_decay_groups(timm_model, recipe.with_overrides(layer_decay_layers=0))
    scales = sorted({g["lr_scale"] for g in groups})
    assert scales[-1] == 1.0 and scales[0] < 0.8 and len(scales) > 3


def test_weight_decay_schedule_is_cosine_per_update_on_decaying_groups():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
    recipe = RECIPES["vanillanet_5"].with_overrides(weight_decay=0.3, weight_decay_end=0.05, epochs=10)
    optimizer = build_optimizer(model, recipe, 1e-3)
    schedule = build_weight_decay_schedule(optimizer, recipe, updates_per_epoch=5)
    assert isinstance(schedule, WeightDecaySchedule)
    seen = []
    for update in range(50):
        schedule(update)
        seen.append(sorted(group["weight_decay"] for group in optimizer.param_groups))
    # utils.cosine_scheduler(0.3, 0.05, 10, 5): 0.05 + 0.125 (1 + cos(pi i / 50)); no-decay groups stay at 0
    assert all(wds[0] == 0.0 for wds in seen)
    for update, wds in enumerate(seen):
        assert wds[-1] == pytest.approx(0.05 + 0.125 * (1 + math.cos(math.pi * update / 50)))
    assert build_weight_decay_schedule(optimizer, RECIPES["vanillanet_5"], 5) is None


# --- imnet train --show-recipe ----------------------------------------------------------------------------


def _show(args, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *args, "--show-recipe"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_show_recipe_prints_vanillanet_9s_readme_command_as_fields(tmp_path, capsys):
    out = _show(["--arch", "vanillanet_9", "--data", str(tmp_path / "D")], capsys)
    assert yaml.safe_load(out) == RECIPES["vanillanet_9"].to_dict()
    assert "# recipe vanillanet_9 (default of vanillanet_9): huawei-noah/VanillaNet README" in out
    assert "# command: python -m torch.distributed.launch --nproc_per_node=8 main.py --model vanillanet_9" in out
    lines = {line.split(":")[0]: line for line in out.splitlines() if not line.startswith("#")}
    for field, flag in [("lr_base", "--lr 3.5e-3"), ("weight_decay", "--weight_decay 0.3"), ("mixup", "--mixup 0.4"),
                        ("auto_augment", "--aa rand-m7-mstd0.5-inc1"), ("loss", "--bce_loss"),
                        ("ema_decay", "--model_ema_decay 0.99996"), ("act_learn_epochs", "--decay_epochs 100"),
                        ("reprob", "--reprob default 0.25"), ("train_interpolation", "default bicubic")]:
        assert f"# {flag}" in lines[field] or flag in lines[field].split("#", 1)[1], (field, lines[field])


def test_show_recipe_prints_the_simplenet_command(capsys):
    out = _show(["--arch", "simplenetv1_5m_m2"], capsys)
    assert yaml.safe_load(out) == RECIPES["simplenetv1"].to_dict()
    assert "--opt rmsproptf --opt-eps .001" in out and "# --decay-rate 0.981" in out
    assert "# train.py --warmup-epochs default 3" in out


def test_show_recipe_overrides_and_notes(capsys):
    out = _show(["--arch", "vanillanet_12", "--set", "epochs=7"], capsys)
    assert "# note: the VanillaNet README publishes no training command for VanillaNet-11..13" in out
    assert "# changed from the named recipe: epochs=7" in out and "\nepochs: 7\n" in out
    out = _show(["--arch", "resnet50", "--recipe", "torchvision"], capsys)
    assert "# recipe torchvision:" in out and "--ra-sampler --ra-reps 4: not reproduced" in out
    assert "# recipe classic (default of resnet50)" in _show(["--arch", "resnet50"], capsys)


def test_resume_refuses_a_recipe(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--resume", str(tmp_path), "--recipe", "torchvision"])
    assert exit_info.value.code == 2
    assert "recipe options cannot change on resume" in capsys.readouterr().err


# --- a short CPU run of each recipe, both loaders ---------------------------------------------------------


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    from imnet.testing import prepared_tree

    return prepared_tree(tmp_path_factory.mktemp("tree"), classes=4, train_per_class=16, val=16, image_size=(40, 36))


RUNS = {  # recipe: (arch, the changes that make it a few-second CPU run; its optimizer, schedule, policy stay)
    "vanillanet_6": ("tiny", dict(epochs=5, warmup_epochs=1, act_learn_epochs=2, lr=5e-3, batch_size=8)),
    "simplenetv1": ("cifar_resnet20", dict(epochs=5, warmup_epochs=1, lr=2e-3, batch_size=8)),
    "torchvision": ("cifar_resnet20", dict(epochs=5, warmup_epochs=1, lr=0.02, batch_size=8, train_img_size=28)),
}


@pytest.mark.parametrize("loader", ["torch", "dali"])
@pytest.mark.parametrize("name", sorted(RUNS))
def test_each_recipe_trains_on_both_loaders(tree, tmp_path, tiny_vanillanet, name, loader):
    arch, changes = RUNS[name]
    arch = tiny_vanillanet if arch == "tiny" else arch
    recipe = load_recipe(name, changes)
    run_dir = train(TrainConfig(arch=arch, data=tree, out=tmp_path / "run", recipe=recipe, loader=loader,
                                workers=0 if loader == "torch" else 1, progress=False))
    with open(run_dir / "summary.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    losses = [float(row["train_loss"]) for row in rows]
    assert len(rows) == 5 and losses[-1] < 0.98 * losses[0], losses
    record = json.loads((run_dir / "run.json").read_text())
    assert record["finished"] and record["recipe"]["auto_augment"] == RECIPES[name].auto_augment
    assert record["loader"] == ("torch" if loader == "torch" else "dali-cpu")


def test_simplenet_phase2_drop_rates_reach_the_model():
    import imnet.zoo as zoo
    from imnet.train.parts import model_kwargs

    kwargs = model_kwargs(RECIPES["simplenetv1-phase2"])
    assert kwargs == {"drop_rates": {11: 0.02, 12: 0.05, 13: 0.05}}
    model = zoo.create_model("simplenetv1_5m_m2", num_classes=10, **kwargs)
    rates = sorted({m.p for m in model.modules() if isinstance(m, torch.nn.Dropout2d) and m.p > 0})
    assert rates == [0.02, 0.05]
    assert model_kwargs(RECIPES["vanillanet_9"]) == {"drop_rate": 0.05} and model_kwargs(RECIPES["classic"]) == {}


def test_builder_arguments_a_model_does_not_take_are_one_clear_error(tree, tmp_path):
    recipe = load_recipe("classic", ["drop_rates=11:0.02"])
    with pytest.raises(ImnetError, match="recipe 'classic': cifar_resnet20 does not take drop_rates"):
        train(TrainConfig(arch="cifar_resnet20", data=tree, out=tmp_path / "run", recipe=recipe, loader="torch",
                          workers=0, progress=False))
