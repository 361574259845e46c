"""imnet train: recipes as data, the loop on a fake prepared tree, checkpoints, resume, NaN stop."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from imnet.cli import main
from imnet.errors import ImnetError
from imnet.testing import prepared_tree
from imnet.train import RECIPES, TrainConfig, TrainingDiverged, load_checkpoint, load_recipe, train
from imnet.train.parts import build_mixup_and_loss, build_optimizer, build_scheduler, global_lr
from imnet.train.recipes import act_learn_lambda

ARCH = "cifar_resnet20"  # 0.27M parameters at 32x32: a few seconds per epoch on the tiny tree
TREE = dict(classes=4, train_per_class=16, val=24, image_size=(40, 36))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return prepared_tree(tmp_path_factory.mktemp("tree"), **TREE)


def tiny_recipe(**changes):
    base = dict(epochs=2, batch_size=16, lr=0.05, sched="cosine", warmup_epochs=0, step_on_epochs=False,
                weight_decay=5e-4)
    return load_recipe("demo", {**base, **changes})


def config(tree: Path, out: Path, **changes) -> TrainConfig:
    recipe = changes.pop("recipe", None) or tiny_recipe()
    return TrainConfig(arch=ARCH, data=tree, out=out, recipe=recipe, loader="torch", workers=0,
                       progress=False, **changes)


def summary_rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "summary.csv", newline="") as handle:
        return list(csv.DictReader(handle))


# --- recipes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_named_recipe_builds_timm_optimizer_scheduler_and_loss(name):
    recipe = RECIPES[name]
    if recipe.layer_decay != 1.0:  # VanillaNet's layer grouping wants its stem / stages / cls names
        from imnet.zoo.vanillanet import VanillaNet

        model = VanillaNet([8, 16, 32], [2, 2], num_classes=10)
    else:
        model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(10))
        model(torch.zeros(2, 3, 8, 8))
    lr = global_lr(recipe, recipe.batch_size * 8)
    assert lr == pytest.approx(recipe.lr_base * recipe.batch_size * 8 / recipe.lr_base_size)
    optimizer = build_optimizer(model, recipe, lr)
    scheduler = build_scheduler(optimizer, recipe, updates_per_epoch=10)
    mixup, criterion = build_mixup_and_loss(recipe, num_classes=10)
    assert (mixup is not None) == (recipe.mixup > 0 or recipe.cutmix > 0)
    images, labels = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    targets = mixup(images, labels)[1] if mixup else labels
    assert torch.isfinite(criterion(torch.randn(4, 10), targets))
    # Over the whole schedule the lr peaks at (or, with cosine during warm-up, near) the scaled lr
    seen = []
    for epoch in range(recipe.epochs):
        scheduler.step(epoch)
        for update in range(10):
            scheduler.step_update(epoch * 10 + update)
            seen.append(max(group["lr"] for group in optimizer.param_groups))
    assert lr * 0.85 <= max(seen) <= lr * (1 + 1e-9)
    assert seen[-1] < max(seen) and seen[0] <= max(seen)


def test_classic_recipe_is_the_pytorch_examples_one():
    classic = RECIPES["classic"]
    assert (classic.opt, classic.momentum, classic.weight_decay, classic.epochs) == ("momentum", 0.9, 1e-4, 90)
    assert classic.decay_milestones == (30, 60, 80) and classic.lr_base == 0.1 and classic.lr_base_size == 256
    vanilla = RECIPES["vanillanet"]
    assert vanilla.opt == "lamb" and vanilla.act_learn_epochs == 100 and vanilla.ema_decay > 0


def test_act_learn_goes_from_zero_to_one():
    recipe = RECIPES["vanillanet"].with_overrides(act_learn_epochs=4)
    assert [act_learn_lambda(recipe, e) for e in range(6)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    cosine = recipe.with_overrides(act_learn_shape="cosine")
    assert act_learn_lambda(cosine, 2) == pytest.approx(0.5) and act_learn_lambda(cosine, 1) < 0.25


def test_recipe_file_with_base_and_overrides(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("base: vanillanet\nepochs: 12\ndecay_milestones: [4, 8]\nclip_grad: 1.5\n")
    recipe = load_recipe(path, ["epochs=7", "mixup=0"])
    assert (recipe.name, recipe.epochs, recipe.decay_milestones, recipe.clip_grad) == ("mine", 7, (4, 8), 1.5)
    assert recipe.opt == "lamb" and recipe.mixup == 0.0
    as_json = tmp_path / "mine.json"
    as_json.write_text(json.dumps(recipe.to_dict()))
    assert load_recipe(as_json) == recipe


@pytest.mark.parametrize("overrides, file_text, expected", [
    (["epochz=3"], None, "unknown recipe field 'epochz' (did you mean epochs?)"),
    (["epochs=three"], None, "wants an integer"),
    (["aug=autoaugment"], None, "must be one of classic, rrc"),
    (["epochs"], None, "expected FIELD=VALUE"),
    ([], "epochs: 3\nwarmup: 5\n", "unknown recipe field 'warmup'"),
    ([], "- not a mapping\n", "must be a mapping"),
    ([], "base: imagenet21k\n", "unknown base recipe"),
    ([], "epochs: [1\n", "cannot read recipe file"),
])
def test_recipe_errors_name_the_field_and_source(tmp_path, overrides, file_text, expected):
    source = "classic"
    if file_text is not None:
        source = tmp_path / "bad.yaml"
        source.write_text(file_text)
    with pytest.raises(ImnetError) as err:
        load_recipe(source, overrides)
    assert expected in str(err.value)
    if file_text is not None:
        assert str(source) in str(err.value)


def test_unknown_recipe_name():
    with pytest.raises(ImnetError, match="unknown recipe 'clasic' .*did you mean classic"):
        load_recipe("clasic")


def test_cli_unknown_field_is_one_line_exit_2(tree, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--arch", ARCH, "--data", str(tree), "--out", str(tmp_path / "r"), "--set", "lr_max=1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("imnet: error: --set lr_max=1: unknown recipe field 'lr_max'")
    assert not (tmp_path / "r").exists()


def test_cli_show_recipe(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--recipe", "resnet-cifar", "--epochs", "5", "--show-recipe"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "\nname: resnet-cifar\nepochs: 5\n" in out and "\ndecay_milestones: [81, 122]\n" in out
    assert "# changed from the named recipe: epochs=5" in out


# --- the loop ---------------------------------------------------------------------------------------


def test_training_learns_and_writes_a_finished_run(tree, tmp_path):
    run_dir = train(config(tree, tmp_path / "run", recipe=tiny_recipe(epochs=3)))
    rows = summary_rows(run_dir)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    losses = [float(r["train_loss"]) for r in rows]
    assert losses[-1] < losses[0] * 0.9, losses
    assert float(rows[-1]["top1"]) > 100 / TREE["classes"] + 15  # well above chance on the val split
    assert all(float(r["images_per_sec"]) > 0 and float(r["lr"]) >= 0 for r in rows)
    record = json.loads((run_dir / "run.json").read_text())
    assert record["arch"] == ARCH and record["finished"] is True and record["completed_epochs"] == 3
    assert record["num_classes"] == TREE["classes"] and record["best_top1"] == pytest.approx(max(float(r["top1"]) for r in rows), abs=1e-3)
    last = load_checkpoint(run_dir / "last.pth", arch=ARCH)
    assert last["loader"] == {"epoch": 3, "position": 0, "seed": 0}
    assert {"model", "optimizer", "scheduler", "scaler", "ema", "rng", "num_updates"} <= set(last)
    assert last["num_updates"] == 3 * (TREE["classes"] * TREE["train_per_class"] // 16)
    best = load_checkpoint(run_dir / "best.pth", arch=ARCH)
    assert best["epoch"] == record["best_epoch"]
    # No temp files left behind by the atomic writes
    assert sorted(p.name for p in run_dir.iterdir()) == ["best.pth", "last.pth", "run.json", "summary.csv"]
    # The zoo resolves the finished run as weights for the architecture (what `imnet eval` uses)
    from imnet.zoo import create_model, get_config
    from imnet.zoo.weights import find_run_checkpoint, load_weights

    assert find_run_checkpoint(run_dir) == run_dir / "best.pth"
    model = create_model(ARCH, num_classes=TREE["classes"])
    load_weights(model, get_config(ARCH), run_dir)
    assert torch.equal(model.state_dict()["head.weight"], best["model"]["head.weight"])


def _tensors(obj, prefix=""):
    """Flatten nested dicts/lists of a checkpoint into {path: tensor or value}."""
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            out.update(_tensors(value, f"{prefix}{key}."))
        return out
    if isinstance(obj, (list, tuple)):
        out = {}
        for i, value in enumerate(obj):
            out.update(_tensors(value, f"{prefix}{i}."))
        return out
    return {prefix: obj}


@pytest.mark.parametrize("stop", [{"stop_after_epochs": 1}, {"stop_after_updates": 6}],
                         ids=["after-epoch-1", "mid-epoch-2"])
def test_resume_is_bitwise_equal_to_an_uninterrupted_run(tree, tmp_path, stop):
    # mixup, label smoothing and EMA draw on numpy/torch RNG and carry state: all must be restored
    recipe = tiny_recipe(mixup=0.2, cutmix=0.5, label_smoothing=0.1, ema_decay=0.9, weight_decay=1e-4)
    whole = train(config(tree, tmp_path / "whole", recipe=recipe, deterministic=True))
    parts = train(config(tree, tmp_path / "parts", recipe=recipe, deterministic=True, **stop))
    record = json.loads((parts / "run.json").read_text())
    assert record["finished"] is False
    stopped = load_checkpoint(parts / "last.pth")
    expected_position = {"stop_after_epochs": (1, 0), "stop_after_updates": (1, 2)}[next(iter(stop))]
    assert (stopped["loader"]["epoch"], stopped["loader"]["position"]) == expected_position
    train(TrainConfig(resume=parts, loader="torch", workers=0, progress=False))

    a, b = load_checkpoint(whole / "last.pth"), load_checkpoint(parts / "last.pth")
    for key in ("model", "ema", "optimizer"):
        flat_a, flat_b = _tensors(a[key]), _tensors(b[key])
        assert flat_a.keys() == flat_b.keys()
        for name, value in flat_a.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, flat_b[name]), f"{key}.{name} differs after resume"
            else:
                assert value == flat_b[name], f"{key}.{name} differs after resume"
    timing = {"images_per_sec", "epoch_time_s", "val_time_s"}
    rows_a = [{k: v for k, v in r.items() if k not in timing} for r in summary_rows(whole)]
    rows_b = [{k: v for k, v in r.items() if k not in timing} for r in summary_rows(parts)]
    assert rows_a == rows_b
    assert json.loads((parts / "run.json").read_text())["finished"] is True


@pytest.fixture(scope="module")
def stopped_run(tree, tmp_path_factory) -> Path:
    """A run interrupted after its first of two epochs (resumable)."""
    out = tmp_path_factory.mktemp("stopped") / "run"
    with torch.random.fork_rng():
        torch.set_num_threads(1)
        return train(config(tree, out, stop_after_epochs=1))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x00not a checkpoint at all" * 10)


def _foreign(path: Path) -> None:
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}, "epoch": 3}, path)


def _old_script(path: Path) -> None:
    import argparse

    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}, "args": argparse.Namespace(lr=0.1)}, path)


def _other_arch(path: Path) -> None:
    state = torch.load(path, weights_only=True)
    state["arch"] = "resnet50"
    torch.save(state, path)


@pytest.mark.parametrize("damage, expected", [
    (_truncate, "corrupt or truncated checkpoint"),
    (_garbage, "corrupt or truncated checkpoint"),
    (_foreign, "not an imnet training checkpoint"),
    (_old_script, "not an imnet training checkpoint (it holds Python objects"),
    (_other_arch, "checkpoint is for arch 'resnet50'"),
])
def test_corrupt_or_foreign_checkpoint_names_the_file(stopped_run, tmp_path, damage, expected):
    run_dir = tmp_path / "run"
    shutil.copytree(stopped_run, run_dir)
    damage(run_dir / "last.pth")
    with pytest.raises(ImnetError) as err:
        train(TrainConfig(resume=run_dir, data=Path(json.loads((run_dir / "run.json").read_text())["data"]),
                          loader="torch", workers=0, progress=False))
    assert str(run_dir / "last.pth") in str(err.value) and expected in str(err.value)
    assert "\n" not in str(err.value)  # the CLI prints it as one line


def test_resume_errors(stopped_run, tmp_path, tree):
    with pytest.raises(ImnetError, match=r"run\.json: not found"):
        train(TrainConfig(resume=tmp_path / "nothing", progress=False))
    with pytest.raises(ImnetError, match="already holds an `imnet train` run; continue it with --resume"):
        train(config(tree, stopped_run))
    with pytest.raises(ImnetError, match=r"--arch is required \(or --resume RUN_DIR\)"):
        train(TrainConfig(data=tree, progress=False))
    with pytest.raises(ImnetError, match="run is for arch 'cifar_resnet20', not 'resnet18'"):
        train(TrainConfig(resume=stopped_run, arch="resnet18", progress=False))


@pytest.mark.parametrize("make, expected", [
    (lambda root: root / "absent", "data directory not found"),
    (lambda root: root, "classes.tsv: not found"),
], ids=["missing-dir", "not-prepared"])
def test_missing_data_is_a_clear_error(tmp_path, make, expected):
    data = make(tmp_path)
    with pytest.raises(ImnetError, match=expected):
        train(config(data, tmp_path / "run"))
    assert not (tmp_path / "run" / "last.pth").exists()


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tree, tmp_path):
    # lr x 1e12 at the start of epoch 2: the loss blows up there, after epoch 1 was checkpointed
    recipe = tiny_recipe(epochs=3, sched="multistep", decay_milestones="1", decay_rate=1e12, step_on_epochs=True)
    with pytest.raises(TrainingDiverged) as err:
        train(config(tree, tmp_path / "run", recipe=recipe))
    message = str(err.value)
    assert "loss became NaN/inf at epoch 2" in message and str(tmp_path / "run" / "last.pth") in message
    kept = load_checkpoint(tmp_path / "run" / "last.pth")
    assert kept["loader"]["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in kept["model"].values() if t.is_floating_point())
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["finished"] is False and record["diverged"]["epoch"] == 2
    assert len(summary_rows(tmp_path / "run")) == 1


def test_vanillanet_deep_training_schedule_and_deploy_checkpoint(tree, tmp_path, tiny_vanillanet):
    from imnet.zoo import create_model

    recipe = tiny_recipe(epochs=3, act_learn_epochs=2, ema_decay=0.5, lr=0.02)
    run_dir = train(TrainConfig(arch=tiny_vanillanet, data=tree, out=tmp_path / "run", recipe=recipe,
                                loader="torch", workers=0, progress=False))
    rows = summary_rows(run_dir)
    assert [float(r["act_learn"]) for r in rows] == [0.0, 0.5, 1.0]  # 0 -> 1, then deployable
    record = json.loads((run_dir / "run.json").read_text())
    assert record["deploy_checkpoint"] == "deploy.pth" and record["finished"] is True
    deploy = load_checkpoint(run_dir / "deploy.pth", arch=tiny_vanillanet)
    assert deploy["deploy"] is True and "stem.0.weight" in deploy["model"]
    # the deployed (fused) network computes what the trained one computes at act_learn = 1
    best = load_checkpoint(run_dir / "best.pth")
    trained = create_model(tiny_vanillanet, num_classes=TREE["classes"])
    if best["act_learn"] == 1.0:
        weights = best["model"]
    else:  # the best epoch predates act_learn == 1: the last epoch's weights of the same kind are fused
        last = load_checkpoint(run_dir / "last.pth")
        weights = last["model"] if best["source"] == "model" else {
            k.removeprefix("module."): v for k, v in last["ema"].items()}
    trained.load_state_dict(weights)
    fused = create_model(tiny_vanillanet, num_classes=TREE["classes"], deploy=True)
    fused.load_state_dict(deploy["model"])
    images = torch.randn(4, 3, 32, 32)
    torch.testing.assert_close(fused.eval()(images), trained.eval()(images), rtol=1e-4, atol=1e-4)


def test_vanillanet_without_reaching_act_learn_1_writes_no_deploy(tree, tmp_path, tiny_vanillanet):
    recipe = tiny_recipe(epochs=2, act_learn_epochs=5)
    run_dir = train(TrainConfig(arch=tiny_vanillanet, data=tree, out=tmp_path / "run", recipe=recipe,
                                loader="torch", workers=0, progress=False))
    assert not (run_dir / "deploy.pth").exists()
    assert "deploy_checkpoint" not in json.loads((run_dir / "run.json").read_text())


def test_sigterm_checkpoints_then_resume_finishes(tree, tmp_path):
    """A pre-empted job (SIGTERM) stops at the next sync point with a resumable checkpoint."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    command = [sys.executable, "-m", "imnet", "train", "--arch", ARCH, "--data", str(tree), "--out", str(out),
               "--recipe", "demo", "--epochs", "5", "--batch-size", "16", "--loader", "torch", "--workers", "0",
               "--no-progress"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not (out / "last.pth").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr[-2000:]
    assert "stopped" in stderr and f"--resume {out}" in stderr
    record = json.loads((out / "run.json").read_text())
    assert record["finished"] is False and 1 <= record["completed_epochs"] < 5
    train(TrainConfig(resume=out, loader="torch", workers=0, progress=False))
    assert [int(r["epoch"]) for r in summary_rows(out)] == list(range(1, 6))
    assert json.loads((out / "run.json").read_text())["finished"] is True


@pytest.mark.parametrize("changes, recipe_changes", [
    ({"amp": "bf16"}, {}),
    ({"channels_last": True}, {"clip_grad": 1.0}),
    ({}, {"accum_steps": 2, "loss": "bce", "label_smoothing": 0.1}),
], ids=["bf16-autocast", "channels-last-clip", "accum-bce"])
def test_training_options_run_one_epoch(tree, tmp_path, changes, recipe_changes):
    run_dir = train(config(tree, tmp_path / "run", recipe=tiny_recipe(epochs=1, **recipe_changes), **changes))
    record = json.loads((run_dir / "run.json").read_text())
    assert record["finished"] is True
    assert record["global_batch"] == 16 * recipe_changes.get("accum_steps", 1)
    assert record["amp"] == ("bfloat16" if changes.get("amp") == "bf16" else "none")
    last = load_checkpoint(run_dir / "last.pth")
    assert last["num_updates"] == 4 // recipe_changes.get("accum_steps", 1)
    assert all(torch.isfinite(t).all() for t in last["model"].values() if t.is_floating_point())
    assert float(summary_rows(run_dir)[0]["train_loss"]) > 0


def test_fp16_on_cpu_is_refused(tree, tmp_path):
    with pytest.raises(ImnetError, match="--amp fp16 needs a CUDA GPU"):
        train(config(tree, tmp_path / "run", amp="fp16"))
